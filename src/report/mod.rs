//! Rendering audit results: a table for people, JSON for scripts, SARIF for code scanning.

mod sarif;
mod table;

use crate::manifest::Diagnostic;
use crate::policy::audit::AuditReport;
use serde_json::json;

/// Output format of `palisade audit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Sarif,
}

/// Renders the report (and input diagnostics) in `format`.
pub fn render(format: Format, report: &AuditReport, diags: &[Diagnostic]) -> String {
    match format {
        Format::Table => table::render(report, diags),
        Format::Json => json_report(report, diags),
        Format::Sarif => sarif::render(report, diags),
    }
}

fn json_report(report: &AuditReport, diags: &[Diagnostic]) -> String {
    let by_severity: serde_json::Map<String, serde_json::Value> = report
        .by_severity()
        .into_iter()
        .map(|(s, n)| (s.to_string(), json!(n)))
        .collect();
    let diagnostics: Vec<_> = diags
        .iter()
        .map(|d| {
            json!({
                "severity": match d.severity { crate::manifest::Severity::Error => "error", crate::manifest::Severity::Skipped => "skipped" },
                "file": d.file, "document": d.document, "line": d.line, "message": d.message,
            })
        })
        .collect();
    let doc = json!({
        "summary": {
            "objects": report.objects,
            "findings": report.findings.len(),
            "exempted": report.exempted,
            "bySeverity": by_severity,
            "namespaces": report.namespaces,
        },
        "findings": report.findings,
        "diagnostics": diagnostics,
    });
    let mut s = serde_json::to_string_pretty(&doc).expect("JSON values always serialize");
    s.push('\n');
    s
}
