//! The grantable ceiling: generated Roles may grant only what the cluster admin's ceiling
//! ClusterRole (`palisade-grantable`, aggregated) holds, which Palisade is bound to. The API
//! server then checks every generated Role against Palisade's own permissions, so Palisade needs
//! no `escalate` or `bind`; a rule outside the ceiling is left out here, before the API server
//! would refuse the whole Role, and reported.

use k8s_openapi::api::rbac::v1::PolicyRule;

fn matches(allowed: &[String], wanted: &str) -> bool {
    allowed.iter().any(|a| a == "*" || a == wanted)
}

/// Does the RBAC authorizer let `ceiling` do everything `rule` grants? Every (group, resource,
/// verb) of the rule must be covered by one ceiling rule, whose resourceNames, if any, must
/// include all of the rule's (a rule without resourceNames needs a ceiling rule without them).
/// A ceiling `*` covers everything it stands for, subresources included, as the authorizer does.
pub fn covers(ceiling: &[PolicyRule], rule: &PolicyRule) -> bool {
    let groups = rule.api_groups.as_deref().unwrap_or_default();
    let resources = rule.resources.as_deref().unwrap_or_default();
    let names = rule.resource_names.as_deref().unwrap_or_default();
    if rule
        .non_resource_urls
        .as_ref()
        .is_some_and(|u| !u.is_empty())
    {
        return false; // Roles cannot grant them; never hand them out
    }
    groups.iter().all(|g| {
        resources.iter().all(|r| {
            rule.verbs.iter().all(|v| {
                ceiling.iter().any(|c| {
                    let c_names = c.resource_names.as_deref().unwrap_or_default();
                    matches(c.api_groups.as_deref().unwrap_or_default(), g)
                        && matches(c.resources.as_deref().unwrap_or_default(), r)
                        && matches(&c.verbs, v)
                        && (c_names.is_empty()
                            || (!names.is_empty() && names.iter().all(|n| c_names.contains(n))))
                })
            })
        })
    })
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

    #[test]
    fn every_group_resource_verb_must_be_covered() {
        let ceiling = [
            rule(&[""], &["configmaps"], &["get", "list", "watch"], &[]),
            rule(&["apps"], &["deployments"], &["get"], &[]),
        ];
        assert!(covers(
            &ceiling,
            &rule(&[""], &["configmaps"], &["get", "list"], &[])
        ));
        assert!(!covers(
            &ceiling,
            &rule(&[""], &["configmaps"], &["get", "delete"], &[])
        ));
        assert!(!covers(
            &ceiling,
            &rule(&[""], &["configmaps", "secrets"], &["get"], &[])
        ));
        assert!(!covers(
            &ceiling,
            &rule(&["", "apps"], &["configmaps"], &["get"], &[])
        ));
        assert!(covers(
            &ceiling,
            &rule(&["apps"], &["deployments"], &["get"], &["web"])
        ));
        assert!(!covers(&[], &rule(&[""], &["configmaps"], &["get"], &[])));
    }

    #[test]
    fn resource_names_and_wildcards() {
        let named = [rule(&[""], &["secrets"], &["get"], &["tls", "db"])];
        assert!(covers(
            &named,
            &rule(&[""], &["secrets"], &["get"], &["db"])
        ));
        assert!(!covers(
            &named,
            &rule(&[""], &["secrets"], &["get"], &["db", "other"])
        ));
        assert!(
            !covers(&named, &rule(&[""], &["secrets"], &["get"], &[])),
            "all secrets"
        );
        let wild = [rule(&["*"], &["*"], &["get"], &[])];
        assert!(covers(
            &wild,
            &rule(&["apps"], &["deployments/scale"], &["get"], &[])
        ));
        assert!(!covers(
            &wild,
            &rule(&["apps"], &["deployments"], &["patch"], &[])
        ));
    }
}
