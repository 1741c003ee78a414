//! Reflector caches of everything the engine reads, trimmed to what it needs.
//!
//! `managedFields` and `status` are dropped everywhere; pods and ReplicaSets/Jobs created by a
//! controller are not kept at all (the engine reports on the owner; they only trigger reconciles),
//! which is most of a cluster's objects.

use crate::crd::SecurityBaseline;
use crate::metrics::{Metrics, WatchLabels};
use crate::policy::desired::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::policy::mesh::istio::{DestinationRule, PeerAuthentication};
use crate::policy::spo::{AppArmorProfile, SeccompProfile};
use crate::policy::workload::controlled_by_workload;
use futures::{Stream, StreamExt};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Pod, ReplicationController, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::pin::Pin;
use std::sync::Arc;

/// A stream of objects that changed (applied or deleted), for triggering reconciles.
pub type Trigger<K> = Pin<Box<dyn Stream<Item = Result<K, watcher::Error>> + Send>>;

/// Drops what the engine never reads, so a 10k-pod cluster stays small in memory.
pub trait Trim {
    fn trim(&mut self);

    /// Whether the cache keeps the object at all. Workloads created by a controller are judged
    /// through their owner, so the engine never reads them: they only trigger reconciles.
    fn cached(&self) -> bool {
        true
    }
}

macro_rules! trim_status {
    ($($t:ty),*) => {$(
        impl Trim for $t {
            fn trim(&mut self) {
                self.metadata.managed_fields = None;
                self.status = None;
                if controlled_by_workload(&self.metadata) {
                    self.spec = None;
                }
            }

            fn cached(&self) -> bool {
                !controlled_by_workload(&self.metadata)
            }
        }
    )*};
}
trim_status!(
    Pod,
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    ReplicationController
);

impl Trim for Namespace {
    fn trim(&mut self) {
        // Who holds which Pod Security label, and nothing else: Palisade never takes over a
        // label another manager set (see plan::labels).
        self.metadata.managed_fields =
            super::plan::labels::trim_managed_fields(self.metadata.managed_fields.take());
        self.spec = None;
        // Keep status: the phase tells whether the namespace is terminating.
    }
}

macro_rules! trim_meta {
    ($($t:ty),*) => {$(
        impl Trim for $t {
            fn trim(&mut self) {
                self.metadata.managed_fields = None;
            }
        }
    )*};
}
trim_meta!(
    DestinationRule,
    SeccompProfile,
    AppArmorProfile,
    EndpointSlice,
    ValidatingWebhookConfiguration,
    MutatingWebhookConfiguration,
    ServiceAccount,
    ClusterRole,
    ClusterRoleBinding
);

/// Generated kinds: who else wrote Palisade's own objects is kept (see `keep_other_writers`).
macro_rules! trim_generated {
    ($($t:ty),*) => {$(
        impl Trim for $t {
            fn trim(&mut self) {
                super::apply::keep_other_writers(&mut self.metadata);
            }
        }
    )*};
}
trim_generated!(
    NetworkPolicy,
    Role,
    RoleBinding,
    ValidatingAdmissionPolicyBinding,
    PeerAuthentication
);

impl Trim for Service {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
        self.status = None;
    }
}

impl Trim for ValidatingAdmissionPolicy {
    fn trim(&mut self) {
        super::apply::keep_other_writers(&mut self.metadata);
        self.status = None;
    }
}

/// Whether a kind whose CRD may be absent is served right now. It is watched all the same: the
/// watcher's list fails with 404 (quietly) and is retried with back-off (at most 30 s), so a
/// CRD installed later is picked up without a restart, and one removed stops counting.
#[derive(Clone, Default)]
pub struct Served(Arc<ServedState>);

#[derive(Default)]
struct ServedState {
    now: std::sync::atomic::AtomicBool,
    /// Signalled on every change: the findings depend on it, so every baseline looks again.
    changed: tokio::sync::Notify,
}

impl Served {
    pub fn get(&self) -> bool {
        self.0.now.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn set(&self, served: bool) {
        if self.0.now.swap(served, std::sync::atomic::Ordering::SeqCst) != served {
            self.0.changed.notify_one();
        }
    }

    /// Yields once per change of [`Served::get`].
    pub fn changes(&self) -> impl Stream<Item = ()> + Send + 'static {
        futures::stream::unfold(self.clone(), |s| async move {
            s.0.changed.notified().await;
            Some(((), s))
        })
    }
}

/// By code: for a resource nobody serves the API server answers a plain-text "404 page not
/// found", which arrives without the `NotFound` reason.
fn not_found(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code == 404,
        watcher::Error::WatchError(s) => s.code == 404,
        _ => false,
    }
}

fn cache<K>(
    api: Api<K>,
    config: watcher::Config,
    metrics: &Arc<Metrics>,
    active: &Active,
    served: Option<Served>,
) -> (Store<K>, Trigger<K>)
where
    K: Resource<DynamicType = ()> + Trim + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let kind = K::kind(&()).to_string();
    let (metrics, active) = (metrics.clone(), active.clone());
    let optional = served.is_some();
    let mut stream = watcher(api, config)
        .default_backoff()
        .inspect(move |event| match (&served, event) {
            (Some(s), Ok(watcher::Event::InitDone)) => s.set(true),
            (Some(s), Err(e)) if not_found(e) => s.set(false),
            _ => {}
        })
        .modify(|o: &mut K| o.trim())
        // Objects the engine never reads stay out of the store: an update becomes a delete (the
        // object may have been cached before a controller adopted it), which still triggers a
        // reconcile; the initial list skips them (every baseline is reconciled at start anyway).
        .filter_map(|event| {
            futures::future::ready(match event {
                Ok(watcher::Event::InitApply(o)) if !o.cached() => None,
                Ok(watcher::Event::Apply(o)) if !o.cached() => Some(Ok(watcher::Event::Delete(o))),
                other => Some(other),
            })
        })
        .reflect(writer)
        .touched_objects()
        .boxed();
    // The reflector runs in its own task, so caches keep up with the API server (and recover
    // after it restarts) however busy the controller is; the controller gets triggers through
    // a bounded channel.
    let (tx, rx) = tokio::sync::mpsc::channel::<K>(1024);
    tokio::spawn(async move {
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) if !active.get() => {} // standby: the cache is updated, nobody listens
                Ok(obj) => {
                    if tx.send(obj).await.is_err() {
                        return; // controller gone
                    }
                }
                // An optional kind's CRD is not installed: nothing is wrong.
                Err(e) if optional && not_found(&e) => {
                    tracing::debug!(kind = %kind, "not served; retrying with backoff");
                }
                Err(e) => {
                    tracing::warn!(kind = %kind, error = %e, "watch failed; retrying with backoff");
                    metrics
                        .watch_restarts
                        .get_or_create(&WatchLabels { kind: kind.clone() })
                        .inc();
                }
            }
        }
    });
    let triggers =
        futures::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|o| (Ok(o), rx)) },
        );
    (reader, Box::pin(triggers))
}

/// [`Store::wait_until_ready`] that is safe with several waiters. kube-runtime 5 wakes only the
/// task that polled a store last (its `DelayedInit` keeps one waker), so with several waiters
/// (readiness, concurrent reconciles, the Controller itself) all but one would wait forever.
/// Re-polling bounds that to a short delay.
pub async fn store_ready<K>(store: &Store<K>) -> Result<(), reflector::store::WriterDropped>
where
    K: reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        let wait = store.wait_until_ready();
        if let Ok(r) = tokio::time::timeout(std::time::Duration::from_millis(100), wait).await {
            return r;
        }
    }
}

/// Declares the watched kinds once: the cache of each, its trigger stream, its field in a
/// reconcile's [`Snapshot`], how it is listed, and which baselines a change of it concerns
/// (`object`: the baselines covering the object's namespace, or every baseline for a cluster-scoped
/// object; `every`: every baseline). Adding a kind here is the whole change for the watch side.
macro_rules! watched_kinds {
    ($( $(#[$doc:meta])* $field:ident : $kind:ty, $api:ident, $config:ident, $route:ident, $need:ident; )*) => {
        /// All caches. Cloning is cheap (stores are shared).
        #[derive(Clone)]
        pub struct Caches {
            $( $(#[$doc])* pub $field: Store<$kind>, )*
            /// Whether each optional kind is served, by field name.
            pub served: std::collections::BTreeMap<&'static str, Served>,
        }

        /// The trigger streams matching [`Caches`] (changed objects, for mapping to baselines).
        pub struct Triggers {
            $( pub $field: Trigger<$kind>, )*
        }

        /// One reconcile's view of the caches: the cached objects shared, never copied. An
        /// optional kind that is not served is `None`.
        #[derive(Clone, Default)]
        pub struct Snapshot {
            $( pub $field: need!($need, Vec<Arc<$kind>>), )*
        }

        impl Caches {
            pub fn snapshot(&self) -> Snapshot {
                Snapshot { $( $field: snapshot_of!($need, self, $field), )* }
            }

            /// Waits until every required cache has its first full list (an optional kind may
            /// never be served).
            pub async fn wait_synced(&self) -> Result<(), reflector::store::WriterDropped> {
                $( wait_for!($need, self.$field); )*
                Ok(())
            }
        }

        /// Starts a reflector task for every kind. Triggers flow only once `active` is set (the
        /// leader): a standby keeps its caches warm without queueing changes nobody reconciles.
        pub fn caches(client: &Client, metrics: &Arc<Metrics>, active: &Active) -> (Caches, Triggers) {
            let mut served = std::collections::BTreeMap::new();
            $(
                let flag = served_flag!($need, served, $field);
                let $field = cache(list_api!($api, client), list_config!($config), metrics, active, flag);
            )*
            (
                Caches { $( $field: $field.0.clone(), )* served },
                Triggers { $( $field: $field.1, )* },
            )
        }

        impl Triggers {
            /// Routes every trigger stream into the controller.
            pub(super) fn attach(
                self,
                mut ctl: Controller<DeserializeGuard<SecurityBaseline>>,
                index: &super::Index,
            ) -> Controller<DeserializeGuard<SecurityBaseline>> {
                $(
                    let i = index.clone();
                    ctl = ctl.watches_stream(self.$field, move |o| route!($route, i, o));
                )*
                ctl
            }
        }
    };
}

macro_rules! need {
    (required, $t:ty) => { $t };
    (optional, $t:ty) => { Option<$t> };
}

macro_rules! snapshot_of {
    (required, $caches:ident, $field:ident) => {
        $caches.$field.state()
    };
    (optional, $caches:ident, $field:ident) => {
        $caches.served[stringify!($field)]
            .get()
            .then(|| $caches.$field.state())
    };
}

macro_rules! wait_for {
    (required, $store:expr) => {
        store_ready(&$store).await?
    };
    (optional, $store:expr) => {
        let _ = &$store;
    };
}

macro_rules! served_flag {
    (required, $map:ident, $field:ident) => {
        None
    };
    (optional, $map:ident, $field:ident) => {{
        let s = Served::default();
        $map.insert(stringify!($field), s.clone());
        Some(s)
    }};
}

macro_rules! list_api {
    (all, $client:expr) => {
        Api::all($client.clone())
    };
    // Read in `default` only (a Role there; see deploy/base/rbac.yaml).
    (default_namespace, $client:expr) => {
        Api::namespaced($client.clone(), "default")
    };
}

macro_rules! list_config {
    // Paginated lists (500 objects a page), not `any_semantic`: a list at resourceVersion 0 is
    // served from the watch cache in one response whatever the limit, and 10k Pods decoded at
    // once were most of the operator's peak memory (docs/bench-operator.md).
    (all) => {
        watcher::Config::default().page_size(500)
    };
    // Palisade's own objects only.
    (generated) => {
        list_config!(all).labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"))
    };
    (api_server) => {
        list_config!(all).labels("kubernetes.io/service-name=kubernetes")
    };
}

macro_rules! route {
    (object, $index:ident, $o:ident) => {
        $index.for_object(&$o)
    };
    (every, $index:ident, $o:ident) => {
        $index.for_every(&$o)
    };
}

watched_kinds! {
    namespaces: Namespace, all, all, every, required;
    pods: Pod, all, all, object, required;
    deployments: Deployment, all, all, object, required;
    replica_sets: ReplicaSet, all, all, object, required;
    stateful_sets: StatefulSet, all, all, object, required;
    daemon_sets: DaemonSet, all, all, object, required;
    jobs: Job, all, all, object, required;
    cron_jobs: CronJob, all, all, object, required;
    replication_controllers: ReplicationController, all, all, object, required;
    service_accounts: ServiceAccount, all, all, object, required;
    network_policies: NetworkPolicy, all, all, object, required;
    roles: Role, all, all, object, required;
    cluster_roles: ClusterRole, all, all, object, required;
    role_bindings: RoleBinding, all, all, object, required;
    cluster_role_bindings: ClusterRoleBinding, all, all, object, required;
    admission_policies: ValidatingAdmissionPolicy, all, generated, object, required;
    admission_bindings: ValidatingAdmissionPolicyBinding, all, generated, object, required;
    /// The `default/kubernetes` EndpointSlices: the API server's addresses. When they move,
    /// every baseline's API egress allows follow.
    api_server_slices: EndpointSlice, default_namespace, api_server, every, required;
    /// Admission webhooks and the Services they call (ingress kept under default deny).
    validating_webhooks: ValidatingWebhookConfiguration, all, all, every, required;
    mutating_webhooks: MutatingWebhookConfiguration, all, all, every, required;
    services: Service, all, all, object, required;
    /// Security Profiles Operator profiles, where its CRDs are installed: Localhost profile
    /// references are judged against them.
    seccomp_profiles: SeccompProfile, all, all, every, optional;
    apparmor_profiles: AppArmorProfile, all, all, every, optional;
    /// Istio, where its CRDs are installed. A mesh-wide policy (root namespace) concerns every
    /// baseline; a DestinationRule, the baselines covering its namespace.
    peer_authentications: PeerAuthentication, all, all, every, optional;
    destination_rules: DestinationRule, all, all, object, optional;
}

/// Whether this replica reconciles (holds the lease, or runs without election). Until then its
/// reflectors keep the caches current and drop the triggers: becoming active reconciles every
/// baseline from the full caches anyway.
#[derive(Clone, Default)]
pub struct Active(Arc<std::sync::atomic::AtomicBool>);

impl Active {
    pub fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn pod(owner_kind: Option<&str>) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("p".into());
        p.metadata.owner_references = owner_kind.map(|kind| {
            vec![OwnerReference {
                kind: kind.into(),
                controller: Some(true),
                ..Default::default()
            }]
        });
        p
    }

    #[test]
    fn only_objects_the_engine_reads_are_cached() {
        assert!(pod(None).cached());
        assert!(!pod(Some("ReplicaSet")).cached());
        assert!(!pod(Some("DaemonSet")).cached());
        // Not a workload controller: the pod is judged itself.
        assert!(pod(Some("SecurityBaseline")).cached());
        assert!(Namespace::default().cached());
    }
}
