//! Kubernetes Events: a Warning on each violating workload when its set of broken rules changes
//! (not on every reconcile), and Normal events on the baseline when generated objects change.

use crate::policy::audit::AuditReport;
use crate::policy::finding::ObjectRef;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

/// Most Warning events one reconcile may publish; the rest wait for the next reconcile.
pub const MAX_EVENTS_PER_RECONCILE: usize = 25;

const WORKLOAD_API: &[(&str, &str)] = &[
    ("Pod", "v1"),
    ("ReplicationController", "v1"),
    ("Deployment", "apps/v1"),
    ("ReplicaSet", "apps/v1"),
    ("StatefulSet", "apps/v1"),
    ("DaemonSet", "apps/v1"),
    ("Job", "batch/v1"),
    ("CronJob", "batch/v1"),
];

/// Remembers what each workload was last warned about, per baseline.
#[derive(Default)]
pub struct EventMemory {
    last: Mutex<HashMap<String, BTreeMap<ObjectRef, BTreeSet<&'static str>>>>,
}

/// One Warning to publish.
pub struct Warning {
    pub object: ObjectReference,
    pub note: String,
}

impl EventMemory {
    /// The warnings to publish for `report`: workloads whose rule set changed to a non-empty one.
    pub fn changes(&self, baseline: &str, report: &AuditReport) -> Vec<Warning> {
        let mut now: BTreeMap<ObjectRef, BTreeSet<&'static str>> = BTreeMap::new();
        for f in &report.findings {
            if WORKLOAD_API.iter().any(|(k, _)| *k == f.object.kind) {
                now.entry(f.object.clone()).or_default().insert(f.rule.id());
            }
        }
        let mut last = self.last.lock().expect("event memory lock poisoned");
        let previous = last.entry(baseline.to_string()).or_default();
        let mut out = Vec::new();
        let mut remembered = BTreeMap::new();
        for (obj, rules) in now {
            let changed = previous.get(&obj) != Some(&rules);
            if changed && out.len() >= MAX_EVENTS_PER_RECONCILE {
                continue; // not remembered: it is warned about on a later reconcile
            }
            if changed {
                let api_version = WORKLOAD_API
                    .iter()
                    .find(|(k, _)| *k == obj.kind)
                    .map(|(_, v)| *v);
                out.push(Warning {
                    object: ObjectReference {
                        api_version: api_version.map(str::to_string),
                        kind: Some(obj.kind.clone()),
                        namespace: obj.namespace.clone(),
                        name: Some(obj.name.clone()),
                        ..Default::default()
                    },
                    note: format!(
                        "violates SecurityBaseline {baseline}: {}",
                        rules.iter().copied().collect::<Vec<_>>().join(", ")
                    ),
                });
            }
            remembered.insert(obj, rules);
        }
        *previous = remembered;
        out
    }

    pub fn forget(&self, baseline: &str) {
        self.last
            .lock()
            .expect("event memory lock poisoned")
            .remove(baseline);
    }
}

pub async fn warn(recorder: &Recorder, w: &Warning) {
    let ev = Event {
        type_: EventType::Warning,
        reason: "SecurityViolation".into(),
        note: Some(w.note.chars().take(1000).collect()),
        action: "Audit".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, &w.object).await {
        tracing::warn!(error = %e, object = ?w.object.name, "could not publish event");
    }
}

pub async fn normal(recorder: &Recorder, baseline: &ObjectReference, reason: &str, note: String) {
    let ev = Event {
        type_: EventType::Normal,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, baseline).await {
        tracing::warn!(error = %e, "could not publish event");
    }
}
