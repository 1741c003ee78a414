//! What a baseline wants to exist: NetworkPolicies, least-privilege Roles/RoleBindings, Istio
//! PeerAuthentications and Pod Security Admission labels per namespace, and a
//! ValidatingAdmissionPolicy + binding for the checks PSS lacks. Deterministic: the same input gives byte-identical objects.

use super::baseline::CompiledBaseline;
use super::mesh::istio::{Mtls, PeerAuthentication, PeerAuthenticationSpec};
use super::pss::Level;
use crate::crd::{AllowRule, Direction, ProfileRequirement, ProfileType, ProfileTypeRequirement};
use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, NamedRuleWithOperations, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec,
    ValidatingAdmissionPolicySpec, Validation,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta, OwnerReference,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "palisade";
pub const BASELINE_LABEL: &str = "palisade.dev/baseline";
pub const FIELD_MANAGER: &str = "palisade";

/// Everything a baseline wants in one namespace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NamespaceObjects {
    pub network_policies: Vec<NetworkPolicy>,
    pub roles: Vec<Role>,
    pub role_bindings: Vec<RoleBinding>,
    /// Istio PeerAuthentications (`spec.mesh.mtls: Strict`).
    pub peer_authentications: Vec<PeerAuthentication>,
    /// Pod Security Admission labels for the Namespace itself.
    pub namespace_labels: BTreeMap<String, String>,
    /// The safe-default-deny allowances among the policies, described for status.
    pub allowances: Vec<String>,
}

/// Cluster-scoped objects a baseline wants.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterObjects {
    pub admission_policies: Vec<ValidatingAdmissionPolicy>,
    pub admission_bindings: Vec<ValidatingAdmissionPolicyBinding>,
}

/// Annotations that keep GitOps tools from pruning or flagging generated objects, which no
/// repository declares: Argo CD (compare-options, sync-options) and Flux (kustomize-controller's
/// delete policy). Flux only prunes what it applied itself; the annotation guards the case where a
/// repository also ships an object of the same name.
pub const GITOPS_ANNOTATIONS: [(&str, &str); 3] = [
    ("argocd.argoproj.io/compare-options", "IgnoreExtraneous"),
    ("argocd.argoproj.io/sync-options", "Prune=false"),
    ("kustomize.toolkit.fluxcd.io/prune", "disabled"),
];

/// Labels and annotations by which GitOps tools recognise objects as part of an application.
/// Generated objects must never carry one: Argo CD would count them as its own (OutOfSync, pruned
/// on sync) and Flux's labels would attribute them to a Kustomization.
pub fn is_gitops_tracking_key(key: &str) -> bool {
    key == "app.kubernetes.io/instance"
        || key == "argocd.argoproj.io/tracking-id"
        || key == "argocd.argoproj.io/instance"
        || (key.starts_with("kustomize.toolkit.fluxcd.io/")
            && key != "kustomize.toolkit.fluxcd.io/prune")
        || key.starts_with("helm.toolkit.fluxcd.io/")
}

/// Metadata every generated object carries besides its labels (also used for policy reports).
pub fn gitops_annotations() -> BTreeMap<String, String> {
    GITOPS_ANNOTATIONS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Palisade's labels for objects generated for `baseline` (built fresh: nothing is copied from
/// the baseline's own metadata, so GitOps tracking labels never spread to generated objects).
pub fn generated_labels(baseline: &str) -> BTreeMap<String, String> {
    labels(baseline)
}

fn labels(baseline: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
        (BASELINE_LABEL.to_string(), baseline.to_string()),
    ])
}

fn meta(
    name: &str,
    namespace: Option<&str>,
    b: &CompiledBaseline,
    owner: Option<&OwnerReference>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(labels(&b.name)),
        annotations: Some(gitops_annotations()),
        owner_references: owner.map(|o| vec![o.clone()]),
        ..Default::default()
    }
}

fn select_all() -> LabelSelector {
    LabelSelector::default()
}

fn policy(meta: ObjectMeta, spec: NetworkPolicySpec) -> NetworkPolicy {
    NetworkPolicy {
        metadata: meta,
        spec: Some(spec),
    }
}

/// A pod template of a namespace, as far as generation needs it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WorkloadPods {
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
}

impl WorkloadPods {
    /// The pod labels and account of a top-level workload (controller-owned ones are judged
    /// through their owner), if it has a pod template.
    pub fn of(w: &super::workload::Workload) -> Option<WorkloadPods> {
        if w.is_owned_by_workload() {
            return None;
        }
        let t = w.pod_target()?;
        Some(WorkloadPods {
            labels: t.labels.clone(),
            service_account: t
                .spec
                .service_account_name
                .clone()
                .unwrap_or_else(|| "default".into()),
        })
    }
}

/// Where one namespace's objects are generated: its labels (which decide the cross-namespace
/// allow rules with an end in it), the API server's addresses (`default/kubernetes`
/// EndpointSlice) and the namespace's workloads (whose pods may need the API server).
#[derive(Clone, Debug, Default)]
pub struct NamespaceContext<'a> {
    pub labels: Option<&'a BTreeMap<String, String>>,
    pub api_server: &'a [(std::net::IpAddr, u16)],
    pub workloads: &'a [WorkloadPods],
    pub webhooks: &'a [WebhookBackend],
    /// ServiceAccount name -> rules learned for it in this namespace, for `learn: true`
    /// accounts whose learning is complete (the operator decides when).
    pub learned: Option<&'a BTreeMap<String, Vec<PolicyRule>>>,
}

/// The pods behind an admission webhook's Service in a namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookBackend {
    /// The Service's name.
    pub service: String,
    /// The Service's selector: its pods.
    pub selector: BTreeMap<String, String>,
    /// Target ports of the webhook's Service port (numbers or container port names).
    pub ports: Vec<IntOrString>,
    /// `ValidatingWebhookConfiguration/name` etc., for status.
    pub configurations: Vec<String>,
}

/// The objects `baseline` wants in namespace `ns`.
pub fn namespace_objects(
    ns: &str,
    ctx: &NamespaceContext<'_>,
    b: &CompiledBaseline,
    owner: Option<&OwnerReference>,
) -> NamespaceObjects {
    let empty = BTreeMap::new();
    let ns_labels = ctx.labels.unwrap_or(&empty);
    let s = &b.settings;
    let mut out = NamespaceObjects::default();
    let m = |name: &str| meta(name, Some(ns), b, owner);
    let deny_egress = s.default_deny.contains(&Direction::Egress);
    let denied_types: Vec<String> = s
        .default_deny
        .iter()
        .map(|d| d.as_str().to_string())
        .collect();
    if !s.default_deny.is_empty() {
        out.network_policies.push(policy(
            m("palisade-default-deny"),
            NetworkPolicySpec {
                pod_selector: Some(select_all()),
                policy_types: Some(denied_types.clone()),
                // Explicitly no rules: someone adding one is drift and gets reverted.
                ingress: s.default_deny.contains(&Direction::Ingress).then(Vec::new),
                egress: deny_egress.then(Vec::new),
            },
        ));
    }
    if s.allow_dns && deny_egress {
        out.network_policies
            .push(policy(m("palisade-allow-dns"), dns_spec()));
    }
    if s.allow_same_namespace && !s.default_deny.is_empty() {
        let same = vec![NetworkPolicyPeer {
            pod_selector: Some(select_all()),
            ..Default::default()
        }];
        out.network_policies.push(policy(
            m("palisade-allow-same-namespace"),
            NetworkPolicySpec {
                pod_selector: Some(select_all()),
                policy_types: Some(denied_types.clone()),
                ingress: s.default_deny.contains(&Direction::Ingress).then(|| {
                    vec![NetworkPolicyIngressRule {
                        from: Some(same.clone()),
                        ports: None,
                    }]
                }),
                egress: deny_egress.then(|| {
                    vec![NetworkPolicyEgressRule {
                        to: Some(same.clone()),
                        ports: None,
                    }]
                }),
            },
        ));
    }
    for rule in b.spec.network.iter().flat_map(|n| n.allow.iter()) {
        let ports = (!rule.ports.is_empty()).then(|| rule.ports.clone());
        let mut types = Vec::new();
        if !rule.from.is_empty() {
            types.push("Ingress".to_string());
        }
        if !rule.to.is_empty() {
            types.push("Egress".to_string());
        }
        out.network_policies.push(policy(
            m(&format!("palisade-allow-{}", rule.name)),
            NetworkPolicySpec {
                pod_selector: Some(rule.pod_selector.clone()),
                policy_types: Some(types),
                ingress: (!rule.from.is_empty()).then(|| {
                    vec![NetworkPolicyIngressRule {
                        from: Some(rule.from.clone()),
                        ports: ports.clone(),
                    }]
                }),
                egress: (!rule.to.is_empty()).then(|| {
                    vec![NetworkPolicyEgressRule {
                        to: Some(rule.to.clone()),
                        ports: ports.clone(),
                    }]
                }),
            },
        ));
    }
    for rule in b.spec.network.iter().flat_map(|n| n.allow.iter()) {
        let ends = PeerEnds {
            ns,
            ns_labels,
            covered: covered_namespaces(b),
        };
        if deny_egress {
            for (i, spec) in ends.sources(rule) {
                out.network_policies.push(policy(
                    m(&format!("palisade-allow-{}-from-{i}", rule.name)),
                    spec,
                ));
            }
        }
        if s.default_deny.contains(&Direction::Ingress) {
            for (i, spec) in ends.destinations(rule) {
                out.network_policies.push(policy(
                    m(&format!("palisade-allow-{}-to-{i}", rule.name)),
                    spec,
                ));
            }
        }
    }
    if deny_egress {
        for (name, spec, why) in api_server_policies(ctx, b) {
            out.allowances.push(format!("{ns}/{name}: {why}"));
            out.network_policies.push(policy(m(&name), spec));
        }
    }
    if s.default_deny.contains(&Direction::Ingress) {
        for (name, spec, why) in webhook_policies(ctx, b) {
            out.allowances.push(format!("{ns}/{name}: {why}"));
            out.network_policies.push(policy(m(&name), spec));
        }
    }
    for sa in b.spec.rbac.iter().flat_map(|r| r.service_accounts.iter()) {
        let name = format!("palisade-{}", sa.name);
        let mut rules: Vec<PolicyRule> = sa.rules.iter().map(|r| r.to_policy_rule()).collect();
        if sa.learn == Some(true) {
            let learned = ctx.learned.and_then(|l| l.get(&sa.name));
            rules.extend(learned.into_iter().flatten().cloned());
        }
        if rules.is_empty() {
            continue; // learning, nothing declared: no Role yet
        }
        out.roles.push(Role {
            metadata: m(&name),
            rules: Some(rules),
        });
        out.role_bindings.push(RoleBinding {
            metadata: m(&name),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: name.clone(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: sa.name.clone(),
                namespace: Some(ns.to_string()),
                api_group: None,
            }]),
        });
    }
    if s.psa_namespace_labels && s.level != Level::Privileged {
        for mode in ["enforce", "warn", "audit"] {
            out.namespace_labels.insert(
                format!("pod-security.kubernetes.io/{mode}"),
                s.level.to_string(),
            );
            out.namespace_labels.insert(
                format!("pod-security.kubernetes.io/{mode}-version"),
                s.version.to_string(),
            );
        }
    }
    if s.mesh_strict {
        out.peer_authentications
            .push(strict_peer_authentication(m(PEER_AUTHENTICATION_NAME)));
    }
    out
}

/// The namespace-wide PeerAuthentication `spec.mesh.mtls: Strict` generates.
pub const PEER_AUTHENTICATION_NAME: &str = "palisade-mtls";

/// Namespace-wide (no selector) and STRICT. Istio lets one namespace-wide policy decide (the
/// oldest); a workload policy still overrides it for its pods, which the audit reports.
fn strict_peer_authentication(metadata: ObjectMeta) -> PeerAuthentication {
    PeerAuthentication {
        metadata,
        spec: PeerAuthenticationSpec {
            selector: None,
            mtls: Some(Mtls {
                mode: Some("STRICT".into()),
            }),
            port_level_mtls: BTreeMap::new(),
        },
    }
}

/// FNV-1a: a short, stable name suffix for a label set (no new dependency for one hash).
fn short_hash(text: &str) -> String {
    let h = text.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("{h:08x}")
}

/// Egress to the API server's endpoints for the pods that need it: each distinct pod-label set
/// of the namespace's workloads running as a declared ServiceAccount (a NetworkPolicy cannot
/// select by account, so the workloads' own labels do), and the baseline's explicit selector.
/// Workloads without labels cannot be selected alone and get nothing.
fn api_server_policies(
    ctx: &NamespaceContext<'_>,
    b: &CompiledBaseline,
) -> Vec<(String, NetworkPolicySpec, String)> {
    if ctx.api_server.is_empty() {
        return Vec::new();
    }
    let mut ports: Vec<u16> = ctx.api_server.iter().map(|(_, p)| *p).collect();
    ports.sort();
    ports.dedup();
    let targets: String = ctx
        .api_server
        .iter()
        .map(|(ip, p)| std::net::SocketAddr::new(*ip, *p).to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let egress = vec![NetworkPolicyEgressRule {
        to: Some(api_server_peers(ctx.api_server)),
        ports: Some(
            ports
                .iter()
                .map(|p| NetworkPolicyPort {
                    port: Some(IntOrString::Int(i32::from(*p))),
                    protocol: Some("TCP".into()),
                    end_port: None,
                })
                .collect(),
        ),
    }];
    let spec = |sel: LabelSelector| NetworkPolicySpec {
        pod_selector: Some(sel),
        policy_types: Some(vec!["Egress".into()]),
        egress: Some(egress.clone()),
        ingress: None,
    };
    let mut out = Vec::new();
    if b.settings.api_server_for_declared {
        let mut sets: Vec<&WorkloadPods> = ctx
            .workloads
            .iter()
            .filter(|w| {
                !w.labels.is_empty() && b.declared_service_accounts.contains(&w.service_account)
            })
            .collect();
        sets.sort();
        sets.dedup();
        for w in sets {
            let canonical: Vec<String> = w.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let hash = short_hash(&format!("{}/{}", w.service_account, canonical.join(",")));
            let mut name = format!("palisade-allow-apiserver-{}-{hash}", w.service_account);
            if name.len() > 253 {
                // Account names may be as long as object names: keep the hash, which is unique.
                name = format!("palisade-allow-apiserver-{hash}");
            }
            out.push((
                name,
                spec(LabelSelector {
                    match_labels: Some(w.labels.clone()),
                    match_expressions: None,
                }),
                format!(
                    "egress to the API server ({targets}) for pods {} of ServiceAccount {}",
                    canonical.join(","),
                    w.service_account
                ),
            ));
        }
    }
    let explicit = b
        .spec
        .network
        .as_ref()
        .and_then(|n| n.allow_api_server.as_ref())
        .and_then(|a| a.pod_selector.clone());
    if let Some(sel) = explicit {
        out.push((
            "palisade-allow-apiserver".into(),
            spec(sel),
            format!(
                "egress to the API server ({targets}) for spec.network.allowAPIServer.podSelector"
            ),
        ));
    }
    out
}

/// The API server's endpoints as peers (one /32 or /128 ipBlock each).
fn api_server_peers(api_server: &[(std::net::IpAddr, u16)]) -> Vec<NetworkPolicyPeer> {
    let mut ips: Vec<std::net::IpAddr> = api_server.iter().map(|(ip, _)| *ip).collect();
    ips.sort();
    ips.dedup();
    ips.iter()
        .map(|ip| NetworkPolicyPeer {
            ip_block: Some(k8s_openapi::api::networking::v1::IPBlock {
                cidr: format!("{ip}/{}", if ip.is_ipv4() { 32 } else { 128 }),
                except: None,
            }),
            ..Default::default()
        })
        .collect()
}

/// Ingress from the control plane to the pods behind each admission webhook Service of the
/// namespace, on the webhook's target port: default deny would otherwise fail every admission
/// request the webhook intercepts, cluster-wide.
fn webhook_policies(
    ctx: &NamespaceContext<'_>,
    b: &CompiledBaseline,
) -> Vec<(String, NetworkPolicySpec, String)> {
    let configured = b
        .spec
        .network
        .as_ref()
        .map(|n| n.webhook_sources.clone())
        .unwrap_or_default();
    let (sources, source_text) = if configured.is_empty() {
        let ips: Vec<String> = ctx
            .api_server
            .iter()
            .map(|(ip, _)| ip.to_string())
            .collect();
        (
            api_server_peers(ctx.api_server),
            format!("the API server ({})", ips.join(", ")),
        )
    } else {
        (configured, "spec.network.webhookSources".to_string())
    };
    if sources.is_empty() {
        return Vec::new();
    }
    ctx.webhooks
        .iter()
        .filter(|w| !w.selector.is_empty() && !w.ports.is_empty())
        .map(|w| {
            let ports: Vec<String> = w
                .ports
                .iter()
                .map(|p| match p {
                    IntOrString::Int(n) => n.to_string(),
                    IntOrString::String(s) => s.clone(),
                })
                .collect();
            let mut name = format!("palisade-allow-webhook-{}", w.service);
            if name.len() > 253 {
                name = format!("palisade-allow-webhook-{}", short_hash(&w.service));
            }
            let spec = NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(w.selector.clone()),
                    match_expressions: None,
                }),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(sources.clone()),
                    ports: Some(
                        w.ports
                            .iter()
                            .map(|p| NetworkPolicyPort {
                                port: Some(p.clone()),
                                protocol: Some("TCP".into()),
                                end_port: None,
                            })
                            .collect(),
                    ),
                }]),
                egress: None,
            };
            let why = format!(
                "ingress from {source_text} to Service {} on {} for {}",
                w.service,
                ports.join(", "),
                w.configurations.join(", ")
            );
            (name, spec, why)
        })
        .collect()
}

/// The namespaces a baseline covers, as a namespaceSelector: its selector minus the excluded names.
fn covered_namespaces(b: &CompiledBaseline) -> LabelSelector {
    let mut sel = b.spec.namespace_selector.clone().unwrap_or_default();
    if !b.excluded_namespaces.is_empty() {
        sel.match_expressions
            .get_or_insert_with(Vec::new)
            .push(LabelSelectorRequirement {
                key: NAMESPACE_NAME_LABEL.into(),
                operator: "NotIn".into(),
                values: Some(b.excluded_namespaces.iter().cloned().collect()),
            });
    }
    sel
}

const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The other end of a declared allow rule. Default deny closes both ends of a connection: a rule
/// that lets peers in (`from`) must also let those peers out where they live in a covered
/// namespace, and a rule that lets pods out (`to`) must let them in at covered peers. Each end
/// is opened exactly for the declared peers, pods and ports.
struct PeerEnds<'a> {
    ns: &'a str,
    ns_labels: &'a BTreeMap<String, String>,
    covered: LabelSelector,
}

impl PeerEnds<'_> {
    /// Does `peer` select pods of this namespace (for a rule that also applies here)?
    fn lives_here(&self, peer: &NetworkPolicyPeer) -> bool {
        if peer.ip_block.is_some() {
            return false;
        }
        match &peer.namespace_selector {
            None => true,
            Some(sel) => {
                let mut labels = self.ns_labels.clone();
                labels
                    .entry(NAMESPACE_NAME_LABEL.into())
                    .or_insert_with(|| self.ns.to_string());
                super::selector::Selector::compile(sel).is_ok_and(|s| s.matches(&labels))
            }
        }
    }

    /// The rule's own pods as seen from a peer: in this namespace for a same-namespace peer,
    /// in every covered namespace (where the rule applies too) for a namespaceSelector peer.
    fn rule_pods(&self, rule: &AllowRule, peer: &NetworkPolicyPeer) -> NetworkPolicyPeer {
        NetworkPolicyPeer {
            pod_selector: Some(rule.pod_selector.clone()),
            namespace_selector: peer
                .namespace_selector
                .is_some()
                .then(|| self.covered.clone()),
            ip_block: None,
        }
    }

    fn ports(rule: &AllowRule) -> Option<Vec<NetworkPolicyPort>> {
        (!rule.ports.is_empty()).then(|| rule.ports.clone())
    }

    /// One policy per peer of `peers` living here, opening `way` to or from the rule's pods:
    /// egress for `from` peers, ingress for `to` peers.
    fn ends(
        &self,
        rule: &AllowRule,
        peers: &[NetworkPolicyPeer],
        way: Direction,
    ) -> Vec<(usize, NetworkPolicySpec)> {
        peers
            .iter()
            .enumerate()
            .filter(|(_, p)| self.lives_here(p))
            .map(|(i, p)| {
                let other_end = Some(vec![self.rule_pods(rule, p)]);
                let ports = Self::ports(rule);
                let (ingress, egress) = match way {
                    Direction::Ingress => (
                        Some(vec![NetworkPolicyIngressRule {
                            from: other_end,
                            ports,
                        }]),
                        None,
                    ),
                    Direction::Egress => (
                        None,
                        Some(vec![NetworkPolicyEgressRule {
                            to: other_end,
                            ports,
                        }]),
                    ),
                };
                let spec = NetworkPolicySpec {
                    pod_selector: Some(p.pod_selector.clone().unwrap_or_default()),
                    policy_types: Some(vec![way.as_str().into()]),
                    ingress,
                    egress,
                };
                (i, spec)
            })
            .collect()
    }

    /// Egress for `from` peers living here, to the rule's pods.
    fn sources(&self, rule: &AllowRule) -> Vec<(usize, NetworkPolicySpec)> {
        self.ends(rule, &rule.from, Direction::Egress)
    }

    /// Ingress for `to` peers living here, from the rule's pods.
    fn destinations(&self, rule: &AllowRule) -> Vec<(usize, NetworkPolicySpec)> {
        self.ends(rule, &rule.to, Direction::Ingress)
    }
}

fn dns_spec() -> NetworkPolicySpec {
    let port = |protocol: &str| NetworkPolicyPort {
        port: Some(IntOrString::Int(53)),
        protocol: Some(protocol.to_string()),
        end_port: None,
    };
    NetworkPolicySpec {
        pod_selector: Some(select_all()),
        policy_types: Some(vec!["Egress".into()]),
        egress: Some(vec![NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(
                        "kubernetes.io/metadata.name".to_string(),
                        "kube-system".to_string(),
                    )])),
                    ..Default::default()
                }),
                pod_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(
                        "k8s-app".to_string(),
                        "kube-dns".to_string(),
                    )])),
                    ..Default::default()
                }),
                ip_block: None,
            }]),
            ports: Some(vec![port("UDP"), port("TCP")]),
        }]),
        ingress: None,
    }
}

/// CEL validations for the hardening checks PSS lacks, over every container of a Pod.
fn validations(b: &CompiledBaseline) -> Vec<Validation> {
    let s = &b.settings;
    let mut v = Vec::new();
    let (all_containers, windows) = (ALL_CONTAINERS, WINDOWS);
    if s.read_only_root_filesystem {
        v.push(Validation {
            expression: format!("{windows} || ({all_containers}).all(c, has(c.securityContext) && has(c.securityContext.readOnlyRootFilesystem) && c.securityContext.readOnlyRootFilesystem == true)"),
            message: Some("hardening.read-only-root-fs: every container must set securityContext.readOnlyRootFilesystem=true".into()),
            reason: Some("Forbidden".into()),
            message_expression: None,
        });
    }
    if !s.allow_token_automount {
        let declared: Vec<String> = b
            .declared_service_accounts
            .iter()
            .map(|s| format!("'{s}'"))
            .collect();
        v.push(Validation {
            expression: format!(
                "(has(object.spec.serviceAccountName) && object.spec.serviceAccountName in [{}]) || (has(object.spec.automountServiceAccountToken) && object.spec.automountServiceAccountToken == false)",
                declared.join(", ")
            ),
            message: Some("hardening.automount-token: set spec.automountServiceAccountToken=false (or declare the ServiceAccount in the baseline's spec.rbac.serviceAccounts)".into()),
            reason: Some("Forbidden".into()),
            message_expression: None,
        });
    }
    if s.forbid_default_service_account {
        v.push(Validation {
            expression: "has(object.spec.serviceAccountName) && object.spec.serviceAccountName != '' && object.spec.serviceAccountName != 'default'".into(),
            message: Some("hardening.default-service-account: set spec.serviceAccountName to a dedicated ServiceAccount".into()),
            reason: Some("Forbidden".into()),
            message_expression: None,
        });
    }
    v
}

/// Binding scope: the baseline's namespaces (selector minus exclusions).
fn namespace_scope(b: &CompiledBaseline) -> LabelSelector {
    let mut sel = b.spec.namespace_selector.clone().unwrap_or_default();
    if !b.excluded_namespaces.is_empty() {
        sel.match_expressions
            .get_or_insert_with(Vec::new)
            .push(LabelSelectorRequirement {
                key: "kubernetes.io/metadata.name".into(),
                operator: "NotIn".into(),
                values: Some(b.excluded_namespaces.iter().cloned().collect()),
            });
    }
    sel
}

fn pod_rules() -> MatchResources {
    MatchResources {
        resource_rules: Some(vec![NamedRuleWithOperations {
            api_groups: Some(vec!["".into()]),
            api_versions: Some(vec!["v1".into()]),
            operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
            // Ephemeral (debug) containers are added through their own subresource, whose
            // object is the whole Pod: without it, `kubectl debug` would bypass every check.
            resources: Some(vec!["pods".into(), "pods/ephemeralcontainers".into()]),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

/// The admission guards for the checks PSS lacks (only when the baseline enforces and asks for them).
pub fn cluster_objects(b: &CompiledBaseline, owner: Option<&OwnerReference>) -> ClusterObjects {
    let mut out = ClusterObjects::default();
    if !b.settings.validating_admission_policy {
        return out;
    }
    let base = format!("palisade-{}", b.name);
    let checks = validations(b);
    if !checks.is_empty() {
        push_policy(&mut out, b, owner, &base, checks, namespace_scope(b), None);
    }
    if let (Some(sb), Some(_)) = (
        b.spec
            .pod_security
            .as_ref()
            .and_then(|p| p.sandbox.as_ref()),
        &b.sandbox_selector,
    ) {
        let names: Vec<String> = sb
            .runtime_class_names
            .iter()
            .map(|n| format!("'{n}'"))
            .collect();
        let check = Validation {
            expression: format!("has(object.spec.runtimeClassName) && object.spec.runtimeClassName in [{}]", names.join(", ")),
            message: Some(format!(
                "hardening.sandbox-runtime: untrusted pods must set spec.runtimeClassName to one of [{}]",
                sb.runtime_class_names.join(", ")
            )),
            reason: Some("Forbidden".into()),
            message_expression: None,
        };
        let name = format!("{base}-sandbox");
        push_policy(
            &mut out,
            b,
            owner,
            &name,
            vec![check],
            namespace_scope(b),
            Some(sb.workload_selector.clone()),
        );
    }
    let requirements = b.spec.pod_security.iter().flat_map(|p| p.profiles.iter());
    for req in requirements {
        let checks = profile_validations(req);
        let name = format!("{base}-profile-{}", req.name);
        let pods = Some(req.workload_selector.clone());
        push_policy(&mut out, b, owner, &name, checks, namespace_scope(b), pods);
    }
    out
}

const ALL_CONTAINERS: &str = "object.spec.containers + (has(object.spec.initContainers) ? object.spec.initContainers : []) + (has(object.spec.ephemeralContainers) ? object.spec.ephemeralContainers : [])";
const WINDOWS: &str = "(has(object.spec.os) && object.spec.os.name == 'windows')";

fn cel_list(names: &[String]) -> String {
    // Names are checked to hold no quote (baseline::objects), so quoting is safe.
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    format!("[{}]", quoted.join(", "))
}

/// CEL: profile `p` (a seccompProfile/appArmorProfile value) meets the requirement.
fn cel_profile_ok(p: &str, want: &ProfileTypeRequirement) -> String {
    let localhost = if want.localhost_profiles.is_empty() {
        format!("{p}.type == 'Localhost'")
    } else {
        format!(
            "({p}.type == 'Localhost' && has({p}.localhostProfile) && {p}.localhostProfile in {})",
            cel_list(&want.localhost_profiles)
        )
    };
    match want.type_ {
        ProfileType::Localhost => localhost,
        ProfileType::RuntimeDefault => format!("({p}.type == 'RuntimeDefault' || {localhost})"),
    }
}

/// CEL: the legacy AppArmor annotation value `v` meets the requirement.
fn cel_annotation_ok(v: &str, want: &ProfileTypeRequirement) -> String {
    let localhost = if want.localhost_profiles.is_empty() {
        format!("{v}.startsWith('localhost/')")
    } else {
        format!(
            "({v}.startsWith('localhost/') && {v}.substring(10) in {})",
            cel_list(&want.localhost_profiles)
        )
    };
    match want.type_ {
        ProfileType::Localhost => localhost,
        ProfileType::RuntimeDefault => format!("({v} == 'runtime/default' || {localhost})"),
    }
}

/// The checks of one `spec.podSecurity.profiles` entry, over every container's effective
/// value, resolved as [`super::profiles`] resolves it.
fn profile_validations(req: &ProfileRequirement) -> Vec<Validation> {
    let mut v = Vec::new();
    let every = |ok: String| format!("{WINDOWS} || ({ALL_CONTAINERS}).all(c, {ok})");
    let deny = |expression: String, message: String| Validation {
        expression,
        message: Some(message),
        reason: Some("Forbidden".into()),
        message_expression: None,
    };
    let pod_sc = "has(object.spec.securityContext)";
    if let Some(want) = &req.seccomp {
        let own = "c.securityContext.seccompProfile";
        let pod = "object.spec.securityContext.seccompProfile";
        let ok = format!(
            "(has(c.securityContext) && has({own})) ? {} : ({pod_sc} && has({pod}) && {})",
            cel_profile_ok(own, want),
            cel_profile_ok(pod, want)
        );
        v.push(deny(every(ok), format!(
            "profile.seccomp: pods of profile requirement {:?} must run every container under seccomp {}",
            req.name, describe(want)
        )));
    }
    if let Some(want) = &req.app_armor {
        let own = "c.securityContext.appArmorProfile";
        let pod = "object.spec.securityContext.appArmorProfile";
        let key = "'container.apparmor.security.beta.kubernetes.io/' + c.name";
        let value = format!("object.metadata.annotations[{key}]");
        let annotated = format!(
            "has(object.metadata.annotations) && ({key}) in object.metadata.annotations && {value} != ''"
        );
        let ok = format!(
            "(has(c.securityContext) && has({own})) ? {} : (({annotated}) ? {} : ({pod_sc} && has({pod}) && {}))",
            cel_profile_ok(own, want),
            cel_annotation_ok(&value, want),
            cel_profile_ok(pod, want)
        );
        v.push(deny(every(ok), format!(
            "profile.apparmor: pods of profile requirement {:?} must run every container under AppArmor {}",
            req.name, describe(want)
        )));
    }
    if let Some(want) = &req.se_linux {
        let own = "c.securityContext.seLinuxOptions";
        let pod = "object.spec.securityContext.seLinuxOptions";
        let types = cel_list(&want.types);
        let ok = format!(
            "(has(c.securityContext) && has({own}) && has({own}.type) && {own}.type != '') ? {own}.type in {types} : ({pod_sc} && has({pod}) && has({pod}.type) && {pod}.type in {types})"
        );
        v.push(deny(every(ok), format!(
            "profile.selinux: pods of profile requirement {:?} must run every container with seLinuxOptions.type in {types}",
            req.name
        )));
    }
    v
}

fn describe(want: &ProfileTypeRequirement) -> String {
    let listed = if want.localhost_profiles.is_empty() {
        String::new()
    } else {
        format!(" {}", cel_list(&want.localhost_profiles))
    };
    match want.type_ {
        ProfileType::Localhost => format!("Localhost{listed}"),
        ProfileType::RuntimeDefault => format!("RuntimeDefault or Localhost{listed}"),
    }
}

fn push_policy(
    out: &mut ClusterObjects,
    b: &CompiledBaseline,
    owner: Option<&OwnerReference>,
    name: &str,
    validations: Vec<Validation>,
    namespaces: LabelSelector,
    objects: Option<LabelSelector>,
) {
    out.admission_policies.push(ValidatingAdmissionPolicy {
        metadata: meta(name, None, b, owner),
        spec: Some(ValidatingAdmissionPolicySpec {
            failure_policy: Some("Fail".into()),
            match_constraints: Some(pod_rules()),
            validations: Some(validations),
            ..Default::default()
        }),
        status: None,
    });
    out.admission_bindings
        .push(ValidatingAdmissionPolicyBinding {
            metadata: meta(name, None, b, owner),
            spec: Some(ValidatingAdmissionPolicyBindingSpec {
                policy_name: Some(name.to_string()),
                validation_actions: Some(vec!["Deny".into()]),
                match_resources: Some(MatchResources {
                    namespace_selector: Some(namespaces),
                    object_selector: objects,
                    ..Default::default()
                }),
                param_ref: None,
            }),
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::SecurityBaselineSpec;
    use k8s_openapi::jiff::Timestamp;

    fn sample() -> CompiledBaseline {
        let yaml = include_str!("../../config/baseline.yaml");
        let doc: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
        let spec: SecurityBaselineSpec = serde_json::from_value(doc["spec"].clone()).unwrap();
        CompiledBaseline::compile("shop", &spec, Timestamp::UNIX_EPOCH).unwrap()
    }

    fn all_meta(b: &CompiledBaseline) -> Vec<ObjectMeta> {
        let ns = namespace_objects("shop", &Default::default(), b, None);
        let cl = cluster_objects(b, None);
        let mut v: Vec<ObjectMeta> = Vec::new();
        v.extend(ns.network_policies.into_iter().map(|o| o.metadata));
        v.extend(ns.roles.into_iter().map(|o| o.metadata));
        v.extend(ns.role_bindings.into_iter().map(|o| o.metadata));
        v.extend(ns.peer_authentications.into_iter().map(|o| o.metadata));
        v.extend(cl.admission_policies.into_iter().map(|o| o.metadata));
        v.extend(cl.admission_bindings.into_iter().map(|o| o.metadata));
        v
    }

    #[test]
    fn every_generated_object_asks_gitops_tools_not_to_prune_or_flag_it() {
        let mut b = sample();
        b.settings.mesh_strict = true;
        let metas = all_meta(&b);
        // default deny, DNS, one allow rule and its other end, Role, RoleBinding,
        // PeerAuthentication, 2 policies + 2 bindings
        assert_eq!(metas.len(), 11);
        for m in &metas {
            let a = m.annotations.as_ref().unwrap();
            assert_eq!(a["argocd.argoproj.io/compare-options"], "IgnoreExtraneous");
            assert_eq!(a["argocd.argoproj.io/sync-options"], "Prune=false");
            assert_eq!(a["kustomize.toolkit.fluxcd.io/prune"], "disabled");
        }
    }

    #[test]
    fn no_generated_object_carries_a_gitops_tracking_key() {
        for m in all_meta(&sample()) {
            let keys = m
                .labels
                .iter()
                .flatten()
                .chain(m.annotations.iter().flatten());
            for (k, _) in keys {
                assert!(!is_gitops_tracking_key(k), "{:?} carries {k}", m.name);
            }
            assert_eq!(m.labels.unwrap(), generated_labels("shop"));
        }
    }

    #[test]
    fn tracking_keys_of_argo_cd_and_flux_are_recognised() {
        for k in [
            "app.kubernetes.io/instance",
            "argocd.argoproj.io/tracking-id",
            "kustomize.toolkit.fluxcd.io/name",
            "kustomize.toolkit.fluxcd.io/namespace",
            "helm.toolkit.fluxcd.io/name",
        ] {
            assert!(is_gitops_tracking_key(k), "{k}");
        }
        for k in [
            "app.kubernetes.io/managed-by",
            "kustomize.toolkit.fluxcd.io/prune",
            "argocd.argoproj.io/sync-options",
        ] {
            assert!(!is_gitops_tracking_key(k), "{k}");
        }
    }

    #[test]
    fn api_server_egress_for_declared_accounts_and_the_explicit_selector_only() {
        let mut b = sample();
        b.spec.network.as_mut().unwrap().allow_api_server = Some(crate::crd::ApiServerAccess {
            declared_service_accounts: None,
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("role".into(), "ctl".into())])),
                ..Default::default()
            }),
        });
        let wl = |labels: &[(&str, &str)], sa: &str| WorkloadPods {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            service_account: sa.into(),
        };
        let workloads = [
            wl(&[("app", "api")], "api"),
            wl(&[("app", "api")], "api"), // two replicas' worth: one policy
            wl(&[("app", "web")], "default"),
            wl(&[], "api"), // no labels: cannot be selected alone
        ];
        let api_server = [
            ("10.0.0.1".parse().unwrap(), 6443),
            ("fd00::1".parse().unwrap(), 6443),
        ];
        let ctx = NamespaceContext {
            labels: None,
            api_server: &api_server,
            workloads: &workloads,
            webhooks: &[],
            learned: None,
        };
        let api: Vec<NetworkPolicy> = namespace_objects("shop", &ctx, &b, None)
            .network_policies
            .into_iter()
            .filter(|p| {
                p.metadata
                    .name
                    .as_deref()
                    .unwrap()
                    .starts_with("palisade-allow-apiserver")
            })
            .collect();
        assert_eq!(api.len(), 2, "{api:#?}");
        assert!(api[0]
            .metadata
            .name
            .as_deref()
            .unwrap()
            .starts_with("palisade-allow-apiserver-api-"));
        let spec = api[0].spec.as_ref().unwrap();
        assert_eq!(
            spec.pod_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()["app"],
            "api"
        );
        let rule = &spec.egress.as_ref().unwrap()[0];
        let cidrs: Vec<&str> = rule
            .to
            .iter()
            .flatten()
            .map(|p| p.ip_block.as_ref().unwrap().cidr.as_str())
            .collect();
        assert_eq!(cidrs, ["10.0.0.1/32", "fd00::1/128"]);
        assert_eq!(
            rule.ports.as_ref().unwrap()[0].port,
            Some(IntOrString::Int(6443))
        );
        assert_eq!(
            api[1].metadata.name.as_deref(),
            Some("palisade-allow-apiserver")
        );
        // Without known endpoints, or without default deny egress, nothing is generated.
        let none = NamespaceContext {
            api_server: &[],
            ..ctx.clone()
        };
        assert!(!namespace_objects("shop", &none, &b, None)
            .network_policies
            .iter()
            .any(|p| p.metadata.name.as_deref().unwrap().contains("apiserver")));
        b.settings.default_deny = vec![crate::crd::Direction::Ingress];
        assert!(!namespace_objects("shop", &ctx, &b, None)
            .network_policies
            .iter()
            .any(|p| p.metadata.name.as_deref().unwrap().contains("apiserver")));
    }

    #[test]
    fn webhook_backends_keep_ingress_from_the_control_plane_on_their_target_port() {
        let mut b = sample();
        let hook = |service: &str, selector: &[(&str, &str)], port: IntOrString| WebhookBackend {
            service: service.into(),
            selector: selector
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ports: vec![port],
            configurations: vec!["ValidatingWebhookConfiguration/guard".into()],
        };
        let webhooks = [
            hook(
                "guard",
                &[("app", "guard")],
                IntOrString::String("https".into()),
            ),
            hook("manual", &[], IntOrString::Int(8443)), // no selector: no pods to select
        ];
        let api_server = [("10.0.0.1".parse().unwrap(), 6443)];
        let ctx = NamespaceContext {
            api_server: &api_server,
            webhooks: &webhooks,
            learned: None,
            ..Default::default()
        };
        let objs = namespace_objects("hooks", &ctx, &b, None);
        let hooks: Vec<&NetworkPolicy> = objs
            .network_policies
            .iter()
            .filter(|p| {
                p.metadata
                    .name
                    .as_deref()
                    .unwrap()
                    .starts_with("palisade-allow-webhook")
            })
            .collect();
        assert_eq!(hooks.len(), 1);
        assert_eq!(
            hooks[0].metadata.name.as_deref(),
            Some("palisade-allow-webhook-guard")
        );
        let rule = &hooks[0].spec.as_ref().unwrap().ingress.as_ref().unwrap()[0];
        assert_eq!(
            rule.from.as_ref().unwrap()[0]
                .ip_block
                .as_ref()
                .unwrap()
                .cidr,
            "10.0.0.1/32"
        );
        assert_eq!(
            rule.ports.as_ref().unwrap()[0].port,
            Some(IntOrString::String("https".into()))
        );
        assert_eq!(objs.allowances.len(), 1);
        assert!(
            objs.allowances[0].contains("ValidatingWebhookConfiguration/guard"),
            "{:?}",
            objs.allowances
        );
        // Configured sources replace the API server's addresses.
        let peer: NetworkPolicyPeer =
            serde_json::from_value(serde_json::json!({"ipBlock": {"cidr": "172.16.0.0/28"}}))
                .unwrap();
        b.spec.network.as_mut().unwrap().webhook_sources = vec![peer.clone()];
        let objs = namespace_objects("hooks", &ctx, &b, None);
        let p = objs
            .network_policies
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some("palisade-allow-webhook-guard"))
            .unwrap();
        assert_eq!(
            p.spec.as_ref().unwrap().ingress.as_ref().unwrap()[0].from,
            Some(vec![peer])
        );
        // Without default deny ingress there is nothing to keep open.
        b.settings.default_deny = vec![crate::crd::Direction::Egress];
        assert!(!namespace_objects("hooks", &ctx, &b, None)
            .network_policies
            .iter()
            .any(|p| p.metadata.name.as_deref().unwrap().contains("webhook")));
    }
}
