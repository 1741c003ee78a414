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

/// Writes the report (and input diagnostics) in `format` to `out`, streaming: no copy of the
/// findings is built in memory (a 100k-workload repository has over half a million findings).
pub fn write(
    format: Format,
    report: &AuditReport,
    diags: &[Diagnostic],
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    match format {
        Format::Table => table::write(report, diags, out),
        Format::Json => json_report(report, diags, out),
        Format::Sarif => sarif::write(report, diags, out),
    }
}

/// The report as a string (tests, small outputs).
pub fn render(format: Format, report: &AuditReport, diags: &[Diagnostic]) -> String {
    let mut buf = Vec::new();
    write(format, report, diags, &mut buf).expect("writing to memory cannot fail");
    String::from_utf8(buf).expect("reports are UTF-8")
}

fn diagnostic_json(d: &Diagnostic) -> serde_json::Value {
    json!({
        "severity": match d.severity { crate::manifest::Severity::Error => "error", crate::manifest::Severity::Skipped => "skipped" },
        "file": d.file, "document": d.document, "line": d.line, "message": d.message,
    })
}

fn json_report(
    report: &AuditReport,
    diags: &[Diagnostic],
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    #[derive(serde::Serialize)]
    struct Doc<'a> {
        summary: serde_json::Value,
        findings: &'a [crate::policy::finding::Finding],
        /// Findings accepted by an accepted-risk annotation (not violations).
        accepted: &'a [crate::policy::accepted::AcceptedFinding],
        #[serde(serialize_with = "diagnostics")]
        diagnostics: &'a [Diagnostic],
    }
    fn diagnostics<S: serde::Serializer>(d: &&[Diagnostic], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(d.iter().map(diagnostic_json))
    }
    let by_severity: serde_json::Map<String, serde_json::Value> = report
        .by_severity()
        .into_iter()
        .map(|(s, n)| (s.to_string(), json!(n)))
        .collect();
    let doc = Doc {
        summary: json!({
            "objects": report.objects,
            "findings": report.findings.len(),
            "exempted": report.exempted,
            "accepted": report.accepted.len(),
            "bySeverity": by_severity,
            "namespaces": report.namespaces,
        }),
        findings: &report.findings,
        accepted: &report.accepted,
        diagnostics: diags,
    };
    serde_json::to_writer_pretty(&mut *out, &doc).map_err(std::io::Error::other)?;
    out.write_all(b"\n")
}
