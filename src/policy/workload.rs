//! Workloads: every object kind that carries a pod spec, reduced to the pod template the checks read.

use super::finding::ObjectRef;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, PodSpec, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;
use std::sync::Arc;

/// An object that owns pods, typed. Shared (`Arc`): the operator audits the objects its caches
/// hold without copying them.
#[derive(Clone, Debug)]
pub enum Workload {
    Pod(Arc<Pod>),
    Deployment(Arc<Deployment>),
    ReplicaSet(Arc<ReplicaSet>),
    StatefulSet(Arc<StatefulSet>),
    DaemonSet(Arc<DaemonSet>),
    Job(Arc<Job>),
    CronJob(Arc<CronJob>),
    ReplicationController(Arc<ReplicationController>),
}

/// Kinds Palisade evaluates as workloads.
pub const WORKLOAD_KINDS: &[&str] = &[
    "Pod",
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "ReplicationController",
];

static EMPTY: BTreeMap<String, String> = BTreeMap::new();

/// True when a workload controller (a Deployment's ReplicaSet, a Job's CronJob, ...) manages the
/// object: findings are reported once, on that controller.
pub fn controlled_by_workload(meta: &ObjectMeta) -> bool {
    meta.owner_references.as_ref().is_some_and(|refs| {
        refs.iter()
            .any(|r| r.controller == Some(true) && WORKLOAD_KINDS.contains(&r.kind.as_str()))
    })
}

/// A pod spec as the checks see it: where it lives, its labels/annotations, and the spec itself.
#[derive(Clone, Copy, Debug)]
pub struct PodTarget<'a> {
    /// Labels of the pod (template); used by exemptions and sandbox selectors.
    pub labels: &'a BTreeMap<String, String>,
    /// Annotations of the pod (template); old PSS versions read seccomp/AppArmor from here.
    pub annotations: &'a BTreeMap<String, String>,
    pub spec: &'a PodSpec,
    /// Path of the pod spec inside the object, e.g. `spec.template.spec`.
    pub spec_path: &'static str,
    /// Path of the pod (template) metadata inside the object, e.g. `spec.template.metadata`.
    pub meta_path: &'static str,
}

impl<'a> PodTarget<'a> {
    pub fn from_pod(pod: &'a Pod) -> Option<Self> {
        Some(Self::new(
            &pod.metadata,
            pod.spec.as_ref()?,
            "spec",
            "metadata",
        ))
    }

    fn new(
        meta: &'a ObjectMeta,
        spec: &'a PodSpec,
        spec_path: &'static str,
        meta_path: &'static str,
    ) -> Self {
        PodTarget {
            labels: meta.labels.as_ref().unwrap_or(&EMPTY),
            annotations: meta.annotations.as_ref().unwrap_or(&EMPTY),
            spec,
            spec_path,
            meta_path,
        }
    }

    fn from_template(
        t: &'a PodTemplateSpec,
        spec_path: &'static str,
        meta_path: &'static str,
    ) -> Option<Self> {
        static EMPTY_META: ObjectMeta = ObjectMeta {
            annotations: None,
            creation_timestamp: None,
            deletion_grace_period_seconds: None,
            deletion_timestamp: None,
            finalizers: None,
            generate_name: None,
            generation: None,
            labels: None,
            managed_fields: None,
            name: None,
            namespace: None,
            owner_references: None,
            resource_version: None,
            self_link: None,
            uid: None,
        };
        let meta = t.metadata.as_ref().unwrap_or(&EMPTY_META);
        Some(Self::new(meta, t.spec.as_ref()?, spec_path, meta_path))
    }

    /// Path of one annotation on the pod (template).
    pub fn annotation_path(&self, key: &str) -> String {
        format!("{}.annotations['{}']", self.meta_path, key)
    }
}

impl Workload {
    pub fn kind(&self) -> &'static str {
        match self {
            Workload::Pod(_) => "Pod",
            Workload::Deployment(_) => "Deployment",
            Workload::ReplicaSet(_) => "ReplicaSet",
            Workload::StatefulSet(_) => "StatefulSet",
            Workload::DaemonSet(_) => "DaemonSet",
            Workload::Job(_) => "Job",
            Workload::CronJob(_) => "CronJob",
            Workload::ReplicationController(_) => "ReplicationController",
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Workload::Pod(o) => &o.metadata,
            Workload::Deployment(o) => &o.metadata,
            Workload::ReplicaSet(o) => &o.metadata,
            Workload::StatefulSet(o) => &o.metadata,
            Workload::DaemonSet(o) => &o.metadata,
            Workload::Job(o) => &o.metadata,
            Workload::CronJob(o) => &o.metadata,
            Workload::ReplicationController(o) => &o.metadata,
        }
    }

    pub fn namespace(&self) -> Option<&str> {
        self.metadata().namespace.as_deref()
    }

    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or("")
    }

    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef::new(self.kind(), self.namespace(), self.name())
    }

    /// True when this object is managed by a controller Palisade already evaluates
    /// (a ReplicaSet owned by a Deployment, a Pod owned by a ReplicaSet/Job/...),
    /// so findings are reported once, on the owner.
    pub fn is_owned_by_workload(&self) -> bool {
        controlled_by_workload(self.metadata())
    }

    /// The pod template; `None` when the object has no spec (nothing to check).
    pub fn pod_target(&self) -> Option<PodTarget<'_>> {
        const TPL_SPEC: &str = "spec.template.spec";
        const TPL_META: &str = "spec.template.metadata";
        match self {
            Workload::Pod(p) => PodTarget::from_pod(p),
            Workload::Deployment(o) => {
                PodTarget::from_template(&o.spec.as_ref()?.template, TPL_SPEC, TPL_META)
            }
            Workload::ReplicaSet(o) => {
                PodTarget::from_template(o.spec.as_ref()?.template.as_ref()?, TPL_SPEC, TPL_META)
            }
            Workload::StatefulSet(o) => {
                PodTarget::from_template(&o.spec.as_ref()?.template, TPL_SPEC, TPL_META)
            }
            Workload::DaemonSet(o) => {
                PodTarget::from_template(&o.spec.as_ref()?.template, TPL_SPEC, TPL_META)
            }
            Workload::Job(o) => {
                PodTarget::from_template(&o.spec.as_ref()?.template, TPL_SPEC, TPL_META)
            }
            Workload::CronJob(o) => PodTarget::from_template(
                &o.spec.as_ref()?.job_template.spec.as_ref()?.template,
                "spec.jobTemplate.spec.template.spec",
                "spec.jobTemplate.spec.template.metadata",
            ),
            Workload::ReplicationController(o) => {
                PodTarget::from_template(o.spec.as_ref()?.template.as_ref()?, TPL_SPEC, TPL_META)
            }
        }
    }
}
