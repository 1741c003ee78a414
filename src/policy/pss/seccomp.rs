//! Seccomp.
//!
//! Version history:
//! - seccompProfile_baseline v1.0–v1.18: only the legacy annotations are read
//!   (`seccomp.security.alpha.kubernetes.io/pod` and
//!   `container.seccomp.security.alpha.kubernetes.io/<container name>`); when present they must be
//!   `runtime/default`, `docker/default` or `localhost/<profile>`.
//! - seccompProfile_baseline v1.19+: only the `seccompProfile.type` fields are read (annotations are
//!   ignored); when set they must be `RuntimeDefault` or `Localhost`.
//! - seccompProfile_restricted v1.19+: every container must end up with `RuntimeDefault` or
//!   `Localhost`, set on the container or inherited from the pod. Replaces the baseline check at
//!   the restricted level. From v1.25 Windows pods are exempt (and then unchecked for seccomp).

use super::super::finding::Violation;
use super::super::rules::Rule;
use super::visit::{push_unique, Cx};

pub(super) const RESTRICTED_SINCE: u32 = 19;
const FIELDS_SINCE: u32 = 19;
const WINDOWS_EXEMPT_SINCE: u32 = 25;

const POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
const CONTAINER_ANNOTATION_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";
const FIELD: &str = "securityContext.seccompProfile.type";

fn allowed_type(t: &str) -> bool {
    t == "RuntimeDefault" || t == "Localhost"
}

fn allowed_annotation(v: &str) -> bool {
    v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/")
}

pub(super) fn baseline(cx: &Cx<'_>, out: &mut Vec<Violation>) {
    if cx.minor < FIELDS_SINCE {
        baseline_annotations(cx, out);
    } else {
        baseline_fields(cx, out);
    }
}

fn baseline_annotations(cx: &Cx<'_>, out: &mut Vec<Violation>) {
    let annotations = cx.pod.annotations;
    if annotations.is_empty() {
        return;
    }
    if let Some(v) = annotations.get(POD_ANNOTATION) {
        if !allowed_annotation(v) {
            out.push(Violation::new(
                Rule::SeccompBaseline,
                cx.pod.annotation_path(POD_ANNOTATION),
                format!(
                    "pod must not set annotation {POD_ANNOTATION}={v:?}; use \"runtime/default\" or \"localhost/<profile>\""
                ),
            ));
        }
    }
    // Container annotations are only read for containers that exist; they are looked up by name,
    // so a lookup key is built per container, but only when some container annotation exists.
    if !has_key_with_prefix(cx, CONTAINER_ANNOTATION_PREFIX) {
        return;
    }
    let mut key = String::with_capacity(CONTAINER_ANNOTATION_PREFIX.len() + 32);
    for c in cx.containers() {
        key.clear();
        key.push_str(CONTAINER_ANNOTATION_PREFIX);
        key.push_str(c.name);
        if let Some(v) = annotations.get(key.as_str()) {
            if !allowed_annotation(v) {
                push_unique(
                    out,
                    Rule::SeccompBaseline,
                    cx.pod.annotation_path(&key),
                    format!(
                        "{} must not be given seccomp profile {v:?} by annotation {key}; use \"runtime/default\" or \"localhost/<profile>\"",
                        c.label()
                    ),
                );
            }
        }
    }
}

fn has_key_with_prefix(cx: &Cx<'_>, prefix: &str) -> bool {
    cx.pod
        .annotations
        .range::<str, _>((
            std::ops::Bound::Included(prefix),
            std::ops::Bound::Unbounded,
        ))
        .next()
        .is_some_and(|(k, _)| k.starts_with(prefix))
}

fn baseline_fields(cx: &Cx<'_>, out: &mut Vec<Violation>) {
    if let Some(p) = cx.pod_sc().and_then(|sc| sc.seccomp_profile.as_ref()) {
        if !allowed_type(&p.type_) {
            out.push(Violation::new(
                Rule::SeccompBaseline,
                cx.spec_field(FIELD),
                format!(
                    "pod must not set securityContext.seccompProfile.type to {:?}; use \"RuntimeDefault\" or \"Localhost\"",
                    p.type_
                ),
            ));
        }
    }
    for c in cx.containers() {
        if let Some(p) = c.sc.and_then(|sc| sc.seccomp_profile.as_ref()) {
            if !allowed_type(&p.type_) {
                out.push(Violation::new(
                    Rule::SeccompBaseline,
                    c.field(cx, FIELD),
                    format!(
                        "{} must not set securityContext.seccompProfile.type to {:?}; use \"RuntimeDefault\" or \"Localhost\"",
                        c.label(),
                        p.type_
                    ),
                ));
            }
        }
    }
}

/// A container's own profile wins over the pod's. Reported: a pod-level bad type; each container
/// with a bad type of its own; and, when the pod sets no profile at all, each container that sets
/// none either (a bad pod-level type already covers the containers that inherit it).
pub(super) fn restricted(cx: &Cx<'_>, out: &mut Vec<Violation>) {
    if cx.minor >= WINDOWS_EXEMPT_SINCE && cx.is_windows() {
        return;
    }
    let pod_profile = cx.pod_sc().and_then(|sc| sc.seccomp_profile.as_ref());
    if let Some(p) = pod_profile {
        if !allowed_type(&p.type_) {
            out.push(Violation::new(
                Rule::SeccompRestricted,
                cx.spec_field(FIELD),
                format!(
                    "pod must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\", not {:?}",
                    p.type_
                ),
            ));
        }
    }
    for c in cx.containers() {
        match c.sc.and_then(|sc| sc.seccomp_profile.as_ref()) {
            Some(p) if !allowed_type(&p.type_) => out.push(Violation::new(
                Rule::SeccompRestricted,
                c.field(cx, FIELD),
                format!(
                    "{} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\", not {:?}",
                    c.label(),
                    p.type_
                ),
            )),
            Some(_) => {}
            None if pod_profile.is_none() => out.push(Violation::new(
                Rule::SeccompRestricted,
                c.field(cx, FIELD),
                format!(
                    "{} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\" (or set it on the pod)",
                    c.label()
                ),
            )),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{Level, Version};
    use super::*;
    use serde_json::json;

    fn restricted_pod(
        pod_type: Option<&str>,
        ctr_type: Option<&str>,
    ) -> k8s_openapi::api::core::v1::PodSpec {
        let mut pod_sc = json!({"runAsNonRoot": true});
        if let Some(t) = pod_type {
            pod_sc["seccompProfile"] = json!({"type": t});
        }
        let mut sc = json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}});
        if let Some(t) = ctr_type {
            sc["seccompProfile"] = json!({"type": t});
        }
        spec(
            json!({"securityContext": pod_sc, "containers": [{"name": "app", "securityContext": sc}]}),
        )
    }

    #[test]
    fn container_unconfined_overrides_pod_runtime_default() {
        let s = restricted_pod(Some("RuntimeDefault"), Some("Unconfined"));
        for level in [Level::Baseline, Level::Restricted] {
            let v = run_on(&s, level, Version::Latest);
            assert_eq!(
                fields(&v),
                ["spec.containers[0].securityContext.seccompProfile.type"],
                "{level}"
            );
        }
        assert_eq!(
            run_on(&s, Level::Restricted, Version::Latest)[0].rule,
            Rule::SeccompRestricted
        );
        assert_eq!(
            run_on(&s, Level::Baseline, Version::Latest)[0].rule,
            Rule::SeccompBaseline
        );
    }

    #[test]
    fn container_setting_satisfies_restricted_without_pod_setting() {
        assert!(run_on(
            &restricted_pod(None, Some("Localhost")),
            Level::Restricted,
            Version::Latest
        )
        .is_empty());
        let v = run_on(
            &restricted_pod(None, None),
            Level::Restricted,
            Version::Latest,
        );
        assert_eq!(
            fields(&v),
            ["spec.containers[0].securityContext.seccompProfile.type"]
        );
        assert!(v[0].message.contains("or set it on the pod"));
        // A bad pod-level value is reported once, at the pod.
        let v = run_on(
            &restricted_pod(Some("Unconfined"), None),
            Level::Restricted,
            Version::Latest,
        );
        assert_eq!(fields(&v), ["spec.securityContext.seccompProfile.type"]);
    }

    #[test]
    fn restricted_seccomp_absent_before_v1_19() {
        let s = restricted_pod(None, None);
        assert!(run_on(&s, Level::Restricted, Version::Minor(18)).is_empty());
        assert!(!run_on(&s, Level::Restricted, Version::Minor(19)).is_empty());
    }

    #[test]
    fn annotations_before_v1_19_fields_after() {
        let s = restricted_pod(None, Some("Unconfined"));
        let ann = annotations(&[
            ("seccomp.security.alpha.kubernetes.io/pod", "unconfined"),
            (
                "container.seccomp.security.alpha.kubernetes.io/app",
                "docker/default",
            ),
            (
                "container.seccomp.security.alpha.kubernetes.io/other",
                "unconfined",
            ),
        ]);
        let v = run_with(
            &s,
            &ann,
            "spec",
            "metadata",
            Level::Baseline,
            Version::Minor(18),
        );
        assert_eq!(
            fields(&v),
            ["metadata.annotations['seccomp.security.alpha.kubernetes.io/pod']"]
        );
        let v = run_with(
            &s,
            &ann,
            "spec",
            "metadata",
            Level::Baseline,
            Version::Minor(19),
        );
        assert_eq!(
            fields(&v),
            ["spec.containers[0].securityContext.seccompProfile.type"]
        );

        let ann = annotations(&[("container.seccomp.security.alpha.kubernetes.io/app", "")]);
        let v = run_with(
            &s,
            &ann,
            "spec",
            "metadata",
            Level::Restricted,
            Version::Minor(10),
        );
        assert_eq!(
            fields(&v),
            ["metadata.annotations['container.seccomp.security.alpha.kubernetes.io/app']"]
        );
        assert_eq!(v[0].rule, Rule::SeccompBaseline);
    }

    #[test]
    fn windows_pods_unchecked_at_restricted_from_v1_25() {
        let mut s = restricted_pod(Some("Unconfined"), None);
        s.os = Some(k8s_openapi::api::core::v1::PodOS {
            name: "windows".into(),
        });
        assert!(!run_on(&s, Level::Restricted, Version::Minor(24)).is_empty());
        assert!(run_on(&s, Level::Restricted, Version::Minor(25)).is_empty());
        assert_eq!(
            run_on(&s, Level::Baseline, Version::Minor(25))[0].rule,
            Rule::SeccompBaseline
        );
    }
}
