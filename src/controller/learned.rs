//! What a baseline's `learn` asks of a reconcile: the learned rules of its `learn: true`
//! accounts in each covered namespace (proposed in status; generated once Ready), and the
//! usage against which `rbac.unused-permission` is judged once a whole window was collected.

use super::learn::LearnState;
use crate::crd::LearnedRole;
use crate::policy::baseline::CompiledBaseline;
use crate::policy::rbac::learn::{minimal_rules, Account, Usage};
use k8s_openapi::api::rbac::v1::PolicyRule;
use k8s_openapi::jiff::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

/// namespace -> ServiceAccount -> rules, for accounts whose learning is Ready.
pub type ReadyRules = BTreeMap<String, BTreeMap<String, Vec<PolicyRule>>>;

#[derive(Default)]
pub struct Learned {
    pub ready: ReadyRules,
    pub status: Vec<LearnedRole>,
    /// The covered namespaces' usage, when a whole window was collected.
    pub usage: Option<Usage>,
    pub window_start: i64,
    pub label: String,
    /// When the window completes (the reconcile requeues then).
    pub window_ends: Option<i64>,
}

fn duration_label(secs: i64) -> String {
    match secs {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

pub fn evaluate(
    state: Option<&LearnState>,
    compiled: &CompiledBaseline,
    covered: &BTreeSet<String>,
    now: Timestamp,
) -> Learned {
    let (Some(state), Some(window)) = (state, compiled.learn_window) else {
        return Learned::default();
    };
    let now = now.as_second();
    let learners: Vec<&str> = compiled
        .spec
        .rbac
        .iter()
        .flat_map(|r| r.service_accounts.iter())
        .filter(|sa| sa.learn == Some(true))
        .map(|sa| sa.name.as_str())
        .collect();
    state.with(|usage, since| {
        let mut out = Learned {
            window_start: now - window,
            label: format!("the last {}", duration_label(window)),
            ..Default::default()
        };
        let complete_window = since > 0 && now - since >= window;
        if since > 0 && !complete_window {
            out.window_ends = Some(since + window);
        }
        if complete_window {
            out.usage = Some(usage.subset(|a| covered.contains(&a.namespace)));
        }
        for ns in covered {
            for &sa in &learners {
                let account = Account::new(ns, sa);
                let acc = usage.accounts.get(&account);
                let rules = acc
                    .map(|u| minimal_rules(u.used_since(now - window)).namespaced.remove(ns))
                    .unwrap_or_default()
                    .unwrap_or_default();
                // An account's window starts with its first request (a new workload is
                // learned for a whole window too), and never before collection began.
                let start = since.max(acc.map_or(0, |u| u.first_seen));
                let (state_name, message) = if since == 0 {
                    ("NoData", "no audit event received yet: is the API server's audit webhook pointed at Palisade?".to_string())
                } else if acc.is_some_and(|u| !u.complete()) {
                    ("Incomplete", format!("{} requests exceeded the per-account bound and were not recorded; the learned rules are not enforced", acc.map_or(0, |u| u.dropped)))
                } else if now - start < window {
                    let ends = Timestamp::from_second(start + window).map(|t| t.to_string()).unwrap_or_default();
                    out.window_ends = Some(out.window_ends.map_or(start + window, |e| e.min(start + window)));
                    ("Learning", format!("collecting until {ends}; rules so far are proposed, not enforced"))
                } else {
                    ("Ready", format!("what the account did during {}", out.label))
                };
                if state_name == "Ready" && !rules.is_empty() {
                    out.ready.entry(ns.clone()).or_default().insert(sa.to_string(), rules.clone());
                }
                out.status.push(LearnedRole {
                    namespace: ns.clone(),
                    service_account: sa.to_string(),
                    state: state_name.to_string(),
                    message,
                    rules,
                });
            }
        }
        out
    })
}
