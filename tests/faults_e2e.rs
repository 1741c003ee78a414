//! Faults injected into the real local control plane while the operator runs: a kube-apiserver
//! restart, etcd down for 20 s, watches expired (`410 Gone`) by an etcd compaction while the
//! operator is frozen, and a SIGKILL in the middle of a first convergence of 120 namespaces.
//! After each, the operator converges to exactly the state a clean run reaches (a fresh operator
//! then writes nothing) and no object it does not own changed.
//!
//! Its own test binary, the tests one at a time: the faults would disturb tests beside them.
#![cfg(feature = "e2e")]

mod common;

use common::*;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use palisade::crd::SecurityBaseline;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// One fault at a time.
static FAULT: Mutex<()> = Mutex::const_new(());

const DENY: &str = "palisade-default-deny";

/// Runs `scripts/control-plane CMD` on the tests' plane; its stdout.
fn control_plane(cmd: &str) -> String {
    let state = std::env::var("PALISADE_CP_STATE").expect("scripts/test exports PALISADE_CP_STATE");
    let out = std::process::Command::new(format!("{ROOT}/scripts/control-plane"))
        .arg(cmd)
        .env("PALISADE_CP_STATE", &state)
        .output()
        .unwrap_or_else(|e| panic!("run scripts/control-plane {cmd}: {e}"));
    assert!(
        out.status.success(),
        "scripts/control-plane {cmd} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn enforce_baseline(client: &Client, id: &str) {
    let baselines: Api<SecurityBaseline> = Api::all(client.clone());
    apply_yaml(
        &baselines,
        "palisade-tests",
        &format!(
            "apiVersion: palisade.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: {id}, labels: {{palisade-test-id: {id}}}}}\nspec:\n  namespaceSelector: {{matchLabels: {{palisade-test: {id}}}}}\n  enforcement: Enforce\n"
        ),
    )
    .await;
}

fn operator(id: &str) -> Operator {
    Operator::start(&["--baseline-selector", &format!("palisade-test-id={id}")])
}

async fn deny_exists(client: &Client, ns: &str) -> Option<NetworkPolicy> {
    Api::<NetworkPolicy>::namespaced(client.clone(), ns)
        .get_opt(DENY)
        .await
        .ok()
        .flatten()
}

/// A NetworkPolicy of the user's own in `ns` (no Palisade labels); its resourceVersion.
async fn user_policy(client: &Client, ns: &str) -> String {
    let api = Api::<NetworkPolicy>::namespaced(client.clone(), ns);
    let np = apply_yaml(
        &api,
        "the-user",
        &format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: users-own, namespace: {ns}}}\nspec:\n  podSelector: {{matchLabels: {{app: db}}}}\n  policyTypes: [Ingress]\n"),
    )
    .await;
    np.resource_version().unwrap()
}

async fn user_policy_version(client: &Client, ns: &str) -> String {
    Api::<NetworkPolicy>::namespaced(client.clone(), ns)
        .get("users-own")
        .await
        .expect("the user's policy still exists")
        .resource_version()
        .unwrap()
}

/// The state a clean run reaches: a fresh operator, started on the converged cluster, becomes
/// ready, reconciles every baseline and writes nothing.
async fn a_fresh_operator_writes_nothing(id: &str) {
    let mut fresh = operator(id);
    fresh.wait_ready().await;
    let baseline = format!("baseline=\"{id}\"");
    wait_for(
        "the fresh operator's reconcile succeeded",
        Duration::from_secs(60),
        || async {
            fresh
                .metric(
                    "palisade_last_successful_reconcile_timestamp_seconds",
                    &[&baseline],
                )
                .await
        },
    )
    .await;
    let writes = fresh
        .metric("palisade_api_writes_total", &[])
        .await
        .unwrap_or(0.0);
    assert_eq!(
        writes, 0.0,
        "a clean run over the faulted run's state writes nothing"
    );
    fresh.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_recovers_after_apiserver_restart() {
    let _one = FAULT.lock().await;
    let client = client().await;
    install_crd(&client).await;
    let id = unique("restart");
    let baselines: Api<SecurityBaseline> = Api::all(client.clone());
    apply_yaml(
        &baselines,
        "palisade-tests",
        &format!(
            "apiVersion: palisade.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: {id}, labels: {{palisade-test-id: {id}}}}}\nspec:\n  namespaceSelector: {{matchLabels: {{palisade-test: {id}}}}}\n  enforcement: Enforce\n"
        ),
    )
    .await;
    let mut op = Operator::start(&["--baseline-selector", &format!("palisade-test-id={id}")]);
    op.wait_ready().await;
    let before = TestNamespace::new(&client, "before", &[("palisade-test", &id)]).await;
    let policies = |ns: &str| Api::<NetworkPolicy>::namespaced(client.clone(), ns);
    let deny_exists = |api: Api<NetworkPolicy>| async move {
        api.get_opt("palisade-default-deny").await.ok().flatten()
    };
    wait_for(
        "default deny before the restart",
        Duration::from_secs(60),
        || deny_exists(policies(&before.name)),
    )
    .await;

    control_plane("restart-apiserver");
    let restarted = Instant::now();

    // A change made after the restart is converged by the same operator process.
    let client = common::client().await;
    let after = TestNamespace::new(&client, "after", &[("palisade-test", &id)]).await;
    let api = Api::<NetworkPolicy>::namespaced(client.clone(), &after.name);
    wait_for(
        "default deny after the restart",
        Duration::from_secs(90),
        || deny_exists(api.clone()),
    )
    .await;
    eprintln!(
        "apiserver-restart-to-converged: {} ms",
        restarted.elapsed().as_millis()
    );
    assert!(
        op.child.try_wait().unwrap().is_none(),
        "the operator must not have exited"
    );
    let restarts = op
        .metric("palisade_watch_restarts_total", &[])
        .await
        .unwrap_or(0.0);
    eprintln!("watch restarts seen by the operator: {restarts}");
    op.stop();
    let _ = baselines.delete(&id, &Default::default()).await;
}

/// etcd stops for 20 s while the operator is in steady state (kube-apiserver up, its storage
/// gone); once it is back, the operator process (never restarted) converges what changed
/// meanwhile and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_down_for_20_seconds_is_survived() {
    let _one = FAULT.lock().await;
    let client = client().await;
    install_crd(&client).await;
    let id = unique("etcd");
    enforce_baseline(&client, &id).await;
    let ns = TestNamespace::new(&client, "etcd", &[("palisade-test", &id)]).await;
    let users = user_policy(&client, &ns.name).await;
    let mut op = operator(&id);
    op.wait_ready().await;
    wait_for(
        "default deny before the fault",
        Duration::from_secs(60),
        || deny_exists(&client, &ns.name),
    )
    .await;

    control_plane("stop-etcd");
    let down = Instant::now();
    // The outage lasts 20 s; meanwhile the operator must stay up.
    while down.elapsed() < Duration::from_secs(20) {
        assert!(
            op.child.try_wait().unwrap().is_none(),
            "the operator exited while etcd was down"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    control_plane("start-etcd");

    let client = common::client().await;
    // The generated policy deleted, a new namespace covered: both converge.
    Api::<NetworkPolicy>::namespaced(client.clone(), &ns.name)
        .delete(DENY, &DeleteParams::default())
        .await
        .expect("delete the generated policy");
    let after = TestNamespace::new(&client, "etcd-after", &[("palisade-test", &id)]).await;
    wait_for(
        "converged after etcd came back",
        Duration::from_secs(120),
        || async {
            deny_exists(&client, &ns.name).await?;
            deny_exists(&client, &after.name).await
        },
    )
    .await;
    eprintln!("etcd-down-to-converged: {} ms", down.elapsed().as_millis());
    assert!(
        op.child.try_wait().unwrap().is_none(),
        "the operator must not have exited"
    );
    assert_eq!(
        user_policy_version(&client, &ns.name).await,
        users,
        "the user's policy untouched"
    );
    op.stop();
    a_fresh_operator_writes_nothing(&id).await;
    let _ = Api::<SecurityBaseline>::all(client)
        .delete(&id, &Default::default())
        .await;
}

/// The operator is frozen (SIGSTOP) while the cluster changes, etcd's history is compacted and
/// kube-apiserver restarts, so its watches resume from resourceVersions that are gone: `410 Gone`.
/// Thawed, it relists and converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_expired_by_compaction_relist_and_converge() {
    let _one = FAULT.lock().await;
    let client = client().await;
    install_crd(&client).await;
    let id = unique("gone");
    enforce_baseline(&client, &id).await;
    let ns = TestNamespace::new(&client, "gone", &[("palisade-test", &id)]).await;
    let users = user_policy(&client, &ns.name).await;
    let mut op = operator(&id);
    op.wait_ready().await;
    wait_for(
        "default deny before the fault",
        Duration::from_secs(60),
        || deny_exists(&client, &ns.name),
    )
    .await;

    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &op.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig}");
    };
    signal("-STOP");
    Api::<NetworkPolicy>::namespaced(client.clone(), &ns.name)
        .delete(DENY, &DeleteParams::default())
        .await
        .expect("delete the generated policy");
    let after = TestNamespace::new(&client, "gone-after", &[("palisade-test", &id)]).await;
    let revision = control_plane("compact");
    control_plane("restart-apiserver");
    signal("-CONT");
    let thawed = Instant::now();

    let client = common::client().await;
    wait_for(
        "converged after the relist",
        Duration::from_secs(120),
        || async {
            deny_exists(&client, &ns.name).await?;
            deny_exists(&client, &after.name).await
        },
    )
    .await;
    eprintln!(
        "compacted at revision {}; thawed-to-converged: {} ms",
        revision.trim(),
        thawed.elapsed().as_millis()
    );
    // The watches did expire (the test is not vacuous): the operator logged the 410s.
    let log = std::fs::read_to_string(op.log_path()).unwrap();
    assert!(
        log.contains("410") || log.contains("too old resource version"),
        "no expired watch in the operator's log"
    );
    assert!(
        op.child.try_wait().unwrap().is_none(),
        "the operator must not have exited"
    );
    assert_eq!(
        user_policy_version(&client, &ns.name).await,
        users,
        "the user's policy untouched"
    );
    op.stop();
    a_fresh_operator_writes_nothing(&id).await;
    let _ = Api::<SecurityBaseline>::all(client)
        .delete(&id, &Default::default())
        .await;
}

/// SIGKILL in the middle of a first convergence of 120 namespaces (some generated, some not),
/// then a new operator: every namespace converges to exactly its generated objects, with no
/// duplicate and no orphan, and a clean run afterwards writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_convergence_then_restart_converges_without_duplicates_or_orphans() {
    const N: usize = 120;
    let _one = FAULT.lock().await;
    let client = client().await;
    install_crd(&client).await;
    let id = unique("kill");
    let mut namespaces = Vec::new();
    for _ in 0..N {
        namespaces.push(TestNamespace::new(&client, "kill", &[("palisade-test", &id)]).await);
    }
    let users = user_policy(&client, &namespaces[0].name).await;
    let all_policies = Api::<NetworkPolicy>::all(client.clone());
    let generated = ListParams::default().labels(&format!("palisade.dev/baseline={id}"));
    let mut first = operator(&id);
    first.wait_ready().await;
    enforce_baseline(&client, &id).await;
    // Kill it once some namespaces have their policies and others do not yet.
    let partial = wait_for(
        "part of the namespaces converged",
        Duration::from_secs(120),
        || async {
            let n = all_policies.list(&generated).await.ok()?.items.len();
            (n > 0).then_some(n)
        },
    )
    .await;
    first.child.kill().expect("SIGKILL the operator");
    first.child.wait().unwrap();
    let after_kill = all_policies.list(&generated).await.unwrap().items.len();
    eprintln!("killed with {partial}..{after_kill} generated policies of the first convergence");

    let mut second = operator(&id);
    second.wait_ready().await;
    let per_namespace = wait_for(
        "all namespaces converged",
        Duration::from_secs(180),
        || async {
            let items = all_policies.list(&generated).await.ok()?.items;
            let covered: std::collections::BTreeSet<_> = items
                .iter()
                .filter(|p| p.name_any() == DENY)
                .filter_map(|p| p.namespace())
                .collect();
            (covered.len() == N).then_some(items)
        },
    )
    .await;
    assert!(
        after_kill < per_namespace.len(),
        "the kill came before the convergence ended"
    );
    // Exactly one default deny per namespace, each owned by this baseline: no duplicates, no
    // orphans.
    let uid = Api::<SecurityBaseline>::all(client.clone())
        .get(&id)
        .await
        .unwrap()
        .uid()
        .unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for p in &per_namespace {
        *seen
            .entry((p.namespace().unwrap(), p.name_any()))
            .or_insert(0) += 1;
        assert!(
            p.owner_references().iter().any(|o| o.uid == uid),
            "{}/{} is not owned by the baseline",
            p.namespace().unwrap(),
            p.name_any()
        );
    }
    assert!(seen.values().all(|n| *n == 1));
    let names: std::collections::BTreeSet<_> = seen.keys().map(|(_, n)| n.clone()).collect();
    assert_eq!(
        per_namespace.len(),
        N * names.len(),
        "the same policies in every namespace: {names:?}"
    );
    assert_eq!(
        user_policy_version(&client, &namespaces[0].name).await,
        users
    );
    second.stop();
    a_fresh_operator_writes_nothing(&id).await;
    let _ = Api::<SecurityBaseline>::all(client.clone())
        .delete(&id, &Default::default())
        .await;
}

/// API Priority and Fairness objects that give Palisade's ServiceAccount a tiny share of the API
/// server (3 seats; the rest is rejected with 429), removed on drop.
struct Throttle {
    client: Client,
}

const THROTTLE: &str = r#"
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: PriorityLevelConfiguration
metadata: {name: palisade-test-tiny}
spec:
  type: Limited
  limited:
    nominalConcurrencyShares: 1
    lendablePercent: 0
    borrowingLimitPercent: 0
    limitResponse: {type: Reject}
---
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata: {name: palisade-test-throttle}
spec:
  priorityLevelConfiguration: {name: palisade-test-tiny}
  matchingPrecedence: 500
  distinguisherMethod: {type: ByUser}
  rules:
    - subjects: [{kind: ServiceAccount, serviceAccount: {name: palisade, namespace: palisade-system}}]
      resourceRules: [{verbs: ["*"], apiGroups: ["*"], resources: ["*"], clusterScope: true, namespaces: ["*"]}]
      nonResourceRules: [{verbs: ["*"], nonResourceURLs: ["*"]}]
"#;

impl Throttle {
    async fn new(client: &Client) -> Throttle {
        apply_documents(client, THROTTLE).await;
        Throttle {
            client: client.clone(),
        }
    }

    /// Requests of the tiny priority level the API server rejected so far.
    async fn rejected(&self) -> f64 {
        let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
        let text = self
            .client
            .request_text(req)
            .await
            .expect("API server /metrics");
        text.lines()
            .filter(|l| l.starts_with("apiserver_flowcontrol_rejected_requests_total{"))
            .filter(|l| l.contains("priority_level=\"palisade-test-tiny\""))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        let client = self.client.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            tokio::task::block_in_place(|| {
                handle.block_on(async move {
                    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
                    for (kind, name) in [
                        ("FlowSchema", "palisade-test-throttle"),
                        ("PriorityLevelConfiguration", "palisade-test-tiny"),
                    ] {
                        let gvk = GroupVersionKind::gvk("flowcontrol.apiserver.k8s.io", "v1", kind);
                        let api: Api<DynamicObject> =
                            Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk));
                        let _ = api.delete(name, &DeleteParams::default()).await;
                    }
                })
            });
        }
    }
}

/// With API Priority and Fairness giving Palisade 3 seats and rejecting the rest (429), a first
/// convergence of 60 namespaces still finishes: Palisade backs off and retries, and its metrics
/// say it was throttled. Without the throttle, a fresh operator then writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_by_priority_and_fairness_it_backs_off_and_converges() {
    const N: usize = 60;
    let _one = FAULT.lock().await;
    let client = client().await;
    install_crd(&client).await;
    let id = unique("apf");
    let mut namespaces = Vec::new();
    for _ in 0..N {
        namespaces.push(TestNamespace::new(&client, "apf", &[("palisade-test", &id)]).await);
    }
    let throttle = Throttle::new(&client).await;
    let rejected_before = throttle.rejected().await;
    enforce_baseline(&client, &id).await;
    let mut op = operator(&id);
    let started = Instant::now();
    let all_policies = Api::<NetworkPolicy>::all(client.clone());
    let generated = ListParams::default().labels(&format!("palisade.dev/baseline={id}"));
    wait_for(
        "converged while throttled",
        Duration::from_secs(300),
        || async {
            let items = all_policies.list(&generated).await.ok()?.items;
            let denied = items.iter().filter(|p| p.name_any() == DENY).count();
            (denied == N).then_some(())
        },
    )
    .await;
    let rejected = throttle.rejected().await - rejected_before;
    let throttled = op
        .metric(
            "palisade_reconcile_errors_total",
            &["category=\"throttled\""],
        )
        .await
        .unwrap_or(0.0);
    let restarts = op
        .metric("palisade_watch_restarts_total", &[])
        .await
        .unwrap_or(0.0);
    eprintln!(
        "throttled convergence of {N} namespaces: {} ms; API server rejected {rejected} requests; \
         throttled reconciles {throttled}, watch restarts {restarts}",
        started.elapsed().as_millis()
    );
    assert!(
        rejected > 0.0,
        "the API server throttled Palisade (the test is not vacuous)"
    );
    assert!(
        throttled > 0.0,
        "the operator's metrics show the throttling"
    );
    assert!(
        op.child.try_wait().unwrap().is_none(),
        "the operator must not have exited"
    );
    op.stop();
    drop(throttle);
    a_fresh_operator_writes_nothing(&id).await;
    let _ = Api::<SecurityBaseline>::all(client.clone())
        .delete(&id, &Default::default())
        .await;
}

/// 1,000 updates of one baseline's spec within a minute, as fast as the API server takes them:
/// the operator's memory stays bounded, and the final state is the last spec's (its allow
/// policy only, every earlier one pruned; the status describes the last generation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_baseline_updates_ends_in_the_last_specs_state_with_bounded_memory() {
    const UPDATES: usize = 1000;
    let _one = FAULT.lock().await;
    let client = client().await;
    install_crd(&client).await;
    let id = unique("storm");
    let ns = TestNamespace::new(&client, "storm", &[("palisade-test", &id)]).await;
    let baselines: Api<SecurityBaseline> = Api::all(client.clone());
    let spec = |i: usize| {
        format!(
            "apiVersion: palisade.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: {id}, labels: {{palisade-test-id: {id}}}}}\nspec:\n  namespaceSelector: {{matchLabels: {{palisade-test: {id}}}}}\n  enforcement: Enforce\n  network:\n    allow:\n      - name: storm-{i}\n        podSelector: {{matchLabels: {{app: db}}}}\n        from: [{{podSelector: {{matchLabels: {{app: api}}}}}}]\n        ports: [{{port: {}, protocol: TCP}}]\n",
            1000 + i
        )
    };
    apply_yaml(&baselines, "palisade-tests", &spec(0)).await;
    let mut op = operator(&id);
    op.wait_ready().await;
    wait_for(
        "the first spec's allow policy",
        Duration::from_secs(60),
        || async {
            Api::<NetworkPolicy>::namespaced(client.clone(), &ns.name)
                .get_opt("palisade-allow-storm-0")
                .await
                .ok()
                .flatten()
        },
    )
    .await;
    let rss = |pid: u32, field: &str| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with(field))
            .unwrap()
            .to_string();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            / 1024
    };
    let pid = op.child.id();
    let before = rss(pid, "VmRSS:");
    let started = Instant::now();
    for i in 1..UPDATES {
        apply_yaml(&baselines, "palisade-tests", &spec(i)).await;
    }
    let storm = started.elapsed();
    let last = format!("palisade-allow-storm-{}", UPDATES - 1);
    let final_generation = baselines.get(&id).await.unwrap().metadata.generation;
    let policies = Api::<NetworkPolicy>::namespaced(client.clone(), &ns.name);
    wait_for(
        "the last spec's state",
        Duration::from_secs(120),
        || async {
            let names: Vec<String> = policies
                .list(&ListParams::default().labels(&format!("palisade.dev/baseline={id}")))
                .await
                .ok()?
                .items
                .iter()
                .map(|p| p.name_any())
                .filter(|n| n.starts_with("palisade-allow-storm-"))
                .collect();
            let b = baselines.get(&id).await.ok()?;
            let current = b.status?.observed_generation == final_generation;
            (names == [last.clone()] && current).then_some(())
        },
    )
    .await;
    let peak = rss(pid, "VmHWM:");
    let after = rss(pid, "VmRSS:");
    eprintln!(
        "{UPDATES} baseline updates in {} ms; operator RSS {before} MiB before, {after} MiB after, peak {peak} MiB",
        storm.as_millis()
    );
    assert!(
        storm < Duration::from_secs(60),
        "the storm took {storm:?}: not 1,000 updates a minute"
    );
    assert!(
        peak < before + 64,
        "memory grew from {before} to a peak of {peak} MiB"
    );
    assert!(
        op.child.try_wait().unwrap().is_none(),
        "the operator must not have exited"
    );
    op.stop();
    a_fresh_operator_writes_nothing(&id).await;
    let _ = baselines.delete(&id, &Default::default()).await;
}
