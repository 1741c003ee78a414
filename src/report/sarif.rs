//! SARIF 2.1.0, as GitHub code scanning reads it.

use crate::manifest::{Diagnostic, Severity as InputSeverity};
use crate::policy::audit::AuditReport;
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

pub fn render(report: &AuditReport, diags: &[Diagnostic]) -> String {
    let rules: Vec<Rule> = Rule::ALL.to_vec();
    let index: BTreeMap<Rule, usize> = rules.iter().enumerate().map(|(i, r)| (*r, i)).collect();
    let results: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
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
        })
        .collect();
    let notifications: Vec<Value> = diags
        .iter()
        .map(|d| {
            json!({
                "level": if d.severity == InputSeverity::Error { "error" } else { "note" },
                "message": {"text": d.to_string()},
            })
        })
        .collect();
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "palisade",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules.iter().map(|r| rule_descriptor(*r)).collect::<Vec<_>>(),
            }},
            "results": results,
            "invocations": [{
                "executionSuccessful": !diags.iter().any(|d| d.severity == InputSeverity::Error),
                "toolExecutionNotifications": notifications,
            }],
        }],
    });
    let mut s = serde_json::to_string_pretty(&doc).expect("JSON values always serialize");
    s.push('\n');
    s
}
