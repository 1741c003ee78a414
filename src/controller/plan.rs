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
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};
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

impl Writes {
    fn new(
        per_ns: &BTreeMap<String, NamespaceObjects>,
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
            network_policies: KindPlan::new(
                per_ns
                    .values()
                    .flat_map(|o| o.network_policies.iter().cloned())
                    .collect(),
                &snap.network_policies,
                name,
                uid,
                contested,
            ),
            roles: KindPlan::new(
                per_ns
                    .values()
                    .flat_map(|o| o.roles.iter().cloned())
                    .collect(),
                &snap.roles,
                name,
                uid,
                contested,
            ),
            role_bindings: KindPlan::new(
                per_ns
                    .values()
                    .flat_map(|o| o.role_bindings.iter().cloned())
                    .collect(),
                &snap.role_bindings,
                name,
                uid,
                contested,
            ),
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
            peer_authentications: KindPlan::optional(
                per_ns
                    .values()
                    .flat_map(|o| o.peer_authentications.iter().cloned())
                    .collect(),
                snap.peer_authentications.as_deref(),
                name,
                uid,
                contested,
            ),
        }
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
    pub reports: Option<Vec<Value>>,
    /// The audit of the state this reconcile converges to.
    pub report: AuditReport,
    /// Remove the finalizer once everything else succeeded (no labels left to remove).
    pub remove_finalizer: bool,
    pub requeue: Duration,
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

/// The plan of one reconcile. `compiled` is the baseline's compiled spec (or why it does not
/// compile); `others` are the other baselines whose specs compile.
pub fn plan(
    b: &SecurityBaseline,
    compiled: Result<&CompiledBaseline, &str>,
    others: &[OtherBaseline],
    snap: &Snapshot,
    env: &Env<'_>,
    now: Timestamp,
) -> Plan {
    let name = b.name_any();
    let has_finalizer = b
        .finalizers()
        .iter()
        .any(|f| f == super::reconcile::FINALIZER);
    // Deletion first: it needs nothing of the spec, and a spec that no longer compiles must not
    // keep the finalizer (and the namespaces' PSA labels) forever.
    if b.metadata.deletion_timestamp.is_some() {
        return Plan::Release(Release {
            labels: labels::plan(snap, &name, &BTreeMap::new()).patches,
            remove_finalizer: has_finalizer,
        });
    }
    let compiled = match compiled {
        Ok(c) => c,
        Err(why) => {
            let status = invalid_status(b.status.as_ref(), b.metadata.generation, why, now);
            return Plan::Invalid((b.status.as_ref() != Some(&status)).then_some(Box::new(status)));
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
    let inputs = BuildInputs {
        namespaces: &namespaces,
        api_server: observe::api_server_endpoints(snap),
        workloads: observe::workload_pods(snap, &covered),
        webhooks: observe::webhook_backends(snap),
        ready: &learned.ready,
        owner: owner.as_ref(),
        ceiling: ceiling(snap, env.grantable),
    };

    let (per_ns, refused) = inputs.build(compiled, &ownership.owned);
    // Audit mode: what Enforce would do, by the same build and the same write decisions.
    let preview = (!enforce).then(|| {
        let mut as_enforce = compiled.clone();
        as_enforce.settings.enforcement = Enforcement::Enforce;
        let own = observe::ownership(b, &as_enforce, &namespaces, others);
        let (wanted, _) = inputs.build(&as_enforce, &own.owned);
        let cluster = desired::cluster_objects(&as_enforce, owner.as_ref());
        let writes = Writes::new(&wanted, cluster, snap, &name, &uid, &BTreeMap::new());
        let labels = labels::plan(snap, &name, &wanted).patches;
        preview_of(writes.changes(), &labels)
    });
    let cluster = if enforce {
        desired::cluster_objects(compiled, owner.as_ref())
    } else {
        ClusterObjects::default()
    };

    // Evaluate against the state this reconcile converges to.
    let report = observe::audit(
        snap,
        compiled,
        &namespaces,
        observe::ConvergedTo {
            desired: &per_ns,
            now,
        },
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
    let writes = Writes::new(&per_ns, cluster, snap, &name, &uid, env.contested);
    let label_plan = labels::plan(snap, &name, &per_ns);
    let reports = env.report_max_results.map(|max| {
        let covered: Vec<String> = covered.iter().cloned().collect();
        super::reports::wanted(&name, &covered, &report.findings, owner.as_ref(), max)
    });
    let requeue = compiled
        .next_expiry(now)
        .map(|t| t.as_second())
        .into_iter()
        .chain(learned.window_ends)
        .chain(env.contested.values().map(|c| c.until.as_second()))
        .min()
        .map(|t| Duration::from_secs((t - now.as_second()).max(1) as u64))
        .map_or(env.resync, |d| d.min(env.resync));
    let changes = writes.changes();
    Plan::Converge(Box::new(Converge {
        add_finalizer: needs_finalizer && !has_finalizer,
        remove_finalizer: !needs_finalizer && label_plan.labelled == 0 && has_finalizer,
        status: StatusParts {
            generation: b.metadata.generation,
            allowances: per_ns
                .values()
                .flat_map(|o| o.allowances.iter().cloned())
                .collect(),
            preview,
            refused_rules: refused,
            conflicts: ownership.conflicts,
            foreign: changes
                .foreign
                .into_iter()
                .chain(label_plan.foreign)
                .collect(),
            contested: changes
                .contested
                .iter()
                .filter_map(|o| Some(env.contested.get(o)?.line(o)))
                .collect(),
            unserved: changes.unserved,
            learned: learned.status.clone(),
            enforce,
        },
        writes,
        labels: label_plan.patches,
        labelled: label_plan.labelled,
        reports,
        report,
        requeue,
    }))
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
struct BuildInputs<'a> {
    namespaces: &'a [Arc<k8s_openapi::api::core::v1::Namespace>],
    api_server: Vec<(std::net::IpAddr, u16)>,
    workloads: BTreeMap<String, Vec<desired::WorkloadPods>>,
    webhooks: BTreeMap<String, Vec<desired::WebhookBackend>>,
    ready: &'a super::learned::ReadyRules,
    owner: Option<&'a OwnerReference>,
    ceiling: Vec<k8s_openapi::api::rbac::v1::PolicyRule>,
}

impl BuildInputs<'_> {
    /// The objects wanted in each owned namespace, their Roles bounded by the ceiling, and the
    /// refused rules named for status.
    fn build(
        &self,
        compiled: &CompiledBaseline,
        owned: &BTreeSet<String>,
    ) -> (BTreeMap<String, NamespaceObjects>, Vec<String>) {
        let labels: HashMap<&str, _> = self
            .namespaces
            .iter()
            .filter_map(|n| Some((n.metadata.name.as_deref()?, n.metadata.labels.as_ref())))
            .collect();
        let mut per_ns: BTreeMap<String, NamespaceObjects> = owned
            .iter()
            .map(|ns| {
                let inputs = desired::NamespaceContext {
                    labels: labels.get(ns.as_str()).copied().flatten(),
                    api_server: &self.api_server,
                    workloads: self.workloads.get(ns).map_or(&[], Vec::as_slice),
                    webhooks: self.webhooks.get(ns).map_or(&[], Vec::as_slice),
                    learned: self.ready.get(ns),
                };
                (
                    ns.clone(),
                    desired::namespace_objects(ns, &inputs, compiled, self.owner),
                )
            })
            .collect();
        let refused = bound_by_ceiling(&self.ceiling, compiled, &mut per_ns);
        (per_ns, refused)
    }
}

/// Leaves out of every generated Role the rules its ceiling ClusterRole does not hold (the API
/// server would refuse the whole Role: Palisade has no `escalate`), and names them for status:
/// `spec.rbac.serviceAccounts[i].rules[j]` per refused declared rule.
fn bound_by_ceiling(
    ceiling: &[k8s_openapi::api::rbac::v1::PolicyRule],
    compiled: &CompiledBaseline,
    per_ns: &mut BTreeMap<String, NamespaceObjects>,
) -> Vec<String> {
    use crate::policy::rbac::ceiling::covers;
    let accounts = || {
        compiled
            .spec
            .rbac
            .iter()
            .flat_map(|r| r.service_accounts.iter())
    };
    let mut refused = Vec::new();
    for (i, sa) in accounts().enumerate() {
        for (j, rule) in sa.rules.iter().enumerate() {
            if !covers(ceiling, &rule.to_policy_rule()) {
                refused.push(format!("spec.rbac.serviceAccounts[{i}].rules[{j}]"));
            }
        }
    }
    let declared: Vec<_> = accounts()
        .flat_map(|sa| sa.rules.iter().map(|r| r.to_policy_rule()))
        .collect();
    for (ns, objects) in per_ns.iter_mut() {
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
    }
    refused.sort();
    refused.dedup();
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

#[cfg(test)]
mod tests;
