//! `palisade control-plane`: the control plane checked from the API server's view (no node
//! agent): mirror pods' flags, the anonymous-authentication probe and the Node-authorizer probe.

use super::cluster::{Session, Target};
use clap::Args;
use palisade::node::report::{self, NodeFormat};
use palisade::policy::rules::Severity;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct ControlPlaneArgs {
    /// Kubeconfig of the cluster (default: KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Context of the kubeconfig to use.
    #[arg(long)]
    context: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: NodeFormat,
    /// Exit 1 when a check of this severity or worse fails.
    #[arg(long, default_value = "low", value_parser = super::node::parse_severity)]
    fail_on: Severity,
}

pub fn run(args: ControlPlaneArgs) -> ExitCode {
    let target = Target {
        kubeconfig: args.kubeconfig.as_deref(),
        context: args.context.as_deref(),
    };
    let session = match Session::connect(&target) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return super::input_error();
        }
    };
    let reports = match session.control_plane() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}: {e}", session.server());
            return super::input_error();
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let written = report::write_all(args.format, "palisade control-plane", &reports, &mut out)
        .and_then(|()| std::io::Write::flush(&mut out));
    if let Err(e) = written {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: writing the report: {e}");
        }
        return super::input_error();
    }
    let failed: usize = reports
        .iter()
        .map(|r| r.failed_at_least(args.fail_on))
        .sum();
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
