use super::{baseline_file, cluster};
use clap::Args;
use k8s_openapi::jiff::Timestamp;
use palisade::manifest::{self, Severity as InputSeverity};
use palisade::policy::audit::{Auditor, LearnedUsage};
use palisade::policy::profiles::ProfileKind;
use palisade::policy::rules::Severity;
use palisade::report::{self, Format};
use std::process::ExitCode;

#[derive(Args)]
pub struct AuditArgs {
    /// SecurityBaseline YAML to audit against (default: restricted PSS + hardening + RBAC + network).
    #[arg(long)]
    baseline: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Order of the findings. `object`: sorted by object, rule and field, the same on every
    /// run. `none`: each printed as soon as it is found, so memory does not grow with the
    /// findings (for very large repositories); the order follows the reading order, which
    /// varies between runs unless `--threads 1`. Not with `--format html`.
    #[arg(long, value_enum, default_value = "object")]
    sort: Sort,
    /// Exit 1 when a finding of this severity or worse exists.
    #[arg(long, default_value = "low", value_parser = parse_severity)]
    fail_on: Severity,
    /// Evaluate exemption expiry at this instant (RFC 3339) instead of now.
    #[arg(long)]
    now: Option<Timestamp>,
    /// The API server's endpoint (IP:PORT, repeatable; in a cluster, the addresses of the
    /// `default/kubernetes` EndpointSlice): enables network.api-reachable-without-need.
    #[arg(long = "api-server")]
    api_server: Vec<std::net::SocketAddr>,
    /// kube-apiserver audit logs (JSON lines, repeatable): what service accounts did, so
    /// rbac.unused-permission reports what bindings grant them beyond it (the logs are the
    /// learning window).
    #[arg(long = "audit-log")]
    audit_logs: Vec<String>,
    /// List every document skipped for its kind (the table otherwise summarises them in one
    /// line).
    #[arg(long, short = 'v')]
    verbose: bool,
    /// Threads parsing files (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Audit the live cluster of the kubeconfig instead of files: a read-only, one-shot list of
    /// every audited kind (the permissions it needs: deploy/audit-cluster/rbac.yaml).
    #[arg(long, conflicts_with = "paths")]
    cluster: bool,
    /// With --cluster: the kubeconfig file (default: KUBECONFIG, then ~/.kube/config, then the
    /// in-cluster service account).
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
    /// With --cluster: the kubeconfig context (default: its current context).
    #[arg(long)]
    context: Option<String>,
    /// With --cluster: objects per list request (default 500).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    page_size: Option<u32>,
    /// Files or directories of manifests; `-` reads stdin.
    #[arg(required_unless_present = "cluster")]
    paths: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Sort {
    Object,
    None,
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    Severity::parse(s).ok_or_else(|| "expected one of info, low, medium, high, critical".into())
}

pub fn run(args: AuditArgs) -> ExitCode {
    if !args.cluster
        && (args.kubeconfig.is_some() || args.context.is_some() || args.page_size.is_some())
    {
        eprintln!("error: --kubeconfig, --context and --page-size apply to --cluster only");
        return super::input_error();
    }
    let now = args.now.unwrap_or_else(Timestamp::now);
    let baseline = match baseline_file::load(args.baseline.as_deref(), now) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return super::input_error();
        }
    };
    let log = match super::rbac::read_audit_logs(&args.audit_logs, None) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut streamer = match args.sort {
        Sort::Object => None,
        Sort::None => match report::Streamer::new(args.format, args.verbose, &mut out) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("error: {e}");
                return super::input_error();
            }
        },
    };
    let mut auditor = Auditor::new(&baseline);
    if let Some(streamer) = &mut streamer {
        auditor.stream_to(|f| streamer.finding(f));
    }
    if let Some(path) = &args.baseline {
        // Findings about the baseline itself point at the baseline's file.
        auditor.set_baseline_source(palisade::policy::finding::Source {
            file: path.as_str().into(),
            document: 0,
            line: 1,
        });
    }
    if !args.audit_logs.is_empty() {
        auditor.set_learned(LearnedUsage {
            usage: &log.usage,
            since: 0,
            label: "the audit logs".to_string(),
        });
    }
    let mut api_server: Vec<_> = args.api_server.iter().map(|a| (a.ip(), a.port())).collect();
    let mut diags = Vec::new();
    if args.cluster {
        let target = cluster::Target {
            kubeconfig: args.kubeconfig.as_deref(),
            context: args.context.as_deref(),
        };
        let session = match cluster::Session::connect(&target) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return super::input_error();
            }
        };
        if api_server.is_empty() {
            match session.api_server_endpoints() {
                Ok(found) => api_server = found,
                Err(d) => diags.push(d),
            }
        }
        auditor.set_api_server(&api_server);
        // Objects go to the audit page by page, as they arrive.
        let read = session.read(
            args.page_size.unwrap_or(palisade::live::DEFAULT_PAGE_SIZE),
            &mut |o| auditor.add(o, None),
            &mut diags,
        );
        match read {
            Ok(summary) => {
                eprintln!(
                    "read {} objects in {} list requests from {}",
                    summary.objects,
                    summary.pages,
                    session.server()
                );
                // An installed profile kind with no objects still makes references judgeable.
                for kind in summary.served.iter().filter_map(|k| ProfileKind::of(k)) {
                    auditor.add_profiles(kind, []);
                }
                let istio = ["PeerAuthentication", "DestinationRule"];
                if summary.served.iter().any(|k| istio.contains(k)) {
                    auditor.set_mesh_present();
                }
            }
            Err(e) => {
                eprintln!("error: {}: {e}", session.server());
                return super::input_error();
            }
        }
    } else {
        auditor.set_api_server(&api_server);
        let threads = args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        manifest::load_paths(
            &args.paths,
            threads,
            &mut |obj, src| auditor.add(obj, Some(&src)),
            &mut diags,
        );
    }
    let report = auditor.finish();
    {
        let written = match streamer {
            Some(streamer) => streamer.finish(&report, &diags),
            None => report::write(args.format, &report, &diags, args.verbose, &mut out),
        }
        .and_then(|()| std::io::Write::flush(&mut out));
        if let Err(e) = written {
            // A closed pipe (`| head`) is not an error worth a message.
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                eprintln!("error: writing the report: {e}");
            }
            return super::input_error();
        }
    }
    if log.errors_total > 0 || diags.iter().any(|d| d.severity == InputSeverity::Error) {
        if args.format != Format::Table {
            for d in diags.iter().filter(|d| d.severity == InputSeverity::Error) {
                eprintln!("{d}");
            }
        }
        return super::input_error();
    }
    if report.count_at_least(args.fail_on) > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
