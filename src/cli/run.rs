use clap::Args;
use palisade::controller::{self, leader::LeaderConfig, RunOptions};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args)]
pub struct RunArgs {
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: std::net::SocketAddr,
    /// Elect a leader on a Lease so several replicas can run; only the leader writes.
    #[arg(long)]
    leader_elect: bool,
    /// Namespace of the leader Lease (default: $POD_NAMESPACE, else `default`).
    #[arg(long)]
    lease_namespace: Option<String>,
    /// Name of the leader Lease.
    #[arg(long, default_value = "palisade-leader")]
    lease_name: String,
    /// Seconds a lease lasts without renewal; failover takes at most this long.
    #[arg(long, default_value_t = 15)]
    lease_duration: u64,
    /// Seconds between full resyncs of every baseline.
    #[arg(long, default_value_t = 300)]
    resync: u64,
    /// Milliseconds to wait for more changes before reconciling (coalesces bursts). At most one
    /// reconcile per baseline runs and one waits, so a short window bounds latency, not load.
    #[arg(long, default_value_t = 50)]
    debounce_ms: u64,
    /// Milliseconds between two audits of a baseline while only objects inside namespaces change
    /// (pod churn): the generated objects are written at once, the findings and status follow
    /// within this window. It grows to ten times the last audit's duration (at most 30 s), so
    /// that auditing a large cluster under churn takes at most a tenth of a core. 0 audits on
    /// every reconcile.
    #[arg(long, default_value_t = 1000)]
    audit_interval_ms: u64,
    /// Reconcile only SecurityBaselines matching this label selector (sharding, tests).
    #[arg(long)]
    baseline_selector: Option<String>,
    /// Seconds between checks of the control plane from the API server's view (static pods'
    /// flags, anonymous authentication and the Node authorizer probed), published as metrics
    /// and, with --reports, OpenReports ClusterReports; 0 turns them off.
    #[arg(long, default_value_t = 300)]
    control_plane_interval: u64,
    /// Publish findings per namespace as OpenReports `Report` objects (needs the
    /// reports.openreports.io CRD). Off: reports published earlier are deleted.
    #[arg(long)]
    reports: bool,
    /// Results listed per report at most (the summary counts all findings).
    #[arg(long, default_value_t = palisade::controller::reports::DEFAULT_MAX_RESULTS)]
    reports_max_results: usize,
    /// ClusterRole bounding what generated Roles may grant; Palisade must be bound to it (it
    /// holds what it hands out, so it needs no escalate or bind).
    #[arg(long, default_value = "palisade-grantable")]
    grantable_clusterrole: String,
    /// Serve the audit webhook here (HTTPS; e.g. 0.0.0.0:8443): the API server's
    /// `--audit-webhook-config-file` points at `https://<this>/audit`. Enables learning.
    #[arg(long, requires_all = ["audit_webhook_cert", "audit_webhook_key", "audit_webhook_client_ca"])]
    audit_webhook_addr: Option<std::net::SocketAddr>,
    /// PEM serving certificate (chain) of the audit webhook.
    #[arg(long)]
    audit_webhook_cert: Option<String>,
    /// PEM private key of the audit webhook.
    #[arg(long)]
    audit_webhook_key: Option<String>,
    /// PEM CA that callers' client certificates must chain to (the API server's audit webhook
    /// client credentials); callers without one are refused in the TLS handshake.
    #[arg(long)]
    audit_webhook_client_ca: Option<String>,
    /// Namespace where learned usage is persisted (default: POD_NAMESPACE, else palisade-system).
    #[arg(long)]
    learn_namespace: Option<String>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

pub fn run(args: RunArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PALISADE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    let identity = std::env::var("POD_NAME").ok();
    let leader = args.leader_elect.then(|| {
        let lease_duration = Duration::from_secs(args.lease_duration.max(3));
        LeaderConfig {
            namespace: args
                .lease_namespace
                .clone()
                .or_else(|| std::env::var("POD_NAMESPACE").ok())
                .unwrap_or_else(|| "default".into()),
            name: args.lease_name.clone(),
            identity: identity.unwrap_or_else(|| {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
                format!("{}-{}", host.trim(), std::process::id())
            }),
            renew_interval: lease_duration / 3,
            lease_duration,
        }
    });
    let opts = RunOptions {
        metrics_addr: args.metrics_addr,
        leader,
        resync: Duration::from_secs(args.resync.max(10)),
        debounce: Duration::from_millis(args.debounce_ms),
        audit_interval: Duration::from_millis(args.audit_interval_ms),
        baseline_selector: args.baseline_selector.clone(),
        reports: args.reports,
        control_plane_interval: (args.control_plane_interval > 0)
            .then(|| Duration::from_secs(args.control_plane_interval.max(10))),
        report_max_results: args.reports_max_results,
        grantable: args.grantable_clusterrole.clone(),
        learn: args
            .audit_webhook_addr
            .map(|addr| palisade::controller::learn::LearnConfig {
                addr,
                tls: palisade::controller::learn::webhook::TlsFiles {
                    cert: args.audit_webhook_cert.clone().unwrap_or_default(),
                    key: args.audit_webhook_key.clone().unwrap_or_default(),
                    client_ca: args.audit_webhook_client_ca.clone().unwrap_or_default(),
                },
                namespace: args
                    .learn_namespace
                    .clone()
                    .or_else(|| std::env::var("POD_NAMESPACE").ok())
                    .unwrap_or_else(|| "palisade-system".into()),
            }),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(controller::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "palisade run stopped");
            ExitCode::FAILURE
        }
    }
}
