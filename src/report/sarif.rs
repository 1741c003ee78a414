//! SARIF 2.1.0, as GitHub code scanning reads it.

use crate::manifest::{Diagnostic, Severity as InputSeverity};
use crate::policy::accepted::AcceptedFinding;
use crate::policy::audit::AuditReport;
use crate::policy::finding::Finding;
use crate::policy::rules::{Rule, Severity};
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// GitHub's `security-severity` score (0-10) shown as critical/high/medium/low.
fn score(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "1.0",
    }
}

fn rule_descriptor(r: Rule) -> Value {
    json!({
        "id": r.id(),
        "name": r.id(),
        "shortDescription": {"text": r.title()},
        "fullDescription": {"text": format!("{} ({})", r.title(), r.reference())},
        "defaultConfiguration": {"level": level(r.severity())},
        "properties": {
            "tags": ["security", "kubernetes"],
            "security-severity": score(r.severity()),
            "reference": r.reference(),
        },
    })
}

pub(super) fn result(f: &Finding, index: &BTreeMap<Rule, usize>) -> Value {
    let mut location = json!({
        "logicalLocations": [{
            "fullyQualifiedName": format!("{}#{}", f.object, f.field),
            "kind": "resource",
        }],
    });
    if let Some(src) = &f.source {
        location["physicalLocation"] = json!({
            "artifactLocation": {"uri": src.file.trim_start_matches("./")},
            "region": {"startLine": src.line.max(1)},
        });
    }
    json!({
        "ruleId": f.rule.id(),
        "ruleIndex": index[&f.rule],
        "level": level(f.severity),
        "message": {"text": format!("{}: {}", f.object, f.message)},
        "locations": [location],
        "partialFingerprints": {"palisade/v1": format!("{}|{}|{}", f.rule.id(), f.object, f.field)},
    })
}

/// An accepted finding: a result with an in-source suppression carrying the annotation's reason.
fn accepted_result(a: &AcceptedFinding, index: &BTreeMap<Rule, usize>) -> Value {
    let mut r = result(&a.finding, index);
    r["suppressions"] = json!([{
        "kind": "inSource",
        "status": "accepted",
        "justification": a.accepted_risk.reason,
        "properties": {"annotation": a.accepted_risk.annotation},
    }]);
    r
}

/// The results array, produced one result at a time while serializing.
struct Results<'a> {
    findings: &'a [Finding],
    accepted: &'a [AcceptedFinding],
    index: &'a BTreeMap<Rule, usize>,
}

impl serde::Serialize for Results<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let findings = self.findings.iter().map(|f| result(f, self.index));
        let accepted = self.accepted.iter().map(|a| accepted_result(a, self.index));
        s.collect_seq(findings.chain(accepted))
    }
}

/// Every rule is described (not only those found), so a result's index is known before the
/// audit ends.
pub(super) fn rule_index() -> BTreeMap<Rule, usize> {
    Rule::ALL.iter().enumerate().map(|(i, r)| (*r, i)).collect()
}

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

fn tool() -> Value {
    json!({"driver": {
        "name": "palisade",
        "version": env!("CARGO_PKG_VERSION"),
        "rules": Rule::ALL.iter().map(|r| rule_descriptor(*r)).collect::<Vec<_>>(),
    }})
}

fn invocations(diags: &[Diagnostic]) -> Value {
    let notifications: Vec<Value> = diags
        .iter()
        .map(|d| {
            json!({
                "level": if d.severity == InputSeverity::Error { "error" } else { "note" },
                "message": {"text": d.to_string()},
            })
        })
        .collect();
    json!([{
        "executionSuccessful": !diags.iter().any(|d| d.severity == InputSeverity::Error),
        "toolExecutionNotifications": notifications,
    }])
}

/// A streamed log up to its results' opening bracket.
pub(super) fn write_head(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    write!(
        out,
        "{{\n  \"$schema\": \"{SCHEMA}\",\n  \"version\": \"2.1.0\",\n  \"runs\": [\n    {{\n      \"tool\": "
    )?;
    serde_json::to_writer(&mut *out, &tool()).map_err(std::io::Error::other)?;
    out.write_all(b",\n      \"results\": [")
}

/// A streamed log after its streamed results (`any`: at least one was written).
pub(super) fn write_tail(
    report: &AuditReport,
    diags: &[Diagnostic],
    mut any: bool,
    index: &BTreeMap<Rule, usize>,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    for a in &report.accepted {
        out.write_all(if any { b",\n        " } else { b"\n        " })?;
        serde_json::to_writer(&mut *out, &accepted_result(a, index))
            .map_err(std::io::Error::other)?;
        any = true;
    }
    out.write_all(if any {
        b"\n      ],\n      \"invocations\": "
    } else {
        b"],\n      \"invocations\": "
    })?;
    serde_json::to_writer(&mut *out, &invocations(diags)).map_err(std::io::Error::other)?;
    out.write_all(b"\n    }\n  ]\n}\n")
}

pub fn write(
    report: &AuditReport,
    diags: &[Diagnostic],
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let index = rule_index();
    let results = Results {
        findings: &report.findings,
        accepted: &report.accepted,
        index: &index,
    };
    let doc = json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": tool(),
            "results": serde_json::Value::Null,
            "invocations": invocations(diags),
        }],
    });
    // Everything but the results is small; the results stream in at the placeholder.
    #[derive(serde::Serialize)]
    struct Run<'a> {
        #[serde(rename = "$schema")]
        schema: &'a Value,
        version: &'a Value,
        runs: [RunBody<'a>; 1],
    }
    #[derive(serde::Serialize)]
    struct RunBody<'a> {
        tool: &'a Value,
        results: Results<'a>,
        invocations: &'a Value,
    }
    let run = &doc["runs"][0];
    let streamed = Run {
        schema: &doc["$schema"],
        version: &doc["version"],
        runs: [RunBody {
            tool: &run["tool"],
            results,
            invocations: &run["invocations"],
        }],
    };
    serde_json::to_writer_pretty(&mut *out, &streamed).map_err(std::io::Error::other)?;
    out.write_all(b"\n")
}
