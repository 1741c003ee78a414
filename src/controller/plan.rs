//! The pure half of a reconcile: from one baseline and a snapshot of the caches, everything the
//! reconcile should write (objects to apply and prune, namespace labels, reports, finalizer,
//! status, requeue), in plain synchronous code. `reconcile.rs` executes a plan; executing one
//! and planning again over the result plans no writes.

use super::apply::{generated_by, other_writers, palisades, planned, Outcome};
use super::cache::Snapshot;
use super::fights::Contest;
use super::learn::LearnState;
use super::observe::{self, OtherBaseline};
use super::status::{self, StatusInput};
use crate::crd::{
    EnforcePreview, Enforcement, GeneratedCounts, LearnedRole, SecurityBaseline,
    SecurityBaselineStatus,
};
use crate::policy::audit::AuditReport;
use crate::policy::baseline::CompiledBaseline;
use crate::policy::desired::{self, ClusterObjects, NamespaceObjects};
use crate::policy::mesh::istio::PeerAuthentication;
use crate::policy::verdicts::{Judge, Verdicts};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};
use memo::{Changed, Globals, Memo, Scope};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// Annotation on namespaces whose PSA labels Palisade set, naming the baseline.
pub const PSA_ANNOTATION: &str = "palisade.dev/pod-security-labels";

/// What a plan depends on besides the baseline and the caches.
pub struct Env<'a> {
    /// The ClusterRole whose rules bound what generated Roles may grant.
    pub grantable: &'a str,
    /// Results per OpenReports report, when reports are published.
    pub report_max_results: Option<usize>,
    /// What service accounts did (the audit webhook), when learning is configured.
    pub learn: Option<&'a LearnState>,
    /// The periodic resync: the longest a plan waits before the next reconcile.
    pub resync: Duration,
    /// The shortest time between two audits when only namespaced objects changed: within it a
    /// plan writes what changed and reuses the previous audit, and asks for a reconcile when it
    /// ends.
    pub audit_interval: Duration,
    /// Generated objects of this baseline left to another writer for now (`Kind ns/name`).
    pub contested: &'a BTreeMap<String, Contest>,
}

/// Everything one reconcile of one baseline writes.
pub enum Plan {
    /// The baseline is being deleted: its objects go with it (garbage collection); the Pod
    /// Security labels it set go first, then its finalizer.
    Release(Release),
    /// The spec does not compile: the status says why (when it does not already), nothing else
    /// is written, and nothing is retried until the spec changes.
    Invalid(Option<Box<SecurityBaselineStatus>>),
    Converge(Box<Converge>),
}

pub struct Release {
    pub labels: Vec<LabelPatch>,
    pub remove_finalizer: bool,
}

/// A server-side apply of one namespace's Pod Security labels (or of none: that removes the
/// ones Palisade set, and only those).
#[derive(Clone, Debug, PartialEq)]
pub struct LabelPatch {
    pub namespace: String,
    pub body: Value,
    /// Sets labels (false: removes them).
    pub set: bool,
}

/// One generated object to write: it is missing, or differs from what the cache holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Write<K> {
    pub object: K,
    /// Created or Updated (never Unchanged: unchanged objects are not in a plan).
    pub outcome: Outcome,
    /// When Updated: the other writers the cached object names and the fields they hold
    /// (`manager (Apply): spec.ingress`), for noticing a fight.
    pub writers: Vec<String>,
}

/// One generated kind's part of a plan.
#[derive(Clone, Debug, PartialEq)]
pub struct KindPlan<K> {
    /// How many objects of the kind the baseline wants (written or already as wanted).
    pub wanted: u32,
    pub apply: Vec<Write<K>>,
    /// Objects this baseline generated and no longer wants.
    pub prune: Vec<Arc<K>>,
    /// Wanted objects whose name is taken by an object that is not Palisade's: never written,
    /// reported (`Kind namespace/name`).
    pub foreign: Vec<String>,
    /// Objects that differ but are left to another writer for now (a fight: see `fights`).
    pub contested: Vec<String>,
    /// Wanted objects of a kind the API server does not serve (its CRD is not installed):
    /// nothing can be written, and status says so (`Kind namespace/name`).
    pub unserved: Vec<String>,
}

impl<K> Default for KindPlan<K> {
    fn default() -> Self {
        KindPlan {
            wanted: 0,
            apply: Vec::new(),
            prune: Vec::new(),
            foreign: Vec::new(),
            contested: Vec::new(),
            unserved: Vec::new(),
        }
    }
}

fn key<K: Resource>(o: &K) -> (Option<String>, String) {
    (o.meta().namespace.clone(), o.name_any())
}

/// `Kind namespace/name`, as events and the preview name objects.
pub fn describe<K: Resource<DynamicType = ()>>(o: &K) -> String {
    let kind = K::kind(&());
    match &o.meta().namespace {
        Some(ns) => format!("{kind} {ns}/{}", o.name_any()),
        None => format!("{kind} {}", o.name_any()),
    }
}

impl<K: Resource<DynamicType = ()> + Serialize> KindPlan<K> {
    /// The plan of a kind whose CRD may be absent: `cached` is `None` while it is not served,
    /// and then nothing is written (nor pruned: the objects went with the CRD).
    pub fn optional(
        wanted: Vec<K>,
        cached: Option<&[Arc<K>]>,
        name: &str,
        uid: &str,
        contested: &BTreeMap<String, Contest>,
    ) -> Self {
        match cached {
            Some(cached) => KindPlan::new(wanted, cached, name, uid, contested),
            None => {
                let mut unserved: Vec<String> = wanted.iter().map(describe).collect();
                unserved.sort();
                KindPlan {
                    wanted: 0,
                    unserved,
                    ..KindPlan::default()
                }
            }
        }
    }

    /// What converging `cached` to `wanted` takes: writes for what is missing or differs, and
    /// prunes of what baseline `name` (owner `uid`) generated and no longer wants. Objects of
    /// the kind without this baseline's labels and owner are never pruned.
    /// Objects in `contested` that differ are left alone (another writer keeps rewriting them).
    pub fn new(
        wanted: Vec<K>,
        cached: &[Arc<K>],
        name: &str,
        uid: &str,
        contested: &BTreeMap<String, Contest>,
    ) -> Self {
        let by_key: HashMap<_, _> = cached.iter().map(|o| (key(&**o), &**o)).collect();
        let keep: BTreeSet<_> = wanted.iter().map(key).collect();
        let count = wanted.len() as u32;
        let mut foreign = Vec::new();
        let mut left = Vec::new();
        let mut apply: Vec<Write<K>> = wanted
            .into_iter()
            .filter_map(|w| {
                let actual = by_key.get(&key(&w)).copied();
                if actual.is_some_and(|a| !palisades(a)) {
                    foreign.push(describe(&w));
                    return None;
                }
                let outcome = planned(&w, actual);
                if outcome == Outcome::Updated && contested.contains_key(&describe(&w)) {
                    left.push(describe(&w));
                    return None;
                }
                let writers = match (outcome, actual) {
                    (Outcome::Updated, Some(a)) => other_writers(a),
                    _ => Vec::new(),
                };
                (outcome != Outcome::Unchanged).then_some(Write {
                    object: w,
                    outcome,
                    writers,
                })
            })
            .collect();
        foreign.sort();
        left.sort();
        apply.sort_by_key(|w| key(&w.object));
        let mut prune: Vec<Arc<K>> = cached
            .iter()
            .filter(|o| !keep.contains(&key(&***o)) && generated_by(&***o, name, uid))
            .cloned()
            .collect();
        prune.sort_by_key(|o| key(&**o));
        KindPlan {
            wanted: count,
            apply,
            prune,
            foreign,
            contested: left,
            unserved: Vec::new(),
        }
    }

    fn describe_into(&self, out: &mut Changes) {
        for w in &self.apply {
            match w.outcome {
                Outcome::Created => out.create.push(describe(&w.object)),
                _ => out.update.push(describe(&w.object)),
            }
        }
        out.delete.extend(self.prune.iter().map(|o| describe(&**o)));
        out.foreign.extend(self.foreign.iter().cloned());
        out.contested.extend(self.contested.iter().cloned());
        out.unserved.extend(self.unserved.iter().cloned());
    }
}

/// The generated kinds, each with its plan. Every step that handles generated objects
/// destructures this without `..`: a kind added here does not compile until each handles it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Writes {
    pub network_policies: KindPlan<NetworkPolicy>,
    pub roles: KindPlan<Role>,
    pub role_bindings: KindPlan<RoleBinding>,
    pub admission_policies: KindPlan<ValidatingAdmissionPolicy>,
    pub admission_bindings: KindPlan<ValidatingAdmissionPolicyBinding>,
    pub peer_authentications: KindPlan<PeerAuthentication>,
}

/// Planned writes as `Kind namespace/name` lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub create: Vec<String>,
    pub update: Vec<String>,
    pub delete: Vec<String>,
    /// Names taken by objects that are not Palisade's (left alone).
    pub foreign: Vec<String>,
    /// Objects left to another writer for now (a fight).
    pub contested: Vec<String>,
    /// Wanted objects of kinds not served (their CRDs are not installed).
    pub unserved: Vec<String>,
}

/// Palisade's cached objects of each namespaced generated kind, by namespace (an optional kind
/// that is not served: `None`).
struct CachedByNs<'a> {
    network_policies: BTreeMap<&'a str, Vec<Arc<NetworkPolicy>>>,
    roles: BTreeMap<&'a str, Vec<Arc<Role>>>,
    role_bindings: BTreeMap<&'a str, Vec<Arc<RoleBinding>>>,
    peer_authentications: Option<BTreeMap<&'a str, Vec<Arc<PeerAuthentication>>>>,
}

fn by_namespace<'a, K: Resource>(
    cached: &'a [Arc<K>],
    in_scope: &dyn Fn(&str) -> bool,
) -> BTreeMap<&'a str, Vec<Arc<K>>> {
    let mut out: BTreeMap<&str, Vec<Arc<K>>> = BTreeMap::new();
    for o in cached {
        if let Some(ns) = o.meta().namespace.as_deref().filter(|ns| in_scope(ns)) {
            out.entry(ns).or_default().push(o.clone());
        }
    }
    out
}

fn in_ns<'m, K>(m: &'m BTreeMap<&str, Vec<Arc<K>>>, ns: &str) -> &'m [Arc<K>] {
    m.get(ns).map_or(&[], Vec::as_slice)
}

impl<'a> CachedByNs<'a> {
    /// The index of the namespaces `in_scope` only: an incremental plan reads a few namespaces,
    /// and indexing all of them was most of its cost on a large cluster.
    fn of(snap: &'a Snapshot, in_scope: &dyn Fn(&str) -> bool) -> Self {
        CachedByNs {
            network_policies: by_namespace(&snap.network_policies, in_scope),
            roles: by_namespace(&snap.roles, in_scope),
            role_bindings: by_namespace(&snap.role_bindings, in_scope),
            peer_authentications: snap
                .peer_authentications
                .as_deref()
                .map(|cached| by_namespace(cached, in_scope)),
        }
    }

    /// Every namespace holding a cached object of a namespaced generated kind.
    fn namespaces(&self) -> BTreeSet<&'a str> {
        let CachedByNs {
            network_policies,
            roles,
            role_bindings,
            peer_authentications,
        } = self;
        network_policies
            .keys()
            .chain(roles.keys())
            .chain(role_bindings.keys())
            .chain(peer_authentications.iter().flat_map(|m| m.keys()))
            .copied()
            .collect()
    }
}

impl<K: Resource<DynamicType = ()>> KindPlan<K> {
    fn merge(&mut self, other: KindPlan<K>) {
        self.wanted += other.wanted;
        self.apply.extend(other.apply);
        self.prune.extend(other.prune);
        self.foreign.extend(other.foreign);
        self.contested.extend(other.contested);
        self.unserved.extend(other.unserved);
    }

    /// Sorted as one plan over every namespace would be; `wanted` counted over `total`.
    fn finish(&mut self, total: u32) {
        self.wanted = total;
        self.apply.sort_by_key(|w| key(&w.object));
        self.prune.sort_by_key(|o| key(&**o));
        self.foreign.sort();
        self.contested.sort();
        self.unserved.sort();
    }
}

impl Writes {
    /// The cluster-scoped kinds' plans (the namespaced ones empty).
    fn cluster(
        cluster: ClusterObjects,
        snap: &Snapshot,
        name: &str,
        uid: &str,
        contested: &BTreeMap<String, Contest>,
    ) -> Self {
        let ClusterObjects {
            admission_policies,
            admission_bindings,
        } = cluster;
        Writes {
            admission_policies: KindPlan::new(
                admission_policies,
                &snap.admission_policies,
                name,
                uid,
                contested,
            ),
            admission_bindings: KindPlan::new(
                admission_bindings,
                &snap.admission_bindings,
                name,
                uid,
                contested,
            ),
            ..Writes::default()
        }
    }

    /// One namespace's plans: converge the cached objects in `ns` to `wanted` (`None`: nothing
    /// is wanted there, prune what this baseline generated).
    fn namespace(
        ns: &str,
        wanted: Option<&NamespaceObjects>,
        cached: &CachedByNs<'_>,
        name: &str,
        uid: &str,
        contested: &BTreeMap<String, Contest>,
    ) -> Self {
        let none = NamespaceObjects::default();
        let NamespaceObjects {
            network_policies,
            roles,
            role_bindings,
            peer_authentications,
            namespace_labels: _, // labels::plan
            allowances: _,       // status
        } = wanted.unwrap_or(&none);
        Writes {
            network_policies: KindPlan::new(
                network_policies.clone(),
                in_ns(&cached.network_policies, ns),
                name,
                uid,
                contested,
            ),
            roles: KindPlan::new(
                roles.clone(),
                in_ns(&cached.roles, ns),
                name,
                uid,
                contested,
            ),
            role_bindings: KindPlan::new(
                role_bindings.clone(),
                in_ns(&cached.role_bindings, ns),
                name,
                uid,
                contested,
            ),
            peer_authentications: KindPlan::optional(
                peer_authentications.clone(),
                cached.peer_authentications.as_ref().map(|m| in_ns(m, ns)),
                name,
                uid,
                contested,
            ),
            ..Writes::default()
        }
    }

    fn merge(&mut self, other: Writes) {
        let Writes {
            network_policies,
            roles,
            role_bindings,
            admission_policies,
            admission_bindings,
            peer_authentications,
        } = other;
        self.network_policies.merge(network_policies);
        self.roles.merge(roles);
        self.role_bindings.merge(role_bindings);
        self.admission_policies.merge(admission_policies);
        self.admission_bindings.merge(admission_bindings);
        self.peer_authentications.merge(peer_authentications);
    }

    /// Sorts the merged plans; the namespaced kinds count what `per_ns` wants in every owned
    /// namespace (rebuilt or kept), an unserved kind nothing.
    fn finish(&mut self, per_ns: &BTreeMap<String, Arc<NamespaceObjects>>, mesh_served: bool) {
        let total =
            |f: fn(&NamespaceObjects) -> usize| per_ns.values().map(|o| f(o)).sum::<usize>() as u32;
        let Writes {
            network_policies,
            roles,
            role_bindings,
            admission_policies,
            admission_bindings,
            peer_authentications,
        } = self;
        network_policies.finish(total(|o| o.network_policies.len()));
        roles.finish(total(|o| o.roles.len()));
        role_bindings.finish(total(|o| o.role_bindings.len()));
        let (p, bindings) = (admission_policies.wanted, admission_bindings.wanted);
        admission_policies.finish(p);
        admission_bindings.finish(bindings);
        let pas = if mesh_served {
            total(|o| o.peer_authentications.len())
        } else {
            0
        };
        peer_authentications.finish(pas);
    }

    pub fn changes(&self) -> Changes {
        let Writes {
            network_policies,
            roles,
            role_bindings,
            admission_policies,
            admission_bindings,
            peer_authentications,
        } = self;
        let mut out = Changes::default();
        network_policies.describe_into(&mut out);
        roles.describe_into(&mut out);
        role_bindings.describe_into(&mut out);
        admission_policies.describe_into(&mut out);
        admission_bindings.describe_into(&mut out);
        peer_authentications.describe_into(&mut out);
        out
    }

    /// The `generated` counts of status (namespaces labelled: see [`Converge::labelled`]).
    fn counts(&self, labelled: u32) -> GeneratedCounts {
        let Writes {
            network_policies,
            roles,
            role_bindings,
            admission_policies,
            admission_bindings: _, // counted with their policies
            peer_authentications,
        } = self;
        GeneratedCounts {
            network_policies: network_policies.wanted,
            roles: roles.wanted,
            role_bindings: role_bindings.wanted,
            admission_policies: admission_policies.wanted,
            peer_authentications: peer_authentications.wanted,
            labelled_namespaces: labelled,
        }
    }
}

/// A converging reconcile's writes and what it reports.
pub struct Converge {
    /// Add the finalizer before anything else (Enforce with Pod Security labels).
    pub add_finalizer: bool,
    pub writes: Writes,
    pub labels: Vec<LabelPatch>,
    /// Namespaces that carry this baseline's Pod Security labels once the labels are applied.
    pub labelled: u32,
    /// The OpenReports reports wanted, when reports are published.
    pub reports: Option<Arc<Vec<Value>>>,
    /// The audit of the state this reconcile converges to.
    pub report: Arc<AuditReport>,
    /// `report` is the previous plan's (nothing it reads changed, or the audit interval is not
    /// over): the gauges and Events made of it stand.
    pub audit_reused: bool,
    /// Remove the finalizer once everything else succeeded (no labels left to remove).
    pub remove_finalizer: bool,
    pub requeue: Duration,
    /// What the next reconcile may reuse, once these writes have all succeeded.
    pub memo: Memo,
    status: StatusParts,
}

struct StatusParts {
    generation: Option<i64>,
    allowances: Vec<String>,
    preview: Option<EnforcePreview>,
    refused_rules: Vec<String>,
    conflicts: Vec<String>,
    foreign: Vec<String>,
    contested: Vec<String>,
    unserved: Vec<String>,
    learned: Vec<LearnedRole>,
    enforce: bool,
}

impl Converge {
    pub fn generated(&self) -> GeneratedCounts {
        self.writes.counts(self.labelled)
    }

    /// The report is an earlier audit's and the cluster changed since (within the audit
    /// interval): the status waits for the audit that the requeue brings.
    pub fn report_behind(&self) -> bool {
        self.audit_reused && self.memo.audit_behind
    }

    /// The status once the writes are done; `degraded` when one failed.
    pub fn status(
        &self,
        degraded: Option<String>,
        previous: Option<&SecurityBaselineStatus>,
        now: Timestamp,
    ) -> SecurityBaselineStatus {
        let s = &self.status;
        status::build(
            StatusInput {
                generation: s.generation,
                report: &self.report,
                generated: self.generated(),
                allowances: s.allowances.clone(),
                preview: s.preview.clone(),
                refused_rules: s.refused_rules.clone(),
                conflicts: s.conflicts.clone(),
                foreign: s.foreign.clone(),
                contested: s.contested.clone(),
                unserved: s.unserved.clone(),
                learned: s.learned.clone(),
                degraded,
                enforce: s.enforce,
            },
            previous,
            now,
        )
    }

    /// One line per planned write, for the `GeneratedObjectsChanged` event.
    pub fn change_lines(&self) -> Vec<String> {
        let c = self.writes.changes();
        let mut out: Vec<String> = c
            .create
            .iter()
            .map(|l| format!("Created {l}"))
            .chain(c.update.iter().map(|l| format!("Updated {l}")))
            .chain(c.delete.iter().map(|l| format!("Pruned {l}")))
            .collect();
        out.extend(self.labels.iter().map(|p| {
            format!(
                "{} Pod Security labels on Namespace {}",
                if p.set { "Set" } else { "Removed" },
                p.namespace
            )
        }));
        out
    }
}

/// The plan of one reconcile, from scratch. `compiled` is the baseline's compiled spec (or why
/// it does not compile); `others` are the other baselines whose specs compile.
pub fn plan(
    b: &SecurityBaseline,
    compiled: Result<&CompiledBaseline, &str>,
    others: &[OtherBaseline],
    snap: &Snapshot,
    env: &Env<'_>,
    now: Timestamp,
) -> Plan {
    plan_since(b, compiled, others, snap, env, now, Since::default())
}

/// [`plan`], rebuilding only what changed since the previous plan (`since`). The result is the
/// same as planning from scratch over the same snapshot (see `memo.rs` for why).
pub fn plan_since(
    b: &SecurityBaseline,
    compiled: Result<&CompiledBaseline, &str>,
    others: &[OtherBaseline],
    snap: &Snapshot,
    env: &Env<'_>,
    now: Timestamp,
    since: Since,
) -> Plan {
    match prepare(b, compiled, others, snap, env, now, since) {
        Prepared::Release(r) => Plan::Release(r),
        Prepared::Invalid(s) => Plan::Invalid(s),
        Prepared::Converge(w) => Plan::Converge(Box::new(w.audit(snap))),
    }
}

/// The previous plan's results and what changed since, for incremental planning.
#[derive(Default)]
pub struct Since {
    pub previous: Option<Memo>,
    pub changed: Changed,
}

/// A plan in two steps: the writes first (the defenses go out before the audit runs), then
/// [`Writing::audit`] for what the reconcile reports.
pub enum Prepared<'a> {
    Release(Release),
    Invalid(Option<Box<SecurityBaselineStatus>>),
    Converge(Box<Writing<'a>>),
}

/// A converging reconcile's writes, before its audit.
pub struct Writing<'a> {
    pub add_finalizer: bool,
    pub writes: Writes,
    pub labels: Vec<LabelPatch>,
    /// Namespaces rebuilt (`None`: every owned one, from scratch).
    pub rebuilt: Option<usize>,
    /// Nothing the audit reads changed since the previous plan: its report is reused.
    pub reuses_audit: bool,
    audit: AuditStage<'a>,
}

/// A previous audit a plan reports instead of auditing again.
struct ReusedAudit {
    audit: Arc<memo::Audited>,
    at: Timestamp,
    took: Duration,
    /// The cluster changed since it was made.
    behind: bool,
}

/// The longest an audit waits behind namespaced changes: it grows with the cost of the last audit.
const MAX_AUDIT_INTERVAL: Duration = Duration::from_secs(30);

/// The interval between two audits under churn: the configured one (0: audit every time), or
/// ten times what the last audit took if that is longer, so that a large cluster under churn
/// spends at most a tenth of a core auditing; never more than [`MAX_AUDIT_INTERVAL`].
pub fn audit_interval(configured: Duration, last_took: Duration) -> Duration {
    if configured.is_zero() {
        return Duration::ZERO;
    }
    configured
        .max(last_took * 10)
        .min(MAX_AUDIT_INTERVAL.max(configured))
}

/// What the audit and the status need from the first step.
struct AuditStage<'a> {
    b: &'a SecurityBaseline,
    compiled: &'a CompiledBaseline,
    report_max_results: Option<usize>,
    contested: &'a BTreeMap<String, Contest>,
    now: Timestamp,
    namespaces: Vec<Arc<k8s_openapi::api::core::v1::Namespace>>,
    covered: BTreeSet<String>,
    ownership: observe::Ownership,
    owner: Option<OwnerReference>,
    learned: super::learned::Learned,
    per_ns: BTreeMap<String, Arc<NamespaceObjects>>,
    preview: Option<EnforcePreview>,
    refused: Vec<String>,
    label_foreign: Vec<String>,
    labelled: u32,
    has_finalizer: bool,
    needs_finalizer: bool,
    requeue: Duration,
    memo: Memo,
    /// The previous plan's audit, when nothing it reads changed since.
    reuse: Option<ReusedAudit>,
    audit_interval: Duration,
    /// The previous audit's per-workload verdicts, and the compile they hold for.
    verdicts: Verdicts,
    judge: Judge,
    enforce: bool,
}

/// The first step of a plan: everything up to the writes.
pub fn prepare<'a>(
    b: &'a SecurityBaseline,
    compiled: Result<&'a CompiledBaseline, &str>,
    others: &[OtherBaseline],
    snap: &Snapshot,
    env: &Env<'a>,
    now: Timestamp,
    since: Since,
) -> Prepared<'a> {
    let name = b.name_any();
    let has_finalizer = b
        .finalizers()
        .iter()
        .any(|f| f == super::reconcile::FINALIZER);
    // Deletion first: it needs nothing of the spec, and a spec that no longer compiles must not
    // keep the finalizer (and the namespaces' PSA labels) forever.
    if b.metadata.deletion_timestamp.is_some() {
        return Prepared::Release(Release {
            labels: labels::plan(snap, &name, &BTreeMap::new()).patches,
            remove_finalizer: has_finalizer,
        });
    }
    let compiled = match compiled {
        Ok(c) => c,
        Err(why) => {
            let status = invalid_status(b.status.as_ref(), b.metadata.generation, why, now);
            return Prepared::Invalid(
                (b.status.as_ref() != Some(&status)).then_some(Box::new(status)),
            );
        }
    };
    let uid = b.metadata.uid.clone().unwrap_or_default();
    let enforce = compiled.settings.enforcement == Enforcement::Enforce;
    let needs_finalizer = enforce && compiled.settings.psa_namespace_labels;
    let namespaces = observe::covered_namespaces(snap, compiled);
    let covered: BTreeSet<String> = namespaces.iter().map(|n| n.name_any()).collect();
    let ownership = observe::ownership(b, compiled, &namespaces, others);
    let owner = owner_ref(b);
    let learned = super::learned::evaluate(env.learn, compiled, &covered, now);
    let globals = Globals {
        uid: uid.clone(),
        generation: b.metadata.generation,
        expiry: compiled.next_expiry(now),
        api_server: observe::api_server_endpoints(snap),
        webhooks: observe::webhook_backends(snap),
        ceiling: ceiling(snap, env.grantable),
        learned: learned.ready.clone(),
        contested: env.contested.keys().cloned().collect(),
        served: vec![
            snap.peer_authentications.is_some(),
            snap.destination_rules.is_some(),
            snap.seccomp_profiles.is_some(),
            snap.apparmor_profiles.is_some(),
        ],
    };
    let scope = Scope::of(
        since.previous.as_ref(),
        &since.changed,
        &globals,
        &ownership.owned,
        now,
        env.resync,
    );
    let inputs = BuildInputs {
        namespaces: &namespaces,
        api_server: &globals.api_server,
        workloads: observe::workload_pods(snap, &|ns| scope.rebuilds(ns) && covered.contains(ns)),
        webhooks: &globals.webhooks,
        ready: &learned.ready,
        owner: owner.as_ref(),
        ceiling: &globals.ceiling,
    };
    let declared_refused = declared_refusals(&globals.ceiling, compiled);

    // Audit mode: what Enforce would do, by the same build and the same write decisions (from
    // scratch: an Audit baseline writes nothing, so nothing here is latency-bound).
    let preview = (!enforce).then(|| {
        let mut as_enforce = compiled.clone();
        as_enforce.settings.enforcement = Enforcement::Enforce;
        let own = observe::ownership(b, &as_enforce, &namespaces, others);
        let all = observe::workload_pods(snap, &|ns| covered.contains(ns));
        let inputs = BuildInputs {
            workloads: all,
            ..inputs.clone()
        };
        let wanted: BTreeMap<String, Arc<NamespaceObjects>> = inputs
            .build(&as_enforce, own.owned.iter())
            .into_iter()
            .map(|(ns, built)| (ns, Arc::new(built.objects)))
            .collect();
        let cached = CachedByNs::of(snap, &|_| true);
        let mut writes = Writes::cluster(
            desired::cluster_objects(&as_enforce, owner.as_ref()),
            snap,
            &name,
            &uid,
            &BTreeMap::new(),
        );
        for ns in cached
            .namespaces()
            .into_iter()
            .chain(wanted.keys().map(String::as_str))
        {
            let objects = wanted.get(ns).map(|o| &**o);
            writes.merge(Writes::namespace(
                ns,
                objects,
                &cached,
                &name,
                &uid,
                &BTreeMap::new(),
            ));
        }
        writes.finish(&wanted, snap.peer_authentications.is_some());
        let labels = labels::plan(snap, &name, &wanted).patches;
        preview_of(writes.changes(), &labels)
    });
    let cluster = if enforce {
        desired::cluster_objects(compiled, owner.as_ref())
    } else {
        ClusterObjects::default()
    };

    // Rebuild the namespaces in scope; keep the others as the previous plan left them.
    let previous_full_at = since.previous.as_ref().and_then(|m| m.from_scratch_at);
    // Nothing changed in any namespace nor in what they share (and nothing is learned meanwhile:
    // usage is not among the globals): the audit would judge the same objects again.
    let learning = env.learn.is_some() && compiled.learn_window.is_some();
    let unchanged = matches!(&scope, Scope::Namespaces { prune, .. } if prune.is_empty());
    let previous_audit = since.previous.as_ref().and_then(|m| {
        let at = m.audited_at?;
        Some((m.audit.clone()?, at, m.audit_behind, m.audit_took))
    });
    let interval = audit_interval(
        env.audit_interval,
        previous_audit.as_ref().map_or(Duration::ZERO, |p| p.3),
    );
    let reuse = previous_audit.and_then(|(audit, at, behind, took)| {
        let recent = now.duration_since(at).unsigned_abs() < interval;
        let scoped = matches!(scope, Scope::Namespaces { .. });
        // Nothing new since the audit; or only namespaced objects changed and the last audit
        // is recent: the writes go out, the report follows once the interval is over.
        let fresh_enough = (unchanged && !behind) || (scoped && recent);
        (fresh_enough && !learning).then_some(ReusedAudit {
            audit,
            at,
            took,
            behind: behind || !unchanged,
        })
    });
    let (mut kept, verdicts) = since
        .previous
        .map(|m| (m.namespaces, m.verdicts))
        .unwrap_or_default();
    kept.retain(|ns, _| ownership.owned.contains(ns) && !scope.rebuilds(ns));
    let rebuilt = inputs.build(
        compiled,
        ownership.owned.iter().filter(|ns| scope.rebuilds(ns)),
    );
    let rebuilt_count = (!scope.is_everything()).then_some(rebuilt.len());
    let cached = CachedByNs::of(snap, &|ns| scope.prunes_in(ns));
    let mut writes = Writes::cluster(cluster, snap, &name, &uid, env.contested);
    let mut memo = Memo {
        globals,
        from_scratch_at: if scope.is_everything() {
            Some(now)
        } else {
            previous_full_at
        },
        namespaces: kept,
        audit: None,
        audited_at: None,
        audit_behind: false,
        audit_took: Duration::ZERO,
        verdicts: Default::default(),
    };
    for (ns, built) in rebuilt {
        let w = Writes::namespace(
            &ns,
            Some(&built.objects),
            &cached,
            &name,
            &uid,
            env.contested,
        );
        let lines = w.changes();
        writes.merge(w);
        memo.namespaces.insert(
            ns,
            memo::Namespace {
                objects: Arc::new(built.objects),
                refused: built.refused,
                foreign: lines.foreign,
                contested: lines.contested,
                unserved: lines.unserved,
                labelled: false, // set with the labels below
                label_foreign: Vec::new(),
            },
        );
    }
    // Prunes where nothing is wanted: namespaces no longer owned (or covered) that hold this
    // baseline's objects.
    for ns in cached.namespaces() {
        if scope.prunes_in(ns) && !memo.namespaces.contains_key(ns) {
            writes.merge(Writes::namespace(
                ns,
                None,
                &cached,
                &name,
                &uid,
                env.contested,
            ));
        }
    }
    let per_ns: BTreeMap<String, Arc<NamespaceObjects>> = memo
        .namespaces
        .iter()
        .map(|(ns, m)| (ns.clone(), m.objects.clone()))
        .collect();
    writes.finish(&per_ns, snap.peer_authentications.is_some());
    let mut refused = declared_refused;
    refused.extend(
        memo.namespaces
            .values()
            .flat_map(|m| m.refused.iter().cloned()),
    );
    refused.sort();
    refused.dedup();
    let label_plan = label_namespaces(snap, &name, &scope, &mut memo.namespaces);
    let requeue = compiled
        .next_expiry(now)
        .map(|t| t.as_second())
        .into_iter()
        .chain(learned.window_ends)
        .chain(env.contested.values().map(|c| c.until.as_second()))
        .min()
        .map(|t| Duration::from_secs((t - now.as_second()).max(1) as u64))
        .map_or(env.resync, |d| d.min(env.resync));
    Prepared::Converge(Box::new(Writing {
        add_finalizer: needs_finalizer && !has_finalizer,
        writes,
        labels: label_plan.patches,
        rebuilt: rebuilt_count,
        reuses_audit: reuse.is_some(),
        audit: AuditStage {
            b,
            compiled,
            report_max_results: env.report_max_results,
            contested: env.contested,
            now,
            namespaces,
            covered,
            ownership,
            owner,
            learned,
            per_ns,
            preview,
            refused,
            label_foreign: label_plan.foreign,
            labelled: label_plan.labelled,
            has_finalizer,
            needs_finalizer,
            requeue,
            memo,
            reuse,
            audit_interval: interval,
            verdicts,
            judge: Judge {
                baseline_uid: uid.clone(),
                generation: b.metadata.generation,
            },
            enforce,
        },
    }))
}

impl Writing<'_> {
    /// The second step: the audit of the state the writes converge to, the reports and status.
    pub fn audit(self, snap: &Snapshot) -> Converge {
        let Writing {
            add_finalizer,
            writes,
            labels,
            rebuilt: _,
            reuses_audit: _,
            audit: mut a,
        } = self;
        let name = a.b.name_any();
        let previous_verdicts = std::mem::take(&mut a.verdicts);
        let audit_reused = a.reuse.is_some();
        let (audited, verdicts) = match a.reuse.take() {
            Some(reused) => {
                a.memo.audited_at = Some(reused.at);
                a.memo.audit_behind = reused.behind;
                a.memo.audit_took = reused.took;
                if reused.behind {
                    // The report is behind the cluster: reconcile again when the interval ends.
                    let age = a.now.duration_since(reused.at).unsigned_abs();
                    let left = a.audit_interval.saturating_sub(age);
                    a.requeue = a.requeue.min(left.max(Duration::from_millis(10)));
                }
                (reused.audit, previous_verdicts)
            }
            None => {
                a.memo.audited_at = Some(a.now);
                let started = std::time::Instant::now();
                let (report, verdicts) = observe::audit(
                    snap,
                    a.compiled,
                    &a.namespaces,
                    observe::ConvergedTo {
                        desired: &a.per_ns,
                        now: a.now,
                    },
                    &a.ownership.owned,
                    observe::KeptVerdicts {
                        previous: previous_verdicts,
                        judge: a.judge.clone(),
                    },
                    a.learned
                        .usage
                        .as_ref()
                        .map(|usage| crate::policy::audit::LearnedUsage {
                            usage,
                            since: a.learned.window_start,
                            label: a.learned.label.clone(),
                        }),
                );
                // The one measurement in a plan: it sets how soon the next audit may run.
                a.memo.audit_took = started.elapsed();
                let reports = a.report_max_results.map(|max| {
                    let covered: Vec<String> = a.covered.iter().cloned().collect();
                    let wanted = super::reports::wanted(
                        &name,
                        &covered,
                        &report.findings,
                        a.owner.as_ref(),
                        max,
                    );
                    Arc::new(wanted)
                });
                (
                    Arc::new(memo::Audited {
                        report: Arc::new(report),
                        reports,
                    }),
                    verdicts,
                )
            }
        };
        a.memo.audit = Some(audited.clone());
        a.memo.verdicts = verdicts;
        let (report, reports) = (audited.report.clone(), audited.reports.clone());
        // Status lines of the namespaces not rebuilt come from the memo (the rebuilt ones are in
        // both).
        let Changes {
            mut foreign,
            mut contested,
            mut unserved,
            ..
        } = writes.changes();
        for m in a.memo.namespaces.values() {
            foreign.extend(m.foreign.iter().cloned());
            contested.extend(m.contested.iter().cloned());
            unserved.extend(m.unserved.iter().cloned());
        }
        for v in [&mut foreign, &mut contested, &mut unserved] {
            v.sort();
            v.dedup();
        }
        foreign.extend(a.label_foreign);
        Converge {
            add_finalizer,
            remove_finalizer: !a.needs_finalizer && a.labelled == 0 && a.has_finalizer,
            status: StatusParts {
                generation: a.b.metadata.generation,
                allowances: a
                    .per_ns
                    .values()
                    .flat_map(|o| o.allowances.iter().cloned())
                    .collect(),
                preview: a.preview,
                refused_rules: a.refused,
                conflicts: a.ownership.conflicts,
                foreign,
                contested: contested
                    .iter()
                    .filter_map(|o| Some(a.contested.get(o)?.line(o)))
                    .collect(),
                unserved,
                learned: a.learned.status.clone(),
                enforce: a.enforce,
            },
            writes,
            labels,
            labelled: a.labelled,
            reports,
            report,
            audit_reused,
            requeue: a.requeue,
            memo: a.memo,
        }
    }
}

/// The Pod Security label patches of the namespaces in `scope`; the other namespaces' labels are
/// as the previous plan left them (their Namespace objects and wanted objects did not change).
/// Counts and foreign lines are folded from the memo, which this updates.
fn label_namespaces(
    snap: &Snapshot,
    name: &str,
    scope: &Scope,
    memo: &mut BTreeMap<String, memo::Namespace>,
) -> labels::LabelPlan {
    let mut out = labels::LabelPlan::default();
    for ns in &snap.namespaces {
        let Some(n) = ns.metadata.name.as_deref().filter(|n| scope.prunes_in(n)) else {
            continue;
        };
        let owned = memo.get_mut(n);
        let wanted = owned.as_ref().map(|m| &m.objects.namespace_labels);
        let one = labels::of_namespace(ns, name, wanted);
        if let Some(m) = owned {
            m.labelled = one.labelled;
            m.label_foreign = one.foreign;
        }
        out.patches.extend(one.patch);
    }
    for m in memo.values() {
        out.labelled += u32::from(m.labelled);
        out.foreign.extend(m.label_foreign.iter().cloned());
    }
    out.finish()
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

/// The rules of the grantable ceiling ClusterRole (none when it is missing).
fn ceiling(snap: &Snapshot, grantable: &str) -> Vec<k8s_openapi::api::rbac::v1::PolicyRule> {
    snap.cluster_roles
        .iter()
        .find(|r| r.name_any() == grantable)
        .and_then(|r| r.rules.clone())
        .unwrap_or_default()
}

/// What the build of one baseline's per-namespace objects reads, gathered once per reconcile
/// (the Audit-mode preview builds a second time from the same inputs).
#[derive(Clone)]
struct BuildInputs<'a> {
    namespaces: &'a [Arc<k8s_openapi::api::core::v1::Namespace>],
    api_server: &'a [(std::net::IpAddr, u16)],
    workloads: BTreeMap<String, Vec<desired::WorkloadPods>>,
    webhooks: &'a BTreeMap<String, Vec<desired::WebhookBackend>>,
    ready: &'a super::learned::ReadyRules,
    owner: Option<&'a OwnerReference>,
    ceiling: &'a [k8s_openapi::api::rbac::v1::PolicyRule],
}

/// One namespace's build: its objects, Roles bounded by the ceiling, and the learned rules left
/// out.
struct Built {
    objects: NamespaceObjects,
    refused: Vec<String>,
}

impl BuildInputs<'_> {
    /// The objects wanted in each of `namespaces` (owned ones).
    fn build<'n>(
        &self,
        compiled: &CompiledBaseline,
        namespaces: impl Iterator<Item = &'n String>,
    ) -> BTreeMap<String, Built> {
        let labels: HashMap<&str, _> = self
            .namespaces
            .iter()
            .filter_map(|n| Some((n.metadata.name.as_deref()?, n.metadata.labels.as_ref())))
            .collect();
        let declared = declared_rules(compiled);
        namespaces
            .map(|ns| {
                let inputs = desired::NamespaceContext {
                    labels: labels.get(ns.as_str()).copied().flatten(),
                    api_server: self.api_server,
                    workloads: self.workloads.get(ns).map_or(&[], Vec::as_slice),
                    webhooks: self.webhooks.get(ns).map_or(&[], Vec::as_slice),
                    learned: self.ready.get(ns),
                };
                let mut objects = desired::namespace_objects(ns, &inputs, compiled, self.owner);
                let refused = bound_by_ceiling(self.ceiling, &declared, ns, &mut objects);
                (ns.clone(), Built { objects, refused })
            })
            .collect()
    }
}

fn declared_rules(compiled: &CompiledBaseline) -> Vec<k8s_openapi::api::rbac::v1::PolicyRule> {
    compiled
        .spec
        .rbac
        .iter()
        .flat_map(|r| r.service_accounts.iter())
        .flat_map(|sa| sa.rules.iter().map(|r| r.to_policy_rule()))
        .collect()
}

/// The declared rules the ceiling ClusterRole does not hold, named for status:
/// `spec.rbac.serviceAccounts[i].rules[j]`.
fn declared_refusals(
    ceiling: &[k8s_openapi::api::rbac::v1::PolicyRule],
    compiled: &CompiledBaseline,
) -> Vec<String> {
    use crate::policy::rbac::ceiling::covers;
    let accounts = compiled
        .spec
        .rbac
        .iter()
        .flat_map(|r| r.service_accounts.iter());
    let mut refused = Vec::new();
    for (i, sa) in accounts.enumerate() {
        for (j, rule) in sa.rules.iter().enumerate() {
            if !covers(ceiling, &rule.to_policy_rule()) {
                refused.push(format!("spec.rbac.serviceAccounts[{i}].rules[{j}]"));
            }
        }
    }
    refused
}

/// Leaves out of every generated Role of namespace `ns` the rules its ceiling ClusterRole does
/// not hold (the API server would refuse the whole Role: Palisade has no `escalate`), and names
/// the learned ones among them (declared ones are named by [`declared_refusals`]).
fn bound_by_ceiling(
    ceiling: &[k8s_openapi::api::rbac::v1::PolicyRule],
    declared: &[k8s_openapi::api::rbac::v1::PolicyRule],
    ns: &str,
    objects: &mut NamespaceObjects,
) -> Vec<String> {
    use crate::policy::rbac::ceiling::covers;
    let mut refused = Vec::new();
    for role in &mut objects.roles {
        let name = role.metadata.name.clone().unwrap_or_default();
        if let Some(rules) = &mut role.rules {
            rules.retain(|r| {
                let ok = covers(ceiling, r);
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
    refused
}

/// Most entries a preview lists; the rest are counted.
const PREVIEW_MAX: usize = 100;

fn preview_of(changes: Changes, labels: &[LabelPatch]) -> EnforcePreview {
    let label: Vec<String> = labels
        .iter()
        .filter(|p| p.set)
        .map(|p| p.namespace.clone())
        .collect();
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
        create: cap(changes.create),
        update: cap(changes.update),
        delete: cap(changes.delete),
        label_namespaces: cap(label),
        omitted,
    }
}

/// The status of a spec that does not compile: Ready=False, Degraded=True (InvalidSpec). As for
/// every condition, `lastTransitionTime` changes only when a condition's status does, not when
/// its message does (a different invalid spec is no transition).
fn invalid_status(
    prev: Option<&SecurityBaselineStatus>,
    generation: Option<i64>,
    why: &str,
    now: Timestamp,
) -> SecurityBaselineStatus {
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

pub mod labels;
pub mod memo;

#[cfg(test)]
mod tests;
