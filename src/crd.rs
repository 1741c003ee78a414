//! The `SecurityBaseline` custom resource (`palisade.dev/v1alpha1`, cluster-scoped).
//!
//! Defaults live in code, not in the OpenAPI schema: schema defaulting would rewrite what users
//! committed to git and make GitOps tools show a diff forever (see [`crd`]).

use crate::policy::pss::Level;
use crate::policy::rules::Rule;
use k8s_openapi::api::networking::v1::{NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::api::rbac::v1::PolicyRule;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Desired security posture for a set of namespaces.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "palisade.dev",
    version = "v1alpha1",
    kind = "SecurityBaseline",
    plural = "securitybaselines",
    shortname = "sb",
    category = "palisade",
    doc = "A SecurityBaseline declares which namespaces it covers and the pod, network and RBAC posture they must have.",
    status = "SecurityBaselineStatus",
    printcolumn = r#"{"name":"Enforcement","type":"string","jsonPath":".spec.enforcement"}"#,
    printcolumn = r#"{"name":"Namespaces","type":"integer","jsonPath":".status.namespaces"}"#,
    printcolumn = r#"{"name":"Violations","type":"integer","jsonPath":".status.violations.total"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SecurityBaselineSpec {
    /// Namespaces this baseline covers, by label. Absent or empty selects every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Namespaces never covered, even when the selector matches them (e.g. kube-system).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), extend("x-kubernetes-list-type" = "set"))]
    pub exclude_namespaces: Vec<String>,

    /// Audit (default) only reports. Enforce also generates NetworkPolicies, Roles and admission guards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<Enforcement>,

    /// Pod hardening requirements: Pod Security Standards plus checks PSS lacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security: Option<PodSecuritySpec>,

    /// Network isolation: default deny plus declared exceptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkSpec>,

    /// RBAC: risk audit and least-privilege Roles per service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rbac: Option<RbacSpec>,

    /// Service-mesh mTLS (Istio): what Enforce generates where the mesh runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<MeshSpec>,

    /// Justified, optionally expiring exceptions to rules, applied the same way everywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub exemptions: Vec<Exemption>,
}

/// Whether the baseline only reports or also generates guard rails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Enforcement {
    /// Report violations only; create nothing.
    #[default]
    Audit,
    /// Report violations and generate NetworkPolicies, Roles and admission guards.
    Enforce,
}

/// Pod hardening requirements.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodSecuritySpec {
    /// Pod Security Standards level pods must meet: privileged, baseline or restricted (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,

    /// PSS version whose semantics apply: `latest` (default) or `v1.N`, e.g. `v1.30`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(latest|v1\.(0|[1-9][0-9]?))$"))]
    pub version: Option<String>,

    /// Require every container to use a read-only root filesystem (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,

    /// Whether pods may automount a service-account token. false (default) reports pods that
    /// mount one without opting in on the pod or its ServiceAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automount_service_account_token: Option<bool>,

    /// Report workloads that run as the namespace's `default` ServiceAccount (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forbid_default_service_account: Option<bool>,

    /// Untrusted workloads must run in a sandboxed runtime (gVisor, Kata, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxSpec>,

    /// Admission guards generated in Enforce mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admission: Option<AdmissionSpec>,

    /// Security profiles that selected workloads must run under, beyond what PSS asks: a
    /// seccomp or AppArmor profile of a given type (e.g. their own `Localhost` profile) and an
    /// SELinux type. In Enforce mode each entry generates its own admission policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub profiles: Vec<ProfileRequirement>,
}

/// The security profiles one set of workloads must run under.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileRequirement {
    /// Names the requirement in findings and in the generated admission policy
    /// (`palisade-<baseline>-profile-<name>`): a DNS label.
    #[schemars(
        length(min = 1, max = 40),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Pods (by pod template labels) this requirement applies to.
    pub workload_selector: LabelSelector,
    /// The seccomp profile every container must end up with (its own or the pod's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<ProfileTypeRequirement>,
    /// The AppArmor profile every container must end up with (field or legacy annotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_armor: Option<ProfileTypeRequirement>,
    /// The SELinux type every container must end up with.
    #[serde(default, rename = "seLinux", skip_serializing_if = "Option::is_none")]
    pub se_linux: Option<SeLinuxRequirement>,
}

/// A required seccomp or AppArmor profile.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileTypeRequirement {
    /// `Localhost`: a profile of the workload's own. `RuntimeDefault`: the runtime's default, or
    /// a `Localhost` profile (at least as specific). Set explicitly either way: unset leaves the
    /// choice to the node.
    #[serde(rename = "type")]
    pub type_: ProfileType,
    /// The Localhost profiles that are accepted (seccomp: paths relative to the kubelet's seccomp
    /// directory, e.g. `operator/payments.json`; AppArmor: profile names). Empty accepts any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), extend("x-kubernetes-list-type" = "set"), inner(length(min = 1, max = 255), regex(pattern = r"^[A-Za-z0-9._/-]+$")))]
    pub localhost_profiles: Vec<String>,
}

/// Which kind of seccomp or AppArmor profile is required.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ProfileType {
    /// The container runtime's default profile (or a Localhost one).
    #[default]
    RuntimeDefault,
    /// A profile loaded on the node for this workload.
    Localhost,
}

impl ProfileType {
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileType::RuntimeDefault => "RuntimeDefault",
            ProfileType::Localhost => "Localhost",
        }
    }
}

/// A required SELinux type.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeLinuxRequirement {
    /// The accepted `seLinuxOptions.type` values (e.g. `container_t`, or a workload's own type).
    #[schemars(length(min = 1, max = 16), extend("x-kubernetes-list-type" = "set"), inner(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9_.]+$")))]
    pub types: Vec<String>,
}

/// Sandboxed runtime requirement for selected workloads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SandboxSpec {
    /// Pods (by pod template labels) that are untrusted and must be sandboxed.
    pub workload_selector: LabelSelector,
    /// runtimeClassName values that count as sandboxed.
    #[schemars(length(min = 1, max = 16), extend("x-kubernetes-list-type" = "set"))]
    pub runtime_class_names: Vec<String>,
}

/// Which admission guards Enforce mode generates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionSpec {
    /// Label covered namespaces `pod-security.kubernetes.io/enforce=<level>` (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_labels: Option<bool>,
    /// Generate a ValidatingAdmissionPolicy for the checks PSS lacks (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validating_admission_policy: Option<bool>,
}

/// Traffic direction of a default-deny policy.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum Direction {
    /// Deny incoming traffic to every pod unless allowed.
    Ingress,
    /// Deny outgoing traffic from every pod unless allowed.
    Egress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "Ingress",
            Direction::Egress => "Egress",
        }
    }
}

/// Service-mesh settings (Istio).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeshSpec {
    /// `Strict`: Enforce generates a namespace-wide PeerAuthentication `palisade-mtls` with mode
    /// STRICT in every covered namespace, so meshed workloads refuse plain text. Needs Istio's
    /// CRDs; without them nothing is generated and the Degraded condition says why. Absent: no
    /// PeerAuthentication is generated (the audit still reports the effective mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MeshMtls>,
}

/// The mTLS mode Palisade generates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MeshMtls {
    /// Mutual TLS only: plain-text connections to meshed workloads are refused.
    Strict,
}

/// Network isolation for covered namespaces.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// Directions denied by default (default both Ingress and Egress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2), extend("x-kubernetes-list-type" = "set"))]
    pub default_deny: Option<Vec<Direction>>,
    /// Allow egress to the cluster DNS (kube-dns in kube-system) so default deny does not break name resolution (default true).
    #[serde(default, rename = "allowDNS", skip_serializing_if = "Option::is_none")]
    pub allow_dns: Option<bool>,
    /// Allow all traffic between pods of the same namespace (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_same_namespace: Option<bool>,
    /// Which pods keep egress to the API server under default deny (to the addresses of the
    /// `default/kubernetes` EndpointSlice, kept in sync). Default: pods of the ServiceAccounts
    /// declared in `spec.rbac.serviceAccounts`, nobody else.
    #[serde(
        default,
        rename = "allowAPIServer",
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_api_server: Option<ApiServerAccess>,
    /// Where admission webhook calls come from (the API server's source address depends on the
    /// cluster: its endpoint addresses on most, a control-plane range on managed ones). Pods
    /// behind the Service of a Validating/MutatingWebhookConfiguration in a covered namespace keep
    /// ingress from these peers on the webhook port, so default deny never breaks admission.
    /// Default: the addresses of the `default/kubernetes` EndpointSlice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub webhook_sources: Vec<NetworkPolicyPeer>,
    /// Named exceptions to default deny, each generating one NetworkPolicy `palisade-allow-<name>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub allow: Vec<AllowRule>,
}

/// Egress to the API server for the workloads that need it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiServerAccess {
    /// Pods running as a ServiceAccount declared in `spec.rbac.serviceAccounts` (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_service_accounts: Option<bool>,
    /// Further pods, by label (e.g. a controller whose account is managed elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
}

/// One declared exception to default deny.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.from) ? size(self.from) : 0) + (has(self.to) ? size(self.to) : 0) > 0",
    "message": "an allow rule needs at least one peer in from or to",
    "fieldPath": ".from"
}]))]
pub struct AllowRule {
    /// Name of the rule; the policy is named `palisade-allow-<name>`. A DNS label of at most 48 characters.
    #[schemars(
        length(min = 1, max = 48),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Pods the rule applies to. Empty selects every pod in the namespace.
    #[serde(default)]
    pub pod_selector: LabelSelector,
    /// Peers allowed to connect to the selected pods (ingress).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub from: Vec<NetworkPolicyPeer>,
    /// Peers the selected pods may connect to (egress).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub to: Vec<NetworkPolicyPeer>,
    /// Ports the rule opens; empty means all ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub ports: Vec<NetworkPolicyPort>,
}

/// RBAC audit and generation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RbacSpec {
    /// Report risky RBAC (wildcards, secrets, escalate/bind/impersonate, ...) (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<bool>,
    /// Service accounts that get a generated least-privilege Role + RoleBinding in each covered namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub service_accounts: Vec<ServiceAccountRules>,
    /// Learning least privilege from what service accounts do (the operator's audit webhook).
    /// When set, `rbac.unused-permission` reports what bindings grant covered ServiceAccounts
    /// beyond what they used in the window, and `learn: true` accounts get learned rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learn: Option<LearnSpec>,
}

/// The learning window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LearnSpec {
    /// How long requests are collected before permissions count as unused and learned Roles
    /// are enforced, and how far back a request still counts (a duration such as `168h`,
    /// `90m`, `45s`; 10s to 2160h). Default 168h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(h|m|s))+$"))]
    pub window: Option<String>,
}

/// Least-privilege permissions for one service account.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.rules) && size(self.rules) > 0) || (has(self.learn) && self.learn)",
    "message": "a service account needs rules, or learn: true",
    "fieldPath": ".rules"
}]))]
pub struct ServiceAccountRules {
    /// ServiceAccount name (DNS subdomain); the Role and RoleBinding are named `palisade-<name>`.
    #[schemars(
        length(min = 1, max = 200),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
    /// The only permissions the account gets in each covered namespace (may be empty with `learn`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub rules: Vec<LeastPrivilegeRule>,
    /// Add the rules learned from what the account did in each namespace during the learning
    /// window (`spec.rbac.learn`): proposed in status (and by `palisade generate`) in Audit
    /// mode, generated after the window in Enforce mode. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learn: Option<bool>,
}

/// One permission of a generated Role. Wildcards (`*`) are rejected: generated roles are least-privilege.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeastPrivilegeRule {
    /// API groups, e.g. `""` (core) or `apps`. No `*`.
    #[serde(default)]
    #[schemars(
        length(min = 1, max = 16),
        inner(length(max = 253), regex(pattern = r"^[^*]*$"))
    )]
    pub api_groups: Vec<String>,
    /// Resources, e.g. `configmaps` or `deployments/scale`. No `*`.
    #[schemars(
        length(min = 1, max = 32),
        inner(length(max = 253), regex(pattern = r"^[^*]*$"))
    )]
    pub resources: Vec<String>,
    /// Optional names the rule is limited to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    pub resource_names: Vec<String>,
    /// Verbs, e.g. `get`, `list`, `watch`. No `*`.
    #[schemars(
        length(min = 1, max = 16),
        inner(length(max = 32), regex(pattern = r"^[^*]*$"))
    )]
    pub verbs: Vec<String>,
}

impl LeastPrivilegeRule {
    pub fn to_policy_rule(&self) -> PolicyRule {
        PolicyRule {
            api_groups: Some(self.api_groups.clone()),
            resources: Some(self.resources.clone()),
            resource_names: (!self.resource_names.is_empty()).then(|| self.resource_names.clone()),
            verbs: self.verbs.clone(),
            non_resource_urls: None,
        }
    }
}

/// A justified exception to one or more rules.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.reason.trim().size() >= 10",
    "message": "reason must explain the exemption (at least 10 characters, e.g. a ticket reference)",
    "fieldPath": ".reason"
}]))]
pub struct Exemption {
    /// Rule ids exempted, e.g. `pss.run-as-non-root`.
    #[schemars(length(min = 1, max = 64), extend("x-kubernetes-list-type" = "set"))]
    pub rules: Vec<Rule>,
    /// Namespaces where the exemption applies; empty means every covered namespace (and cluster-scoped objects).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), extend("x-kubernetes-list-type" = "set"))]
    pub namespaces: Vec<String>,
    /// Names of the exempted objects (workloads, roles, bindings, ...); empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), extend("x-kubernetes-list-type" = "set"))]
    pub names: Vec<String>,
    /// Workloads exempted, by pod template labels; absent means any object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<LabelSelector>,
    /// Why the exemption exists (mandatory; e.g. a ticket reference).
    #[schemars(length(min = 1, max = 1024))]
    pub reason: String,
    /// When the exemption stops applying (RFC 3339). An expired exemption is itself reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Time>,
}

/// Observed state, written by the operator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecurityBaselineStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Compliant and Degraded conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Number of namespaces the baseline covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<u32>,
    /// Counts of objects Palisade generated for this baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<GeneratedCounts>,
    /// Violation totals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violations: Option<ViolationTotals>,
    /// The most severe violations, at most 50.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub top_violations: Vec<ViolationSummary>,
    /// Audit mode only: what switching to Enforce would do now, computed by the same code that
    /// Enforce runs (`Kind namespace/name` per line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<EnforcePreview>,
    /// What keeps default deny safe, one line each (at most 50): API-server egress of workloads
    /// that need it, admission-webhook ingress from the control plane.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowances: Vec<String>,
    /// Rules learned for `learn: true` service accounts, per namespace (at most 50).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub learned: Vec<LearnedRole>,
    /// Namespaces also covered by another baseline, and how the overlap was resolved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub conflicts: Vec<String>,
}

/// Rules learned for a `learn: true` ServiceAccount in one namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LearnedRole {
    /// The covered namespace the rules are for.
    pub namespace: String,
    /// The `learn: true` ServiceAccount (in that namespace).
    pub service_account: String,
    /// NoData (no audit event received yet), Learning (the window has not passed), Incomplete
    /// (the account's requests exceeded the memory bound: never enforced), Ready (enforced in
    /// Enforce mode).
    pub state: String,
    /// Why, and until when it learns.
    pub message: String,
    /// The minimal rules covering what the account did in this namespace during the window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<PolicyRule>,
}

/// What Enforce would do (each list sorted, at most 100 entries; `omitted` counts the rest).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnforcePreview {
    /// Generated objects Enforce would create.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub create: Vec<String>,
    /// Existing generated objects Enforce would change back to the baseline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub update: Vec<String>,
    /// Objects this baseline generated that Enforce would delete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete: Vec<String>,
    /// Namespaces whose Pod Security Admission labels Enforce would set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_namespaces: Vec<String>,
    /// Entries left out of the lists.
    #[serde(default)]
    pub omitted: u32,
}

/// Counts of generated objects by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GeneratedCounts {
    /// NetworkPolicies.
    pub network_policies: u32,
    /// Roles.
    pub roles: u32,
    /// RoleBindings.
    pub role_bindings: u32,
    /// ValidatingAdmissionPolicies and their bindings.
    pub admission_policies: u32,
    /// Istio PeerAuthentications (`spec.mesh.mtls`).
    #[serde(default)]
    pub peer_authentications: u32,
    /// Namespaces carrying Pod Security Admission labels.
    pub labelled_namespaces: u32,
}

impl GeneratedCounts {
    /// Each count with the kind it counts (namespaces for the labelled ones), for metrics.
    /// Destructured without `..`: a count added above does not compile until it is named here.
    pub fn by_kind(&self) -> [(&'static str, u32); 6] {
        let GeneratedCounts {
            network_policies,
            roles,
            role_bindings,
            admission_policies,
            peer_authentications,
            labelled_namespaces,
        } = self;
        [
            ("NetworkPolicy", *network_policies),
            ("Role", *roles),
            ("RoleBinding", *role_bindings),
            ("ValidatingAdmissionPolicy", *admission_policies),
            ("PeerAuthentication", *peer_authentications),
            ("Namespace", *labelled_namespaces),
        ]
    }
}

/// Violation totals.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ViolationTotals {
    /// All violations, exempted ones excluded.
    pub total: u32,
    /// Violations by severity (critical, high, medium, low, info).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_severity: BTreeMap<String, u32>,
    /// Findings suppressed by a valid exemption.
    #[serde(default)]
    pub exempted: u32,
    /// Findings accepted by an `accepted-risk.palisade.dev/<rule>` annotation on a ClusterRole
    /// or ClusterRoleBinding (not counted in total).
    #[serde(default)]
    pub accepted: u32,
}

/// One violation, for the bounded list in status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ViolationSummary {
    /// Rule id.
    pub rule: String,
    /// Severity.
    pub severity: String,
    /// Kind of the violating object.
    pub kind: String,
    /// Namespace of the violating object (empty for cluster-scoped objects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the violating object.
    pub name: String,
    /// Field that breaks the rule.
    pub field: String,
    /// What to change.
    pub message: String,
}
