//! SELinux options (baseline).
//!
//! Version history: `seLinuxOptions.type` may be empty, `container_t`, `container_init_t` or
//! `container_kvm_t`; v1.31 adds `container_engine_t`. `user` and `role` must be empty at every
//! version. Pod and container options are checked independently.

use super::super::finding::Violation;
use super::super::rules::Rule;
use super::visit::Cx;
use k8s_openapi::api::core::v1::SELinuxOptions;

const ENGINE_TYPE_SINCE: u32 = 31;

fn allowed_type(t: &str, minor: u32) -> bool {
    match t {
        "" | "container_t" | "container_init_t" | "container_kvm_t" => true,
        "container_engine_t" => minor >= ENGINE_TYPE_SINCE,
        _ => false,
    }
}

pub(super) fn baseline(cx: &Cx<'_>, out: &mut Vec<Violation>) {
    if let Some(o) = cx.pod_sc().and_then(|sc| sc.se_linux_options.as_ref()) {
        options(cx, o, "pod", |f| cx.spec_field(f), out);
    }
    for c in cx.containers() {
        if let Some(o) = c.sc.and_then(|sc| sc.se_linux_options.as_ref()) {
            options(cx, o, &c.label(), |f| c.field(cx, f), out);
        }
    }
}

/// One violation per offending option (`type`, `user`, `role`).
fn options(
    cx: &Cx<'_>,
    o: &SELinuxOptions,
    who: &str,
    path: impl Fn(&str) -> String,
    out: &mut Vec<Violation>,
) {
    let t = o.type_.as_deref().unwrap_or_default();
    if !allowed_type(t, cx.minor) {
        let allowed = if cx.minor >= ENGINE_TYPE_SINCE {
            "container_t, container_init_t, container_kvm_t or container_engine_t"
        } else {
            "container_t, container_init_t or container_kvm_t"
        };
        out.push(Violation::new(
            Rule::SeLinux,
            path("securityContext.seLinuxOptions.type"),
            format!("{who} must not set securityContext.seLinuxOptions.type to {t:?}; leave it unset or use {allowed}"),
        ));
    }
    for (name, value) in [("user", &o.user), ("role", &o.role)] {
        if value.as_deref().is_some_and(|v| !v.is_empty()) {
            out.push(Violation::new(
                Rule::SeLinux,
                path(&format!("securityContext.seLinuxOptions.{name}")),
                format!("{who} must not set securityContext.seLinuxOptions.{name}; remove it"),
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
    fn each_option_reported_and_engine_type_from_v1_31() {
        let s = spec(json!({
            "securityContext": {"seLinuxOptions": {"type": "container_engine_t", "level": "s0:c1"}},
            "initContainers": [{"name": "i", "securityContext": {"seLinuxOptions": {"type": "spc_t", "user": "u", "role": ""}}}],
            "containers": [{"name": "a", "securityContext": {"seLinuxOptions": {"role": "r"}}}],
        }));
        let v = run_on(&s, Level::Baseline, Version::Minor(30));
        assert_eq!(
            fields(&v),
            [
                "spec.securityContext.seLinuxOptions.type",
                "spec.initContainers[0].securityContext.seLinuxOptions.type",
                "spec.initContainers[0].securityContext.seLinuxOptions.user",
                "spec.containers[0].securityContext.seLinuxOptions.role",
            ]
        );
        let v = run_on(&s, Level::Baseline, Version::Minor(31));
        assert_eq!(v.len(), 3);
        assert!(v.iter().all(|v| v.rule == Rule::SeLinux));
    }
}
