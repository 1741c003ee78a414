//! AppArmor (baseline, unchanged since v1.0).
//!
//! Both the `appArmorProfile.type` fields (pod and containers) and the legacy
//! `container.apparmor.security.beta.kubernetes.io/*` annotations are read at every version.
//! Fields may be `RuntimeDefault` or `Localhost`; annotations may be empty, `runtime/default` or
//! `localhost/<profile>`. Every annotation with that prefix counts, whether or not a container of
//! that name exists.

use super::super::finding::Violation;
use super::super::rules::Rule;
use super::visit::Cx;
use std::ops::Bound;

const ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";
const FIELD: &str = "securityContext.appArmorProfile.type";

fn allowed_type(t: &str) -> bool {
    t == "RuntimeDefault" || t == "Localhost"
}

fn allowed_annotation(v: &str) -> bool {
    v.is_empty() || v == "runtime/default" || v.starts_with("localhost/")
}

pub(super) fn baseline(cx: &Cx<'_>, out: &mut Vec<Violation>) {
    if let Some(p) = cx.pod_sc().and_then(|sc| sc.app_armor_profile.as_ref()) {
        if !allowed_type(&p.type_) {
            out.push(Violation::new(
                Rule::AppArmor,
                cx.spec_field(FIELD),
                format!(
                    "pod must not set securityContext.appArmorProfile.type to {:?}; use \"RuntimeDefault\" or \"Localhost\"",
                    p.type_
                ),
            ));
        }
    }
    for c in cx.containers() {
        if let Some(p) = c.sc.and_then(|sc| sc.app_armor_profile.as_ref()) {
            if !allowed_type(&p.type_) {
                out.push(Violation::new(
                    Rule::AppArmor,
                    c.field(cx, FIELD),
                    format!(
                        "{} must not set securityContext.appArmorProfile.type to {:?}; use \"RuntimeDefault\" or \"Localhost\"",
                        c.label(),
                        p.type_
                    ),
                ));
            }
        }
    }
    let keys = cx
        .pod
        .annotations
        .range::<str, _>((Bound::Included(ANNOTATION_PREFIX), Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(ANNOTATION_PREFIX));
    for (k, v) in keys {
        if !allowed_annotation(v) {
            out.push(Violation::new(
                Rule::AppArmor,
                cx.pod.annotation_path(k),
                format!(
                    "annotation {k} must not set AppArmor profile {v:?}; use \"runtime/default\" or \"localhost/<profile>\" (or securityContext.appArmorProfile)"
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
    fn fields_and_annotations_at_every_version() {
        let s = spec(json!({
            "securityContext": {"appArmorProfile": {"type": "Unconfined"}},
            "containers": [{"name": "app", "securityContext": {"appArmorProfile": {"type": "RuntimeDefault"}}}],
            "ephemeralContainers": [{"name": "dbg", "securityContext": {"appArmorProfile": {"type": "Unconfined"}}}],
        }));
        let ann = annotations(&[
            (
                "container.apparmor.security.beta.kubernetes.io/app",
                "unconfined",
            ),
            (
                "container.apparmor.security.beta.kubernetes.io/ok",
                "localhost/custom",
            ),
            ("container.apparmor.security.beta.kubernetes.io/empty", ""),
            ("other.example.com/x", "unconfined"),
        ]);
        for version in [Version::Minor(0), Version::Minor(29), Version::Latest] {
            let v = run_with(
                &s,
                &ann,
                "spec.template.spec",
                "spec.template.metadata",
                Level::Baseline,
                version,
            );
            assert_eq!(
                fields(&v),
                [
                    "spec.template.spec.securityContext.appArmorProfile.type",
                    "spec.template.spec.ephemeralContainers[0].securityContext.appArmorProfile.type",
                    "spec.template.metadata.annotations['container.apparmor.security.beta.kubernetes.io/app']",
                ],
                "{version}"
            );
            assert!(v.iter().all(|v| v.rule == Rule::AppArmor));
        }
    }
}
