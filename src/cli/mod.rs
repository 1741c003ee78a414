pub mod audit;
pub mod baseline_file;
pub mod cluster;
pub mod control_plane;
pub mod generate;
pub mod netpol;
pub mod node;
pub mod rbac;
pub mod run;

use std::process::ExitCode;

/// Exit status 2: usage or input errors.
pub fn input_error() -> ExitCode {
    ExitCode::from(2)
}
