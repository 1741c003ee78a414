//! `palisade node` output: a table for people, JSON for scripts, SARIF for code scanning.

use super::{CheckResult, NodeReport, Status};
use crate::policy::rules::Severity;
use serde_json::{json, Value};
use std::io::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NodeFormat {
    Table,
    Json,
    Sarif,
}

pub fn write(format: NodeFormat, report: &NodeReport, out: &mut dyn Write) -> std::io::Result<()> {
    match format {
        NodeFormat::Table => table(report, out),
        NodeFormat::Json => pretty(&document(report), out),
        NodeFormat::Sarif => pretty(&sarif("palisade node", &[report]), out),
    }
}

/// Several reports (`palisade control-plane`: the probes, then each node's mirror pods): tables
/// one after the other, a JSON array, one SARIF run per report.
pub fn write_all(
    format: NodeFormat,
    tool: &str,
    reports: &[NodeReport],
    out: &mut dyn Write,
) -> std::io::Result<()> {
    match format {
        NodeFormat::Table => {
            for (i, r) in reports.iter().enumerate() {
                if i > 0 {
                    writeln!(out)?;
                }
                table(r, out)?;
            }
            Ok(())
        }
        NodeFormat::Json => pretty(&Value::Array(reports.iter().map(document).collect()), out),
        NodeFormat::Sarif => pretty(&sarif(tool, &reports.iter().collect::<Vec<_>>()), out),
    }
}

fn pretty(doc: &Value, out: &mut dyn Write) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, doc).map_err(std::io::Error::other)?;
    out.write_all(b"\n")
}

fn document(report: &NodeReport) -> Value {
    json!({
        "node": report.node,
        "summary": summary(report),
        "components": report.components,
        "results": report.results,
        "notes": report.notes,
    })
}

pub fn summary(report: &NodeReport) -> Value {
    json!({
        "pass": report.count(Status::Pass),
        "fail": report.count(Status::Fail),
        "notAssessable": report.count(Status::NotAssessable),
    })
}

fn table(report: &NodeReport, out: &mut dyn Write) -> std::io::Result<()> {
    let found: Vec<String> = report
        .components
        .iter()
        .map(|c| format!("{} (pid {})", c.component, c.pid))
        .collect();
    let heading = if !found.is_empty() {
        found.join(", ")
    } else if report
        .results
        .iter()
        .all(|r| r.outcome.status == Status::NotAssessable)
    {
        "no Kubernetes component found".into()
    } else {
        "probed through the API".to_string()
    };
    writeln!(out, "node {}: {heading}", report.node)?;
    for r in &report.results {
        let detail = detail(r);
        writeln!(
            out,
            "{:<15} {:<8} {:<31} {:<23} {}{}",
            r.outcome.status.as_str().to_uppercase(),
            r.severity.as_str(),
            r.rule,
            r.component.binary(),
            r.title,
            if detail.is_empty() {
                String::new()
            } else {
                format!("\n{:>16}{detail}", "")
            }
        )?;
    }
    for note in &report.notes {
        writeln!(out, "note: {note}")?;
    }
    writeln!(
        out,
        "{} pass, {} fail, {} not assessable",
        report.count(Status::Pass),
        report.count(Status::Fail),
        report.count(Status::NotAssessable)
    )
}

/// `actual (from source): reason`, the parts there are.
fn detail(r: &CheckResult) -> String {
    let o = &r.outcome;
    let mut s = String::new();
    if let Some(actual) = &o.actual {
        s.push_str(actual);
    }
    if let Some(source) = &o.source {
        s.push_str(&format!(" ({source})"));
    }
    if !o.reason.is_empty() {
        if !s.is_empty() {
            s.push_str(": ");
        }
        s.push_str(&o.reason);
    }
    s.trim().to_string()
}

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

fn sarif(tool: &str, reports: &[&NodeReport]) -> Value {
    let runs: Vec<Value> = reports.iter().map(|r| sarif_run(tool, r)).collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": runs,
    })
}

fn sarif_run(tool: &str, report: &NodeReport) -> Value {
    let rules: Vec<Value> = report
        .results
        .iter()
        .map(|r| {
            json!({
                "id": r.rule,
                "shortDescription": {"text": r.title},
                "defaultConfiguration": {"level": level(r.severity)},
                "properties": {"component": r.component, "severity": r.severity},
            })
        })
        .collect();
    let results: Vec<Value> = report
        .results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (kind, level) = match r.outcome.status {
                Status::Fail => ("fail", level(r.severity)),
                Status::Pass => ("pass", "none"),
                Status::NotAssessable => ("review", "none"),
            };
            let detail = detail(r);
            json!({
                "ruleId": r.rule,
                "ruleIndex": i,
                "kind": kind,
                "level": level,
                "message": {"text": if detail.is_empty() { r.title.to_string() } else { format!("{}: {detail}", r.title) }},
                "locations": [{"logicalLocations": [{
                    "name": r.component.to_string(),
                    "fullyQualifiedName": format!("{}/{}", report.node, r.component),
                    "kind": "module",
                }]}],
            })
        })
        .collect();
    json!({
        "tool": {"driver": {
            "name": tool,
            "version": env!("CARGO_PKG_VERSION"),
            "rules": rules,
        }},
        "results": results,
        "invocations": [{
            "executionSuccessful": true,
            "toolExecutionNotifications": report.notes.iter().map(|n| json!({"level": "note", "message": {"text": n}})).collect::<Vec<_>>(),
        }],
    })
}
