use crate::manifest::Diagnostic;
use crate::policy::audit::AuditReport;
use crate::policy::finding::Finding;
use std::io::Write;

fn cells(f: &Finding) -> [String; 4] {
    [
        f.severity.to_string().to_uppercase(),
        f.rule.to_string(),
        f.object.to_string(),
        f.field.to_string(),
    ]
}

pub fn write(
    report: &AuditReport,
    diags: &[Diagnostic],
    verbose: bool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let header = ["SEVERITY", "RULE", "OBJECT", "FIELD", "MESSAGE"];
    // First pass: column widths; second pass: the lines (no copy of all rows is kept).
    let mut widths = [0usize; 4];
    for (w, h) in widths.iter_mut().zip(header) {
        *w = h.len();
    }
    for f in &report.findings {
        for (w, cell) in widths.iter_mut().zip(cells(f)) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |out: &mut dyn Write, c: [&str; 5]| {
        writeln!(
            out,
            "{:w0$}  {:w1$}  {:w2$}  {:w3$}  {}",
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        )
    };
    if !report.findings.is_empty() {
        line(out, header)?;
        for f in &report.findings {
            let c = cells(f);
            line(out, [&c[0], &c[1], &c[2], &c[3], &f.message])?;
        }
        writeln!(out)?;
    }
    write_tail(report, diags, verbose, out)
}

/// What follows the findings: accepted risks, diagnostics and the summary line.
pub(super) fn write_tail(
    report: &AuditReport,
    diags: &[Diagnostic],
    verbose: bool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    if !report.accepted.is_empty() {
        writeln!(
            out,
            "ACCEPTED RISKS (annotations on the objects; not counted as findings):"
        )?;
        for a in &report.accepted {
            let f = &a.finding;
            writeln!(
                out,
                "  {} {} {}  {}: {}",
                f.severity.to_string().to_uppercase(),
                f.rule,
                f.object,
                a.accepted_risk.annotation,
                a.accepted_risk.reason
            )?;
        }
        writeln!(out)?;
    }
    for d in diags.iter().filter(|d| verbose || d.skipped_kind.is_none()) {
        writeln!(out, "{d}")?;
    }
    if !verbose {
        if let Some(line) = super::skipped_summary(diags) {
            writeln!(out, "{line} (--verbose lists each)")?;
        }
    }
    let by: Vec<String> = report
        .by_severity()
        .iter()
        .rev()
        .map(|(s, n)| format!("{n} {s}"))
        .collect();
    writeln!(
        out,
        "{} objects audited, {} findings{}, {} exempted, {} accepted",
        report.objects,
        report.total(),
        if by.is_empty() {
            String::new()
        } else {
            format!(" ({})", by.join(", "))
        },
        report.exempted,
        report.accepted.len()
    )
}
