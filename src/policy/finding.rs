//! What the engine reports: one `Finding` per broken rule per object and field.

use super::rules::{Rule, Severity};
use serde::Serialize;
use std::fmt;
use std::sync::Arc;

/// The object a finding is about. Pod findings point at the owning workload, not each replica.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: &str, namespace: Option<&str>, name: &str) -> Self {
        ObjectRef {
            kind: kind.to_string(),
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}/{}", self.kind, ns, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

/// A rule broken at one field of one object.
///
/// Kept small: an audit holds every finding until it sorts them, and a 100k-workload
/// repository has over half a million. The object and the strings are shared (an object's
/// findings point at one `ObjectRef`; the audit interns field paths and messages, which repeat
/// across workloads), and what the rule determines (its reference) is not stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub rule: Rule,
    pub severity: Severity,
    pub object: Arc<ObjectRef>,
    /// JSON-path-like location inside the object, e.g. `spec.template.spec.containers[1].securityContext.runAsNonRoot`.
    pub field: Arc<str>,
    /// What is wrong and what to change.
    pub message: Arc<str>,
    /// Where the finding came from on disk (offline audit only).
    pub source: Option<Source>,
}

impl Serialize for Finding {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = ser.serialize_struct("Finding", 7)?;
        s.serialize_field("rule", &self.rule)?;
        s.serialize_field("severity", &self.severity)?;
        s.serialize_field("object", &self.object)?;
        s.serialize_field("field", &*self.field)?;
        s.serialize_field("message", &*self.message)?;
        s.serialize_field("reference", self.reference())?;
        match &self.source {
            Some(source) => s.serialize_field("source", source)?,
            None => s.skip_field("source")?,
        }
        s.end()
    }
}

/// File and document a manifest came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Source {
    /// Shared by every object and finding of the file (an audit of a large repository has
    /// hundreds of thousands of findings; an owned copy of the path each was ~120 B apiece).
    #[serde(serialize_with = "serialize_str")]
    pub file: Arc<str>,
    /// 0-based index of the YAML document in the file (u32 to keep findings small; a file of
    /// more than 4 billion documents saturates rather than wraps).
    pub document: u32,
    /// 1-based line where the document starts.
    pub line: u32,
}

fn serialize_str<S: serde::Serializer>(s: &Arc<str>, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s)
}

impl Finding {
    pub fn new(
        rule: Rule,
        object: impl Into<Arc<ObjectRef>>,
        field: impl Into<Arc<str>>,
        message: impl Into<Arc<str>>,
    ) -> Self {
        Finding {
            rule,
            severity: rule.severity(),
            object: object.into(),
            field: field.into(),
            message: message.into(),
            source: None,
        }
    }

    /// The PSS / CIS control the rule comes from.
    pub fn reference(&self) -> &'static str {
        self.rule.reference()
    }

    /// Sort key that makes reports deterministic, whatever order objects were read in. Total
    /// (the message last), so that an unstable sort gives one order.
    pub fn sort_key(&self) -> (&ObjectRef, Rule, &str, Option<(&str, u32)>, &str) {
        let source = self.source.as_ref().map(|s| (&*s.file, s.document));
        (&self.object, self.rule, &self.field, source, &self.message)
    }
}

/// A rule violation before it is attached to an object: what checks produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub rule: Rule,
    pub field: String,
    pub message: String,
}

impl Violation {
    pub fn new(rule: Rule, field: impl Into<String>, message: impl Into<String>) -> Self {
        Violation {
            rule,
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn into_finding(self, object: &Arc<ObjectRef>) -> Finding {
        Finding::new(self.rule, object.clone(), self.field, self.message)
    }
}
