//! NetworkPolicy semantics: which connections a set of policies allows, and which policies and
//! rules decide it. Pure; cyclonus is its differential oracle (tests/netpol_differential.rs) and
//! the real node's data plane its ground truth (tests/e2e/node_netpol_matrix.rs).
//!
//! Semantics follow networking.k8s.io/v1: policyTypes defaulted as the API server does; a pod is
//! isolated in a direction when a policy of its namespace selects it for that direction, and
//! then only the union of those policies' rules allows; a connection needs the source's egress
//! and the destination's ingress. Two points the API leaves to implementations are decided as
//! most enforcers (kube-router among them) do: host-network pods are neither selected nor
//! matched by pod selectors (their traffic is the node's), and ipBlocks match pod addresses too.

pub mod cidr;
pub mod cluster;
pub mod compile;
pub mod matrix;
#[cfg(test)]
mod tests;
pub mod universe;

pub use cluster::{Cluster, ContainerPort, Endpoint, Labels, Pod, RuleRef, Side, Verdict};
pub use compile::{compile, CompiledPolicy, InvalidPolicy, Protocol, Way};
