//! Linux capabilities.
//!
//! Version history:
//! - capabilities_baseline (v1.0+): `capabilities.add` may hold only the container runtime's
//!   default set.
//! - capabilities_restricted (v1.22+): `capabilities.drop` must contain `ALL` and `add` may hold only
//!   `NET_BIND_SERVICE`. At the restricted level it replaces the baseline check. From v1.25 Windows
//!   pods are exempt (and, since the baseline check is replaced, not checked for capabilities at all).
//!   An added capability outside the runtime defaults (`SYS_ADMIN`) is still reported once, under
//!   the baseline rule with its own severity; a default one (`CHOWN`) under the restricted rule.

use super::super::finding::Violation;
use super::super::rules::Rule;
use super::visit::Cx;

pub(super) const RESTRICTED_SINCE: u32 = 22;
const WINDOWS_EXEMPT_SINCE: u32 = 25;

/// Capabilities container runtimes grant by default; names are matched exactly (no `CAP_` prefix).
fn is_default_capability(cap: &str) -> bool {
    matches!(
        cap,
        "AUDIT_WRITE"
            | "CHOWN"
            | "DAC_OVERRIDE"
            | "FOWNER"
            | "FSETID"
            | "KILL"
            | "MKNOD"
            | "NET_BIND_SERVICE"
            | "SETFCAP"
            | "SETGID"
            | "SETPCAP"
            | "SETUID"
            | "SYS_CHROOT"
    )
}

/// One violation per non-default entry of `capabilities.add`.
pub(super) fn baseline(cx: &Cx<'_>, out: &mut Vec<Violation>) {
    for c in cx.containers() {
        let add =
            c.sc.and_then(|sc| sc.capabilities.as_ref())
                .and_then(|caps| caps.add.as_deref())
                .unwrap_or_default();
        for (i, cap) in add.iter().enumerate() {
            if !is_default_capability(cap) {
                out.push(baseline_violation(cx, &c, i, cap));
            }
        }
    }
}

fn baseline_violation(cx: &Cx<'_>, c: &super::visit::Ctr<'_>, i: usize, cap: &str) -> Violation {
    Violation::new(
        Rule::CapabilitiesBaseline,
        c.field(cx, &format!("securityContext.capabilities.add[{i}]")),
        format!(
            "{} must not add capability {cap:?}; only the runtime defaults may be added",
            c.label()
        ),
    )
}

/// `capabilities.drop` must include `ALL` (one violation per container lacking it) and every
/// `capabilities.add` entry other than `NET_BIND_SERVICE` is a violation of its own.
pub(super) fn restricted(cx: &Cx<'_>, out: &mut Vec<Violation>) {
    if cx.minor >= WINDOWS_EXEMPT_SINCE && cx.is_windows() {
        return;
    }
    for c in cx.containers() {
        let caps = c.sc.and_then(|sc| sc.capabilities.as_ref());
        let drop = caps
            .and_then(|caps| caps.drop.as_deref())
            .unwrap_or_default();
        if !drop.iter().any(|d| d == "ALL") {
            out.push(Violation::new(
                Rule::CapabilitiesRestricted,
                c.field(cx, "securityContext.capabilities.drop"),
                format!(
                    "{} must set securityContext.capabilities.drop=[\"ALL\"]",
                    c.label()
                ),
            ));
        }
        let add = caps
            .and_then(|caps| caps.add.as_deref())
            .unwrap_or_default();
        for (i, cap) in add.iter().enumerate() {
            if !is_default_capability(cap) {
                out.push(baseline_violation(cx, &c, i, cap));
            } else if cap != "NET_BIND_SERVICE" {
                out.push(Violation::new(
                    Rule::CapabilitiesRestricted,
                    c.field(cx, &format!("securityContext.capabilities.add[{i}]")),
                    format!(
                        "{} must not add capability {cap:?}; only \"NET_BIND_SERVICE\" may be added",
                        c.label()
                    ),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{Level, Version};
    use super::*;
    use serde_json::json;

    fn pod(add: serde_json::Value, drop: serde_json::Value) -> k8s_openapi::api::core::v1::PodSpec {
        spec(json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "app", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"add": add, "drop": drop}}}],
        }))
    }

    #[test]
    fn baseline_flags_each_non_default_capability() {
        let s = pod(
            json!(["CHOWN", "NET_RAW", "SYS_ADMIN", "CAP_CHOWN"]),
            json!([]),
        );
        let v = run_on(&s, Level::Baseline, Version::Latest);
        assert_eq!(
            fields(&v),
            [
                "spec.containers[0].securityContext.capabilities.add[1]",
                "spec.containers[0].securityContext.capabilities.add[2]",
                "spec.containers[0].securityContext.capabilities.add[3]"
            ]
        );
        assert!(v.iter().all(|v| v.rule == Rule::CapabilitiesBaseline));
    }

    #[test]
    fn restricted_replaces_baseline_from_v1_22() {
        let s = pod(json!(["CHOWN"]), json!(["ALL"]));
        // Before v1.22 restricted only carries the baseline rule (CHOWN is a default).
        assert!(run_on(&s, Level::Restricted, Version::Minor(21)).is_empty());
        let v = run_on(&s, Level::Restricted, Version::Minor(22));
        assert_eq!(
            fields(&v),
            ["spec.containers[0].securityContext.capabilities.add[0]"]
        );
        assert_eq!(v[0].rule, Rule::CapabilitiesRestricted);

        let s = pod(json!(["NET_BIND_SERVICE"]), json!(["all"]));
        let v = run_on(&s, Level::Restricted, Version::Latest);
        assert_eq!(
            fields(&v),
            ["spec.containers[0].securityContext.capabilities.drop"]
        );
    }

    #[test]
    fn windows_pods_exempt_from_v1_25_even_from_baseline_capabilities() {
        let mut s = pod(json!(["SYS_ADMIN"]), json!([]));
        s.os = Some(k8s_openapi::api::core::v1::PodOS {
            name: "windows".into(),
        });
        let v = run_on(&s, Level::Restricted, Version::Minor(24));
        assert_eq!(v.len(), 2, "{v:?}");
        // drop ALL missing (restricted), SYS_ADMIN added (outside the defaults: the baseline rule)
        let rules: Vec<Rule> = v.iter().map(|v| v.rule).collect();
        assert_eq!(
            rules,
            [Rule::CapabilitiesRestricted, Rule::CapabilitiesBaseline]
        );
        assert!(run_on(&s, Level::Restricted, Version::Minor(25)).is_empty());
        // The baseline level still checks them.
        let v = run_on(&s, Level::Baseline, Version::Latest);
        assert_eq!(v[0].rule, Rule::CapabilitiesBaseline);
    }
}
