//! Service-mesh mTLS on the real local control plane with Istio's real CRDs (from the
//! istio.io/api Go module): the operator runs before they exist (nothing judged, nothing
//! failing), picks them up without a restart, and reports each effective-mode case as the
//! PeerAuthentications and DestinationRules change. The CRDs are removed at the end, so the
//! other test binaries see no mesh.

use crate::common;

use common::baseline::{apply_baseline, converged, get_baseline, ID_LABEL, TEST_LABEL};
use common::{install_crd, unique, wait_for, Operator, TestNamespace};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::PostParams;
use kube::{Api, Client};
use palisade::crd::SecurityBaselineStatus;
use palisade::policy::mesh::istio::PeerAuthentication;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);
/// Found at the watcher's next retry: its back-off tops out at 30 s.
const CRD_DEADLINE: Duration = Duration::from_secs(120);
const ISTIO_API: &str = "istio.io/api@v1.27.0";
const ISTIO_CRDS: &str = "kubernetes/customresourcedefinitions.gen.yaml";
const WATCHED: &[&str] = &[
    "peerauthentications.security.istio.io",
    "destinationrules.networking.istio.io",
];

/// Deletes Istio's CRDs (now, and when the test ends, pass or fail).
struct IstioCrds(Client);

impl IstioCrds {
    /// Every CRD the file installs.
    fn names() -> Vec<String> {
        common::crd_names(&common::go_module_file(ISTIO_API, ISTIO_CRDS))
    }

    async fn remove(client: &Client) {
        let names = IstioCrds::names();
        assert!(names.len() >= WATCHED.len(), "{names:?}");
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        common::remove_crds(client, &names).await;
    }

    async fn install(client: &Client) {
        common::install_module_crds(client, ISTIO_API, ISTIO_CRDS).await;
    }
}

impl Drop for IstioCrds {
    fn drop(&mut self) {
        let client = self.0.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            tokio::task::block_in_place(|| handle.block_on(IstioCrds::remove(&client)));
        }
    }
}

fn mesh_findings(s: &SecurityBaselineStatus) -> BTreeSet<(String, String)> {
    s.top_violations
        .iter()
        .filter(|v| v.rule.starts_with("mesh."))
        .map(|v| (v.rule.clone(), v.name.clone()))
        .collect()
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|(r, n)| (r.to_string(), n.to_string()))
        .collect()
}

/// The tests of this binary install and remove the same CRDs: one at a time.
static ISTIO: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A test's start: Palisade's CRD installed, Istio's absent (and removed again at the end).
async fn without_istio(client: &Client) -> IstioCrds {
    install_crd(client).await;
    IstioCrds::remove(client).await;
    IstioCrds(client.clone())
}

/// A Deployment `name` (no replicas: only its template is judged) in `ns`.
async fn deployment(client: &Client, ns: &str, name: &str) {
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "registry.example/app:1"}]}}},
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effective_mtls_modes_are_reported_once_istio_is_installed() {
    let _serial = common::serial::module(module_path!());
    let _one_at_a_time = ISTIO.lock().await;
    let client = common::client().await;
    let _cleanup = without_istio(&client).await;
    let id = unique("mesh");
    let meshed = TestNamespace::new(
        &client,
        "mesh",
        &[(TEST_LABEL, &id), ("istio-injection", "enabled")],
    )
    .await;
    let plain = TestNamespace::new(&client, "plain", &[(TEST_LABEL, &id)]).await;
    for (ns, name) in [
        (&meshed.name, "web"),
        (&meshed.name, "db"),
        (&plain.name, "legacy"),
    ] {
        deployment(&client, ns, name).await;
    }
    let quiet = json!({
        "podSecurity": {"level": "privileged", "readOnlyRootFilesystem": false,
                        "automountServiceAccountToken": true, "forbidDefaultServiceAccount": false},
        "network": {"defaultDeny": []},
        "rbac": {"audit": false},
    });
    apply_baseline(&client, &id, &id, &id, quiet).await;
    let mut op = Operator::start(&["--baseline-selector", &format!("{ID_LABEL}={id}")]);
    op.wait_ready().await;
    let findings = |want: BTreeSet<(String, String)>, deadline: Duration| {
        let client = client.clone();
        let id = id.clone();
        async move {
            wait_for(&format!("mesh findings {want:?}"), deadline, || async {
                let s = converged(&get_baseline(&client, &id).await?)?;
                (mesh_findings(&s) == want).then_some(())
            })
            .await
        }
    };
    // No Istio: nothing about the mesh.
    findings(set(&[]), DEADLINE).await;

    IstioCrds::install(&client).await;
    // Istio, no policy: PERMISSIVE in the meshed namespace, no sidecar in the plain one.
    let permissive = set(&[
        ("mesh.mtls-permissive", "web"),
        ("mesh.mtls-permissive", "db"),
        ("mesh.no-sidecar", "legacy"),
    ]);
    findings(permissive, CRD_DEADLINE).await;
    let peer = |name: &str, spec: serde_json::Value| {
        json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
               "metadata": {"name": name, "namespace": meshed.name}, "spec": spec})
    };
    // Namespace STRICT clears both; a workload policy with a PERMISSIVE port brings db back.
    common::apply_value(
        &client,
        &peer("default", json!({"mtls": {"mode": "STRICT"}})),
    )
    .await;
    findings(set(&[("mesh.no-sidecar", "legacy")]), DEADLINE).await;
    common::apply_value(
        &client,
        &peer(
            "db",
            json!({"selector": {"matchLabels": {"app": "db"}}, "mtls": {"mode": "UNSET"},
                   "portLevelMtls": {"5432": {"mode": "PERMISSIVE"}}}),
        ),
    )
    .await;
    findings(
        set(&[
            ("mesh.mtls-permissive", "db"),
            ("mesh.no-sidecar", "legacy"),
        ]),
        DEADLINE,
    )
    .await;
    // DISABLE namespace-wide; a client told to send plain text to db.
    common::apply_value(
        &client,
        &peer("default", json!({"mtls": {"mode": "DISABLE"}})),
    )
    .await;
    common::apply_value(
        &client,
        &json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                "metadata": {"name": "db-plain", "namespace": meshed.name},
                "spec": {"host": "db", "trafficPolicy": {"tls": {"mode": "DISABLE"}}}}),
    )
    .await;
    findings(
        set(&[
            ("mesh.mtls-disabled", "web"),
            // db's own policy is UNSET: it inherits DISABLE, and keeps its PERMISSIVE port.
            ("mesh.mtls-disabled", "db"),
            ("mesh.mtls-permissive", "db"),
            ("mesh.destination-rule-tls", "db-plain"),
            ("mesh.no-sidecar", "legacy"),
        ]),
        DEADLINE,
    )
    .await;
    // Istio removed: nothing judged again, without a restart.
    IstioCrds::remove(&client).await;
    findings(set(&[]), CRD_DEADLINE).await;
    op.assert_never_forbidden();
    common::baseline::delete_baseline(&client, &id).await;
}

fn degraded(s: &SecurityBaselineStatus) -> (String, String) {
    let c = s.conditions.iter().find(|c| c.type_ == "Degraded").unwrap();
    (c.status.clone(), c.reason.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mtls_is_generated_once_istio_is_installed_kept_and_pruned() {
    let _serial = common::serial::module(module_path!());
    let _one_at_a_time = ISTIO.lock().await;
    let client = common::client().await;
    let _cleanup = without_istio(&client).await;
    let id = unique("mtls");
    let ns = TestNamespace::new(
        &client,
        "mtls",
        &[(TEST_LABEL, &id), ("istio-injection", "enabled")],
    )
    .await;
    deployment(&client, &ns.name, "web").await;
    // Only the mesh is enforced: no other generated object gets in the way.
    let spec = |mesh: serde_json::Value| {
        json!({
            "enforcement": "Enforce",
            "podSecurity": {"level": "privileged", "readOnlyRootFilesystem": false,
                            "automountServiceAccountToken": true, "forbidDefaultServiceAccount": false,
                            "admission": {"namespaceLabels": false, "validatingAdmissionPolicy": false}},
            "network": {"defaultDeny": []},
            "rbac": {"audit": false},
            "mesh": mesh,
        })
    };
    apply_baseline(&client, &id, &id, &id, spec(json!({"mtls": "Strict"}))).await;
    let mut op = Operator::start(&["--baseline-selector", &format!("{ID_LABEL}={id}")]);
    op.wait_ready().await;
    let status_where = |what: &'static str, ok: fn(&SecurityBaselineStatus) -> bool, deadline| {
        let client = client.clone();
        let id = id.clone();
        async move {
            wait_for(what, deadline, || async {
                let s = converged(&get_baseline(&client, &id).await?)?;
                ok(&s).then_some(s)
            })
            .await
        }
    };
    // No Istio: nothing can be generated, and the status says so.
    status_where(
        "Degraded=KindNotServed",
        |s| degraded(s) == ("True".into(), "KindNotServed".into()),
        DEADLINE,
    )
    .await;

    IstioCrds::install(&client).await;
    let policies: Api<PeerAuthentication> = Api::namespaced(client.clone(), &ns.name);
    let generated = wait_for("palisade-mtls generated", CRD_DEADLINE, || async {
        policies.get_opt("palisade-mtls").await.ok().flatten()
    })
    .await;
    assert_eq!(generated.spec.selector, None);
    assert_eq!(
        generated.spec.mtls.as_ref().unwrap().mode.as_deref(),
        Some("STRICT")
    );
    let s = status_where(
        "STRICT in effect",
        |s| {
            degraded(s).0 == "False"
                && mesh_findings(s).is_empty()
                && s.generated
                    .as_ref()
                    .is_some_and(|g| g.peer_authentications == 1)
        },
        DEADLINE,
    )
    .await;
    assert!(s
        .top_violations
        .iter()
        .all(|v| !v.rule.starts_with("mesh.")));

    // Drift: someone relaxes it; it is put back.
    let relaxed = json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "palisade-mtls", "namespace": ns.name},
        "spec": {"mtls": {"mode": "PERMISSIVE"}}});
    common::apply_value(&client, &relaxed).await;
    wait_for("STRICT restored", DEADLINE, || async {
        let p = policies.get_opt("palisade-mtls").await.ok()??;
        (p.spec.mtls?.mode.as_deref() == Some("STRICT")).then_some(())
    })
    .await;

    // Someone's own policy stays; dropping the setting prunes only the generated one.
    common::apply_value(
        &client,
        &json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": {"name": "theirs", "namespace": ns.name},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "mtls": {"mode": "STRICT"}}}),
    )
    .await;
    apply_baseline(&client, &id, &id, &id, spec(json!({}))).await;
    wait_for("palisade-mtls pruned", DEADLINE, || async {
        policies
            .get_opt("palisade-mtls")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert!(policies.get_opt("theirs").await.unwrap().is_some());
    status_where(
        "nothing generated",
        |s| {
            s.generated
                .as_ref()
                .is_some_and(|g| g.peer_authentications == 0)
        },
        DEADLINE,
    )
    .await;
    op.assert_never_forbidden();
    common::baseline::delete_baseline(&client, &id).await;
}
