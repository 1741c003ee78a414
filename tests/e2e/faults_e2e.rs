//! Faults injected into the real local control plane while the operator runs: a kube-apiserver
//! restart, etcd down for 20 s, watches expired (`410 Gone`) by an etcd compaction while the
//! operator is frozen, and a SIGKILL in the middle of a first convergence of 120 namespaces.
//! After each, the operator converges to exactly the state a clean run reaches (a fresh operator
//! then writes nothing) and no object it does not own changed.
//!
//! Its own test binary, the tests one at a time: the faults would disturb tests beside them.

use crate::common;

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

/// `n` namespaces the baseline `id` covers (deleted on drop).
async fn covered_namespaces(
    client: &Client,
    prefix: &str,
    id: &str,
    n: usize,
) -> Vec<TestNamespace> {
    let mut namespaces = Vec::with_capacity(n);
    for _ in 0..n {
        namespaces.push(TestNamespace::new(client, prefix, &[("palisade-test", id)]).await);
    }
    namespaces
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
    if writes != 0.0 {
        let (_, body) = fresh.http_get("/metrics").await.unwrap_or_default();
        let lines: Vec<&str> = body
            .lines()
            .filter(|l| l.starts_with("palisade_api_writes_total"))
            .collect();
        panic!("a clean run over the faulted run's state wrote {writes} times: {lines:#?}");
    }
    fresh.stop();
}

/// A converged operator in steady state with one covered namespace holding a policy of the
/// user's own: where a fault is injected. After the fault, `change_and_converge` makes a change
/// for the operator to converge (its default deny deleted, a new namespace covered), and
/// `finish` checks what every fault must leave: the operator alive, the user's policy untouched,
/// and a state a fresh operator writes nothing to.
struct Scene {
    id: String,
    ns: TestNamespace,
    users: String,
    op: Operator,
}

impl Scene {
    async fn converged(prefix: &str) -> Scene {
        let client = client().await;
        install_crd(&client).await;
        let id = unique(prefix);
        enforce_baseline(&client, &id).await;
        let ns = TestNamespace::new(&client, prefix, &[("palisade-test", &id)]).await;
        let users = user_policy(&client, &ns.name).await;
        let op = operator(&id);
        op.wait_ready().await;
        wait_for(
            "default deny before the fault",
            Duration::from_secs(60),
            || deny_exists(&client, &ns.name),
        )
        .await;
        Scene { id, ns, users, op }
    }

    fn alive(&mut self) -> bool {
        self.op.child.try_wait().unwrap().is_none()
    }

    /// Deletes the namespace's default deny and covers a new namespace.
    async fn change(&self, client: &Client) -> TestNamespace {
        Api::<NetworkPolicy>::namespaced(client.clone(), &self.ns.name)
            .delete(DENY, &DeleteParams::default())
            .await
            .expect("delete the generated policy");
        TestNamespace::new(client, "after", &[("palisade-test", &self.id)]).await
    }

    /// Converged: both namespaces' default deny exist, and the status reports both namespaces
    /// and Ready. The status follows the writes within the audit interval, so a test that
    /// stopped the operator once the objects existed could leave a status for a fresh operator
    /// to correct.
    async fn wait_converged(&self, after: &TestNamespace, what: &str) {
        let client = client().await;
        let baselines = Api::<SecurityBaseline>::all(client.clone());
        wait_for(what, Duration::from_secs(120), || async {
            deny_exists(&client, &self.ns.name).await?;
            deny_exists(&client, &after.name).await?;
            let status = baselines.get(&self.id).await.ok()?.status?;
            let ready = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            (ready && status.namespaces == Some(2)).then_some(())
        })
        .await;
    }

    async fn finish(mut self) {
        assert!(self.alive(), "the operator must not have exited");
        let client = client().await;
        assert_eq!(
            user_policy_version(&client, &self.ns.name).await,
            self.users,
            "the user's policy untouched"
        );
        self.op.stop();
        a_fresh_operator_writes_nothing(&self.id).await;
        let _ = Api::<SecurityBaseline>::all(client)
            .delete(&self.id, &Default::default())
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_recovers_after_apiserver_restart() {
    let _serial = common::serial::module(module_path!());
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
    let _serial = common::serial::module(module_path!());
    let _one = FAULT.lock().await;
    let mut scene = Scene::converged("etcd").await;
    control_plane("stop-etcd");
    let down = Instant::now();
    // The outage lasts 20 s; meanwhile the operator must stay up.
    while down.elapsed() < Duration::from_secs(20) {
        assert!(scene.alive(), "the operator exited while etcd was down");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    control_plane("start-etcd");
    let after = scene.change(&client().await).await;
    scene
        .wait_converged(&after, "converged after etcd came back")
        .await;
    eprintln!("etcd-down-to-converged: {} ms", down.elapsed().as_millis());
    scene.finish().await;
}

/// The operator is frozen (SIGSTOP) while the cluster changes, etcd's history is compacted and
/// kube-apiserver restarts, so its watches resume from resourceVersions that are gone: `410 Gone`.
/// Thawed, it relists and converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_expired_by_compaction_relist_and_converge() {
    let _serial = common::serial::module(module_path!());
    let _one = FAULT.lock().await;
    let scene = Scene::converged("gone").await;
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &scene.op.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig}");
    };
    signal("-STOP");
    let after = scene.change(&client().await).await;
    let revision = control_plane("compact");
    control_plane("restart-apiserver");
    signal("-CONT");
    let thawed = Instant::now();
    scene
        .wait_converged(&after, "converged after the relist")
        .await;
    eprintln!(
        "compacted at revision {}; thawed-to-converged: {} ms",
        revision.trim(),
        thawed.elapsed().as_millis()
    );
    // The watches did expire (the test is not vacuous): the operator logged the 410s.
    let log = std::fs::read_to_string(scene.op.log_path()).unwrap();
    assert!(
        log.contains("410") || log.contains("too old resource version"),
        "no expired watch in the operator's log"
    );
    scene.finish().await;
}

/// SIGKILL in the middle of a first convergence of 120 namespaces (some generated, some not),
/// then a new operator: every namespace converges to exactly its generated objects, with no
/// duplicate and no orphan, and a clean run afterwards writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_convergence_then_restart_converges_without_duplicates_or_orphans() {
    let _serial = common::serial::module(module_path!());
    const N: usize = 120;
    let _one = FAULT.lock().await;
    let client = client().await;
    install_crd(&client).await;
    let id = unique("kill");
    let namespaces = covered_namespaces(&client, "kill", &id, N).await;
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
/// convergence of 30 namespaces still finishes: Palisade backs off and retries, and its metrics
/// say it was throttled. Without the throttle, a fresh operator then writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_by_priority_and_fairness_it_backs_off_and_converges() {
    let _serial = common::serial::module(module_path!());
    const N: usize = 30;
    let _one = FAULT.lock().await;
    let client = client().await;
    install_crd(&client).await;
    let id = unique("apf");
    let _namespaces = covered_namespaces(&client, "apf", &id, N).await;
    let throttle = Throttle::new(&client).await;
    let rejected_before = throttle.rejected().await;
    enforce_baseline(&client, &id).await;
    let mut op = operator(&id);
    let started = Instant::now();
    let all_policies = Api::<NetworkPolicy>::all(client.clone());
    let generated = ListParams::default().labels(&format!("palisade.dev/baseline={id}"));
    let baselines: Api<SecurityBaseline> = Api::all(client.clone());
    wait_for(
        "converged while throttled",
        Duration::from_secs(300),
        || async {
            let items = all_policies.list(&generated).await.ok()?.items;
            let denied = items.iter().filter(|p| p.name_any() == DENY).count();
            // Every write done: the status says Ready for this generation over all namespaces.
            let b = baselines.get(&id).await.ok()?;
            let s = b.status?;
            let ready = s
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            let current = s.observed_generation == b.metadata.generation;
            (denied == N && ready && current && s.namespaces == Some(N as u32)).then_some(())
        },
    )
    .await;
    let rejected = throttle.rejected().await - rejected_before;
    let throttled = op
        .metric("palisade_api_throttled_total", &[])
        .await
        .unwrap_or(0.0);
    let restarts = op
        .metric("palisade_watch_restarts_total", &[])
        .await
        .unwrap_or(0.0);
    eprintln!(
        "throttled convergence of {N} namespaces: {} ms; API server rejected {rejected} requests; \
         429s seen by the operator {throttled}, watch restarts {restarts}",
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
    let _serial = common::serial::module(module_path!());
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
            // The rule's own policy and its egress side for the peers: all of the last spec's.
            let last_only = !names.is_empty()
                && names
                    .iter()
                    .all(|n| *n == last || n.starts_with(&format!("{last}-")));
            (last_only && current).then_some(())
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

/// A small deterministic PRNG (xorshift64*): the same seed gives the same baselines, so a failure
/// reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }
}

/// A random value for `schema` (the CRD's OpenAPI schema): mostly valid, sometimes not (a value
/// outside an enum, a broken pattern, too many items, a missing required field), so the API
/// server and the operator both get their share.
fn random_value(
    schema: &serde_json::Value,
    key: &str,
    rng: &mut Rng,
    depth: usize,
) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let strings = |key: &str, rng: &mut Rng| -> Value {
        let pool: &[&str] = match key {
            "operator" => &["In", "NotIn", "Exists", "DoesNotExist", "Sometimes", "in"],
            "cidr" | "except" => &[
                "10.0.0.0/8",
                "10.1.0.0/16",
                "fd00::/8",
                "10.0.0.0/33",
                "not-a-cidr",
                "0.0.0.0/0",
            ],
            "expires" => &["2030-01-01T00:00:00Z", "2020-01-01T00:00:00Z", "yesterday"],
            "protocol" => &["TCP", "UDP", "SCTP", "ICMP"],
            "version" => &["latest", "v1.25", "v1.0", "v2.0", "1.25"],
            "window" => &["168h", "30m", "1h30m", "forever"],
            "reason" => &["ticket SEC-1234: vendor image", "short", ""],
            "name" => &["api", "web-out", "db", "Bad_Name", "a", "x-y-z", "-bad"],
            _ => &[
                "app",
                "team",
                "shop",
                "web",
                "configmaps",
                "get",
                "list",
                "",
                "*",
                "Bad Value!",
            ],
        };
        Value::String(rng.pick(pool).to_string())
    };
    if let Some(options) = schema.get("enum").and_then(|e| e.as_array()) {
        return if rng.chance(92) {
            options[rng.below(options.len() as u64) as usize].clone()
        } else {
            json!("Bogus")
        };
    }
    if schema.get("x-kubernetes-int-or-string").is_some() {
        return if rng.chance(70) {
            json!(rng
                .pick(&["80", "443", "5432", "0", "65536", "-1"])
                .parse::<i64>()
                .unwrap())
        } else {
            json!(rng.pick(&["http", "dns", "Not A Port"]))
        };
    }
    match schema.get("type").and_then(|t| t.as_str()) {
        Some("object") => {
            let mut out = Map::new();
            if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
                let required: Vec<&str> = schema
                    .get("required")
                    .and_then(|r| r.as_array())
                    .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
                    .unwrap_or_default();
                for (k, s) in props {
                    let wanted = if required.contains(&k.as_str()) {
                        rng.chance(97)
                    } else {
                        depth < 6 && rng.chance(45)
                    };
                    if wanted {
                        out.insert(k.clone(), random_value(s, k, rng, depth + 1));
                    }
                }
            } else if let Some(values) = schema.get("additionalProperties") {
                for _ in 0..rng.below(3) {
                    let k = rng.pick(&["app", "team", "tier", "palisade.dev/x", "Bad Key!"]);
                    out.insert(k.into(), random_value(values, "", rng, depth + 1));
                }
            }
            Value::Object(out)
        }
        Some("array") => {
            let items = schema
                .get("items")
                .cloned()
                .unwrap_or(json!({"type": "string"}));
            let n = if rng.chance(3) { 70 } else { rng.below(3) };
            Value::Array(
                (0..n)
                    .map(|_| random_value(&items, key, rng, depth + 1))
                    .collect(),
            )
        }
        Some("string") => strings(key, rng),
        Some("integer") => json!(rng
            .pick(&["0", "1", "1024", "65535", "70000", "-3"])
            .parse::<i64>()
            .unwrap()),
        Some("boolean") => json!(rng.chance(50)),
        _ => strings(key, rng),
    }
}

/// 200 SecurityBaselines generated from the CRD's own schema (valid and invalid), applied one
/// after another: each is either rejected by the API server with a message naming a `spec.`
/// field, or reconciled to Ready or to a clear InvalidSpec status; the operator never exits, and
/// reconciling them again without a spec change writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_baselines_from_the_schema_are_rejected_clearly_or_reconciled() {
    let _serial = common::serial::module(module_path!());
    const COUNT: usize = 200;
    let _one = FAULT.lock().await;
    let client = client().await;
    install_crd(&client).await;
    let id = unique("random");
    let _covered = TestNamespace::new(
        &client,
        "random",
        &[("palisade-test", &id), ("team", "shop")],
    )
    .await;
    let _other = TestNamespace::new(
        &client,
        "random",
        &[("palisade-test", &id), ("tier", "web")],
    )
    .await;
    let crd: serde_json::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(format!("{ROOT}/crds/securitybaseline.yaml")).unwrap(),
    )
    .unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let mut op = operator(&id);
    op.wait_ready().await;
    let baselines: Api<SecurityBaseline> = Api::all(client.clone());
    let mut rng = Rng(0x5eed_0000_0000_0001);
    let (mut accepted, mut rejected) = (Vec::new(), 0);
    for i in 0..COUNT {
        let mut spec = random_value(schema, "spec", &mut rng, 0);
        // Whatever else it says, it covers only this test's namespaces.
        if !spec["namespaceSelector"].is_object() {
            spec["namespaceSelector"] = serde_json::json!({});
        }
        spec["namespaceSelector"]["matchLabels"] = serde_json::json!({"palisade-test": id});
        let name = format!("{id}-{i}");
        let body = serde_json::json!({
            "apiVersion": "palisade.dev/v1alpha1", "kind": "SecurityBaseline",
            "metadata": {"name": name, "labels": {"palisade-test-id": id}},
            "spec": spec,
        });
        let params = kube::api::PatchParams::apply("palisade-tests").force();
        match baselines
            .patch(&name, &params, &kube::api::Patch::Apply(&body))
            .await
        {
            Ok(b) => accepted.push((name, b.metadata.generation)),
            // 422 from validation, or 500 from server-side apply's typed merge (a duplicate in a
            // set-typed list): either way the message names the field.
            Err(kube::Error::Api(e)) if e.code == 422 || e.code == 500 => {
                assert!(
                    e.message.contains("spec."),
                    "a rejection names the field: {}\nspec: {body}",
                    e.message
                );
                rejected += 1;
            }
            Err(e) => panic!("baseline {name}: unexpected error {e}\nspec: {body}"),
        }
    }
    eprintln!(
        "{} of {COUNT} random baselines accepted, {rejected} rejected by the API server",
        accepted.len()
    );
    assert!(
        accepted.len() >= COUNT / 10 && rejected >= COUNT / 10,
        "the generator covers both"
    );
    let (mut ready, mut invalid) = (0, 0);
    for (name, generation) in &accepted {
        let status = wait_for(
            &format!("baseline {name} reconciled"),
            Duration::from_secs(120),
            || async {
                let s = baselines.get(name).await.ok()?.status?;
                (s.observed_generation == *generation).then_some(s)
            },
        )
        .await;
        let is = |t: &str, v: &str| {
            status
                .conditions
                .iter()
                .any(|c| c.type_ == t && c.status == "True" && c.reason == v)
        };
        if status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
        {
            ready += 1;
        } else if is("Degraded", "InvalidSpec") {
            invalid += 1;
            let d = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Degraded")
                .unwrap();
            assert!(
                d.message.contains("spec."),
                "an invalid spec names the field: {}",
                d.message
            );
        } else {
            panic!(
                "baseline {name} is neither Ready nor InvalidSpec: {:?}",
                status.conditions
            );
        }
    }
    eprintln!("accepted: {ready} Ready, {invalid} InvalidSpec");
    assert!(
        op.child.try_wait().unwrap().is_none(),
        "the operator must not have exited"
    );

    // Reconciled again without a spec change (an annotation only): nothing is written.
    // A reconcile that failed (a finalizer update losing a race) retries after a back-off of
    // seconds: settled means no write for a window longer than that.
    wait_for("writes settled", Duration::from_secs(90), || async {
        let a = op.metric("palisade_api_writes_total", &[]).await?;
        tokio::time::sleep(Duration::from_secs(8)).await;
        let b = op.metric("palisade_api_writes_total", &[]).await?;
        (a == b).then_some(())
    })
    .await;
    let writes = op
        .metric("palisade_api_writes_total", &[])
        .await
        .unwrap_or(0.0);
    let by_kind = |text: String| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("palisade_api_writes_total{"))
            .map(str::to_string)
            .collect()
    };
    let writes_by_kind = by_kind(op.http_get("/metrics").await.unwrap_or_default().1);
    let reconciles = op
        .metric("palisade_reconciles_total", &[])
        .await
        .unwrap_or(0.0);
    for (name, _) in &accepted {
        let touch =
            serde_json::json!({"metadata": {"annotations": {"palisade-test/touched": "1"}}});
        baselines
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&touch),
            )
            .await
            .unwrap();
    }
    wait_for(
        "every touched baseline reconciled",
        Duration::from_secs(120),
        || async {
            let n = op.metric("palisade_reconciles_total", &[]).await?;
            (n >= reconciles + accepted.len() as f64).then_some(())
        },
    )
    .await;
    let after = op
        .metric("palisade_api_writes_total", &[])
        .await
        .unwrap_or(0.0);
    let after_by_kind = by_kind(op.http_get("/metrics").await.unwrap_or_default().1);
    assert_eq!(
        after, writes,
        "reconciles without a spec change wrote something: before {writes_by_kind:?}, after {after_by_kind:?}"
    );

    // Deleted while the operator runs, so their finalizers are released.
    for (name, _) in &accepted {
        let _ = baselines.delete(name, &DeleteParams::default()).await;
    }
    wait_for(
        "every random baseline gone",
        Duration::from_secs(180),
        || async {
            let left = baselines
                .list(&ListParams::default().labels(&format!("palisade-test-id={id}")))
                .await
                .ok()?;
            left.items.is_empty().then_some(())
        },
    )
    .await;
    op.stop();
}

/// A namespace with 5,000 pods (bound to a node that does not exist, so nothing runs) and a
/// Deployment of 1.4 MB (its pod template's environment), near the API server's request limit: the operator
/// converges without a timeout, and what it writes stays bounded (the status lists at most 50
/// violations, whatever the count).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_pods_and_a_near_limit_object_converge_with_a_bounded_status() {
    let _serial = common::serial::module(module_path!());
    use futures::StreamExt;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Pod;
    const PODS: usize = 5000;
    let _one = FAULT.lock().await;
    let client = client().await;
    install_crd(&client).await;
    let id = unique("big");
    let ns = TestNamespace::new(&client, "big", &[("palisade-test", &id)]).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let started = Instant::now();
    let created = futures::stream::iter(0..PODS)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let pod: Pod = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("p{i}"), "labels": {"app": "bulk"}},
                    "spec": {"nodeName": "nowhere", "hostNetwork": i % 2 == 0,
                             "containers": [{"name": "c", "image": "palisade.invalid/bulk:1"}]},
                }))
                .unwrap();
                pods.create(&Default::default(), &pod).await.is_ok()
            }
        })
        .buffer_unordered(32)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await;
    assert_eq!(created, PODS);
    let mut big = common::deployment(&ns.name, "big", true);
    // Annotations are capped at 256 KiB: the bulk goes into the pod template's environment.
    big["spec"]["template"]["spec"]["containers"][0]["env"] = (0..100)
        .map(|i| serde_json::json!({"name": format!("BLOB_{i}"), "value": "x".repeat(14_000)}))
        .collect::<Vec<_>>()
        .into();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    deployments
        .create(&Default::default(), &serde_json::from_value(big).unwrap())
        .await
        .expect("a 1.4 MB Deployment is accepted by the API server");
    eprintln!(
        "created {PODS} pods and a 1.4 MB Deployment in {} ms",
        started.elapsed().as_millis()
    );

    enforce_baseline(&client, &id).await;
    let mut op = operator(&id);
    op.wait_ready().await;
    let converging = Instant::now();
    let baselines: Api<SecurityBaseline> = Api::all(client.clone());
    let status = wait_for(
        "converged over 5,000 pods",
        Duration::from_secs(180),
        || async {
            let b = baselines.get(&id).await.ok()?;
            let s = b.status?;
            let ready = s
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            (ready && s.observed_generation == b.metadata.generation).then_some(s)
        },
    )
    .await;
    let total = status.violations.as_ref().map_or(0, |v| v.total);
    let size = serde_json::to_vec(&status).unwrap().len();
    eprintln!(
        "converged in {} ms: {total} violations, status {size} bytes, {} listed",
        converging.elapsed().as_millis(),
        status.top_violations.len()
    );
    assert!(total as usize >= PODS, "every pod is judged: {total}");
    assert!(status.top_violations.len() <= 50);
    assert!(size < 64 << 10, "the status stays small: {size} bytes");
    assert!(
        status.top_violations.iter().all(|v| v.message.len() < 1000),
        "no message carries the environment"
    );
    assert!(
        op.child.try_wait().unwrap().is_none(),
        "the operator must not have exited"
    );
    op.stop();
    let _ = baselines.delete(&id, &Default::default()).await;
}
