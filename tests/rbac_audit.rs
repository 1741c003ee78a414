//! RBAC audit over a realistic set of manifests: custom roles, built-in roles bound by custom
//! bindings, aggregation, binding-level rules and a namespace outside the audit scope.

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use palisade::policy::finding::Finding;
use palisade::policy::rbac::{audit, RbacObjects};
use palisade::policy::rules::Rule;
use serde::Deserialize;

const MANIFESTS: &str = r#"
# --- built-in roles exactly as kube-apiserver 1.34 creates them (src/policy/rbac/bootstrap) ---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: "cluster-admin"
  labels:
    kubernetes.io/bootstrapping: "rbac-defaults"
rules:
- {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}
- {"nonResourceURLs": ["*"], "verbs": ["*"]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: "edit"
  labels:
    kubernetes.io/bootstrapping: "rbac-defaults"
    rbac.authorization.k8s.io/aggregate-to-admin: "true"
aggregationRule: {"clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}}]}
rules: []
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: "system:aggregate-to-edit"
  labels:
    kubernetes.io/bootstrapping: "rbac-defaults"
    rbac.authorization.k8s.io/aggregate-to-edit: "true"
rules:
- {"apiGroups": [""], "resources": ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"], "verbs": ["get", "list", "watch"]}
- {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]}
- {"apiGroups": [""], "resources": ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"], "verbs": ["create", "delete", "deletecollection", "patch", "update"]}
- {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]}
- {"apiGroups": [""], "resources": ["configmaps", "events", "persistentvolumeclaims", "replicationcontrollers", "replicationcontrollers/scale", "secrets", "serviceaccounts", "services", "services/proxy"], "verbs": ["create", "delete", "deletecollection", "patch", "update"]}
- {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]}
- {"apiGroups": ["apps"], "resources": ["daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets", "replicasets/scale", "statefulsets", "statefulsets/scale"], "verbs": ["create", "delete", "deletecollection", "patch", "update"]}
- {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": ["create", "delete", "deletecollection", "patch", "update"]}
- {"apiGroups": ["batch"], "resources": ["cronjobs", "jobs"], "verbs": ["create", "delete", "deletecollection", "patch", "update"]}
- {"apiGroups": ["extensions"], "resources": ["daemonsets", "deployments", "deployments/rollback", "deployments/scale", "ingresses", "networkpolicies", "replicasets", "replicasets/scale", "replicationcontrollers/scale"], "verbs": ["create", "delete", "deletecollection", "patch", "update"]}
- {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ["create", "delete", "deletecollection", "patch", "update"]}
- {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "networkpolicies"], "verbs": ["create", "delete", "deletecollection", "patch", "update"]}
- {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]}
- {"apiGroups": ["resource.k8s.io"], "resources": ["resourceclaims", "resourceclaimtemplates"], "verbs": ["create", "delete", "deletecollection", "patch", "update"]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: "view"
  labels:
    kubernetes.io/bootstrapping: "rbac-defaults"
    rbac.authorization.k8s.io/aggregate-to-edit: "true"
aggregationRule: {"clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}]}
rules: []
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: "system:node-proxier"
  labels:
    kubernetes.io/bootstrapping: "rbac-defaults"
rules:
- {"apiGroups": [""], "resources": ["endpoints", "services"], "verbs": ["list", "watch"]}
- {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}
- {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]}
- {"apiGroups": ["networking.k8s.io"], "resources": ["servicecidrs"], "verbs": ["list", "watch"]}
- {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: cluster-admin
  labels: {kubernetes.io/bootstrapping: rbac-defaults}
roleRef: {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"}
subjects:
- {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"}
---
# --- application namespace ---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: api-config, namespace: shop}
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [secrets]
  resourceNames: [api-db]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: api-config, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: api-config}
subjects:
- {kind: ServiceAccount, name: api, namespace: shop}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: developers, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: shop-devs}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: default-view, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects:
- {kind: ServiceAccount, name: default, namespace: shop}
---
# --- platform tooling ---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: ci-deployer}
rules:
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, create, update, patch]
- apiGroups: [""]
  resources: [serviceaccounts/token]
  verbs: [create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: ci-deployer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: ci-deployer}
subjects:
- {kind: ServiceAccount, name: deployer, namespace: ci}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: prometheus}
rules:
- apiGroups: [""]
  resources: [nodes, nodes/metrics, nodes/proxy, services, endpoints, pods]
  verbs: [get, list, watch]
- nonResourceURLs: [/metrics]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: prometheus}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: prometheus}
subjects:
- {kind: ServiceAccount, name: prometheus, namespace: monitoring}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: cert-approver}
rules:
- apiGroups: [certificates.k8s.io]
  resources: [certificatesigningrequests]
  verbs: [get, list, watch]
- apiGroups: [certificates.k8s.io]
  resources: [certificatesigningrequests/approval]
  verbs: [update]
- apiGroups: [certificates.k8s.io]
  resources: [signers]
  resourceNames: [example.com/internal]
  verbs: [approve]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: cainjector}
rules:
- apiGroups: [admissionregistration.k8s.io]
  resources: [validatingwebhookconfigurations, mutatingwebhookconfigurations]
  verbs: [get, list, watch, update, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: operator}
rules:
- apiGroups: ["*"]
  resources: ["*"]
  verbs: ["*"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: health}
rules:
- nonResourceURLs: [/healthz, /readyz]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: anonymous-health}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: health}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:anonymous"}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: ops-admins}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: ops}
---
# --- outside the audit scope ---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: leader-election, namespace: kube-system}
rules:
- apiGroups: [""]
  resources: [secrets]
  verbs: ["*"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: legacy-admin, namespace: kube-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects:
- {kind: ServiceAccount, name: default, namespace: kube-system}
"#;

#[derive(Default)]
struct Objects {
    roles: Vec<Role>,
    cluster_roles: Vec<ClusterRole>,
    role_bindings: Vec<RoleBinding>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
}

fn parse(yaml: &str) -> Objects {
    let mut o = Objects::default();
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let v = serde_yaml_ng::Value::deserialize(doc).expect("valid YAML");
        let kind = v["kind"].as_str().expect("kind").to_string();
        match kind.as_str() {
            "Role" => o.roles.push(serde_yaml_ng::from_value(v).unwrap()),
            "ClusterRole" => o.cluster_roles.push(serde_yaml_ng::from_value(v).unwrap()),
            "RoleBinding" => o.role_bindings.push(serde_yaml_ng::from_value(v).unwrap()),
            "ClusterRoleBinding" => o
                .cluster_role_bindings
                .push(serde_yaml_ng::from_value(v).unwrap()),
            other => panic!("unexpected kind {other}"),
        }
    }
    o
}

fn run(o: &Objects) -> Vec<Finding> {
    let objs = RbacObjects {
        roles: o.roles.iter().collect(),
        cluster_roles: o.cluster_roles.iter().collect(),
        role_bindings: o.role_bindings.iter().collect(),
        cluster_role_bindings: o.cluster_role_bindings.iter().collect(),
    };
    let mut out = Vec::new();
    audit(&objs, &|ns| ns != "kube-system", &mut out);
    out
}

fn find<'f>(findings: &'f [Finding], rule: Rule, object: &str, field: &str) -> &'f Finding {
    findings
        .iter()
        .find(|f| f.rule == rule && f.object.to_string() == object && &*f.field == field)
        .unwrap_or_else(|| panic!("missing {rule} {object} {field}"))
}

#[test]
fn realistic_manifests_yield_exactly_the_expected_findings() {
    let objects = parse(MANIFESTS);
    assert_eq!(objects.cluster_roles.len(), 11);
    let findings = run(&objects);
    let got: Vec<(&str, String, &str)> = findings
        .iter()
        .map(|f| (f.rule.id(), f.object.to_string(), &*f.field))
        .collect();
    let want: Vec<(&str, String, &str)> = [
        (
            "rbac.webhook-config",
            "ClusterRole/cainjector",
            "rules[0].verbs",
        ),
        (
            "rbac.csr-approve",
            "ClusterRole/cert-approver",
            "rules[1].verbs",
        ),
        (
            "rbac.csr-approve",
            "ClusterRole/cert-approver",
            "rules[2].verbs",
        ),
        (
            "rbac.create-pods",
            "ClusterRole/ci-deployer",
            "rules[0].verbs",
        ),
        (
            "rbac.serviceaccount-token",
            "ClusterRole/ci-deployer",
            "rules[1].verbs",
        ),
        // `*` on `*`: the wildcard and every specific risk it includes
        (
            "rbac.secrets-access",
            "ClusterRole/operator",
            "rules[0].verbs",
        ),
        ("rbac.wildcard", "ClusterRole/operator", "rules[0]"),
        ("rbac.create-pods", "ClusterRole/operator", "rules[0].verbs"),
        (
            "rbac.escalate-bind-impersonate",
            "ClusterRole/operator",
            "rules[0].verbs",
        ),
        (
            "rbac.create-persistentvolumes",
            "ClusterRole/operator",
            "rules[0].verbs",
        ),
        ("rbac.nodes-proxy", "ClusterRole/operator", "rules[0].verbs"),
        ("rbac.csr-approve", "ClusterRole/operator", "rules[0].verbs"),
        (
            "rbac.webhook-config",
            "ClusterRole/operator",
            "rules[0].verbs",
        ),
        (
            "rbac.serviceaccount-token",
            "ClusterRole/operator",
            "rules[0].verbs",
        ),
        (
            "rbac.pod-exec-attach",
            "ClusterRole/operator",
            "rules[0].verbs",
        ),
        (
            "rbac.nodes-proxy",
            "ClusterRole/prometheus",
            "rules[0].verbs",
        ),
        (
            "rbac.anonymous-binding",
            "ClusterRoleBinding/anonymous-health",
            "subjects[0]",
        ),
        (
            "rbac.cluster-admin-binding",
            "ClusterRoleBinding/ops-admins",
            "roleRef",
        ),
        (
            "rbac.secrets-access",
            "Role/shop/api-config",
            "rules[1].verbs",
        ),
        (
            "rbac.default-service-account-binding",
            "RoleBinding/shop/default-view",
            "subjects[0]",
        ),
        (
            "rbac.secrets-access",
            "RoleBinding/shop/developers",
            "roleRef",
        ),
        ("rbac.create-pods", "RoleBinding/shop/developers", "roleRef"),
        (
            "rbac.escalate-bind-impersonate",
            "RoleBinding/shop/developers",
            "roleRef",
        ),
        // the real system:aggregate-to-edit lets editors create serviceaccounts/token
        (
            "rbac.serviceaccount-token",
            "RoleBinding/shop/developers",
            "roleRef",
        ),
        (
            "rbac.pod-exec-attach",
            "RoleBinding/shop/developers",
            "roleRef",
        ),
    ]
    .into_iter()
    .map(|(r, o, f)| (r, o.to_string(), f))
    .collect();
    assert_eq!(got, want);

    // Messages say what is granted and to whom.
    let f = find(
        &findings,
        Rule::SecretsAccess,
        "Role/shop/api-config",
        "rules[1].verbs",
    );
    assert_eq!(
        &*f.message,
        "grants get on secrets (narrowed to resourceNames: api-db); \
         bound to ServiceAccount shop/api via RoleBinding shop/api-config"
    );
    assert_eq!(f.object.namespace.as_deref(), Some("shop"));
    let f = find(
        &findings,
        Rule::CreatePods,
        "ClusterRole/ci-deployer",
        "rules[0].verbs",
    );
    assert_eq!(
        &*f.message,
        "grants create on deployments.apps; bound to ServiceAccount ci/deployer via ClusterRoleBinding ci-deployer"
    );
    assert_eq!(f.object.namespace, None);
    let f = find(
        &findings,
        Rule::Wildcard,
        "ClusterRole/operator",
        "rules[0]",
    );
    assert!(
        f.message.ends_with("; not bound to any subject"),
        "{}",
        f.message
    );
    // Built-in edit, aggregated offline from system:aggregate-to-edit, reported on the binding.
    let f = find(
        &findings,
        Rule::PodExecAttach,
        "RoleBinding/shop/developers",
        "roleRef",
    );
    assert_eq!(
        &*f.message,
        "built-in ClusterRole edit grants get on pods/attach, pods/exec, pods/portforward \
         (rules[0] from ClusterRole system:aggregate-to-edit); create on pods/attach, pods/exec, \
         pods/portforward (rules[2] from ClusterRole system:aggregate-to-edit); \
         bound here to Group shop-devs in namespace shop"
    );

    for f in &findings {
        assert_eq!(f.severity, f.rule.severity());
        assert!(
            !f.reference().is_empty(),
            "{} has no reference",
            f.rule.id()
        );
    }
}

#[test]
fn widening_the_scope_reports_the_excluded_namespace() {
    let objects = parse(MANIFESTS);
    let objs = RbacObjects {
        roles: objects.roles.iter().collect(),
        cluster_roles: objects.cluster_roles.iter().collect(),
        role_bindings: objects.role_bindings.iter().collect(),
        cluster_role_bindings: objects.cluster_role_bindings.iter().collect(),
    };
    let mut out = Vec::new();
    audit(&objs, &|_| true, &mut out);
    let extra: Vec<(Rule, String, String)> = out
        .iter()
        .filter(|f| f.object.namespace.as_deref() == Some("kube-system"))
        .map(|f| (f.rule, f.object.to_string(), f.field.to_string()))
        .collect();
    assert_eq!(
        extra,
        vec![
            (
                Rule::SecretsAccess,
                "Role/kube-system/leader-election".into(),
                "rules[0].verbs".into()
            ),
            (
                Rule::Wildcard,
                "Role/kube-system/leader-election".into(),
                "rules[0].verbs".into()
            ),
            (
                Rule::ClusterAdminBinding,
                "RoleBinding/kube-system/legacy-admin".into(),
                "roleRef".into()
            ),
            (
                Rule::DefaultServiceAccountBinding,
                "RoleBinding/kube-system/legacy-admin".into(),
                "subjects[0]".into()
            ),
        ]
    );
}
