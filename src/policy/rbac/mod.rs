//! RBAC risk audit (CIS Kubernetes Benchmark 5.1.x): roles that grant dangerous permissions and
//! bindings that hand out too much. Pure: no I/O, no async.
//!
//! Attribution:
//! - A custom Role/ClusterRole carries the findings for its own rules (`rules[i].verbs`, ...), and
//!   the message says whom it is bound to (first [`MAX_LISTED`] subjects).
//! - Kubernetes' bootstrap roles and bindings are not reported: those whose name *and* content are
//!   what kube-apiserver's bootstrap policy creates (`bootstrap`); a `system:` name or the
//!   bootstrapping label proves nothing. A custom binding of a built-in role carries that role's
//!   findings instead, at `roleRef` (one finding per rule). `cluster-admin` is the exception: its
//!   binding is reported as ClusterAdminBinding only, which already says it grants everything.
//! - Binding-level rules (cluster-admin, system:masters, anonymous, default service account) go
//!   on custom bindings, at `roleRef` or `subjects[i]`.
//!
//! Bindings resolve through roleRef (RoleBinding: Role in its namespace or ClusterRole;
//! ClusterRoleBinding: ClusterRole). A dangling roleRef yields no role findings, since offline
//! manifests may be partial. A Role, or a ClusterRole reached through a RoleBinding, cannot reach
//! cluster-scoped resources, so checks that only concern those are skipped there.
//! Namespaced objects without `metadata.namespace` are taken to be in `default`, as `kubectl apply`
//! would place them.

mod aggregate;
mod bindings;
mod bootstrap;
pub mod ceiling;
mod grants;
pub mod learn;

use self::aggregate::{Aggregation, Sourced};
use self::bindings::{Binding, RoleKey};
use self::bootstrap::{is_builtin_cluster_role, is_builtin_role};
use self::grants::{grants, Reach};
use super::finding::{Finding, ObjectRef};
use super::rules::Rule;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::{BTreeMap, HashMap};

/// The RBAC objects to audit. Cluster-scoped objects are always evaluated; namespaced ones only
/// when their namespace is in scope.
#[derive(Clone, Debug, Default)]
pub struct RbacObjects<'a> {
    pub roles: Vec<&'a Role>,
    pub cluster_roles: Vec<&'a ClusterRole>,
    pub role_bindings: Vec<&'a RoleBinding>,
    pub cluster_role_bindings: Vec<&'a ClusterRoleBinding>,
}

/// How many subjects, names or grants a message lists before "and N more".
pub const MAX_LISTED: usize = 5;

/// Appends findings (sorted by object, rule, field; then message) for risky RBAC. `in_scope(ns)`
/// says whether a namespace is covered: Roles/RoleBindings in other namespaces are ignored;
/// cluster-scoped objects are always evaluated. Findings already in `out` are left as they are.
pub fn audit(objs: &RbacObjects<'_>, in_scope: &dyn Fn(&str) -> bool, out: &mut Vec<Finding>) {
    let start = out.len();

    let mut bindings =
        Vec::with_capacity(objs.role_bindings.len() + objs.cluster_role_bindings.len());
    // ClusterRole name -> RoleBindings outside the scope that reference it.
    let mut outside: HashMap<&str, usize> = HashMap::new();
    for &rb in &objs.role_bindings {
        let ns = namespace(&rb.metadata);
        if in_scope(ns) {
            bindings.push(Binding::role_binding(rb, ns));
        } else if rb.role_ref.kind == "ClusterRole" {
            *outside.entry(rb.role_ref.name.as_str()).or_default() += 1;
        }
    }
    bindings.extend(
        objs.cluster_role_bindings
            .iter()
            .map(|&crb| Binding::cluster_role_binding(crb)),
    );
    bindings.sort_by(|a, b| a.object.cmp(&b.object));

    let mut by_role: HashMap<RoleKey<'_>, Vec<&Binding<'_>>> = HashMap::new();
    for b in &bindings {
        if let Some(key) = b.role_key() {
            by_role.entry(key).or_default().push(b);
        }
    }
    let ctx = Context {
        by_role,
        outside,
        aggregation: Aggregation::new(&objs.cluster_roles),
    };

    let mut cluster_roles: HashMap<&str, &ClusterRole> = HashMap::new();
    for &cr in &objs.cluster_roles {
        let name = name(&cr.metadata);
        cluster_roles.entry(name).or_insert(cr);
        if is_builtin_cluster_role(cr) {
            continue;
        }
        let object = ObjectRef::new("ClusterRole", None, name);
        let rules = ctx.aggregation.rules(cr);
        let who = || ctx.bound_to(RoleKey::ClusterRole(name));
        report_role(&object, &rules, Reach::Cluster, &who, out);
    }

    let mut roles: HashMap<(&str, &str), &Role> = HashMap::new();
    for &role in &objs.roles {
        let (ns, name) = (namespace(&role.metadata), name(&role.metadata));
        if !in_scope(ns) {
            continue;
        }
        roles.entry((ns, name)).or_insert(role);
        if is_builtin_role(role) {
            continue;
        }
        let object = ObjectRef::new("Role", Some(ns), name);
        let rules = own_rules(role.rules.as_deref());
        let who = || ctx.bound_to(RoleKey::Role(ns, name));
        report_role(&object, &rules, Reach::Namespace, &who, out);
    }

    // A built-in role is usually bound many times (`edit` in every namespace): summarise it once
    // per reach. `None`: dangling roleRef, or a custom role (which carries its own findings).
    let mut summaries: HashMap<(RoleKey<'_>, Reach), Option<BTreeMap<Rule, String>>> =
        HashMap::new();
    // Roles equivalent to cluster-admin (by content, whatever their name): the rule that makes them.
    let mut admin_like: HashMap<RoleKey<'_>, Option<String>> = HashMap::new();
    for b in bindings.iter().filter(|b| !b.builtin) {
        let admin = b.role_key().and_then(|key| {
            admin_like
                .entry(key)
                .or_insert_with(|| match key {
                    RoleKey::Role(ns, name) => roles
                        .get(&(ns, name))
                        .and_then(|r| admin_equivalent(&own_rules(r.rules.as_deref()))),
                    RoleKey::ClusterRole(name) => cluster_roles
                        .get(name)
                        .and_then(|&cr| admin_equivalent(&ctx.aggregation.rules(cr))),
                })
                .clone()
        });
        b.check(admin.as_deref(), out);
        if b.role_ref.kind == "ClusterRole" && b.role_ref.name == "cluster-admin" {
            continue;
        }
        let Some(key) = b.role_key() else { continue };
        let reach = if b.namespace.is_some() {
            Reach::Namespace
        } else {
            Reach::Cluster
        };
        let summary = summaries.entry((key, reach)).or_insert_with(|| {
            let (builtin, rules) = match key {
                RoleKey::Role(ns, name) => roles
                    .get(&(ns, name))
                    .map(|&r| (is_builtin_role(r), own_rules(r.rules.as_deref())))?,
                RoleKey::ClusterRole(name) => cluster_roles
                    .get(name)
                    .map(|&cr| (is_builtin_cluster_role(cr), ctx.aggregation.rules(cr)))?,
            };
            builtin.then(|| summarise(&rules, reach))
        });
        if let Some(summary) = summary {
            report_builtin_binding(b, summary, out);
        }
    }

    out[start..].sort_by(|a, b| {
        a.sort_key()
            .cmp(&b.sort_key())
            .then_with(|| a.message.cmp(&b.message))
    });
}

/// The verbs that make a role cluster-admin when granted on every resource of every group (`*`
/// or all the standard read/write verbs).
const ADMIN_VERBS: [&str; 8] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

/// `Some("rules[i]")` when a rule grants every standard verb on every resource in every API group
/// with no resourceNames: whatever the role is called, binding it is binding cluster-admin.
fn admin_equivalent(rules: &[Sourced<'_>]) -> Option<String> {
    rules.iter().enumerate().find_map(|(i, s)| {
        let r = s.rule;
        let has = |v: &Option<Vec<String>>, x: &str| v.iter().flatten().any(|e| e == x);
        let all_verbs = r.verbs.iter().any(|v| v == "*")
            || ADMIN_VERBS.iter().all(|v| r.verbs.iter().any(|e| e == v));
        let unnarrowed = r.resource_names.as_ref().is_none_or(|n| n.is_empty());
        (has(&r.api_groups, "*") && has(&r.resources, "*") && all_verbs && unnarrowed).then(|| {
            match s.from {
                Some(from) => format!("rules[{i}] from ClusterRole {from}"),
                None => format!("rules[{i}]"),
            }
        })
    })
}

fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

fn namespace(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

fn own_rules(rules: Option<&[k8s_openapi::api::rbac::v1::PolicyRule]>) -> Vec<Sourced<'_>> {
    rules
        .unwrap_or_default()
        .iter()
        .map(|rule| Sourced { rule, from: None })
        .collect()
}

/// `a, b, c, d, e and 2 more`.
fn bounded<'s>(items: impl IntoIterator<Item = &'s str>, max: usize) -> String {
    bounded_with(items, max, ", ")
}

fn bounded_with<'s>(items: impl IntoIterator<Item = &'s str>, max: usize, sep: &str) -> String {
    let mut shown = Vec::new();
    let mut more = 0usize;
    for item in items {
        if shown.len() < max {
            shown.push(item);
        } else {
            more += 1;
        }
    }
    let mut s = shown.join(sep);
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    s
}

fn rule_field(i: usize, field: Option<&str>) -> String {
    match field {
        Some(f) => format!("rules[{i}].{f}"),
        None => format!("rules[{i}]"),
    }
}

struct Context<'a, 'b> {
    /// In-scope bindings by the role they reference, each list sorted by binding.
    by_role: HashMap<RoleKey<'a>, Vec<&'b Binding<'a>>>,
    outside: HashMap<&'a str, usize>,
    aggregation: Aggregation<'a>,
}

impl Context<'_, '_> {
    /// `bound to ServiceAccount shop/api via RoleBinding shop/r, User alice via ClusterRoleBinding x
    /// and 3 more`, or `not bound to any subject`; plus the ClusterRoles that aggregate it.
    fn bound_to(&self, key: RoleKey<'_>) -> String {
        let found = self
            .by_role
            .get(&key)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let total: usize = found.iter().map(|b| b.subjects.len()).sum();
        let mut s = if total == 0 {
            let elsewhere = match key {
                RoleKey::ClusterRole(name) => self.outside.get(name).copied().unwrap_or(0),
                RoleKey::Role(..) => 0,
            };
            if elsewhere > 0 {
                "bound only by RoleBindings outside the audited namespaces".to_string()
            } else {
                "not bound to any subject".to_string()
            }
        } else {
            let mut groups = Vec::new();
            let mut listed = 0;
            for b in found {
                let take = b.subjects.len().min(MAX_LISTED - listed);
                if take > 0 {
                    let names: Vec<String> = b.subjects[..take]
                        .iter()
                        .map(|s| b.subject_label(s))
                        .collect();
                    groups.push(format!("{} via {}", names.join(", "), b.label()));
                    listed += take;
                }
                if listed == MAX_LISTED {
                    break;
                }
            }
            let mut s = format!("bound to {}", groups.join(", "));
            if total > listed {
                s.push_str(&format!(" and {} more", total - listed));
            }
            s
        };
        if let RoleKey::ClusterRole(name) = key {
            let into = self.aggregation.aggregated_into(name);
            if !into.is_empty() {
                let labels: Vec<String> = into.iter().map(|n| format!("ClusterRole {n}")).collect();
                s.push_str("; aggregated into ");
                s.push_str(&bounded(labels.iter().map(String::as_str), MAX_LISTED));
            }
        }
        s
    }
}

/// Findings for a custom role's rules, on the role itself.
fn report_role(
    object: &ObjectRef,
    rules: &[Sourced<'_>],
    reach: Reach,
    who: &dyn Fn() -> String,
    out: &mut Vec<Finding>,
) {
    let mut bound: Option<String> = None;
    for (i, s) in rules.iter().enumerate() {
        for g in grants(s.rule, reach) {
            let bound = bound.get_or_insert_with(who);
            let from = s
                .from
                .map(|f| format!(" (aggregated from ClusterRole {f})"))
                .unwrap_or_default();
            out.push(Finding::new(
                g.rule,
                object.clone(),
                rule_field(i, g.field),
                format!("grants {}{from}; {bound}", g.what),
            ));
        }
    }
}

/// A role's risky grants by rule: `create on pods (rules[0]); create on jobs.batch (rules[3])`.
fn summarise(rules: &[Sourced<'_>], reach: Reach) -> BTreeMap<Rule, String> {
    let mut per_rule: BTreeMap<Rule, Vec<String>> = BTreeMap::new();
    for (i, s) in rules.iter().enumerate() {
        for g in grants(s.rule, reach) {
            let from = s
                .from
                .map(|f| format!(" from ClusterRole {f}"))
                .unwrap_or_default();
            per_rule
                .entry(g.rule)
                .or_default()
                .push(format!("{} (rules[{i}]{from})", g.what));
        }
    }
    per_rule
        .into_iter()
        .map(|(rule, parts)| {
            let joined = bounded_with(parts.iter().map(String::as_str), MAX_LISTED, "; ");
            (rule, joined)
        })
        .collect()
}

/// Findings for a built-in role's rules, on the custom binding that binds it: one per rule.
fn report_builtin_binding(
    b: &Binding<'_>,
    summary: &BTreeMap<Rule, String>,
    out: &mut Vec<Finding>,
) {
    let scope = match b.namespace {
        Some(ns) => format!("in namespace {ns}"),
        None => "cluster-wide".to_string(),
    };
    let subjects = b.subjects_label();
    for (&rule, grants) in summary {
        out.push(Finding::new(
            rule,
            b.object.clone(),
            "roleRef".to_string(),
            format!(
                "built-in {} grants {grants}; bound here to {subjects} {scope}",
                b.role_label()
            ),
        ));
    }
}

#[cfg(test)]
mod tests;
