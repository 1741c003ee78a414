//! A baseline spec with every default applied: what the engine actually enforces.

use super::pss::{Level, Version};
use crate::crd::{Direction, Enforcement, MeshMtls, SandboxSpec, SecurityBaselineSpec};

/// Effective settings of one baseline. Built once per evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub enforcement: Enforcement,
    pub level: Level,
    pub version: Version,
    pub read_only_root_filesystem: bool,
    /// true: pods may automount tokens; false: report pods that do.
    pub allow_token_automount: bool,
    pub forbid_default_service_account: bool,
    pub sandbox: Option<SandboxSpec>,
    pub psa_namespace_labels: bool,
    pub validating_admission_policy: bool,
    pub default_deny: Vec<Direction>,
    pub allow_dns: bool,
    pub allow_same_namespace: bool,
    /// Pods of declared ServiceAccounts keep egress to the API server.
    pub api_server_for_declared: bool,
    pub rbac_audit: bool,
    /// Enforce generates a namespace-wide STRICT PeerAuthentication per covered namespace.
    pub mesh_strict: bool,
}

/// A spec field holds a value the engine cannot use (the API server's schema normally prevents this;
/// offline baselines from files are not schema-checked).
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("spec.podSecurity.version: {0:?} is not a PSS version (want `latest` or `v1.N`)")]
pub struct InvalidVersion(pub String);

impl Settings {
    pub fn from_spec(spec: &SecurityBaselineSpec) -> Result<Settings, InvalidVersion> {
        let pod = spec.pod_security.clone().unwrap_or_default();
        let version = match pod.version.as_deref() {
            None => Version::Latest,
            Some(v) => Version::parse(v).ok_or_else(|| InvalidVersion(v.to_string()))?,
        };
        let admission = pod.admission.clone().unwrap_or_default();
        let net = spec.network.clone().unwrap_or_default();
        let mut default_deny = net
            .default_deny
            .unwrap_or_else(|| vec![Direction::Ingress, Direction::Egress]);
        default_deny.sort();
        default_deny.dedup();
        Ok(Settings {
            enforcement: spec.enforcement.unwrap_or_default(),
            level: pod.level.unwrap_or_default(),
            version,
            read_only_root_filesystem: pod.read_only_root_filesystem.unwrap_or(true),
            allow_token_automount: pod.automount_service_account_token.unwrap_or(false),
            forbid_default_service_account: pod.forbid_default_service_account.unwrap_or(true),
            sandbox: pod.sandbox,
            psa_namespace_labels: admission.namespace_labels.unwrap_or(true),
            validating_admission_policy: admission.validating_admission_policy.unwrap_or(true),
            default_deny,
            allow_dns: net.allow_dns.unwrap_or(true),
            allow_same_namespace: net.allow_same_namespace.unwrap_or(false),
            api_server_for_declared: net
                .allow_api_server
                .as_ref()
                .and_then(|a| a.declared_service_accounts)
                .unwrap_or(true),
            rbac_audit: spec.rbac.as_ref().and_then(|r| r.audit).unwrap_or(true),
            mesh_strict: spec.mesh.as_ref().and_then(|m| m.mtls) == Some(MeshMtls::Strict),
        })
    }
}
