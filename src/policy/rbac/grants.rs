//! What one `PolicyRule` grants that the RBAC rules care about.
//!
//! Matching follows the RBAC authorizer (`k8s.io/component-helpers/auth/rbac/validation`): `*`
//! matches any verb, API group or resource, `*/sub` matches subresource `sub` of any resource, and a
//! plain resource does not match its subresources. `resourceNames` narrows a grant without removing
//! it, so narrowed grants are still reported, with the names in the message.
//!
//! A `*` in resources matches every resource and subresource, so it yields every specific finding
//! it covers (reading Secrets, `nodes/proxy`, `pods/exec`, ...) besides Wildcard, whose message
//! names them: accepting or exempting the wildcard must not hide what it grants. Explicit resources
//! yield the specific findings for those resources, plus Wildcard when `*` is used for verbs or
//! API groups.

use crate::policy::rules::Rule;
use k8s_openapi::api::rbac::v1::PolicyRule;

const ALL: &str = "*";
const CORE: &str = "";
const RBAC: &str = "rbac.authorization.k8s.io";
const AUTHN: &str = "authentication.k8s.io";
const CERTS: &str = "certificates.k8s.io";
const ADMISSION: &str = "admissionregistration.k8s.io";

/// How far a grant reaches, which decides whether cluster-scoped resources count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Reach {
    /// A ClusterRole on its own (it may be bound cluster-wide), or one bound by a ClusterRoleBinding.
    Cluster,
    /// A Role, or a ClusterRole bound by a RoleBinding: cluster-scoped resources and non-resource
    /// URLs are out of reach.
    Namespace,
}

/// How a check names a resource.
#[derive(Clone, Copy, Debug)]
enum Res {
    /// `resource` or `resource/subresource`, as RBAC rules spell it.
    Exact(&'static str),
    /// Every subresource of a resource (`userextras/<extra key>`).
    AnySub(&'static str),
}

impl Res {
    /// Whether the rule's resource entry (never `*` here) matches this resource.
    fn matched_by(self, entry: &str) -> bool {
        let any_sub = entry.strip_prefix("*/");
        match self {
            Res::Exact(target) => {
                entry == target
                    || matches!((any_sub, target.split_once('/')), (Some(s), Some((_, t))) if s == t)
            }
            Res::AnySub(base) => {
                any_sub.is_some()
                    || entry
                        .strip_prefix(base)
                        .is_some_and(|rest| rest.starts_with('/'))
            }
        }
    }
}

/// A set of (API group, resources, verbs) a check looks for.
struct Target {
    group: &'static str,
    resources: &'static [Res],
    /// Verbs that make the grant risky; empty means every verb.
    verbs: &'static [&'static str],
    /// The authorizer checks these without a namespace, so a namespaced grant cannot reach them.
    cluster_scoped: bool,
}

struct Check {
    rule: Rule,
    targets: &'static [Target],
}

use Res::{AnySub, Exact};

const CREATE: &[&str] = &["create"];

const CHECKS: &[Check] = &[
    Check {
        rule: Rule::SecretsAccess,
        targets: &[Target {
            group: CORE,
            resources: &[Exact("secrets")],
            verbs: &["get", "list", "watch"],
            cluster_scoped: false,
        }],
    },
    Check {
        rule: Rule::CreatePods,
        targets: &[
            Target {
                group: CORE,
                resources: &[Exact("pods"), Exact("replicationcontrollers")],
                verbs: CREATE,
                cluster_scoped: false,
            },
            Target {
                group: "apps",
                resources: &[
                    Exact("deployments"),
                    Exact("daemonsets"),
                    Exact("statefulsets"),
                    Exact("replicasets"),
                ],
                verbs: CREATE,
                cluster_scoped: false,
            },
            Target {
                group: "batch",
                resources: &[Exact("jobs"), Exact("cronjobs")],
                verbs: CREATE,
                cluster_scoped: false,
            },
        ],
    },
    Check {
        rule: Rule::EscalateBindImpersonate,
        targets: &[
            // `bind` is checked in the binding's namespace, so a Role can allow binding ClusterRoles.
            Target {
                group: RBAC,
                resources: &[Exact("roles")],
                verbs: &["escalate", "bind"],
                cluster_scoped: false,
            },
            Target {
                group: RBAC,
                resources: &[Exact("clusterroles")],
                verbs: &["bind"],
                cluster_scoped: false,
            },
            Target {
                group: RBAC,
                resources: &[Exact("clusterroles")],
                verbs: &["escalate"],
                cluster_scoped: true,
            },
            Target {
                group: CORE,
                resources: &[Exact("serviceaccounts")],
                verbs: &["impersonate"],
                cluster_scoped: false,
            },
            Target {
                group: CORE,
                resources: &[Exact("users"), Exact("groups")],
                verbs: &["impersonate"],
                cluster_scoped: true,
            },
            Target {
                group: AUTHN,
                resources: &[Exact("uids"), AnySub("userextras")],
                verbs: &["impersonate"],
                cluster_scoped: true,
            },
        ],
    },
    Check {
        rule: Rule::CreatePersistentVolumes,
        targets: &[Target {
            group: CORE,
            resources: &[Exact("persistentvolumes")],
            verbs: CREATE,
            cluster_scoped: true,
        }],
    },
    Check {
        rule: Rule::NodesProxy,
        targets: &[Target {
            group: CORE,
            resources: &[Exact("nodes/proxy")],
            verbs: &[],
            cluster_scoped: true,
        }],
    },
    Check {
        rule: Rule::CsrApprove,
        targets: &[
            Target {
                group: CERTS,
                resources: &[Exact("certificatesigningrequests/approval")],
                verbs: &["update", "patch"],
                cluster_scoped: true,
            },
            Target {
                group: CERTS,
                resources: &[Exact("signers")],
                verbs: &["approve"],
                cluster_scoped: true,
            },
        ],
    },
    Check {
        rule: Rule::WebhookConfig,
        targets: &[Target {
            group: ADMISSION,
            resources: &[
                Exact("validatingwebhookconfigurations"),
                Exact("mutatingwebhookconfigurations"),
                Exact("validatingadmissionpolicies"),
                Exact("validatingadmissionpolicybindings"),
                Exact("mutatingadmissionpolicies"),
                Exact("mutatingadmissionpolicybindings"),
            ],
            verbs: &["create", "update", "patch", "delete", "deletecollection"],
            cluster_scoped: true,
        }],
    },
    Check {
        rule: Rule::ServiceAccountToken,
        targets: &[Target {
            group: CORE,
            resources: &[Exact("serviceaccounts/token")],
            verbs: CREATE,
            cluster_scoped: false,
        }],
    },
    Check {
        rule: Rule::PodExecAttach,
        targets: &[Target {
            group: CORE,
            resources: &[
                Exact("pods/exec"),
                Exact("pods/attach"),
                Exact("pods/portforward"),
            ],
            // Websocket exec/attach used `get` before Kubernetes 1.31.
            verbs: &["create", "get"],
            cluster_scoped: false,
        }],
    },
];

/// One risky thing a `PolicyRule` grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Grant {
    pub rule: Rule,
    /// The `PolicyRule` field to point at (`verbs`, `resources`, ...); `None` for the whole rule.
    pub field: Option<&'static str>,
    /// What is granted, e.g. `get,list on secrets (narrowed to resourceNames: db)`.
    pub what: String,
}

/// The risky grants of one `PolicyRule`, at most one per [`Rule`].
pub(super) fn grants(rule: &PolicyRule, reach: Reach) -> Vec<Grant> {
    let narrowed = narrowing(rule);
    let mut out = Vec::new();
    if let Some(mut g) = wildcard(rule, reach) {
        g.what.push_str(&narrowed);
        out.push(g);
    }
    let explicit: Vec<&str> = list(&rule.resources)
        .iter()
        .map(String::as_str)
        .filter(|r| *r != ALL)
        .collect();
    let star = has_all(list(&rule.resources));
    let mut covered = Vec::new();
    for check in CHECKS {
        if let Some(what) = match_check(check, rule, &explicit, star, reach) {
            covered.push(check.rule.id());
            out.push(Grant {
                rule: check.rule,
                field: Some("verbs"),
                what: what + &narrowed,
            });
        }
    }
    if star && !covered.is_empty() {
        if let Some(w) = out.iter_mut().find(|g| g.rule == Rule::Wildcard) {
            w.what
                .push_str(&format!("; the * includes {}", covered.join(", ")));
        }
    }
    out
}

fn list(v: &Option<Vec<String>>) -> &[String] {
    v.as_deref().unwrap_or_default()
}

fn has_all(v: &[String]) -> bool {
    v.iter().any(|s| s == ALL)
}

fn narrowing(rule: &PolicyRule) -> String {
    let names = list(&rule.resource_names);
    if names.is_empty() {
        String::new()
    } else {
        format!(
            " (narrowed to resourceNames: {})",
            super::bounded(names.iter().map(String::as_str), 5)
        )
    }
}

/// Wildcard: a literal `*` in apiGroups, resources, nonResourceURLs or verbs.
fn wildcard(rule: &PolicyRule, reach: Reach) -> Option<Grant> {
    let urls = list(&rule.non_resource_urls);
    let urls_apply = reach == Reach::Cluster && !urls.is_empty();
    let resource_rule = !list(&rule.resources).is_empty() || !list(&rule.api_groups).is_empty();
    if !resource_rule && !urls_apply {
        return None;
    }
    let mut fields = Vec::new();
    if has_all(list(&rule.api_groups)) {
        fields.push("apiGroups");
    }
    if has_all(list(&rule.resources)) {
        fields.push("resources");
    }
    if urls_apply && has_all(urls) {
        fields.push("nonResourceURLs");
    }
    if has_all(&rule.verbs) {
        fields.push("verbs");
    }
    let field = match fields.as_slice() {
        [] => return None,
        [one] => Some(*one),
        _ => None,
    };
    Some(Grant {
        rule: Rule::Wildcard,
        field,
        what: format!(
            "{} (wildcard in {})",
            describe(rule, urls_apply),
            fields.join(", ")
        ),
    })
}

/// `verbs on resources [in apiGroups ...]; verbs on non-resource URLs ...`.
fn describe(rule: &PolicyRule, with_urls: bool) -> String {
    let verbs = rule.verbs.join(",");
    let mut parts = Vec::new();
    let resources = list(&rule.resources);
    let groups = list(&rule.api_groups);
    if !resources.is_empty() || !groups.is_empty() {
        let mut s = format!("{verbs} on {}", resources.join(", "));
        if groups != [CORE] {
            let shown: Vec<&str> = groups
                .iter()
                .map(|g| if g.is_empty() { "\"\"" } else { g.as_str() })
                .collect();
            s.push_str(&format!(" in apiGroups {}", shown.join(", ")));
        }
        parts.push(s);
    }
    if with_urls {
        parts.push(format!(
            "{verbs} on non-resource URLs {}",
            list(&rule.non_resource_urls).join(", ")
        ));
    }
    parts.join("; ")
}

/// `get,list on secrets; create on pods, deployments.apps` when the rule hits the check.
fn match_check(
    check: &Check,
    rule: &PolicyRule,
    explicit: &[&str],
    star: bool,
    reach: Reach,
) -> Option<String> {
    let groups = list(&rule.api_groups);
    // (verbs, resources) in the rule's order, merged by verbs.
    let mut parts: Vec<(String, Vec<String>)> = Vec::new();
    for t in check.targets {
        if reach == Reach::Namespace && t.cluster_scoped {
            continue;
        }
        let named = groups.iter().any(|g| g == t.group);
        if !named && !has_all(groups) {
            continue;
        }
        let verbs: Vec<&str> = rule
            .verbs
            .iter()
            .map(String::as_str)
            .filter(|v| *v == ALL || t.verbs.is_empty() || t.verbs.contains(v))
            .collect();
        if verbs.is_empty() {
            continue;
        }
        let verbs = verbs.join(",");
        let add = |parts: &mut Vec<(String, Vec<String>)>, shown: String| {
            let i = match parts.iter().position(|(v, _)| *v == verbs) {
                Some(i) => i,
                None => {
                    parts.push((verbs.clone(), Vec::new()));
                    parts.len() - 1
                }
            };
            if !parts[i].1.contains(&shown) {
                parts[i].1.push(shown);
            }
        };
        if star {
            // `*` matches every resource and every subresource of this target.
            for r in t.resources {
                let name = match r {
                    Exact(n) => n.to_string(),
                    AnySub(base) => format!("{base}/*"),
                };
                let shown = if t.group == CORE {
                    name
                } else {
                    format!("{name}.{}", t.group)
                };
                add(&mut parts, format!("{shown} (via resources: *)"));
            }
        }
        for entry in explicit {
            if !t.resources.iter().any(|r| r.matched_by(entry)) {
                continue;
            }
            let shown = if named && t.group != CORE {
                format!("{entry}.{}", t.group)
            } else {
                entry.to_string()
            };
            add(&mut parts, shown);
        }
    }
    if parts.is_empty() {
        return None;
    }
    let parts: Vec<String> = parts
        .into_iter()
        .map(|(verbs, res)| format!("{verbs} on {}", res.join(", ")))
        .collect();
    Some(parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pr(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        PolicyRule {
            api_groups: Some(v(groups)),
            resources: Some(v(resources)),
            verbs: v(verbs),
            ..Default::default()
        }
    }

    fn rules_of(rule: &PolicyRule, reach: Reach) -> Vec<Rule> {
        grants(rule, reach).into_iter().map(|g| g.rule).collect()
    }

    fn fires(rule: &PolicyRule) -> Vec<Rule> {
        rules_of(rule, Reach::Cluster)
    }

    fn only(rule: &PolicyRule) -> Grant {
        let g = grants(rule, Reach::Cluster);
        assert_eq!(g.len(), 1, "{g:?}");
        g.into_iter().next().unwrap()
    }

    #[test]
    fn wildcard_fires_per_field_and_names_what_the_star_includes() {
        // Everything: Wildcard plus every specific rule it covers, each its own finding.
        let g = grants(&pr(&["*"], &["*"], &["*"]), Reach::Cluster);
        assert_eq!((g[0].rule, g[0].field), (Rule::Wildcard, None));
        assert!(
            g[0].what.starts_with(
                "* on * in apiGroups * (wildcard in apiGroups, resources, verbs); the * includes \
                 rbac.secrets-access, rbac.create-pods, rbac.escalate-bind-impersonate"
            ),
            "{}",
            g[0].what
        );
        let rules: Vec<Rule> = g.iter().map(|g| g.rule).collect();
        for r in [
            Rule::SecretsAccess,
            Rule::NodesProxy,
            Rule::PodExecAttach,
            Rule::WebhookConfig,
        ] {
            assert!(rules.contains(&r), "{r:?} missing from {rules:?}");
        }

        // `*` resources in the core group with read verbs: reading every Secret, nodes/proxy and
        // pods/exec (the authorizer matches `*` against subresources too).
        let g = grants(&pr(&[""], &["*"], &["get", "list"]), Reach::Cluster);
        let got: Vec<Rule> = g.iter().map(|g| g.rule).collect();
        assert_eq!(
            got,
            vec![
                Rule::Wildcard,
                Rule::SecretsAccess,
                Rule::NodesProxy,
                Rule::PodExecAttach
            ]
        );
        assert_eq!((g[0].field), Some("resources"));
        assert_eq!(
            g[0].what,
            "get,list on * (wildcard in resources); the * includes rbac.secrets-access, \
             rbac.nodes-proxy, rbac.pod-exec-attach"
        );
        assert_eq!(g[1].what, "get,list on secrets (via resources: *)");
        // In a namespace, nodes/proxy is out of reach.
        let g = grants(&pr(&[""], &["*"], &["get", "list"]), Reach::Namespace);
        let got: Vec<Rule> = g.iter().map(|g| g.rule).collect();
        assert_eq!(
            got,
            vec![Rule::Wildcard, Rule::SecretsAccess, Rule::PodExecAttach]
        );

        let g = only(&pr(&["*"], &["configmaps"], &["get"]));
        assert_eq!((g.rule, g.field), (Rule::Wildcard, Some("apiGroups")));

        // Near miss: explicit everything.
        assert!(fires(&pr(
            &["", "apps"],
            &["configmaps", "deployments"],
            &["get", "list"]
        ))
        .is_empty());
    }

    #[test]
    fn explicit_resources_with_wildcard_verbs_yield_wildcard_and_specific_findings() {
        let g = grants(&pr(&[""], &["secrets", "pods"], &["*"]), Reach::Cluster);
        let got: Vec<(Rule, Option<&str>)> = g.iter().map(|g| (g.rule, g.field)).collect();
        assert_eq!(
            got,
            vec![
                (Rule::Wildcard, Some("verbs")),
                (Rule::SecretsAccess, Some("verbs")),
                (Rule::CreatePods, Some("verbs")),
            ]
        );
        assert_eq!(g[1].what, "* on secrets");
    }

    #[test]
    fn non_resource_urls_only_wildcard_and_only_cluster_wide() {
        let urls = |u: &[&str], verbs: &[&str]| PolicyRule {
            non_resource_urls: Some(u.iter().map(|s| s.to_string()).collect()),
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let g = only(&urls(&["*"], &["get"]));
        assert_eq!((g.rule, g.field), (Rule::Wildcard, Some("nonResourceURLs")));
        assert_eq!(
            g.what,
            "get on non-resource URLs * (wildcard in nonResourceURLs)"
        );
        assert!(fires(&urls(&["/healthz", "/metrics"], &["get"])).is_empty());
        assert!(rules_of(&urls(&["*"], &["*"]), Reach::Namespace).is_empty());
    }

    #[test]
    fn secrets_access() {
        let g = only(&pr(
            &[""],
            &["secrets", "configmaps"],
            &["get", "list", "create"],
        ));
        assert_eq!((g.rule, g.field), (Rule::SecretsAccess, Some("verbs")));
        assert_eq!(g.what, "get,list on secrets");
        assert_eq!(
            fires(&pr(&["*"], &["secrets"], &["watch"])),
            vec![Rule::Wildcard, Rule::SecretsAccess]
        );
        // Near misses: configmaps, write-only on secrets, secrets in another group.
        assert!(fires(&pr(&[""], &["configmaps"], &["get", "list", "watch"])).is_empty());
        assert!(fires(&pr(&[""], &["secrets"], &["create", "delete"])).is_empty());
        assert!(fires(&pr(&["example.com"], &["secrets"], &["get"])).is_empty());
    }

    #[test]
    fn resource_names_narrow_but_still_fire() {
        let mut rule = pr(&[""], &["secrets"], &["list"]);
        rule.resource_names = Some(vec!["db-creds".into(), "tls".into()]);
        let g = only(&rule);
        assert_eq!(g.rule, Rule::SecretsAccess);
        assert_eq!(
            g.what,
            "list on secrets (narrowed to resourceNames: db-creds, tls)"
        );
    }

    #[test]
    fn create_pods_and_pod_controllers() {
        let g = only(&pr(
            &["", "apps", "batch"],
            &["pods", "deployments", "cronjobs", "services"],
            &["create", "get"],
        ));
        assert_eq!(g.rule, Rule::CreatePods);
        assert_eq!(g.what, "create on pods, deployments.apps, cronjobs.batch");
        for (group, res) in [
            ("", "replicationcontrollers"),
            ("apps", "daemonsets"),
            ("apps", "statefulsets"),
            ("apps", "replicasets"),
            ("batch", "jobs"),
        ] {
            assert_eq!(
                fires(&pr(&[group], &[res], &["create"])),
                vec![Rule::CreatePods],
                "{res}"
            );
        }
        // Near misses: reading pods, creating services, deployments in the wrong group.
        assert!(fires(&pr(&[""], &["pods"], &["get", "list", "watch", "delete"])).is_empty());
        assert!(fires(&pr(&[""], &["services"], &["create"])).is_empty());
        assert!(fires(&pr(&[""], &["deployments"], &["create"])).is_empty());
        // Creating a subresource is not creating a pod.
        assert!(fires(&pr(&[""], &["pods/eviction"], &["create"])).is_empty());
    }

    #[test]
    fn escalate_bind_impersonate() {
        let g = only(&pr(
            &["rbac.authorization.k8s.io"],
            &["clusterroles", "roles"],
            &["bind", "get"],
        ));
        assert_eq!(g.rule, Rule::EscalateBindImpersonate);
        assert_eq!(
            g.what,
            "bind on roles.rbac.authorization.k8s.io, clusterroles.rbac.authorization.k8s.io"
        );
        for (group, res) in [
            ("", "users"),
            ("", "groups"),
            ("", "serviceaccounts"),
            ("authentication.k8s.io", "uids"),
            ("authentication.k8s.io", "userextras/scopes"),
        ] {
            assert_eq!(
                fires(&pr(&[group], &[res], &["impersonate"])),
                vec![Rule::EscalateBindImpersonate],
                "{res}"
            );
        }
        assert_eq!(
            fires(&pr(
                &["rbac.authorization.k8s.io"],
                &["roles"],
                &["escalate"]
            )),
            vec![Rule::EscalateBindImpersonate]
        );
        // Near misses: managing roles without escalate/bind; impersonate on something else.
        assert!(fires(&pr(
            &["rbac.authorization.k8s.io"],
            &["roles", "rolebindings"],
            &["create", "update"]
        ))
        .is_empty());
        assert!(fires(&pr(&[""], &["pods"], &["impersonate"])).is_empty());
    }

    #[test]
    fn namespaced_reach_drops_cluster_scoped_targets() {
        let r = pr(&[""], &["users", "serviceaccounts"], &["impersonate"]);
        let g = grants(&r, Reach::Namespace);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].what, "impersonate on serviceaccounts");
        let r = pr(
            &["rbac.authorization.k8s.io"],
            &["clusterroles"],
            &["escalate"],
        );
        assert!(rules_of(&r, Reach::Namespace).is_empty());
        // `bind` on clusterroles is checked in the binding's namespace: still reachable.
        let r = pr(&["rbac.authorization.k8s.io"], &["clusterroles"], &["bind"]);
        assert_eq!(
            rules_of(&r, Reach::Namespace),
            vec![Rule::EscalateBindImpersonate]
        );
        assert!(rules_of(
            &pr(&[""], &["persistentvolumes"], &["create"]),
            Reach::Namespace
        )
        .is_empty());
        assert!(rules_of(&pr(&[""], &["nodes/proxy"], &["get"]), Reach::Namespace).is_empty());
    }

    #[test]
    fn create_persistent_volumes() {
        assert_eq!(
            fires(&pr(&[""], &["persistentvolumes"], &["create"])),
            vec![Rule::CreatePersistentVolumes]
        );
        // Near miss: claims are how workloads should get storage.
        assert!(fires(&pr(&[""], &["persistentvolumeclaims"], &["create"])).is_empty());
        assert!(fires(&pr(&[""], &["persistentvolumes"], &["get", "list"])).is_empty());
    }

    #[test]
    fn nodes_proxy_any_verb_and_star_subresource() {
        assert_eq!(
            fires(&pr(&[""], &["nodes/proxy"], &["get"])),
            vec![Rule::NodesProxy]
        );
        let g = only(&pr(&[""], &["*/proxy"], &["get"]));
        assert_eq!(
            (g.rule, g.what.as_str()),
            (Rule::NodesProxy, "get on */proxy")
        );
        // Near miss: nodes themselves, or another subresource.
        assert!(fires(&pr(&[""], &["nodes", "nodes/status"], &["get", "list"])).is_empty());
    }

    #[test]
    fn csr_approve() {
        let certs = "certificates.k8s.io";
        assert_eq!(
            fires(&pr(
                &[certs],
                &["certificatesigningrequests/approval"],
                &["update"]
            )),
            vec![Rule::CsrApprove]
        );
        assert_eq!(
            fires(&pr(&[certs], &["signers"], &["approve"])),
            vec![Rule::CsrApprove]
        );
        // Near miss: creating and reading CSRs is what kubelets do.
        assert!(fires(&pr(
            &[certs],
            &["certificatesigningrequests"],
            &["create", "get", "list", "update"]
        ))
        .is_empty());
        assert!(fires(&pr(&[certs], &["signers"], &["sign"])).is_empty());
    }

    #[test]
    fn webhook_config() {
        let adm = "admissionregistration.k8s.io";
        for res in [
            "validatingwebhookconfigurations",
            "mutatingwebhookconfigurations",
            "validatingadmissionpolicies",
            "validatingadmissionpolicybindings",
        ] {
            assert_eq!(
                fires(&pr(&[adm], &[res], &["patch"])),
                vec![Rule::WebhookConfig],
                "{res}"
            );
        }
        assert_eq!(
            fires(&pr(&[adm], &["mutatingwebhookconfigurations"], &["delete"])),
            vec![Rule::WebhookConfig]
        );
        // Near miss: reading them.
        assert!(fires(&pr(
            &[adm],
            &["validatingwebhookconfigurations"],
            &["get", "list", "watch"]
        ))
        .is_empty());
    }

    #[test]
    fn service_account_token() {
        assert_eq!(
            fires(&pr(&[""], &["serviceaccounts/token"], &["create"])),
            vec![Rule::ServiceAccountToken]
        );
        // Near miss: creating service accounts, reading the token subresource.
        assert!(fires(&pr(&[""], &["serviceaccounts"], &["create"])).is_empty());
        assert!(fires(&pr(&[""], &["serviceaccounts/token"], &["get"])).is_empty());
    }

    #[test]
    fn pod_exec_attach() {
        for res in ["pods/exec", "pods/attach", "pods/portforward"] {
            for verb in ["create", "get"] {
                assert_eq!(
                    fires(&pr(&[""], &[res], &[verb])),
                    vec![Rule::PodExecAttach],
                    "{verb} {res}"
                );
            }
        }
        assert_eq!(
            fires(&pr(&[""], &["*/exec"], &["create"])),
            vec![Rule::PodExecAttach]
        );
        // Near miss: logs, and `pods` alone does not cover its subresources.
        assert!(fires(&pr(&[""], &["pods/log"], &["get"])).is_empty());
        assert!(fires(&pr(&[""], &["pods"], &["get"])).is_empty());
    }

    #[test]
    fn one_grant_per_rule_even_across_groups() {
        let g = grants(
            &pr(&["*"], &["users", "roles"], &["impersonate", "bind"]),
            Reach::Cluster,
        );
        let rules: Vec<Rule> = g.iter().map(|g| g.rule).collect();
        assert_eq!(rules, vec![Rule::Wildcard, Rule::EscalateBindImpersonate]);
        assert_eq!(g[1].what, "bind on roles; impersonate on users");
    }
}
