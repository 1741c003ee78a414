//! `palisade node` against the real local control plane and node: the checks are judged from the
//! processes and files that really run (kube-bench's FAILs with empty values on this plane are the
//! contrast, docs/cis-node.md), and deploy/node's Job, run as a pod of the real node (hostPID, the
//! host's / read-only, every capability dropped but DAC_READ_SEARCH), reaches the same verdicts
//! as the host. (`scripts/test` builds the image and starts `scripts/control-plane up --node`;
//! feature `node`.)
#![cfg(feature = "node")]

use crate::common;

use common::node::{kubectl, node_name};
use common::{client, wait_for, ROOT};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::DeleteParams;
use kube::Api;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

const NS: &str = "palisade-node";

/// The tests that deploy deploy/node share its namespace: one at a time.
static NODE_NAMESPACE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `--select` for the test plane: other tests of this binary start a second plane beside it.
fn test_plane() -> String {
    let state = std::env::var("PALISADE_CP_STATE").expect("PALISADE_CP_STATE (scripts/test)");
    format!("--select={state}/")
}

fn host_report() -> Value {
    let state = std::env::var("PALISADE_CP_STATE").expect("PALISADE_CP_STATE (scripts/test)");
    node_report(&state)
}

/// `palisade node` on this host for the plane of state dir `state`; exit 1: checks fail on
/// either profile.
fn node_report(state: &str) -> Value {
    node_run(&["--select", &format!("{state}/")])
}

/// `palisade node --format json` with `args`, which must exit 1 (checks fail).
fn node_run(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["node", "--format", "json"])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

fn by_rule(report: &Value) -> BTreeMap<String, Value> {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["rule"].as_str().unwrap().to_string(), r.clone()))
        .collect()
}

#[test]
fn palisade_node_judges_the_plane_from_what_runs() {
    let _serial = common::serial::module(module_path!());
    let report = host_report();
    let found: BTreeSet<&str> = report["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["component"].as_str().unwrap())
        .collect();
    assert_eq!(
        found,
        [
            "api-server",
            "controller-manager",
            "scheduler",
            "etcd",
            "kubelet",
            "proxy"
        ]
        .into(),
        "{report}"
    );
    let r = by_rule(&report);
    let check = |rule: &str, status: &str, actual: Option<&str>, source: Option<&str>| {
        let got = &r[rule];
        assert_eq!(got["status"], status, "{rule}: {got}");
        if let Some(a) = actual {
            assert!(
                got["actual"].as_str().unwrap_or("").contains(a),
                "{rule}: {got}"
            );
        }
        if let Some(s) = source {
            assert!(
                got["source"].as_str().unwrap_or("").contains(s),
                "{rule}: {got}"
            );
        }
    };
    // What kube-bench got wrong here (FAIL, empty value) is read from the command line.
    check(
        "cis.1.2.7",
        "pass",
        Some("Node,RBAC"),
        Some("--authorization-mode"),
    );
    check("cis.1.2.14", "pass", Some("NodeRestriction enabled"), None);
    check("cis.1.2.15", "pass", Some("false"), Some("--profiling"));
    check(
        "cis.1.3.7",
        "pass",
        Some("127.0.0.1"),
        Some("--bind-address"),
    );
    // Defaults are judged as the component applies them.
    check("cis.1.2.1", "fail", Some("true"), Some("default"));
    check("cis.1.2.28", "fail", None, None);
    assert!(r["cis.1.2.28"]["reason"]
        .as_str()
        .unwrap()
        .contains("plain text"));
    check("cis.2.2", "fail", Some("false"), Some("default"));
    // The kubelet's settings come from the config file it was given.
    check(
        "cis.4.2.1",
        "pass",
        Some("false"),
        Some("kubelet-config.yaml"),
    );
    check(
        "cis.4.2.2",
        "pass",
        Some("Webhook"),
        Some("kubelet-config.yaml"),
    );
    check("cis.4.2.4", "pass", Some("0"), Some("kubelet-config.yaml"));
    check(
        "cis.4.2.7",
        "fail",
        Some(&node_name()),
        Some("--hostname-override"),
    );
    // Files come from the flags: kubeconfigs, the PKI directory, the CNI directory of containerd.
    for rule in [
        "cis.1.1.15",
        "cis.1.1.17",
        "cis.1.1.19",
        "cis.1.1.21",
        "cis.4.1.3",
        "cis.4.1.5",
    ] {
        assert_eq!(r[rule]["status"], "pass", "{rule}: {}", r[rule]);
    }
    assert!(
        r["cis.1.1.9"]["actual"]
            .as_str()
            .unwrap()
            .contains("/cni/net.d/"),
        "{}",
        r["cis.1.1.9"]
    );
    // Not assessable only where the plane has nothing to judge, each with its reason.
    let not_assessable: BTreeSet<&str> = r
        .iter()
        .filter(|(_, v)| v["status"] == "not-assessable")
        .map(|(k, v)| {
            assert!(!v["reason"].as_str().unwrap_or("").is_empty(), "{v}");
            k.as_str()
        })
        .collect();
    let want: BTreeSet<&str> = [
        // host processes, not static pods
        "cis.1.1.1",
        "cis.1.1.2",
        "cis.1.1.3",
        "cis.1.1.4",
        "cis.1.1.5",
        "cis.1.1.6",
        "cis.1.1.7",
        "cis.1.1.8",
        // no kubeadm admin.conf
        "cis.1.1.13",
        "cis.1.1.14",
        // the kubelet is not a systemd service
        "cis.4.1.1",
        "cis.4.1.2",
    ]
    .into();
    assert_eq!(not_assessable, want);
}

/// Deletes the namespace (and what runs in it) when the test ends, pass or fail, and waits until
/// it is gone.
struct Cleanup(kube::Client);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let client = self.0.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            tokio::task::block_in_place(|| {
                handle.block_on(async move {
                    let api: Api<Namespace> = Api::all(client);
                    let _ = api.delete(NS, &DeleteParams::background()).await;
                    // Gone before the next test of deploy/node applies it again.
                    let deadline = std::time::Instant::now() + Duration::from_secs(120);
                    while std::time::Instant::now() < deadline {
                        if matches!(api.get_opt(NS).await, Ok(None)) {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                })
            });
        }
    }
}

/// Applies every document of a deploy/node file, each edited by `edit`.
fn apply(file: &str, mut edit: impl FnMut(&mut Value)) {
    use serde::Deserialize;
    let text = std::fs::read_to_string(format!("{ROOT}/deploy/node/{file}")).unwrap();
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let mut v = Value::deserialize(doc).unwrap();
        edit(&mut v);
        docs.push(serde_json::to_string(&v).unwrap());
    }
    let mut child = kubectl()
        .args(["apply", "--server-side", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(docs.join("\n---\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "apply {file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_job_of_deploy_node_reaches_the_hosts_verdicts_from_a_pod() {
    let _serial = common::serial::module(module_path!());
    let _alone = NODE_NAMESPACE.lock().await;
    let client = client().await;
    let _cleanup = Cleanup(client.clone());
    for file in [
        "namespace.yaml",
        "serviceaccount.yaml",
        "networkpolicy.yaml",
    ] {
        apply(file, |_| {});
    }
    apply("job.yaml", |job| {
        let c = &mut job["spec"]["template"]["spec"]["containers"][0];
        common::node::use_local_image(c);
        c["args"]
            .as_array_mut()
            .unwrap()
            .extend([json!("--format=json"), json!(test_plane())]);
    });
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let job = wait_for("the node Job to finish", Duration::from_secs(180), || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get("palisade-node").await.ok()?;
            let s = j.status.clone()?;
            (s.succeeded.unwrap_or(0) + s.failed.unwrap_or(0) > 0).then_some(j)
        }
    })
    .await;
    let logs = kubectl()
        .args(["logs", "-n", NS, "job/palisade-node"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&logs.stdout);
    let pod: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("no JSON report in the Job's log ({e}): {text} {job:?}"));
    // It failed because checks fail, as on the host (exit 1), not because it could not run.
    assert_eq!(job.status.unwrap().failed, Some(1));
    assert_eq!(pod["node"], node_name(), "NODE_NAME from the downward API");
    let host = host_report();
    let statuses = |r: &Value| -> BTreeMap<String, String> {
        by_rule(r)
            .into_iter()
            .map(|(k, v)| (k, v["status"].as_str().unwrap().to_string()))
            .collect()
    };
    assert_eq!(statuses(&pod), statuses(&host), "pod: {pod}\nhost: {host}");
    // Inside the pod etcd's environment cannot be read (no ptrace capability): said, not hidden.
    assert!(
        pod["notes"].as_array().unwrap().iter().any(|n| n
            .as_str()
            .unwrap()
            .contains("etcd: its environment is not readable")),
        "{pod}"
    );
}

/// A second, hardened control plane (`scripts/control-plane up --hardened`) beside the test
/// plane, stopped when the test ends, pass or fail.
struct HardenedPlane {
    state: tempfile::TempDir,
}

impl HardenedPlane {
    fn up() -> HardenedPlane {
        let state = tempfile::Builder::new()
            .prefix("palisade-hardened.")
            .tempdir_in("/tmp")
            .unwrap();
        let plane = HardenedPlane { state };
        let out = plane.script(&["up", "--hardened"]);
        assert!(
            out.status.success(),
            "up --hardened: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        plane
    }

    fn script(&self, args: &[&str]) -> std::process::Output {
        plane_script(self.state.path().to_str().unwrap(), args)
    }
}

impl Drop for HardenedPlane {
    fn drop(&mut self) {
        let out = self.script(&["down"]);
        if !out.status.success() {
            eprintln!(
                "hardened plane down: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

fn plane_script(state: &str, args: &[&str]) -> std::process::Output {
    Command::new(format!("{ROOT}/scripts/control-plane"))
        .args(args)
        .env("PALISADE_CP_STATE", state)
        .output()
        .unwrap()
}

/// A Secret written through the plane's API server, then read back from its etcd directly.
fn secret_at_rest(state: &str, value: &str) -> Vec<u8> {
    let name = common::unique("at-rest");
    let literal = format!("--from-literal=password={value}");
    let out = plane_script(
        state,
        &["kubectl", "create", "secret", "generic", &name, &literal],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = plane_script(
        state,
        &["etcd-get", &format!("/registry/secrets/default/{name}")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.stdout.is_empty(), "no value in etcd for {name}");
    out.stdout
}

fn plane_report(state: &str) -> BTreeMap<String, Value> {
    by_rule(&node_report(state))
}

#[test]
fn the_hardened_profile_encrypts_secrets_at_rest_and_clears_exactly_its_findings() {
    let _serial = common::serial::module(module_path!());
    let default_state =
        std::env::var("PALISADE_CP_STATE").expect("PALISADE_CP_STATE (scripts/test)");
    let hardened = HardenedPlane::up();
    let hardened_state = hardened.state.path().to_str().unwrap().to_string();

    // The attack: whoever reads etcd's data (a backup, a disk, etcd's port) reads Secrets.
    let value = common::unique("hunter");
    let plain = secret_at_rest(&default_state, &value);
    assert!(
        String::from_utf8_lossy(&plain).contains(&value),
        "the default profile stores Secrets in plain text"
    );
    let sealed = secret_at_rest(&hardened_state, &value);
    assert!(
        sealed.starts_with(b"k8s:enc:secretbox:v1:"),
        "{:?}",
        String::from_utf8_lossy(&sealed[..40.min(sealed.len())])
    );
    assert!(!String::from_utf8_lossy(&sealed).contains(&value));

    let before = plane_report(&default_state);
    let after = plane_report(&hardened_state);
    // Each hardened setting: its finding in the default profile, not in the hardened one.
    let hardened_rules: BTreeSet<&str> = [
        "cis.1.2.1",  // --anonymous-auth=false
        "cis.1.2.3",  // DenyServiceExternalIPs
        "cis.1.2.17", // --audit-log-maxage=30
        "cis.1.2.18", // --audit-log-maxbackup=10
        "cis.1.2.23", // --etcd-certfile/--etcd-keyfile
        "cis.1.2.26", // --etcd-cafile
        "cis.1.2.27", // --encryption-provider-config
        "cis.1.2.28", // secretbox first for secrets
        "cis.1.2.29", // strong ciphers
        "cis.1.2.30", // --service-account-extend-token-expiration=false
        "cis.2.1",
        "cis.2.2",
        "cis.2.4",
        "cis.2.5", // etcd TLS, client and peer certificates
        "cis.2.7", // etcd's own CA
    ]
    .into();
    for rule in &hardened_rules {
        assert_eq!(
            before[*rule]["status"], "fail",
            "default {rule}: {}",
            before[*rule]
        );
        assert_eq!(
            after[*rule]["status"], "pass",
            "hardened {rule}: {}",
            after[*rule]
        );
    }
    assert_eq!(after["cis.1.2.28"]["actual"], "secrets: secretbox");
    // The same difference seen from the API server, by an unauthenticated request.
    let probed = |state: &str| {
        let reports = control_plane_reports(&format!("{state}/kubeconfig"));
        by_rule(&reports[0])["cis.1.2.1"].clone()
    };
    let (open, closed) = (probed(&default_state), probed(&hardened_state));
    assert_eq!(
        (&open["status"], &open["actual"]),
        (&json!("fail"), &json!("200")),
        "{open}"
    );
    assert_eq!(
        (&closed["status"], &closed["actual"]),
        (&json!("pass"), &json!("401")),
        "{closed}"
    );
    // Everything else judged the same in both, but what the node mode adds (the API server's
    // kubelet client) and the checks of components only the node plane runs.
    let node_mode: BTreeSet<&str> = ["cis.1.2.4", "cis.1.2.5"].into();
    for (rule, b) in &before {
        let a = &after[rule];
        let component = b["component"].as_str().unwrap();
        if hardened_rules.contains(rule.as_str())
            || node_mode.contains(rule.as_str())
            || !["api-server", "controller-manager", "etcd"].contains(&component)
        {
            continue;
        }
        assert_eq!(
            a["status"], b["status"],
            "{rule}: default {b}, hardened {a}"
        );
    }
}

/// `palisade control-plane --format json` against the plane of `kubeconfig` (exit 1: checks fail).
fn control_plane_reports(kubeconfig: &str) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args([
            "control-plane",
            "--format",
            "json",
            "--kubeconfig",
            kubeconfig,
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("JSON reports: {e}: {stderr}"))
}

fn admin_kubeconfig() -> String {
    std::env::var("KUBECONFIG").expect("KUBECONFIG (scripts/test)")
}

/// Removes a static pod manifest when the test ends, pass or fail.
struct StaticPod(std::path::PathBuf);

impl Drop for StaticPod {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// From the API server's view: a static kube-apiserver pod's flags are judged with the node
/// rules (its mirror pod; a look-alike ordinary pod is not), and a node identity that RBAC lets
/// read any Secret is caught by the Node-authorizer probe, which passes again once that grant
/// is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_view_judges_mirror_pods_and_probes_node_authorization() {
    let _serial = common::serial::module(module_path!());
    let client = client().await;
    let node = node_name();
    let manifests = std::env::var("PALISADE_NODE_MANIFESTS").expect("PALISADE_NODE_MANIFESTS");
    let image = std::env::var("PALISADE_PROBE_IMAGE").expect("PALISADE_PROBE_IMAGE");
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), "kube-system");
    let mirror = format!("kube-apiserver-{node}");
    // A static pod whose container cannot even start: its mirror pod still shows its flags.
    let manifest = std::path::Path::new(&manifests).join("palisade-e2e-apiserver.yaml");
    let static_pod = StaticPod(manifest.clone());
    let spec = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "kube-apiserver", "namespace": "kube-system",
                     "labels": {"component": "kube-apiserver", "tier": "control-plane"}},
        "spec": {"containers": [{"name": "kube-apiserver", "image": image, "imagePullPolicy": "Never",
                 "command": ["kube-apiserver", "--authorization-mode=AlwaysAllow", "--profiling=false"]}]},
    });
    std::fs::write(&manifest, serde_json::to_string(&spec).unwrap()).unwrap();
    wait_for(
        "the kubelet's mirror pod",
        Duration::from_secs(60),
        || async { pods.get_opt(&mirror).await.ok().flatten() },
    )
    .await;
    let reports = control_plane_reports(&admin_kubeconfig());
    let on_node = reports
        .iter()
        .find(|r| r["node"] == json!(node))
        .unwrap_or_else(|| panic!("a report for {node}: {reports:?}"));
    let results = by_rule(on_node);
    assert_eq!(
        results["cis.1.2.6"]["status"], "fail",
        "{}",
        results["cis.1.2.6"]
    );
    assert_eq!(results["cis.1.2.6"]["actual"], "AlwaysAllow");
    assert_eq!(results["cis.1.2.6"]["source"], "--authorization-mode");
    assert_eq!(
        results["cis.1.2.15"]["status"], "pass",
        "{}",
        results["cis.1.2.15"]
    ); // --profiling=false
       // Files are not visible from the API: not assessable, never passed.
    assert_eq!(results["cis.1.1.1"]["status"], "not-assessable");
    assert_eq!(results["cis.4.2.1"]["status"], "not-assessable");
    drop(static_pod);
    wait_for("the mirror pod gone", Duration::from_secs(60), || async {
        pods.get_opt(&mirror)
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await;
    let reports = control_plane_reports(&admin_kubeconfig());
    assert_eq!(reports.len(), 1, "only the probes: {reports:?}");
    assert!(reports[0]["notes"]
        .to_string()
        .contains("no control-plane mirror pods"));

    // The Node-authorizer probe: denied, then allowed through an RBAC grant to every node.
    let node_secret = |reports: &[Value]| by_rule(&reports[0])["cis.1.2.7"].clone();
    assert_eq!(
        node_secret(&reports)["status"],
        "pass",
        "{}",
        node_secret(&reports)
    );
    let name = common::unique("nodes-read-secrets");
    common::apply_value(&client, &json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view-secrets-e2e"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}],
    })).await;
    common::apply_value(
        &client,
        &json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "view-secrets-e2e"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
        }),
    )
    .await;
    let granted = wait_for(
        "the probe sees the grant",
        Duration::from_secs(30),
        || async {
            let r = node_secret(&control_plane_reports(&admin_kubeconfig()));
            (r["status"] == "fail").then_some(r)
        },
    )
    .await;
    assert!(
        granted["reason"].as_str().unwrap().contains(&name),
        "{granted}"
    );
    let bindings: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> = Api::all(client.clone());
    bindings
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(client.clone());
    roles
        .delete("view-secrets-e2e", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        "the probe passes again",
        Duration::from_secs(30),
        || async {
            let r = node_secret(&control_plane_reports(&admin_kubeconfig()));
            (r["status"] == "pass").then_some(())
        },
    )
    .await;
}

const OPENREPORTS: &str = "github.com/openreports/reports-api@v0.2.1";

/// The OpenReports ClusterReport CRD, from its Go module (as tests/e2e/reports_e2e.rs does).
async fn install_cluster_report_crd(client: &kube::Client) {
    common::install_module_crds(
        client,
        OPENREPORTS,
        "config/crd/openreports.io_clusterreports.yaml",
    )
    .await;
    let reports = Api::<kube::api::DynamicObject>::all_with(
        client.clone(),
        &palisade::node::cluster_report::cluster_report_resource(),
    );
    wait_for("ClusterReports served", Duration::from_secs(60), || async {
        reports.list(&Default::default()).await.ok().map(|_| ())
    })
    .await;
}

/// deploy/node's DaemonSet, as a pod of the real node, publishes its node's report (the same
/// verdicts as the host run); with a token bound to that pod, writing another node's report
/// is refused by deploy/node's admission policy, writing its own is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_daemonset_publishes_its_own_report_and_no_other() {
    let _serial = common::serial::module(module_path!());
    let _alone = NODE_NAMESPACE.lock().await;
    let client = client().await;
    let _cleanup = Cleanup(client.clone());
    install_cluster_report_crd(&client).await;
    for file in [
        "namespace.yaml",
        "serviceaccount.yaml",
        "networkpolicy.yaml",
        "rbac.yaml",
        "admission.yaml",
    ] {
        apply(file, |_| {});
    }
    apply("daemonset.yaml", |ds| {
        let c = &mut ds["spec"]["template"]["spec"]["containers"][0];
        common::node::use_local_image(c);
        c["args"].as_array_mut().unwrap().push(json!(test_plane()));
    });
    let node = node_name();
    let name = format!("palisade-node-{node}");
    let reports = Api::<kube::api::DynamicObject>::all_with(
        client.clone(),
        &palisade::node::cluster_report::cluster_report_resource(),
    );
    let _ = reports.delete(&name, &DeleteParams::default()).await;
    let published = wait_for(
        "the node's ClusterReport",
        Duration::from_secs(180),
        || async { reports.get_opt(&name).await.ok().flatten() },
    )
    .await;
    let published: BTreeMap<String, String> = published.data["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let status = match r["result"].as_str().unwrap() {
                "skip" => "not-assessable",
                other => other,
            };
            (r["rule"].as_str().unwrap().to_string(), status.to_string())
        })
        .collect();
    let host: BTreeMap<String, String> = by_rule(&host_report())
        .into_iter()
        .map(|(k, v)| (k, v["status"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(published, host);
    assert_eq!(
        published_scope(&reports, &name).await,
        json!({"apiVersion": "v1", "kind": "Node", "name": node})
    );
    let uid = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .get(&node)
        .await
        .unwrap()
        .metadata
        .uid;
    assert_eq!(
        owner_uids(&reports.get(&name).await.unwrap()),
        [uid.unwrap()],
        "owned by its Node"
    );

    // The forgery: the agent's identity, bound to its pod, writing another node's report.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), NS);
    let pod = pods
        .list(&kube::api::ListParams::default().labels("app.kubernetes.io/name=palisade-node"))
        .await
        .unwrap()
        .items
        .into_iter()
        .next()
        .expect("the DaemonSet's pod");
    let kubeconfig = tempfile::NamedTempFile::new().unwrap();
    common::bound_service_account_kubeconfig(
        &client,
        NS,
        "palisade-node",
        Some(&kube::ResourceExt::name_any(&pod)),
        kubeconfig.path(),
    )
    .await;
    let agent = {
        let file = kube::config::Kubeconfig::read_from(kubeconfig.path()).unwrap();
        let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    };
    let as_agent = Api::<kube::api::DynamicObject>::all_with(
        agent,
        &palisade::node::cluster_report::cluster_report_resource(),
    );
    let report = |name: &str| {
        json!({"apiVersion": "openreports.io/v1alpha1", "kind": "ClusterReport",
               "metadata": {"name": name}, "results": []})
    };
    let ssa = kube::api::PatchParams::apply("forger").force();
    // The API server enforces a just-applied admission policy once its policy informer has
    // compiled it; a dry run goes through admission too, so wait for that without writing.
    wait_for(
        "the admission policy in effect",
        Duration::from_secs(30),
        || async {
            as_agent
                .patch(
                    "palisade-node-another-node",
                    &ssa.clone().dry_run(),
                    &kube::api::Patch::Apply(report("palisade-node-another-node")),
                )
                .await
                .err()
        },
    )
    .await;
    let forged = as_agent
        .patch(
            "palisade-node-another-node",
            &ssa,
            &kube::api::Patch::Apply(report("palisade-node-another-node")),
        )
        .await
        .expect_err("another node's report must be refused");
    assert!(
        forged.to_string().contains("only its own node's report"),
        "{forged}"
    );
    as_agent
        .patch(&name, &ssa, &kube::api::Patch::Apply(report(&name)))
        .await
        .expect("its own report is its to write");
    assert!(reports
        .get_opt("palisade-node-another-node")
        .await
        .unwrap()
        .is_none());
    let _ = reports.delete(&name, &DeleteParams::default()).await;
}
fn owner_uids(report: &kube::api::DynamicObject) -> Vec<String> {
    report
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|o| o.kind == "Node" && o.api_version == "v1")
        .map(|o| o.uid.clone())
        .collect()
}

/// A node's report goes with its Node (the garbage collector, through the owner reference the
/// publisher sets): a Node object without a kubelet stands in for a node leaving the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_report_is_removed_with_its_node() {
    let _serial = common::serial::module(module_path!());
    // The stand-in Node would get a pod of deploy/node's DaemonSet if that test ran now.
    let _alone = NODE_NAMESPACE.lock().await;
    let client = client().await;
    install_cluster_report_crd(&client).await;
    let node = common::unique("palisade-gone-node");
    let nodes = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone());
    let created = nodes
        .create(
            &Default::default(),
            &serde_json::from_value(json!({"metadata": {"name": node}})).unwrap(),
        )
        .await
        .unwrap();
    node_run(&["--publish", "--node-name", &node, &test_plane()]);
    let reports = Api::<kube::api::DynamicObject>::all_with(
        client.clone(),
        &palisade::node::cluster_report::cluster_report_resource(),
    );
    let name = format!("palisade-node-{node}");
    let report = reports.get(&name).await.unwrap();
    assert_eq!(owner_uids(&report), [created.metadata.uid.unwrap()]);

    nodes.delete(&node, &DeleteParams::default()).await.unwrap();
    wait_for(
        "the report gone with its node",
        Duration::from_secs(120),
        || async { reports.get_opt(&name).await.ok()?.is_none().then_some(()) },
    )
    .await;
}

async fn published_scope(reports: &Api<kube::api::DynamicObject>, name: &str) -> Value {
    reports.get(name).await.unwrap().data["scope"].clone()
}
