use super::baseline_file;
use clap::Args;
use k8s_openapi::jiff::Timestamp;
use palisade::manifest::{self, Severity as InputSeverity};
use palisade::policy::audit::{Auditor, LearnedUsage};
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
    /// Files or directories of manifests; `-` reads stdin.
    #[arg(required = true)]
    paths: Vec<String>,
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    Severity::parse(s).ok_or_else(|| "expected one of info, low, medium, high, critical".into())
}

pub fn run(args: AuditArgs) -> ExitCode {
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
    let mut auditor = Auditor::new(&baseline);
    if !args.audit_logs.is_empty() {
        auditor.set_learned(LearnedUsage {
            usage: &log.usage,
            since: 0,
            label: "the audit logs".to_string(),
        });
    }
    let api_server: Vec<_> = args.api_server.iter().map(|a| (a.ip(), a.port())).collect();
    auditor.set_api_server(&api_server);
    let mut diags = Vec::new();
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    manifest::load_paths(
        &args.paths,
        threads,
        &mut |obj, src| auditor.add(obj, Some(&src)),
        &mut diags,
    );
    let mut report = auditor.finish();
    // Findings about the baseline itself point at the baseline's file.
    if let Some(path) = &args.baseline {
        let file: std::sync::Arc<str> = path.as_str().into();
        for f in report
            .findings
            .iter_mut()
            .filter(|f| f.object.kind == "SecurityBaseline" && f.source.is_none())
        {
            f.source = Some(palisade::policy::finding::Source {
                file: file.clone(),
                document: 0,
                line: 1,
            });
        }
    }
    {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
        let written = report::write(args.format, &report, &diags, args.verbose, &mut out)
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
