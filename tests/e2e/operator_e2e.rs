//! End-to-end tests of `palisade run` against the real local control plane.
//!
//! Every test installs the CRD, creates its own namespaces (label `palisade-test=<id>`) and
//! baselines (label `palisade-test-id=<id>`), and starts its own operator restricted to them with
//! `--baseline-selector`, so the tests run in parallel without seeing each other.

use crate::common;

use common::baseline::{
    apply_baseline, converged, delete_baseline, get_baseline, has_finding, wait_converged,
    ID_LABEL, TEST_LABEL,
};
use common::{install_crd, unique, wait_for, Operator, TestNamespace};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use palisade::crd::SecurityBaseline;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);
const MANAGED: &str = "app.kubernetes.io/managed-by=palisade";
const PSA_ENFORCE: &str = "pod-security.kubernetes.io/enforce";
const PSA_ANNOTATION: &str = "palisade.dev/pod-security-labels";

// ------------------------------------------------------------------------------------ helpers

/// An operator for one test; its log is printed when the test fails.
struct Op {
    inner: Operator,
    name: &'static str,
}

impl Op {
    fn start(name: &'static str, id: &str, extra: &[&str]) -> Op {
        let selector = format!("{ID_LABEL}={id}");
        let mut args = vec!["--baseline-selector", selector.as_str()];
        args.extend_from_slice(extra);
        Op {
            inner: Operator::start(&args),
            name,
        }
    }

    async fn metric(&self, name: &str, labels: &[&str]) -> Option<f64> {
        self.inner.metric(name, labels).await
    }

    /// Total writes this operator sent (0 when the series does not exist).
    async fn writes(&self, labels: &[&str]) -> f64 {
        self.metric("palisade_api_writes_total", labels)
            .await
            .unwrap_or(0.0)
    }
}

impl std::ops::Deref for Op {
    type Target = Operator;
    fn deref(&self) -> &Operator {
        &self.inner
    }
}

impl std::ops::DerefMut for Op {
    fn deref_mut(&mut self) -> &mut Operator {
        &mut self.inner
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.inner.log_path()).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(60)..].join("\n");
            eprintln!(
                "---- operator {} log ({}), last 60 lines ----\n{tail}\n----",
                self.name,
                self.inner.log_path().display()
            );
        }
    }
}

/// Polls `check` every 10 ms (for latency measurements; `wait_for` backs off to 250 ms).
async fn poll_fast<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn apply<K>(api: &Api<K>, manager: &str, body: &Value) -> K
where
    K: Clone + DeserializeOwned + Debug,
{
    let name = body["metadata"]["name"].as_str().expect("metadata.name");
    api.patch(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(body),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {name} as {manager}: {e}"))
}

/// Names of the NetworkPolicies Palisade generated in `ns`, sorted.
async fn generated_policies(client: &Client, ns: &str) -> Option<Vec<String>> {
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns);
    let list = api
        .list(&ListParams::default().labels(MANAGED))
        .await
        .ok()?;
    let mut names: Vec<String> = list.items.iter().map(|p| p.name_any()).collect();
    names.sort();
    Some(names)
}

async fn namespace(client: &Client, name: &str) -> Namespace {
    Api::<Namespace>::all(client.clone())
        .get(name)
        .await
        .expect("get namespace")
}

/// Waits until the namespace's `default` ServiceAccount exists (pods are rejected before that).
async fn wait_default_sa(client: &Client, ns: &str) {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("ServiceAccount {ns}/default"),
        DEADLINE,
        || async { api.get_opt("default").await.ok().flatten() },
    )
    .await;
}

/// A pod that meets PSS restricted and every hardening check of the default baseline.
fn compliant_pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "serviceAccountName": "app",
            "automountServiceAccountToken": false,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "app", "image": "registry.example/app:1.0",
                "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                    "capabilities": {"drop": ["ALL"]}}}],
        },
    }))
    .unwrap()
}

fn privileged_pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{
            "name": "app",
            "image": "registry.example/app:1.0",
            "securityContext": {"privileged": true, "runAsUser": 0},
        }]},
    }))
    .unwrap()
}

/// resourceVersion of an object, for "nothing was written" checks.
fn rv<K: kube::Resource>(o: &K) -> String {
    o.meta().resource_version.clone().unwrap_or_default()
}

// ---------------------------------------------------------------------------------- the tests

/// A namespace that starts matching gets default deny + DNS quickly; one that stops matching
/// loses them and its Pod Security labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_namespace_gets_default_deny_and_loses_it_when_unlabelled() {
    let _serial = common::serial::module(module_path!());
    let client = common::client().await;
    install_crd(&client).await;
    let id = unique("nsdeny");
    let bl = apply_baseline(&client, &id, &id, &id, json!({"enforcement": "Enforce"})).await;
    let op = Op::start("nsdeny", &id, &[]);
    op.wait_ready().await;
    let st = wait_converged(&client, &id).await;
    assert_eq!(st.namespaces, Some(0), "no namespace carries the label yet");

    let started = Instant::now();
    let ns = TestNamespace::new(&client, "nsdeny", &[(TEST_LABEL, &id)]).await;
    let want = vec![
        "palisade-allow-dns".to_string(),
        "palisade-default-deny".to_string(),
    ];
    poll_fast("default-deny and allow-dns", DEADLINE, || async {
        generated_policies(&client, &ns.name).await.as_ref() == Some(&want)
    })
    .await;
    let ms = started.elapsed().as_millis();
    eprintln!("new-namespace-to-default-deny: {ms} ms");

    // The generated objects are labelled and owned by the baseline.
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    let deny = api.get("palisade-default-deny").await.unwrap();
    assert_eq!(
        deny.labels().get("palisade.dev/baseline"),
        Some(&id),
        "baseline label"
    );
    let owner = &deny.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("SecurityBaseline", id.as_str(), Some(true))
    );
    assert_eq!(Some(&owner.uid), bl.metadata.uid.as_ref());
    let spec = deny.spec.unwrap();
    assert_eq!(
        spec.policy_types,
        Some(vec!["Ingress".to_string(), "Egress".to_string()])
    );
    // Pod Security labels arrive too, with the annotation naming the baseline.
    wait_for("PSA labels on the namespace", DEADLINE, || async {
        let n = namespace(&client, &ns.name).await;
        (n.labels().get(PSA_ENFORCE).map(String::as_str) == Some("restricted")
            && n.annotations().get(PSA_ANNOTATION) == Some(&id))
        .then_some(())
    })
    .await;

    // Unlabel: everything Palisade put there goes away.
    let started = Instant::now();
    Api::<Namespace>::all(client.clone())
        .patch(
            &ns.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {TEST_LABEL: null}}})),
        )
        .await
        .unwrap();
    wait_for("generated policies pruned", DEADLINE, || async {
        generated_policies(&client, &ns.name)
            .await
            .filter(|p| p.is_empty())
    })
    .await;
    wait_for("PSA labels and annotation removed", DEADLINE, || async {
        let n = namespace(&client, &ns.name).await;
        let psa = n
            .labels()
            .keys()
            .any(|k| k.starts_with("pod-security.kubernetes.io/"));
        (!psa && !n.annotations().contains_key(PSA_ANNOTATION)).then_some(())
    })
    .await;
    eprintln!("unlabel-to-pruned: {} ms", started.elapsed().as_millis());
    let st = wait_for("status namespaces back to 0", DEADLINE, || async {
        let s = converged(&get_baseline(&client, &id).await?)?;
        (s.namespaces == Some(0)).then_some(s)
    })
    .await;
    assert_eq!(st.generated.unwrap().network_policies, 0);
    delete_baseline(&client, &id).await;
}

/// Deleting a baseline garbage-collects what it generated (owner references).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_baseline_garbage_collects_generated_objects() {
    let _serial = common::serial::module(module_path!());
    let client = common::client().await;
    install_crd(&client).await;
    let id = unique("gc");
    let ns = TestNamespace::new(&client, "gc", &[(TEST_LABEL, &id)]).await;
    apply_baseline(&client, &id, &id, &id, json!({"enforcement": "Enforce"})).await;
    let op = Op::start("gc", &id, &[]);
    op.wait_ready().await;
    let vap_name = format!("palisade-{id}");
    let vaps: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    wait_for("policies and VAP generated", DEADLINE, || async {
        let p = generated_policies(&client, &ns.name).await?;
        let vap = vaps.get_opt(&vap_name).await.ok()??;
        let binding = bindings.get_opt(&vap_name).await.ok()??;
        (p.len() == 2).then_some((vap, binding))
    })
    .await;
    wait_converged(&client, &id).await;
    let baseline_label = format!("baseline=\"{id}\"");
    assert!(
        op.metric("palisade_generated_objects", &[&baseline_label])
            .await
            .is_some(),
        "the baseline's gauges are exported while it exists"
    );

    let started = Instant::now();
    Api::<SecurityBaseline>::all(client.clone())
        .delete(&id, &DeleteParams::default())
        .await
        .unwrap();
    wait_for("generated objects garbage-collected", DEADLINE, || async {
        let p = generated_policies(&client, &ns.name).await?;
        let vap = vaps.get_opt(&vap_name).await.ok()?;
        let binding = bindings.get_opt(&vap_name).await.ok()?;
        (p.is_empty() && vap.is_none() && binding.is_none()).then_some(())
    })
    .await;
    // Namespaces have no owner references: the finalizer removes the PSA labels Palisade set.
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    wait_for(
        "PSA labels removed from the namespace",
        DEADLINE,
        || async {
            let n = namespaces.get(&ns.name).await.ok()?;
            let psa = n
                .labels()
                .keys()
                .any(|k| k.starts_with("pod-security.kubernetes.io/"));
            let ann = n
                .annotations()
                .contains_key("palisade.dev/pod-security-labels");
            (!psa && !ann).then_some(())
        },
    )
    .await;
    eprintln!(
        "baseline-deleted-to-collected: {} ms",
        started.elapsed().as_millis()
    );
    assert!(get_baseline(&client, &id).await.is_none());
    // Its gauges go too, or its last violations and success time would keep alerts firing.
    wait_for(
        "the deleted baseline's gauges removed",
        DEADLINE,
        || async {
            let labels = [baseline_label.as_str()];
            let generated = op.metric("palisade_generated_objects", &labels).await;
            let success = op
                .metric(
                    "palisade_last_successful_reconcile_timestamp_seconds",
                    &labels,
                )
                .await;
            (generated.is_none() && success.is_none()).then_some(())
        },
    )
    .await;
}

/// An Enforce baseline that holds the finalizer, edited into a spec the engine cannot compile
/// (the schema lets the selector operator through), then deleted: the deletion is handled
/// before compilation, so the finalizer goes and the namespace loses the PSA labels Palisade set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_baseline_deleted_while_invalid_still_releases_its_namespaces() {
    let _serial = common::serial::module(module_path!());
    let client = common::client().await;
    install_crd(&client).await;
    let id = unique("delinv");
    let ns = TestNamespace::new(&client, "delinv", &[(TEST_LABEL, &id)]).await;
    apply_baseline(&client, &id, &id, &id, json!({"enforcement": "Enforce"})).await;
    let op = Op::start("delinv", &id, &[]);
    op.wait_ready().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let psa = |n: &Namespace| {
        n.labels()
            .keys()
            .any(|k| k.starts_with("pod-security.kubernetes.io/"))
    };
    wait_for(
        "PSA labels set and the finalizer held",
        DEADLINE,
        || async {
            let n = namespaces.get(&ns.name).await.ok()?;
            let b = get_baseline(&client, &id).await?;
            (psa(&n) && !b.finalizers().is_empty()).then_some(())
        },
    )
    .await;

    let mut spec = json!({"enforcement": "Enforce"});
    spec["namespaceSelector"] = json!({"matchLabels": {TEST_LABEL: id},
        "matchExpressions": [{"key": "tier", "operator": "Sometimes", "values": ["a"]}]});
    let body = json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SecurityBaseline",
        "metadata": {"name": id, "labels": {ID_LABEL: id}}, "spec": spec});
    apply(
        &Api::<SecurityBaseline>::all(client.clone()),
        "palisade-tests",
        &body,
    )
    .await;
    wait_for("the invalid spec reported", DEADLINE, || async {
        let s = get_baseline(&client, &id).await?.status?;
        s.conditions
            .iter()
            .any(|c| c.type_ == "Degraded" && c.reason == "InvalidSpec")
            .then_some(())
    })
    .await;
    assert!(
        psa(&namespaces.get(&ns.name).await.unwrap()),
        "labels stay while it exists"
    );

    Api::<SecurityBaseline>::all(client.clone())
        .delete(&id, &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        "the baseline gone and the PSA labels removed",
        DEADLINE,
        || async {
            let n = namespaces.get(&ns.name).await.ok()?;
            (get_baseline(&client, &id).await.is_none() && !psa(&n)).then_some(())
        },
    )
    .await;
}

/// The platform team's Pod Security label, set by another field manager before the baseline
/// came, is never taken over: it stays while the baseline enforces (reported as a conflict) and
/// after the baseline is deleted; the labels Palisade alone set go with the baseline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_security_label_someone_else_set_survives_the_baseline() {
    let _serial = common::serial::module(module_path!());
    let client = common::client().await;
    install_crd(&client).await;
    let id = unique("psaown");
    let ns = TestNamespace::new(&client, "psaown", &[(TEST_LABEL, &id)]).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let platform = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": ns.name, "labels": {PSA_ENFORCE: "baseline"}}});
    apply(&namespaces, "platform-gitops", &platform).await;
    apply_baseline(&client, &id, &id, &id, json!({"enforcement": "Enforce"})).await;
    let op = Op::start("psaown", &id, &[]);
    op.wait_ready().await;
    let warn = "pod-security.kubernetes.io/warn";
    let status = wait_for("the conflict reported", DEADLINE, || async {
        let s = converged(&get_baseline(&client, &id).await?)?;
        s.conflicts
            .iter()
            .any(|c| c.contains("managed by platform-gitops"))
            .then_some(s)
    })
    .await;
    assert_eq!(
        status.conflicts,
        [format!(
            "Namespace {} label {PSA_ENFORCE}=baseline (managed by platform-gitops; this baseline wants restricted): exists and is not Palisade's; left alone",
            ns.name
        )]
    );
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "ForeignObjects")
    );
    let n = namespaces.get(&ns.name).await.unwrap();
    assert_eq!(n.labels()[PSA_ENFORCE], "baseline", "never taken over");
    assert_eq!(
        n.labels()[warn],
        "restricted",
        "the labels nobody held are Palisade's"
    );
    let holders: Vec<_> = n
        .managed_fields()
        .iter()
        .filter(|e| {
            e.fields_v1.as_ref().is_some_and(|f| {
                f.0["f:metadata"]["f:labels"]
                    .get(format!("f:{PSA_ENFORCE}"))
                    .is_some()
            })
        })
        .filter_map(|e| e.manager.clone())
        .collect();
    assert_eq!(holders, ["platform-gitops"]);

    delete_baseline(&client, &id).await;
    let n = wait_for(
        "the baseline gone and its own labels removed",
        DEADLINE,
        || async {
            let n = namespaces.get(&ns.name).await.ok()?;
            (get_baseline(&client, &id).await.is_none() && !n.labels().contains_key(warn))
                .then_some(n)
        },
    )
    .await;
    assert_eq!(
        n.labels()[PSA_ENFORCE],
        "baseline",
        "the platform team's setting survives"
    );
    assert!(!n.annotations().contains_key(PSA_ANNOTATION));
}

/// Another writer force-applies its version of a generated NetworkPolicy after every restore:
/// after 5 restores Palisade stops fighting, reports a Conflict naming the object, the field and
/// the writer, exports it as a gauge, and leaves the object alone on later reconciles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_keeps_rewriting_a_generated_object_is_noticed_not_fought() {
    let _serial = common::serial::module(module_path!());
    let client = common::client().await;
    install_crd(&client).await;
    let id = unique("fight");
    let ns = TestNamespace::new(&client, "fight", &[(TEST_LABEL, &id)]).await;
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    apply_baseline(&client, &id, &id, &id, json!({"enforcement": "Enforce"})).await;
    let op = Op::start("fight", &id, &[]);
    op.wait_ready().await;
    wait_converged(&client, &id).await;
    let theirs = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "palisade-default-deny", "namespace": ns.name},
        "spec": {"policyTypes": ["Ingress"]},
    });
    let types = |p: &NetworkPolicy| p.spec.as_ref().and_then(|s| s.policy_types.clone());
    let rewrites = std::sync::atomic::AtomicUsize::new(0);
    let conflict = wait_for("the fight noticed", DEADLINE, || {
        let (api, client, id, theirs, rewrites) = (&api, &client, &id, &theirs, &rewrites);
        async move {
            let s = get_baseline(client, id).await?.status?;
            if let Some(c) = s
                .conditions
                .iter()
                .find(|c| c.type_ == "Conflict" && c.status == "True")
            {
                return Some((c.clone(), s));
            }
            // The fighter: whenever Palisade's version is back, its own again, with force.
            let p = api.get("palisade-default-deny").await.ok()?;
            if types(&p).as_deref() != Some(&["Ingress".to_string()][..]) {
                apply(api, "fighter", theirs).await;
                rewrites.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            None
        }
    })
    .await;
    let (condition, status) = conflict;
    let rewrites = rewrites.into_inner();
    assert!(
        (5..=7).contains(&rewrites),
        "noticed after {rewrites} rewrites"
    );
    let object = format!("NetworkPolicy {}/palisade-default-deny", ns.name);
    assert!(
        condition.message.starts_with(&format!(
            "{object}: rewritten by fighter (Apply): spec.policyTypes"
        )),
        "{}",
        condition.message
    );
    assert_eq!(condition.reason, "FightingAnotherWriter");
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(degraded.reason, "Conflict");
    let baseline_label = format!("baseline=\"{id}\"");
    assert_eq!(
        op.metric("palisade_contested_objects", &[&baseline_label])
            .await,
        Some(1.0)
    );
    assert!(op.metric("palisade_fights_total", &[&baseline_label]).await >= Some(1.0));

    // The fighter's last version stays: another reconcile (a namespace change triggers one)
    // leaves it alone.
    let p = api.get("palisade-default-deny").await.unwrap();
    if types(&p).as_deref() != Some(&["Ingress".to_string()][..]) {
        apply(&api, "fighter", &theirs).await;
    }
    let before = op
        .metric("palisade_reconciles_total", &[&baseline_label])
        .await
        .unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    apply(
        &namespaces,
        "palisade-tests",
        &json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns.name, "annotations": {"touched": "yes"}}}),
    )
    .await;
    wait_for("another reconcile", DEADLINE, || async {
        let n = op
            .metric("palisade_reconciles_total", &[&baseline_label])
            .await?;
        let done = op
            .metric(
                "palisade_last_successful_reconcile_timestamp_seconds",
                &[&baseline_label],
            )
            .await?;
        (n > before && done > 0.0).then_some(())
    })
    .await;
    wait_converged(&client, &id).await;
    let p = api.get("palisade-default-deny").await.unwrap();
    assert_eq!(
        types(&p),
        Some(vec!["Ingress".to_string()]),
        "left to the fighter for now"
    );
    delete_baseline(&client, &id).await;
}

/// Another manager's edit of a generated NetworkPolicy is reverted; a user's own policy with the
/// same pod selector is never touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_restored_and_user_policy_left_alone() {
    let _serial = common::serial::module(module_path!());
    let client = common::client().await;
    install_crd(&client).await;
    let id = unique("drift");
    let ns = TestNamespace::new(&client, "drift", &[(TEST_LABEL, &id)]).await;
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    let user = apply(
        &api,
        "team-a",
        &json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "user-policy", "namespace": ns.name},
            "spec": {
                "podSelector": {},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}]}],
            },
        }),
    )
    .await;
    apply_baseline(&client, &id, &id, &id, json!({"enforcement": "Enforce"})).await;
    let op = Op::start("drift", &id, &[]);
    op.wait_ready().await;
    wait_for("default-deny generated", DEADLINE, || async {
        api.get_opt("palisade-default-deny").await.ok()?
    })
    .await;
    wait_converged(&client, &id).await;

    // The intruder takes over policyTypes with a forced server-side apply.
    let started = Instant::now();
    let edited = apply(
        &api,
        "intruder",
        &json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "palisade-default-deny", "namespace": ns.name},
            // Narrow the policy and re-open all ingress: both must be reverted.
            "spec": {"policyTypes": ["Ingress"], "ingress": [{}]},
        }),
    )
    .await;
    let edited_spec = edited.spec.unwrap();
    assert_eq!(
        edited_spec.policy_types,
        Some(vec!["Ingress".to_string()]),
        "the intruder's edit took effect"
    );
    assert_eq!(edited_spec.ingress.map(|i| i.len()), Some(1));
    let restored = wait_for("default-deny restored", DEADLINE, || async {
        let p = api.get("palisade-default-deny").await.ok()?;
        let spec = p.spec.as_ref()?;
        let types = spec.policy_types.clone()?;
        let no_rules = spec.ingress.as_ref().is_none_or(|r| r.is_empty());
        (types == ["Ingress", "Egress"] && no_rules).then_some(p)
    })
    .await;
    eprintln!("drift-restored: {} ms", started.elapsed().as_millis());
    let owners: Vec<&str> = restored
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.as_deref())
        .collect();
    assert!(owners.contains(&"palisade"), "managers: {owners:?}");
    let correction = wait_for("drift correction counted", DEADLINE, || async {
        op.metric(
            "palisade_drift_corrections_total",
            &[&format!("baseline=\"{id}\""), "kind=\"NetworkPolicy\""],
        )
        .await
        .filter(|v| *v >= 1.0)
    })
    .await;
    assert!(correction >= 1.0);

    // The user's policy: same object, same content, never pruned or rewritten.
    let after = api
        .get("user-policy")
        .await
        .expect("user-policy still exists");
    assert_eq!(rv(&after), rv(&user), "user-policy was written to");
    assert_eq!(after.spec, user.spec);
    assert_eq!(after.metadata.labels, user.metadata.labels);
    assert!(after.owner_references().is_empty());
    assert_eq!(
        op.writes(&["kind=\"NetworkPolicy\"", "verb=\"delete\""])
            .await,
        0.0,
        "no NetworkPolicy was deleted"
    );
    delete_baseline(&client, &id).await;
}

/// A violation shows in status, as a Warning Event and as a metric; fixing it clears all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn violation_reported_in_status_event_and_metric_then_cleared() {
    let _serial = common::serial::module(module_path!());
    let client = common::client().await;
    install_crd(&client).await;
    let id = unique("viol");
    let ns = TestNamespace::new(&client, "viol", &[(TEST_LABEL, &id)]).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    apply(
        &deployments,
        "palisade-tests",
        &common::deployment(&ns.name, "web", true),
    )
    .await;
    apply_baseline(&client, &id, &id, &id, json!({"enforcement": "Audit"})).await;
    let op = Op::start("viol", &id, &[]);
    op.wait_ready().await;

    let st = wait_for("pss.privileged in status", DEADLINE, || async {
        let s = converged(&get_baseline(&client, &id).await?)?;
        has_finding(&s, "pss.privileged", "Deployment", "web").then_some(s)
    })
    .await;
    let v = st.violations.clone().unwrap();
    assert!(v.total >= 1 && v.by_severity.get("critical").copied().unwrap_or(0) >= 1);
    let compliant = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Compliant")
        .unwrap();
    assert_eq!(compliant.status, "False");

    let events: Api<Event> = Api::namespaced(client.clone(), &ns.name);
    let ev = wait_for(
        "Warning SecurityViolation event on the Deployment",
        DEADLINE,
        || async {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| {
                    let r = e.regarding.clone().unwrap_or_default();
                    e.reason.as_deref() == Some("SecurityViolation")
                        && e.type_.as_deref() == Some("Warning")
                        && r.kind.as_deref() == Some("Deployment")
                        && r.name.as_deref() == Some("web")
                })
        },
    )
    .await;
    let note = ev.note.unwrap_or_default();
    assert!(
        note.contains("pss.privileged") && note.contains(&id),
        "event note: {note}"
    );

    let series = [
        format!("baseline=\"{id}\""),
        "rule=\"pss.privileged\"".to_string(),
        format!("namespace=\"{}\"", ns.name),
    ];
    let series: Vec<&str> = series.iter().map(String::as_str).collect();
    let n = wait_for(
        "palisade_violations for pss.privileged",
        DEADLINE,
        || async {
            op.metric("palisade_violations", &series)
                .await
                .filter(|v| *v > 0.0)
        },
    )
    .await;
    assert_eq!(n, 1.0);

    // Fix the Deployment: the finding and its series disappear.
    apply(
        &deployments,
        "palisade-tests",
        &common::deployment(&ns.name, "web", false),
    )
    .await;
    wait_for("pss.privileged gone from status", DEADLINE, || async {
        let s = converged(&get_baseline(&client, &id).await?)?;
        (!s.top_violations.iter().any(|v| v.rule == "pss.privileged")).then_some(())
    })
    .await;
    wait_for("pss.privileged series gone", DEADLINE, || async {
        let v = op.metric("palisade_violations", &series).await;
        // Scraped at all (the endpoint answers) and the series is absent or zero.
        let up = op.metric("palisade_leader", &[]).await.is_some();
        (up && v.unwrap_or(0.0) == 0.0).then_some(())
    })
    .await;
    delete_baseline(&client, &id).await;
}

/// Enforce: a privileged root Pod is rejected at admission (PSA label), and the generated
/// ValidatingAdmissionPolicy rejects pods PSS allows but the hardening checks do not. Audit: the
/// same Pod is admitted and reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_rejects_pod_audit_admits_and_reports_it() {
    let _serial = common::serial::module(module_path!());
    let client = common::client().await;
    install_crd(&client).await;
    let id = unique("admit");
    let enforce_name = format!("{id}-enforce");
    let audit_name = format!("{id}-audit");
    let ns_enforce = TestNamespace::new(&client, "admit-e", &[(TEST_LABEL, &enforce_name)]).await;
    let ns_audit = TestNamespace::new(&client, "admit-a", &[(TEST_LABEL, &audit_name)]).await;
    apply_baseline(
        &client,
        &enforce_name,
        &id,
        &enforce_name,
        json!({"enforcement": "Enforce"}),
    )
    .await;
    apply_baseline(
        &client,
        &audit_name,
        &id,
        &audit_name,
        json!({"enforcement": "Audit"}),
    )
    .await;
    let op = Op::start("admit", &id, &[]);
    op.wait_ready().await;
    wait_for("PSA enforce label", DEADLINE, || async {
        let n = namespace(&client, &ns_enforce.name).await;
        (n.labels().get(PSA_ENFORCE).map(String::as_str) == Some("restricted")).then_some(())
    })
    .await;
    wait_default_sa(&client, &ns_enforce.name).await;
    wait_default_sa(&client, &ns_audit.name).await;

    let pods_e: Api<Pod> = Api::namespaced(client.clone(), &ns_enforce.name);
    let err = pods_e
        .create(&PostParams::default(), &privileged_pod("root"))
        .await
        .expect_err("a privileged root pod must be rejected in an Enforce namespace");
    match &err {
        kube::Error::Api(e) => {
            assert_eq!(e.code, 403, "{e:?}");
            assert!(e.message.contains("PodSecurity"), "{}", e.message);
        }
        other => panic!("unexpected error: {other}"),
    }
    // A PSS-restricted pod that breaks the hardening checks is stopped by the generated VAP
    // (dry run, retried until the binding is live in the API server).
    let hardened_but_writable: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "writable"},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "app", "image": "registry.example/app:1.0",
                "securityContext": {"allowPrivilegeEscalation": false,
                                    "capabilities": {"drop": ["ALL"]}}}],
        },
    }))
    .unwrap();
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let vap_msg = wait_for("the VAP rejects a writable-root pod", DEADLINE, || async {
        match pods_e.create(&dry, &hardened_but_writable).await {
            Err(kube::Error::Api(e)) if e.message.contains("ValidatingAdmissionPolicy") => {
                Some(e.message)
            }
            _ => None,
        }
    })
    .await;
    assert!(
        vap_msg.contains(&format!("palisade-{enforce_name}")),
        "{vap_msg}"
    );
    // The same container added to a running pod as an ephemeral (debug) container goes through
    // the `pods/ephemeralcontainers` subresource: the policy covers it too. In the Audit
    // namespace the same addition is admitted.
    let pods_a: Api<Pod> = Api::namespaced(client.clone(), &ns_audit.name);
    for (pods, ns) in [(&pods_e, &ns_enforce.name), (&pods_a, &ns_audit.name)] {
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
        accounts
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "app"}})).unwrap(),
            )
            .await
            .unwrap();
        pods.create(&PostParams::default(), &compliant_pod("target"))
            .await
            .expect("a pod meeting every check is admitted");
    }
    let debug = json!({"spec": {"ephemeralContainers": [{
        "name": "debugger", "image": "registry.example/debug:1", "targetContainerName": "app",
        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
    }]}});
    let add_debugger = |pods: Api<Pod>| {
        let debug = debug.clone();
        async move {
            pods.patch_subresource(
                "ephemeralcontainers",
                "target",
                &PatchParams {
                    dry_run: true,
                    ..Default::default()
                },
                &Patch::Strategic(debug),
            )
            .await
        }
    };
    let denied = add_debugger(pods_e.clone())
        .await
        .expect_err("a writable-root ephemeral container must be refused under Enforce");
    assert!(
        denied.to_string().contains("hardening.read-only-root-fs"),
        "{denied}"
    );
    add_debugger(pods_a.clone())
        .await
        .expect("Audit admits the same ephemeral container");

    pods_a
        .create(&PostParams::default(), &privileged_pod("root"))
        .await
        .expect("an Audit namespace admits the pod");
    let st = wait_for("audit baseline reports the pod", DEADLINE, || async {
        let s = converged(&get_baseline(&client, &audit_name).await?)?;
        has_finding(&s, "pss.privileged", "Pod", "root").then_some(s)
    })
    .await;
    assert!(
        has_finding(&st, "pss.run-as-user", "Pod", "root") || st.violations.unwrap().total >= 2
    );
    let n = namespace(&client, &ns_audit.name).await;
    assert!(
        !n.labels().contains_key(PSA_ENFORCE),
        "Audit must not label namespaces"
    );
    assert!(
        generated_policies(&client, &ns_audit.name)
            .await
            .unwrap()
            .is_empty(),
        "Audit must not generate NetworkPolicies"
    );
    delete_baseline(&client, &enforce_name).await;
    delete_baseline(&client, &audit_name).await;
}

/// An exemption suppresses a finding until it expires; at expiry the operator requeues by
/// itself and the finding returns together with `exemption.expired`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exemption_suppresses_until_it_expires() {
    let _serial = common::serial::module(module_path!());
    let client = common::client().await;
    install_crd(&client).await;
    let id = unique("exempt");
    let ns = TestNamespace::new(&client, "exempt", &[(TEST_LABEL, &id)]).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    apply(
        &deployments,
        "palisade-tests",
        &common::deployment(&ns.name, "vendor", true),
    )
    .await;
    let exemption = |expires: Option<String>| {
        let mut e = json!({
            "rules": ["pss.privileged"],
            "namespaces": [ns.name],
            "names": ["vendor"],
            "reason": "vendor agent needs it; ticket SEC-42",
        });
        if let Some(t) = expires {
            e["expires"] = t.into();
        }
        json!({"enforcement": "Audit", "exemptions": [e]})
    };
    apply_baseline(&client, &id, &id, &id, exemption(None)).await;
    let op = Op::start("exempt", &id, &[]);
    op.wait_ready().await;
    let st = wait_converged(&client, &id).await;
    assert!(
        !has_finding(&st, "pss.privileged", "Deployment", "vendor"),
        "exempted finding listed: {:?}",
        st.top_violations
    );
    assert!(st.violations.as_ref().unwrap().exempted >= 1);
    assert!(
        has_finding(&st, "pss.run-as-non-root", "Deployment", "vendor"),
        "other rules still apply: {:?}",
        st.top_violations
    );

    let expires = k8s_openapi::jiff::Timestamp::now() + Duration::from_secs(4);
    // Kubernetes times have second precision.
    let expires = k8s_openapi::jiff::Timestamp::from_second(expires.as_second() + 1).unwrap();
    let b = apply_baseline(&client, &id, &id, &id, exemption(Some(expires.to_string()))).await;
    let generation = b.metadata.generation;
    let st = wait_for(
        "status of the generation with expires",
        DEADLINE,
        || async {
            let b = get_baseline(&client, &id).await?;
            converged(&b).filter(|s| s.observed_generation == generation)
        },
    )
    .await;
    if k8s_openapi::jiff::Timestamp::now() < expires {
        assert!(
            !has_finding(&st, "pss.privileged", "Deployment", "vendor"),
            "the exemption is still valid: {:?}",
            st.top_violations
        );
    }
    let st = wait_for("finding back after expiry", DEADLINE, || async {
        let s = converged(&get_baseline(&client, &id).await?)?;
        has_finding(&s, "pss.privileged", "Deployment", "vendor").then_some(s)
    })
    .await;
    let late = k8s_openapi::jiff::Timestamp::now().duration_since(expires);
    eprintln!("exemption-expiry-to-finding: {} ms", late.as_millis());
    assert!(
        st.top_violations
            .iter()
            .any(|v| v.rule == "exemption.expired"),
        "exemption.expired missing: {:?}",
        st.top_violations
    );
    assert_eq!(st.violations.unwrap().exempted, 0);
    delete_baseline(&client, &id).await;
}

/// A restarted operator adopts what its predecessor generated without writing anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_operator_converges_without_writes() {
    let _serial = common::serial::module(module_path!());
    let client = common::client().await;
    install_crd(&client).await;
    let id = unique("restart");
    let ns = TestNamespace::new(&client, "restart", &[(TEST_LABEL, &id)]).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    apply(
        &deployments,
        "palisade-tests",
        &common::deployment(&ns.name, "web", true),
    )
    .await;
    apply_baseline(
        &client,
        &id,
        &id,
        &id,
        json!({
            "enforcement": "Enforce",
            "network": {"allow": [{
                "name": "web",
                "podSelector": {"matchLabels": {"app": "web"}},
                "from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}],
                "ports": [{"port": 8080, "protocol": "TCP"}],
            }]},
            "rbac": {"serviceAccounts": [{"name": "api", "rules": [
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]}]},
        }),
    )
    .await;
    let mut first = Op::start("restart-1", &id, &[]);
    first.wait_ready().await;
    let st = wait_for("everything generated", DEADLINE, || async {
        let s = converged(&get_baseline(&client, &id).await?)?;
        let g = s.generated.clone()?;
        // default deny, DNS, the allow rule and its other end (the frontend's egress)
        (g.network_policies == 4
            && g.roles == 1
            && g.role_bindings == 1
            && g.admission_policies == 1
            && g.labelled_namespaces == 1
            && has_finding(&s, "pss.privileged", "Deployment", "web"))
        .then_some(s)
    })
    .await;
    assert_eq!(st.namespaces, Some(1));
    assert!(
        first.writes(&[]).await > 0.0,
        "the first operator generated"
    );
    first.stop();

    let vap = format!("palisade-{id}");
    let snapshot = || async {
        let nps: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
        let roles: Api<Role> = Api::namespaced(client.clone(), &ns.name);
        let rbs: Api<RoleBinding> = Api::namespaced(client.clone(), &ns.name);
        let mut v = BTreeMap::new();
        for p in nps.list(&ListParams::default()).await.unwrap() {
            v.insert(format!("NetworkPolicy/{}", p.name_any()), rv(&p));
        }
        v.insert("Role".into(), rv(&roles.get("palisade-api").await.unwrap()));
        v.insert(
            "RoleBinding".into(),
            rv(&rbs.get("palisade-api").await.unwrap()),
        );
        let vaps: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
        let vapbs: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
        v.insert("VAP".into(), rv(&vaps.get(&vap).await.unwrap()));
        v.insert("VAPBinding".into(), rv(&vapbs.get(&vap).await.unwrap()));
        v.insert("Namespace".into(), rv(&namespace(&client, &ns.name).await));
        v.insert(
            "SecurityBaseline".into(),
            rv(&get_baseline(&client, &id).await.unwrap()),
        );
        v
    };
    let before = snapshot().await;
    assert_eq!(
        before
            .keys()
            .filter(|k| k.starts_with("NetworkPolicy/"))
            .count(),
        4,
        "{before:?}"
    );

    let second = Op::start("restart-2", &id, &[]);
    second.wait_ready().await;
    let baseline_label = format!("baseline=\"{id}\"");
    wait_for("the new operator reconciled", DEADLINE, || async {
        second
            .metric("palisade_reconciles_total", &[&baseline_label])
            .await
            .filter(|v| *v >= 1.0)
    })
    .await;
    // Settle: the first reconcile has finished (success timestamp set) and the status is current.
    wait_for(
        "the new operator's reconcile succeeded",
        DEADLINE,
        || async {
            second
                .metric(
                    "palisade_last_successful_reconcile_timestamp_seconds",
                    &[&baseline_label],
                )
                .await
        },
    )
    .await;
    let writes = second.metric("palisade_api_writes_total", &[]).await;
    assert!(
        writes.unwrap_or(0.0) == 0.0,
        "restarted operator wrote {writes:?} times"
    );
    let after = snapshot().await;
    assert_eq!(before, after, "resourceVersions changed after restart");
    assert_eq!(
        second
            .metric("palisade_drift_corrections_total", &[])
            .await
            .unwrap_or(0.0),
        0.0
    );
    delete_baseline(&client, &id).await;
}

/// Two replicas with leader election: only the leader writes; when it dies the standby takes
/// over within the lease duration and converges new changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_failover() {
    let _serial = common::serial::module(module_path!());
    let client = common::client().await;
    install_crd(&client).await;
    let id = unique("leader");
    // The Lease the shipped RBAC allows (deploy/base/rbac.yaml): name and namespace are fixed.
    let lease = "palisade-leader".to_string();
    let args = [
        "--leader-elect",
        "--lease-namespace",
        "palisade-system",
        "--lease-name",
        lease.as_str(),
        "--lease-duration",
        "4",
    ];
    let ns1 = TestNamespace::new(&client, "leader", &[(TEST_LABEL, &id)]).await;
    apply_baseline(&client, &id, &id, &id, json!({"enforcement": "Enforce"})).await;
    let mut leader = Op::start("leader-a", &id, &args);
    wait_for("replica a leads", DEADLINE, || async {
        leader
            .metric("palisade_leader", &[])
            .await
            .filter(|v| *v == 1.0)
    })
    .await;
    let standby = Op::start("leader-b", &id, &args);
    standby.wait_ready().await;
    leader.wait_ready().await;
    wait_for("leader generates in ns1", DEADLINE, || async {
        generated_policies(&client, &ns1.name)
            .await
            .filter(|p| p.len() == 2)
    })
    .await;
    // A change while both run: still only the leader acts.
    let ns2 = TestNamespace::new(&client, "leader", &[(TEST_LABEL, &id)]).await;
    wait_for("leader generates in ns2", DEADLINE, || async {
        generated_policies(&client, &ns2.name)
            .await
            .filter(|p| p.len() == 2)
    })
    .await;
    wait_converged(&client, &id).await;
    assert!(leader.writes(&[]).await > 0.0, "the leader wrote");
    assert_eq!(standby.writes(&[]).await, 0.0, "the standby wrote");
    let standby_leader = standby.metric("palisade_leader", &[]).await;
    assert!(
        standby_leader.unwrap_or(0.0) == 0.0,
        "standby palisade_leader = {standby_leader:?}"
    );
    assert!(
        standby
            .metric("palisade_reconciles_total", &[])
            .await
            .unwrap_or(0.0)
            == 0.0,
        "the standby reconciled"
    );

    // kill -9: no release, the lease must expire.
    let killed = Instant::now();
    leader.child.kill().unwrap();
    leader.child.wait().unwrap();
    let ns3 = TestNamespace::new(&client, "leader", &[(TEST_LABEL, &id)]).await;
    poll_fast("standby becomes leader", DEADLINE, || async {
        standby.metric("palisade_leader", &[]).await == Some(1.0)
    })
    .await;
    let takeover = killed.elapsed().as_millis();
    poll_fast("new leader generates in ns3", DEADLINE, || async {
        generated_policies(&client, &ns3.name)
            .await
            .is_some_and(|p| p.len() == 2)
    })
    .await;
    let converged_ms = killed.elapsed().as_millis();
    eprintln!("leader-failover: {takeover} ms to take the lease, {converged_ms} ms to converge a new namespace (lease 4 s)");
    let dump = standby
        .http_get("/metrics")
        .await
        .map(|(_, b)| b)
        .unwrap_or_default();
    assert!(
        standby.writes(&[]).await > 0.0,
        "the new leader wrote: {dump}"
    );
    let l = Api::<Lease>::namespaced(client.clone(), "palisade-system")
        .get(&lease)
        .await
        .unwrap();
    assert!(l.spec.unwrap().lease_transitions.unwrap_or(0) >= 1);
    drop(standby);
    let _ = Api::<Lease>::namespaced(client.clone(), "palisade-system")
        .delete(&lease, &DeleteParams::default())
        .await;
    delete_baseline(&client, &id).await;
}

/// Every generated object of baseline `name`, as `Kind namespace/name` lines (the preview's form).
async fn generated_lines(client: &Client, name: &str, ns: &str) -> Vec<String> {
    let lp = ListParams::default().labels(&format!(
        "app.kubernetes.io/managed-by=palisade,palisade.dev/baseline={name}"
    ));
    let mut out = Vec::new();
    macro_rules! namespaced {
        ($($k:ty => $kind:literal),*) => {$(
            for o in Api::<$k>::namespaced(client.clone(), ns).list(&lp).await.unwrap() {
                out.push(format!("{} {ns}/{}", $kind, o.name_any()));
            }
        )*};
    }
    namespaced!(NetworkPolicy => "NetworkPolicy", Role => "Role", RoleBinding => "RoleBinding");
    for o in Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .list(&lp)
        .await
        .unwrap()
    {
        out.push(format!("ValidatingAdmissionPolicy {}", o.name_any()));
    }
    for o in Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .list(&lp)
        .await
        .unwrap()
    {
        out.push(format!("ValidatingAdmissionPolicyBinding {}", o.name_any()));
    }
    out.sort();
    out
}

/// Audit mode shows what Enforce would do; switching to Enforce does exactly that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_previews_exactly_what_enforce_creates() {
    let _serial = common::serial::module(module_path!());
    let client = common::client().await;
    install_crd(&client).await;
    let id = unique("preview");
    let ns = TestNamespace::new(&client, "preview", &[(TEST_LABEL, &id)]).await;
    let spec = |enforcement: &str| {
        json!({"enforcement": enforcement,
               "network": {"allow": [{"name": "web", "podSelector": {"matchLabels": {"app": "web"}},
                                      "from": [{"podSelector": {"matchLabels": {"app": "lb"}}}]}]},
               "rbac": {"serviceAccounts": [{"name": "api", "rules": [
                   {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}]}})
    };
    apply_baseline(&client, &id, &id, &id, spec("Audit")).await;
    let mut op = Op::start("preview", &id, &[]);
    op.wait_ready().await;
    let st = wait_converged(&client, &id).await;
    let preview = st.preview.expect("Audit mode carries a preview");
    assert!(
        generated_lines(&client, &id, &ns.name).await.is_empty(),
        "Audit generates nothing"
    );
    for want in [
        format!("NetworkPolicy {}/palisade-default-deny", ns.name),
        format!("NetworkPolicy {}/palisade-allow-web", ns.name),
        format!("Role {}/palisade-api", ns.name),
        format!("RoleBinding {}/palisade-api", ns.name),
    ] {
        assert!(
            preview.create.contains(&want),
            "{want} in {:?}",
            preview.create
        );
    }
    assert_eq!(preview.label_namespaces, vec![ns.name.clone()]);
    assert!(
        preview.update.is_empty() && preview.delete.is_empty(),
        "{preview:?}"
    );

    apply_baseline(&client, &id, &id, &id, spec("Enforce")).await;
    let st = wait_converged(&client, &id).await;
    assert_eq!(st.preview, None, "Enforce does, it does not preview");
    let created = generated_lines(&client, &id, &ns.name).await;
    assert_eq!(
        created, preview.create,
        "Enforce created exactly what Audit previewed"
    );
    let labels = namespace(&client, &ns.name).await.labels().clone();
    assert_eq!(
        labels.get(PSA_ENFORCE).map(String::as_str),
        Some("restricted")
    );

    // And back: Audit prunes what Enforce made, and its preview converges on recreating it.
    apply_baseline(&client, &id, &id, &id, spec("Audit")).await;
    wait_for(
        "the Audit preview lists the pruned set again",
        DEADLINE,
        || async {
            let st = converged(&get_baseline(&client, &id).await?)?;
            let gone = generated_lines(&client, &id, &ns.name).await.is_empty();
            (gone && st.preview?.create == created).then_some(())
        },
    )
    .await;
    op.assert_never_forbidden();
    delete_baseline(&client, &id).await;
}

/// The API egress of declared accounts follows the API server's EndpointSlices: an added
/// endpoint (as when a second API server joins) is allowed, a removed one no longer is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_egress_follows_the_api_servers_endpoints() {
    let _serial = common::serial::module(module_path!());
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let client = common::client().await;
    install_crd(&client).await;
    let id = unique("apisync");
    let ns = TestNamespace::new(&client, "apisync", &[(TEST_LABEL, &id)]).await;
    let mut dep = common::deployment(&ns.name, "ctl", false);
    dep["spec"]["template"]["spec"]["serviceAccountName"] = json!("api");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    apply(&deployments, "palisade-tests", &dep).await;
    apply_baseline(
        &client,
        &id,
        &id,
        &id,
        json!({"enforcement": "Enforce",
               "rbac": {"serviceAccounts": [{"name": "api", "rules": [
                   {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}]}}),
    )
    .await;
    let mut op = Op::start("apisync", &id, &[]);
    op.wait_ready().await;
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    let cidrs = || async {
        let list = policies.list(&ListParams::default()).await.ok()?;
        let p = list
            .items
            .into_iter()
            .find(|p| p.name_any().starts_with("palisade-allow-apiserver-api-"))?;
        let rule = p.spec?.egress?.into_iter().next()?;
        let mut v: Vec<String> = rule
            .to?
            .into_iter()
            .filter_map(|peer| peer.ip_block.map(|b| b.cidr))
            .collect();
        v.sort();
        Some(v)
    };
    let before = wait_for("the API egress allow of the api account", DEADLINE, || {
        cidrs()
    })
    .await;
    assert!(!before.is_empty());
    let extra = "192.0.2.77/32".to_string();
    assert!(!before.contains(&extra));

    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let slice_name = format!("palisade-test-{id}");
    apply(
        &slices,
        "palisade-tests",
        &json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": slice_name, "labels": {
                    "kubernetes.io/service-name": "kubernetes",
                    "endpointslice.kubernetes.io/managed-by": "palisade-tests"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["192.0.2.77"], "conditions": {"ready": true}}],
                "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}),
    )
    .await;
    wait_for("the new API server address allowed", DEADLINE, || async {
        cidrs().await.filter(|c| c.contains(&extra))
    })
    .await;
    slices
        .delete(&slice_name, &DeleteParams::default())
        .await
        .unwrap();
    let after = wait_for(
        "the removed address no longer allowed",
        DEADLINE,
        || async { cidrs().await.filter(|c| !c.contains(&extra)) },
    )
    .await;
    assert_eq!(after, before);
    let st = wait_converged(&client, &id).await;
    assert!(
        st.allowances
            .iter()
            .any(|a| a.contains("egress to the API server") && a.contains("ServiceAccount api")),
        "{:?}",
        st.allowances
    );
    op.assert_never_forbidden();
    delete_baseline(&client, &id).await;
}

/// The admin client impersonating Palisade's ServiceAccount (with deploy/base RBAC applied):
/// what that account may do, without its 403s counting against the operators under test, which
/// share the account (the audit log names the impersonating user).
async fn as_operator_account() -> Client {
    common::operator_kubeconfig(); // applies deploy/base's RBAC
    let mut config = kube::Config::infer().await.unwrap();
    config.auth_info.impersonate = Some(common::OPERATOR_USER.into());
    config.auth_info.impersonate_groups = Some(vec![
        "system:serviceaccounts".into(),
        "system:serviceaccounts:palisade-system".into(),
        "system:authenticated".into(),
    ]);
    Client::try_from(config).unwrap()
}

/// Palisade holds no escalate/bind: a declared rule outside the grantable ceiling is left out of
/// the generated Role and reported on the baseline, and the API server itself refuses Palisade's
/// account a Role with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_outside_the_grantable_ceiling_are_refused_and_reported() {
    let _serial = common::serial::module(module_path!());
    let client = common::client().await;
    install_crd(&client).await;
    let id = unique("ceiling");
    let ns = TestNamespace::new(&client, "ceiling", &[(TEST_LABEL, &id)]).await;
    apply_baseline(
        &client,
        &id,
        &id,
        &id,
        json!({"enforcement": "Enforce",
               "rbac": {"serviceAccounts": [{"name": "api", "rules": [
                   {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
                   {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}]}}),
    )
    .await;
    let mut op = Op::start("ceiling", &id, &[]);
    // Checked first: nothing Palisade itself sent was refused (it never tries the refused rule).
    op.wait_ready().await;
    let roles: Api<Role> = Api::namespaced(client.clone(), &ns.name);
    let st = wait_for(
        "the Role within the ceiling, the rest reported",
        DEADLINE,
        || async {
            let s = converged(&get_baseline(&client, &id).await?)?;
            let role = roles.get("palisade-api").await.ok()?;
            let resources: Vec<String> = role
                .rules?
                .iter()
                .flat_map(|r| r.resources.clone().unwrap_or_default())
                .collect();
            (resources == ["configmaps"]).then_some(s)
        },
    )
    .await;
    let degraded = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(degraded.status, "True");
    assert_eq!(degraded.reason, "RulesOutsideGrantableCeiling");
    assert!(
        degraded
            .message
            .contains("spec.rbac.serviceAccounts[0].rules[1]"),
        "{}",
        degraded.message
    );
    assert!(
        !degraded.message.contains("rules[0]"),
        "{}",
        degraded.message
    );
    op.assert_never_forbidden();

    // The API server enforces the ceiling: Palisade's own account cannot write the refused rule.
    let as_palisade: Api<Role> = Api::namespaced(as_operator_account().await, &ns.name);
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "escalation-attempt"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    }))
    .unwrap();
    match as_palisade.create(&PostParams::default(), &role).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 403, "{e:?}");
            assert!(e.message.contains("escalat"), "{}", e.message);
        }
        other => panic!("Palisade's account must not be able to grant secrets: {other:?}"),
    }
    delete_baseline(&client, &id).await;
}
