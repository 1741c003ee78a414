//! Users (restricted): runAsNonRoot and runAsUser.
//!
//! Version history:
//! - runAsNonRoot (v1.0+): every container must effectively run with `runAsNonRoot: true`
//!   (its own setting, else the pod's). From v1.35 pods with `hostUsers: false` are exempt.
//! - runAsUser (v1.23+): neither the pod nor any container may set `runAsUser: 0`. From v1.35 pods
//!   with `hostUsers: false` are exempt.
//!
//! Reporting (PSA reports a pod-level `false` ahead of containers that merely inherit it):
//! - pod sets `runAsNonRoot: false`: one violation at the pod field; containers that inherit it are
//!   fixed by fixing the pod, so they are not reported again;
//! - a container sets `runAsNonRoot: false`: one violation at that container's field (a pod-level
//!   `true` does not help, the container overrides it);
//! - pod leaves it unset: one violation per container that leaves it unset too, at the container's
//!   field, saying it can be set there or once on the pod.

use super::super::finding::Violation;
use super::super::rules::Rule;
use super::visit::Cx;

pub(super) const RUN_AS_USER_SINCE: u32 = 23;
const USERNS_RELAXED_SINCE: u32 = 35;

fn relaxed(cx: &Cx<'_>) -> bool {
    cx.minor >= USERNS_RELAXED_SINCE && cx.in_user_namespace()
}

pub(super) fn run_as_non_root(cx: &Cx<'_>, out: &mut Vec<Violation>) {
    if relaxed(cx) {
        return;
    }
    const FIELD: &str = "securityContext.runAsNonRoot";
    let pod = cx.pod_sc().and_then(|sc| sc.run_as_non_root);
    if pod == Some(false) {
        out.push(Violation::new(
            Rule::RunAsNonRoot,
            cx.spec_field(FIELD),
            "pod must set securityContext.runAsNonRoot=true, not false",
        ));
    }
    for c in cx.containers() {
        match c.sc.and_then(|sc| sc.run_as_non_root) {
            Some(true) => {}
            Some(false) => out.push(Violation::new(
                Rule::RunAsNonRoot,
                c.field(cx, FIELD),
                format!(
                    "{} must set securityContext.runAsNonRoot=true, not false",
                    c.label()
                ),
            )),
            None if pod.is_none() => out.push(Violation::new(
                Rule::RunAsNonRoot,
                c.field(cx, FIELD),
                format!(
                    "{} must set securityContext.runAsNonRoot=true (or set it on the pod)",
                    c.label()
                ),
            )),
            None => {}
        }
    }
}

pub(super) fn run_as_user(cx: &Cx<'_>, out: &mut Vec<Violation>) {
    if relaxed(cx) {
        return;
    }
    const FIELD: &str = "securityContext.runAsUser";
    if cx.pod_sc().and_then(|sc| sc.run_as_user) == Some(0) {
        out.push(Violation::new(
            Rule::RunAsUser,
            cx.spec_field(FIELD),
            "pod must not set securityContext.runAsUser=0; use a non-zero UID",
        ));
    }
    for c in cx.containers() {
        if c.sc.and_then(|sc| sc.run_as_user) == Some(0) {
            out.push(Violation::new(
                Rule::RunAsUser,
                c.field(cx, FIELD),
                format!(
                    "{} must not set securityContext.runAsUser=0; use a non-zero UID",
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

    fn pod(
        pod_sc: serde_json::Value,
        app_sc: serde_json::Value,
    ) -> k8s_openapi::api::core::v1::PodSpec {
        let mut app_sc = app_sc;
        app_sc["allowPrivilegeEscalation"] = json!(false);
        app_sc["capabilities"] = json!({"drop": ["ALL"]});
        let mut pod_sc = pod_sc;
        pod_sc["seccompProfile"] = json!({"type": "RuntimeDefault"});
        spec(json!({
            "securityContext": pod_sc,
            "containers": [
                {"name": "app", "securityContext": app_sc},
                {"name": "side", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}},
            ],
        }))
    }

    #[test]
    fn container_false_overrides_pod_true() {
        let s = pod(
            json!({"runAsNonRoot": true}),
            json!({"runAsNonRoot": false}),
        );
        let v = run_on(&s, Level::Restricted, Version::Latest);
        assert_eq!(
            fields(&v),
            ["spec.containers[0].securityContext.runAsNonRoot"]
        );
        assert_eq!(v[0].rule, Rule::RunAsNonRoot);
    }

    #[test]
    fn unset_everywhere_reports_each_container() {
        let s = pod(json!({}), json!({"runAsNonRoot": true}));
        let v = run_on(&s, Level::Restricted, Version::Latest);
        assert_eq!(
            fields(&v),
            ["spec.containers[1].securityContext.runAsNonRoot"]
        );
        assert_eq!(
            v[0].message,
            "container \"side\" must set securityContext.runAsNonRoot=true (or set it on the pod)"
        );
        // A pod-level false is reported once, at the pod.
        let s = pod(
            json!({"runAsNonRoot": false}),
            json!({"runAsNonRoot": true}),
        );
        let v = run_on(&s, Level::Restricted, Version::Latest);
        assert_eq!(fields(&v), ["spec.securityContext.runAsNonRoot"]);
    }

    #[test]
    fn deployment_template_paths() {
        let s = pod(json!({"runAsUser": 0}), json!({"runAsUser": 0}));
        let v = run_with(
            &s,
            &annotations(&[]),
            "spec.template.spec",
            "spec.template.metadata",
            Level::Restricted,
            Version::Latest,
        );
        assert_eq!(
            fields(&v),
            [
                "spec.template.spec.containers[0].securityContext.runAsNonRoot",
                "spec.template.spec.containers[1].securityContext.runAsNonRoot",
                "spec.template.spec.securityContext.runAsUser",
                "spec.template.spec.containers[0].securityContext.runAsUser",
            ]
        );
    }

    #[test]
    fn run_as_user_from_v1_23_and_host_users_false_from_v1_35() {
        let mut s = pod(json!({"runAsNonRoot": false, "runAsUser": 0}), json!({}));
        assert_eq!(run_on(&s, Level::Restricted, Version::Minor(22)).len(), 1);
        assert_eq!(run_on(&s, Level::Restricted, Version::Minor(23)).len(), 2);
        s.host_users = Some(false);
        assert_eq!(run_on(&s, Level::Restricted, Version::Minor(34)).len(), 2);
        assert!(run_on(&s, Level::Restricted, Version::Minor(35)).is_empty());
        assert!(run_on(&s, Level::Restricted, Version::Latest).is_empty());
        s.host_users = Some(true);
        assert_eq!(run_on(&s, Level::Restricted, Version::Latest).len(), 2);
    }

    #[test]
    fn windows_pods_still_need_run_as_non_root() {
        let mut s = pod(json!({}), json!({}));
        s.os = Some(k8s_openapi::api::core::v1::PodOS {
            name: "windows".into(),
        });
        let v = run_on(&s, Level::Restricted, Version::Latest);
        assert_eq!(v.len(), 2);
        assert!(v.iter().all(|v| v.rule == Rule::RunAsNonRoot));
    }
}
