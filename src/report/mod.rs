//! Rendering audit results: a table for people, JSON for scripts, SARIF for code scanning,
//! HTML for a report people read (a CI artifact).

mod html;
mod sarif;
mod stream;
mod table;

pub use stream::{NotStreamable, Streamer};

use crate::manifest::Diagnostic;
use crate::policy::audit::AuditReport;
use serde_json::json;

/// Output format of `palisade audit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Sarif,
    Html,
}

/// Writes the report (and input diagnostics) in `format` to `out`, streaming: no copy of the
/// findings is built in memory (a 100k-workload repository has over half a million findings).
/// `verbose`: the table lists each document skipped for its kind instead of one summary line
/// (JSON and SARIF always carry every diagnostic: they are read by programs).
pub fn write(
    format: Format,
    report: &AuditReport,
    diags: &[Diagnostic],
    verbose: bool,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    match format {
        Format::Table => table::write(report, diags, verbose, out),
        Format::Json => json_report(report, diags, out),
        Format::Sarif => sarif::write(report, diags, out),
        Format::Html => html::write(report, diags, out),
    }
}

/// One line for the documents skipped because Palisade does not audit their kind:
/// `skipped 12 documents of kinds Palisade does not audit: Service x10, ConfigMap x2`.
pub fn skipped_summary(diags: &[Diagnostic]) -> Option<String> {
    let mut by_kind: std::collections::BTreeMap<&str, usize> = Default::default();
    for kind in diags.iter().filter_map(|d| d.skipped_kind.as_deref()) {
        *by_kind.entry(kind).or_default() += 1;
    }
    if by_kind.is_empty() {
        return None;
    }
    let total: usize = by_kind.values().sum();
    let mut kinds: Vec<(&str, usize)> = by_kind.into_iter().collect();
    kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} x{n}")).collect();
    Some(format!(
        "skipped {total} document{} of kinds Palisade does not audit: {}",
        if total == 1 { "" } else { "s" },
        list.join(", ")
    ))
}

/// The report as a string (tests, small outputs).
pub fn render(format: Format, report: &AuditReport, diags: &[Diagnostic]) -> String {
    let mut buf = Vec::new();
    write(format, report, diags, false, &mut buf).expect("writing to memory cannot fail");
    String::from_utf8(buf).expect("reports are UTF-8")
}

fn diagnostic_json(d: &Diagnostic) -> serde_json::Value {
    json!({
        "severity": match d.severity { crate::manifest::Severity::Error => "error", crate::manifest::Severity::Skipped => "skipped" },
        "file": d.file, "document": d.document, "line": d.line, "message": d.message,
    })
}

fn summary_json(report: &AuditReport) -> serde_json::Value {
    let by_severity: serde_json::Map<String, serde_json::Value> = report
        .by_severity()
        .into_iter()
        .map(|(s, n)| (s.to_string(), json!(n)))
        .collect();
    json!({
        "objects": report.objects,
        "findings": report.total(),
        "exempted": report.exempted,
        "accepted": report.accepted.len(),
        "bySeverity": by_severity,
        "namespaces": report.namespaces,
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
    let doc = Doc {
        summary: summary_json(report),
        findings: &report.findings,
        accepted: &report.accepted,
        diagnostics: diags,
    };
    serde_json::to_writer_pretty(&mut *out, &doc).map_err(std::io::Error::other)?;
    out.write_all(b"\n")
}
