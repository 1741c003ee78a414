//! Prometheus metrics and the HTTP endpoints `/metrics`, `/healthz`, `/readyz`.
//!
//! Labels are bounded by construction: baseline names, rule ids, severities, namespaces covered by
//! a baseline, kinds and error categories. Never object names or error strings.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BaselineLabels {
    pub baseline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub baseline: String,
    pub category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViolationLabels {
    pub baseline: String,
    pub rule: String,
    pub severity: String,
    pub namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub baseline: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub kind: String,
    pub verb: String,
}

/// A control-plane check's outcome (rule ids come from the fixed check table).
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct ControlPlaneLabels {
    pub rule: String,
    pub severity: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuditEventLabels {
    /// learned, denied (a ServiceAccount's denied request: counted, never learned), ignored
    /// (not a ServiceAccount's, or a repeated stage), invalid, rejected (TLS handshake refused).
    pub result: String,
}

/// Every metric Palisade exports.
pub struct Metrics {
    pub reconciles: Family<BaselineLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Family<BaselineLabels, Histogram>,
    pub violations: Family<ViolationLabels, Gauge>,
    pub generated: Family<KindLabels, Gauge>,
    pub drift_corrections: Family<KindLabels, Counter>,
    pub fights: Family<KindLabels, Counter>,
    pub contested: Family<BaselineLabels, Gauge>,
    pub watch_restarts: Family<WatchLabels, Counter>,
    pub throttled: Counter,
    pub writes: Family<WriteLabels, Counter>,
    pub audit_events: Family<AuditEventLabels, Counter>,
    pub leader: Gauge,
    pub last_success: Family<BaselineLabels, Gauge>,
    pub control_plane: Family<ControlPlaneLabels, Gauge>,
    pub node_checks: Family<ControlPlaneLabels, Gauge>,
    registry: Registry,
}

fn duration_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("palisade");
        let m = Metrics {
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Family::new_with_constructor(duration_histogram),
            violations: Family::default(),
            generated: Family::default(),
            drift_corrections: Family::default(),
            fights: Family::default(),
            contested: Family::default(),
            watch_restarts: Family::default(),
            throttled: Counter::default(),
            writes: Family::default(),
            audit_events: Family::default(),
            leader: Gauge::default(),
            last_success: Family::default(),
            control_plane: Family::default(),
            node_checks: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "reconciles",
            "Reconciles of a SecurityBaseline",
            m.reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciles by error category",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time to reconcile one SecurityBaseline",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "violations",
            "Current violations by baseline, rule, severity and namespace (empty for cluster-scoped objects)",
            m.violations.clone(),
        );
        registry.register(
            "generated_objects",
            "Objects generated for a baseline, by kind",
            m.generated.clone(),
        );
        registry.register(
            "drift_corrections",
            "Generated objects restored after another actor changed or deleted them",
            m.drift_corrections.clone(),
        );
        registry.register(
            "fights",
            "Fights noticed: a generated object another writer rewrote after each of 5 restores within 10 minutes (Palisade then stops restoring it for a back-off)",
            m.fights.clone(),
        );
        registry.register(
            "contested_objects",
            "Generated objects Palisade currently leaves to another writer that keeps rewriting them",
            m.contested.clone(),
        );
        registry.register(
            "watch_restarts",
            "Watch streams that failed and were restarted",
            m.watch_restarts.clone(),
        );
        registry.register(
            "api_throttled",
            "Requests the API server answered 429 Too Many Requests (API Priority and Fairness); each is retried after the server's Retry-After",
            m.throttled.clone(),
        );
        registry.register(
            "api_writes",
            "Write requests Palisade sent to the API server",
            m.writes.clone(),
        );
        registry.register(
            "audit_events",
            "Audit events received by the audit webhook, by result",
            m.audit_events.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica reconciles: it holds the leader lease, or runs without leader election",
            m.leader.clone(),
        );
        registry.register(
            "last_successful_reconcile_timestamp_seconds",
            "Unix time of the last successful reconcile of a baseline",
            m.last_success.clone(),
        );
        registry.register(
            "control_plane_checks",
            "Control-plane checks from the API server's view (mirror pods, probes): how many reports have each outcome, by rule, severity and status",
            m.control_plane.clone(),
        );
        registry.register(
            "node_checks",
            "CIS checks of the node agents (their published ClusterReports): how many nodes have each outcome, by rule, severity and status",
            m.node_checks.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    pub fn count_audit_events(&self, result: &str, n: u64) {
        self.audit_events
            .get_or_create(&AuditEventLabels {
                result: result.into(),
            })
            .inc_by(n);
    }

    pub fn count_write(&self, kind: &str, verb: &str) {
        self.writes
            .get_or_create(&WriteLabels {
                kind: kind.into(),
                verb: verb.into(),
            })
            .inc();
    }
}

/// Readiness: set once every cache has synced.
#[derive(Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
}

impl Health {
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// What the metrics and health endpoint accepts: GETs, from a handful of scrapers and probes.
pub const LIMITS: crate::serve::Limits = crate::serve::Limits {
    max_connections: 64,
    header_timeout: std::time::Duration::from_secs(5),
    request_timeout: std::time::Duration::from_secs(10),
    max_body: 4 << 10,
};

/// Serves `/metrics`, `/healthz` and `/readyz` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, health: Health) {
    use crate::serve::{reply, text, Transport};
    use http::{Method, StatusCode};
    crate::serve::serve(listener, Transport::Plain, LIMITS, move |req| {
        let (metrics, health) = (metrics.clone(), health.clone());
        async move {
            if req.method != Method::GET && req.method != Method::HEAD {
                return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
            }
            match req.path.as_str() {
                "/metrics" => reply(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    metrics.encode(),
                ),
                "/healthz" => text(StatusCode::OK, "ok\n"),
                "/readyz" if health.is_ready() => text(StatusCode::OK, "ready\n"),
                "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "caches not synced\n"),
                _ => text(StatusCode::NOT_FOUND, "not found\n"),
            }
        }
    })
    .await
}
