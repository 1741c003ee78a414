//! The smallest set of rules, without wildcards, that allows exactly what an account did.
//!
//! - Scope: a request in a namespace needs a Role there; a request on a cluster-scoped resource
//!   or across all namespaces, or a non-resource URL, needs a ClusterRole.
//! - Verbs are taken as they were used (no "watch implies list" expansion: a watch without a
//!   list is what the account did, and all it gets).
//! - `resourceNames` are kept for the verbs the authorizer can limit by name (get, update,
//!   patch, delete), unless the account creates objects of that resource there (it would then
//!   need names it has not made yet) or one of the requests had no name.
//! - Requests every authenticated user may make anyway (discovery, self-reviews: the bootstrap
//!   policy's `system:authenticated` bindings) need no rule.
//! - Rules with the same group, verbs and names are merged over resources; output is sorted, so
//!   the same usage always gives the same rules.

use super::event::{Access, Target};
use super::matching::allows;
use crate::policy::rbac::bootstrap::granted_to_every_user;
use k8s_openapi::api::rbac::v1::PolicyRule;
use std::collections::{BTreeMap, BTreeSet};

const NAMED_VERBS: [&str; 4] = ["get", "update", "patch", "delete"];

/// Learned rules: a Role's per namespace and one ClusterRole's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LearnedRules {
    pub namespaced: BTreeMap<String, Vec<PolicyRule>>,
    pub cluster: Vec<PolicyRule>,
}

impl LearnedRules {
    pub fn is_empty(&self) -> bool {
        self.namespaced.is_empty() && self.cluster.is_empty()
    }
}

/// (group, resource) -> verb -> names (`None`: any name).
type Atoms = BTreeMap<(String, String), BTreeMap<String, Option<BTreeSet<String>>>>;

#[derive(Default)]
struct Scope {
    atoms: Atoms,
    /// (group, resource) the account created in this scope.
    creates: BTreeSet<(String, String)>,
    /// path -> verbs (cluster scope only).
    urls: BTreeMap<String, BTreeSet<String>>,
}

/// The minimal rules allowing every access.
pub fn minimal_rules<'a>(accesses: impl IntoIterator<Item = &'a Access>) -> LearnedRules {
    let everyone = granted_to_every_user();
    let mut scopes: BTreeMap<String, Scope> = BTreeMap::new(); // "" = cluster
    for access in accesses {
        if everyone.iter().any(|r| allows(r, access)) {
            continue;
        }
        match &access.target {
            Target::Resource {
                group,
                resource,
                namespace,
                name,
            } => {
                let scope = scopes.entry(namespace.clone()).or_default();
                let key = (group.clone(), resource.clone());
                if access.verb == "create" {
                    scope.creates.insert(key.clone());
                }
                let named = NAMED_VERBS.contains(&access.verb.as_str()) && !name.is_empty();
                let slot = scope
                    .atoms
                    .entry(key)
                    .or_default()
                    .entry(access.verb.clone())
                    .or_insert_with(|| Some(BTreeSet::new()));
                match (slot.as_mut(), named) {
                    (Some(names), true) => {
                        names.insert(name.clone());
                    }
                    _ => *slot = None,
                }
            }
            Target::NonResource { path } => {
                scopes
                    .entry(String::new())
                    .or_default()
                    .urls
                    .entry(path.clone())
                    .or_default()
                    .insert(access.verb.clone());
            }
        }
    }
    let mut learned = LearnedRules::default();
    for (ns, scope) in scopes {
        let rules = scope_rules(scope);
        if rules.is_empty() {
            continue;
        }
        if ns.is_empty() {
            learned.cluster = rules;
        } else {
            learned.namespaced.insert(ns, rules);
        }
    }
    learned
}

fn scope_rules(scope: Scope) -> Vec<PolicyRule> {
    // (group, verbs, names) -> resources
    let mut merged: BTreeMap<(String, BTreeSet<String>, BTreeSet<String>), BTreeSet<String>> =
        BTreeMap::new();
    for ((group, resource), verbs) in scope.atoms {
        let creates = scope.creates.contains(&(group.clone(), resource.clone()));
        // names -> verbs ("" set = any name)
        let mut by_names: BTreeMap<BTreeSet<String>, BTreeSet<String>> = BTreeMap::new();
        for (verb, names) in verbs {
            let names = match names {
                Some(n) if !creates => n,
                _ => BTreeSet::new(),
            };
            by_names.entry(names).or_default().insert(verb);
        }
        // Verbs allowed on any name already cover the same verbs on some names.
        let any: BTreeSet<String> = by_names.get(&BTreeSet::new()).cloned().unwrap_or_default();
        for (names, verbs) in by_names {
            let verbs: BTreeSet<String> = if names.is_empty() {
                verbs
            } else {
                verbs.difference(&any).cloned().collect()
            };
            if !verbs.is_empty() {
                merged
                    .entry((group.clone(), verbs, names))
                    .or_default()
                    .insert(resource.clone());
            }
        }
    }
    let mut rules: Vec<PolicyRule> = merged
        .into_iter()
        .map(|((group, verbs, names), resources)| PolicyRule {
            api_groups: Some(vec![group]),
            resources: Some(resources.into_iter().collect()),
            resource_names: (!names.is_empty()).then(|| names.into_iter().collect()),
            verbs: verbs.into_iter().collect(),
            non_resource_urls: None,
        })
        .collect();
    let mut urls: BTreeMap<BTreeSet<String>, Vec<String>> = BTreeMap::new();
    for (path, verbs) in scope.urls {
        urls.entry(verbs).or_default().push(path);
    }
    rules.extend(urls.into_iter().map(|(verbs, paths)| PolicyRule {
        api_groups: None,
        resources: None,
        resource_names: None,
        verbs: verbs.into_iter().collect(),
        non_resource_urls: Some(paths),
    }));
    rules
}

/// One line per rule: `get,list configmaps[settings]` / `get /metrics` (for messages).
pub fn summary(rules: &[PolicyRule]) -> Vec<String> {
    rules
        .iter()
        .map(|r| {
            let verbs = r.verbs.join(",");
            if let Some(urls) = &r.non_resource_urls {
                return format!("{verbs} {}", urls.join(","));
            }
            let group = r
                .api_groups
                .as_deref()
                .unwrap_or_default()
                .first()
                .filter(|g| !g.is_empty())
                .map(|g| format!("{g}/"))
                .unwrap_or_default();
            let resources: Vec<String> = r
                .resources
                .iter()
                .flatten()
                .map(|res| format!("{group}{res}"))
                .collect();
            let names = r
                .resource_names
                .as_ref()
                .map(|n| format!("[{}]", n.join(",")))
                .unwrap_or_default();
            format!("{verbs} {}{names}", resources.join(","))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(verb: &str, group: &str, resource: &str, ns: &str, name: &str) -> Access {
        Access {
            verb: verb.into(),
            target: Target::Resource {
                group: group.into(),
                resource: resource.into(),
                namespace: ns.into(),
                name: name.into(),
            },
        }
    }

    #[test]
    fn names_verbs_and_scopes() {
        let used = [
            access("get", "", "configmaps", "shop", "settings"),
            access("list", "", "pods", "shop", ""),
            access("watch", "", "pods", "shop", ""),
            access("create", "", "events", "shop", ""),
            access("patch", "", "events", "shop", "e1"),
            access("get", "apps", "deployments", "shop", "web"),
            access("update", "apps", "deployments/scale", "shop", "web"),
            access("list", "", "namespaces", "", ""),
            access("get", "", "nodes", "", "n1"),
        ];
        let learned = minimal_rules(&used);
        assert_eq!(
            summary(&learned.namespaced["shop"]),
            [
                "create,patch events",
                "get configmaps[settings]",
                "list,watch pods",
                "get apps/deployments[web]",
                "update apps/deployments/scale[web]",
            ]
        );
        assert_eq!(
            summary(&learned.cluster),
            ["get nodes[n1]", "list namespaces"]
        );
    }

    #[test]
    fn any_name_covers_named_and_rules_merge_over_resources() {
        let used = [
            access("get", "", "configmaps", "shop", "a"),
            access("get", "", "configmaps", "shop", ""),
            access("delete", "", "configmaps", "shop", "a"),
            access("get", "", "secrets", "shop", "a"),
            access("get", "", "services", "shop", ""),
        ];
        let learned = minimal_rules(&used);
        assert_eq!(
            summary(&learned.namespaced["shop"]),
            [
                "delete configmaps[a]",
                "get configmaps,services",
                "get secrets[a]"
            ]
        );
        for rule in &learned.namespaced["shop"] {
            assert!(!rule.verbs.iter().any(|v| v.contains('*')));
        }
    }

    #[test]
    fn discovery_needs_no_rule_and_urls_are_cluster_rules() {
        let url = |verb: &str, p: &str| Access {
            verb: verb.into(),
            target: Target::NonResource { path: p.into() },
        };
        let used = [
            url("get", "/api"),
            url("get", "/apis/apps/v1"),
            url("get", "/version"),
            access(
                "create",
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                "",
                "",
            ),
            url("get", "/metrics"),
        ];
        let learned = minimal_rules(&used);
        assert!(learned.namespaced.is_empty());
        assert_eq!(summary(&learned.cluster), ["get /metrics"]);
        assert!(minimal_rules(&used[..4]).is_empty());
    }

    #[test]
    fn deterministic() {
        let mut used = vec![
            access("get", "", "configmaps", "b", "x"),
            access("list", "", "pods", "a", ""),
            access("get", "", "configmaps", "b", "y"),
        ];
        let one = minimal_rules(&used);
        used.reverse();
        assert_eq!(minimal_rules(&used), one);
    }
}
