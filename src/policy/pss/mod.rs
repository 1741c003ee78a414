//! Pod Security Standards (baseline and restricted), version-aware.
//!
//! Semantics follow Kubernetes' pod-security-admission checks exactly, including how each
//! check changed between PSS versions; `tests/pss_conformance.rs` runs the official fixtures.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A Pod Security Standards level.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// No restrictions.
    Privileged,
    /// Prevents known privilege escalations.
    Baseline,
    /// Current pod hardening best practice.
    #[default]
    Restricted,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Newest PSS minor version Palisade knows; `latest` evaluates as this one.
pub const LATEST_MINOR: u32 = 37;

/// A PSS version: `latest` or `v1.<minor>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    Minor(u32),
    Latest,
}

impl Version {
    /// Parses `latest` or `v1.N` (N without leading zeros). Versions newer than
    /// Palisade knows evaluate as `latest`, like pod-security-admission does.
    pub fn parse(s: &str) -> Option<Version> {
        if s == "latest" {
            return Some(Version::Latest);
        }
        let minor = s.strip_prefix("v1.")?;
        if minor.is_empty() || minor.len() > 3 || (minor.len() > 1 && minor.starts_with('0')) {
            return None;
        }
        let n: u32 = minor.parse().ok()?;
        Some(if n > LATEST_MINOR {
            Version::Latest
        } else {
            Version::Minor(n)
        })
    }

    /// The minor version whose semantics apply.
    pub fn minor(self) -> u32 {
        match self {
            Version::Minor(n) => n,
            Version::Latest => LATEST_MINOR,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Latest => f.write_str("latest"),
            Version::Minor(n) => write!(f, "v1.{n}"),
        }
    }
}

mod apparmor;
mod capabilities;
mod containers;
mod host;
mod seccomp;
mod selinux;
mod sysctls;
mod users;
pub(in crate::policy) mod visit;
mod volumes;

use super::finding::Violation;
use super::rules::Rule;
use super::workload::PodTarget;
use visit::Cx;

/// Appends one Violation per broken check/field; nothing when the pod meets `level` at `version`.
///
/// `Level::Privileged` checks nothing; `Level::Restricted` runs every baseline check too, except
/// where a restricted check supersedes a baseline one at that version (as pod-security-admission
/// does: e.g. from v1.22 the restricted capabilities check replaces the baseline one, so a Windows
/// pod at restricted v1.25+ is not held to either).
pub fn check(pod: &PodTarget<'_>, level: Level, version: Version, out: &mut Vec<Violation>) {
    if level == Level::Privileged {
        return;
    }
    let cx = Cx::new(pod, version.minor().min(LATEST_MINOR));
    let restricted = level == Level::Restricted;
    for c in CHECKS {
        if cx.minor < c.since {
            continue;
        }
        match c.level {
            Level::Baseline => {
                if restricted && c.superseded_since.is_some_and(|v| cx.minor >= v) {
                    continue;
                }
            }
            Level::Restricted => {
                if !restricted {
                    continue;
                }
            }
            Level::Privileged => continue,
        }
        let before = out.len();
        (c.run)(&cx, out);
        // A restricted check reports a problem its superseded baseline check covers under that
        // more specific rule (hostPath, non-default capabilities): each problem once, with the
        // severity of its own rule.
        debug_assert!(out[before..].iter().all(|v| v.rule == c.rule
            || (c.level == Level::Restricted
                && CHECKS
                    .iter()
                    .any(|b| b.rule == v.rule && b.superseded_since.is_some()))));
    }
}

type RunFn = fn(&Cx<'_>, &mut Vec<Violation>);

/// One pod-security-admission check: the level it belongs to and the first version it exists in.
/// Behaviour changes in later versions are handled inside `run` (each module lists its history).
struct Check {
    /// The rule every violation of this check carries.
    rule: Rule,
    level: Level,
    /// First minor version the check applies to.
    since: u32,
    /// Baseline checks only: from this minor version on, a restricted check replaces this one
    /// when evaluating the restricted level.
    superseded_since: Option<u32>,
    run: RunFn,
}

const CHECKS: &[Check] = &[
    // --- baseline ---
    Check {
        rule: Rule::HostProcess,
        level: Level::Baseline,
        since: 0,
        superseded_since: None,
        run: host::host_process,
    },
    Check {
        rule: Rule::HostNamespaces,
        level: Level::Baseline,
        since: 0,
        superseded_since: None,
        run: host::host_namespaces,
    },
    Check {
        rule: Rule::Privileged,
        level: Level::Baseline,
        since: 0,
        superseded_since: None,
        run: containers::privileged,
    },
    Check {
        rule: Rule::CapabilitiesBaseline,
        level: Level::Baseline,
        since: 0,
        // replaced by capabilities_restricted
        superseded_since: Some(capabilities::RESTRICTED_SINCE),
        run: capabilities::baseline,
    },
    Check {
        rule: Rule::HostPathVolumes,
        level: Level::Baseline,
        since: 0,
        // replaced by restrictedVolumes (which also forbids hostPath)
        superseded_since: Some(volumes::RESTRICTED_SINCE),
        run: volumes::host_path,
    },
    Check {
        rule: Rule::HostPorts,
        level: Level::Baseline,
        since: 0,
        superseded_since: None,
        run: host::host_ports,
    },
    Check {
        rule: Rule::HostProbes,
        level: Level::Baseline,
        since: host::PROBES_SINCE,
        superseded_since: None,
        run: host::host_probes,
    },
    Check {
        rule: Rule::AppArmor,
        level: Level::Baseline,
        since: 0,
        superseded_since: None,
        run: apparmor::baseline,
    },
    Check {
        rule: Rule::SeLinux,
        level: Level::Baseline,
        since: 0,
        superseded_since: None,
        run: selinux::baseline,
    },
    Check {
        rule: Rule::ProcMount,
        level: Level::Baseline,
        since: 0,
        // replaced by procMount_restricted (no user-namespace relaxation)
        superseded_since: Some(containers::PROC_MOUNT_RESTRICTED_SINCE),
        run: containers::proc_mount_baseline,
    },
    Check {
        rule: Rule::SeccompBaseline,
        level: Level::Baseline,
        since: 0,
        // replaced by seccompProfile_restricted
        superseded_since: Some(seccomp::RESTRICTED_SINCE),
        run: seccomp::baseline,
    },
    Check {
        rule: Rule::Sysctls,
        level: Level::Baseline,
        since: 0,
        superseded_since: None,
        run: sysctls::baseline,
    },
    // --- restricted ---
    Check {
        rule: Rule::VolumeTypes,
        level: Level::Restricted,
        since: volumes::RESTRICTED_SINCE,
        superseded_since: None,
        run: volumes::restricted,
    },
    Check {
        rule: Rule::PrivilegeEscalation,
        level: Level::Restricted,
        since: containers::PRIVILEGE_ESCALATION_SINCE,
        superseded_since: None,
        run: containers::privilege_escalation,
    },
    Check {
        rule: Rule::RunAsNonRoot,
        level: Level::Restricted,
        since: 0,
        superseded_since: None,
        run: users::run_as_non_root,
    },
    Check {
        rule: Rule::RunAsUser,
        level: Level::Restricted,
        since: users::RUN_AS_USER_SINCE,
        superseded_since: None,
        run: users::run_as_user,
    },
    Check {
        rule: Rule::SeccompRestricted,
        level: Level::Restricted,
        since: seccomp::RESTRICTED_SINCE,
        superseded_since: None,
        run: seccomp::restricted,
    },
    Check {
        rule: Rule::CapabilitiesRestricted,
        level: Level::Restricted,
        since: capabilities::RESTRICTED_SINCE,
        superseded_since: None,
        run: capabilities::restricted,
    },
    Check {
        rule: Rule::ProcMount,
        level: Level::Restricted,
        since: containers::PROC_MOUNT_RESTRICTED_SINCE,
        superseded_since: None,
        run: containers::proc_mount_restricted,
    },
];

#[cfg(test)]
mod testutil {
    use super::super::finding::Violation;
    use super::super::workload::PodTarget;
    use super::{check, Level, Version};
    use k8s_openapi::api::core::v1::PodSpec;
    use std::collections::BTreeMap;

    pub fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).expect("valid PodSpec")
    }

    pub fn annotations(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub fn run_with(
        spec: &PodSpec,
        annotations: &BTreeMap<String, String>,
        spec_path: &'static str,
        meta_path: &'static str,
        level: Level,
        version: Version,
    ) -> Vec<Violation> {
        let labels = BTreeMap::new();
        let target = PodTarget {
            labels: &labels,
            annotations,
            spec,
            spec_path,
            meta_path,
        };
        let mut out = Vec::new();
        check(&target, level, version, &mut out);
        out
    }

    pub fn run_on(spec: &PodSpec, level: Level, version: Version) -> Vec<Violation> {
        run_with(spec, &BTreeMap::new(), "spec", "metadata", level, version)
    }

    pub fn fields(v: &[Violation]) -> Vec<&str> {
        v.iter().map(|v| v.field.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;
    use serde_json::json;

    fn bad_pod() -> k8s_openapi::api::core::v1::PodSpec {
        spec(json!({
            "hostPID": true,
            "containers": [{"name": "app", "securityContext": {"privileged": true}}],
        }))
    }

    #[test]
    fn privileged_level_checks_nothing() {
        assert!(run_on(&bad_pod(), Level::Privileged, Version::Latest).is_empty());
        assert!(!run_on(&bad_pod(), Level::Baseline, Version::Latest).is_empty());
    }

    #[test]
    fn restricted_includes_baseline() {
        let v = run_on(&bad_pod(), Level::Restricted, Version::Latest);
        for rule in [
            Rule::HostNamespaces,
            Rule::Privileged,
            Rule::RunAsNonRoot,
            Rule::SeccompRestricted,
        ] {
            assert!(
                v.iter().any(|v| v.rule == rule),
                "{rule} missing from {v:?}"
            );
        }
    }

    #[test]
    fn latest_and_future_versions_evaluate_as_newest() {
        let s = spec(json!({
            "securityContext": {"sysctls": [{"name": "net.ipv4.tcp_notsent_lowat", "value": "1"}]},
            "containers": [{"name": "app"}],
        }));
        assert!(run_on(&s, Level::Baseline, Version::Latest).is_empty());
        assert!(run_on(&s, Level::Baseline, Version::Minor(LATEST_MINOR + 5)).is_empty());
        assert_eq!(
            run_on(&s, Level::Baseline, Version::Minor(LATEST_MINOR - 1)).len(),
            1
        );
    }

    #[test]
    fn checks_table_is_consistent() {
        for c in CHECKS {
            assert_ne!(c.level, Level::Privileged);
            if let Some(since) = c.superseded_since {
                assert_eq!(c.level, Level::Baseline);
                // The replacing restricted check exists from that version.
                assert!(CHECKS
                    .iter()
                    .any(|r| r.level == Level::Restricted && r.since == since));
            }
        }
    }

    #[test]
    fn compliant_restricted_pod_passes_every_version() {
        let s = spec(json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "app", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        }));
        for minor in 0..=LATEST_MINOR {
            assert!(
                run_on(&s, Level::Restricted, Version::Minor(minor)).is_empty(),
                "v1.{minor}"
            );
        }
    }
}
