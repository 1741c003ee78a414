//! Palisade from its own container image, installed from deploy/base, running as pods on the real
//! node: it becomes Ready through its own NetworkPolicies, leads with its Lease, and the
//! default-deny it generates stops a real connection while DNS keeps working.
//! (`scripts/test` builds the image and starts `scripts/control-plane up --node`; feature `node`.)
#![cfg(feature = "node")]

use crate::common;

use common::node::{
    connect, create_pod, exec_probe, kubectl, probe_pod, server_pod, wait_connect, wait_ready,
};
use common::{
    apply_documents, audit_offset, client, forbidden_requests, install_crd, unique, wait_for,
    TestNamespace, ROOT,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use palisade::crd::SecurityBaseline;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

const NS: &str = "palisade-system";
const ROLLOUT: Duration = Duration::from_secs(120);

/// deploy/base as kustomize renders it, with the image imported into the node and a baseline
/// selector so the in-cluster operator reconciles only this test's baseline.
fn deploy_base(id: &str) -> String {
    let out = kubectl()
        .args(["kustomize", &format!("{ROOT}/deploy/base")])
        .output()
        .expect("kubectl kustomize");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&yaml) {
        let mut v = Value::deserialize(doc).unwrap();
        if v["kind"] == "Deployment" {
            let c = &mut v["spec"]["template"]["spec"]["containers"][0];
            common::node::use_local_image(c);
            c["args"]
                .as_array_mut()
                .unwrap()
                .push(json!(format!("--baseline-selector=palisade-test-id={id}")));
        }
        docs.push(serde_yaml_ng::to_string(&v).unwrap());
    }
    docs.join("---\n")
}

/// Removes the in-cluster operator when the test ends, pass or fail (the namespace and RBAC stay:
/// other tests share them).
struct InCluster {
    client: Client,
}

impl Drop for InCluster {
    fn drop(&mut self) {
        let client = self.client.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            tokio::task::block_in_place(|| {
                handle.block_on(async move {
                    let api: Api<Deployment> = Api::namespaced(client, NS);
                    let _ = api.delete("palisade", &DeleteParams::default()).await;
                })
            });
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palisade_from_its_own_image_enforces_default_deny_on_the_real_data_plane() {
    let _serial = common::serial::module(module_path!());
    let client = client().await;
    install_crd(&client).await;
    let id = unique("incluster");
    let audit_from = audit_offset();

    // A namespace with a server and a client, talking before any baseline exists.
    let ns = TestNamespace::new(&client, "incluster", &[("palisade-test", &id)]).await;
    let n = ns.name.as_str();
    let server = server_pod("server", json!({"app": "server"}), "8080", "");
    create_pod(&client, n, &server).await;
    create_pod(&client, n, &probe_pod("client", json!({}), &["sleep"])).await;
    let server_ip = common::node::pod_ip(&wait_ready(&client, n, "server").await);
    wait_ready(&client, n, "client").await;
    let target = format!("{server_ip}:8080");
    let before = connect(n, "client", &target);
    assert!(
        before.ok,
        "client -> server before the baseline: {}",
        before.out
    );
    let dns = exec_probe(
        n,
        "client",
        &["resolve", "kubernetes.default.svc.cluster.local"],
    );
    assert!(dns.ok, "DNS before the baseline: {}", dns.out);

    apply_documents(&client, &deploy_base(&id)).await;
    let _cleanup = InCluster {
        client: client.clone(),
    };
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    wait_for(
        "the in-cluster operator: 2 ready replicas",
        ROLLOUT,
        || async {
            let d = deployments.get("palisade").await.ok()?;
            (d.status?.ready_replicas? == 2).then_some(())
        },
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let names: Vec<String> = pods
        .list(&Default::default())
        .await
        .unwrap()
        .iter()
        .filter(|p| {
            p.labels().get("app.kubernetes.io/name").map(String::as_str) == Some("palisade")
        })
        .map(|p| p.name_any())
        .collect();
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    let holder = wait_for("a replica holding palisade-leader", ROLLOUT, || async {
        let holder = leases
            .get("palisade-leader")
            .await
            .ok()?
            .spec?
            .holder_identity?;
        names.contains(&holder).then_some(holder)
    })
    .await;
    eprintln!("in-cluster leader: {holder} of {names:?}");

    let baseline = json!({
        "apiVersion": "palisade.dev/v1alpha1",
        "kind": "SecurityBaseline",
        "metadata": {"name": id, "labels": {"palisade-test-id": id}},
        "spec": {"enforcement": "Enforce", "namespaceSelector": {"matchLabels": {"palisade-test": id}}},
    });
    let baselines: Api<SecurityBaseline> = Api::all(client.clone());
    baselines
        .patch(
            &id,
            &PatchParams::apply("palisade-tests").force(),
            &Patch::Apply(&baseline),
        )
        .await
        .unwrap();
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), n);
    wait_for("generated palisade-default-deny", ROLLOUT, || async {
        policies
            .get_opt("palisade-default-deny")
            .await
            .ok()?
            .map(|_| ())
    })
    .await;

    // The generated default deny is enforced: the connection that worked is refused now ...
    wait_connect(n, "client", &target, false).await;
    // ... while names still resolve (the generated DNS exception works on the real data plane).
    let dns = exec_probe(
        n,
        "client",
        &["resolve", "kubernetes.default.svc.cluster.local"],
    );
    assert!(dns.ok, "DNS under the generated default deny: {}", dns.out);

    // And a privileged pod no longer gets in (Pod Security labels, admission policy).
    let mut privileged = probe_pod("privileged", json!({}), &["sleep"]);
    privileged["spec"]["containers"][0]["securityContext"] = json!({"privileged": true});
    let denied = wait_for("admission to reject a privileged pod", ROLLOUT, || async {
        let pod: Pod = serde_json::from_value(privileged.clone()).unwrap();
        match Api::<Pod>::namespaced(client.clone(), n)
            .create(&PostParams::default(), &pod)
            .await
        {
            Err(kube::Error::Api(e)) if e.code == 403 || e.code == 422 => Some(e.message),
            Ok(_) => {
                let _ = Api::<Pod>::namespaced(client.clone(), n)
                    .delete("privileged", &DeleteParams::default())
                    .await;
                None
            }
            Err(_) => None,
        }
    })
    .await;
    assert!(denied.contains("privileged"), "{denied}");

    // The baseline goes while the operator runs (it removes its finalizer).
    baselines
        .delete(&id, &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the baseline deleted", ROLLOUT, || async {
        baselines.get_opt(&id).await.ok()?.is_none().then_some(())
    })
    .await;
    let denied = forbidden_requests(audit_from);
    assert!(
        denied.is_empty(),
        "the in-cluster operator was denied: {denied:?}"
    );
}
