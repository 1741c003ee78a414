//! Proof that the test cluster's node is real: pods run on containerd + runc, talk over the CNI
//! bridge, resolve names through CoreDNS, reach Services through kube-proxy, are filtered by
//! kube-router, run with the kernel hardening their securityContext asks for, the kubelet is
//! held to Node authorization, and nothing a pod sends leaves the machine.
//! (`scripts/test` starts `scripts/control-plane up --node`; feature `node`.)
#![cfg(feature = "node")]

use crate::common;

use common::node::{
    connect, create_pod, exec_probe, kubectl, node_name, pod_ip, probe_bin, probe_pod, server_pod,
    wait_connect, wait_ready, POD_READY,
};
use common::{apply_value, client, wait_for, TestNamespace};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_pods_become_ready_and_a_service_reaches_them_by_ip_and_dns_name() {
    let _serial = common::serial::module(module_path!());
    let client = client().await;
    let ns = TestNamespace::new(&client, "node-svc", &[]).await;
    let n = ns.name.as_str();
    let mut pod = server_pod("x", json!({"app": "web"}), "8080", "");
    let template = json!({"metadata": {"labels": {"app": "web"}}, "spec": pod["spec"].take()});
    apply_value(&client, &json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": n},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template}
        }),
    )
    .await;
    apply_value(
        &client,
        &json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": n},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
        }),
    )
    .await;
    create_pod(&client, n, &probe_pod("client", json!({}), &["sleep"])).await;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), n);
    wait_for("Deployment web: 2 ready replicas", POD_READY, || async {
        let d = deployments.get("web").await.ok()?;
        (d.status?.ready_replicas? == 2).then_some(())
    })
    .await;
    wait_ready(&client, n, "client").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), n);
    for p in pods.list(&Default::default()).await.unwrap() {
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some(node_name().as_str()));
        assert!(p.status.unwrap().pod_ip.unwrap().starts_with("10.244.0."));
    }

    let cluster_ip = Api::<Service>::namespaced(client.clone(), n)
        .get("web")
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    // Ready pods come before kube-proxy has programmed their endpoints: wait for the Service.
    wait_connect(n, "client", &format!("{cluster_ip}:80"), true).await;
    // kube-proxy balances across both replicas: each answers with its own hostname.
    let mut backends = BTreeSet::new();
    for _ in 0..40 {
        let p = connect(n, "client", &format!("{cluster_ip}:80"));
        assert!(p.ok, "ClusterIP {cluster_ip}:80 did not answer: {}", p.out);
        backends.insert(p.out["banner"].as_str().unwrap().to_string());
        if backends.len() == 2 {
            break;
        }
    }
    assert_eq!(backends.len(), 2, "one Service, two backends: {backends:?}");

    let fqdn = format!("web.{n}.svc.cluster.local");
    let r = exec_probe(n, "client", &["resolve", &fqdn]);
    assert!(r.ok, "CoreDNS did not resolve {fqdn}: {}", r.out);
    assert_eq!(r.out["addresses"], json!([cluster_ip]));
    let by_name = connect(n, "client", &format!("web.{n}:80"));
    assert!(by_name.ok, "Service by its short name: {}", by_name.out);
    assert!(by_name.out["banner"]
        .as_str()
        .unwrap()
        .starts_with("palisade-probe web-"));
    // Nothing outside the cluster's zone is answered (no upstream resolver).
    let outside = exec_probe(n, "client", &["resolve", "palisade.invalid"]);
    assert!(
        !outside.ok,
        "a name outside the cluster resolved: {}",
        outside.out
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_deny_blocks_and_an_allow_policy_reopens_exactly_the_declared_peer_and_port() {
    let _serial = common::serial::module(module_path!());
    let client = client().await;
    let ns = TestNamespace::new(&client, "node-np", &[]).await;
    let other_ns = TestNamespace::new(&client, "node-np-other", &[]).await;
    let (n, o) = (ns.name.as_str(), other_ns.name.as_str());
    create_pod(
        &client,
        n,
        &server_pod("db", json!({"app": "db"}), "5432,9090", "5353"),
    )
    .await;
    create_pod(
        &client,
        n,
        &probe_pod("api", json!({"app": "api"}), &["sleep"]),
    )
    .await;
    create_pod(
        &client,
        n,
        &probe_pod("web", json!({"app": "web"}), &["sleep"]),
    )
    .await;
    // Same labels as the allowed peer, but another namespace: a podSelector-only peer must not
    // select it.
    create_pod(
        &client,
        o,
        &probe_pod("api", json!({"app": "api"}), &["sleep"]),
    )
    .await;
    let db_ip = pod_ip(&wait_ready(&client, n, "db").await);
    for (namespace, pod) in [(n, "api"), (n, "web"), (o, "api")] {
        wait_ready(&client, namespace, pod).await;
    }
    let sql = format!("{db_ip}:5432");
    let admin = format!("{db_ip}:9090");
    let udp = format!("udp:{db_ip}:5353");
    let all = [
        (n, "api", &sql),
        (n, "api", &admin),
        (n, "api", &udp),
        (n, "web", &sql),
        (o, "api", &sql),
    ];

    // Before any policy: everything reaches the database pod.
    for (namespace, pod, target) in all {
        let p = connect(namespace, pod, target);
        assert!(
            p.ok,
            "{namespace}/{pod} -> {target} before any policy: {}",
            p.out
        );
    }

    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), n);
    apply_value(
        &client,
        &json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny", "namespace": n},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}
        }),
    )
    .await;
    wait_connect(n, "api", &sql, false).await;
    for (namespace, pod, target) in all {
        let p = connect(namespace, pod, target);
        assert!(
            !p.ok,
            "{namespace}/{pod} -> {target} under default deny: {}",
            p.out
        );
    }

    apply_value(
        &client,
        &json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "api-to-db", "namespace": n},
            "spec": {
                "podSelector": {"matchLabels": {"app": "db"}},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "api"}}}],
                             "ports": [{"port": 5432, "protocol": "TCP"}]}]
            }
        }),
    )
    .await;
    let opened = wait_connect(n, "api", &sql, true).await;
    assert!(opened.out["banner"]
        .as_str()
        .unwrap()
        .starts_with("palisade-probe db 5432"));
    for (namespace, pod, target) in all.into_iter().skip(1) {
        let p = connect(namespace, pod, target);
        assert!(
            !p.ok,
            "{namespace}/{pod} -> {target} is not what the allow rule declares: {}",
            p.out
        );
    }

    // Without the policies everything flows again: the blocks were the policies' doing.
    for name in ["default-deny", "api-to-db"] {
        policies
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    for (namespace, pod, target) in all {
        wait_connect(namespace, pod, target, true).await;
    }
}

/// The pod's containers and their /proc/self/status, as the kernel sees them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_hardening_is_what_the_security_context_asks_for() {
    let _serial = common::serial::module(module_path!());
    let client = client().await;
    let ns = TestNamespace::new(&client, "node-hard", &[]).await;
    let n = ns.name.as_str();

    // The probe image runs as root: runAsNonRoot without a runAsUser must be refused.
    let mut root = probe_pod("root", json!({}), &["sleep"]);
    root["spec"]["containers"][0]["securityContext"] = json!({"runAsNonRoot": true});
    create_pod(&client, n, &root).await;
    let hardened = probe_pod("hardened", json!({}), &["sleep"]);
    create_pod(&client, n, &hardened).await;
    // The same uid with none of the hardening: what an attacker gets without it.
    let mut lax = probe_pod("lax", json!({}), &["sleep"]);
    lax["spec"]["containers"][0]["securityContext"] = json!({"runAsUser": 1000});
    create_pod(&client, n, &lax).await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), n);
    let refusal = wait_for(
        "the kubelet to refuse the root container",
        POD_READY,
        || async {
            let pod = pods.get("root").await.ok()?;
            let waiting = pod
                .status?
                .container_statuses?
                .first()?
                .state
                .clone()?
                .waiting?;
            (waiting.reason.as_deref() == Some("CreateContainerConfigError"))
                .then(|| waiting.message.unwrap_or_default())
        },
    )
    .await;
    assert!(
        refusal.contains("runAsNonRoot") && refusal.contains("root"),
        "unexpected refusal: {refusal}"
    );

    wait_ready(&client, n, "hardened").await;
    wait_ready(&client, n, "lax").await;
    let status = exec_probe(n, "hardened", &["status"]).out;
    assert_eq!(status["uid"], 1000);
    assert_eq!(status["NoNewPrivs"], "1", "allowPrivilegeEscalation: false");
    assert_eq!(
        status["Seccomp"], "2",
        "seccompProfile RuntimeDefault is a filter"
    );
    assert_eq!(
        status["CapEff"], "0000000000000000",
        "capabilities drop ALL"
    );
    let write = exec_probe(n, "hardened", &["write", "/tmp/owned"]);
    assert!(
        !write.ok,
        "wrote to a read-only root filesystem: {}",
        write.out
    );
    assert!(
        write.out["error"]
            .as_str()
            .unwrap()
            .contains("read-only file system"),
        "{}",
        write.out
    );

    let status = exec_probe(n, "lax", &["status"]).out;
    assert_eq!(status["uid"], 1000);
    assert_eq!(status["NoNewPrivs"], "0");
    assert_eq!(status["Seccomp"], "0");
    let write = exec_probe(n, "lax", &["write", "/tmp/owned"]);
    assert!(write.ok, "the writable root filesystem: {}", write.out);
}

/// A client with the kubelet's own credentials (system:node:<name>, group system:nodes).
async fn kubelet_client() -> Client {
    let path = std::env::var("PALISADE_NODE_KUBECONFIG").expect("PALISADE_NODE_KUBECONFIG");
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("the kubelet kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("a config from the kubelet kubeconfig");
    Client::try_from(config).expect("a kubelet client")
}

fn status_code(result: Result<Secret, kube::Error>) -> u16 {
    match result {
        Ok(_) => 200,
        Err(kube::Error::Api(e)) => e.code,
        Err(e) => panic!("unexpected error reading a Secret as the kubelet: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubelet_reads_only_the_secrets_of_pods_on_its_node() {
    let _serial = common::serial::module(module_path!());
    let client = client().await;
    let ns = TestNamespace::new(&client, "node-authz", &[]).await;
    let n = ns.name.as_str();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), n);
    for name in ["mounted", "unrelated"] {
        let s: Secret = serde_json::from_value(json!({
            "metadata": {"name": name}, "stringData": {"k": "v"}
        }))
        .unwrap();
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    let as_kubelet: Api<Secret> = Api::namespaced(kubelet_client().await, n);
    assert_eq!(status_code(as_kubelet.get("mounted").await), 403);

    let mut pod = probe_pod("uses-secret", json!({}), &["sleep"]);
    pod["spec"]["volumes"] = json!([{"name": "s", "secret": {"secretName": "mounted"}}]);
    pod["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "s", "mountPath": "/secret", "readOnly": true}]);
    create_pod(&client, n, &pod).await;
    wait_ready(&client, n, "uses-secret").await;

    wait_for(
        "the Node authorizer to allow the mounted Secret",
        POD_READY,
        || async { (status_code(as_kubelet.get("mounted").await) == 200).then_some(()) },
    )
    .await;
    assert_eq!(
        status_code(as_kubelet.get("unrelated").await),
        403,
        "a kubelet read a Secret no pod on its node uses"
    );
    // Nor may it list Secrets to find others.
    let list = as_kubelet.list(&Default::default()).await;
    assert!(
        matches!(&list, Err(kube::Error::Api(e)) if e.code == 403),
        "a kubelet listed Secrets: {:?}",
        list.map(|l| l.items.len())
    );
}

/// A host of our own outside the node: a network namespace behind a veth, with a route, so a
/// packet forwarded to it would arrive if nothing stopped it (and would stay on this machine).
struct OutsideHost {
    netns: String,
    server: Child,
    host_server: Child,
}

const OUTSIDE_IP: &str = "198.18.0.2";

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl OutsideHost {
    fn start(host_port: u16) -> Self {
        let netns = format!("pal-out-{}", std::process::id() % 100_000);
        let (host_if, ns_if) = ("pal-out-h", "pal-out-n");
        sh(&["ip", "netns", "add", &netns]);
        sh(&[
            "ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if,
        ]);
        sh(&["ip", "link", "set", ns_if, "netns", &netns]);
        sh(&["ip", "addr", "add", "198.18.0.1/30", "dev", host_if]);
        sh(&["ip", "link", "set", host_if, "up"]);
        let inside = ["ip", "netns", "exec", netns.as_str()];
        sh(&[
            &inside[..],
            &["ip", "addr", "add", "198.18.0.2/30", "dev", ns_if],
        ]
        .concat());
        sh(&[&inside[..], &["ip", "link", "set", ns_if, "up"]].concat());
        sh(&[&inside[..], &["ip", "link", "set", "lo", "up"]].concat());
        sh(&[
            &inside[..],
            &["ip", "route", "add", "default", "via", "198.18.0.1"],
        ]
        .concat());
        let server = Command::new("ip")
            .args([
                "netns",
                "exec",
                &netns,
                &probe_bin(),
                "serve",
                "--tcp",
                "8080",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        // A listener on every host address: pods may reach it on the node address only.
        let host_server = Command::new(probe_bin())
            .args(["serve", "--tcp", &host_port.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        OutsideHost {
            netns,
            server,
            host_server,
        }
    }
}

impl Drop for OutsideHost {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.host_server.kill();
        let _ = self.server.wait();
        let _ = self.host_server.wait();
        // the veth pair goes with its namespace
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", "pal-out-h"])
            .status();
    }
}

fn host_probe(target: &str) -> bool {
    Command::new(probe_bin())
        .args(["connect", "--timeout", "1s", target])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// The host's own addresses that are not the node's (e.g. the uplink).
fn uplink_addresses() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show", "scope", "global"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let dev = fields.get(1)?;
            let addr = fields.get(3)?.split('/').next()?;
            (!dev.starts_with("palisade") && !dev.starts_with("pal-out")).then(|| addr.to_string())
        })
        .collect()
}

fn guard_exception(add: bool) {
    // A hole in the node's guard for our own outside host only: shows the attack working
    // without the guard, without ever opening a path off the machine.
    if add {
        for side in ["daddr", "saddr"] {
            sh(&[
                "nft",
                &format!("insert rule inet palisade_node_guard forward ip {side} {OUTSIDE_IP} accept comment \"palisade-test-exception\""),
            ]);
        }
    } else {
        let out = Command::new("nft")
            .args([
                "-a",
                "list",
                "chain",
                "inet",
                "palisade_node_guard",
                "forward",
            ])
            .output()
            .unwrap();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.contains("palisade-test-exception") {
                let handle = line.rsplit("handle ").next().unwrap().trim();
                sh(&[
                    "nft",
                    "delete",
                    "rule",
                    "inet",
                    "palisade_node_guard",
                    "forward",
                    "handle",
                    handle,
                ]);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_reach_nothing_outside_the_pod_and_service_ranges() {
    let _serial = common::serial::module(module_path!());
    let client = client().await;
    let ns = TestNamespace::new(&client, "node-egress", &[]).await;
    let n = ns.name.as_str();
    let host_port = common::free_port();
    let outside = OutsideHost::start(host_port);
    create_pod(&client, n, &probe_pod("escape", json!({}), &["sleep"])).await;
    wait_ready(&client, n, "escape").await;
    let target = format!("{OUTSIDE_IP}:8080");
    wait_for("the outside host to listen", POD_READY, || async {
        host_probe(&target).then_some(())
    })
    .await;

    // The host itself is reachable on the node address: the pod network works.
    let node = connect(n, "escape", &format!("10.244.0.1:{host_port}"));
    assert!(node.ok, "the node address: {}", node.out);
    // Routed off the node: dropped by the guard ...
    let p = connect(n, "escape", &target);
    assert!(!p.ok, "a pod reached {target} beyond the node: {}", p.out);
    // ... and only by the guard: with an exception for this one host the packet gets there.
    guard_exception(true);
    let mut through = connect(n, "escape", &target);
    for _ in 0..10 {
        if through.ok {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        through = connect(n, "escape", &target);
    }
    guard_exception(false);
    assert!(
        through.ok,
        "without the guard the outside host should answer (else this test proves nothing): {}",
        through.out
    );
    let p = connect(n, "escape", &target);
    assert!(!p.ok, "the guard is back: {}", p.out);

    // The host's other addresses (the uplink) are not reachable from pods either.
    let uplinks = uplink_addresses();
    assert!(!uplinks.is_empty(), "no uplink address to test against");
    for addr in uplinks {
        let t = format!("{addr}:{host_port}");
        assert!(
            host_probe(&t),
            "the host listener answers on {t} from the host"
        );
        let p = connect(n, "escape", &t);
        assert!(!p.ok, "a pod reached the host's address {t}: {}", p.out);
    }
    drop(outside);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_and_exec_reach_the_kubelet() {
    let _serial = common::serial::module(module_path!());
    let client = client().await;
    let ns = TestNamespace::new(&client, "node-logs", &[]).await;
    let n = ns.name.as_str();
    let pod = probe_pod("talker", json!({}), &["serve", "--tcp", "8080"]);
    create_pod(&client, n, &pod).await;
    wait_ready(&client, n, "talker").await;
    let out = kubectl()
        .args(["logs", "-n", n, "talker"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("serving tcp=\"8080\""));
    let status = exec_probe(n, "talker", &["status"]);
    assert_eq!(status.out["hostname"], "talker");
}
