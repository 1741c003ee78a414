//! Every kind the engine reads, typed.

use super::mesh::istio::{DestinationRule, PeerAuthentication};
use super::spo::{AppArmorProfile, SeccompProfile};
use super::workload::Workload;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};

/// One Kubernetes object Palisade evaluates.
#[derive(Clone, Debug)]
pub enum Object {
    Workload(Box<Workload>),
    Namespace(Namespace),
    ServiceAccount(ServiceAccount),
    Service(Box<Service>),
    NetworkPolicy(NetworkPolicy),
    Role(Role),
    ClusterRole(ClusterRole),
    RoleBinding(RoleBinding),
    ClusterRoleBinding(ClusterRoleBinding),
    SeccompProfile(SeccompProfile),
    AppArmorProfile(AppArmorProfile),
    PeerAuthentication(Box<PeerAuthentication>),
    DestinationRule(Box<DestinationRule>),
}
