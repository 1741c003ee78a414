//! Kubernetes Events: a Warning on each violating workload when its set of broken rules changes
//! (not on every reconcile), and Normal events on the baseline when generated objects change.

use crate::policy::audit::AuditReport;
use crate::policy::finding::ObjectRef;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

/// Most per-workload Warning events one reconcile publishes; beyond that, one summary Warning on
/// the baseline counts the rest (a first reconcile over thousands of violating workloads must
/// not flood the API server, nor leave a backlog that keeps writing Events afterwards).
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

/// What one reconcile warns about.
#[derive(Default)]
pub struct Warnings {
    /// One per workload, at most [`MAX_EVENTS_PER_RECONCILE`].
    pub each: Vec<Warning>,
    /// Workloads whose violations changed beyond the cap (summarised on the baseline).
    pub more: usize,
}

impl EventMemory {
    /// The warnings to publish for `report`: workloads whose rule set changed to a non-empty one.
    /// Every workload is remembered, warned about individually or not, so nothing is re-sent.
    pub fn changes(&self, baseline: &str, report: &AuditReport) -> Warnings {
        let mut now: BTreeMap<ObjectRef, BTreeSet<&'static str>> = BTreeMap::new();
        for f in &report.findings {
            if WORKLOAD_API.iter().any(|(k, _)| *k == f.object.kind) {
                now.entry((*f.object).clone())
                    .or_default()
                    .insert(f.rule.id());
            }
        }
        let mut last = self.last.lock().expect("event memory lock poisoned");
        let previous = last.entry(baseline.to_string()).or_default();
        let mut out = Warnings::default();
        let mut remembered = BTreeMap::new();
        for (obj, rules) in now {
            let changed = previous.get(&obj) != Some(&rules);
            if changed && out.each.len() >= MAX_EVENTS_PER_RECONCILE {
                out.more += 1;
            } else if changed {
                let api_version = WORKLOAD_API
                    .iter()
                    .find(|(k, _)| *k == obj.kind)
                    .map(|(_, v)| *v);
                out.each.push(Warning {
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

/// The summary Warning on the baseline for workloads beyond the per-reconcile cap.
pub async fn warn_more(recorder: &Recorder, baseline: &ObjectReference, more: usize) {
    let w = Warning {
        object: baseline.clone(),
        note: format!(
            "{more} more workloads changed their violations (only {MAX_EVENTS_PER_RECONCILE} \
             get an Event each per reconcile); see this baseline's status or `palisade audit`"
        ),
    };
    warn(recorder, &w).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::finding::Finding;
    use crate::policy::rules::Rule;

    fn report(pods: usize) -> AuditReport {
        let findings = (0..pods)
            .map(|i| {
                Finding::new(
                    Rule::Privileged,
                    ObjectRef::new("Pod", Some("a"), &format!("p{i}")),
                    "spec.containers[0].securityContext.privileged",
                    "privileged",
                )
            })
            .collect();
        AuditReport {
            findings,
            ..Default::default()
        }
    }

    #[test]
    fn beyond_the_cap_workloads_are_summarised_and_never_resent() {
        let memory = EventMemory::default();
        let first = memory.changes("b", &report(MAX_EVENTS_PER_RECONCILE + 7));
        assert_eq!(first.each.len(), MAX_EVENTS_PER_RECONCILE);
        assert_eq!(first.more, 7);
        // The same findings again: nothing new to say, no backlog left.
        let again = memory.changes("b", &report(MAX_EVENTS_PER_RECONCILE + 7));
        assert_eq!((again.each.len(), again.more), (0, 0));
        // One more violating workload: exactly that one is warned about.
        let grown = memory.changes("b", &report(MAX_EVENTS_PER_RECONCILE + 8));
        assert_eq!((grown.each.len(), grown.more), (1, 0));
    }
}
