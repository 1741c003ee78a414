//! Least privilege learned from real use, end to end on the real node: a workload bound to the
//! broad built-in `edit` role does three things; the API server's audit webhook feeds Palisade;
//! Audit mode proposes the learned Role and reports what `edit` grants beyond it; Enforce
//! generates the Role; with the broad binding gone the workload still works, and a verb it never
//! used is forbidden. The learned usage survives an operator restart (persisted ConfigMaps).
//! (`scripts/test`; feature `node`.)
#![cfg(feature = "node")]

use crate::common;

use common::node::{create_pod, exec_probe, probe_container, wait_ready, Probe};
use common::{apply_value, client, install_crd, unique, wait_for, Operator, TestNamespace};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use palisade::crd::{SecurityBaseline, SecurityBaselineStatus};
use serde_json::{json, Value};
use std::time::Duration;

const TEST_LABEL: &str = "palisade-test-learn";
const ID_LABEL: &str = "palisade-test-id";
const WINDOW_SECS: u64 = 40;

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: eval \"$(scripts/control-plane env)\""))
}

fn start_operator(selector: &str) -> Operator {
    let ca = env("PALISADE_CP_AUDIT_WEBHOOK_CLIENT_CA");
    Operator::start(&[
        "--baseline-selector",
        selector,
        "--audit-webhook-addr",
        &env("PALISADE_CP_AUDIT_WEBHOOK_ADDR"),
        "--audit-webhook-cert",
        &env("PALISADE_CP_AUDIT_WEBHOOK_CERT"),
        "--audit-webhook-key",
        &env("PALISADE_CP_AUDIT_WEBHOOK_KEY"),
        "--audit-webhook-client-ca",
        &ca,
        "--resync",
        "10",
    ])
}

fn api(method: &str, path: &str, body: Option<&str>) -> Probe {
    let mut args = vec!["api", "--method", method, "--timeout", "3s"];
    if let Some(b) = body {
        args.extend(["--body", b]);
    }
    args.push(path);
    exec_probe(NS.get().unwrap(), "worker", &args)
}

static NS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn code(p: &Probe) -> Option<u64> {
    p.out["status"].as_u64()
}

/// The three things the worker does.
fn work(ns: &str) -> [Option<u64>; 3] {
    let event = json!({"metadata": {"generateName": "worker-"},
        "involvedObject": {"kind": "Pod", "name": "worker", "namespace": ns},
        "reason": "Working", "message": "did its job", "type": "Normal"})
    .to_string();
    [
        code(&api(
            "GET",
            &format!("/api/v1/namespaces/{ns}/configmaps/settings"),
            None,
        )),
        code(&api("GET", &format!("/api/v1/namespaces/{ns}/pods"), None)),
        code(&api(
            "POST",
            &format!("/api/v1/namespaces/{ns}/events"),
            Some(&event),
        )),
    ]
}

async fn status_where(
    api: &Api<SecurityBaseline>,
    name: &str,
    what: &str,
    deadline: Duration,
    check: impl Fn(&SecurityBaselineStatus) -> bool,
) -> SecurityBaselineStatus {
    wait_for(what, deadline, || async {
        let s = api.get(name).await.ok()?.status?;
        check(&s).then_some(s)
    })
    .await
}

fn learned_state(s: &SecurityBaselineStatus) -> Option<(&str, Vec<String>)> {
    let l = s.learned.iter().find(|l| l.service_account == "worker")?;
    let rules = l
        .rules
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r.verbs.join(","),
                r.resources.clone().unwrap_or_default().join(",")
            )
        })
        .collect();
    Some((l.state.as_str(), rules))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learned_role_keeps_the_workload_working_and_forbids_what_it_never_used() {
    let _serial = common::serial::module(module_path!());
    let client = client().await;
    install_crd(&client).await;
    let id = unique("learn");
    let ns = TestNamespace::new(&client, "learn", &[(TEST_LABEL, &id)]).await;
    let n = ns.name.clone();
    NS.set(n.clone()).unwrap();

    // The workload's account, bound (too broadly) to the built-in `edit` role.
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "worker"}})).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), &n)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    let broad = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "worker-edit", "namespace": n},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "ServiceAccount", "name": "worker", "namespace": n}]});
    apply_value(&client, &broad).await;
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "settings"}, "data": {"mode": "fast"}}))
            .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), &n)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let container = probe_container("probe", &["sleep"]);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "worker", "labels": {"app": "worker"}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [container],
                 "serviceAccountName": "worker", "automountServiceAccountToken": true}});
    create_pod(&client, &n, &pod).await;
    wait_ready(&client, &n, "worker").await;

    // The baseline: Audit first, learning `worker` over a short window.
    let mut b: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/baseline.yaml"))
            .unwrap(),
    )
    .unwrap();
    b["metadata"] = json!({"name": id, "labels": {ID_LABEL: id}});
    b["spec"]["namespaceSelector"] = json!({"matchLabels": {TEST_LABEL: id}});
    b["spec"]["enforcement"] = json!("Audit");
    b["spec"]["rbac"] = json!({"learn": {"window": format!("{WINDOW_SECS}s")},
                               "serviceAccounts": [{"name": "worker", "learn": true}]});
    apply_value(&client, &b).await;
    let selector = format!("{ID_LABEL}={id}");
    let mut op = start_operator(&selector);
    op.wait_ready().await;
    let baselines: Api<SecurityBaseline> = Api::all(client.clone());

    // The workload works through `edit` (and keeps working, every 2 s, as a real one would),
    // and the audit webhook tells Palisade what it did.
    assert_eq!(
        work(&n),
        [Some(200), Some(200), Some(201)],
        "before: the worker's calls"
    );
    let worker = Worker::start(&n);
    let proposed = status_where(
        &baselines,
        &id,
        "learned rules proposed (Learning)",
        Duration::from_secs(60),
        |s| learned_state(s).is_some_and(|(_, rules)| rules.len() >= 3),
    )
    .await;
    let (state, rules) = learned_state(&proposed).unwrap();
    assert!(state == "Learning" || state == "Ready", "{state}");
    assert_eq!(
        rules,
        ["create events", "get configmaps", "list pods"],
        "the minimal rules"
    );
    let cm_rule = proposed.learned[0]
        .rules
        .iter()
        .find(|r| r.resources.as_deref() == Some(&["configmaps".to_string()]))
        .unwrap();
    assert_eq!(
        cm_rule.resource_names.as_deref(),
        Some(&["settings".to_string()][..]),
        "only the ConfigMap it read"
    );
    assert!(
        op.metric("palisade_audit_events_total", &["result=\"learned\""])
            .await
            .unwrap_or(0.0)
            >= 3.0
    );

    // After the window: Ready, and the broad binding reported with what it grants unused.
    let ready = status_where(
        &baselines,
        &id,
        "learning Ready and unused permissions reported",
        Duration::from_secs(WINDOW_SECS + 60),
        |s| {
            learned_state(s).is_some_and(|(st, _)| st == "Ready")
                && s.top_violations
                    .iter()
                    .any(|v| v.rule == "rbac.unused-permission" && v.name == "worker-edit")
        },
    )
    .await;
    let unused = ready
        .top_violations
        .iter()
        .find(|v| v.rule == "rbac.unused-permission")
        .unwrap();
    assert!(
        unused.message.contains("ServiceAccount")
            && unused
                .message
                .contains("(ClusterRole edit) not used during the last 40s"),
        "{}",
        unused.message
    );
    assert!(
        unused.message.contains("covered by: create events"),
        "{}",
        unused.message
    );
    // Audit mode generates nothing.
    let roles: Api<Role> = Api::namespaced(client.clone(), &n);
    assert!(
        roles.get_opt("palisade-worker").await.unwrap().is_none(),
        "Audit mode created the Role"
    );

    // The aggregate survives a restart: the new operator loads when collection began, so the
    // window is still complete (a fresh start would be Learning again and generate nothing).
    op.stop();
    op.assert_never_forbidden();
    let mut op = start_operator(&selector);
    op.wait_ready().await;

    // Enforce: the learned Role and its binding are generated, within the ceiling the cluster
    // admin grants Palisade (events and pods are not in the shipped defaults: outside it, the
    // learned rules are left out and reported).
    let grant = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": format!("palisade-grantable-{id}"),
                     "labels": {"palisade.dev/aggregate-to-grantable": "true"}},
        "rules": [{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
                  {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]});
    baselines
        .patch(
            &id,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"enforcement": "Enforce"}})),
        )
        .await
        .unwrap();
    // The restarted operator's first judgement of the new generation is already Ready, well
    // inside one window: it loaded when collection began and what the worker did.
    let generation = baselines.get(&id).await.unwrap().metadata.generation;
    let first = status_where(
        &baselines,
        &id,
        "the restarted operator's status of the Enforce generation",
        Duration::from_secs(WINDOW_SECS / 2),
        |s| s.observed_generation == generation,
    )
    .await;
    assert_eq!(
        learned_state(&first).map(|l| l.0),
        Some("Ready"),
        "after the restart: {:?}",
        first.learned
    );
    let refused = status_where(
        &baselines,
        &id,
        "learned rules outside the ceiling reported",
        Duration::from_secs(60),
        |s| {
            s.conditions.iter().any(|c| {
                c.type_ == "Degraded"
                    && c.status == "True"
                    && c.reason == "RulesOutsideGrantableCeiling"
            })
        },
    )
    .await;
    let degraded = refused
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert!(
        degraded.message.contains(&format!(
            "learned rule of Role {n}/palisade-worker: create events"
        )),
        "{}",
        degraded.message
    );
    let _grant = CeilingGrant(format!("palisade-grantable-{id}"));
    apply_value(&client, &grant).await;
    let role = wait_for("the learned Role", Duration::from_secs(60), || async {
        let role = roles.get_opt("palisade-worker").await.ok().flatten()?;
        (role.rules.as_ref()?.len() == 3).then_some(role)
    })
    .await;
    let granted: Vec<String> = role
        .rules
        .unwrap_or_default()
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r.verbs.join(","),
                r.resources.clone().unwrap_or_default().join(",")
            )
        })
        .collect();
    assert_eq!(granted, ["create events", "get configmaps", "list pods"]);
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &n);
    wait_for(
        "the learned RoleBinding",
        Duration::from_secs(30),
        || async { bindings.get_opt("palisade-worker").await.ok().flatten() },
    )
    .await;

    // The user acts on the finding: the broad binding goes. The workload still works ...
    bindings
        .delete("worker-edit", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        "the worker works with only the learned Role",
        Duration::from_secs(30),
        || async { (work(&n) == [Some(200), Some(200), Some(201)]).then_some(()) },
    )
    .await;
    // ... and what it never did is forbidden now (edit allowed both).
    let delete = api(
        "DELETE",
        &format!("/api/v1/namespaces/{n}/configmaps/settings"),
        None,
    );
    assert_eq!(
        code(&delete),
        Some(403),
        "deleting the ConfigMap: {}",
        delete.out
    );
    let secrets = api("GET", &format!("/api/v1/namespaces/{n}/secrets"), None);
    assert_eq!(
        code(&secrets),
        Some(403),
        "listing Secrets: {}",
        secrets.out
    );
    let other = api(
        "GET",
        &format!("/api/v1/namespaces/{n}/configmaps/other"),
        None,
    );
    assert_eq!(code(&other), Some(403), "another ConfigMap: {}", other.out);
    // Denied requests are counted, never learned.
    let after = baselines.get(&id).await.unwrap().status.unwrap();
    let (_, rules) = learned_state(&after).unwrap();
    assert!(
        !rules.iter().any(|r| r.starts_with("delete")),
        "a denied request was learned: {rules:?}"
    );

    drop(worker);
    baselines
        .delete(&id, &DeleteParams::default())
        .await
        .unwrap();
    op.stop();
    op.assert_never_forbidden();
}

/// The workload's loop (a thread doing [`work`] every 2 s), stopped when dropped.
struct Worker {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    fn start(ns: &str) -> Worker {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, ns) = (stop.clone(), ns.to_string());
        let thread = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                work(&ns);
                std::thread::sleep(Duration::from_secs(2));
            }
        });
        Worker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A ClusterRole the test adds to the grantable ceiling, deleted when dropped (also on
/// failure: a leftover would widen the ceiling of later runs).
struct CeilingGrant(String);

impl Drop for CeilingGrant {
    fn drop(&mut self) {
        let _ = common::node::kubectl()
            .args(["delete", "clusterrole", &self.0, "--ignore-not-found"])
            .output();
    }
}
