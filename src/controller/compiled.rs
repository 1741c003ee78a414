//! Compiled baselines, kept per (uid, generation) until their next exemption expires: every
//! reconcile reads every other baseline (the conflict rule), and compiling them all each time
//! made a reconcile's cost grow with the number of baselines times their size.

use crate::crd::SecurityBaseline;
use crate::policy::baseline::CompiledBaseline;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// A compiled spec, or why the spec does not compile.
pub type Compiled = Result<Arc<CompiledBaseline>, Arc<str>>;

#[derive(Default)]
pub struct CompiledCache {
    entries: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    uid: Option<String>,
    generation: Option<i64>,
    /// The compile is as of a time: an exemption expiring later changes it then.
    valid_until: Option<Timestamp>,
    compiled: Compiled,
}

impl CompiledCache {
    /// `b` compiled as it applies at `now`, from the cache while its spec and exemptions hold.
    pub fn get(&self, b: &SecurityBaseline, now: Timestamp) -> Compiled {
        let name = b.name_any();
        let (uid, generation) = (b.metadata.uid.clone(), b.metadata.generation);
        let mut entries = self.entries.lock().expect("lock");
        if let Some(e) = entries.get(&name) {
            let fresh = e.uid == uid
                && e.generation == generation
                && generation.is_some()
                && e.valid_until.is_none_or(|t| now < t);
            if fresh {
                return e.compiled.clone();
            }
        }
        let compiled = CompiledBaseline::compile(&name, &b.spec, now)
            .map(Arc::new)
            .map_err(|e| Arc::from(e.to_string()));
        let valid_until = compiled.as_ref().ok().and_then(|c| c.next_expiry(now));
        entries.insert(
            name,
            Entry {
                uid,
                generation,
                valid_until,
                compiled: compiled.clone(),
            },
        );
        compiled
    }

    /// Drops the entries of baselines that are gone.
    pub fn retain(&self, live: &HashSet<String>) {
        self.entries
            .lock()
            .expect("lock")
            .retain(|name, _| live.contains(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn baseline(generation: i64, spec: &str) -> SecurityBaseline {
        let mut b: SecurityBaseline = serde_yaml_ng::from_str(&format!(
            "apiVersion: palisade.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: b, uid: u1}}\nspec: {spec}"
        ))
        .unwrap();
        b.metadata.generation = Some(generation);
        b
    }

    #[test]
    fn a_compile_is_reused_until_the_generation_changes_or_an_exemption_expires() {
        let cache = CompiledCache::default();
        let t0: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        let spec = "{namespaceSelector: {matchNames: [shop]}, exemptions: [{rules: [pss.privileged], namespaces: [shop], reason: r, expires: '2026-12-01T11:00:00Z'}]}";
        let b = baseline(1, spec);
        let first = cache.get(&b, t0).unwrap();
        let again = cache
            .get(&b, t0 + std::time::Duration::from_secs(60))
            .unwrap();
        assert!(Arc::ptr_eq(&first, &again), "same generation: cached");
        let expired = cache
            .get(&b, "2026-12-01T11:00:01Z".parse().unwrap())
            .unwrap();
        assert!(
            !Arc::ptr_eq(&first, &expired),
            "past an expiry: compiled again"
        );
        assert_ne!(
            first.exemptions.len(),
            expired.exemptions.len(),
            "the expired exemption no longer applies"
        );
        let changed = cache.get(&baseline(2, spec), t0).unwrap();
        assert!(
            !Arc::ptr_eq(&first, &changed),
            "new generation: compiled again"
        );
    }

    #[test]
    fn an_invalid_spec_is_cached_with_its_error() {
        let cache = CompiledCache::default();
        let now = Timestamp::now();
        let bad = baseline(
            1,
            "{namespaceSelector: {matchExpressions: [{key: a, operator: Sometimes}]}}",
        );
        let e = cache.get(&bad, now).unwrap_err();
        assert!(e.contains("Sometimes"), "{e}");
        cache.retain(&HashSet::new());
        assert!(cache.entries.lock().unwrap().is_empty());
    }
}
