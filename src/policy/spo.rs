//! The Security Profiles Operator's profile kinds, as far as Palisade reads them: their names
//! and, for seccomp, the Localhost path the operator reports. Their specs are the operator's
//! business; an object without one still names a profile.

use super::external::external_kind;
use super::profiles::seccomp_localhost_name;
use serde::{Deserialize, Serialize};

/// The API group of the Security Profiles Operator.
pub const GROUP: &str = "security-profiles-operator.x-k8s.io";

external_kind!(
    /// `SeccompProfile` (`v1beta1`): installed on nodes as `operator/<name>.json`.
    /// Cluster-scoped since v0.9; listed cluster-wide either way.
    SeccompProfile { status: Option<ProfileStatus> },
    GROUP, "v1beta1", "seccompprofiles", kube::core::ClusterResourceScope
);
external_kind!(
    /// `AppArmorProfile` (`v1alpha1`): loaded on nodes under its own name.
    AppArmorProfile { status: Option<ProfileStatus> },
    GROUP, "v1alpha1", "apparmorprofiles", kube::core::ClusterResourceScope
);

/// The part of a profile's status Palisade reads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub localhost_profile: Option<String>,
}

impl SeccompProfile {
    /// The `localhostProfile` value that selects this profile.
    pub fn localhost_name(&self) -> String {
        seccomp_localhost_name(
            self.metadata.name.as_deref().unwrap_or(""),
            self.metadata.namespace.as_deref(),
            self.status
                .as_ref()
                .and_then(|s| s.localhost_profile.as_deref()),
        )
    }
}

impl AppArmorProfile {
    /// The AppArmor profile name that selects this profile.
    pub fn localhost_name(&self) -> String {
        self.metadata.name.clone().unwrap_or_default()
    }
}
