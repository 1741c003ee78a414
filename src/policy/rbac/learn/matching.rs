//! Does an RBAC rule allow an access? The authorizer's rule matching (k8s.io/kubernetes
//! plugin/pkg/auth/authorizer/rbac), for one request.

use super::event::{Access, Target};
use k8s_openapi::api::rbac::v1::PolicyRule;

fn has(list: &[String], wanted: &str) -> bool {
    list.iter().any(|x| x == "*" || x == wanted)
}

/// `pods/exec` is matched by `pods/exec`, `pods/*`, `*/exec` and `*`.
fn resource_matches(rules: &[String], wanted: &str) -> bool {
    let (base, sub) = wanted.split_once('/').unwrap_or((wanted, ""));
    rules.iter().any(|r| {
        r == "*"
            || r == wanted
            || (!sub.is_empty() && (*r == format!("{base}/*") || *r == format!("*/{sub}")))
    })
}

/// `/apis/*` matches every path under `/apis/`; `*` every path.
fn url_matches(rules: &[String], path: &str) -> bool {
    rules
        .iter()
        .any(|u| u == "*" || u == path || u.strip_suffix('*').is_some_and(|p| path.starts_with(p)))
}

/// The rule allows the access (its namespace is the caller's business: a Role or RoleBinding
/// only applies in its own namespace).
pub fn allows(rule: &PolicyRule, access: &Access) -> bool {
    if !has(&rule.verbs, &access.verb) {
        return false;
    }
    match &access.target {
        Target::Resource {
            group,
            resource,
            name,
            ..
        } => {
            let names = rule.resource_names.as_deref().unwrap_or_default();
            has(rule.api_groups.as_deref().unwrap_or_default(), group)
                && resource_matches(rule.resources.as_deref().unwrap_or_default(), resource)
                && (names.is_empty() || (!name.is_empty() && names.contains(name)))
        }
        Target::NonResource { path } => {
            url_matches(rule.non_resource_urls.as_deref().unwrap_or_default(), path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str], names: &[&str]) -> PolicyRule {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        PolicyRule {
            api_groups: Some(v(groups)),
            resources: Some(v(resources)),
            verbs: v(verbs),
            resource_names: (!names.is_empty()).then(|| v(names)),
            non_resource_urls: None,
        }
    }

    fn access(verb: &str, group: &str, resource: &str, name: &str) -> Access {
        Access {
            verb: verb.into(),
            target: Target::Resource {
                group: group.into(),
                resource: resource.into(),
                namespace: "shop".into(),
                name: name.into(),
            },
        }
    }

    #[test]
    fn verbs_groups_resources_and_names() {
        let r = rule(&[""], &["configmaps"], &["get"], &["settings"]);
        assert!(allows(&r, &access("get", "", "configmaps", "settings")));
        assert!(!allows(&r, &access("get", "", "configmaps", "other")));
        assert!(
            !allows(&r, &access("get", "", "configmaps", "")),
            "a list is not one name"
        );
        assert!(!allows(&r, &access("list", "", "configmaps", "")));
        assert!(!allows(
            &r,
            &access("get", "apps", "configmaps", "settings")
        ));
        let wild = rule(&["*"], &["*"], &["*"], &[]);
        assert!(allows(
            &wild,
            &access("create", "apps", "deployments/scale", "web")
        ));
    }

    #[test]
    fn subresources_match_as_the_authorizer_matches_them() {
        let exec = access("create", "", "pods/exec", "web");
        assert!(allows(&rule(&[""], &["pods/*"], &["create"], &[]), &exec));
        assert!(allows(&rule(&[""], &["*/exec"], &["create"], &[]), &exec));
        assert!(!allows(&rule(&[""], &["pods"], &["create"], &[]), &exec));
        assert!(!allows(
            &rule(&[""], &["pods/*"], &["create"], &[]),
            &access("create", "", "pods", "")
        ));
    }

    #[test]
    fn non_resource_urls() {
        let mut r = rule(&[], &[], &["get"], &[]);
        r.non_resource_urls = Some(vec!["/healthz".into(), "/apis/*".into()]);
        let url = |p: &str| Access {
            verb: "get".into(),
            target: Target::NonResource { path: p.into() },
        };
        assert!(allows(&r, &url("/healthz")));
        assert!(allows(&r, &url("/apis/apps/v1")));
        assert!(!allows(&r, &url("/metrics")));
        assert!(!allows(&r, &access("get", "", "healthz", "")));
    }
}
