//! Default deny never breaks admission: an admission webhook served from a covered namespace
//! keeps ingress from the control plane (the API server's EndpointSlice addresses) on its
//! target port, and nothing else reaches it. On the real node, with a real TLS webhook (the
//! probe image) consulted by the API server for ConfigMaps of another namespace.
//!
//! kube-router always admits traffic from the node's own addresses to local pods, and this
//! node's API server is a host process, so here the webhook would keep working even without the
//! allowance; the engine, over the live objects, shows that default deny alone would cut the API
//! server off (as on clusters whose control plane is elsewhere) and the allowance restores exactly
//! that path. (`scripts/test`; feature `node`.)
#![cfg(feature = "node")]

use crate::common;

use common::node::{
    create_pod, exec_probe, kubectl, pod_ip, probe_container, probe_pod, wait_ready, ENFORCED,
};
use common::{apply_value, client, install_crd, unique, wait_for, Operator, TestNamespace};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use palisade::crd::SecurityBaseline;
use palisade::policy::netpol::universe::UniverseBuilder;
use palisade::policy::netpol::{Endpoint, Protocol, Side};
use palisade::policy::object::Object;
use palisade::policy::workload::Workload;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TEST_LABEL: &str = "palisade-test-webhook";
const TARGET_LABEL: &str = "palisade-test-webhook-target";
const ID_LABEL: &str = "palisade-test-id";

/// Deletes the webhook configuration even when the test fails (it fails ConfigMap creation in
/// its target namespace closed).
struct WebhookGuard(Client, String);

impl Drop for WebhookGuard {
    fn drop(&mut self) {
        let (client, name) = (self.0.clone(), self.1.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let api: Api<ValidatingWebhookConfiguration> = Api::all(client);
                    let _ = api.delete(&name, &DeleteParams::default()).await;
                })
        })
        .join();
    }
}

async fn create_configmap(client: &Client, ns: &str, name: &str) -> Result<(), String> {
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    match Api::<ConfigMap>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &cm)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) => Err(e.message),
        Err(e) => Err(e.to_string()),
    }
}

/// The webhook is consulted: `deny-*` is refused with its message, anything else admitted.
async fn assert_webhook_consulted(client: &Client, ns: &str, n: u32) {
    let refused = create_configmap(client, ns, &format!("deny-{n}")).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|m| m.contains("palisade-probe webhook")),
        "the webhook refuses deny-{n}: {refused:?}"
    );
    create_configmap(client, ns, &format!("ok-{n}"))
        .await
        .unwrap_or_else(|e| panic!("admission through the webhook fails: {e}"));
}

async fn api_server_address(client: &Client) -> std::net::IpAddr {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let s = slices.get("kubernetes").await.unwrap();
    s.endpoints[0].addresses[0].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admission_webhook_in_a_default_deny_namespace_keeps_its_control_plane_ingress() {
    let _serial = common::serial::module(module_path!());
    let client = client().await;
    install_crd(&client).await;
    let id = unique("hook");
    let hooks = TestNamespace::new(&client, "hooks", &[(TEST_LABEL, &id)]).await;
    let target = TestNamespace::new(&client, "hook-target", &[(TARGET_LABEL, &id)]).await;
    let other = TestNamespace::new(&client, "hook-other", &[]).await;
    let h = hooks.name.as_str();

    let dns = format!("hook.{h}.svc");
    let mut server = probe_container("probe", &["webhook", "--port", "8443", "--dns", &dns]);
    server["ports"] = json!([{"containerPort": 8443, "name": "https", "protocol": "TCP"}]);
    server["readinessProbe"] = json!({"tcpSocket": {"port": 8443}, "periodSeconds": 1});
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "hook", "labels": {"app": "hook"}},
        "spec": {"automountServiceAccountToken": false, "terminationGracePeriodSeconds": 1,
                 "containers": [server]}});
    create_pod(&client, h, &pod).await;
    create_pod(
        &client,
        &other.name,
        &probe_pod("client", json!({"app": "client"}), &["sleep"]),
    )
    .await;
    let hook_ip = pod_ip(&wait_ready(&client, h, "hook").await);
    wait_ready(&client, &other.name, "client").await;
    apply_value(
        &client,
        &json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "hook", "namespace": h},
        "spec": {"selector": {"app": "hook"}, "ports": [{"port": 443, "targetPort": "https"}]}}),
    )
    .await;
    let logs = kubectl().args(["logs", "-n", h, "hook"]).output().unwrap();
    let first: Value = serde_json::from_slice(logs.stdout.split(|b| *b == b'\n').next().unwrap())
        .expect("the webhook prints its CA bundle first");
    let config_name = format!("palisade-test-{id}");
    let _guard = WebhookGuard(client.clone(), config_name.clone());
    apply_value(&client, &json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": config_name},
        "webhooks": [{
            "name": "probe.palisade.dev",
            "clientConfig": {"service": {"namespace": h, "name": "hook", "path": "/validate", "port": 443},
                             "caBundle": first["caBundle"]},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
            "namespaceSelector": {"matchLabels": {TARGET_LABEL: id}},
            "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"], "timeoutSeconds": 5
        }]
    })).await;
    // The API server picks the configuration up asynchronously.
    wait_for(
        "the webhook is consulted",
        Duration::from_secs(30),
        || async {
            create_configmap(&client, &target.name, "deny-0")
                .await
                .err()
                .filter(|m| m.contains("palisade-probe webhook"))
        },
    )
    .await;
    assert_webhook_consulted(&client, &target.name, 1).await;
    let reach = |ns: String| {
        let t = format!("{hook_ip}:8443");
        move || exec_probe(&ns, "client", &["connect", "--timeout", "1s", &t]).ok
    };
    assert!(
        reach(other.name.clone())(),
        "before the baseline any pod reaches the webhook"
    );

    // The sample baseline (Enforce: default deny) over the webhook's namespace.
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/baseline.yaml"))
            .unwrap();
    let mut b: Value = serde_yaml_ng::from_str(&text).unwrap();
    b["metadata"] = json!({"name": id, "labels": {ID_LABEL: id}});
    b["spec"]["namespaceSelector"] = json!({"matchLabels": {TEST_LABEL: id}});
    apply_value(&client, &b).await;
    let selector = format!("{ID_LABEL}={id}");
    let mut op = Operator::start(&["--baseline-selector", &selector]);
    op.wait_ready().await;
    let baselines: Api<SecurityBaseline> = Api::all(client.clone());
    let status = wait_for(
        "the webhook allowance in status",
        Duration::from_secs(90),
        || async {
            let s = baselines.get(&id).await.ok()?.status?;
            s.allowances
                .iter()
                .any(|a| a.contains("palisade-allow-webhook-hook"))
                .then_some(s)
        },
    )
    .await;
    let line = status
        .allowances
        .iter()
        .find(|a| a.contains("webhook"))
        .unwrap();
    assert!(
        line.contains(&format!("ValidatingWebhookConfiguration/{config_name}")),
        "{line}"
    );

    // Nothing but the control plane reaches the webhook now; admission still works.
    let deadline = Instant::now() + ENFORCED;
    let blocked = reach(other.name.clone());
    while tokio::task::spawn_blocking(blocked.clone()).await.unwrap() {
        assert!(
            Instant::now() < deadline,
            "another namespace's pod still reaches the webhook"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_webhook_consulted(&client, &target.name, 2).await;

    // The engine over the live objects: the API server's address reaches the webhook port only
    // through the allowance; without it, default deny would refuse it.
    let api_ip = api_server_address(&client).await;
    let ns_obj = Api::<Namespace>::all(client.clone()).get(h).await.unwrap();
    let hook_pod = Api::<Pod>::namespaced(client.clone(), h)
        .get("hook")
        .await
        .unwrap();
    let policies = Api::<NetworkPolicy>::namespaced(client.clone(), h)
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    let verdict = |policies: Vec<NetworkPolicy>| {
        let mut b = UniverseBuilder::default();
        b.add(&Object::Namespace(Arc::new(ns_obj.clone())), true);
        b.add(
            &Object::Workload(Workload::Pod(Arc::new(hook_pod.clone()))),
            true,
        );
        b.add_policies(policies);
        let (c, invalid) = b.build();
        assert!(invalid.is_empty(), "{invalid:?}");
        let hook = Endpoint::Pod(c.pod_index(h, "hook").unwrap());
        c.verdict(Endpoint::Ip(api_ip), hook, 8443, Protocol::Tcp)
            .ingress
    };
    let allowance = format!("{h}/palisade-allow-webhook-hook");
    match verdict(policies.clone()) {
        Side::Allowed(rules) => assert!(rules.iter().all(|r| r.policy == allowance), "{rules:?}"),
        other => panic!("the API server must reach the webhook: {other:?}"),
    }
    let without: Vec<NetworkPolicy> = policies
        .into_iter()
        .filter(|p| p.metadata.name.as_deref() != Some("palisade-allow-webhook-hook"))
        .collect();
    assert!(
        matches!(verdict(without), Side::Denied(_)),
        "default deny alone refuses the API server"
    );
    op.assert_never_forbidden();
}
