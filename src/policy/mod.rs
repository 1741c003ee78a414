//! The pure engine: no I/O, no async, no clock (time is passed in).

pub mod accepted;
pub mod audit;
pub mod baseline;
pub mod desired;
pub mod exposure;
mod external;
pub mod finding;
pub mod hardening;
pub mod mesh;
pub mod netpol;
pub mod network;
pub mod object;
pub mod profiles;
pub mod pss;
pub mod rbac;
pub mod reach;
pub mod rules;
pub mod selector;
pub mod settings;
pub mod spo;
#[cfg(test)]
mod testkit;
pub mod verdicts;
pub mod workload;
