//! The rule catalogue: stable ids, default severities and the standard each rule comes from.
//!
//! Ids are part of Palisade's public contract (exemptions, metrics, SARIF) and never change meaning.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How bad a finding is. Ordered: `Info < Low < Medium < High < Critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What area a rule belongs to; used for grouping in reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    PodSecurityBaseline,
    PodSecurityRestricted,
    Hardening,
    Rbac,
    Network,
    Baseline,
}

macro_rules! rules {
    ($( $variant:ident => $id:literal, $sev:ident, $cat:ident, $reference:literal, $title:literal; )*) => {
        /// Every check Palisade knows. The serialized form is the stable rule id.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum Rule {
            $( #[serde(rename = $id)] $variant, )*
        }

        impl Rule {
            pub const ALL: &'static [Rule] = &[ $( Rule::$variant, )* ];

            pub fn id(self) -> &'static str {
                match self { $( Rule::$variant => $id, )* }
            }

            pub fn severity(self) -> Severity {
                match self { $( Rule::$variant => Severity::$sev, )* }
            }

            pub fn category(self) -> Category {
                match self { $( Rule::$variant => Category::$cat, )* }
            }

            /// The standard and control this rule implements (PSS, CIS Kubernetes Benchmark, ...).
            pub fn reference(self) -> &'static str {
                match self { $( Rule::$variant => $reference, )* }
            }

            /// One line saying what the rule wants.
            pub fn title(self) -> &'static str {
                match self { $( Rule::$variant => $title, )* }
            }
        }
    };
}

rules! {
    HostProcess => "pss.host-process", Critical, PodSecurityBaseline, "PSS baseline: HostProcess", "Windows HostProcess containers must not be used";
    HostNamespaces => "pss.host-namespaces", High, PodSecurityBaseline, "PSS baseline: Host Namespaces", "hostNetwork, hostPID and hostIPC must not be enabled";
    Privileged => "pss.privileged", Critical, PodSecurityBaseline, "PSS baseline: Privileged Containers", "containers must not run privileged";
    CapabilitiesBaseline => "pss.capabilities-baseline", High, PodSecurityBaseline, "PSS baseline: Capabilities", "containers may add only the default capabilities";
    HostPathVolumes => "pss.host-path-volumes", High, PodSecurityBaseline, "PSS baseline: HostPath Volumes", "hostPath volumes must not be used";
    HostPorts => "pss.host-ports", Medium, PodSecurityBaseline, "PSS baseline: Host Ports", "containers must not bind host ports";
    HostProbes => "pss.host-probes", Medium, PodSecurityBaseline, "PSS baseline: Host Probes / Lifecycle Hooks", "probes and lifecycle hooks must not target another host";
    AppArmor => "pss.apparmor", Medium, PodSecurityBaseline, "PSS baseline: AppArmor", "AppArmor must not be disabled or set to a custom unconfined profile";
    SeLinux => "pss.selinux", Medium, PodSecurityBaseline, "PSS baseline: SELinux", "SELinux type must be a container type and user/role unset";
    ProcMount => "pss.proc-mount", Medium, PodSecurityBaseline, "PSS baseline/restricted: /proc Mount Type", "procMount must be Default";
    SeccompBaseline => "pss.seccomp-baseline", Medium, PodSecurityBaseline, "PSS baseline: Seccomp", "seccomp must not be Unconfined";
    Sysctls => "pss.sysctls", Medium, PodSecurityBaseline, "PSS baseline: Sysctls", "only the safe sysctls may be set";
    VolumeTypes => "pss.volume-types", Medium, PodSecurityRestricted, "PSS restricted: Volume Types", "only ephemeral and API-backed volume types may be used";
    PrivilegeEscalation => "pss.privilege-escalation", High, PodSecurityRestricted, "PSS restricted: Privilege Escalation", "allowPrivilegeEscalation must be false";
    RunAsNonRoot => "pss.run-as-non-root", High, PodSecurityRestricted, "PSS restricted: Running as Non-root", "runAsNonRoot must be true";
    RunAsUser => "pss.run-as-user", High, PodSecurityRestricted, "PSS restricted: Running as Non-root user", "runAsUser must not be 0";
    SeccompRestricted => "pss.seccomp-restricted", Medium, PodSecurityRestricted, "PSS restricted: Seccomp", "seccomp profile must be RuntimeDefault or Localhost";
    CapabilitiesRestricted => "pss.capabilities-restricted", Medium, PodSecurityRestricted, "PSS restricted: Capabilities", "containers must drop ALL and add only NET_BIND_SERVICE";
    ReadOnlyRootFs => "hardening.read-only-root-fs", Medium, Hardening, "NSA/CISA Kubernetes Hardening Guide: immutable container file systems", "containers must use a read-only root filesystem";
    AutomountToken => "hardening.automount-token", Medium, Hardening, "CIS 5.1.6", "service-account tokens must not be mounted unless needed";
    SandboxRuntime => "hardening.sandbox-runtime", High, Hardening, "CIS 5.7 (general): sandboxed runtimes for untrusted workloads", "untrusted workloads must run in a sandboxed runtimeClass";
    DefaultServiceAccount => "hardening.default-service-account", Low, Hardening, "CIS 5.1.5", "workloads must not run as the default service account";
    ProfileSeccomp => "profile.seccomp", Medium, Hardening, "NSA/CISA Kubernetes Hardening Guide: seccomp; spec.podSecurity.profiles", "selected workloads must run under the required seccomp profile";
    ProfileAppArmor => "profile.apparmor", Medium, Hardening, "NSA/CISA Kubernetes Hardening Guide: AppArmor; spec.podSecurity.profiles", "selected workloads must run under the required AppArmor profile";
    ProfileSeLinux => "profile.selinux", Medium, Hardening, "NSA/CISA Kubernetes Hardening Guide: SELinux; spec.podSecurity.profiles", "selected workloads must run with a required SELinux type";
    SeccompProfileNotFound => "profile.seccomp-not-found", Medium, Hardening, "Security Profiles Operator: SeccompProfile", "a Localhost seccomp profile managed by the Security Profiles Operator must exist as a SeccompProfile";
    AppArmorProfileNotFound => "profile.apparmor-not-found", Medium, Hardening, "Security Profiles Operator: AppArmorProfile", "a Localhost AppArmor profile must exist as an AppArmorProfile where the Security Profiles Operator manages them";
    ClusterAdminBinding => "rbac.cluster-admin-binding", Critical, Rbac, "CIS 5.1.1", "cluster-admin must be bound only where required";
    SecretsAccess => "rbac.secrets-access", High, Rbac, "CIS 5.1.2", "access to secrets must be minimised";
    Wildcard => "rbac.wildcard", High, Rbac, "CIS 5.1.3", "roles must not use wildcards";
    CreatePods => "rbac.create-pods", Medium, Rbac, "CIS 5.1.4", "access to create pods must be minimised";
    DefaultServiceAccountBinding => "rbac.default-service-account-binding", Medium, Rbac, "CIS 5.1.5", "default service accounts must not be granted roles";
    SystemMastersBinding => "rbac.system-masters-binding", Critical, Rbac, "CIS 5.1.7", "the system:masters group must not be used in bindings";
    EscalateBindImpersonate => "rbac.escalate-bind-impersonate", Critical, Rbac, "CIS 5.1.8", "escalate, bind and impersonate must be limited";
    CreatePersistentVolumes => "rbac.create-persistentvolumes", High, Rbac, "CIS 5.1.9", "access to create persistent volumes must be minimised";
    NodesProxy => "rbac.nodes-proxy", High, Rbac, "CIS 5.1.10", "access to the proxy sub-resource of nodes must be minimised";
    CsrApprove => "rbac.csr-approve", High, Rbac, "CIS 5.1.11", "access to approve certificate signing requests must be minimised";
    WebhookConfig => "rbac.webhook-config", High, Rbac, "CIS 5.1.12", "access to admission webhook configurations must be minimised";
    ServiceAccountToken => "rbac.serviceaccount-token", High, Rbac, "CIS 5.1.13", "access to create service-account tokens must be minimised";
    PodExecAttach => "rbac.pod-exec-attach", High, Rbac, "Kubernetes RBAC good practices: pods/exec, pods/attach", "access to exec or attach into pods must be minimised";
    UnusedPermission => "rbac.unused-permission", Medium, Rbac, "CIS 5.1 (least privilege); Kubernetes RBAC good practices", "bindings must grant service accounts only what they use";
    AnonymousBinding => "rbac.anonymous-binding", Critical, Rbac, "Kubernetes RBAC good practices: system:anonymous / system:unauthenticated", "anonymous and unauthenticated users must not be granted roles";
    NoDefaultDeny => "network.no-default-deny", Medium, Network, "CIS 5.3.2", "every namespace needs a default-deny NetworkPolicy";
    AllowAllOverride => "network.allow-all-override", High, Network, "CIS 5.3.2", "a NetworkPolicy must not re-open all traffic";
    OpenToAllPods => "network.open-to-all-pods", Medium, Network, "CIS 5.3.2", "a workload under default deny must not admit every pod of the cluster";
    ApiReachableWithoutNeed => "network.api-reachable-without-need", Medium, Network, "CIS 5.1.6, 5.3.2", "only workloads whose account is declared, and that mount its token, may reach the API server";
    ServiceExternalIps => "network.service-external-ips", High, Network, "CVE-2020-8554", "Services must not set externalIPs";
    ServiceLoadBalancer => "network.service-load-balancer", High, Network, "NSA/CISA Kubernetes Hardening Guide: network separation", "LoadBalancer Services must be restricted to the sources that need them (severity by exposure)";
    ServiceNodePort => "network.service-node-port", Medium, Network, "NSA/CISA Kubernetes Hardening Guide: network separation", "NodePort Services must not expose pods on every node";
    MeshMtlsPermissive => "mesh.mtls-permissive", Medium, Network, "Istio security best practices: mutual TLS STRICT (man in the middle)", "workloads in the mesh must accept only mutual TLS (STRICT)";
    MeshMtlsDisabled => "mesh.mtls-disabled", High, Network, "Istio security best practices: mutual TLS STRICT (man in the middle)", "workloads in the mesh must not disable mutual TLS";
    MeshNoSidecar => "mesh.no-sidecar", Medium, Network, "Istio security best practices: every workload in the mesh", "workloads of covered namespaces must be in the mesh (sidecar or ambient) where a mesh runs";
    MeshClientTls => "mesh.destination-rule-tls", High, Network, "Istio security best practices: ISTIO_MUTUAL towards in-mesh hosts", "DestinationRules must not send plain text or one-way TLS to in-mesh hosts (severity by mode)";
    AllowSelectsNothing => "network.allow-selects-nothing", Low, Network, "Palisade: spec.network.allow", "a declared allow rule must select the pods and peers it names";
    ExemptionExpired => "exemption.expired", Low, Baseline, "Palisade: exemptions", "expired exemptions must be renewed or removed";
    AcceptedRiskInvalid => "accepted-risk.invalid", Low, Baseline, "Palisade: accepted-risk annotations", "accepted-risk annotations need a known rule, a reason of 10+ characters and a ClusterRole or ClusterRoleBinding";
}

impl Rule {
    pub fn parse(id: &str) -> Option<Rule> {
        Rule::ALL.iter().copied().find(|r| r.id() == id)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl schemars::JsonSchema for Rule {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Rule".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let ids: Vec<&str> = Rule::ALL.iter().map(|r| r.id()).collect();
        schemars::json_schema!({
            "description": "A Palisade rule id.",
            "type": "string",
            "enum": ids,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_round_trip() {
        let mut seen = std::collections::BTreeSet::new();
        for r in Rule::ALL {
            assert!(seen.insert(r.id()), "duplicate id {}", r.id());
            assert_eq!(Rule::parse(r.id()), Some(*r));
            let json = serde_json::to_string(r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.id()));
        }
    }

    #[test]
    fn severity_orders_from_info_to_critical() {
        assert!(Severity::Info < Severity::Critical);
        assert_eq!(Severity::parse("high"), Some(Severity::High));
        assert_eq!(Severity::parse("urgent"), None);
    }
}
