//! Every kind the engine reads, typed.

use super::mesh::istio::{DestinationRule, PeerAuthentication};
use super::spo::{AppArmorProfile, SeccompProfile};
use super::workload::Workload;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use std::sync::Arc;

/// One Kubernetes object Palisade evaluates. Shared (`Arc`): the operator feeds the objects of
/// its caches to an audit without copying them.
#[derive(Clone, Debug)]
pub enum Object {
    Workload(Workload),
    Namespace(Arc<Namespace>),
    ServiceAccount(Arc<ServiceAccount>),
    Service(Arc<Service>),
    NetworkPolicy(Arc<NetworkPolicy>),
    Role(Arc<Role>),
    ClusterRole(Arc<ClusterRole>),
    RoleBinding(Arc<RoleBinding>),
    ClusterRoleBinding(Arc<ClusterRoleBinding>),
    SeccompProfile(SeccompProfile),
    AppArmorProfile(AppArmorProfile),
    PeerAuthentication(Arc<PeerAuthentication>),
    DestinationRule(Arc<DestinationRule>),
}
