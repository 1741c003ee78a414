//! The pure engine: no I/O, no async, no clock (time is passed in).

pub mod finding;
pub mod pss;
pub mod rules;
pub mod settings;
pub mod workload;
pub mod audit;
pub mod baseline;
pub mod hardening;
pub mod network;
pub mod object;
pub mod selector;
pub mod rbac;
pub mod desired;
