//! The end-to-end tests: one binary against the real local control plane (feature `e2e`) and
//! its real node (feature `node`), started by scripts/test. Each module was a binary of its
//! own; `common::serial` keeps modules from overlapping, as separate binaries never did.
#![cfg(feature = "e2e")]

#[path = "../common/mod.rs"]
mod common;

mod audit_cluster_e2e;
#[cfg(feature = "node")]
mod cis_node_e2e;
mod control_plane;
mod faults_e2e;
mod gitops_e2e;
mod learn_webhook_e2e;
mod mesh_e2e;
#[cfg(feature = "node")]
mod node_attacks;
#[cfg(feature = "node")]
mod node_e2e;
#[cfg(feature = "node")]
mod node_learn;
#[cfg(feature = "node")]
mod node_netpol_matrix;
#[cfg(feature = "node")]
mod node_operator;
#[cfg(feature = "node")]
mod node_webhook;
mod operator_e2e;
mod profiles_e2e;
mod prometheus_e2e;
mod rbac_bootstrap_e2e;
mod rbac_learn_peer_e2e;
mod reports_e2e;
