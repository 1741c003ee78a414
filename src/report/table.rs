use crate::manifest::Diagnostic;
use crate::policy::audit::AuditReport;
use std::fmt::Write;

pub fn render(report: &AuditReport, diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    let rows: Vec<[String; 5]> = report
        .findings
        .iter()
        .map(|f| {
            [
                f.severity.to_string().to_uppercase(),
                f.rule.to_string(),
                f.object.to_string(),
                f.field.clone(),
                f.message.clone(),
            ]
        })
        .collect();
    let header = ["SEVERITY", "RULE", "OBJECT", "FIELD", "MESSAGE"];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r.iter()).take(4) {
            *w = (*w).max(cell.len());
        }
    }
    if !rows.is_empty() {
        let line = |cells: [&str; 5]| {
            format!(
                "{:w0$}  {:w1$}  {:w2$}  {:w3$}  {}\n",
                cells[0],
                cells[1],
                cells[2],
                cells[3],
                cells[4],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3]
            )
        };
        out.push_str(&line(header));
        for r in &rows {
            out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
        }
        out.push('\n');
    }
    for d in diags {
        let _ = writeln!(out, "{d}");
    }
    let by: Vec<String> = report
        .by_severity()
        .iter()
        .rev()
        .map(|(s, n)| format!("{n} {s}"))
        .collect();
    let _ = writeln!(
        out,
        "{} objects audited, {} findings{}, {} exempted",
        report.objects,
        report.findings.len(),
        if by.is_empty() {
            String::new()
        } else {
            format!(" ({})", by.join(", "))
        },
        report.exempted
    );
    out
}
