//! The audit: a single streaming pass over objects, then the joins that need the whole set
//! (RBAC bindings, namespaces vs. their policies, pods vs. their ServiceAccounts).
//!
//! Workloads are evaluated as they arrive and then dropped, so memory stays proportional to
//! findings and to the (small) RBAC/namespace/policy sets, not to the corpus.

use super::accepted::{self, Acceptance, AcceptedFinding};
use super::baseline::{CompiledBaseline, Subject};
use super::exposure;
use super::finding::{Finding, ObjectRef, Source, Violation};
use super::hardening::{self, Automount};
use super::network::{self, PolicySummary};
use super::object::Object;
use super::profiles::{self, ProfileKind};
use super::pss;
use super::rbac::{self, RbacObjects};
use super::rules::{Rule, Severity};
use super::selector::{CompactLabels, LabelLookup};
use super::verdicts::{Judge, Verdict, VerdictCache, Verdicts};
use super::workload::Workload;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// A pod that mounts a token unless its ServiceAccount (not seen yet) disables automount.
struct PendingAutomount {
    namespace: Option<String>,
    service_account: String,
    finding: Finding,
}

/// Result of an audit.
#[derive(Debug, Default)]
pub struct AuditReport {
    /// Violations, exemptions applied, sorted deterministically.
    pub findings: Vec<Finding>,
    /// Findings suppressed by a valid exemption.
    pub exempted: usize,
    /// The baseline's exemptions and how many findings each suppressed.
    pub exemptions: Vec<ExemptionUse>,
    /// Findings accepted by an accepted-risk annotation on their object (ClusterRoles and
    /// ClusterRoleBindings only): reported, but not violations. Sorted like `findings`.
    pub accepted: Vec<AcceptedFinding>,
    /// Namespaces the baseline covered.
    pub namespaces: Vec<String>,
    /// Objects evaluated.
    pub objects: usize,
    /// Findings handed to the stream of [`Auditor::stream_to`] instead of kept in `findings`,
    /// by severity.
    pub streamed: BTreeMap<Severity, usize>,
}

/// One of the baseline's exemptions, for reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExemptionUse {
    /// Index in `spec.exemptions`.
    pub index: usize,
    pub rules: Vec<&'static str>,
    pub namespaces: Vec<String>,
    pub names: Vec<String>,
    pub reason: String,
    pub expires: Option<String>,
    /// Findings it suppressed in this audit.
    pub suppressed: usize,
}

impl AuditReport {
    pub fn count_at_least(&self, severity: Severity) -> usize {
        let kept = self.findings.iter().filter(|f| f.severity >= severity);
        let streamed = self
            .streamed
            .range(severity..)
            .map(|(_, n)| n)
            .sum::<usize>();
        kept.count() + streamed
    }

    /// Findings kept and streamed.
    pub fn total(&self) -> usize {
        self.findings.len() + self.streamed.values().sum::<usize>()
    }

    pub fn by_severity(&self) -> BTreeMap<Severity, usize> {
        let mut m = self.streamed.clone();
        for f in &self.findings {
            *m.entry(f.severity).or_default() += 1;
        }
        m
    }
}

/// Accumulates one audit. Feed objects with [`Auditor::add`], then call [`Auditor::finish`].
pub struct Auditor<'b> {
    baseline: &'b CompiledBaseline,
    findings: Vec<Finding>,
    /// Findings suppressed, per exemption (index in `spec.exemptions`).
    exempted: BTreeMap<usize, usize>,
    objects: usize,
    pending_automount: Vec<PendingAutomount>,
    /// (namespace, name) -> automountServiceAccountToken of ServiceAccounts seen.
    service_accounts: HashMap<(Option<String>, String), Option<bool>>,
    /// Namespaces seen: labels when a Namespace object was seen, otherwise none.
    namespaces: BTreeMap<String, Option<BTreeMap<String, String>>>,
    /// Namespaces whose network the input describes (a Namespace object, a workload or a
    /// NetworkPolicy): only these can lack default deny. A Role or ServiceAccount placed in a
    /// namespace says nothing about its pods' traffic.
    network_namespaces: std::collections::BTreeSet<String>,
    policies: HashMap<String, Vec<PolicySummary>>,
    /// Namespaces, workloads and NetworkPolicies for the reachability findings.
    net: super::netpol::universe::UniverseBuilder,
    /// The API server's endpoints, when known (operator; `audit --api-server`).
    api_server: Vec<(std::net::IpAddr, u16)>,
    /// Workload -> (namespace, ServiceAccount, pod-level automountServiceAccountToken).
    accounts: HashMap<ObjectRef, (Option<String>, String, Option<bool>)>,
    /// Where non-workload objects came from, for findings made after the stream ends.
    sources: HashMap<ObjectRef, Source>,
    roles: Vec<Arc<Role>>,
    cluster_roles: Vec<Arc<ClusterRole>>,
    role_bindings: Vec<Arc<RoleBinding>>,
    cluster_role_bindings: Vec<Arc<ClusterRoleBinding>>,
    /// Valid accepted-risk annotations of ClusterRoles and ClusterRoleBindings.
    acceptances: HashMap<ObjectRef, Vec<Acceptance>>,
    /// What service accounts did, when known for a whole learning window.
    learned: Option<LearnedUsage<'b>>,
    /// Field paths and messages of the findings, each stored once.
    strings: Interner,
    /// Profiles of the Security Profiles Operator kinds known to be served, by Localhost name.
    profiles: BTreeMap<ProfileKind, BTreeSet<String>>,
    /// Localhost profiles workloads run under, judged once every profile has been seen.
    localhost_refs: Vec<PendingProfileRef>,
    /// Workloads and Istio policies for the mesh findings.
    mesh: super::mesh::MeshBuilder,
    /// Per-workload verdicts kept between audits (operator), when enabled.
    verdicts: Option<VerdictCache>,
    /// Where the object being added came from: its findings carry it.
    current_source: Option<Source>,
    /// Where the baseline came from: its own findings carry it.
    baseline_source: Option<Source>,
    /// Findings handed on as they are made, when streaming.
    stream: Option<Stream<'b>>,
}

/// Findings handed on as soon as it is known that the report includes them, so that memory
/// does not grow with the findings (`palisade audit --sort none`).
struct Stream<'s> {
    sink: Box<dyn FnMut(&Finding) + 's>,
    /// Findings in namespaces whose coverage depends on labels of a Namespace not seen yet.
    undecided: HashMap<String, Vec<Finding>>,
    by_severity: BTreeMap<Severity, usize>,
}

impl Stream<'_> {
    fn emit(&mut self, f: &Finding) {
        *self.by_severity.entry(f.severity).or_default() += 1;
        (self.sink)(f);
    }
}

/// A workload's Localhost profile, to be judged against the profiles in [`Auditor::finish`].
struct PendingProfileRef {
    object: Arc<ObjectRef>,
    labels: Arc<CompactLabels>,
    source: Option<Source>,
    reference: profiles::LocalhostRef,
}

/// Shares equal strings: findings repeat the same field paths and messages across workloads.
#[derive(Default)]
struct Interner(std::collections::HashSet<Arc<str>>);

impl Interner {
    fn intern(&mut self, s: &Arc<str>) -> Arc<str> {
        if let Some(shared) = self.0.get(&**s) {
            return shared.clone();
        }
        self.0.insert(s.clone());
        s.clone()
    }
}

/// What service accounts did during a learning window: the operator's audit-webhook aggregate,
/// or audit logs offline. With it, `rbac.unused-permission` is evaluated for the covered
/// namespaces' ServiceAccounts (and the accounts seen in the usage).
pub struct LearnedUsage<'u> {
    pub usage: &'u rbac::learn::Usage,
    /// Accesses at or after this time count (Unix seconds).
    pub since: i64,
    /// The window, for messages (`the last 168h`, `the audit logs`).
    pub label: String,
}

impl<'b> Auditor<'b> {
    pub fn new(baseline: &'b CompiledBaseline) -> Self {
        Auditor {
            baseline,
            findings: Vec::new(),
            exempted: BTreeMap::new(),
            objects: 0,
            pending_automount: Vec::new(),
            service_accounts: HashMap::new(),
            namespaces: BTreeMap::new(),
            network_namespaces: Default::default(),
            policies: HashMap::new(),
            net: Default::default(),
            api_server: Vec::new(),
            accounts: HashMap::new(),
            sources: HashMap::new(),
            roles: Vec::new(),
            cluster_roles: Vec::new(),
            role_bindings: Vec::new(),
            cluster_role_bindings: Vec::new(),
            acceptances: HashMap::new(),
            learned: None,
            strings: Interner::default(),
            profiles: BTreeMap::new(),
            localhost_refs: Vec::new(),
            mesh: Default::default(),
            verdicts: None,
            current_source: None,
            baseline_source: None,
            stream: None,
        }
    }

    /// Hands each finding to `sink` as soon as the report is known to include it, instead of
    /// keeping it for the sorted report: the report then holds only the findings that wait for
    /// the end (those of ClusterRoles and ClusterRoleBindings, which annotations may accept),
    /// and counts the rest in `streamed`. The order follows the input's.
    pub fn stream_to(&mut self, sink: impl FnMut(&Finding) + 'b) {
        self.stream = Some(Stream {
            sink: Box::new(sink),
            undecided: HashMap::new(),
            by_severity: BTreeMap::new(),
        });
    }

    /// Where the baseline came from: findings about the baseline itself point there.
    pub fn set_baseline_source(&mut self, source: Source) {
        self.baseline_source = Some(source);
    }

    /// Records that a kind of Security Profiles Operator profile is served, and profiles of it
    /// (by the Localhost name that selects them). Once a kind is known, Localhost references
    /// to profiles of that kind that do not exist are reported.
    pub fn add_profiles(&mut self, kind: ProfileKind, names: impl IntoIterator<Item = String>) {
        self.profiles.entry(kind).or_default().extend(names);
    }

    /// Istio is installed (its kinds are served): the mesh rules apply even with no Istio object.
    pub fn set_mesh_present(&mut self) {
        self.mesh.set_present();
    }

    /// Evaluates `rbac.unused-permission` against this usage.
    pub fn set_learned(&mut self, learned: LearnedUsage<'b>) {
        self.learned = Some(learned);
    }

    /// Tells the audit where the API server listens, so `network.api-reachable-without-need`
    /// can be judged (without it the rule is not evaluated).
    pub fn set_api_server(&mut self, endpoints: &[(std::net::IpAddr, u16)]) {
        self.api_server = endpoints.to_vec();
    }

    /// Evaluates or records one object. `source` tags the findings with where the object came from.
    pub fn add(&mut self, object: Object, source: Option<&Source>) {
        self.objects += 1;
        self.current_source = source.cloned();
        if let (Some(src), Some(r)) = (source, joined_ref(&object)) {
            self.sources.insert(r, src.clone());
        }
        self.annotations(&object);
        if matches!(object, Object::Namespace(_) | Object::NetworkPolicy(_)) {
            self.net.add(&object, false);
        }
        match object {
            Object::Workload(w) => self.workload(&w, source),
            Object::Namespace(ns) => self.namespace(&ns),
            Object::ServiceAccount(sa) => self.service_account(&sa),
            Object::Service(svc) => self.service(&svc),
            Object::NetworkPolicy(np) => {
                let ns = np.metadata.namespace.clone().unwrap_or_default();
                self.saw_namespace(&ns);
                self.network_namespaces.insert(ns.clone());
                let mut out = Vec::new();
                network::allow_all_rules(&np, &mut out);
                let object = Arc::new(ObjectRef::new(
                    "NetworkPolicy",
                    Some(&ns),
                    np.metadata.name.as_deref().unwrap_or(""),
                ));
                let labels = np.metadata.labels.as_ref().unwrap_or(&NO_LABELS);
                self.push_violations(out, &object, labels);
                self.policies
                    .entry(ns)
                    .or_default()
                    .push(network::summarize(&np));
            }
            Object::Role(r) => {
                if let Some(ns) = &r.metadata.namespace {
                    self.saw_namespace(ns);
                }
                self.roles.push(r)
            }
            Object::RoleBinding(b) => {
                if let Some(ns) = &b.metadata.namespace {
                    self.saw_namespace(ns);
                }
                self.role_bindings.push(b)
            }
            Object::ClusterRole(r) => self.cluster_roles.push(r),
            Object::ClusterRoleBinding(b) => self.cluster_role_bindings.push(b),
            Object::SeccompProfile(p) => {
                self.add_profiles(ProfileKind::Seccomp, [p.localhost_name()])
            }
            Object::AppArmorProfile(p) => {
                self.add_profiles(ProfileKind::AppArmor, [p.localhost_name()])
            }
            Object::PeerAuthentication(pa) => {
                if let Some(ns) = &pa.metadata.namespace {
                    self.saw_namespace(ns);
                }
                self.mesh.add_peer_authentication(pa)
            }
            Object::DestinationRule(dr) => self.mesh.add_destination_rule(&dr, source),
        }
        self.current_source = None;
    }

    /// Reads accepted-risk annotations: honoured on ClusterRoles and ClusterRoleBindings only
    /// (see [`accepted`] for why), reported as ignored anywhere else.
    fn annotations(&mut self, object: &Object) {
        let (kind, meta) = match object {
            Object::ClusterRole(o) => ("ClusterRole", &o.metadata),
            Object::ClusterRoleBinding(o) => ("ClusterRoleBinding", &o.metadata),
            Object::Workload(w) if !w.is_owned_by_workload() => (w.kind(), w.metadata()),
            Object::Workload(_) => return,
            Object::Namespace(o) => ("Namespace", &o.metadata),
            Object::ServiceAccount(o) => ("ServiceAccount", &o.metadata),
            Object::Service(o) => ("Service", &o.metadata),
            Object::NetworkPolicy(o) => ("NetworkPolicy", &o.metadata),
            Object::Role(o) => ("Role", &o.metadata),
            Object::RoleBinding(o) => ("RoleBinding", &o.metadata),
            Object::SeccompProfile(o) => ("SeccompProfile", &o.metadata),
            Object::AppArmorProfile(o) => ("AppArmorProfile", &o.metadata),
            Object::PeerAuthentication(o) => ("PeerAuthentication", &o.metadata),
            Object::DestinationRule(o) => ("DestinationRule", &o.metadata),
        };
        let Some(annotations) = meta.annotations.as_ref() else {
            return;
        };
        let name = meta.name.as_deref().unwrap_or("");
        let labels = meta.labels.as_ref().unwrap_or(&NO_LABELS);
        let cluster_scoped = matches!(
            object,
            Object::ClusterRole(_) | Object::ClusterRoleBinding(_)
        );
        if cluster_scoped {
            let mut out = Vec::new();
            let valid = accepted::parse(Some(annotations), &mut out);
            let object = Arc::new(ObjectRef::new(kind, None, name));
            self.push_violations(out, &object, labels);
            if !valid.is_empty() {
                self.acceptances.insert((*object).clone(), valid);
            }
            return;
        }
        let out = accepted::ignored(Some(annotations), kind);
        if out.is_empty() {
            return;
        }
        // A Namespace is judged (like its default-deny finding) only when the baseline covers it;
        // namespaced objects are filtered by their namespace at the end.
        let (namespace, subject_ns) = match object {
            Object::Namespace(_) if !self.baseline.covers_namespace(name, labels) => return,
            Object::Namespace(_) => (None, Some(name)),
            _ => (meta.namespace.as_deref(), meta.namespace.as_deref()),
        };
        let object = Arc::new(ObjectRef::new(kind, namespace, name));
        for v in out {
            let subject = Subject {
                namespace: subject_ns,
                name,
                labels,
            };
            if let Some(index) = self
                .baseline
                .exemption_for(v.rule, &subject)
                .map(|e| e.index)
            {
                *self.exempted.entry(index).or_default() += 1;
            } else {
                self.keep(v.into_finding(&object));
            }
        }
    }

    fn saw_namespace(&mut self, ns: &str) {
        if !self.namespaces.contains_key(ns) {
            self.namespaces.insert(ns.to_string(), None);
        }
    }

    fn namespace(&mut self, ns: &Namespace) {
        let name = ns.metadata.name.clone().unwrap_or_default();
        self.network_namespaces.insert(name.clone());
        let labels = ns.metadata.labels.clone().unwrap_or_default();
        if let Some(stream) = &mut self.stream {
            if let Some(waiting) = stream.undecided.remove(&name) {
                if self.baseline.covers_namespace(&name, &labels) {
                    waiting.iter().for_each(|f| stream.emit(f));
                }
            }
        }
        self.namespaces.insert(name, Some(labels));
    }

    fn service_account(&mut self, sa: &ServiceAccount) {
        let ns = sa.metadata.namespace.clone();
        if let Some(ns) = &ns {
            self.saw_namespace(ns);
        }
        let name = sa.metadata.name.clone().unwrap_or_default();
        self.service_accounts
            .insert((ns, name), sa.automount_service_account_token);
    }

    /// Evaluates a workload's pod template against PSS and hardening rules.
    /// What a Service exposes beyond the pod network (see [`exposure`]).
    fn service(&mut self, svc: &k8s_openapi::api::core::v1::Service) {
        let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
        self.saw_namespace(ns);
        let object = Arc::new(ObjectRef::new(
            "Service",
            Some(ns),
            svc.metadata.name.as_deref().unwrap_or(""),
        ));
        let labels = svc.metadata.labels.as_ref().unwrap_or(&NO_LABELS);
        for (v, severity) in exposure::service_exposure(svc) {
            if let Some(mut f) = self.exempt_or_keep(v, &object, labels) {
                f.severity = severity;
                self.keep(f);
            }
        }
    }

    pub fn workload(&mut self, w: &Workload, source: Option<&Source>) {
        // Pods and ReplicaSets created by a controller are reported once, on the controller.
        if w.is_owned_by_workload() {
            return;
        }
        if let Some(ns) = w.namespace() {
            self.saw_namespace(ns);
            self.network_namespaces.insert(ns.to_string());
        }
        let Some(pod) = w.pod_target() else { return };
        // One copy of the labels for the reachability, mesh and profile records.
        let labels = Arc::new(CompactLabels::from(pod.labels));
        self.net.add_pod_target(w, &pod, labels.clone(), false);
        let object = Arc::new(w.object_ref());
        if !self.api_server.is_empty() {
            let sa = pod
                .spec
                .service_account_name
                .clone()
                .unwrap_or_else(|| "default".into());
            self.accounts.insert(
                (*object).clone(),
                (
                    object.namespace.clone(),
                    sa,
                    pod.spec.automount_service_account_token,
                ),
            );
        }
        let baseline = self.baseline;
        let judge = || {
            let s = &baseline.settings;
            let mut violations = Vec::new();
            pss::check(&pod, s.level, s.version, &mut violations);
            let automount = hardening::check(&pod, baseline, &mut violations);
            profiles::check(&pod, baseline, &mut violations);
            Verdict {
                violations,
                automount,
            }
        };
        let Verdict {
            violations: out,
            automount,
        } = match &mut self.verdicts {
            Some(cache) => cache.get_or_make(w, judge),
            None => judge(),
        };
        self.push_violations(out, &object, pod.labels);
        self.mesh.add_workload(&object, &pod, &labels, source);
        for r in profiles::localhost_refs(&pod) {
            self.localhost_refs.push(PendingProfileRef {
                object: object.clone(),
                labels: labels.clone(),
                source: source.cloned(),
                reference: r,
            });
        }
        let (sa, violation) = match automount {
            Automount::Decided => return,
            Automount::Mounted(v) => (None, v),
            Automount::DependsOnServiceAccount(sa, v) => (Some(sa), v),
        };
        let Some(finding) = self.exempt_or_keep(violation, &object, pod.labels) else {
            return;
        };
        let mut finding = finding;
        finding.source = source.cloned();
        let Some(service_account) = sa else {
            return self.keep(finding);
        };
        // Decided now when the ServiceAccount has been read; otherwise at the end.
        let key = (object.namespace.clone(), service_account);
        match self.service_accounts.get(&key) {
            Some(Some(false)) => {}
            Some(_) => self.keep(finding),
            None => self.pending_automount.push(PendingAutomount {
                namespace: key.0,
                service_account: key.1,
                finding,
            }),
        }
    }

    fn exempt_or_keep(
        &mut self,
        v: Violation,
        object: &Arc<ObjectRef>,
        labels: &dyn LabelLookup,
    ) -> Option<Finding> {
        let subject = Subject {
            namespace: object.namespace.as_deref(),
            name: &object.name,
            labels,
        };
        if let Some(index) = self
            .baseline
            .exemption_for(v.rule, &subject)
            .map(|e| e.index)
        {
            *self.exempted.entry(index).or_default() += 1;
            return None;
        }
        Some(v.into_finding(object))
    }

    /// Keeps a finding, sharing its field path and message with earlier identical ones, or
    /// streams it.
    fn keep(&mut self, mut f: Finding) {
        if f.source.is_none() {
            f.source = match &self.current_source {
                Some(src) => Some(src.clone()),
                None if f.object.kind == "SecurityBaseline" => self.baseline_source.clone(),
                None if self.sources.is_empty() => None,
                None => self.sources.get(&*f.object).cloned(),
            };
        }
        if self.stream.is_some() {
            return self.route(f);
        }
        f.field = self.strings.intern(&f.field);
        f.message = self.strings.intern(&f.message);
        self.findings.push(f);
    }

    /// Streams a finding whose inclusion is decided, drops one outside the baseline's
    /// namespaces, and holds the others.
    fn route(&mut self, f: Finding) {
        // Annotations of ClusterRoles and ClusterRoleBindings may accept their findings:
        // those wait for every annotation.
        if matches!(f.object.kind.as_str(), "ClusterRole" | "ClusterRoleBinding") {
            self.findings.push(f);
            return;
        }
        let baseline = self.baseline;
        let Some(stream) = &mut self.stream else {
            return;
        };
        let Some(ns) = f.object.namespace.as_deref() else {
            return stream.emit(&f);
        };
        let covered = match self.namespaces.get(ns) {
            Some(Some(labels)) => baseline.covers_namespace(ns, labels),
            _ if baseline.covers_by_name_alone() => baseline.covers_namespace(ns, &NO_LABELS),
            _ => {
                let ns = ns.to_string();
                stream.undecided.entry(ns).or_default().push(f);
                return;
            }
        };
        if covered {
            stream.emit(&f);
        }
    }

    fn push_violations(
        &mut self,
        vs: Vec<Violation>,
        object: &Arc<ObjectRef>,
        labels: &dyn LabelLookup,
    ) {
        for v in vs {
            if let Some(f) = self.exempt_or_keep(v, object, labels) {
                self.keep(f);
            }
        }
    }

    fn covered(&self, ns: &str) -> bool {
        match self.namespaces.get(ns) {
            Some(Some(labels)) => self.baseline.covers_namespace(ns, labels),
            // No Namespace object seen: judge by name alone (kubernetes.io/metadata.name).
            _ => self.baseline.covers_namespace(ns, &NO_LABELS),
        }
    }

    /// Reuses `previous` verdicts of unchanged workloads (when `judge` made them) and keeps this
    /// audit's for the next one: see [`Auditor::finish_keeping_verdicts`].
    pub fn reuse_verdicts(&mut self, previous: Option<Verdicts>, judge: Judge) {
        self.verdicts = Some(VerdictCache::new(previous, judge));
    }

    /// [`Auditor::finish`], plus the verdicts of this audit's workloads (empty unless
    /// [`Auditor::reuse_verdicts`] was called).
    pub fn finish_keeping_verdicts(mut self) -> (AuditReport, Verdicts) {
        let verdicts = self
            .verdicts
            .take()
            .map(VerdictCache::into_verdicts)
            .unwrap_or_default();
        (self.finish(), verdicts)
    }

    /// Runs the joins and returns the report.
    pub fn finish(mut self) -> AuditReport {
        self.profile_findings();
        self.mesh_findings();
        // Token automount now that every ServiceAccount has been seen.
        for p in std::mem::take(&mut self.pending_automount) {
            let disabled = self
                .service_accounts
                .get(&(p.namespace.clone(), p.service_account.clone()))
                .copied()
                .flatten()
                == Some(false);
            if !disabled {
                self.keep(p.finding);
            }
        }
        let covered: Vec<String> = self
            .namespaces
            .keys()
            .filter(|ns| self.covered(ns))
            .cloned()
            .collect();
        let network: Vec<String> = covered
            .iter()
            .filter(|ns| self.network_namespaces.contains(*ns))
            .cloned()
            .collect();
        self.network_findings(&network);
        self.reach_findings();
        if self.baseline.settings.rbac_audit {
            self.rbac_findings();
        }
        let baseline = self.baseline;
        let namespaces = &self.namespaces;
        let is_covered = |ns: &str| match namespaces.get(ns) {
            Some(Some(labels)) => baseline.covers_namespace(ns, labels),
            _ => baseline.covers_namespace(ns, &NO_LABELS),
        };
        let mut streamed = BTreeMap::new();
        if let Some(mut stream) = self.stream.take() {
            // Namespaces never seen as objects are judged by name, as below.
            for (ns, waiting) in std::mem::take(&mut stream.undecided) {
                if is_covered(&ns) {
                    waiting.iter().for_each(|f| stream.emit(f));
                }
            }
            self.stream = Some(stream);
        }
        let mut findings: Vec<Finding> = std::mem::take(&mut self.findings)
            .into_iter()
            .filter(|f| f.object.namespace.as_deref().is_none_or(is_covered))
            .collect();
        findings.extend(self.baseline.own_findings.iter().map(|f| Finding {
            source: f.source.clone().or_else(|| self.baseline_source.clone()),
            ..f.clone()
        }));
        let mut accepted = Vec::new();
        if !self.acceptances.is_empty() {
            findings.retain(|f| {
                let reason = self
                    .acceptances
                    .get(&f.object)
                    .and_then(|a| a.iter().find(|a| a.rule == f.rule));
                match reason {
                    Some(a) => {
                        accepted.push(AcceptedFinding::new(f.clone(), &a.reason));
                        false
                    }
                    None => true,
                }
            });
            accepted.sort_unstable_by(|a: &AcceptedFinding, b: &AcceptedFinding| {
                a.finding.sort_key().cmp(&b.finding.sort_key())
            });
        }
        // Unstable sort: no scratch buffer of half the findings; the key is total (includes the source).
        findings.sort_unstable_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        if let Some(mut stream) = self.stream.take() {
            findings.drain(..).for_each(|f| stream.emit(&f));
            streamed = stream.by_severity;
        }
        let exemptions = baseline
            .spec
            .exemptions
            .iter()
            .enumerate()
            .map(|(index, e)| ExemptionUse {
                index,
                rules: e.rules.iter().map(|r| r.id()).collect(),
                namespaces: e.namespaces.clone(),
                names: e.names.clone(),
                reason: e.reason.clone(),
                expires: e.expires.as_ref().map(|t| t.0.to_string()),
                suppressed: self.exempted.get(&index).copied().unwrap_or(0),
            })
            .collect();
        AuditReport {
            findings,
            exempted: self.exempted.values().sum(),
            exemptions,
            accepted,
            namespaces: covered,
            objects: self.objects,
            streamed,
        }
    }

    /// Localhost profiles that no SeccompProfile/AppArmorProfile provides, for the kinds known
    /// to be served (the operator's CRDs installed, or their objects in the input).
    fn profile_findings(&mut self) {
        for p in std::mem::take(&mut self.localhost_refs) {
            let Some(known) = self.profiles.get(&p.reference.kind) else {
                continue;
            };
            if known.contains(&p.reference.name) {
                continue;
            }
            if let Some(mut f) = self.exempt_or_keep(p.reference.violation, &p.object, &p.labels) {
                f.source = p.source;
                self.keep(f);
            }
        }
    }

    /// mTLS modes, sidecars and client TLS, once every namespace and policy has been seen.
    fn mesh_findings(&mut self) {
        let mesh = std::mem::take(&mut self.mesh);
        let namespaces = &self.namespaces;
        let found = mesh.finish(|ns| namespaces.get(ns).cloned().flatten());
        for m in found {
            if let Some(mut f) = self.exempt_or_keep(m.violation, &m.object, &m.labels) {
                f.source = m.source;
                if let Some(severity) = m.severity {
                    f.severity = severity;
                }
                self.keep(f);
            }
        }
    }

    /// Default-deny holes that admit every pod, and declared allow rules that select nothing.
    fn reach_findings(&mut self) {
        let net = std::mem::take(&mut self.net);
        let (cluster, _) = net.build();
        // Offline a workload stands for its pods as `Kind/name` (a bare Pod by its name).
        let objects: Vec<ObjectRef> = cluster
            .pods
            .iter()
            .map(|p| match p.name.split_once('/') {
                Some((kind, name)) => ObjectRef::new(kind, Some(&p.namespace), name),
                None => ObjectRef::new("Pod", Some(&p.namespace), &p.name),
            })
            .collect();
        let mut out = Vec::new();
        super::reach::open_to_all_pods(&cluster, &objects, &mut out);
        if !self.api_server.is_empty() {
            let account = |i: usize| {
                let (ns, name, pod_level) = self.accounts.get(&objects[i])?.clone();
                let sa_level = self
                    .service_accounts
                    .get(&(ns, name.clone()))
                    .copied()
                    .flatten();
                Some(super::reach::Account {
                    declared: self.baseline.declared_service_accounts.contains(&name),
                    mounts_token: pod_level.or(sa_level).unwrap_or(true),
                    name,
                })
            };
            super::reach::api_reachable_without_need(
                &cluster,
                &objects,
                &account,
                &self.api_server,
                &mut out,
            );
        }
        let labels_of = |ns: &str| cluster.namespaces.get(ns).cloned().unwrap_or_default();
        super::reach::allow_rules_selecting_nothing(
            self.baseline,
            &cluster.pods,
            &|ns| self.covered(ns),
            &labels_of,
            &mut out,
        );
        let by_object: HashMap<&ObjectRef, usize> =
            objects.iter().enumerate().map(|(i, o)| (o, i)).collect();
        for f in out {
            let labels = by_object
                .get(&*f.object)
                .map(|&i| cluster.pods[i].labels.clone())
                .unwrap_or_default();
            let subject = Subject {
                namespace: f.object.namespace.as_deref(),
                name: &f.object.name,
                labels: &labels,
            };
            if let Some(index) = self
                .baseline
                .exemption_for(f.rule, &subject)
                .map(|e| e.index)
            {
                *self.exempted.entry(index).or_default() += 1;
            } else {
                self.keep(f);
            }
        }
    }

    fn network_findings(&mut self, covered: &[String]) {
        let wanted = self.baseline.settings.default_deny.clone();
        if wanted.is_empty() {
            return;
        }
        for ns in covered {
            let none = Vec::new();
            let missing =
                network::missing_default_deny(&wanted, self.policies.get(ns).unwrap_or(&none));
            if missing.is_empty() {
                continue;
            }
            let dirs: Vec<&str> = missing.iter().map(|d| d.as_str()).collect();
            let v = Violation::new(
                Rule::NoDefaultDeny,
                "metadata.name",
                format!(
                    "namespace has no default-deny NetworkPolicy for {}; add one selecting all pods (podSelector: {{}}) with policyTypes [{}] and no rules, or let Palisade generate it (enforcement: Enforce)",
                    dirs.join(" and "),
                    dirs.join(", ")
                ),
            );
            let labels = self
                .namespaces
                .get(ns)
                .cloned()
                .flatten()
                .unwrap_or_default();
            let object = Arc::new(ObjectRef::new("Namespace", None, ns));
            let subject = Subject {
                namespace: Some(ns),
                name: ns,
                labels: &labels,
            };
            if let Some(index) = self
                .baseline
                .exemption_for(v.rule, &subject)
                .map(|e| e.index)
            {
                *self.exempted.entry(index).or_default() += 1;
            } else {
                self.keep(v.into_finding(&object));
            }
        }
    }

    fn rbac_findings(&mut self) {
        let objs = RbacObjects {
            roles: self.roles.iter().map(|r| &**r).collect(),
            cluster_roles: self.cluster_roles.iter().map(|r| &**r).collect(),
            role_bindings: self.role_bindings.iter().map(|b| &**b).collect(),
            cluster_role_bindings: self.cluster_role_bindings.iter().map(|b| &**b).collect(),
        };
        let baseline = self.baseline;
        let namespaces = &self.namespaces;
        let in_scope = |ns: &str| match namespaces.get(ns) {
            Some(Some(labels)) => baseline.covers_namespace(ns, labels),
            _ => baseline.covers_namespace(ns, &NO_LABELS),
        };
        let mut out = Vec::new();
        rbac::audit(&objs, &in_scope, &mut out);
        if let Some(learned) = &self.learned {
            let accounts: std::collections::BTreeSet<rbac::learn::Account> = self
                .service_accounts
                .keys()
                .map(|(ns, name)| {
                    rbac::learn::Account::new(ns.as_deref().unwrap_or("default"), name)
                })
                .chain(learned.usage.accounts.keys().cloned())
                .filter(|a| in_scope(&a.namespace))
                .collect();
            let window = rbac::learn::Window {
                accounts: &accounts,
                since: learned.since,
                label: &learned.label,
            };
            rbac::learn::unused_permissions(&objs, learned.usage, &window, &mut out);
        }
        for f in out {
            let subject = Subject {
                namespace: f.object.namespace.as_deref(),
                name: &f.object.name,
                labels: &NO_LABELS,
            };
            if let Some(index) = baseline.exemption_for(f.rule, &subject).map(|e| e.index) {
                *self.exempted.entry(index).or_default() += 1;
            } else {
                self.keep(f);
            }
        }
    }
}

/// The reference of an object whose findings are made at the end (joins), if any.
fn joined_ref(object: &Object) -> Option<ObjectRef> {
    let (kind, meta) = match object {
        Object::Workload(_)
        | Object::ServiceAccount(_)
        | Object::Service(_)
        | Object::NetworkPolicy(_)
        | Object::SeccompProfile(_)
        | Object::AppArmorProfile(_)
        | Object::PeerAuthentication(_)
        | Object::DestinationRule(_) => return None,
        Object::Namespace(o) => ("Namespace", &o.metadata),
        Object::Role(o) => ("Role", &o.metadata),
        Object::ClusterRole(o) => ("ClusterRole", &o.metadata),
        Object::RoleBinding(o) => ("RoleBinding", &o.metadata),
        Object::ClusterRoleBinding(o) => ("ClusterRoleBinding", &o.metadata),
    };
    Some(ObjectRef::new(
        kind,
        meta.namespace.as_deref(),
        meta.name.as_deref().unwrap_or(""),
    ))
}
