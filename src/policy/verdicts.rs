//! What the per-workload checks (Pod Security, hardening, profiles) said about each workload,
//! kept between audits by the operator.
//!
//! Those checks read only the workload and the compiled baseline, so their verdict holds as long
//! as the object's resourceVersion and the baseline's generation do. The operator re-audits every
//! covered namespace when any object in them changes; with the verdicts kept, a pod event judges
//! that pod again and reuses the others' verdicts. The joins (token automount against the
//! ServiceAccount, exemptions, reachability, RBAC) still run on every audit: they are what a
//! change elsewhere can alter.

use super::finding::Violation;
use super::hardening::Automount;
use super::workload::Workload;
use std::collections::HashMap;
use std::sync::Arc;

/// The per-workload checks' output for one workload.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub violations: Vec<Violation>,
    pub automount: Automount,
}

/// Which baseline compile the verdicts were made with: another generation (or a new baseline of
/// the same name) may judge the same object differently.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Judge {
    pub baseline_uid: String,
    pub generation: Option<i64>,
}

/// Verdicts by workload UID, with the resourceVersion each was made at.
#[derive(Clone, Debug, Default)]
pub struct Verdicts {
    judge: Judge,
    by_uid: HashMap<String, (String, Arc<Verdict>)>,
    /// How many of these the audit that made them took from the previous audit's.
    reused: usize,
}

impl Verdicts {
    pub fn new(judge: Judge) -> Self {
        Verdicts {
            judge,
            by_uid: HashMap::new(),
            reused: 0,
        }
    }

    pub fn reused(&self) -> usize {
        self.reused
    }

    pub fn judge(&self) -> &Judge {
        &self.judge
    }

    pub fn len(&self) -> usize {
        self.by_uid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_uid.is_empty()
    }
}

/// One audit's use of the verdicts: reads the previous audit's, records this one's. Workloads
/// not seen in this audit (deleted, or out of scope) are dropped with the previous set.
#[derive(Debug)]
pub struct VerdictCache {
    previous: Verdicts,
    current: Verdicts,
    reused: usize,
}

impl VerdictCache {
    /// Starts from `previous` when it was made by `judge`, from nothing otherwise.
    pub fn new(previous: Option<Verdicts>, judge: Judge) -> Self {
        let previous = previous
            .filter(|p| p.judge == judge)
            .unwrap_or_else(|| Verdicts::new(judge.clone()));
        VerdictCache {
            previous,
            current: Verdicts::new(judge),
            reused: 0,
        }
    }

    /// The workload's verdict: the kept one when its object has not changed since, else `make`'s.
    pub fn get_or_make(&mut self, w: &Workload, make: impl FnOnce() -> Verdict) -> Verdict {
        let meta = w.metadata();
        let (Some(uid), Some(rv)) = (meta.uid.as_deref(), meta.resource_version.as_deref()) else {
            // Not from the API server (no identity to key on): judged every time.
            return make();
        };
        let kept = self
            .previous
            .by_uid
            .remove(uid)
            .filter(|(at, _)| at == rv)
            .map(|(_, v)| v);
        let verdict = match kept {
            Some(v) => {
                self.reused += 1;
                v
            }
            None => Arc::new(make()),
        };
        let out = (*verdict).clone();
        self.current
            .by_uid
            .insert(uid.to_string(), (rv.to_string(), verdict));
        out
    }

    /// The verdicts of this audit, for the next one.
    pub fn into_verdicts(mut self) -> Verdicts {
        self.current.reused = self.reused;
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::rules::Rule;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(uid: Option<&str>, rv: &str) -> Workload {
        Workload::Pod(Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("a".into()),
                uid: uid.map(String::from),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            ..Default::default()
        }))
    }

    fn verdict(field: &str) -> Verdict {
        Verdict {
            violations: vec![Violation::new(Rule::Privileged, field, "m")],
            automount: Automount::Decided,
        }
    }

    fn judge(generation: i64) -> Judge {
        Judge {
            baseline_uid: "b".into(),
            generation: Some(generation),
        }
    }

    /// Runs one audit's worth of lookups; returns what each got and the verdicts kept.
    fn audit(
        previous: Option<Verdicts>,
        judge: Judge,
        workloads: &[(&Workload, &str)],
    ) -> (Vec<Verdict>, Verdicts, usize) {
        let mut cache = VerdictCache::new(previous, judge);
        let got = workloads
            .iter()
            .map(|(w, field)| cache.get_or_make(w, || verdict(field)))
            .collect();
        let kept = cache.into_verdicts();
        let reused = kept.reused();
        (got, kept, reused)
    }

    #[test]
    fn an_unchanged_object_reuses_its_verdict_and_a_changed_one_is_judged_again() {
        let (a1, b1) = (pod(Some("u1"), "1"), pod(Some("u2"), "1"));
        let (got, kept, reused) = audit(None, judge(1), &[(&a1, "first"), (&b1, "first")]);
        assert_eq!((got[0].violations[0].field.as_str(), reused), ("first", 0));
        assert_eq!(kept.len(), 2);
        // u1 unchanged: the first verdict stands even though `make` would now say otherwise;
        // u2 has a new resourceVersion: judged again.
        let b2 = pod(Some("u2"), "2");
        let (got, kept, reused) = audit(Some(kept), judge(1), &[(&a1, "second"), (&b2, "second")]);
        assert_eq!(reused, 1);
        assert_eq!(got[0].violations[0].field, "first");
        assert_eq!(got[1].violations[0].field, "second");
        assert_eq!(kept.len(), 2);
    }

    #[test]
    fn a_new_generation_of_the_baseline_judges_everything_again() {
        let a = pod(Some("u1"), "1");
        let (_, kept, _) = audit(None, judge(1), &[(&a, "first")]);
        let (got, _, reused) = audit(Some(kept), judge(2), &[(&a, "second")]);
        assert_eq!(reused, 0);
        assert_eq!(got[0].violations[0].field, "second");
    }

    #[test]
    fn workloads_gone_from_an_audit_are_forgotten() {
        let (a, b) = (pod(Some("u1"), "1"), pod(Some("u2"), "1"));
        let (_, kept, _) = audit(None, judge(1), &[(&a, "x"), (&b, "x")]);
        let (_, kept, _) = audit(Some(kept), judge(1), &[(&a, "x")]);
        assert_eq!(kept.len(), 1);
        // b comes back with the same identity: judged again, not served from a stale entry.
        let (_, _, reused) = audit(Some(kept), judge(1), &[(&b, "x")]);
        assert_eq!(reused, 0);
    }

    #[test]
    fn objects_without_identity_are_judged_every_time_and_not_kept() {
        let a = pod(None, "1");
        let (_, kept, _) = audit(None, judge(1), &[(&a, "x")]);
        assert!(kept.is_empty());
    }
}
