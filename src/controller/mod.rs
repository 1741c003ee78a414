//! `palisade run`: the operator. Watches SecurityBaselines and everything they judge, and
//! reconciles each baseline level-triggered: observe (caches) -> evaluate/build (pure engine) ->
//! apply + prune (server-side apply, field manager `palisade`) -> status (only on change).

pub mod apply;
pub mod cache;
pub mod changes;
pub mod client;
pub mod compiled;
pub mod control_plane;
pub mod events;
pub mod fights;
pub mod leader;
pub mod learn;
pub mod learned;
pub mod observe;
pub mod plan;
pub mod reconcile;
pub mod reports;
pub mod status;

use crate::crd::SecurityBaseline;
use crate::metrics::{self, Health, Metrics};
use crate::policy::desired::BASELINE_LABEL;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use std::sync::Arc;
use std::time::Duration;

/// Options of `palisade run`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub metrics_addr: std::net::SocketAddr,
    pub leader: Option<leader::LeaderConfig>,
    pub resync: Duration,
    pub debounce: Duration,
    /// The shortest time between two audits of a baseline when only namespaced objects changed.
    pub audit_interval: Duration,
    pub baseline_selector: Option<String>,
    /// Publish findings as OpenReports `Report` objects (`--reports`).
    pub reports: bool,
    /// Results per report at most (`--reports-max-results`).
    pub report_max_results: usize,
    /// The ClusterRole whose rules bound what generated Roles may grant (`--grantable-clusterrole`).
    pub grantable: String,
    /// The audit webhook that learns what service accounts do (`--audit-webhook-*`).
    pub learn: Option<learn::LearnConfig>,
    /// How often the leader checks the control plane from the API server's view
    /// (`--control-plane-interval`; `None`: never).
    pub control_plane_interval: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot build a Kubernetes client: {0}")]
    Client(#[from] kube::Error),
    #[error("cannot listen on {0}: {1}")]
    Listen(std::net::SocketAddr, std::io::Error),
    #[error("lost the leader lease")]
    LostLeadership,
    #[error(transparent)]
    Reports(#[from] reports::StartError),
    #[error("audit webhook TLS: {0}")]
    WebhookTls(String),
}

/// Which baselines an object in `namespace` concerns (all of them for cluster-scoped objects).
#[derive(Clone)]
struct Index {
    baselines: Store<DeserializeGuard<SecurityBaseline>>,
    namespaces: Store<Namespace>,
    compiled: Arc<compiled::CompiledCache>,
    /// Each routed change is recorded for the baselines it concerns.
    changes: changes::ChangeLog,
}

type BaselineRef = ObjectRef<DeserializeGuard<SecurityBaseline>>;

impl Index {
    /// Every baseline, recording a change in `namespace` (`None`: one every namespace shares).
    fn all(&self, namespace: Option<&str>) -> Vec<BaselineRef> {
        self.baselines
            .state()
            .iter()
            .map(|b| {
                let name = b.name_any();
                self.changes.record(&name, namespace);
                ObjectRef::new(&name)
            })
            .collect()
    }

    /// Every baseline for a Namespace: a change of the namespace concerns only its own objects.
    fn for_every<K: Resource<DynamicType = ()>>(&self, obj: &K) -> Vec<BaselineRef> {
        let own = (K::kind(&()) == "Namespace").then(|| obj.meta().name.as_deref());
        self.all(own.flatten())
    }

    fn for_object<K: Resource>(&self, obj: &K) -> Vec<BaselineRef> {
        let Some(ns) = obj.meta().namespace.as_deref() else {
            return self.all(None);
        };
        let labels = self
            .namespaces
            .get(&ObjectRef::new(ns))
            .map(|n| n.labels().clone())
            .unwrap_or_default();
        let now = Timestamp::now();
        let generated_for = obj.labels().get(BASELINE_LABEL);
        self.baselines
            .state()
            .iter()
            .filter_map(|g| g.0.as_ref().ok())
            .filter(|b| {
                let name = b.name_any();
                generated_for == Some(&name)
                    || self
                        .compiled
                        .get(b, now)
                        .is_ok_and(|c| c.covers_namespace(ns, &labels))
            })
            .map(|b| {
                let name = b.name_any();
                self.changes.record(&name, Some(ns));
                ObjectRef::new(&name)
            })
            .collect()
    }
}

fn identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    })
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler cannot fail");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    tracing::info!("shutdown requested");
}

/// Resolves once SIGTERM or Ctrl-C has arrived, however often it is awaited. The handler is
/// installed once, first thing, so a signal that arrives while the operator is still starting
/// (API server unreachable, lease not yet held) is never swallowed.
#[derive(Clone)]
struct Shutdown(tokio::sync::watch::Receiver<bool>);

impl Shutdown {
    fn install() -> Self {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = tx.send(true);
        });
        Shutdown(rx)
    }

    async fn requested(mut self) {
        let _ = self.0.wait_for(|requested| *requested).await;
    }
}

pub async fn run(opts: RunOptions) -> Result<(), RunError> {
    let shutdown = Shutdown::install();
    let metrics = Arc::new(Metrics::default());
    let client = client::client(&metrics).await?;
    let health = Health::default();
    let listener = tokio::net::TcpListener::bind(opts.metrics_addr)
        .await
        .map_err(|e| RunError::Listen(opts.metrics_addr, e))?;
    tracing::info!(addr = %opts.metrics_addr, "serving /metrics, /healthz, /readyz");
    tokio::spawn(metrics::serve(listener, metrics.clone(), health.clone()));
    // Every replica collects (the API server's webhook reaches any of them) and persists.
    let learn_state = match &opts.learn {
        Some(cfg) => Some(start_learning(&client, cfg, &metrics).await?),
        None => None,
    };

    let elector = opts
        .leader
        .clone()
        .map(|cfg| leader::Elector::new(client.clone(), cfg));
    // The caches fill before the lease is won: a standby stays warm (read-only), so a failover
    // starts reconciling at once instead of with a cold list of every kind.
    let active = cache::Active::default();
    let (caches, triggers) = cache::caches(&client, &metrics, &active);
    if let Some(e) = &elector {
        // A standby is healthy and ready for its role: waiting for the lease.
        health.set_ready();
        tokio::select! {
            _ = e.acquire() => {},
            _ = shutdown.clone().requested() => return Ok(()),
        }
        metrics.leader.set(1);
    }
    active.set();
    if let Some(every) = opts.control_plane_interval {
        tokio::spawn(control_plane::run(
            client.clone(),
            metrics.clone(),
            every,
            opts.reports,
        ));
    }
    let started = tokio::select! {
        started = reports::start(&client, opts.reports, opts.report_max_results) => started?,
        _ = shutdown.clone().requested() => return Ok(()),
    };
    let (reports, report_triggers) = match started {
        Some((r, t)) => (Some(r), Some(t)),
        None => (None, None),
    };
    let api: Api<DeserializeGuard<SecurityBaseline>> = Api::all(client.clone());
    let mut baseline_watch = watcher::Config::default().any_semantic();
    if let Some(sel) = &opts.baseline_selector {
        baseline_watch = baseline_watch.labels(sel);
    }
    let ctl = Controller::new(api, baseline_watch)
        .with_config(controller::Config::default().debounce(opts.debounce));
    let index = Index {
        baselines: ctl.store(),
        namespaces: caches.namespaces.clone(),
        compiled: Default::default(),
        changes: Default::default(),
    };
    let mut ctl = triggers.attach(ctl, &index);
    for served in caches.served.values() {
        // A CRD installed or removed changes what can be judged, even with no object of it.
        ctl = ctl.reconcile_all_on(served.changes());
    }
    if let Some(state) = &learn_state {
        // New learned usage (persisted): baselines that learn look again.
        let state = state.clone();
        let changes = futures::stream::unfold(state, |state| async move {
            state.changed.notified().await;
            Some(((), state))
        });
        ctl = ctl.reconcile_all_on(changes);
    }
    if let Some(t) = report_triggers {
        // A report edited or deleted by someone else is restored at once.
        ctl = ctl.watches_stream_with(
            t,
            |r| r.labels().get(BASELINE_LABEL).map(|b| ObjectRef::new(b)),
            reports::api_resource(),
        );
    }
    let ctx = Arc::new(reconcile::Context {
        client: client.clone(),
        caches: caches.clone(),
        baselines: index.baselines.clone(),
        compiled: index.compiled.clone(),
        changes: index.changes.clone(),
        memos: Default::default(),
        fights: Default::default(),
        metrics: metrics.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "palisade".into(),
                instance: Some(identity()),
            },
        ),
        events: Default::default(),
        exported: Default::default(),
        failures: Default::default(),
        resync: opts.resync,
        audit_interval: opts.audit_interval,
        reports,
        grantable: opts.grantable.clone(),
        learn: learn_state,
    });

    spawn_metrics_sweep(ctx.clone(), index.baselines.clone());

    if let Some(e) = elector {
        let e = Arc::new(e);
        let lost = Arc::new(tokio::sync::Notify::new());
        let lost_flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        tokio::spawn({
            let (e, lost, lost_flag) = (e.clone(), lost.clone(), lost_flag.clone());
            async move {
                e.hold().await;
                lost_flag.store(true, std::sync::atomic::Ordering::SeqCst);
                lost.notify_one(); // stores a permit if nobody waits yet
            }
        });
        spawn_readiness(&caches, &index.baselines, &health);
        let shutdown = async move {
            tokio::select! {
                _ = shutdown.requested() => {},
                _ = lost.notified() => {},
            }
        };
        run_controller(ctl, ctx, caches, shutdown).await;
        metrics.leader.set(0);
        if lost_flag.load(std::sync::atomic::Ordering::SeqCst) {
            // Exit non-zero: the process restarts clean and competes for the lease again.
            return Err(RunError::LostLeadership);
        }
        e.release().await;
        return Ok(());
    }
    // Without leader election this replica is the one reconciling (PalisadeLeaderAbsent).
    metrics.leader.set(1);
    spawn_readiness(&caches, &index.baselines, &health);
    run_controller(ctl, ctx, caches, shutdown.requested()).await;
    Ok(())
}

async fn start_learning(
    client: &Client,
    cfg: &learn::LearnConfig,
    metrics: &Arc<Metrics>,
) -> Result<Arc<learn::LearnState>, RunError> {
    let tls = learn::webhook::server_config(&cfg.tls).map_err(RunError::WebhookTls)?;
    let state = Arc::new(learn::LearnState::default());
    match learn::store::load(client, &cfg.namespace, &state).await {
        Ok(n) => tracing::info!(accounts = n, namespace = %cfg.namespace, "learned usage loaded"),
        // Not fatal: collection goes on, and writes merge with what is stored.
        Err(e) => tracing::warn!(error = %e, "loading learned usage failed"),
    }
    let listener = tokio::net::TcpListener::bind(cfg.addr)
        .await
        .map_err(|e| RunError::Listen(cfg.addr, e))?;
    tracing::info!(addr = %cfg.addr, "serving the audit webhook (client certificates required)");
    tokio::spawn(learn::webhook::serve(
        listener,
        tls,
        state.clone(),
        metrics.clone(),
    ));
    tokio::spawn(learn::store::flush_loop(
        client.clone(),
        cfg.namespace.clone(),
        state.clone(),
    ));
    Ok(state)
}

/// Deleted baselines are not reconciled again (those without a finalizer vanish at once), so their
/// gauges are swept here.
fn spawn_metrics_sweep(
    ctx: Arc<reconcile::Context>,
    baselines: Store<DeserializeGuard<SecurityBaseline>>,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(METRICS_SWEEP);
        loop {
            tick.tick().await;
            let live = baselines.state().iter().map(|b| b.name_any()).collect();
            reconcile::forget_deleted_baselines(&ctx, &live);
        }
    });
}

const METRICS_SWEEP: Duration = Duration::from_secs(15);

/// Ready once every cache and the baseline store hold a full list: before that, a change could be
/// mapped against an empty view and missed until the next resync.
fn spawn_readiness(
    caches: &cache::Caches,
    baselines: &Store<DeserializeGuard<SecurityBaseline>>,
    health: &Health,
) {
    let (caches, baselines, health) = (caches.clone(), baselines.clone(), health.clone());
    tokio::spawn(async move {
        if caches.wait_synced().await.is_ok() && cache::store_ready(&baselines).await.is_ok() {
            health.set_ready();
        }
    });
}

async fn run_controller(
    ctl: Controller<DeserializeGuard<SecurityBaseline>>,
    ctx: Arc<reconcile::Context>,
    caches: cache::Caches,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = shutdown.shared();
    let graceful = ctl
        .graceful_shutdown_on(shutdown.clone())
        .run(
            move |b, ctx: Arc<reconcile::Context>| {
                let caches = caches.clone();
                async move {
                    // Judge nothing before every cache holds a full list.
                    tracing::debug!("reconcile: waiting for caches");
                    let _ = caches.wait_synced().await;
                    tracing::debug!("reconcile: caches synced");
                    reconcile::reconcile(b, ctx).await
                }
            },
            reconcile::error_policy,
            ctx,
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "controller event");
            }
        });
    // Graceful shutdown waits for reconciles in flight, and one may be waiting for caches that
    // never fill (API server unreachable): bound the wait so SIGTERM always ends the process.
    let deadline = async {
        shutdown.await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        _ = graceful => {},
        _ = deadline => tracing::warn!(
            grace_seconds = SHUTDOWN_GRACE.as_secs(),
            "reconciles still in flight after the shutdown grace period; exiting anyway"
        ),
    }
}

/// Well inside Kubernetes' default 30 s termination grace period.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
