//! Accepted-risk annotations: `accepted-risk.palisade.dev/<rule-id>: "<reason>"` on a
//! ClusterRole or ClusterRoleBinding accepts that rule's findings on that object. An accepted
//! finding is still reported (as accepted, with its reason) but is not a violation.
//!
//! Why only those cluster-scoped objects: writing them takes cluster-wide RBAC permissions that
//! only cluster administrators hold, so the annotation cannot let a namespace tenant accept the
//! risks of their own objects. Namespaced objects are written by tenants, and Namespaces are often
//! created self-service (whoever creates one could accept its missing default-deny policy); on
//! those the annotation is ignored, and that is reported as an `accepted-risk.invalid` finding.

use super::finding::{Finding, Violation};
use super::rules::{Category, Rule};
use serde::Serialize;
use std::collections::BTreeMap;

/// Annotation key prefix; the rest of the key is a rule id.
pub const PREFIX: &str = "accepted-risk.palisade.dev/";
/// Shortest reason accepted (characters, surrounding whitespace ignored), as for exemptions.
pub const MIN_REASON: usize = 10;

/// One valid accepted-risk annotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acceptance {
    pub rule: Rule,
    pub reason: String,
}

/// Why a finding was accepted: the annotation and its reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AcceptedRisk {
    pub annotation: String,
    pub reason: String,
}

/// A finding accepted by an annotation on its object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedFinding {
    #[serde(flatten)]
    pub finding: Finding,
    pub accepted_risk: AcceptedRisk,
}

impl AcceptedFinding {
    pub fn new(finding: Finding, reason: &str) -> Self {
        let annotation = format!("{PREFIX}{}", finding.rule.id());
        AcceptedFinding {
            finding,
            accepted_risk: AcceptedRisk {
                annotation,
                reason: reason.to_string(),
            },
        }
    }
}

fn field(key: &str) -> String {
    format!("metadata.annotations[\"{key}\"]")
}

fn ours(annotations: Option<&BTreeMap<String, String>>) -> impl Iterator<Item = (&str, &str)> {
    annotations
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(PREFIX))
        .map(|(k, v)| (k.as_str(), v.as_str()))
}

/// Reads the accepted-risk annotations of a ClusterRole or ClusterRoleBinding: the valid ones
/// are returned, each invalid one (unknown rule, short reason) becomes a violation in `out`.
pub fn parse(
    annotations: Option<&BTreeMap<String, String>>,
    out: &mut Vec<Violation>,
) -> Vec<Acceptance> {
    let mut accepted = Vec::new();
    for (key, value) in ours(annotations) {
        let id = &key[PREFIX.len()..];
        let Some(rule) = Rule::parse(id) else {
            out.push(Violation::new(
                Rule::AcceptedRiskInvalid,
                field(key),
                format!(
                    "annotation {key} names no rule Palisade knows (`{id}`), so it accepts nothing; use a rule id from the rule catalogue, e.g. {PREFIX}rbac.wildcard"
                ),
            ));
            continue;
        };
        if rule.category() == Category::Baseline {
            out.push(Violation::new(
                Rule::AcceptedRiskInvalid,
                field(key),
                format!(
                    "annotation {key}: {rule} is about Palisade's own configuration and cannot be accepted by an annotation; fix the baseline or the annotation instead"
                ),
            ));
            continue;
        }
        let reason = value.trim();
        if reason.chars().count() < MIN_REASON {
            out.push(Violation::new(
                Rule::AcceptedRiskInvalid,
                field(key),
                format!(
                    "annotation {key} needs a reason of at least {MIN_REASON} characters saying why the risk is accepted (got {:?}); until then {rule} findings on this object are reported",
                    value
                ),
            ));
            continue;
        }
        accepted.push(Acceptance {
            rule,
            reason: reason.to_string(),
        });
    }
    accepted
}

/// Accepted-risk annotations on an object that may not carry them (namespaced objects,
/// Namespaces) are ignored: each becomes a violation saying so.
pub fn ignored(annotations: Option<&BTreeMap<String, String>>, kind: &str) -> Vec<Violation> {
    ours(annotations)
        .map(|(key, _)| {
            Violation::new(
                Rule::AcceptedRiskInvalid,
                field(key),
                format!(
                    "annotation {key} is ignored on a {kind}: only ClusterRoles and ClusterRoleBindings, which only cluster administrators can write, may accept risks; remove it and ask for a baseline exemption instead"
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_known_rule_with_a_reason_is_accepted_other_annotations_are_not_read() {
        let a = annotations(&[
            (
                "accepted-risk.palisade.dev/rbac.webhook-config",
                "  Enforce mode manages admission policies.  ",
            ),
            ("example.com/owner", "x"),
        ]);
        let mut out = Vec::new();
        let got = parse(Some(&a), &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(
            got,
            [Acceptance {
                rule: Rule::WebhookConfig,
                reason: "Enforce mode manages admission policies.".into()
            }]
        );
        assert!(parse(None, &mut out).is_empty());
    }

    #[test]
    fn a_short_reason_accepts_nothing_and_names_the_key() {
        let key = "accepted-risk.palisade.dev/rbac.wildcard";
        let mut out = Vec::new();
        let got = parse(Some(&annotations(&[(key, " needed  ")])), &mut out);
        assert!(got.is_empty());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].rule, Rule::AcceptedRiskInvalid);
        assert_eq!(out[0].field, format!("metadata.annotations[\"{key}\"]"));
        assert!(out[0].message.contains("at least 10 characters"), "{out:?}");
        // Exactly ten characters is enough.
        out.clear();
        assert_eq!(
            parse(Some(&annotations(&[(key, "0123456789")])), &mut out).len(),
            1
        );
        assert!(out.is_empty());
    }

    #[test]
    fn unknown_and_baseline_rules_are_reported() {
        let mut out = Vec::new();
        let got = parse(
            Some(&annotations(&[
                (
                    "accepted-risk.palisade.dev/rbac.wildcards",
                    "a long enough reason",
                ),
                (
                    "accepted-risk.palisade.dev/exemption.expired",
                    "a long enough reason",
                ),
            ])),
            &mut out,
        );
        assert!(got.is_empty());
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0].message.contains("cannot be accepted"), "{out:?}");
        assert!(out[1].message.contains("`rbac.wildcards`"), "{out:?}");
    }

    #[test]
    fn annotations_on_other_objects_are_ignored_and_reported() {
        let a = annotations(&[
            (
                "accepted-risk.palisade.dev/pss.privileged",
                "we really need it",
            ),
            ("other", "x"),
        ]);
        let out = ignored(Some(&a), "Deployment");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].rule, Rule::AcceptedRiskInvalid);
        assert!(
            out[0].message.contains("ignored on a Deployment"),
            "{out:?}"
        );
        assert!(ignored(None, "Pod").is_empty());
    }
}
