//! One reconcile of one SecurityBaseline: snapshot the caches, plan (pure, `plan.rs`), then
//! execute the plan's writes (apply + prune, namespace labels, reports, status, finalizer).

use super::apply::{self, Scoped};
use super::cache::Caches;
use super::compiled::CompiledCache;
use super::events::{self, EventMemory};
use super::observe::OtherBaseline;
use super::plan::{self, KindPlan, LabelPatch, Prepared, Since, Writes, Writing};
use crate::crd::SecurityBaseline;
use crate::metrics::{BaselineLabels, ErrorLabels, KindLabels, Metrics, ViolationLabels};
use crate::policy::desired::FIELD_MANAGER;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use super::plan::PSA_ANNOTATION;

/// Held by a baseline while namespaces carry PSA labels it set: namespaces have no owner
/// references, so garbage collection cannot remove the labels when the baseline goes.
pub const FINALIZER: &str = "palisade.dev/pod-security-labels";

pub struct Context {
    pub client: Client,
    pub caches: Caches,
    pub baselines: Store<DeserializeGuard<SecurityBaseline>>,
    pub compiled: Arc<CompiledCache>,
    /// What changed per baseline since its last reconcile (the triggers record it).
    pub changes: super::changes::ChangeLog,
    /// Per baseline, the last successful plan's per-namespace results.
    pub memos: Mutex<HashMap<String, plan::memo::Memo>>,
    /// Restores of generated objects, to notice a writer Palisade is fighting.
    pub fights: super::fights::Fights,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub events: EventMemory,
    /// Violation series last exported per baseline, with their values: stale series are
    /// removed, and unchanged ones are not set again.
    pub exported: Mutex<HashMap<String, HashMap<ViolationLabels, i64>>>,
    /// Consecutive failures per baseline, for exponential backoff.
    pub failures: Mutex<HashMap<String, u32>>,
    /// Periodic full resync, also the upper bound between reconciles.
    pub resync: Duration,
    pub audit_interval: Duration,
    /// OpenReports publishing (or pruning only, with `--reports` off); None without the API.
    pub reports: Option<super::reports::Reports>,
    /// The ceiling ClusterRole of generated Roles.
    pub grantable: String,
    /// What service accounts did (the audit webhook), when learning is configured.
    pub learn: Option<Arc<super::learn::LearnState>>,
}

/// Why a reconcile failed; `category` is a bounded label for metrics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: String,
        name: String,
        source: kube::Error,
    },
    #[error("pruning {kind} {name}: {source}")]
    Prune {
        kind: String,
        name: String,
        source: kube::Error,
    },
    #[error("writing status: {0}")]
    Status(kube::Error),
    #[error("updating finalizers: {0}")]
    Finalizer(kube::Error),
}

impl Error {
    /// `throttled` when the API server refused the request for load (429: API Priority and
    /// Fairness); otherwise what failed.
    pub fn category(&self) -> &'static str {
        let source = match self {
            Error::Apply { source, .. } | Error::Prune { source, .. } => source,
            Error::Status(source) | Error::Finalizer(source) => source,
        };
        if matches!(source, kube::Error::Api(s) if s.code == 429) {
            return "throttled";
        }
        match self {
            Error::Apply { .. } => "apply",
            Error::Prune { .. } => "prune",
            Error::Status(_) => "status",
            Error::Finalizer(_) => "finalizer",
        }
    }
}

/// Writes in flight at once within one reconcile.
const APPLY_CONCURRENCY: usize = 16;

pub async fn reconcile(
    guard: Arc<DeserializeGuard<SecurityBaseline>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let b = match &guard.0 {
        Ok(b) => b,
        Err(invalid) => {
            tracing::error!(name = ?invalid.metadata.name, error = %invalid.error, "SecurityBaseline cannot be read; fix or delete it");
            return Ok(Action::await_change());
        }
    };
    let name = b.name_any();
    let started = std::time::Instant::now();
    let labels = BaselineLabels {
        baseline: name.clone(),
    };
    ctx.metrics.reconciles.get_or_create(&labels).inc();
    let result = reconcile_valid(b, &ctx).await;
    ctx.metrics
        .reconcile_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    tracing::info!(baseline = %name, ok = result.is_ok(), elapsed_ms = started.elapsed().as_millis() as u64, "reconciled");
    if result.is_ok() {
        ctx.failures.lock().expect("lock").remove(&name);
        ctx.metrics
            .last_success
            .get_or_create(&labels)
            .set(Timestamp::now().as_second());
    }
    result
}

/// The other baselines whose specs compile (the conflict rule reads them).
fn others(ctx: &Context, me: &str, now: Timestamp) -> Vec<OtherBaseline> {
    ctx.baselines
        .state()
        .iter()
        .filter_map(|g| g.0.as_ref().ok())
        .filter(|o| o.name_any() != me)
        .filter_map(|o| {
            Some(OtherBaseline {
                name: o.name_any(),
                created: o.metadata.creation_timestamp.as_ref().map(|t| t.0),
                compiled: ctx.compiled.get(o, now).ok()?,
            })
        })
        .collect()
}

async fn reconcile_valid(b: &SecurityBaseline, ctx: &Context) -> Result<Action, Error> {
    let name = b.name_any();
    let now = Timestamp::now();
    let compiled = ctx.compiled.get(b, now);
    let contested = ctx.fights.contested(&name, now);
    export_contested(ctx, &name, &contested);
    let env = plan::Env {
        contested: &contested,
        grantable: &ctx.grantable,
        report_max_results: ctx.reports.as_ref().map(|r| r.max_results),
        learn: ctx.learn.as_deref(),
        resync: ctx.resync,
        audit_interval: ctx.audit_interval,
    };
    // Taken before the snapshot: a change recorded later has its own reconcile.
    let since = Since {
        changed: ctx.changes.take(&name),
        previous: ctx.memos.lock().expect("lock").remove(&name),
    };
    let snapshot = ctx.caches.snapshot();
    let prepared = plan::prepare(
        b,
        compiled.as_deref().map_err(|e| &**e),
        &others(ctx, &name, now),
        &snapshot,
        &env,
        now,
        since,
    );
    match prepared {
        Prepared::Release(release) => {
            let mut changes = Vec::new();
            label_namespaces(ctx, &release.labels, &mut changes).await?;
            if release.remove_finalizer {
                set_finalizer(ctx, b, false).await?;
            }
            ctx.events.forget(&name);
            Ok(Action::await_change())
        }
        Prepared::Invalid(status) => {
            // The schema rejects most of this; what slips through is reported, not retried.
            if let Some(status) = status {
                patch_status(ctx, &name, &status).await?;
            }
            Ok(Action::await_change())
        }
        Prepared::Converge(writing) => {
            let result = converge(b, ctx, *writing, &snapshot, now).await;
            if result.is_err() {
                // The cluster is short of what was planned: the next plan starts over.
                ctx.memos.lock().expect("lock").remove(&name);
                ctx.changes.everything(&name);
            }
            result
        }
    }
}

/// Writes first (the defenses do not wait for the audit), then the audit, reports and status.
async fn converge(
    b: &SecurityBaseline,
    ctx: &Context,
    writing: Writing<'_>,
    snapshot: &super::cache::Snapshot,
    now: Timestamp,
) -> Result<Action, Error> {
    let name = b.name_any();
    let uid = b.metadata.uid.clone().unwrap_or_default();
    if writing.add_finalizer {
        set_finalizer(ctx, b, true).await?;
    }
    let mut changes = Vec::new();
    let written = async {
        write_generated(ctx, &name, &writing.writes, &mut changes).await?;
        label_namespaces(ctx, &writing.labels, &mut changes).await
    }
    .await;
    tracing::debug!(baseline = %name, rebuilt = ?writing.rebuilt, "generated objects written");
    let plan = writing.audit(snapshot);
    let applied = match written {
        Ok(()) => match (&ctx.reports, &plan.reports) {
            (Some(r), Some(wanted)) => r
                .converge(&ctx.metrics, &name, &uid, (**wanted).clone())
                .await
                .map_err(|e| match e {
                    super::reports::WriteError::Apply(name, source) => Error::Apply {
                        kind: "Report".into(),
                        name,
                        source,
                    },
                    super::reports::WriteError::Prune(name, source) => Error::Prune {
                        kind: "Report".into(),
                        name,
                        source,
                    },
                })
                .map(drop),
            _ => Ok(()),
        },
        Err(e) => Err(e),
    };
    let degraded = applied.as_ref().err().map(|e| e.to_string());
    export_generated(ctx, &name, &plan.generated());
    // A reused audit is the report these gauges and Events already describe.
    if !plan.audit_reused {
        export_violations(ctx, &name, &plan.report);
    }

    let reference = b.object_ref(&());
    if !changes.is_empty() {
        let note: String = changes.join("; ").chars().take(1000).collect();
        events::normal(&ctx.recorder, &reference, "GeneratedObjectsChanged", note).await;
    }
    if !plan.audit_reused {
        let warnings = ctx.events.changes(&name, &plan.report);
        for w in &warnings.each {
            events::warn(&ctx.recorder, w).await;
        }
        if warnings.more > 0 {
            events::warn_more(&ctx.recorder, &reference, warnings.more).await;
        }
    }

    // While the report is behind (audit interval), the status waits for the next audit rather
    // than mixing this reconcile's counts with an older report; a failed write is said at once.
    if !plan.report_behind() || degraded.is_some() {
        let new_status = plan.status(degraded, b.status.as_ref(), now);
        if b.status.as_ref() != Some(&new_status) {
            patch_status(ctx, &name, &new_status).await?;
        }
    }
    applied?;
    if plan.remove_finalizer {
        set_finalizer(ctx, b, false).await?;
    }
    let requeue = plan.requeue;
    ctx.memos.lock().expect("lock").insert(name, plan.memo);
    Ok(Action::requeue(requeue))
}

/// Executes every generated kind's part of the plan, kind by kind.
async fn write_generated(
    ctx: &Context,
    baseline: &str,
    writes: &Writes,
    changes: &mut Vec<String>,
) -> Result<(), Error> {
    let Writes {
        network_policies,
        roles,
        role_bindings,
        admission_policies,
        admission_bindings,
        peer_authentications,
    } = writes;
    write_kind(ctx, baseline, network_policies, changes).await?;
    write_kind(ctx, baseline, roles, changes).await?;
    write_kind(ctx, baseline, role_bindings, changes).await?;
    write_kind(ctx, baseline, admission_policies, changes).await?;
    write_kind(ctx, baseline, admission_bindings, changes).await?;
    write_kind(ctx, baseline, peer_authentications, changes).await
}

/// Applies one kind's planned writes (concurrently: a first reconcile of a large cluster has
/// thousands), then prunes what the baseline no longer wants.
async fn write_kind<K>(
    ctx: &Context,
    baseline: &str,
    plan: &KindPlan<K>,
    changes: &mut Vec<String>,
) -> Result<(), Error>
where
    K: Scoped + Serialize + DeserializeOwned + Clone + Debug,
{
    let kind = || K::kind(&()).to_string();
    let pending: Vec<_> = plan
        .apply
        .iter()
        .map(|w| async move {
            apply::apply(&ctx.client, &ctx.metrics, baseline, &w.object, w.outcome)
                .await
                .map_err(|source| Error::Apply {
                    kind: kind(),
                    name: w.object.name_any(),
                    source,
                })
        })
        .collect();
    let results: Vec<_> = futures::stream::iter(pending)
        .buffered(APPLY_CONCURRENCY)
        .collect()
        .await;
    for (w, r) in plan.apply.iter().zip(results) {
        r?;
        let object = plan::describe(&w.object);
        if w.outcome == apply::Outcome::Updated {
            if let Some(c) = ctx
                .fights
                .restored(baseline, &object, &w.writers, Timestamp::now())
            {
                tracing::warn!(baseline, object = %object, writers = ?c.writers, until = %c.until, "another writer keeps rewriting a generated object; Palisade stops restoring it for a while");
                ctx.metrics
                    .fights
                    .get_or_create(&KindLabels {
                        baseline: baseline.into(),
                        kind: kind(),
                    })
                    .inc();
            }
        }
        changes.push(format!("{:?} {object}", w.outcome));
    }
    for o in &plan.prune {
        apply::prune(&ctx.client, &ctx.metrics, &**o)
            .await
            .map_err(|source| Error::Prune {
                kind: kind(),
                name: o.name_any(),
                source,
            })?;
        changes.push(format!("Pruned {}", plan::describe(&**o)));
    }
    Ok(())
}

/// Applies the planned Pod Security label patches.
async fn label_namespaces(
    ctx: &Context,
    patches: &[LabelPatch],
    changes: &mut Vec<String>,
) -> Result<(), Error> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    // Not forced: a label another manager took meanwhile is a conflict (retried with a fresh
    // cache, where the plan leaves it alone), never a takeover.
    let params = PatchParams::apply(FIELD_MANAGER);
    let pending: Vec<_> = patches
        .iter()
        .map(|p| {
            let (api, params) = (&api, &params);
            async move {
                api.patch(&p.namespace, params, &Patch::Apply(&p.body))
                    .await
                    .map_err(|source| Error::Apply {
                        kind: "Namespace".into(),
                        name: p.namespace.clone(),
                        source,
                    })
            }
        })
        .collect();
    let results: Vec<_> = futures::stream::iter(pending)
        .buffered(APPLY_CONCURRENCY)
        .collect()
        .await;
    for (p, r) in patches.iter().zip(results) {
        r?;
        ctx.metrics.count_write("Namespace", "apply");
        changes.push(format!(
            "{} Pod Security labels on Namespace {}",
            if p.set { "Set" } else { "Removed" },
            p.namespace
        ));
    }
    Ok(())
}

/// `palisade_contested_objects{baseline}`: generated objects left to another writer now.
fn export_contested(
    ctx: &Context,
    baseline: &str,
    contested: &std::collections::BTreeMap<String, super::fights::Contest>,
) {
    ctx.metrics
        .contested
        .get_or_create(&BaselineLabels {
            baseline: baseline.into(),
        })
        .set(contested.len() as i64);
}

fn export_generated(ctx: &Context, baseline: &str, counts: &crate::crd::GeneratedCounts) {
    for (kind, n) in counts.by_kind() {
        ctx.metrics
            .generated
            .get_or_create(&KindLabels {
                baseline: baseline.into(),
                kind: kind.into(),
            })
            .set(n as i64);
    }
}

/// Adds or removes Palisade's finalizer (no write when it is already as wanted). The patch carries
/// the resourceVersion, so another writer's concurrent finalizer change is never lost.
async fn set_finalizer(ctx: &Context, b: &SecurityBaseline, present: bool) -> Result<(), Error> {
    let current = b.finalizers();
    if current.iter().any(|f| f == FINALIZER) == present {
        return Ok(());
    }
    let mut wanted: Vec<String> = current
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if present {
        wanted.push(FINALIZER.to_string());
    }
    let patch = serde_json::json!({"metadata": {"finalizers": wanted, "resourceVersion": b.resource_version()}});
    let api: Api<SecurityBaseline> = Api::all(ctx.client.clone());
    match api
        .patch(
            &b.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => {}
        // Gone already, or changed meanwhile: the next reconcile sees the new state.
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(Error::Finalizer(e)),
    }
    ctx.metrics.count_write("SecurityBaseline", "patch");
    Ok(())
}

/// Removes the gauges of baselines that no longer exist: a deleted baseline's violations would
/// otherwise keep alerts firing, and its frozen last-success time would raise
/// PalisadeReconcileStalled. Counters stay (their rate falls to zero, as Prometheus expects).
pub fn forget_deleted_baselines(ctx: &Context, live: &HashSet<String>) {
    ctx.compiled.retain(live);
    ctx.memos
        .lock()
        .expect("lock")
        .retain(|b, _| live.contains(b));
    ctx.fights.retain(live);
    let gone: Vec<String> = {
        let exported = ctx.exported.lock().expect("lock");
        exported
            .keys()
            .filter(|b| !live.contains(*b))
            .cloned()
            .collect()
    };
    for baseline in gone {
        if let Some(labels) = ctx.exported.lock().expect("lock").remove(&baseline) {
            for l in labels.keys() {
                ctx.metrics.violations.remove(l);
            }
        }
        for (kind, _) in crate::crd::GeneratedCounts::default().by_kind() {
            ctx.metrics.generated.remove(&KindLabels {
                baseline: baseline.clone(),
                kind: kind.into(),
            });
        }
        let labels = BaselineLabels {
            baseline: baseline.clone(),
        };
        ctx.metrics.last_success.remove(&labels);
        ctx.metrics.contested.remove(&labels);
        ctx.events.forget(&baseline);
        tracing::debug!(%baseline, "baseline gone: its gauges are removed");
    }
}

fn export_violations(ctx: &Context, baseline: &str, report: &crate::policy::audit::AuditReport) {
    let counts = violation_counts(baseline, report);
    let mut exported = ctx.exported.lock().expect("lock");
    let previous = exported.entry(baseline.to_string()).or_default();
    sync_gauges(&ctx.metrics.violations, previous, counts);
}

/// The findings of one audit counted per gauge series. Counted by borrowed keys first: an audit
/// of a large cluster has tens of thousands of findings and far fewer series.
fn violation_counts(
    baseline: &str,
    report: &crate::policy::audit::AuditReport,
) -> HashMap<ViolationLabels, i64> {
    let mut by_key: HashMap<(&str, crate::policy::rules::Severity, &str), i64> = HashMap::new();
    for f in &report.findings {
        let ns = f.object.namespace.as_deref().unwrap_or_default();
        *by_key.entry((f.rule.id(), f.severity, ns)).or_default() += 1;
    }
    by_key
        .into_iter()
        .map(|((rule, severity, namespace), n)| {
            let labels = ViolationLabels {
                baseline: baseline.into(),
                rule: rule.into(),
                severity: severity.to_string(),
                namespace: namespace.into(),
            };
            (labels, n)
        })
        .collect()
}

/// Brings a family of gauges from `previous` (what was last exported) to `counts`: series no
/// longer counted are removed, and only the values that changed are set.
fn sync_gauges(
    family: &prometheus_client::metrics::family::Family<
        ViolationLabels,
        prometheus_client::metrics::gauge::Gauge,
    >,
    previous: &mut HashMap<ViolationLabels, i64>,
    counts: HashMap<ViolationLabels, i64>,
) {
    for stale in previous.keys().filter(|l| !counts.contains_key(*l)) {
        family.remove(stale);
    }
    for (l, n) in &counts {
        if previous.get(l) != Some(n) {
            family.get_or_create(l).set(*n);
        }
    }
    *previous = counts;
}

async fn patch_status(
    ctx: &Context,
    name: &str,
    status: &crate::crd::SecurityBaselineStatus,
) -> Result<(), Error> {
    let api: Api<SecurityBaseline> = Api::all(ctx.client.clone());
    let body = serde_json::json!({
        "apiVersion": SecurityBaseline::api_version(&()),
        "kind": SecurityBaseline::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(Error::Status)?;
    ctx.metrics.count_write("SecurityBaseline", "status");
    Ok(())
}

/// The wait after the `failures`-th failure in a row: 1 s, 2 s, 4 s, ... 256 s, then 5 minutes.
fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(9);
    Duration::from_secs(1u64 << exp).min(Duration::from_secs(300))
}

#[cfg(test)]
#[test]
fn backoff_doubles_from_one_second_to_five_minutes() {
    let secs: Vec<u64> = (1..=12).map(|n| backoff(n).as_secs()).collect();
    assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    assert_eq!(backoff(0).as_secs(), 1);
}

/// Per-baseline exponential backoff: 1s, 2s, 4s, ... up to 5 minutes.
pub fn error_policy(
    guard: Arc<DeserializeGuard<SecurityBaseline>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let name = guard.name_any();
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            baseline: name.clone(),
            category: error.category().into(),
        })
        .inc();
    let mut failures = ctx.failures.lock().expect("lock");
    let n = failures.entry(name.clone()).or_insert(0);
    *n = (*n + 1).min(16);
    let delay = backoff(*n);
    tracing::warn!(baseline = %name, error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

#[cfg(test)]
mod gauge_tests {
    use super::*;
    use crate::policy::audit::AuditReport;
    use crate::policy::finding::{Finding, ObjectRef};
    use crate::policy::rules::Rule;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;

    fn report(findings: &[(Rule, &str, &str)]) -> AuditReport {
        AuditReport {
            findings: findings
                .iter()
                .map(|(rule, ns, name)| {
                    Finding::new(*rule, ObjectRef::new("Pod", Some(ns), name), "spec", "bad")
                })
                .collect(),
            ..Default::default()
        }
    }

    /// The series of baseline `b`'s findings of `rule` in `ns`.
    fn series(rule: Rule, ns: &str) -> ViolationLabels {
        ViolationLabels {
            baseline: "b".into(),
            rule: rule.id().into(),
            severity: rule.severity().to_string(),
            namespace: ns.into(),
        }
    }

    fn value(family: &Family<ViolationLabels, Gauge>, rule: Rule, ns: &str) -> Option<i64> {
        family.get(&series(rule, ns)).map(|g| g.get())
    }

    #[test]
    fn violation_gauges_follow_the_audit_and_unchanged_series_are_left_alone() {
        let family = Family::<ViolationLabels, Gauge>::default();
        let mut exported = HashMap::new();
        let first = report(&[
            (Rule::Privileged, "a", "p1"),
            (Rule::Privileged, "a", "p2"),
            (Rule::Privileged, "b", "p3"),
            (Rule::HostNamespaces, "a", "p1"),
        ]);
        sync_gauges(&family, &mut exported, violation_counts("b", &first));
        assert_eq!(value(&family, Rule::Privileged, "a"), Some(2));
        assert_eq!(value(&family, Rule::Privileged, "b"), Some(1));
        assert_eq!(value(&family, Rule::HostNamespaces, "a"), Some(1));
        assert_eq!(exported.len(), 3);

        // A series whose count did not change is not set again: a value put there meanwhile
        // stays, which shows it was not touched.
        family.get_or_create(&series(Rule::Privileged, "b")).set(99);
        let second = report(&[(Rule::Privileged, "a", "p1"), (Rule::Privileged, "b", "p3")]);
        sync_gauges(&family, &mut exported, violation_counts("b", &second));
        assert_eq!(value(&family, Rule::Privileged, "a"), Some(1), "changed");
        assert_eq!(value(&family, Rule::Privileged, "b"), Some(99), "unchanged");
        assert_eq!(
            value(&family, Rule::HostNamespaces, "a"),
            None,
            "stale, removed"
        );
        assert_eq!(exported.len(), 2);
    }
}
