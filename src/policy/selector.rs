//! Label selectors (`matchLabels` + `matchExpressions`), compiled once and matched many times.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
enum Requirement {
    Equals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A selector ready to match label sets.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

/// A selector the API server would reject (offline files are not schema-checked).
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("matchExpressions[{index}]: {problem}")]
pub struct InvalidSelector {
    pub index: usize,
    pub problem: String,
}

impl Selector {
    /// A selector that matches everything.
    pub fn everything() -> Self {
        Selector::default()
    }

    pub fn compile(sel: &LabelSelector) -> Result<Selector, InvalidSelector> {
        let mut requirements = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            requirements.push(Requirement::Equals(k.clone(), v.clone()));
        }
        for (index, e) in sel.match_expressions.iter().flatten().enumerate() {
            let values = e.values.clone().unwrap_or_default();
            let key = e.key.clone();
            let needs_values = match e.operator.as_str() {
                "In" | "NotIn" => true,
                "Exists" | "DoesNotExist" => false,
                other => {
                    return Err(InvalidSelector {
                        index,
                        problem: format!(
                            "unknown operator {other:?} (want In, NotIn, Exists or DoesNotExist)"
                        ),
                    })
                }
            };
            if needs_values == values.is_empty() {
                let problem = if needs_values {
                    format!("operator {} needs at least one value", e.operator)
                } else {
                    format!("operator {} takes no values", e.operator)
                };
                return Err(InvalidSelector { index, problem });
            }
            requirements.push(match e.operator.as_str() {
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                _ => Requirement::DoesNotExist(key),
            });
        }
        Ok(Selector { requirements })
    }

    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn empty_selector_matches_everything() {
        let s = Selector::compile(&LabelSelector::default()).unwrap();
        assert!(s.is_everything());
        assert!(s.matches(&labels(&[])));
    }

    #[test]
    fn match_labels_and_expressions_are_anded() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("team", "payments")])),
            match_expressions: Some(vec![
                expr("tier", "In", &["db", "api"]),
                expr("legacy", "DoesNotExist", &[]),
                expr("env", "NotIn", &["dev"]),
            ]),
        };
        let s = Selector::compile(&sel).unwrap();
        assert!(s.matches(&labels(&[("team", "payments"), ("tier", "db")])));
        assert!(!s.matches(&labels(&[("team", "payments"), ("tier", "web")])));
        assert!(!s.matches(&labels(&[
            ("team", "payments"),
            ("tier", "db"),
            ("legacy", "")
        ])));
        assert!(!s.matches(&labels(&[
            ("team", "payments"),
            ("tier", "db"),
            ("env", "dev")
        ])));
        assert!(!s.matches(&labels(&[("tier", "db")])));
    }

    #[test]
    fn invalid_expressions_are_rejected_with_their_index() {
        let bad = LabelSelector {
            match_expressions: Some(vec![expr("a", "Exists", &[]), expr("b", "Equals", &["x"])]),
            ..Default::default()
        };
        let err = Selector::compile(&bad).unwrap_err();
        assert_eq!(err.index, 1);
        assert!(err.to_string().contains("unknown operator"));
        let no_values = LabelSelector {
            match_expressions: Some(vec![expr("a", "In", &[])]),
            ..Default::default()
        };
        assert!(Selector::compile(&no_values).is_err());
    }
}
