//! `palisade node`: the CIS Kubernetes Benchmark checks of a node's own components
//! (kube-apiserver, kube-controller-manager, kube-scheduler, etcd, kubelet, kube-proxy), read from
//! their running processes, the config files they were given and the files they use.
//!
//! Every check ends as pass, fail or not assessable; a check that cannot be judged (the component
//! does not run here, a file cannot be read) says why instead of passing or failing silently.

pub mod api_view;
pub mod checks;
pub mod cluster_report;
pub mod component;
mod files;
pub mod flags;
pub mod host;
pub mod report;
mod special;
#[cfg(test)]
mod tests;

use crate::policy::rules::Severity;
use checks::{Check, Test, Want, CHECKS};
use component::{Component, Key, Kind, Setting};
use files::FileSet;
use host::Host;
use serde::Serialize;

/// What the node runs.
pub struct Node<'a> {
    pub host: &'a Host,
    pub components: Vec<Component>,
}

impl Node<'_> {
    pub fn get(&self, kind: Kind) -> Option<&Component> {
        self.components.iter().find(|c| c.kind == kind)
    }

    /// The component, or the reason a check of it is not assessable.
    pub fn need(&self, kind: Kind) -> Result<&Component, String> {
        self.get(kind)
            .ok_or_else(|| format!("{kind} is not running on this node"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Fail,
    NotAssessable,
    Pass,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::NotAssessable => "not-assessable",
        }
    }
}

/// A check's verdict with the value it judged, where that value came from, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl Outcome {
    pub fn judge(ok: bool, actual: Option<String>, source: Option<String>, reason: String) -> Self {
        Outcome {
            status: if ok { Status::Pass } else { Status::Fail },
            actual,
            source,
            reason,
        }
    }

    pub fn pass(actual: Option<String>, source: Option<String>, reason: String) -> Self {
        Self::judge(true, actual, source, reason)
    }

    pub fn fail(actual: Option<String>, source: Option<String>, reason: String) -> Self {
        Self::judge(false, actual, source, reason)
    }

    pub fn not_assessable(reason: impl Into<String>) -> Self {
        Outcome {
            status: Status::NotAssessable,
            actual: None,
            source: None,
            reason: reason.into(),
        }
    }
}

/// One check's result on one node.
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    pub rule: &'static str,
    pub title: &'static str,
    pub component: Kind,
    pub severity: Severity,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// A component found on the node.
#[derive(Clone, Debug, Serialize)]
pub struct Found {
    pub component: Kind,
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct NodeReport {
    pub node: String,
    pub components: Vec<Found>,
    pub results: Vec<CheckResult>,
    /// What could not be read or was left out, in words.
    pub notes: Vec<String>,
}

impl NodeReport {
    pub fn count(&self, status: Status) -> usize {
        self.results
            .iter()
            .filter(|r| r.outcome.status == status)
            .count()
    }

    /// Failed checks of this severity or worse.
    pub fn failed_at_least(&self, severity: Severity) -> usize {
        self.results
            .iter()
            .filter(|r| r.outcome.status == Status::Fail && r.severity >= severity)
            .count()
    }
}

/// Runs every check against what the host runs.
pub fn inspect(host: &Host, node_name: &str) -> NodeReport {
    let (components, mut notes) = component::discover(host);
    let node = Node { host, components };
    for c in &node.components {
        if let Some(Err(e)) = c.config.as_ref().map(|f| &f.content) {
            notes.push(format!("{}: config file: {e}", c.kind));
        }
        if c.kind == Kind::Etcd && c.process.environ.is_none() {
            notes.push(
                "etcd: its environment is not readable (it needs ptrace access): ETCD_* \
                 variables are not seen"
                    .into(),
            );
        }
    }
    report_for(&node, node_name, notes)
}

/// Every check against the components found, as one node's report.
pub fn report_for(node: &Node, node_name: &str, notes: Vec<String>) -> NodeReport {
    let results = CHECKS
        .iter()
        .map(|check| CheckResult {
            rule: check.id,
            title: check.title,
            component: check.component,
            severity: check.severity,
            outcome: evaluate(node, check),
        })
        .collect();
    NodeReport {
        node: node_name.to_string(),
        components: node
            .components
            .iter()
            .map(|c| Found {
                component: c.kind,
                pid: c.process.pid,
                config: c.config.as_ref().map(|f| f.path.display().to_string()),
            })
            .collect(),
        results,
        notes,
    }
}

fn evaluate(node: &Node, check: &Check) -> Outcome {
    match &check.test {
        Test::Mode(set, mask) => file_test(node, *set, |info| {
            let extra = info.mode & !mask & 0o777;
            (extra == 0, format!("{:o}", info.mode & 0o7777))
        }),
        Test::Owner(set, want) => file_test(node, *set, |info| {
            let owner = format!("{}:{}", info.user, info.group);
            (owner == *want, owner)
        }),
        Test::Special(f) => f(node),
        Test::Setting(key, want) => match node.need(check.component) {
            Ok(c) => setting_test(c, key, want),
            Err(e) => Outcome::not_assessable(e),
        },
        Test::Set(keys) => match node.need(check.component) {
            Ok(c) => all_set(c, keys),
            Err(e) => Outcome::not_assessable(e),
        },
    }
}

fn setting_test(c: &Component, key: &Key, want: &Want) -> Outcome {
    let Setting { value, origin } = match c.setting(key) {
        Ok(s) => s,
        Err(e) => return Outcome::not_assessable(e),
    };
    let pass = match (want, value.as_deref()) {
        (Want::Unset, v) => v.is_none(),
        (_, None) => false,
        (Want::Is(w), Some(v)) => same(v, w),
        (Want::OneOf(ws), Some(v)) => ws.iter().any(|w| same(v, w)),
        (Want::AtLeast(min), Some(v)) => v.trim().parse::<i64>().is_ok_and(|n| n >= *min),
        (Want::NonZeroDuration, Some(v)) => v.chars().any(|ch| ch.is_ascii_digit() && ch != '0'),
        (Want::Loopback, Some(v)) => is_loopback(v),
    };
    Outcome::judge(pass, value, Some(origin.to_string()), String::new())
}

/// `127.0.0.1:10249`, `[::1]:10249`, `localhost`: the host part is a loopback address.
fn is_loopback(address: &str) -> bool {
    if let Ok(ip) = address.parse::<std::net::IpAddr>() {
        return ip.is_loopback();
    }
    let host = match address.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => address,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn all_set(c: &Component, keys: &[Key]) -> Outcome {
    let mut values = Vec::new();
    let mut missing = Vec::new();
    for key in keys {
        match c.setting(key) {
            Ok(Setting { value: Some(v), .. }) if !v.is_empty() => values.push(v),
            Ok(_) => missing.push(format!("--{}", key.flag)),
            Err(e) => return Outcome::not_assessable(e),
        }
    }
    let reason = if missing.is_empty() {
        String::new()
    } else {
        format!("not set: {}", missing.join(", "))
    };
    let actual = (!values.is_empty()).then(|| values.join(","));
    Outcome::judge(missing.is_empty(), actual, None, reason)
}

/// Booleans compare as booleans (`True` = `true` = `1`), everything else as text.
fn same(value: &str, want: &str) -> bool {
    match (flags::parse_bool(want), flags::parse_bool(value)) {
        (Some(w), Some(v)) => w == v,
        _ => value.trim() == want,
    }
}

/// Every file of the set must pass `ok`; a file that cannot be read makes the check not
/// assessable only when no other file fails.
fn file_test(node: &Node, set: FileSet, ok: impl Fn(&host::FileInfo) -> (bool, String)) -> Outcome {
    let paths = match files::files(node, set) {
        Ok(p) => p,
        Err(reason) => return Outcome::not_assessable(reason),
    };
    let mut failing = Vec::new();
    let mut unreadable = Vec::new();
    let mut seen = Vec::new();
    for path in &paths {
        match node.host.stat(path) {
            Ok(info) => {
                let (pass, shown) = ok(&info);
                let entry = format!("{} {shown}", path.display());
                if pass {
                    seen.push(entry);
                } else {
                    failing.push(entry);
                }
            }
            Err(e) => unreadable.push(e),
        }
    }
    const SHOWN: usize = 5;
    let list = |items: &[String]| {
        let mut s = items
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if items.len() > SHOWN {
            s.push_str(&format!(" and {} more", items.len() - SHOWN));
        }
        s
    };
    if !failing.is_empty() {
        return Outcome::fail(Some(list(&failing)), None, String::new());
    }
    if !unreadable.is_empty() {
        return Outcome::not_assessable(list(&unreadable));
    }
    Outcome::pass(Some(list(&seen)), None, String::new())
}

/// The node's name: `NODE_NAME` (the DaemonSet's downward API), else the host's /etc/hostname.
pub fn node_name(host: &Host) -> String {
    std::env::var("NODE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            host.read(std::path::Path::new("/etc/hostname"))
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "unknown".into())
}
