//! Noticing a fight instead of fighting: another writer that keeps rewriting a generated object
//! (a GitOps controller force-applying its own version, a script in a loop) would otherwise be
//! answered by a restore every time, forever. After [`MAX_RESTORES`] restores of one object within
//! [`WINDOW`], Palisade stops restoring it for a back-off (doubling per repeated fight, at most
//! [`MAX_BACKOFF`]) and reports the object, the fields and the other writer instead.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

/// Restores of one object within [`WINDOW`] that make a fight.
pub const MAX_RESTORES: usize = 5;
pub const WINDOW: Duration = Duration::from_secs(10 * 60);
pub const FIRST_BACKOFF: Duration = Duration::from_secs(10 * 60);
pub const MAX_BACKOFF: Duration = Duration::from_secs(60 * 60);

/// A generated object Palisade currently leaves to another writer.
#[derive(Clone, Debug, PartialEq)]
pub struct Contest {
    /// Who rewrote it, and which fields (`manager (Apply): spec.ingress`), as last seen.
    pub writers: Vec<String>,
    pub restores: usize,
    /// Palisade restores it again after this.
    pub until: Timestamp,
}

impl Contest {
    /// The status line: `NetworkPolicy ns/name: ...`.
    pub fn line(&self, object: &str) -> String {
        let who = if self.writers.is_empty() {
            "another writer".to_string()
        } else {
            self.writers.join("; ")
        };
        format!(
            "{object}: rewritten by {who} after each of {} restores within {} min; Palisade stopped restoring it until {}",
            self.restores,
            WINDOW.as_secs() / 60,
            self.until
        )
    }
}

#[derive(Default)]
struct Record {
    restores: VecDeque<Timestamp>,
    /// Fights so far: each doubles the next back-off.
    strikes: u32,
    contest: Option<Contest>,
}

/// Restores per (baseline, object), shared by every reconcile.
#[derive(Default)]
pub struct Fights {
    records: Mutex<HashMap<(String, String), Record>>,
}

impl Fights {
    /// Notes that `object` of `baseline` was restored at `now` after `writers` changed it; the
    /// contest when this restore makes a fight.
    pub fn restored(
        &self,
        baseline: &str,
        object: &str,
        writers: &[String],
        now: Timestamp,
    ) -> Option<Contest> {
        let mut records = self.records.lock().expect("lock");
        let r = records
            .entry((baseline.to_string(), object.to_string()))
            .or_default();
        r.restores.push_back(now);
        let horizon = now - WINDOW;
        while r.restores.front().is_some_and(|t| *t < horizon) {
            r.restores.pop_front();
        }
        if r.restores.len() < MAX_RESTORES {
            return None;
        }
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << r.strikes.min(8))
            .min(MAX_BACKOFF);
        r.strikes += 1;
        let contest = Contest {
            writers: writers.to_vec(),
            restores: r.restores.len(),
            until: now + backoff,
        };
        r.restores.clear();
        r.contest = Some(contest.clone());
        Some(contest)
    }

    /// The objects of `baseline` left to another writer at `now`, by object.
    pub fn contested(&self, baseline: &str, now: Timestamp) -> BTreeMap<String, Contest> {
        let mut records = self.records.lock().expect("lock");
        let mut out = BTreeMap::new();
        for ((b, object), r) in records.iter_mut() {
            if b != baseline {
                continue;
            }
            match &r.contest {
                Some(c) if c.until > now => {
                    out.insert(object.clone(), c.clone());
                }
                // Back-off over: restore again (a renewed fight doubles the next back-off).
                Some(_) => r.contest = None,
                None => {}
            }
        }
        out
    }

    /// Drops what is known about baselines that no longer exist.
    pub fn retain(&self, live: &std::collections::HashSet<String>) {
        self.records
            .lock()
            .expect("lock")
            .retain(|(b, _), _| live.contains(b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn five_restores_within_ten_minutes_make_a_fight_with_a_doubling_backoff() {
        let f = Fights::default();
        let who = ["gitops (Apply): spec.ingress".to_string()];
        for i in 0..4 {
            assert!(f
                .restored("b", "NetworkPolicy a/x", &who, at(i * 60))
                .is_none());
        }
        // Another object and another baseline are counted apart.
        assert!(f
            .restored("b", "NetworkPolicy a/y", &who, at(240))
            .is_none());
        assert!(f
            .restored("c", "NetworkPolicy a/x", &who, at(240))
            .is_none());
        let c = f.restored("b", "NetworkPolicy a/x", &who, at(240)).unwrap();
        assert_eq!(c.until, at(240 + 600));
        assert_eq!(c.writers, who);
        assert_eq!(f.contested("b", at(300)).len(), 1);
        assert!(f.contested("c", at(300)).is_empty());
        assert!(c.line("NetworkPolicy a/x").starts_with(
            "NetworkPolicy a/x: rewritten by gitops (Apply): spec.ingress after each of 5 restores within 10 min"
        ));
        // Over: restored again; the next fight backs off twice as long.
        assert!(f.contested("b", at(841)).is_empty());
        for i in 0..4 {
            assert!(f
                .restored("b", "NetworkPolicy a/x", &who, at(900 + i))
                .is_none());
        }
        let again = f.restored("b", "NetworkPolicy a/x", &who, at(904)).unwrap();
        assert_eq!(again.until, at(904 + 1200));
    }

    #[test]
    fn restores_spread_wider_than_the_window_are_no_fight() {
        let f = Fights::default();
        for i in 0..20 {
            assert!(f.restored("b", "Role a/r", &[], at(i * 200)).is_none());
        }
        assert!(f.contested("b", at(4000)).is_empty());
    }
}
