//! A `SecurityBaseline` compiled for evaluation: defaults applied, selectors compiled,
//! exemptions split into active and expired at a given instant.

use super::finding::{Finding, ObjectRef};
use super::rules::Rule;
use super::selector::{InvalidSelector, Selector};
use super::settings::{InvalidVersion, Settings};
use crate::crd::{Exemption, SecurityBaselineSpec};
use k8s_openapi::jiff::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

/// Why a baseline cannot be evaluated.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BaselineError {
    #[error(transparent)]
    Version(#[from] InvalidVersion),
    #[error("{field}.{source}")]
    Selector {
        field: String,
        source: InvalidSelector,
    },
    #[error("spec.exemptions[{0}].reason: an exemption needs a reason")]
    MissingReason(usize),
    #[error("spec.network.allow[{0}]: an allow rule needs at least one peer in from or to")]
    AllowWithoutPeers(usize),
    #[error("spec.rbac.learn.window: {0}")]
    LearnWindow(String),
    #[error("spec.rbac.serviceAccounts[{0}]: a service account needs rules, or learn: true")]
    NothingToGrant(usize),
    /// A value a generated object could not hold (see `objects`).
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
}

mod objects;

/// The default learning window: a week sees weekly jobs too.
pub const DEFAULT_LEARN_WINDOW: i64 = 168 * 3600;

/// `168h`, `90m`, `1h30m`, `45s` -> seconds (a Go duration in whole h/m/s, 10s..=2160h).
pub fn parse_window(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a duration such as 168h, 90m or 45s");
    let mut total: i64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        match c {
            '0'..='9' => digits.push(c),
            'h' | 'm' | 's' if !digits.is_empty() => {
                let n: i64 = digits.parse().map_err(|_| bad())?;
                let unit = match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                total = n
                    .checked_mul(unit)
                    .and_then(|v| total.checked_add(v))
                    .ok_or_else(bad)?;
                digits.clear();
            }
            _ => return Err(bad()),
        }
    }
    if !digits.is_empty() || text.is_empty() {
        return Err(bad());
    }
    if !(10..=2160 * 3600).contains(&total) {
        return Err(format!("{text:?} is outside 10s..2160h"));
    }
    Ok(total)
}

/// One exemption, ready to match findings.
#[derive(Clone, Debug)]
pub struct ActiveExemption {
    pub index: usize,
    rules: BTreeSet<Rule>,
    namespaces: BTreeSet<String>,
    names: BTreeSet<String>,
    selector: Option<Selector>,
}

/// What an exemption is matched against.
pub struct Subject<'a> {
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    /// Pod template labels for workloads, metadata labels otherwise.
    pub labels: &'a dyn crate::policy::selector::LabelLookup,
}

impl ActiveExemption {
    pub fn covers(&self, rule: Rule, subject: &Subject<'_>) -> bool {
        self.rules.contains(&rule)
            && (self.namespaces.is_empty()
                || subject
                    .namespace
                    .is_some_and(|ns| self.namespaces.contains(ns)))
            && (self.names.is_empty() || self.names.contains(subject.name))
            && self
                .selector
                .as_ref()
                .is_none_or(|s| s.matches(subject.labels))
    }
}

/// A baseline ready for the engine.
#[derive(Clone, Debug)]
pub struct CompiledBaseline {
    pub name: String,
    pub spec: SecurityBaselineSpec,
    pub settings: Settings,
    pub namespace_selector: Selector,
    pub excluded_namespaces: BTreeSet<String>,
    pub sandbox_selector: Option<Selector>,
    /// One selector per `spec.podSecurity.profiles` entry, in order.
    pub profile_selectors: Vec<Selector>,
    pub exemptions: Vec<ActiveExemption>,
    /// Findings about the baseline itself (expired exemptions).
    pub own_findings: Vec<Finding>,
    /// Service accounts the baseline declares API access for (they may mount tokens).
    pub declared_service_accounts: BTreeSet<String>,
    /// The learning window in seconds, when `spec.rbac.learn` is set or an account has
    /// `learn: true` (default [`DEFAULT_LEARN_WINDOW`]).
    pub learn_window: Option<i64>,
}

fn compile_selector(
    field: &str,
    sel: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
) -> Result<Selector, BaselineError> {
    match sel {
        None => Ok(Selector::everything()),
        Some(s) => Selector::compile(s).map_err(|source| BaselineError::Selector {
            field: field.to_string(),
            source,
        }),
    }
}

const NAME_LABEL: &str = "kubernetes.io/metadata.name";

impl CompiledBaseline {
    /// Compiles `spec` as it applies at `now` (exemptions expiring at or before `now` are expired).
    pub fn compile(
        name: &str,
        spec: &SecurityBaselineSpec,
        now: Timestamp,
    ) -> Result<CompiledBaseline, BaselineError> {
        let settings = Settings::from_spec(spec)?;
        objects::check(spec)?;
        let namespace_selector =
            compile_selector("spec.namespaceSelector", spec.namespace_selector.as_ref())?;
        let sandbox_selector = match spec.pod_security.as_ref().and_then(|p| p.sandbox.as_ref()) {
            Some(sb) => Some(compile_selector(
                "spec.podSecurity.sandbox.workloadSelector",
                Some(&sb.workload_selector),
            )?),
            None => None,
        };
        let profile_selectors = spec
            .pod_security
            .iter()
            .flat_map(|p| p.profiles.iter())
            .enumerate()
            .map(|(i, p)| {
                compile_selector(
                    &format!("spec.podSecurity.profiles[{i}].workloadSelector"),
                    Some(&p.workload_selector),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(net) = &spec.network {
            let api = net.allow_api_server.as_ref();
            compile_selector(
                "spec.network.allowAPIServer.podSelector",
                api.and_then(|a| a.pod_selector.as_ref()),
            )?;
            if let Some(i) = net
                .allow
                .iter()
                .position(|a| a.from.is_empty() && a.to.is_empty())
            {
                return Err(BaselineError::AllowWithoutPeers(i));
            }
        }
        let rbac = spec.rbac.as_ref();
        if let Some(i) = rbac.and_then(|r| {
            r.service_accounts
                .iter()
                .position(|sa| sa.rules.is_empty() && sa.learn != Some(true))
        }) {
            return Err(BaselineError::NothingToGrant(i));
        }
        let learns = rbac.is_some_and(|r| {
            r.learn.is_some() || r.service_accounts.iter().any(|sa| sa.learn == Some(true))
        });
        let learn_window = match rbac
            .and_then(|r| r.learn.as_ref())
            .and_then(|l| l.window.as_deref())
        {
            Some(w) => Some(parse_window(w).map_err(BaselineError::LearnWindow)?),
            None => learns.then_some(DEFAULT_LEARN_WINDOW),
        };
        let me = ObjectRef::new("SecurityBaseline", None, name);
        let mut exemptions = Vec::new();
        let mut own_findings = Vec::new();
        for (index, ex) in spec.exemptions.iter().enumerate() {
            if ex.reason.trim().is_empty() {
                return Err(BaselineError::MissingReason(index));
            }
            if let Some(expired) = expiry_finding(index, ex, now, &me) {
                own_findings.push(expired);
                continue;
            }
            exemptions.push(ActiveExemption {
                index,
                rules: ex.rules.iter().copied().collect(),
                namespaces: ex.namespaces.iter().cloned().collect(),
                names: ex.names.iter().cloned().collect(),
                selector: match &ex.workload_selector {
                    None => None,
                    Some(s) => Some(compile_selector(
                        &format!("spec.exemptions[{index}].workloadSelector"),
                        Some(s),
                    )?),
                },
            });
        }
        Ok(CompiledBaseline {
            name: name.to_string(),
            settings,
            namespace_selector,
            excluded_namespaces: spec.exclude_namespaces.iter().cloned().collect(),
            sandbox_selector,
            profile_selectors,
            exemptions,
            own_findings,
            declared_service_accounts: spec
                .rbac
                .iter()
                .flat_map(|r| r.service_accounts.iter().map(|s| s.name.clone()))
                .collect(),
            learn_window,
            spec: spec.clone(),
        })
    }

    /// Whether coverage is decided by a namespace's name alone, before its labels are known
    /// (the selector reads no label but `kubernetes.io/metadata.name`, which is the name).
    pub fn covers_by_name_alone(&self) -> bool {
        self.namespace_selector.reads_only(NAME_LABEL)
    }

    /// Whether a namespace with these labels is covered. `kubernetes.io/metadata.name` is
    /// matched as the API server sets it, even when the labels given lack it.
    pub fn covers_namespace(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        if self.excluded_namespaces.contains(name) {
            return false;
        }
        if self.namespace_selector.is_everything() {
            return true;
        }
        if labels.get(NAME_LABEL).map(String::as_str) == Some(name) {
            return self.namespace_selector.matches(labels);
        }
        let mut with_name = labels.clone();
        with_name.insert(NAME_LABEL.to_string(), name.to_string());
        self.namespace_selector.matches(&with_name)
    }

    /// The active exemption covering this rule on this subject, if any.
    pub fn exemption_for(&self, rule: Rule, subject: &Subject<'_>) -> Option<&ActiveExemption> {
        self.exemptions.iter().find(|e| e.covers(rule, subject))
    }

    /// The earliest future instant at which an exemption expires: the operator requeues then.
    pub fn next_expiry(&self, now: Timestamp) -> Option<Timestamp> {
        self.spec
            .exemptions
            .iter()
            .filter_map(|e| e.expires.as_ref().map(|t| t.0))
            .filter(|t| *t > now)
            .min()
    }
}

fn expiry_finding(index: usize, ex: &Exemption, now: Timestamp, me: &ObjectRef) -> Option<Finding> {
    let expires = ex.expires.as_ref()?.0;
    if expires > now {
        return None;
    }
    let rules: Vec<&str> = ex.rules.iter().map(|r| r.id()).collect();
    Some(Finding::new(
        Rule::ExemptionExpired,
        me.clone(),
        format!("spec.exemptions[{index}].expires"),
        format!(
            "exemption for {} expired at {expires} and no longer applies ({}); renew it with a new expiry or remove it",
            rules.join(", "),
            ex.reason.trim()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learning_windows() {
        assert_eq!(parse_window("168h"), Ok(168 * 3600));
        assert_eq!(parse_window("1h30m"), Ok(5400));
        assert_eq!(parse_window("45s"), Ok(45));
        for bad in ["", "h", "10", "1d", "-5m", "5m3", "1.5h"] {
            assert!(parse_window(bad).is_err(), "{bad:?}");
        }
        assert!(parse_window("5s")
            .unwrap_err()
            .contains("outside 10s..2160h"));
        assert!(parse_window("2161h").is_err());
        assert!(parse_window("99999999999999999999h").is_err());
    }

    #[test]
    fn learning_is_opt_in_and_accounts_need_rules_or_learn() {
        let spec = |rbac: serde_json::Value| -> SecurityBaselineSpec {
            serde_json::from_value(serde_json::json!({ "rbac": rbac })).unwrap()
        };
        let now = Timestamp::now();
        let plain = spec(
            serde_json::json!({"serviceAccounts": [{"name": "a", "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}]}),
        );
        assert_eq!(
            CompiledBaseline::compile("b", &plain, now)
                .unwrap()
                .learn_window,
            None
        );
        let learner = spec(serde_json::json!({"serviceAccounts": [{"name": "a", "learn": true}]}));
        assert_eq!(
            CompiledBaseline::compile("b", &learner, now)
                .unwrap()
                .learn_window,
            Some(DEFAULT_LEARN_WINDOW)
        );
        let windowed = spec(serde_json::json!({"learn": {"window": "90m"}}));
        assert_eq!(
            CompiledBaseline::compile("b", &windowed, now)
                .unwrap()
                .learn_window,
            Some(5400)
        );
        let bad = spec(serde_json::json!({"learn": {"window": "a week"}}));
        let e = CompiledBaseline::compile("b", &bad, now)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("spec.rbac.learn.window: \"a week\""), "{e}");
        let empty = spec(serde_json::json!({"serviceAccounts": [{"name": "a"}]}));
        let e = CompiledBaseline::compile("b", &empty, now)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "spec.rbac.serviceAccounts[0]: a service account needs rules, or learn: true"
        );
    }
}
