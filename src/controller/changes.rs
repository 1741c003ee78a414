//! What the triggers saw change, per baseline, until its next reconcile takes it: the plan
//! rebuilds only those namespaces (see `plan/memo.rs`).

use super::plan::memo::Changed;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct ChangeLog(Arc<Mutex<HashMap<String, Changed>>>);

impl ChangeLog {
    /// A change of an object in `namespace` (`None`: a cluster-scoped object) concerning
    /// `baseline`.
    pub fn record(&self, baseline: &str, namespace: Option<&str>) {
        let mut log = self.0.lock().expect("lock");
        match log.get_mut(baseline) {
            Some(c) => c.add(namespace),
            None => {
                let c = namespace.map_or(Changed::Everything, Changed::namespace);
                log.insert(baseline.to_string(), c);
            }
        }
    }

    /// What changed since the last take. Nothing recorded is no namespace: the reconcile is a
    /// requeue, the baseline's own change or a change of what every namespace shares, which the
    /// plan notices itself (its globals, the resync).
    pub fn take(&self, baseline: &str) -> Changed {
        self.0
            .lock()
            .expect("lock")
            .remove(baseline)
            .unwrap_or(Changed::Namespaces(BTreeSet::new()))
    }

    /// After a failed reconcile: the next one starts from scratch.
    pub fn everything(&self, baseline: &str) {
        self.0
            .lock()
            .expect("lock")
            .insert(baseline.to_string(), Changed::Everything);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_changes_accumulate_and_a_cluster_scoped_one_means_everything() {
        let log = ChangeLog::default();
        assert_eq!(log.take("b"), Changed::Namespaces(BTreeSet::new()));
        log.record("b", Some("shop"));
        log.record("b", Some("web"));
        log.record("other", None);
        let both = BTreeSet::from(["shop".to_string(), "web".to_string()]);
        assert_eq!(log.take("b"), Changed::Namespaces(both));
        assert_eq!(log.take("b"), Changed::Namespaces(BTreeSet::new()));
        assert_eq!(log.take("other"), Changed::Everything);
        log.record("b", Some("shop"));
        log.record("b", None);
        log.record("b", Some("web"));
        assert_eq!(log.take("b"), Changed::Everything);
        log.record("b", Some("shop"));
        log.everything("b");
        assert_eq!(log.take("b"), Changed::Everything);
    }
}
