use clap::Args;
use palisade::node::host::Host;
use palisade::node::report::{self, NodeFormat};
use palisade::policy::rules::Severity;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct NodeArgs {
    /// Where the node's file system is (`/host` in the DaemonSet: the host's `/` mounted
    /// read-only).
    #[arg(long, default_value = "/")]
    host_root: PathBuf,
    /// The node's /proc (the pod needs hostPID to see the host's processes).
    #[arg(long = "proc", default_value = "/proc")]
    proc_dir: PathBuf,
    /// The node's name in the report (default: NODE_NAME, else the host's /etc/hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: NodeFormat,
    /// Exit 1 when a check of this severity or worse fails.
    #[arg(long, default_value = "low", value_parser = parse_severity)]
    fail_on: Severity,
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    Severity::parse(s).ok_or_else(|| "expected one of info, low, medium, high, critical".into())
}

pub fn run(args: NodeArgs) -> ExitCode {
    for (what, dir) in [("--host-root", &args.host_root), ("--proc", &args.proc_dir)] {
        if !dir.is_dir() {
            eprintln!("error: {what} {}: not a directory", dir.display());
            return super::input_error();
        }
    }
    let host = Host::new(&args.host_root, &args.proc_dir);
    let name = args
        .node_name
        .unwrap_or_else(|| palisade::node::node_name(&host));
    let report = palisade::node::inspect(&host, &name);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if let Err(e) =
        report::write(args.format, &report, &mut out).and_then(|()| std::io::Write::flush(&mut out))
    {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: writing the report: {e}");
        }
        return super::input_error();
    }
    if report.failed_at_least(args.fail_on) > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
