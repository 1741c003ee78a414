//! RoleBindings and ClusterRoleBindings as one view, and the binding-level rules.

use super::bootstrap::{is_builtin_cluster_role_binding, is_builtin_role_binding};
use super::{bounded, MAX_LISTED};
use crate::policy::finding::{Finding, ObjectRef};
use crate::policy::rules::Rule;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};

/// What a binding's roleRef points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum RoleKey<'a> {
    /// A Role: namespace, name.
    Role(&'a str, &'a str),
    ClusterRole(&'a str),
}

/// A RoleBinding (namespace set) or a ClusterRoleBinding.
#[derive(Debug)]
pub(super) struct Binding<'a> {
    pub object: ObjectRef,
    pub namespace: Option<&'a str>,
    pub role_ref: &'a RoleRef,
    pub subjects: &'a [Subject],
    pub builtin: bool,
}

impl<'a> Binding<'a> {
    pub fn role_binding(rb: &'a RoleBinding, namespace: &'a str) -> Self {
        let name = rb.metadata.name.as_deref().unwrap_or_default();
        Binding {
            object: ObjectRef::new("RoleBinding", Some(namespace), name),
            namespace: Some(namespace),
            role_ref: &rb.role_ref,
            subjects: rb.subjects.as_deref().unwrap_or_default(),
            builtin: is_builtin_role_binding(rb),
        }
    }

    pub fn cluster_role_binding(crb: &'a ClusterRoleBinding) -> Self {
        let name = crb.metadata.name.as_deref().unwrap_or_default();
        Binding {
            object: ObjectRef::new("ClusterRoleBinding", None, name),
            namespace: None,
            role_ref: &crb.role_ref,
            subjects: crb.subjects.as_deref().unwrap_or_default(),
            builtin: is_builtin_cluster_role_binding(crb),
        }
    }

    /// The role the roleRef names; `None` for a kind the binding cannot reference.
    pub fn role_key(&self) -> Option<RoleKey<'a>> {
        let name = self.role_ref.name.as_str();
        match (self.role_ref.kind.as_str(), self.namespace) {
            ("ClusterRole", _) => Some(RoleKey::ClusterRole(name)),
            ("Role", Some(ns)) => Some(RoleKey::Role(ns, name)),
            _ => None,
        }
    }

    /// `RoleBinding shop/api-reader`.
    pub fn label(&self) -> String {
        match self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.object.kind, self.object.name),
            None => format!("{} {}", self.object.kind, self.object.name),
        }
    }

    /// `ClusterRole edit`.
    pub fn role_label(&self) -> String {
        format!("{} {}", self.role_ref.kind, self.role_ref.name)
    }

    /// `ServiceAccount shop/api`, `User alice`, `Group devs`. A ServiceAccount without a namespace in a
    /// RoleBinding lives in the binding's namespace, as the authorizer reads it.
    pub fn subject_label(&self, s: &Subject) -> String {
        match (s.kind.as_str(), s.namespace.as_deref().or(self.namespace)) {
            ("ServiceAccount", Some(ns)) if !ns.is_empty() => {
                format!("ServiceAccount {ns}/{}", s.name)
            }
            (kind, _) => format!("{kind} {}", s.name),
        }
    }

    /// `User alice, Group devs and 2 more`, or `no subject`.
    pub fn subjects_label(&self) -> String {
        if self.subjects.is_empty() {
            return "no subject".to_string();
        }
        let labels: Vec<String> = self
            .subjects
            .iter()
            .map(|s| self.subject_label(s))
            .collect();
        bounded(labels.iter().map(String::as_str), MAX_LISTED)
    }

    /// Where the granted permissions apply.
    fn reach(&self) -> String {
        match self.namespace {
            Some(ns) => format!("namespace {ns}"),
            None => "the whole cluster".to_string(),
        }
    }

    /// ClusterAdminBinding, SystemMastersBinding, AnonymousBinding, DefaultServiceAccountBinding.
    /// `admin_rule`: the rule of the bound role that makes it equivalent to cluster-admin, if any.
    pub fn check(&self, admin_rule: Option<&str>, out: &mut Vec<Finding>) {
        let is_cluster_admin =
            self.role_ref.kind == "ClusterRole" && self.role_ref.name == "cluster-admin";
        if is_cluster_admin || admin_rule.is_some() {
            let role = match (is_cluster_admin, admin_rule) {
                (false, Some(rule)) => format!(
                    "{}, equivalent to cluster-admin ({rule} grants every verb on every resource in every API group),",
                    self.role_label()
                ),
                _ => "ClusterRole cluster-admin".to_string(),
            };
            out.push(Finding::new(
                Rule::ClusterAdminBinding,
                self.object.clone(),
                "roleRef".to_string(),
                format!(
                    "binds {role} (every action on every resource in {}) to {}; \
                     bind a role with only the permissions needed",
                    self.reach(),
                    self.subjects_label()
                ),
            ));
        }
        for (i, s) in self.subjects.iter().enumerate() {
            let field = format!("subjects[{i}]");
            let who = self.subject_label(s);
            let role = self.role_label();
            let (rule, message) = match (s.kind.as_str(), s.name.as_str()) {
                ("Group", "system:masters") => (
                    Rule::SystemMastersBinding,
                    format!(
                        "{who} gets {role}: members of system:masters bypass RBAC and their \
                         credentials cannot be revoked; use a dedicated group"
                    ),
                ),
                ("User", "system:anonymous") | ("Group", "system:unauthenticated") => (
                    Rule::AnonymousBinding,
                    format!(
                        "{who} gets {role} in {}: every unauthenticated request gets these \
                         permissions",
                        self.reach()
                    ),
                ),
                ("ServiceAccount", "default") => (
                    Rule::DefaultServiceAccountBinding,
                    format!(
                        "{who} gets {role}: every pod in that namespace without a \
                         serviceAccountName gets these permissions; bind a dedicated service account"
                    ),
                ),
                _ => continue,
            };
            out.push(Finding::new(rule, self.object.clone(), field, message));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rb(yaml: &str) -> RoleBinding {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn role_key_and_labels() {
        let b = rb(r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: r, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
subjects:
- {kind: ServiceAccount, name: api}
- {kind: ServiceAccount, name: ci, namespace: tools}
- {kind: User, apiGroup: rbac.authorization.k8s.io, name: alice}
"#);
        let v = Binding::role_binding(&b, "shop");
        assert_eq!(v.role_key(), Some(RoleKey::Role("shop", "reader")));
        assert_eq!(v.label(), "RoleBinding shop/r");
        assert_eq!(
            v.subjects_label(),
            "ServiceAccount shop/api, ServiceAccount tools/ci, User alice"
        );
        let mut out = Vec::new();
        v.check(None, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn cluster_role_binding_cannot_reference_a_role() {
        let crb: ClusterRoleBinding = serde_yaml_ng::from_str(
            r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: x}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
"#,
        )
        .unwrap();
        let v = Binding::cluster_role_binding(&crb);
        assert_eq!(v.role_key(), None);
        assert_eq!(v.subjects_label(), "no subject");
    }
}
