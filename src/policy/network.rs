//! Network audit: namespaces without default deny, and policies that re-open all traffic.

use super::finding::Violation;
use super::rules::Rule;
use crate::crd::Direction;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};

/// What one NetworkPolicy contributes to its namespace's isolation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicySummary {
    /// Selects every pod and denies this direction unless another policy allows.
    pub denies_ingress: bool,
    pub denies_egress: bool,
}

fn directions(np: &NetworkPolicy) -> (bool, bool) {
    let Some(spec) = &np.spec else {
        return (false, false);
    };
    match &spec.policy_types {
        Some(types) if !types.is_empty() => (
            types.iter().any(|t| t == "Ingress"),
            types.iter().any(|t| t == "Egress"),
        ),
        // The API server defaults policyTypes: Ingress always, Egress when egress rules exist
        // (`egress: []` is none).
        _ => (true, spec.egress.as_ref().is_some_and(|e| !e.is_empty())),
    }
}

/// Summarises a policy for the default-deny check.
pub fn summarize(np: &NetworkPolicy) -> PolicySummary {
    let Some(spec) = &np.spec else {
        return PolicySummary::default();
    };
    let selects_all = spec.pod_selector.as_ref().is_none_or(|s| {
        s.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
    });
    let (ingress, egress) = directions(np);
    PolicySummary {
        denies_ingress: selects_all
            && ingress
            && spec.ingress.as_ref().is_none_or(|r| r.is_empty()),
        denies_egress: selects_all && egress && spec.egress.as_ref().is_none_or(|r| r.is_empty()),
    }
}

/// The default-deny directions a namespace lacks, given the summaries of its policies.
pub fn missing_default_deny<'a>(
    wanted: &[Direction],
    policies: impl IntoIterator<Item = &'a PolicySummary> + Clone,
) -> Vec<Direction> {
    wanted
        .iter()
        .copied()
        .filter(|d| {
            !policies.clone().into_iter().any(|p| match d {
                Direction::Ingress => p.denies_ingress,
                Direction::Egress => p.denies_egress,
            })
        })
        .collect()
}

fn peer_is_everyone(p: &NetworkPolicyPeer) -> bool {
    if let Some(block) = &p.ip_block {
        let all = block.cidr == "0.0.0.0/0" || block.cidr == "::/0";
        return all && block.except.as_ref().is_none_or(|e| e.is_empty());
    }
    let empty = |s: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>| {
        s.as_ref().is_some_and(|s| {
            s.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
        })
    };
    // namespaceSelector {} (with no or an empty podSelector) is every pod in the cluster.
    empty(&p.namespace_selector) && (p.pod_selector.is_none() || empty(&p.pod_selector))
}

fn opens_everything(
    peers: Option<&Vec<NetworkPolicyPeer>>,
    ports: Option<&Vec<NetworkPolicyPort>>,
) -> bool {
    let any_port = ports.is_none_or(|p| p.is_empty());
    let any_peer = peers.is_none_or(|p| p.is_empty() || p.iter().any(peer_is_everyone));
    any_port && any_peer
}

/// Rules that allow any peer on any port: they undo default deny for the pods they select.
pub fn allow_all_rules(np: &NetworkPolicy, out: &mut Vec<Violation>) {
    let Some(spec) = &np.spec else { return };
    let (ingress, egress) = directions(np);
    if ingress {
        for (i, r) in spec.ingress.iter().flatten().enumerate() {
            if opens_everything(r.from.as_ref(), r.ports.as_ref()) {
                out.push(Violation::new(
                    Rule::AllowAllOverride,
                    format!("spec.ingress[{i}]"),
                    "allows ingress from any source on any port, re-opening what default deny closed; name the peers (podSelector/namespaceSelector) and ports",
                ));
            }
        }
    }
    if egress {
        for (i, r) in spec.egress.iter().flatten().enumerate() {
            if opens_everything(r.to.as_ref(), r.ports.as_ref()) {
                out.push(Violation::new(
                    Rule::AllowAllOverride,
                    format!("spec.egress[{i}]"),
                    "allows egress to any destination on any port, re-opening what default deny closed; name the peers and ports",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn np(yaml: &str) -> NetworkPolicy {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn empty_selector_without_rules_denies() {
        let p = np("metadata: {name: d}\nspec: {podSelector: {}, policyTypes: [Ingress, Egress]}");
        let s = summarize(&p);
        assert!(s.denies_ingress && s.denies_egress);
        assert!(missing_default_deny(&[Direction::Ingress, Direction::Egress], [&s]).is_empty());
    }

    #[test]
    fn defaulted_policy_types_deny_ingress_only() {
        let s = summarize(&np("metadata: {name: d}\nspec: {podSelector: {}}"));
        assert!(s.denies_ingress && !s.denies_egress);
        assert_eq!(
            missing_default_deny(&[Direction::Ingress, Direction::Egress], [&s]),
            vec![Direction::Egress]
        );
    }

    #[test]
    fn selective_policy_is_not_default_deny() {
        let s = summarize(&np(
            "metadata: {name: d}\nspec: {podSelector: {matchLabels: {app: db}}, policyTypes: [Ingress]}",
        ));
        assert!(!s.denies_ingress);
    }

    #[test]
    fn allow_all_rules_are_reported_but_scoped_rules_are_not() {
        let p = np(r#"
metadata: {name: open}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress:
  - {}
  - from: [{podSelector: {matchLabels: {app: web}}}]
  - from: [{namespaceSelector: {}}]
  egress:
  - to: [{ipBlock: {cidr: 0.0.0.0/0}}]
  - to: [{ipBlock: {cidr: 0.0.0.0/0}}]
    ports: [{port: 443}]
"#);
        let mut out = vec![];
        allow_all_rules(&p, &mut out);
        let fields: Vec<&str> = out.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            ["spec.ingress[0]", "spec.ingress[2]", "spec.egress[0]"]
        );
    }
}
