//! Reflector caches of everything the engine reads, trimmed to what it needs.
//!
//! `managedFields` and `status` are dropped everywhere; pods and ReplicaSets/Jobs created by a
//! controller are not kept at all (the engine reports on the owner; they only trigger reconciles),
//! which is most of a cluster's objects.

use crate::metrics::{Metrics, WatchLabels};
use crate::policy::desired::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
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
        self.metadata.managed_fields = None;
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
    EndpointSlice,
    ValidatingWebhookConfiguration,
    MutatingWebhookConfiguration,
    ServiceAccount,
    NetworkPolicy,
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
    ValidatingAdmissionPolicyBinding
);

impl Trim for Service {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
        self.status = None;
    }
}

impl Trim for ValidatingAdmissionPolicy {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
        self.status = None;
    }
}

/// All caches. Cloning is cheap (stores are shared).
#[derive(Clone)]
pub struct Caches {
    pub namespaces: Store<Namespace>,
    pub pods: Store<Pod>,
    pub deployments: Store<Deployment>,
    pub replica_sets: Store<ReplicaSet>,
    pub stateful_sets: Store<StatefulSet>,
    pub daemon_sets: Store<DaemonSet>,
    pub jobs: Store<Job>,
    pub cron_jobs: Store<CronJob>,
    pub replication_controllers: Store<ReplicationController>,
    pub service_accounts: Store<ServiceAccount>,
    pub network_policies: Store<NetworkPolicy>,
    pub roles: Store<Role>,
    pub cluster_roles: Store<ClusterRole>,
    pub role_bindings: Store<RoleBinding>,
    pub cluster_role_bindings: Store<ClusterRoleBinding>,
    pub admission_policies: Store<ValidatingAdmissionPolicy>,
    pub admission_bindings: Store<ValidatingAdmissionPolicyBinding>,
    /// The `default/kubernetes` EndpointSlices: the API server's addresses.
    pub api_server_slices: Store<EndpointSlice>,
    /// Admission webhooks and the Services they call (ingress kept under default deny).
    pub validating_webhooks: Store<ValidatingWebhookConfiguration>,
    pub mutating_webhooks: Store<MutatingWebhookConfiguration>,
    pub services: Store<Service>,
}

/// The trigger streams matching [`Caches`] (changed objects, for mapping to baselines).
pub struct Triggers {
    pub namespaces: Trigger<Namespace>,
    pub pods: Trigger<Pod>,
    pub deployments: Trigger<Deployment>,
    pub replica_sets: Trigger<ReplicaSet>,
    pub stateful_sets: Trigger<StatefulSet>,
    pub daemon_sets: Trigger<DaemonSet>,
    pub jobs: Trigger<Job>,
    pub cron_jobs: Trigger<CronJob>,
    pub replication_controllers: Trigger<ReplicationController>,
    pub service_accounts: Trigger<ServiceAccount>,
    pub network_policies: Trigger<NetworkPolicy>,
    pub roles: Trigger<Role>,
    pub cluster_roles: Trigger<ClusterRole>,
    pub role_bindings: Trigger<RoleBinding>,
    pub cluster_role_bindings: Trigger<ClusterRoleBinding>,
    pub admission_policies: Trigger<ValidatingAdmissionPolicy>,
    pub admission_bindings: Trigger<ValidatingAdmissionPolicyBinding>,
    pub api_server_slices: Trigger<EndpointSlice>,
    pub validating_webhooks: Trigger<ValidatingWebhookConfiguration>,
    pub mutating_webhooks: Trigger<MutatingWebhookConfiguration>,
    pub services: Trigger<Service>,
}

fn cache<K>(api: Api<K>, config: watcher::Config, metrics: &Arc<Metrics>) -> (Store<K>, Trigger<K>)
where
    K: Resource<DynamicType = ()> + Trim + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let kind = K::kind(&()).to_string();
    let metrics = metrics.clone();
    let mut stream = watcher(api, config)
        .default_backoff()
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
                Ok(obj) => {
                    if tx.send(obj).await.is_err() {
                        return; // controller gone
                    }
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

/// Starts a reflector task for every kind.
pub fn caches(client: &Client, metrics: &Arc<Metrics>) -> (Caches, Triggers) {
    let all = || watcher::Config::default().any_semantic();
    let generated = || all().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"));
    macro_rules! build {
        ($($field:ident : $api:expr, $cfg:expr);* $(;)?) => {{
            $( let $field = cache($api, $cfg, metrics); )*
            (
                Caches { $( $field: $field.0.clone(), )* },
                Triggers { $( $field: $field.1, )* },
            )
        }};
    }
    build! {
        namespaces: Api::all(client.clone()), all();
        pods: Api::all(client.clone()), all();
        deployments: Api::all(client.clone()), all();
        replica_sets: Api::all(client.clone()), all();
        stateful_sets: Api::all(client.clone()), all();
        daemon_sets: Api::all(client.clone()), all();
        jobs: Api::all(client.clone()), all();
        cron_jobs: Api::all(client.clone()), all();
        replication_controllers: Api::all(client.clone()), all();
        service_accounts: Api::all(client.clone()), all();
        network_policies: Api::all(client.clone()), all();
        roles: Api::all(client.clone()), all();
        cluster_roles: Api::all(client.clone()), all();
        role_bindings: Api::all(client.clone()), all();
        cluster_role_bindings: Api::all(client.clone()), all();
        admission_policies: Api::all(client.clone()), generated();
        admission_bindings: Api::all(client.clone()), generated();
        // Read in `default` only (a Role there; see deploy/base/rbac.yaml).
        api_server_slices: Api::namespaced(client.clone(), "default"),
            all().labels("kubernetes.io/service-name=kubernetes");
        validating_webhooks: Api::all(client.clone()), all();
        mutating_webhooks: Api::all(client.clone()), all();
        services: Api::all(client.clone()), all();
    }
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

impl Caches {
    /// Waits until every cache has its first full list.
    pub async fn wait_synced(&self) -> Result<(), reflector::store::WriterDropped> {
        macro_rules! wait {
            ($($f:ident),*) => { $( store_ready(&self.$f).await?; )* };
        }
        wait!(
            namespaces,
            pods,
            deployments,
            replica_sets,
            stateful_sets,
            daemon_sets,
            jobs,
            cron_jobs,
            replication_controllers,
            service_accounts,
            network_policies,
            roles,
            cluster_roles,
            role_bindings,
            cluster_role_bindings,
            admission_policies,
            admission_bindings,
            api_server_slices,
            validating_webhooks,
            mutating_webhooks,
            services
        );
        Ok(())
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
