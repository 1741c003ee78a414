//! Least privilege learned from what service accounts actually do: audit events in, per-account
//! usage (bounded), minimal rules out, and `rbac.unused-permission` for what bindings grant
//! beyond it. Pure: the operator's audit webhook and the CLI's log reader feed it.

pub mod event;
mod matching;
pub mod minimal;
mod unused;
pub mod usage;

pub use event::{Access, Account, Request, Target};
pub use minimal::{minimal_rules, summary, LearnedRules};
pub use unused::{unused_permissions, Window};
pub use usage::{AccountUsage, Usage};

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;
use std::io::BufRead;

/// What reading audit logs gave.
#[derive(Debug, Default)]
pub struct LogRead {
    pub usage: Usage,
    /// Lines read, requests of service accounts among them.
    pub lines: u64,
    pub requests: u64,
    /// Unreadable lines (`file:line: problem`), the first [`MAX_ERRORS`]; `errors_total` counts all.
    pub errors: Vec<String>,
    pub errors_total: u64,
    /// Time span of the requests read (Unix seconds; 0 when none).
    pub first: i64,
    pub last: i64,
}

pub const MAX_ERRORS: usize = 20;

impl LogRead {
    /// Adds one audit log (JSON lines). `only`: keep just this account's requests.
    pub fn read(
        &mut self,
        reader: impl BufRead,
        file: &str,
        only: Option<&Account>,
    ) -> std::io::Result<()> {
        for (i, line) in reader.lines().enumerate() {
            let line = line?;
            self.lines += 1;
            match event::parse_log_line(&line) {
                Ok(Some(req)) => {
                    if only.is_some_and(|a| *a != req.account) {
                        continue;
                    }
                    self.requests += 1;
                    if self.first == 0 || req.at < self.first {
                        self.first = req.at;
                    }
                    self.last = self.last.max(req.at);
                    self.usage.record(&req);
                }
                Ok(None) => {}
                Err(e) => {
                    self.errors_total += 1;
                    if self.errors.len() < MAX_ERRORS {
                        self.errors.push(format!("{file}:{}: {e}", i + 1));
                    }
                }
            }
        }
        Ok(())
    }
}

/// FNV-1a, 64 bits: stable short names for accounts (no new dependency for one hash).
pub fn fnv64(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Kubernetes names are at most 253 characters: longer ones keep a prefix and a hash.
fn object_name(name: String) -> String {
    if name.len() <= 253 {
        return name;
    }
    let h = fnv64(&name);
    let mut cut = 236;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{h:016x}", &name[..cut])
}

/// The objects that grant an account its learned rules: a Role and RoleBinding
/// `<prefix><name>` per namespace, and a ClusterRole and ClusterRoleBinding
/// `<prefix><ns>-<name>` when it needs cluster scope. As JSON documents, in apply order.
pub fn learned_objects(
    account: &Account,
    learned: &LearnedRules,
    prefix: &str,
) -> Vec<serde_json::Value> {
    let labels = BTreeMap::from([(
        "app.kubernetes.io/managed-by".to_string(),
        "palisade-learn".to_string(),
    )]);
    let meta = |name: String, ns: Option<&str>| ObjectMeta {
        name: Some(name),
        namespace: ns.map(str::to_string),
        labels: Some(labels.clone()),
        annotations: Some(BTreeMap::from([(
            "palisade.dev/learned-for".to_string(),
            format!(
                "system:serviceaccount:{}:{}",
                account.namespace, account.name
            ),
        )])),
        ..Default::default()
    };
    let subject = Subject {
        kind: "ServiceAccount".into(),
        name: account.name.clone(),
        namespace: Some(account.namespace.clone()),
        api_group: None,
    };
    let role_ref = |kind: &str, name: &str| RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: kind.into(),
        name: name.into(),
    };
    let json = |v: serde_json::Result<serde_json::Value>, kind: &str| {
        let mut v = v.expect("RBAC objects serialise");
        v["apiVersion"] = "rbac.authorization.k8s.io/v1".into();
        v["kind"] = kind.into();
        v
    };
    let mut out = Vec::new();
    for (ns, rules) in &learned.namespaced {
        let name = object_name(format!("{prefix}{}", account.name));
        let role = Role {
            metadata: meta(name.clone(), Some(ns)),
            rules: Some(rules.clone()),
        };
        let binding = RoleBinding {
            metadata: meta(name.clone(), Some(ns)),
            role_ref: role_ref("Role", &name),
            subjects: Some(vec![subject.clone()]),
        };
        out.push(json(serde_json::to_value(&role), "Role"));
        out.push(json(serde_json::to_value(&binding), "RoleBinding"));
    }
    if !learned.cluster.is_empty() {
        let name = object_name(format!("{prefix}{}-{}", account.namespace, account.name));
        let role = ClusterRole {
            metadata: meta(name.clone(), None),
            rules: Some(learned.cluster.clone()),
            aggregation_rule: None,
        };
        let binding = ClusterRoleBinding {
            metadata: meta(name.clone(), None),
            role_ref: role_ref("ClusterRole", &name),
            subjects: Some(vec![subject]),
        };
        out.push(json(serde_json::to_value(&role), "ClusterRole"));
        out.push(json(serde_json::to_value(&binding), "ClusterRoleBinding"));
    }
    out
}

#[cfg(test)]
mod tests;
