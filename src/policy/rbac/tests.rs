use super::*;
use crate::policy::rules::Severity;

#[derive(Default)]
struct Objects {
    roles: Vec<Role>,
    cluster_roles: Vec<ClusterRole>,
    role_bindings: Vec<RoleBinding>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
}

/// Multi-document YAML; `apiVersion: rbac.authorization.k8s.io/v1` is added to every document.
fn parse(yaml: &str) -> Objects {
    let mut o = Objects::default();
    for doc in yaml.split("\n---\n") {
        let doc = format!("apiVersion: rbac.authorization.k8s.io/v1\n{doc}");
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&doc).unwrap();
        match v["kind"].as_str().unwrap() {
            "Role" => o.roles.push(serde_yaml_ng::from_value(v).unwrap()),
            "ClusterRole" => o.cluster_roles.push(serde_yaml_ng::from_value(v).unwrap()),
            "RoleBinding" => o.role_bindings.push(serde_yaml_ng::from_value(v).unwrap()),
            "ClusterRoleBinding" => o
                .cluster_role_bindings
                .push(serde_yaml_ng::from_value(v).unwrap()),
            k => panic!("unexpected kind {k}"),
        }
    }
    o
}

impl Objects {
    fn objs(&self) -> RbacObjects<'_> {
        RbacObjects {
            roles: self.roles.iter().collect(),
            cluster_roles: self.cluster_roles.iter().collect(),
            role_bindings: self.role_bindings.iter().collect(),
            cluster_role_bindings: self.cluster_role_bindings.iter().collect(),
        }
    }

    fn audit_in(&self, in_scope: &dyn Fn(&str) -> bool) -> Vec<Finding> {
        let mut out = Vec::new();
        audit(&self.objs(), in_scope, &mut out);
        out
    }
}

fn run(yaml: &str) -> Vec<Finding> {
    parse(yaml).audit_in(&|_| true)
}

fn keys(findings: &[Finding]) -> Vec<(Rule, String, String)> {
    findings
        .iter()
        .map(|f| (f.rule, f.object.to_string(), f.field.to_string()))
        .collect()
}

fn key(rule: Rule, object: &str, field: &str) -> (Rule, String, String) {
    (rule, object.to_string(), field.to_string())
}

fn message<'f>(findings: &'f [Finding], rule: Rule, object: &str) -> &'f str {
    &findings
        .iter()
        .find(|f| f.rule == rule && f.object.to_string() == object)
        .unwrap_or_else(|| panic!("no {rule} on {object}: {findings:#?}"))
        .message
}

#[test]
fn custom_roles_carry_findings_and_name_their_subjects() {
    let f = run(r#"kind: Role
metadata: {name: api-reader, namespace: shop}
rules:
- {apiGroups: [""], resources: [configmaps, secrets], verbs: [get, list]}
---
kind: RoleBinding
metadata: {name: api-reader, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: api-reader}
subjects: [{kind: ServiceAccount, name: api}]
---
kind: ClusterRole
metadata: {name: secret-reader}
rules:
- {apiGroups: [""], resources: [configmaps], verbs: [get]}
- {apiGroups: [""], resources: [secrets], verbs: [get, list]}
---
kind: RoleBinding
metadata: {name: api-secrets, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: secret-reader}
subjects: [{kind: ServiceAccount, name: api, namespace: shop}]
---
kind: ClusterRoleBinding
metadata: {name: x}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: secret-reader}
subjects: [{kind: User, apiGroup: rbac.authorization.k8s.io, name: alice}]"#);
    assert_eq!(
        keys(&f),
        vec![
            key(
                Rule::SecretsAccess,
                "ClusterRole/secret-reader",
                "rules[1].verbs"
            ),
            key(
                Rule::SecretsAccess,
                "Role/shop/api-reader",
                "rules[0].verbs"
            ),
        ]
    );
    assert_eq!(
        &*f[0].message,
        "grants get,list on secrets; bound to User alice via ClusterRoleBinding x, \
         ServiceAccount shop/api via RoleBinding shop/api-secrets"
    );
    assert_eq!(
        &*f[1].message,
        "grants get,list on secrets; bound to ServiceAccount shop/api via RoleBinding shop/api-reader"
    );
    assert_eq!(f[0].object.namespace, None);
    assert_eq!(f[1].object.namespace.as_deref(), Some("shop"));
    assert_eq!(
        (f[0].severity, f[0].reference()),
        (Severity::High, "CIS 5.1.2")
    );
}

#[test]
fn unbound_role_says_so_and_resource_names_are_mentioned() {
    let f = run(r#"kind: ClusterRole
metadata: {name: db-creds-lister}
rules:
- {apiGroups: [""], resources: [secrets], resourceNames: [db-creds], verbs: [list]}"#);
    assert_eq!(
        keys(&f),
        vec![key(
            Rule::SecretsAccess,
            "ClusterRole/db-creds-lister",
            "rules[0].verbs"
        )]
    );
    assert_eq!(
        &*f[0].message,
        "grants list on secrets (narrowed to resourceNames: db-creds); not bound to any subject"
    );
}

#[test]
fn pure_wildcard_role_yields_wildcard_and_every_specific_finding() {
    let f = run(r#"kind: ClusterRole
metadata: {name: god}
rules:
- {apiGroups: ["*"], resources: ["*"], verbs: ["*"]}
- {nonResourceURLs: ["*"], verbs: ["*"]}"#);
    let k = keys(&f);
    assert!(k.contains(&key(Rule::Wildcard, "ClusterRole/god", "rules[0]")));
    assert!(k.contains(&key(Rule::Wildcard, "ClusterRole/god", "rules[1]")));
    // Accepting or exempting the wildcard leaves the specific risks reported.
    for rule in [
        Rule::SecretsAccess,
        Rule::CreatePods,
        Rule::EscalateBindImpersonate,
        Rule::NodesProxy,
        Rule::CsrApprove,
        Rule::WebhookConfig,
        Rule::ServiceAccountToken,
        Rule::PodExecAttach,
        Rule::CreatePersistentVolumes,
    ] {
        assert!(
            k.contains(&key(rule, "ClusterRole/god", "rules[0].verbs")),
            "{rule:?} missing: {k:#?}"
        );
    }
}

#[test]
fn subject_list_is_bounded() {
    let f = run(r#"kind: ClusterRole
metadata: {name: pv-maker}
rules: [{apiGroups: [""], resources: [persistentvolumes], verbs: [create]}]
---
kind: ClusterRoleBinding
metadata: {name: a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pv-maker}
subjects: [{kind: User, name: u1}, {kind: User, name: u2}, {kind: User, name: u3}]
---
kind: ClusterRoleBinding
metadata: {name: b}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pv-maker}
subjects: [{kind: User, name: v1}, {kind: User, name: v2}, {kind: User, name: v3}, {kind: Group, name: v4}]"#);
    assert_eq!(f.len(), 1);
    assert_eq!(
        &*f[0].message,
        "grants create on persistentvolumes; bound to User u1, User u2, User u3 via \
         ClusterRoleBinding a, User v1, User v2 via ClusterRoleBinding b and 2 more"
    );
}

/// The real bootstrap objects (as kube-apiserver 1.34 creates them) of these kinds and names.
fn builtins(objects: &[(&str, &str)]) -> String {
    objects
        .iter()
        .map(|(kind, key)| super::bootstrap::builtin_yaml(kind, key))
        .collect::<Vec<_>>()
        .join("---\n")
}

#[test]
fn built_in_roles_and_bindings_are_not_reported() {
    let f = run(&builtins(&[
        ("ClusterRole", "system:controller:job-controller"),
        ("ClusterRole", "cluster-admin"),
        ("ClusterRoleBinding", "cluster-admin"),
        ("ClusterRoleBinding", "system:controller:job-controller"),
        ("ClusterRole", "system:node"),
        ("ClusterRole", "admin"),
        ("Role", "kube-system/system:controller:bootstrap-signer"),
        (
            "RoleBinding",
            "kube-system/system:controller:bootstrap-signer",
        ),
    ]));
    assert!(f.is_empty(), "{f:#?}");
}

/// A `system:` name and the bootstrapping label are anyone's to use: only the bootstrap policy's
/// own names with its own content are Kubernetes'.
#[test]
fn system_names_and_bootstrap_labels_do_not_hide_anything() {
    let f = run(r#"kind: ClusterRole
metadata:
  name: "system:backdoor"
  labels: {kubernetes.io/bootstrapping: rbac-defaults}
rules: [{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}]
---
kind: ClusterRoleBinding
metadata:
  name: "system:backdoor"
  labels: {kubernetes.io/bootstrapping: rbac-defaults}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:backdoor"}
subjects: [{kind: User, apiGroup: rbac.authorization.k8s.io, name: mallory}]"#);
    assert!(
        keys(&f).contains(&key(
            Rule::Wildcard,
            "ClusterRole/system:backdoor",
            "rules[0]"
        )),
        "{f:#?}"
    );
    assert!(message(&f, Rule::Wildcard, "ClusterRole/system:backdoor").contains("User mallory"));
    // It grants everything: binding it is binding cluster-admin.
    assert!(
        keys(&f).contains(&key(
            Rule::ClusterAdminBinding,
            "ClusterRoleBinding/system:backdoor",
            "roleRef"
        )),
        "{f:#?}"
    );
}

/// cluster-admin is what a role grants, not what it is called.
#[test]
fn roles_equivalent_to_cluster_admin_make_cluster_admin_bindings() {
    let f = run(r#"kind: ClusterRole
metadata: {name: superuser}
rules: [{apiGroups: ["*"], resources: ["*"], verbs: [get, list, watch, create, update, patch, delete, deletecollection]}]
---
kind: ClusterRoleBinding
metadata: {name: alice-superuser}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: superuser}
subjects: [{kind: User, name: alice}]
---
kind: Role
metadata: {name: ns-owner, namespace: shop}
rules: [{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}]
---
kind: RoleBinding
metadata: {name: bob-owner, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: ns-owner}
subjects: [{kind: User, name: bob}]
---
kind: ClusterRole
metadata: {name: core-reader}
rules:
- {apiGroups: [""], resources: ["*"], verbs: ["*"]}
- {apiGroups: ["*"], resources: ["*"], verbs: ["*"], resourceNames: [one]}
- {apiGroups: ["*"], resources: ["*"], verbs: [get, list, watch]}
---
kind: ClusterRoleBinding
metadata: {name: carol-core}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: core-reader}
subjects: [{kind: User, name: carol}]"#);
    let admin: Vec<_> = f
        .iter()
        .filter(|f| f.rule == Rule::ClusterAdminBinding)
        .map(|f| (f.object.to_string(), f.severity, f.message.clone()))
        .collect();
    assert_eq!(admin.len(), 2, "{admin:#?}");
    assert_eq!(admin[0].0, "ClusterRoleBinding/alice-superuser");
    assert!(admin[0]
        .2
        .contains("ClusterRole superuser, equivalent to cluster-admin (rules[0]"));
    assert!(
        admin[0].2.contains("in the whole cluster) to User alice"),
        "{}",
        admin[0].2
    );
    assert_eq!(admin[1].0, "RoleBinding/shop/bob-owner");
    assert!(
        admin[1].2.contains("in namespace shop) to User bob"),
        "{}",
        admin[1].2
    );
    assert!(admin
        .iter()
        .all(|a| a.1 == crate::policy::rules::Severity::Critical));
}

#[test]
fn a_modified_built_in_role_is_evaluated_like_any_other() {
    // system:node with one extra rule: reading every Secret.
    let mut node: serde_json::Value = serde_yaml_ng::from_str(&super::bootstrap::builtin_yaml(
        "ClusterRole",
        "system:node",
    ))
    .unwrap();
    node["rules"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!(
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}
        ));
    let f = run(&serde_yaml_ng::to_string(&node).unwrap());
    assert!(
        f.iter()
            .any(|f| f.rule == Rule::SecretsAccess && f.object.name == "system:node"),
        "{f:#?}"
    );
}

/// The built-in ClusterRoleBinding `name` with mallory added to its subjects, beside its role.
fn builtin_binding_plus_mallory(name: &str) -> Vec<Finding> {
    let mut binding: serde_json::Value =
        serde_yaml_ng::from_str(&super::bootstrap::builtin_yaml("ClusterRoleBinding", name))
            .unwrap();
    binding["subjects"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"kind": "User", "name": "mallory"}));
    run(&format!(
        "{}---\n{}",
        builtins(&[("ClusterRole", name)]),
        serde_yaml_ng::to_string(&binding).unwrap()
    ))
}

#[test]
fn a_built_in_binding_with_other_subjects_is_evaluated_like_any_other() {
    let untouched = run(&builtins(&[
        ("ClusterRole", "cluster-admin"),
        ("ClusterRoleBinding", "cluster-admin"),
    ]));
    assert!(untouched.is_empty(), "{untouched:#?}");
    let f = builtin_binding_plus_mallory("cluster-admin");
    assert!(
        f.iter().any(|f| f.rule == Rule::ClusterAdminBinding
            && f.object.name == "cluster-admin"
            && f.message.contains("mallory")),
        "{f:#?}"
    );
    // system:kube-controller-manager is bound to its own user; mallory added gets its Secrets.
    let f = builtin_binding_plus_mallory("system:kube-controller-manager");
    assert!(
        f.iter().any(|f| f.rule == Rule::SecretsAccess
            && f.object.kind == "ClusterRoleBinding"
            && f.message.contains("mallory")),
        "{f:#?}"
    );
}

// Built-in edit/view are aggregated: their selectors make them built-in, the rules stored by the
// aggregation controller are what they grant (here a short stand-in for the real lists).
const EDIT: &str = r#"kind: ClusterRole
metadata:
  name: edit
  labels: {kubernetes.io/bootstrapping: rbac-defaults}
aggregationRule:
  clusterRoleSelectors: [{matchLabels: {rbac.authorization.k8s.io/aggregate-to-edit: "true"}}]
rules:
- {apiGroups: [""], resources: [pods, pods/exec], verbs: [create, delete]}
- {apiGroups: [""], resources: [configmaps, secrets], verbs: [get, list, watch, create]}
- {apiGroups: [""], resources: [users], verbs: [impersonate]}
- {apiGroups: [apps], resources: [deployments], verbs: [create, update]}
---
kind: ClusterRole
metadata:
  name: view
  labels: {kubernetes.io/bootstrapping: rbac-defaults}
aggregationRule:
  clusterRoleSelectors: [{matchLabels: {rbac.authorization.k8s.io/aggregate-to-view: "true"}}]
rules:
- {apiGroups: ["", apps], resources: [configmaps, pods, deployments], verbs: [get, list, watch]}"#;

#[test]
fn built_in_role_bound_by_custom_binding_is_reported_on_the_binding() {
    let f = run(&format!(
        r#"{EDIT}
---
kind: RoleBinding
metadata: {{name: alice-edit, namespace: shop}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}}
subjects: [{{kind: User, name: alice}}]
---
kind: ClusterRoleBinding
metadata: {{name: bob-edit}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}}
subjects: [{{kind: User, name: bob}}]
---
kind: RoleBinding
metadata: {{name: carol-view, namespace: shop}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}}
subjects: [{{kind: User, name: carol}}]"#
    ));
    assert_eq!(
        keys(&f),
        vec![
            key(
                Rule::SecretsAccess,
                "ClusterRoleBinding/bob-edit",
                "roleRef"
            ),
            key(Rule::CreatePods, "ClusterRoleBinding/bob-edit", "roleRef"),
            key(
                Rule::EscalateBindImpersonate,
                "ClusterRoleBinding/bob-edit",
                "roleRef"
            ),
            key(
                Rule::PodExecAttach,
                "ClusterRoleBinding/bob-edit",
                "roleRef"
            ),
            // Impersonating users is cluster-scoped: a RoleBinding cannot grant it.
            key(
                Rule::SecretsAccess,
                "RoleBinding/shop/alice-edit",
                "roleRef"
            ),
            key(Rule::CreatePods, "RoleBinding/shop/alice-edit", "roleRef"),
            key(
                Rule::PodExecAttach,
                "RoleBinding/shop/alice-edit",
                "roleRef"
            ),
        ]
    );
    assert_eq!(
        message(&f, Rule::CreatePods, "RoleBinding/shop/alice-edit"),
        "built-in ClusterRole edit grants create on pods (rules[0]); create on deployments.apps \
         (rules[3]); bound here to User alice in namespace shop"
    );
    assert_eq!(f[4].object.namespace.as_deref(), Some("shop"));
}

#[test]
fn aggregated_cluster_roles_are_computed_from_matching_roles() {
    let objects = parse(
        r#"kind: ClusterRole
metadata: {name: team-admin}
aggregationRule:
  clusterRoleSelectors:
  - matchLabels: {example.com/aggregate-to-team-admin: "true"}
    matchExpressions: [{key: tier, operator: NotIn, values: [restricted]}]
---
kind: ClusterRole
metadata:
  name: team-secrets
  labels: {example.com/aggregate-to-team-admin: "true"}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get]}]
---
kind: ClusterRole
metadata:
  name: team-restricted
  labels: {example.com/aggregate-to-team-admin: "true", tier: restricted}
rules: [{apiGroups: [""], resources: [nodes/proxy], verbs: [get]}]
---
kind: ClusterRoleBinding
metadata: {name: team-admins}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: team-admin}
subjects: [{kind: Group, name: team}]
---
kind: ClusterRole
metadata:
  name: edit
  labels: {kubernetes.io/bootstrapping: rbac-defaults}
aggregationRule:
  clusterRoleSelectors: [{matchLabels: {rbac.authorization.k8s.io/aggregate-to-edit: "true"}}]
---
kind: ClusterRole
metadata:
  name: widget-editor
  labels: {rbac.authorization.k8s.io/aggregate-to-edit: "true"}
rules: [{apiGroups: [batch], resources: [jobs], verbs: [create]}]
---
kind: RoleBinding
metadata: {name: dev-edit, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}
subjects: [{kind: Group, name: devs}]"#,
    );
    let f = objects.audit_in(&|_| true);
    assert_eq!(
        keys(&f),
        vec![
            key(
                Rule::SecretsAccess,
                "ClusterRole/team-admin",
                "rules[0].verbs"
            ),
            key(
                Rule::NodesProxy,
                "ClusterRole/team-restricted",
                "rules[0].verbs"
            ),
            key(
                Rule::SecretsAccess,
                "ClusterRole/team-secrets",
                "rules[0].verbs"
            ),
            key(
                Rule::CreatePods,
                "ClusterRole/widget-editor",
                "rules[0].verbs"
            ),
            key(Rule::CreatePods, "RoleBinding/shop/dev-edit", "roleRef"),
        ]
    );
    assert_eq!(
        &*f[0].message,
        "grants get on secrets (aggregated from ClusterRole team-secrets); \
         bound to Group team via ClusterRoleBinding team-admins"
    );
    assert_eq!(
        &*f[2].message,
        "grants get on secrets; not bound to any subject; aggregated into ClusterRole team-admin"
    );
    assert_eq!(
        &*f[3].message,
        "grants create on jobs.batch; not bound to any subject; aggregated into ClusterRole edit"
    );
    assert_eq!(
        &*f[4].message,
        "built-in ClusterRole edit grants create on jobs.batch (rules[0] from ClusterRole \
         widget-editor); bound here to Group devs in namespace shop"
    );
}

#[test]
fn out_of_scope_namespaces_are_ignored_but_cluster_objects_are_not() {
    let objects = parse(
        r#"kind: Role
metadata: {name: reader, namespace: kube-system}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get]}]
---
kind: RoleBinding
metadata: {name: ops-admin, namespace: kube-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: ops-reader}
subjects: [{kind: ServiceAccount, name: default}]
---
kind: ClusterRole
metadata: {name: ops-reader}
rules: [{apiGroups: [""], resources: [secrets], verbs: [list]}]
---
kind: ClusterRoleBinding
metadata: {name: ops-admin}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: ops, namespace: kube-system}]"#,
    );
    let f = objects.audit_in(&|ns| ns != "kube-system");
    assert_eq!(
        keys(&f),
        vec![
            key(
                Rule::SecretsAccess,
                "ClusterRole/ops-reader",
                "rules[0].verbs"
            ),
            key(
                Rule::ClusterAdminBinding,
                "ClusterRoleBinding/ops-admin",
                "roleRef"
            ),
        ]
    );
    assert_eq!(
        &*f[0].message,
        "grants list on secrets; bound only by RoleBindings outside the audited namespaces"
    );
    // In scope, the kube-system objects are reported too.
    assert_eq!(objects.audit_in(&|_| true).len(), 4);
}

#[test]
fn binding_level_rules() {
    let f = run(r#"kind: ClusterRoleBinding
metadata: {name: ci-admin}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: deployer, namespace: ci}]
---
kind: ClusterRole
metadata:
  name: cluster-admin
  labels: {kubernetes.io/bootstrapping: rbac-defaults}
rules: [{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}, {nonResourceURLs: ["*"], verbs: ["*"]}]
---
kind: ClusterRoleBinding
metadata: {name: oops}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects:
- {kind: Group, name: "system:masters"}
- {kind: User, name: "system:anonymous"}
- {kind: Group, name: "system:unauthenticated"}
- {kind: Group, name: "system:authenticated"}
- {kind: User, name: default}
---
kind: RoleBinding
metadata: {name: pod-reader, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects: [{kind: ServiceAccount, name: default}, {kind: ServiceAccount, name: api}]
---
kind: Role
metadata: {name: pod-reader, namespace: shop}
rules: [{apiGroups: [""], resources: [pods], verbs: [get, list]}]"#);
    assert_eq!(
        keys(&f),
        vec![
            // cluster-admin's own wildcard rules are not repeated on the binding.
            key(
                Rule::ClusterAdminBinding,
                "ClusterRoleBinding/ci-admin",
                "roleRef"
            ),
            key(
                Rule::SystemMastersBinding,
                "ClusterRoleBinding/oops",
                "subjects[0]"
            ),
            key(
                Rule::AnonymousBinding,
                "ClusterRoleBinding/oops",
                "subjects[1]"
            ),
            key(
                Rule::AnonymousBinding,
                "ClusterRoleBinding/oops",
                "subjects[2]"
            ),
            key(
                Rule::DefaultServiceAccountBinding,
                "RoleBinding/shop/pod-reader",
                "subjects[0]"
            ),
        ]
    );
    assert_eq!(
        &*f[0].message,
        "binds ClusterRole cluster-admin (every action on every resource in the whole cluster) to \
         ServiceAccount ci/deployer; bind a role with only the permissions needed"
    );
    assert_eq!(f[0].severity, Severity::Critical);
    assert!(f[4]
        .message
        .starts_with("ServiceAccount shop/default gets Role pod-reader"));
}

#[test]
fn dangling_role_ref_is_no_finding_but_binding_rules_still_apply() {
    let f = run(r#"kind: RoleBinding
metadata: {name: gone, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: not-here}
subjects: [{kind: User, name: alice}]
---
kind: RoleBinding
metadata: {name: admin, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: default}]"#);
    assert_eq!(
        keys(&f),
        vec![
            key(
                Rule::ClusterAdminBinding,
                "RoleBinding/shop/admin",
                "roleRef"
            ),
            key(
                Rule::DefaultServiceAccountBinding,
                "RoleBinding/shop/admin",
                "subjects[0]"
            ),
        ]
    );
    assert!(f[0].message.contains("in namespace shop"));
}

#[test]
fn role_without_namespace_is_in_default() {
    let objects = parse(
        r#"kind: Role
metadata: {name: token-maker}
rules: [{apiGroups: [""], resources: [serviceaccounts/token], verbs: [create]}]"#,
    );
    let f = objects.audit_in(&|ns| ns == "default");
    assert_eq!(
        keys(&f),
        vec![key(
            Rule::ServiceAccountToken,
            "Role/default/token-maker",
            "rules[0].verbs"
        )]
    );
    assert!(objects.audit_in(&|ns| ns != "default").is_empty());
}

#[test]
fn output_is_sorted_deterministic_and_appended() {
    let yaml = format!(
        r#"{EDIT}
---
kind: ClusterRole
metadata: {{name: z-role}}
rules: [{{apiGroups: ["*"], resources: [secrets, pods/exec], verbs: ["*"]}}]
---
kind: Role
metadata: {{name: a-role, namespace: b}}
rules: [{{apiGroups: [""], resources: [pods], verbs: [create]}}]
---
kind: RoleBinding
metadata: {{name: r, namespace: a}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}}
subjects: [{{kind: ServiceAccount, name: default}}]"#
    );
    let objects = parse(&yaml);
    let sentinel = Finding::new(
        Rule::Privileged,
        ObjectRef::new("Pod", Some("zzz"), "p"),
        "spec",
        "x",
    );
    let mut out = vec![sentinel.clone()];
    audit(&objects.objs(), &|_| true, &mut out);
    assert_eq!(out[0], sentinel);
    let f = &out[1..];
    assert!(f.windows(2).all(|w| w[0].sort_key() <= w[1].sort_key()));

    let mut reversed = objects.objs();
    reversed.roles.reverse();
    reversed.cluster_roles.reverse();
    reversed.role_bindings.reverse();
    let mut again = Vec::new();
    audit(&reversed, &|_| true, &mut again);
    assert_eq!(again, f);
    assert_eq!(
        keys(f)
            .iter()
            .filter(|k| k.1 == "ClusterRole/z-role")
            .map(|k| (k.0, k.2.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (Rule::SecretsAccess, "rules[0].verbs"),
            (Rule::Wildcard, "rules[0]"),
            (Rule::PodExecAttach, "rules[0].verbs"),
        ]
    );
}

/// Kubernetes' whole bootstrap policy, as kube-apiserver creates it, is Kubernetes' own: nothing.
#[test]
fn the_whole_bootstrap_policy_yields_no_findings() {
    let policy: serde_json::Value =
        serde_json::from_str(include_str!("bootstrap/v1.34.json")).unwrap();
    let mut objects = Vec::new();
    for (section, kind) in [
        ("clusterRoles", "ClusterRole"),
        ("roles", "Role"),
        ("clusterRoleBindings", "ClusterRoleBinding"),
        ("roleBindings", "RoleBinding"),
    ] {
        for key in policy[section].as_object().unwrap().keys() {
            objects.push((kind, key.as_str()));
        }
    }
    assert!(objects.len() > 100, "{} objects", objects.len());
    let f = run(&builtins(&objects));
    assert!(f.is_empty(), "{f:#?}");
}
