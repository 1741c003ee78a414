//! One reconcile of one SecurityBaseline: observe -> evaluate/build (pure) -> apply + prune -> status.

use super::apply::{self, generated_by, Outcome};
use super::cache::Caches;
use super::events::{self, EventMemory};
use super::observe;
use super::status::{self, StatusInput};
use crate::crd::EnforcePreview;
use crate::crd::{Enforcement, GeneratedCounts, SecurityBaseline};
use crate::metrics::{BaselineLabels, ErrorLabels, KindLabels, Metrics, ViolationLabels};
use crate::policy::baseline::CompiledBaseline;
use crate::policy::desired::{self, ClusterObjects, NamespaceObjects, FIELD_MANAGER};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Annotation on namespaces whose PSA labels Palisade set, naming the baseline.
pub const PSA_ANNOTATION: &str = "palisade.dev/pod-security-labels";

/// Held by a baseline while namespaces carry PSA labels it set: namespaces have no owner
/// references, so garbage collection cannot remove the labels when the baseline goes.
pub const FINALIZER: &str = "palisade.dev/pod-security-labels";

pub struct Context {
    pub client: Client,
    pub caches: Caches,
    pub baselines: Store<DeserializeGuard<SecurityBaseline>>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub events: EventMemory,
    /// Violation label sets last exported per baseline, to remove stale series.
    pub exported: Mutex<HashMap<String, HashSet<ViolationLabels>>>,
    /// Consecutive failures per baseline, for exponential backoff.
    pub failures: Mutex<HashMap<String, u32>>,
    /// Periodic full resync, also the upper bound between reconciles.
    pub resync: Duration,
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
    pub fn category(&self) -> &'static str {
        match self {
            Error::Apply { .. } => "apply",
            Error::Prune { .. } => "prune",
            Error::Status(_) => "status",
            Error::Finalizer(_) => "finalizer",
        }
    }
}

fn owner_ref(b: &SecurityBaseline) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: SecurityBaseline::api_version(&()).into(),
        kind: SecurityBaseline::kind(&()).into(),
        name: b.name_any(),
        uid: b.metadata.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

fn key<K: Resource>(o: &K) -> (Option<String>, String) {
    (o.meta().namespace.clone(), o.name_any())
}

/// Applies the wanted objects of one kind and prunes this baseline's others.
macro_rules! converge {
    ($ctx:expr, $b:expr, $uid:expr, $store:ident, $wanted:expr, $counter:expr, $changes:expr) => {{
        let wanted = $wanted;
        let cached: HashMap<_, _> = $ctx
            .caches
            .$store
            .state()
            .into_iter()
            .map(|o| (key(&*o), o))
            .collect();
        let keep: BTreeSet<_> = wanted.iter().map(key).collect();
        // Applies run concurrently (a first reconcile of a large cluster has thousands);
        // an object equal to its cached copy costs no request.
        let (client, metrics, baseline) = (&$ctx.client, &$ctx.metrics, $b.name.as_str());
        // Collected first: a closure in the stream's type trips the Send check (higher-ranked lifetimes).
        let pending: Vec<_> = wanted.iter().map(|w| {
            let k = key(w);
            let actual = cached.get(&k).map(|a| &**a);
            async move {
                apply::apply(client, metrics, baseline, w, actual)
                    .await
                    .map(|o| (k, o))
                    .map_err(|source| Error::Apply {
                        kind: kind_of(w),
                        name: w.name_any(),
                        source,
                    })
            }
        }).collect();
        let mut outcomes: Vec<_> = futures::stream::iter(pending)
        .buffer_unordered(APPLY_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, Error>>()?;
        outcomes.sort_by(|a, b| a.0.cmp(&b.0));
        for (k, outcome) in outcomes {
            if outcome != Outcome::Unchanged {
                $changes.push(format!("{:?} {} {}", outcome, kind_of(&wanted[0]), display(&k)));
            }
        }
        for (k, o) in &cached {
            if !keep.contains(k) && generated_by(&**o, &$b.name, $uid) {
                apply::prune(&$ctx.client, &$ctx.metrics, &**o)
                    .await
                    .map_err(|source| Error::Prune {
                        kind: kind_of(&**o),
                        name: o.name_any(),
                        source,
                    })?;
                $changes.push(format!("Pruned {} {}", kind_of(&**o), display(k)));
            }
        }
        $counter = wanted.len() as u32;
    }};
}

/// Writes in flight at once within one reconcile.
const APPLY_CONCURRENCY: usize = 16;

fn kind_of<K: Resource<DynamicType = ()>>(_: &K) -> String {
    K::kind(&()).to_string()
}

fn display(k: &(Option<String>, String)) -> String {
    match &k.0 {
        Some(ns) => format!("{ns}/{}", k.1),
        None => k.1.clone(),
    }
}

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

async fn reconcile_valid(b: &SecurityBaseline, ctx: &Context) -> Result<Action, Error> {
    let name = b.name_any();
    let now = Timestamp::now();
    // Deletion first: it needs nothing of the spec, and a spec that no longer compiles must not
    // keep the finalizer (and the namespaces' PSA labels) forever.
    if b.metadata.deletion_timestamp.is_some() {
        // Owned objects go with the baseline (garbage collection); only the labels need us.
        let mut changes = Vec::new();
        namespace_labels(ctx, &name, &BTreeMap::new(), &mut changes).await?;
        set_finalizer(ctx, b, false).await?;
        ctx.events.forget(&name);
        return Ok(Action::await_change());
    }
    let compiled = match CompiledBaseline::compile(&name, &b.spec, now) {
        Ok(c) => c,
        Err(e) => {
            // The schema rejects most of this; what slips through is reported, not retried.
            write_invalid_status(b, ctx, &e.to_string()).await?;
            return Ok(Action::await_change());
        }
    };
    let uid = b.metadata.uid.clone().unwrap_or_default();
    let needs_finalizer = compiled.settings.enforcement == Enforcement::Enforce
        && compiled.settings.psa_namespace_labels;
    if needs_finalizer {
        set_finalizer(ctx, b, true).await?;
    }
    let namespaces = observe::covered_namespaces(&ctx.caches, &compiled);
    let others: Vec<(Arc<SecurityBaseline>, CompiledBaseline)> = ctx
        .baselines
        .state()
        .into_iter()
        .filter_map(|g| g.0.as_ref().ok().map(|o| Arc::new(o.clone())))
        .filter_map(|o| {
            CompiledBaseline::compile(&o.name_any(), &o.spec, now)
                .ok()
                .map(|c| (o, c))
        })
        .collect();
    let ownership = observe::ownership(b, &compiled, &namespaces, &others);
    let owner = owner_ref(b);

    // Build: what this baseline wants (pure).
    let api_server = observe::api_server_endpoints(&ctx.caches);
    // Read once per reconcile; the build (also run for the Audit preview) only looks them up.
    let covered_names: BTreeSet<String> = namespaces.iter().map(|n| n.name_any()).collect();
    let workloads = observe::workload_pods(&ctx.caches, &covered_names);
    let webhooks = observe::webhook_backends(&ctx.caches);
    let learned = super::learned::evaluate(ctx.learn.as_deref(), &compiled, &covered_names, now);
    let build = |compiled: &CompiledBaseline,
                 owned: &BTreeSet<String>|
     -> BTreeMap<String, NamespaceObjects> {
        owned
            .iter()
            .map(|ns| {
                let inputs = desired::NamespaceContext {
                    labels: namespaces
                        .iter()
                        .find(|n| n.metadata.name.as_deref() == Some(ns.as_str()))
                        .and_then(|n| n.metadata.labels.as_ref()),
                    api_server: &api_server,
                    workloads: workloads.get(ns).map_or(&[], Vec::as_slice),
                    webhooks: webhooks.get(ns).map_or(&[], Vec::as_slice),
                    learned: learned.ready.get(ns),
                };
                (
                    ns.clone(),
                    desired::namespace_objects(ns, &inputs, compiled, owner.as_ref()),
                )
            })
            .collect()
    };
    let mut per_ns = build(&compiled, &ownership.owned);
    let refused = bound_by_ceiling(ctx, &compiled, &mut per_ns);
    let enforce = compiled.settings.enforcement == Enforcement::Enforce;
    // Audit mode: what Enforce would do, by the same build and the same apply/prune decisions.
    let preview = (!enforce).then(|| {
        let mut as_enforce = compiled.clone();
        as_enforce.settings.enforcement = Enforcement::Enforce;
        let own = observe::ownership(b, &as_enforce, &namespaces, &others);
        let mut wanted = build(&as_enforce, &own.owned);
        bound_by_ceiling(ctx, &as_enforce, &mut wanted);
        let cluster = desired::cluster_objects(&as_enforce, owner.as_ref());
        enforce_preview(ctx, &name, &uid, &wanted, &cluster)
    });
    let cluster = if enforce {
        desired::cluster_objects(&compiled, owner.as_ref())
    } else {
        ClusterObjects::default()
    };

    // Evaluate against the state this reconcile converges to.
    let desired_policies: Vec<_> = per_ns
        .values()
        .flat_map(|o| o.network_policies.iter().cloned())
        .collect();
    let report = observe::audit(
        &ctx.caches,
        &compiled,
        &namespaces,
        desired_policies,
        &ownership.owned,
        learned
            .usage
            .as_ref()
            .map(|usage| crate::policy::audit::LearnedUsage {
                usage,
                since: learned.window_start,
                label: learned.label.clone(),
            }),
    );

    // Apply + prune.
    let mut changes = Vec::new();
    let mut generated = GeneratedCounts::default();
    let applied = async {
        converge!(
            ctx,
            compiled,
            &uid,
            network_policies,
            per_ns
                .values()
                .flat_map(|o| o.network_policies.clone())
                .collect::<Vec<_>>(),
            generated.network_policies,
            changes
        );
        converge!(
            ctx,
            compiled,
            &uid,
            roles,
            per_ns
                .values()
                .flat_map(|o| o.roles.clone())
                .collect::<Vec<_>>(),
            generated.roles,
            changes
        );
        converge!(
            ctx,
            compiled,
            &uid,
            role_bindings,
            per_ns
                .values()
                .flat_map(|o| o.role_bindings.clone())
                .collect::<Vec<_>>(),
            generated.role_bindings,
            changes
        );
        converge!(
            ctx,
            compiled,
            &uid,
            admission_policies,
            cluster.admission_policies.clone(),
            generated.admission_policies,
            changes
        );
        let mut _bindings = 0;
        converge!(
            ctx,
            compiled,
            &uid,
            admission_bindings,
            cluster.admission_bindings.clone(),
            _bindings,
            changes
        );
        generated.labelled_namespaces = namespace_labels(ctx, &name, &per_ns, &mut changes).await?;
        if let Some(r) = &ctx.reports {
            let covered: Vec<String> = namespaces.iter().map(|n| n.name_any()).collect();
            let wanted = super::reports::wanted(
                &name,
                &covered,
                &report.findings,
                owner.as_ref(),
                r.max_results,
            );
            r.converge(&ctx.metrics, &name, &uid, wanted)
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
                })?;
        }
        Ok::<(), Error>(())
    }
    .await;
    let degraded = applied.as_ref().err().map(|e| e.to_string());
    for (kind, n) in GENERATED_KINDS.into_iter().zip([
        generated.network_policies,
        generated.roles,
        generated.role_bindings,
        generated.admission_policies,
        generated.labelled_namespaces,
    ]) {
        ctx.metrics
            .generated
            .get_or_create(&KindLabels {
                baseline: name.clone(),
                kind: kind.into(),
            })
            .set(n as i64);
    }
    export_violations(ctx, &name, &report);

    let reference = b.object_ref(&());
    if !changes.is_empty() {
        let note: String = changes.join("; ").chars().take(1000).collect();
        events::normal(&ctx.recorder, &reference, "GeneratedObjectsChanged", note).await;
    }
    let warnings = ctx.events.changes(&name, &report);
    for w in &warnings.each {
        events::warn(&ctx.recorder, w).await;
    }
    if warnings.more > 0 {
        events::warn_more(&ctx.recorder, &reference, warnings.more).await;
    }

    let labelled = generated.labelled_namespaces;
    let new_status = status::build(
        StatusInput {
            generation: b.metadata.generation,
            report: &report,
            generated: generated.clone(),
            allowances: per_ns
                .values()
                .flat_map(|o| o.allowances.iter().cloned())
                .collect(),
            preview,
            refused_rules: refused,
            conflicts: ownership.conflicts,
            learned: learned.status.clone(),
            degraded,
            enforce,
        },
        b.status.as_ref(),
        now,
    );
    if b.status.as_ref() != Some(&new_status) {
        patch_status(ctx, &name, &new_status).await?;
    }
    applied?;
    if !needs_finalizer && labelled == 0 {
        set_finalizer(ctx, b, false).await?;
    }
    let requeue = compiled
        .next_expiry(now)
        .map(|t| t.as_second())
        .into_iter()
        .chain(learned.window_ends)
        .min()
        .map(|t| Duration::from_secs((t - now.as_second()).max(1) as u64))
        .map_or(ctx.resync, |d| d.min(ctx.resync));
    Ok(Action::requeue(requeue))
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

/// Sets or clears the PSA labels on namespaces; returns how many namespaces carry them.
/// Leaves out of every generated Role the rules its ceiling ClusterRole does not hold (the API
/// server would refuse the whole Role: Palisade has no `escalate`), and names them for status:
/// `spec.rbac.serviceAccounts[i].rules[j]` per refused declared rule.
fn bound_by_ceiling(
    ctx: &Context,
    compiled: &CompiledBaseline,
    per_ns: &mut BTreeMap<String, NamespaceObjects>,
) -> Vec<String> {
    use crate::policy::rbac::ceiling::covers;
    let ceiling: Vec<_> = ctx
        .caches
        .cluster_roles
        .state()
        .into_iter()
        .find(|r| r.name_any() == ctx.grantable)
        .and_then(|r| r.rules.clone())
        .unwrap_or_default();
    let mut refused = Vec::new();
    for (i, sa) in compiled
        .spec
        .rbac
        .iter()
        .flat_map(|r| r.service_accounts.iter())
        .enumerate()
    {
        for (j, rule) in sa.rules.iter().enumerate() {
            if !covers(&ceiling, &rule.to_policy_rule()) {
                refused.push(format!("spec.rbac.serviceAccounts[{i}].rules[{j}]"));
            }
        }
    }
    let declared: Vec<_> = compiled
        .spec
        .rbac
        .iter()
        .flat_map(|r| r.service_accounts.iter())
        .flat_map(|sa| sa.rules.iter().map(|r| r.to_policy_rule()))
        .collect();
    for (ns, objects) in per_ns.iter_mut() {
        for role in &mut objects.roles {
            let name = role.metadata.name.clone().unwrap_or_default();
            if let Some(rules) = &mut role.rules {
                rules.retain(|r| {
                    let ok = covers(&ceiling, r);
                    if !ok && !declared.contains(r) {
                        // A learned rule: named by what it grants.
                        let what = crate::policy::rbac::learn::summary(std::slice::from_ref(r));
                        refused.push(format!(
                            "learned rule of Role {ns}/{name}: {}",
                            what.join("")
                        ));
                    }
                    ok
                });
            }
        }
    }
    refused.sort();
    refused.dedup();
    refused
}

/// Most entries a preview lists; the rest are counted.
const PREVIEW_MAX: usize = 100;

fn enforce_preview(
    ctx: &Context,
    name: &str,
    uid: &str,
    per_ns: &BTreeMap<String, NamespaceObjects>,
    cluster: &ClusterObjects,
) -> EnforcePreview {
    use super::apply::{plan_kind, PlannedChanges};
    let mut p = PlannedChanges::default();
    let policies: Vec<_> = per_ns
        .values()
        .flat_map(|o| o.network_policies.iter().cloned())
        .collect();
    let roles: Vec<_> = per_ns
        .values()
        .flat_map(|o| o.roles.iter().cloned())
        .collect();
    let bindings: Vec<_> = per_ns
        .values()
        .flat_map(|o| o.role_bindings.iter().cloned())
        .collect();
    let c = &ctx.caches;
    plan_kind(&policies, &c.network_policies.state(), name, uid, &mut p);
    plan_kind(&roles, &c.roles.state(), name, uid, &mut p);
    plan_kind(&bindings, &c.role_bindings.state(), name, uid, &mut p);
    plan_kind(
        &cluster.admission_policies,
        &c.admission_policies.state(),
        name,
        uid,
        &mut p,
    );
    plan_kind(
        &cluster.admission_bindings,
        &c.admission_bindings.state(),
        name,
        uid,
        &mut p,
    );
    let mut label = Vec::new();
    for ns in c.namespaces.state() {
        let n = ns.name_any();
        if let Some(o) = per_ns.get(&n).filter(|o| !o.namespace_labels.is_empty()) {
            if !o
                .namespace_labels
                .iter()
                .all(|(k, v)| ns.labels().get(k) == Some(v))
            {
                label.push(n);
            }
        }
    }
    let mut omitted = 0;
    let mut cap = |mut v: Vec<String>| {
        v.sort();
        if v.len() > PREVIEW_MAX {
            omitted += (v.len() - PREVIEW_MAX) as u32;
            v.truncate(PREVIEW_MAX);
        }
        v
    };
    EnforcePreview {
        create: cap(p.create),
        update: cap(p.update),
        delete: cap(p.delete),
        label_namespaces: cap(label),
        omitted,
    }
}

async fn namespace_labels(
    ctx: &Context,
    baseline: &str,
    per_ns: &BTreeMap<String, NamespaceObjects>,
    changes: &mut Vec<String>,
) -> Result<u32, Error> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut count = 0;
    let mut patches = Vec::new();
    for ns in ctx.caches.namespaces.state() {
        let name = ns.name_any();
        let wanted = per_ns
            .get(&name)
            .map(|o| &o.namespace_labels)
            .filter(|l| !l.is_empty());
        let ours = ns.annotations().get(PSA_ANNOTATION).map(String::as_str) == Some(baseline);
        let body = match wanted {
            Some(labels) => {
                let current = ns.labels();
                if ours && labels.iter().all(|(k, v)| current.get(k) == Some(v)) {
                    count += 1;
                    continue;
                }
                count += 1;
                serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {
                    "name": name, "labels": labels, "annotations": {PSA_ANNOTATION: baseline}}})
            }
            // Applying nothing under our field manager removes the labels we set, and only those.
            None if ours => {
                serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
            }
            None => continue,
        };
        patches.push((name, body, wanted.is_some()));
    }
    patches.sort_by(|a, b| a.0.cmp(&b.0));
    let pending: Vec<_> = patches
        .iter()
        .map(|(name, body, _)| {
            let (api, params) = (&api, &params);
            async move {
                api.patch(name, params, &Patch::Apply(body))
                    .await
                    .map_err(|source| Error::Apply {
                        kind: "Namespace".into(),
                        name: name.clone(),
                        source,
                    })
            }
        })
        .collect();
    let results: Vec<_> = futures::stream::iter(pending)
        .buffered(APPLY_CONCURRENCY)
        .collect()
        .await;
    for ((name, _, set), r) in patches.iter().zip(results) {
        r?;
        ctx.metrics.count_write("Namespace", "apply");
        changes.push(format!(
            "{} Pod Security labels on Namespace {name}",
            if *set { "Set" } else { "Removed" }
        ));
    }
    Ok(count)
}

/// Kinds the `palisade_generated_objects` gauge is exported for.
const GENERATED_KINDS: [&str; 5] = [
    "NetworkPolicy",
    "Role",
    "RoleBinding",
    "ValidatingAdmissionPolicy",
    "Namespace",
];

/// Removes the gauges of baselines that no longer exist: a deleted baseline's violations would
/// otherwise keep alerts firing, and its frozen last-success time would raise
/// PalisadeReconcileStalled. Counters stay (their rate falls to zero, as Prometheus expects).
pub fn forget_deleted_baselines(ctx: &Context, live: &HashSet<String>) {
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
            for l in &labels {
                ctx.metrics.violations.remove(l);
            }
        }
        for kind in GENERATED_KINDS {
            ctx.metrics.generated.remove(&KindLabels {
                baseline: baseline.clone(),
                kind: kind.into(),
            });
        }
        let labels = BaselineLabels {
            baseline: baseline.clone(),
        };
        ctx.metrics.last_success.remove(&labels);
        ctx.events.forget(&baseline);
        tracing::debug!(%baseline, "baseline gone: its gauges are removed");
    }
}

fn export_violations(ctx: &Context, baseline: &str, report: &crate::policy::audit::AuditReport) {
    let mut counts: HashMap<ViolationLabels, i64> = HashMap::new();
    for f in &report.findings {
        let l = ViolationLabels {
            baseline: baseline.into(),
            rule: f.rule.id().into(),
            severity: f.severity.to_string(),
            namespace: f.object.namespace.clone().unwrap_or_default(),
        };
        *counts.entry(l).or_default() += 1;
    }
    let mut exported = ctx.exported.lock().expect("lock");
    let previous = exported.entry(baseline.to_string()).or_default();
    for stale in previous.iter().filter(|l| !counts.contains_key(*l)) {
        ctx.metrics.violations.remove(stale);
    }
    for (l, n) in &counts {
        ctx.metrics.violations.get_or_create(l).set(*n);
    }
    *previous = counts.into_keys().collect();
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

async fn write_invalid_status(b: &SecurityBaseline, ctx: &Context, why: &str) -> Result<(), Error> {
    let status = invalid_status(
        b.status.as_ref(),
        b.metadata.generation,
        why,
        Timestamp::now(),
    );
    if b.status.as_ref() != Some(&status) {
        patch_status(ctx, &b.name_any(), &status).await?;
    }
    Ok(())
}

/// The status of a spec that does not compile: Ready=False, Degraded=True (InvalidSpec). As for
/// every condition, `lastTransitionTime` changes only when a condition's status does, not when
/// its message does (a different invalid spec is no transition).
fn invalid_status(
    prev: Option<&crate::crd::SecurityBaselineStatus>,
    generation: Option<i64>,
    why: &str,
    now: Timestamp,
) -> crate::crd::SecurityBaselineStatus {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    let cond = |t: &str, ok: bool| Condition {
        type_: t.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: "InvalidSpec".into(),
        message: why.into(),
        observed_generation: generation,
        last_transition_time: Time(now),
    };
    let mut status = prev.cloned().unwrap_or_default();
    status.observed_generation = generation;
    status.conditions = vec![cond("Ready", false), cond("Degraded", true)];
    if let Some(prev) = prev {
        for c in &mut status.conditions {
            if let Some(p) = prev
                .conditions
                .iter()
                .find(|p| p.type_ == c.type_ && p.status == c.status)
            {
                c.last_transition_time = p.last_transition_time.clone();
            }
        }
    }
    status
}

#[cfg(test)]
#[test]
fn an_invalid_specs_conditions_keep_their_transition_time_when_only_the_message_changes() {
    let t0: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
    let t1: Timestamp = "2026-12-01T11:00:00Z".parse().unwrap();
    let first = invalid_status(None, Some(1), "spec.a: bad", t0);
    let second = invalid_status(Some(&first), Some(2), "spec.b: bad", t1);
    assert_eq!(second.conditions[1].message, "spec.b: bad");
    assert_eq!(second.observed_generation, Some(2));
    for c in &second.conditions {
        assert_eq!(c.last_transition_time.0, t0, "{}", c.type_);
    }
    // From Ready=True to Ready=False is a transition.
    let mut ready = first.clone();
    ready.conditions[0].status = "True".into();
    let after = invalid_status(Some(&ready), Some(3), "spec.c: bad", t1);
    assert_eq!(after.conditions[0].last_transition_time.0, t1);
    assert_eq!(after.conditions[1].last_transition_time.0, t0);
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
