//! Helpers for tests on the real node (`scripts/control-plane up --node`): pods of the probe
//! image, `kubectl exec` of probe commands, and waits on pod conditions.
#![allow(dead_code)]

use super::wait_for;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

/// How long a pod may take to become Ready on the node (sandbox, CNI, image already imported).
pub const POD_READY: Duration = Duration::from_secs(90);
/// How long kube-router may take to enforce a NetworkPolicy change.
pub const ENFORCED: Duration = Duration::from_secs(45);

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the node tests through scripts/test, which starts `scripts/control-plane up --node`")
    })
}

/// The node's name; panics when the plane has no node (these tests never pass by skipping).
pub fn node_name() -> String {
    env("PALISADE_NODE")
}

pub fn probe_image() -> String {
    env("PALISADE_PROBE_IMAGE")
}

/// The probe binary for the host side of a test (the same one the image holds).
pub fn probe_bin() -> String {
    env("PALISADE_PROBE_BIN")
}

/// A container of deploy/ (image `palisade:VERSION`) switched to the image scripts/build-image
/// built and the node imported (never pulled).
pub fn use_local_image(container: &mut Value) {
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(container["image"], format!("palisade:{version}"));
    container["image"] = serde_json::json!(format!("localhost/palisade:{version}"));
    container["imagePullPolicy"] = serde_json::json!("Never");
}

pub fn kubectl() -> Command {
    let mut c = Command::new(env("PALISADE_KUBECTL"));
    c.env("KUBECONFIG", env("KUBECONFIG"));
    c
}

/// A hardened container of the probe image (passes the restricted level and Palisade's
/// hardening checks) running `args`.
pub fn probe_container(name: &str, args: &[&str]) -> Value {
    json!({
        "name": name,
        "image": probe_image(),
        "imagePullPolicy": "Never",
        "command": ["/probe"],
        "args": args,
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}
        }
    })
}

/// A pod of one hardened probe container running `args`.
pub fn probe_pod(name: &str, labels: Value, args: &[&str]) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 1,
            "containers": [probe_container("probe", args)]
        }
    })
}

/// A probe that serves `tcp` and `udp` ports (e.g. "8080,9090") and is Ready once it listens.
pub fn server_pod(name: &str, labels: Value, tcp: &str, udp: &str) -> Value {
    let mut pod = probe_pod(name, labels, &["serve", "--tcp", tcp, "--udp", udp]);
    let first = tcp.split(',').next().unwrap().parse::<u16>().unwrap();
    pod["spec"]["containers"][0]["readinessProbe"] =
        json!({"tcpSocket": {"port": first}, "periodSeconds": 1});
    pod
}

pub async fn create_pod(client: &Client, ns: &str, pod: &Value) -> Pod {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod: Pod = serde_json::from_value(pod.clone()).expect("a valid Pod");
    api.create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("create pod {ns}/{:?}: {e}", pod.metadata.name))
}

/// Waits until the pod is Ready; returns it (with its IP). Panics with the pod's status.
pub async fn wait_ready(client: &Client, ns: &str, name: &str) -> Pod {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let what = format!("pod {ns}/{name} Ready");
    let result = tokio::time::timeout(
        POD_READY,
        wait_for(&what, POD_READY, || async {
            let pod = api.get(name).await.ok()?;
            let ready = pod
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            ready.then_some(pod)
        }),
    )
    .await;
    match result {
        Ok(pod) => pod,
        Err(_) => {
            let status = api.get(name).await.map(|p| p.status);
            panic!("timed out waiting for {what}; status: {status:#?}")
        }
    }
}

pub fn pod_ip(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("a Ready pod has an IP")
}

/// What one probe command answered (its JSON line), and whether it succeeded.
#[derive(Debug, Clone)]
pub struct Probe {
    pub ok: bool,
    pub out: Value,
}

/// Runs `/probe ARGS` in the pod with `kubectl exec`. Panics when the probe did not run at all
/// (exec failed, no JSON), so a broken harness is never mistaken for a blocked connection.
pub fn exec_probe(ns: &str, pod: &str, args: &[&str]) -> Probe {
    let out = kubectl()
        .args(["exec", "-n", ns, pod, "-c", "probe", "--", "/probe"])
        .args(args)
        .output()
        .expect("run kubectl exec");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{'));
    let Some(line) = line else {
        panic!(
            "probe {args:?} in {ns}/{pod} did not run: exit {:?}, stdout {stdout:?}, stderr {:?}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let value: Value = serde_json::from_str(line).expect("probe JSON");
    let ok = value["ok"].as_bool().expect("probe JSON has ok");
    assert_eq!(
        ok,
        out.status.success(),
        "probe exit status and verdict disagree: {value}"
    );
    Probe { ok, out: value }
}

/// A TCP (or "udp:") connection attempt from `pod` to `target` ("IP:PORT").
pub fn connect(ns: &str, pod: &str, target: &str) -> Probe {
    match target.strip_prefix("udp:") {
        Some(t) => exec_probe(ns, pod, &["connect", "--udp", "--timeout", "1s", t]),
        None => exec_probe(ns, pod, &["connect", "--timeout", "1s", target]),
    }
}

/// Polls a connection until its verdict is `want` (policies take a moment to be enforced);
/// panics with the last answer at the deadline.
pub async fn wait_connect(ns: &str, pod: &str, target: &str, want: bool) -> Probe {
    let what = format!(
        "{ns}/{pod} -> {target} to be {}",
        if want { "allowed" } else { "blocked" }
    );
    let deadline = std::time::Instant::now() + ENFORCED;
    loop {
        let (n, p, t) = (ns.to_string(), pod.to_string(), target.to_string());
        let probe = tokio::task::spawn_blocking(move || connect(&n, &p, &t))
            .await
            .unwrap();
        if probe.ok == want {
            return probe;
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "timed out after {ENFORCED:?} waiting for {what}; last answer {}",
                probe.out
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
