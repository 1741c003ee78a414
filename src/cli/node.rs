use clap::Args;
use palisade::node::cluster_report;
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
    /// Check only the components whose command line contains this text (one control plane of
    /// several on a machine: its state or config directory, say).
    #[arg(long)]
    select: Option<String>,
    /// Check again every this many seconds, printing the report only when it changed (the
    /// DaemonSet's mode); without it, check once and exit.
    #[arg(long, value_parser = clap::value_parser!(u64).range(10..))]
    interval: Option<u64>,
    /// Also publish each report as the OpenReports ClusterReport `palisade-node-<node>` (with
    /// --interval: whenever it changes). Uses KUBECONFIG or, in a pod, its ServiceAccount
    /// (deploy/node); needs the clusterreports.openreports.io CRD.
    #[arg(long)]
    publish: bool,
    /// Print every check (rule id, component, severity, what passes) as a Markdown table, and
    /// exit.
    #[arg(long)]
    list_checks: bool,
}

/// Writes reports to the cluster (`--publish`).
struct Publisher {
    runtime: tokio::runtime::Runtime,
    client: kube::Client,
}

impl Publisher {
    fn connect() -> Result<Publisher, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        let client = runtime.block_on(async {
            let config = kube::Config::infer()
                .await
                .map_err(|e| format!("--publish: no cluster configuration: {e}"))?;
            kube::Client::try_from(config).map_err(|e| format!("--publish: {e}"))
        })?;
        Ok(Publisher { runtime, client })
    }

    fn publish(&self, report: &palisade::node::NodeReport) -> Result<(), String> {
        let mut body = cluster_report::build(report, cluster_report::NODE);
        // Owned by its Node, so the garbage collector removes it with the node. Without the
        // Node (a name no Node has, no permission) it is published unowned, and says why.
        match self
            .runtime
            .block_on(cluster_report::node_owner(&self.client, &report.node))
        {
            Ok(owner) => body["metadata"]["ownerReferences"] = serde_json::json!([owner]),
            Err(e) => eprintln!(
                "warning: ClusterReport of node {:?} published without its Node as owner (it will not be removed with the node): {e}",
                report.node
            ),
        }
        let name = body["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.runtime
            .block_on(cluster_report::apply(&self.client, &body))
            .map_err(|e| format!("publishing ClusterReport {name}: {e}"))
    }
}

pub fn parse_severity(s: &str) -> Result<Severity, String> {
    Severity::parse(s).ok_or_else(|| "expected one of info, low, medium, high, critical".into())
}

pub fn run(args: NodeArgs) -> ExitCode {
    if args.list_checks {
        print!("{}", palisade::node::checks::markdown());
        return ExitCode::SUCCESS;
    }
    for (what, dir) in [("--host-root", &args.host_root), ("--proc", &args.proc_dir)] {
        if !dir.is_dir() {
            eprintln!("error: {what} {}: not a directory", dir.display());
            return super::input_error();
        }
    }
    let host = Host::new(&args.host_root, &args.proc_dir).select(args.select.clone());
    let name = args
        .node_name
        .unwrap_or_else(|| palisade::node::node_name(&host));
    let publisher = match args.publish.then(Publisher::connect).transpose() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return super::input_error();
        }
    };
    if let Some(seconds) = args.interval {
        let (mut printed, mut published) = (None, None);
        loop {
            let report = palisade::node::inspect(&host, &name);
            // Only the verdicts count as a change, not the pids of restarted components.
            let verdicts = serde_json::to_string(&report.results).unwrap_or_default();
            if printed.as_ref() != Some(&verdicts) {
                if let Err(code) = print(args.format, &report) {
                    return code;
                }
                printed = Some(verdicts.clone());
            }
            // A failed write is retried at the next round, changed or not.
            if let Some(p) = publisher
                .as_ref()
                .filter(|_| published != Some(verdicts.clone()))
            {
                match p.publish(&report) {
                    Ok(()) => published = Some(verdicts),
                    Err(e) => eprintln!("error: {e}; retrying in {seconds} s"),
                }
            }
            std::thread::sleep(std::time::Duration::from_secs(seconds));
        }
    }
    let report = palisade::node::inspect(&host, &name);
    if let Err(code) = print(args.format, &report) {
        return code;
    }
    if let Some(p) = &publisher {
        if let Err(e) = p.publish(&report) {
            eprintln!("error: {e}");
            return super::input_error();
        }
    }
    if report.components.is_empty() {
        eprintln!(
            "error: no Kubernetes component runs in {} (in a pod: hostPID, and the host's / at \
             --host-root)",
            args.proc_dir.display()
        );
        return super::input_error();
    }
    if report.failed_at_least(args.fail_on) > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn print(format: NodeFormat, report: &palisade::node::NodeReport) -> Result<(), ExitCode> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    report::write(format, report, &mut out)
        .and_then(|()| std::io::Write::flush(&mut out))
        .map_err(|e| {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                eprintln!("error: writing the report: {e}");
            }
            super::input_error()
        })
}
