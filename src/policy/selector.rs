//! Label selectors (`matchLabels` + `matchExpressions`), compiled once and matched many times.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Requirement {
    Equals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A label set a selector can match, however it is stored.
pub trait LabelLookup {
    fn label(&self, key: &str) -> Option<&str>;
}

impl LabelLookup for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<T: LabelLookup + ?Sized> LabelLookup for std::sync::Arc<T> {
    fn label(&self, key: &str) -> Option<&str> {
        (**self).label(key)
    }
}

/// Labels as the audit keeps them for every workload until its joins run: the pairs, sorted, in
/// one allocation. (A `BTreeMap`'s node is 536 bytes however few labels it holds; at 100k
/// workloads that was 54 MB.)
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CompactLabels(Box<[(Box<str>, Box<str>)]>);

impl CompactLabels {
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

impl From<&BTreeMap<String, String>> for CompactLabels {
    fn from(m: &BTreeMap<String, String>) -> Self {
        // A BTreeMap iterates in key order: the pairs come out sorted.
        CompactLabels(
            m.iter()
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect(),
        )
    }
}

impl From<BTreeMap<String, String>> for CompactLabels {
    fn from(m: BTreeMap<String, String>) -> Self {
        CompactLabels(m.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

impl serde::Serialize for CompactLabels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl LabelLookup for CompactLabels {
    fn label(&self, key: &str) -> Option<&str> {
        let i = self.0.binary_search_by(|(k, _)| (**k).cmp(key)).ok()?;
        Some(&self.0[i].1)
    }
}

/// A selector ready to match label sets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

/// A selector the API server would reject (offline files are not schema-checked, and the CRD
/// schema does not check label syntax: a generated object carrying the selector would be refused).
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{field}: {problem}")]
pub struct InvalidSelector {
    /// Relative to the selector: `matchLabels.team`, `matchExpressions[1].values[0]`.
    pub field: String,
    pub problem: String,
}

/// Why `key` is not a label key (an optional DNS-subdomain prefix and `/`, then a name of at
/// most 63 characters), as the API server validates it.
pub fn label_key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if p.is_empty() || p.len() > 253 || !p.split('.').all(label_ok) {
            return Some(format!(
                "{key:?} is not a label key: its prefix must be a DNS subdomain (lowercase alphanumerics, '-' and '.', at most 253 characters)"
            ));
        }
    }
    if name.is_empty() || !label_chars_ok(name) {
        return Some(format!(
            "{key:?} is not a label key: the name must be 1 to 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
        ));
    }
    None
}

/// Why `value` is not a label value (empty, or at most 63 alphanumerics, '-', '_' or '.',
/// starting and ending with an alphanumeric).
pub fn label_value_problem(value: &str) -> Option<String> {
    (!value.is_empty() && !label_chars_ok(value)).then(|| {
        format!(
            "{value:?} is not a label value: at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
        )
    })
}

fn label_chars_ok(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b.first().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.last().is_some_and(|c| c.is_ascii_alphanumeric())
}

impl Selector {
    /// A selector that matches everything.
    pub fn everything() -> Self {
        Selector::default()
    }

    pub fn compile(sel: &LabelSelector) -> Result<Selector, InvalidSelector> {
        let invalid = |field: String, problem: String| Err(InvalidSelector { field, problem });
        let mut requirements = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            if let Some(problem) = label_key_problem(k).or_else(|| label_value_problem(v)) {
                return invalid(format!("matchLabels.{k}"), problem);
            }
            requirements.push(Requirement::Equals(k.clone(), v.clone()));
        }
        for (index, e) in sel.match_expressions.iter().flatten().enumerate() {
            let field = format!("matchExpressions[{index}]");
            let values = e.values.clone().unwrap_or_default();
            let key = e.key.clone();
            let needs_values = match e.operator.as_str() {
                "In" | "NotIn" => true,
                "Exists" | "DoesNotExist" => false,
                other => {
                    return invalid(
                        field,
                        format!(
                            "unknown operator {other:?} (want In, NotIn, Exists or DoesNotExist)"
                        ),
                    )
                }
            };
            if needs_values == values.is_empty() {
                let problem = if needs_values {
                    format!("operator {} needs at least one value", e.operator)
                } else {
                    format!("operator {} takes no values", e.operator)
                };
                return invalid(field, problem);
            }
            if let Some(problem) = label_key_problem(&key) {
                return invalid(format!("{field}.key"), problem);
            }
            for (i, v) in values.iter().enumerate() {
                if let Some(problem) = label_value_problem(v) {
                    return invalid(format!("{field}.values[{i}]"), problem);
                }
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

    /// Whether every requirement is about `key` alone (true for the empty selector).
    pub fn reads_only(&self, key: &str) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, _)
            | Requirement::In(k, _)
            | Requirement::NotIn(k, _)
            | Requirement::Exists(k)
            | Requirement::DoesNotExist(k) => k == key,
        })
    }

    pub fn matches<L: LabelLookup + ?Sized>(&self, labels: &L) -> bool {
        let has = |vs: &[String], v: &str| vs.iter().any(|x| x == v);
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.label(k) == Some(v.as_str()),
            Requirement::In(k, vs) => labels.label(k).is_some_and(|v| has(vs, v)),
            Requirement::NotIn(k, vs) => labels.label(k).is_none_or(|v| !has(vs, v)),
            Requirement::Exists(k) => labels.label(k).is_some(),
            Requirement::DoesNotExist(k) => labels.label(k).is_none(),
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
        assert_eq!(err.field, "matchExpressions[1]");
        assert!(err.to_string().contains("unknown operator"));
        let no_values = LabelSelector {
            match_expressions: Some(vec![expr("a", "In", &[])]),
            ..Default::default()
        };
        assert!(Selector::compile(&no_values).is_err());
    }

    #[test]
    fn label_syntax_is_checked_as_the_api_server_does() {
        let with = |labels: &[(&str, &str)], exprs: Vec<LabelSelectorRequirement>| LabelSelector {
            match_labels: (!labels.is_empty()).then(|| {
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }),
            match_expressions: (!exprs.is_empty()).then_some(exprs),
        };
        let err = |s: LabelSelector| Selector::compile(&s).unwrap_err().to_string();
        assert!(err(with(&[], vec![expr("team", "In", &["shop", "*"])]))
            .starts_with("matchExpressions[0].values[1]: \"*\" is not a label value"));
        assert!(err(with(&[("Bad Key!", "x")], vec![])).starts_with("matchLabels.Bad Key!: "));
        assert!(err(with(&[("team", "-shop")], vec![])).contains("is not a label value"));
        assert!(err(with(&[], vec![expr("Example.com/x", "Exists", &[])])).contains("prefix"));
        assert!(err(with(&[("a", &"x".repeat(64))], vec![])).contains("at most 63"));
        // What Kubernetes accepts, accepted.
        for ok in [
            with(&[("app.kubernetes.io/name", "web"), ("tier", "")], vec![]),
            with(
                &[],
                vec![expr("palisade.dev/x_y.z", "In", &["A-1", "b.c_d"])],
            ),
        ] {
            assert!(Selector::compile(&ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn compact_labels_answer_as_the_map_they_were_made_of() {
        let map = labels(&[
            ("b", "2"),
            ("a", "1"),
            ("app.kubernetes.io/name", "web"),
            ("z", ""),
        ]);
        let compact = CompactLabels::from(&map);
        for key in ["a", "b", "z", "app.kubernetes.io/name", "", "c", "aa", "zz"] {
            assert_eq!(compact.label(key), map.label(key), "{key}");
        }
        assert_eq!(compact.to_map(), map);
        let sel = Selector::compile(&LabelSelector {
            match_labels: Some(labels(&[("a", "1")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "z".into(),
                operator: "Exists".into(),
                values: None,
            }]),
        })
        .unwrap();
        assert!(sel.matches(&compact) && sel.matches(&map));
        assert!(!sel.matches(&CompactLabels::default()));
    }
}
