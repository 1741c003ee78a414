//! `rbac.unused-permission`: what a binding grants service accounts and they did not use during
//! the learning window, with the minimal rules that cover what they did use through it.
//!
//! Effective permissions are read as the authorizer reads them: every binding whose subjects
//! include the account (by ServiceAccount, by its `system:serviceaccount:<ns>:<name>` user, or
//! through the `system:serviceaccounts` / `system:serviceaccounts:<ns>` groups), its Role or
//! ClusterRole, aggregated ClusterRoles included. A group binding is used when any evaluated
//! member used it. Bindings of the bootstrap policy, and groups with members other than service
//! accounts (`system:authenticated`, ...), are not evaluated: their holders are not all known.

use super::event::{Access, Account, Target};
use super::matching::allows;
use super::minimal::{minimal_rules, summary};
use super::usage::Usage;
use crate::policy::finding::Finding;
use crate::policy::rbac::aggregate::Aggregation;
use crate::policy::rbac::bindings::Binding;
use crate::policy::rbac::{bounded, RbacObjects, MAX_LISTED};
use crate::policy::rules::Rule;
use k8s_openapi::api::rbac::v1::{PolicyRule, Subject};
use std::collections::{BTreeSet, HashMap};

/// What to compare.
pub struct Window<'a> {
    /// The accounts evaluated (those whose requests were collected for the whole window).
    pub accounts: &'a BTreeSet<Account>,
    /// Accesses at or after this time count as used (Unix seconds).
    pub since: i64,
    /// The window, for messages (`the last 168h`, `the audit logs`).
    pub label: &'a str,
}

/// The evaluated accounts a subject stands for.
fn members<'s>(
    subject: &Subject,
    binding_ns: Option<&str>,
    accounts: &'s BTreeSet<Account>,
) -> Vec<&'s Account> {
    let sa = match subject.kind.as_str() {
        "ServiceAccount" => {
            let ns = subject
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .or(binding_ns);
            ns.map(|ns| Account::new(ns, &subject.name))
        }
        "User" => Account::from_username(&subject.name),
        "Group" if subject.name == "system:serviceaccounts" => {
            return accounts.iter().collect();
        }
        "Group" => {
            let Some(ns) = subject.name.strip_prefix("system:serviceaccounts:") else {
                return Vec::new();
            };
            return accounts.iter().filter(|a| a.namespace == ns).collect();
        }
        _ => None,
    };
    sa.and_then(|a| accounts.get(&a)).into_iter().collect()
}

/// One permission a rule grants, labelled as [`summary`] prints it: `delete configmaps`,
/// `get apps/deployments[web]`, `get /metrics`.
fn atoms(rule: &PolicyRule) -> Vec<(String, PolicyRule)> {
    let one = |xs: &str| vec![xs.to_string()];
    let mut out = Vec::new();
    for verb in &rule.verbs {
        if let Some(urls) = rule.non_resource_urls.as_ref().filter(|u| !u.is_empty()) {
            out.extend(urls.iter().map(|url| PolicyRule {
                verbs: one(verb),
                non_resource_urls: Some(one(url)),
                ..Default::default()
            }));
            continue;
        }
        for group in rule.api_groups.iter().flatten() {
            out.extend(rule.resources.iter().flatten().map(|resource| PolicyRule {
                verbs: one(verb),
                api_groups: Some(one(group)),
                resources: Some(one(resource)),
                resource_names: rule.resource_names.clone().filter(|n| !n.is_empty()),
                non_resource_urls: None,
            }));
        }
    }
    out.into_iter()
        .map(|atom| (summary(std::slice::from_ref(&atom)).remove(0), atom))
        .collect()
}

fn in_reach(access: &Access, binding_ns: Option<&str>) -> bool {
    match (&access.target, binding_ns) {
        (_, None) => true,
        (Target::Resource { namespace, .. }, Some(ns)) => namespace == ns,
        (Target::NonResource { .. }, Some(_)) => false,
    }
}

/// Appends an `rbac.unused-permission` finding per (binding, subject) that grants evaluated
/// accounts something none of them used in the window.
pub fn unused_permissions(
    objs: &RbacObjects<'_>,
    usage: &Usage,
    window: &Window<'_>,
    out: &mut Vec<Finding>,
) {
    if window.accounts.is_empty() {
        return;
    }
    let aggregation = Aggregation::new(&objs.cluster_roles);
    let cluster_roles: HashMap<&str, _> = objs
        .cluster_roles
        .iter()
        .map(|&cr| (cr.metadata.name.as_deref().unwrap_or_default(), cr))
        .collect();
    let roles: HashMap<(&str, &str), _> = objs
        .roles
        .iter()
        .map(|&r| {
            let ns = r.metadata.namespace.as_deref().unwrap_or("default");
            ((ns, r.metadata.name.as_deref().unwrap_or_default()), r)
        })
        .collect();
    let mut bindings: Vec<Binding<'_>> = objs
        .role_bindings
        .iter()
        .map(|&rb| Binding::role_binding(rb, rb.metadata.namespace.as_deref().unwrap_or("default")))
        .chain(
            objs.cluster_role_bindings
                .iter()
                .map(|&c| Binding::cluster_role_binding(c)),
        )
        .filter(|b| !b.builtin)
        .collect();
    bindings.sort_by(|a, b| a.object.cmp(&b.object));

    for b in &bindings {
        let rules: Vec<&PolicyRule> = match (b.role_ref.kind.as_str(), b.namespace) {
            ("ClusterRole", _) => cluster_roles
                .get(b.role_ref.name.as_str())
                .map(|&cr| aggregation.rules(cr).into_iter().map(|s| s.rule).collect())
                .unwrap_or_default(),
            ("Role", Some(ns)) => roles
                .get(&(ns, b.role_ref.name.as_str()))
                .map(|r| r.rules.iter().flatten().collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        if rules.is_empty() {
            continue; // dangling roleRef (partial manifests), or a role that grants nothing
        }
        for (j, subject) in b.subjects.iter().enumerate() {
            let who = members(subject, b.namespace, window.accounts);
            if who.is_empty() {
                continue;
            }
            let used: Vec<&Access> = who
                .iter()
                .filter_map(|a| usage.accounts.get(*a))
                .flat_map(|u| u.used_since(window.since))
                .filter(|a| in_reach(a, b.namespace))
                .collect();
            let mut granted = 0usize;
            let mut unused: Vec<String> = Vec::new();
            for rule in &rules {
                for (label, atom) in atoms(rule) {
                    granted += 1;
                    if !used.iter().any(|a| allows(&atom, a)) {
                        unused.push(label);
                    }
                }
            }
            if unused.is_empty() {
                continue;
            }
            unused.sort();
            unused.dedup();
            let through: Vec<&Access> = used
                .iter()
                .copied()
                .filter(|a| rules.iter().any(|r| allows(r, a)))
                .collect();
            let learned = minimal_rules(through.iter().copied());
            let mut covering: Vec<String> = Vec::new();
            for (ns, rules) in &learned.namespaced {
                covering.extend(summary(rules).into_iter().map(|s| format!("{s} in {ns}")));
            }
            covering.extend(summary(&learned.cluster));
            let covered = if covering.is_empty() {
                "it used none of them: remove the binding's subject".to_string()
            } else {
                format!(
                    "what it used is covered by: {}",
                    bounded(covering.iter().map(String::as_str), MAX_LISTED)
                )
            };
            let message = format!(
                "{} grants {} {} of {granted} permissions ({}) not used during {}: {}; {covered}",
                b.label(),
                b.subject_label(subject),
                unused.len(),
                b.role_label(),
                window.label,
                bounded(unused.iter().map(String::as_str), MAX_LISTED),
            );
            out.push(Finding::new(
                Rule::UnusedPermission,
                b.object.clone(),
                format!("subjects[{j}]"),
                message,
            ));
        }
    }
}
