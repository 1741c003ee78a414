#![forbid(unsafe_code)]
//! Palisade: a Kubernetes security operator. The [`policy`] engine is pure and shared by the
//! offline CLI (`palisade audit`, `palisade generate`) and the operator (`palisade run`).

pub mod controller;
pub mod crd;
pub mod crdgen;
pub mod live;
pub mod manifest;
pub mod metrics;
pub mod node;
pub mod policy;
pub mod report;
pub mod serve;
