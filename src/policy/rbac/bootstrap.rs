//! What "built-in" means: the roles and bindings kube-apiserver's bootstrap policy creates, by name
//! *and* content. A `system:` name or the `kubernetes.io/bootstrapping` label alone proves
//! nothing (anyone with RBAC write access can use both); a built-in that was modified, or bound to
//! other subjects than its bootstrap binding's, is evaluated like any other object.
//!
//! The policy is the one a real kube-apiserver creates, dumped by `scripts/rbac-bootstrap` into
//! `bootstrap/<version>.json` (tests/e2e/rbac_bootstrap_e2e.rs keeps it equal to the running plane's).

use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef,
    Subject,
};
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

/// The bootstrap policy files, newest first; an object matching any of them is built-in.
const POLICIES: &[&str] = &[include_str!("bootstrap/v1.34.json")];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyFile {
    cluster_roles: HashMap<String, RoleContent>,
    roles: HashMap<String, RoleContent>,
    cluster_role_bindings: HashMap<String, BindingContent>,
    role_bindings: HashMap<String, BindingContent>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoleContent {
    #[serde(default)]
    rules: Vec<PolicyRule>,
    aggregation_rule: Option<AggregationRule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BindingContent {
    role_ref: RoleRef,
    #[serde(default)]
    subjects: Vec<Subject>,
}

/// A rule as the authorizer reads it: order and duplicates do not matter, absent = empty.
type NormalRule = [BTreeSet<String>; 5];

fn normal_rules(rules: &[PolicyRule]) -> BTreeSet<NormalRule> {
    let set = |v: &Option<Vec<String>>| v.iter().flatten().cloned().collect::<BTreeSet<_>>();
    rules
        .iter()
        .map(|r| {
            [
                set(&r.api_groups),
                set(&r.resources),
                set(&r.resource_names),
                BTreeSet::from_iter(r.verbs.iter().cloned()),
                set(&r.non_resource_urls),
            ]
        })
        .collect()
}

/// (kind, name, namespace) of each subject; the apiGroup is implied by the kind.
fn normal_subjects(subjects: &[Subject]) -> BTreeSet<(String, String, String)> {
    subjects
        .iter()
        .map(|s| {
            let ns = s.namespace.clone().unwrap_or_default();
            (s.kind.clone(), s.name.clone(), ns)
        })
        .collect()
}

fn normal_aggregation(a: &Option<AggregationRule>) -> Option<String> {
    a.as_ref()
        .map(|a| serde_json::to_string(&a.cluster_role_selectors).unwrap_or_default())
}

struct KnownRole {
    rules: BTreeSet<NormalRule>,
    aggregation: Option<String>,
}

struct KnownBinding {
    role_ref: (String, String),
    subjects: BTreeSet<(String, String, String)>,
}

#[derive(Default)]
struct Policy {
    cluster_roles: HashMap<String, Vec<KnownRole>>,
    roles: HashMap<String, Vec<KnownRole>>,
    cluster_role_bindings: HashMap<String, Vec<KnownBinding>>,
    role_bindings: HashMap<String, Vec<KnownBinding>>,
}

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let mut p = Policy::default();
        for text in POLICIES {
            let file: PolicyFile =
                serde_json::from_str(text).expect("the embedded bootstrap policy parses");
            let role = |c: RoleContent| KnownRole {
                rules: normal_rules(&c.rules),
                aggregation: normal_aggregation(&c.aggregation_rule),
            };
            let binding = |c: BindingContent| KnownBinding {
                role_ref: (c.role_ref.kind, c.role_ref.name),
                subjects: normal_subjects(&c.subjects),
            };
            for (k, v) in file.cluster_roles {
                p.cluster_roles.entry(k).or_default().push(role(v));
            }
            for (k, v) in file.roles {
                p.roles.entry(k).or_default().push(role(v));
            }
            for (k, v) in file.cluster_role_bindings {
                p.cluster_role_bindings
                    .entry(k)
                    .or_default()
                    .push(binding(v));
            }
            for (k, v) in file.role_bindings {
                p.role_bindings.entry(k).or_default().push(binding(v));
            }
        }
        p
    })
}

fn role_matches(
    known: Option<&Vec<KnownRole>>,
    rules: &[PolicyRule],
    agg: &Option<AggregationRule>,
) -> bool {
    let Some(known) = known else { return false };
    let aggregation = normal_aggregation(agg);
    known.iter().any(|k| match &k.aggregation {
        // An aggregated role's rules are filled in by the controller: its selectors are its content.
        Some(selectors) => aggregation.as_ref() == Some(selectors),
        None => aggregation.is_none() && k.rules == normal_rules(rules),
    })
}

fn binding_matches(
    known: Option<&Vec<KnownBinding>>,
    role_ref: &RoleRef,
    subjects: &[Subject],
) -> bool {
    let Some(known) = known else { return false };
    let subjects = normal_subjects(subjects);
    known.iter().any(|k| {
        k.role_ref.0 == role_ref.kind && k.role_ref.1 == role_ref.name && k.subjects == subjects
    })
}

fn name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

fn namespaced(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or("default"),
        name(meta)
    )
}

pub fn is_builtin_cluster_role(cr: &ClusterRole) -> bool {
    let rules = cr.rules.as_deref().unwrap_or_default();
    role_matches(
        policy().cluster_roles.get(name(&cr.metadata)),
        rules,
        &cr.aggregation_rule,
    )
}

pub fn is_builtin_role(role: &Role) -> bool {
    let rules = role.rules.as_deref().unwrap_or_default();
    role_matches(
        policy().roles.get(&namespaced(&role.metadata)),
        rules,
        &None,
    )
}

pub fn is_builtin_cluster_role_binding(b: &ClusterRoleBinding) -> bool {
    binding_matches(
        policy().cluster_role_bindings.get(name(&b.metadata)),
        &b.role_ref,
        b.subjects.as_deref().unwrap_or_default(),
    )
}

pub fn is_builtin_role_binding(b: &RoleBinding) -> bool {
    binding_matches(
        policy().role_bindings.get(&namespaced(&b.metadata)),
        &b.role_ref,
        b.subjects.as_deref().unwrap_or_default(),
    )
}

/// The rules the bootstrap policy grants every authenticated user (discovery, self reviews,
/// public info): requests allowed through them are no account's own need.
pub fn granted_to_every_user() -> &'static [PolicyRule] {
    static RULES: OnceLock<Vec<PolicyRule>> = OnceLock::new();
    RULES.get_or_init(|| {
        let file: PolicyFile =
            serde_json::from_str(POLICIES[0]).expect("the embedded bootstrap policy parses");
        let mut rules = Vec::new();
        let mut names: Vec<&String> = file.cluster_role_bindings.keys().collect();
        names.sort();
        for name in names {
            let b = &file.cluster_role_bindings[name];
            let everyone = b
                .subjects
                .iter()
                .any(|s| s.kind == "Group" && s.name == "system:authenticated");
            if everyone && b.role_ref.kind == "ClusterRole" {
                if let Some(role) = file.cluster_roles.get(&b.role_ref.name) {
                    rules.extend(role.rules.iter().cloned());
                }
            }
        }
        rules
    })
}

/// A built-in object of the newest policy as a YAML document without `apiVersion` (the RBAC
/// unit tests' format).
#[cfg(test)]
pub fn builtin_yaml(kind: &str, key: &str) -> String {
    let file: serde_json::Value = serde_json::from_str(POLICIES[0]).unwrap();
    let section = match kind {
        "ClusterRole" => "clusterRoles",
        "Role" => "roles",
        "ClusterRoleBinding" => "clusterRoleBindings",
        "RoleBinding" => "roleBindings",
        _ => panic!("not an RBAC kind: {kind}"),
    };
    let mut obj = file[section][key].clone();
    assert!(!obj.is_null(), "no built-in {kind} {key}");
    let (ns, name) = match key.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, key),
    };
    let mut meta = serde_json::json!({"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}});
    if let Some(ns) = ns {
        meta["namespace"] = ns.into();
    }
    obj["kind"] = kind.into();
    obj["metadata"] = meta;
    serde_yaml_ng::to_string(&obj).unwrap()
}
