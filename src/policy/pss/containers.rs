//! Per-container switches: privileged (baseline), procMount (baseline and restricted),
//! allowPrivilegeEscalation (restricted).
//!
//! Version history:
//! - privileged: unchanged since v1.0.
//! - procMount (baseline): v1.0 allows only `Default`; from v1.35 any value is allowed when the
//!   pod sets `hostUsers: false`.
//! - procMount_restricted: added in v1.35; `Default` only, even with `hostUsers: false`.
//!   At the restricted level it replaces the baseline procMount check.
//! - allowPrivilegeEscalation: added in v1.8; from v1.25 Windows pods are exempt.

use super::super::finding::Violation;
use super::super::rules::Rule;
use super::visit::Cx;

pub(super) const PROC_MOUNT_RESTRICTED_SINCE: u32 = 35;
pub(super) const PRIVILEGE_ESCALATION_SINCE: u32 = 8;
const PROC_MOUNT_USERNS_RELAXED_SINCE: u32 = 35;
const WINDOWS_EXEMPT_SINCE: u32 = 25;

/// `securityContext.privileged` must be unset or false.
pub(super) fn privileged(cx: &Cx<'_>, out: &mut Vec<Violation>) {
    for c in cx.containers() {
        if c.sc.and_then(|sc| sc.privileged) == Some(true) {
            out.push(Violation::new(
                Rule::Privileged,
                c.field(cx, "securityContext.privileged"),
                format!(
                    "{} must not set securityContext.privileged=true; remove it or set it to false",
                    c.label()
                ),
            ));
        }
    }
}

pub(super) fn proc_mount_baseline(cx: &Cx<'_>, out: &mut Vec<Violation>) {
    if cx.minor >= PROC_MOUNT_USERNS_RELAXED_SINCE && cx.in_user_namespace() {
        return;
    }
    proc_mount(cx, out);
}

pub(super) fn proc_mount_restricted(cx: &Cx<'_>, out: &mut Vec<Violation>) {
    proc_mount(cx, out);
}

/// `securityContext.procMount` must be unset or `Default`.
fn proc_mount(cx: &Cx<'_>, out: &mut Vec<Violation>) {
    for c in cx.containers() {
        if let Some(pm) = c.sc.and_then(|sc| sc.proc_mount.as_deref()) {
            if pm != "Default" {
                out.push(Violation::new(
                    Rule::ProcMount,
                    c.field(cx, "securityContext.procMount"),
                    format!(
                        "{} must not set securityContext.procMount to {pm:?}; remove it or set it to \"Default\"",
                        c.label()
                    ),
                ));
            }
        }
    }
}

/// `securityContext.allowPrivilegeEscalation` must be explicitly false on every container.
pub(super) fn privilege_escalation(cx: &Cx<'_>, out: &mut Vec<Violation>) {
    if cx.minor >= WINDOWS_EXEMPT_SINCE && cx.is_windows() {
        return;
    }
    for c in cx.containers() {
        if c.sc.and_then(|sc| sc.allow_privilege_escalation) != Some(false) {
            out.push(Violation::new(
                Rule::PrivilegeEscalation,
                c.field(cx, "securityContext.allowPrivilegeEscalation"),
                format!(
                    "{} must set securityContext.allowPrivilegeEscalation=false",
                    c.label()
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{Level, Version};
    use super::*;
    use serde_json::json;

    #[test]
    fn privileged_in_every_container_list() {
        let s = spec(json!({
            "initContainers": [{"name": "i", "securityContext": {"privileged": true}}],
            "containers": [{"name": "a", "securityContext": {"privileged": false}}],
            "ephemeralContainers": [{"name": "e", "securityContext": {"privileged": true}}],
        }));
        let v = run_on(&s, Level::Baseline, Version::Minor(0));
        assert_eq!(
            fields(&v),
            [
                "spec.initContainers[0].securityContext.privileged",
                "spec.ephemeralContainers[0].securityContext.privileged"
            ]
        );
    }

    fn unmasked(host_users: Option<bool>) -> k8s_openapi::api::core::v1::PodSpec {
        let mut s = spec(json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "a", "securityContext": {
                "procMount": "Unmasked", "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]}}}],
        }));
        s.host_users = host_users;
        s
    }

    #[test]
    fn proc_mount_host_users_false() {
        let field = ["spec.containers[0].securityContext.procMount"];
        // Before v1.35 hostUsers does not matter.
        assert_eq!(
            fields(&run_on(
                &unmasked(Some(false)),
                Level::Baseline,
                Version::Minor(34)
            )),
            field
        );
        // From v1.35 baseline tolerates any procMount in a user namespace...
        assert!(run_on(&unmasked(Some(false)), Level::Baseline, Version::Minor(35)).is_empty());
        assert_eq!(
            fields(&run_on(
                &unmasked(Some(true)),
                Level::Baseline,
                Version::Minor(35)
            )),
            field
        );
        assert_eq!(
            fields(&run_on(&unmasked(None), Level::Baseline, Version::Latest)),
            field
        );
        // ...but restricted does not, and reports it once.
        for version in [Version::Minor(34), Version::Minor(35), Version::Latest] {
            let v = run_on(&unmasked(Some(false)), Level::Restricted, version);
            assert_eq!(fields(&v), field, "{version}");
            assert_eq!(v[0].rule, Rule::ProcMount);
        }
    }

    #[test]
    fn privilege_escalation_versions_and_windows() {
        let s = spec(json!({
            "securityContext": {"runAsNonRoot": true},
            "containers": [{"name": "a"}, {"name": "b", "securityContext": {"allowPrivilegeEscalation": false}},
                           {"name": "c", "securityContext": {"allowPrivilegeEscalation": true}}],
        }));
        assert!(run_on(&s, Level::Restricted, Version::Minor(7)).is_empty());
        let v = run_on(&s, Level::Restricted, Version::Minor(8));
        assert_eq!(
            fields(&v),
            [
                "spec.containers[0].securityContext.allowPrivilegeEscalation",
                "spec.containers[2].securityContext.allowPrivilegeEscalation"
            ]
        );
        let mut win = s.clone();
        win.os = Some(k8s_openapi::api::core::v1::PodOS {
            name: "windows".into(),
        });
        let v = run_on(&win, Level::Restricted, Version::Minor(24));
        assert!(v.iter().any(|v| v.rule == Rule::PrivilegeEscalation));
        let v = run_on(&win, Level::Restricted, Version::Minor(25));
        assert!(
            !v.iter().any(|v| v.rule == Rule::PrivilegeEscalation),
            "{v:?}"
        );
    }
}
