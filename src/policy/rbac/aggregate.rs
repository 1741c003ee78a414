//! Aggregated ClusterRoles (`aggregationRule.clusterRoleSelectors`), computed the way the API
//! server's clusterrole-aggregation controller does: for each selector in order, the other
//! ClusterRoles whose labels match, sorted by name, contribute their rules, skipping rules already
//! present. A live cluster stores the result in `rules`; offline manifests usually leave it empty,
//! so the aggregate is computed only when `rules` is empty (transitively: an aggregated source
//! contributes its own aggregate). An invalid selector makes the controller give up on the role, so
//! its rules stay empty here too.
//!
//! Cost: every aggregating ClusterRole's selectors are matched against every ClusterRole, like the
//! controller does; clusters have a handful of aggregating roles.

use crate::policy::selector::Selector;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A rule of a ClusterRole, and the ClusterRole it was aggregated from (`None`: its own rule).
#[derive(Clone, Copy, Debug)]
pub(super) struct Sourced<'a> {
    pub rule: &'a PolicyRule,
    pub from: Option<&'a str>,
}

pub(super) struct Aggregation<'a> {
    /// Computed rules of aggregating ClusterRoles whose stored rules are empty.
    computed: HashMap<&'a str, Vec<Sourced<'a>>>,
    /// ClusterRole name -> aggregating ClusterRoles that pull in its rules (sorted, unique).
    into: HashMap<&'a str, Vec<&'a str>>,
}

fn name(cr: &ClusterRole) -> &str {
    cr.metadata.name.as_deref().unwrap_or_default()
}

fn stored(cr: &ClusterRole) -> &[PolicyRule] {
    cr.rules.as_deref().unwrap_or_default()
}

fn selectors(cr: &ClusterRole) -> &[LabelSelector] {
    cr.aggregation_rule
        .as_ref()
        .and_then(|a| a.cluster_role_selectors.as_deref())
        .unwrap_or_default()
}

impl<'a> Aggregation<'a> {
    pub fn new(cluster_roles: &[&'a ClusterRole]) -> Self {
        // By name, first occurrence wins (a cluster holds one ClusterRole per name).
        let mut by_name: Vec<&'a ClusterRole> = cluster_roles.to_vec();
        by_name.sort_by(|a, b| name(a).cmp(name(b)));
        by_name.dedup_by(|a, b| name(a) == name(b));

        let mut sources: HashMap<&'a str, Vec<&'a ClusterRole>> = HashMap::new();
        let mut into: HashMap<&'a str, Vec<&'a str>> = HashMap::new();
        for &cr in &by_name {
            let sels = selectors(cr);
            if sels.is_empty() {
                continue;
            }
            let me = name(cr);
            let mut found = Vec::new();
            let compiled: Result<Vec<Selector>, _> = sels.iter().map(Selector::compile).collect();
            let empty = BTreeMap::new();
            for sel in compiled.iter().flatten() {
                for &other in &by_name {
                    let labels = other.metadata.labels.as_ref().unwrap_or(&empty);
                    if name(other) != me && sel.matches(labels) {
                        found.push(other);
                    }
                }
            }
            let mut unique: Vec<&'a str> = found.iter().map(|c| name(c)).collect();
            unique.sort_unstable();
            unique.dedup();
            for src in unique {
                into.entry(src).or_default().push(me);
            }
            sources.insert(me, found);
        }
        for v in into.values_mut() {
            v.sort_unstable();
        }

        let mut agg = Aggregation {
            computed: HashMap::new(),
            into,
        };
        let mut memo: HashMap<&'a str, Option<Vec<Sourced<'a>>>> = HashMap::new();
        for &cr in &by_name {
            if !selectors(cr).is_empty() && stored(cr).is_empty() {
                let rules = resolve(name(cr), &sources, &mut memo);
                agg.computed.insert(name(cr), rules);
            }
        }
        agg
    }

    /// The rules a ClusterRole grants: its stored rules, or its computed aggregate.
    pub fn rules(&self, cr: &'a ClusterRole) -> Vec<Sourced<'a>> {
        if stored(cr).is_empty() {
            if let Some(rules) = self.computed.get(name(cr)) {
                return rules.clone();
            }
        }
        stored(cr)
            .iter()
            .map(|rule| Sourced { rule, from: None })
            .collect()
    }

    /// The aggregating ClusterRoles that include this ClusterRole's rules.
    pub fn aggregated_into(&self, cluster_role: &str) -> &[&'a str] {
        self.into
            .get(cluster_role)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

type RuleKey<'a> = (
    &'a [String],
    &'a [String],
    &'a [String],
    &'a [String],
    &'a [String],
);

/// Nil and empty lists compare equal, as in the controller's semantic equality.
fn key(r: &PolicyRule) -> RuleKey<'_> {
    fn l(v: &Option<Vec<String>>) -> &[String] {
        v.as_deref().unwrap_or_default()
    }
    (
        l(&r.api_groups),
        l(&r.resources),
        l(&r.resource_names),
        l(&r.non_resource_urls),
        &r.verbs,
    )
}

/// The aggregate of `me`; `memo` holds `None` while `me` is being computed, which breaks cycles.
fn resolve<'a>(
    me: &'a str,
    sources: &HashMap<&'a str, Vec<&'a ClusterRole>>,
    memo: &mut HashMap<&'a str, Option<Vec<Sourced<'a>>>>,
) -> Vec<Sourced<'a>> {
    if let Some(done) = memo.get(me) {
        return done.clone().unwrap_or_default();
    }
    memo.insert(me, None);
    let mut rules = Vec::new();
    let mut seen = BTreeSet::new();
    for &src in sources.get(me).map(Vec::as_slice).unwrap_or_default() {
        let contributed: Vec<Sourced<'a>> =
            if stored(src).is_empty() && sources.contains_key(name(src)) {
                resolve(name(src), sources, memo)
            } else {
                stored(src)
                    .iter()
                    .map(|rule| Sourced {
                        rule,
                        from: Some(name(src)),
                    })
                    .collect()
            };
        for s in contributed {
            if seen.insert(key(s.rule)) {
                rules.push(s);
            }
        }
    }
    memo.insert(me, Some(rules.clone()));
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cr(yaml: &str) -> ClusterRole {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn computes_transitive_aggregate_in_controller_order() {
        let top = cr(r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: top}
aggregationRule:
  clusterRoleSelectors:
  - matchLabels: {agg: top}
"#);
        let mid = cr(r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: mid, labels: {agg: top}}
aggregationRule:
  clusterRoleSelectors:
  - matchExpressions: [{key: agg, operator: In, values: [mid]}]
"#);
        let b = cr(r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: b, labels: {agg: mid}}
rules:
- {apiGroups: [""], resources: [secrets], verbs: [get]}
- {apiGroups: [""], resources: [pods], verbs: [list]}
"#);
        let a = cr(r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: a, labels: {agg: top}}
rules:
- {apiGroups: [""], resources: [pods], verbs: [list]}
"#);
        let unrelated = cr(r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: c, labels: {agg: other}}
rules:
- {apiGroups: [""], resources: [nodes], verbs: [get]}
"#);
        let all = [&top, &mid, &b, &a, &unrelated];
        let agg = Aggregation::new(&all);
        let got: Vec<(String, Option<&str>)> = agg
            .rules(&top)
            .iter()
            .map(|s| (s.rule.resources.as_ref().unwrap()[0].clone(), s.from))
            .collect();
        // Sorted by name: `a` first, then `mid` (which contributes b's rules; pods/list is a duplicate).
        assert_eq!(
            got,
            vec![
                ("pods".to_string(), Some("a")),
                ("secrets".to_string(), Some("b")),
            ]
        );
        assert_eq!(agg.rules(&mid).len(), 2);
        assert_eq!(agg.rules(&b).len(), 2);
        assert!(agg.rules(&b).iter().all(|s| s.from.is_none()));
        assert_eq!(agg.aggregated_into("b"), ["mid"]);
        assert_eq!(agg.aggregated_into("a"), ["top"]);
        assert!(agg.aggregated_into("c").is_empty());
    }

    #[test]
    fn stored_rules_win_and_cycles_terminate() {
        let live = cr(r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: live, labels: {x: "1"}}
aggregationRule:
  clusterRoleSelectors: [{matchLabels: {x: "1"}}]
rules:
- {apiGroups: [""], resources: [configmaps], verbs: [get]}
"#);
        let other = cr(r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: other, labels: {x: "1"}}
aggregationRule:
  clusterRoleSelectors: [{matchLabels: {x: "1"}}]
"#);
        let all = [&live, &other];
        let agg = Aggregation::new(&all);
        assert_eq!(agg.rules(&live).len(), 1);
        assert!(agg.rules(&live)[0].from.is_none());
        // `other` aggregates `live` (stored rules); `live` would aggregate `other` but is stored.
        assert_eq!(agg.rules(&other).len(), 1);
        assert_eq!(agg.rules(&other)[0].from, Some("live"));

        let x = cr(r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: x, labels: {c: "1"}}
aggregationRule: {clusterRoleSelectors: [{matchLabels: {c: "2"}}]}
"#);
        let y = cr(r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: y, labels: {c: "2"}}
aggregationRule: {clusterRoleSelectors: [{matchLabels: {c: "1"}}]}
"#);
        let all = [&x, &y];
        let agg = Aggregation::new(&all);
        assert!(agg.rules(&x).is_empty());
        assert!(agg.rules(&y).is_empty());
    }

    #[test]
    fn invalid_selector_aggregates_nothing() {
        let bad = cr(r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: bad}
aggregationRule:
  clusterRoleSelectors:
  - matchLabels: {x: "1"}
  - matchExpressions: [{key: x, operator: In}]
"#);
        let src = cr(r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: src, labels: {x: "1"}}
rules:
- {apiGroups: [""], resources: [secrets], verbs: [get]}
"#);
        let all = [&bad, &src];
        let agg = Aggregation::new(&all);
        assert!(agg.rules(&bad).is_empty());
        assert!(agg.aggregated_into("src").is_empty());
    }
}
