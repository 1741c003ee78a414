//! Reports written while the audit runs (`palisade audit --sort none`): each finding as it is
//! made, then what needs the whole audit (accepted risks, diagnostics, the summary). Memory
//! then stays flat however many findings a repository has.

use super::{sarif, Format};
use crate::manifest::Diagnostic;
use crate::policy::audit::AuditReport;
use crate::policy::finding::Finding;
use crate::policy::rules::Rule;
use std::io::Write;

/// An unsorted report being written. Feed it with [`Streamer::finding`] (from the audit's
/// stream), then call [`Streamer::finish`]. The first write error stops the writing and is
/// returned by `finish`.
pub struct Streamer<'w> {
    format: Format,
    verbose: bool,
    out: &'w mut dyn Write,
    written: usize,
    error: Option<std::io::Error>,
    /// SARIF results refer to rules by index.
    rule_index: std::collections::BTreeMap<Rule, usize>,
}

/// Why a format cannot be streamed.
#[derive(Debug, thiserror::Error)]
#[error("--format {0} groups findings by namespace and workload, which needs them sorted: use --sort object (the default)")]
pub struct NotStreamable(&'static str);

impl<'w> Streamer<'w> {
    pub fn new(
        format: Format,
        verbose: bool,
        out: &'w mut dyn Write,
    ) -> Result<Self, NotStreamable> {
        if format == Format::Html {
            return Err(NotStreamable("html"));
        }
        Ok(Streamer {
            format,
            verbose,
            out,
            written: 0,
            error: None,
            rule_index: sarif::rule_index(),
        })
    }

    pub fn finding(&mut self, f: &Finding) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.write_finding(f) {
            self.error = Some(e);
        }
        self.written += 1;
    }

    fn write_finding(&mut self, f: &Finding) -> std::io::Result<()> {
        let first = self.written == 0;
        let out = &mut *self.out;
        match self.format {
            Format::Table => {
                if first {
                    table_line(out, ["SEVERITY", "RULE", "OBJECT", "FIELD", "MESSAGE"])?;
                }
                let severity = f.severity.to_string().to_uppercase();
                let object = f.object.to_string();
                table_line(out, [&severity, f.rule.id(), &object, &f.field, &f.message])
            }
            Format::Json => {
                out.write_all(if first {
                    b"{\n  \"findings\": [\n    "
                } else {
                    b",\n    "
                })?;
                serde_json::to_writer(&mut *out, f).map_err(std::io::Error::other)
            }
            Format::Sarif => {
                if first {
                    sarif::write_head(out)?;
                    out.write_all(b"\n        ")?;
                } else {
                    out.write_all(b",\n        ")?;
                }
                let result = sarif::result(f, &self.rule_index);
                serde_json::to_writer(&mut *out, &result).map_err(std::io::Error::other)
            }
            Format::Html => unreachable!("refused by Streamer::new"),
        }
    }

    /// Writes what follows the findings. `report` is the finished audit, whose `findings` were
    /// all streamed.
    pub fn finish(mut self, report: &AuditReport, diags: &[Diagnostic]) -> std::io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        debug_assert!(
            report.findings.is_empty(),
            "a streamed audit keeps no finding"
        );
        let none = self.written == 0;
        let out = &mut *self.out;
        match self.format {
            Format::Table => {
                if !none {
                    writeln!(out)?;
                }
                super::table::write_tail(report, diags, self.verbose, out)
            }
            Format::Json => {
                out.write_all(if none {
                    b"{\n  \"findings\": ["
                } else {
                    b"\n  "
                })?;
                out.write_all(b"],\n  \"accepted\": ")?;
                serde_json::to_writer(&mut *out, &report.accepted)
                    .map_err(std::io::Error::other)?;
                out.write_all(b",\n  \"diagnostics\": ")?;
                let diags: Vec<_> = diags.iter().map(super::diagnostic_json).collect();
                serde_json::to_writer(&mut *out, &diags).map_err(std::io::Error::other)?;
                out.write_all(b",\n  \"summary\": ")?;
                serde_json::to_writer(&mut *out, &super::summary_json(report))
                    .map_err(std::io::Error::other)?;
                out.write_all(b"\n}\n")
            }
            Format::Sarif => {
                if none {
                    sarif::write_head(out)?;
                }
                sarif::write_tail(report, diags, !none, &self.rule_index, out)
            }
            Format::Html => unreachable!("refused by Streamer::new"),
        }
    }
}

/// The width of the rule column: the longest rule id.
fn rule_width() -> usize {
    Rule::ALL.iter().map(|r| r.id().len()).max().unwrap_or(0)
}

/// Columns of fixed width (the sorted table measures them first; a stream cannot), so that
/// lines stay aligned when objects and fields are of usual lengths.
fn table_line(out: &mut dyn Write, c: [&str; 5]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:8}  {:r$}  {:48}  {:72}  {}",
        c[0],
        c[1],
        c[2],
        c[3],
        c[4],
        r = rule_width()
    )
}
