//! A self-contained HTML report: one file, no external assets (it is opened offline, as a CI
//! artifact). Summary by severity (with a bar chart in inline SVG) and by rule, the findings
//! grouped by namespace and object with field paths and fixes, the exemptions and accepted
//! risks, and the input diagnostics. A few lines of script filter the findings; the page reads
//! completely without it.

use super::skipped_summary;
use crate::manifest::{Diagnostic, Severity as InputSeverity};
use crate::policy::audit::AuditReport;
use crate::policy::finding::Finding;
use crate::policy::rules::{Rule, Severity};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;

/// Escapes text for element content and double-quoted attribute values.
struct Esc<'a>(&'a str);

impl std::fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut last = 0;
        for (i, c) in self.0.char_indices() {
            let rep = match c {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                '\'' => "&#39;",
                _ => continue,
            };
            f.write_str(&self.0[last..i])?;
            f.write_str(rep)?;
            last = i + c.len_utf8();
        }
        f.write_str(&self.0[last..])
    }
}

const STYLE: &str = r#"
:root { --critical:#8b0000; --high:#d9480f; --medium:#e8a100; --low:#2f6fb0; --info:#6c757d; }
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1rem 2rem; color: #1d1d1f; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; }
.muted { color: #666; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #eee; vertical-align: top; }
th { background: #f6f6f6; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
code { font: 12px/1.4 ui-monospace, monospace; background: #f3f3f3; padding: 0 .2rem; overflow-wrap: anywhere; }
td.rule code { white-space: nowrap; }
#chart { margin-top: 1rem; }
.sev { display: inline-block; min-width: 4.5rem; padding: 0 .4rem; border-radius: 3px; color: #fff; font-size: 12px; text-align: center; }
.sev.critical { background: var(--critical); } .sev.high { background: var(--high); }
.sev.medium { background: var(--medium); color: #000; } .sev.low { background: var(--low); } .sev.info { background: var(--info); }
.cards { display: flex; gap: 1rem; flex-wrap: wrap; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .5rem 1rem; min-width: 8rem; }
.card .big { font-size: 1.6rem; font-weight: 600; }
details { border: 1px solid #e4e4e4; border-radius: 4px; margin: .4rem 0; padding: .2rem .6rem; }
summary { cursor: pointer; font-weight: 600; }
.object { margin: .6rem 0 .6rem 1rem; }
.filters { position: sticky; top: 0; background: #fff; padding: .5rem 0; border-bottom: 1px solid #ddd; }
.filters label { margin-right: .8rem; }
.hidden { display: none; }
"#;

// Filters findings by severity and text; keeps the shown count current. No network, no eval.
const SCRIPT: &str = r#"
(function () {
  var boxes = document.querySelectorAll('.filters input[type=checkbox]');
  var text = document.getElementById('filter-text');
  var shown = document.getElementById('shown');
  var rows = document.querySelectorAll('tr.finding');
  function apply() {
    var on = {};
    boxes.forEach(function (b) { on[b.value] = b.checked; });
    var q = text.value.trim().toLowerCase();
    var n = 0;
    rows.forEach(function (r) {
      var ok = on[r.dataset.severity] && (!q || r.textContent.toLowerCase().indexOf(q) >= 0);
      r.classList.toggle('hidden', !ok);
      if (ok) { n++; }
    });
    document.querySelectorAll('details.namespace, div.object').forEach(function (g) {
      g.classList.toggle('hidden', g.querySelector('tr.finding:not(.hidden)') === null);
    });
    shown.textContent = String(n);
  }
  boxes.forEach(function (b) { b.addEventListener('change', apply); });
  text.addEventListener('input', apply);
  apply();
})();
"#;

fn severity_badge(s: Severity) -> String {
    format!(
        "<span class=\"sev {s}\">{}</span>",
        s.as_str().to_uppercase()
    )
}

/// Horizontal bars, one per severity, widths proportional to the largest count.
fn chart(by_severity: &BTreeMap<Severity, usize>) -> String {
    let max = by_severity.values().copied().max().unwrap_or(0).max(1);
    let (bar_h, gap, label_w, width) = (22, 8, 80, 520);
    let height = Severity::ALL.len() * (bar_h + gap);
    let mut svg = format!(
        "<svg id=\"chart\" role=\"img\" aria-label=\"findings by severity\" width=\"{w}\" height=\"{height}\" viewBox=\"0 0 {w} {height}\" xmlns=\"http://www.w3.org/2000/svg\">",
        w = width + label_w + 80
    );
    for (i, s) in Severity::ALL.iter().rev().enumerate() {
        let n = by_severity.get(s).copied().unwrap_or(0);
        let y = i * (bar_h + gap);
        let w = n * width / max;
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{ty}\" font-size=\"13\">{s}</text><rect x=\"{label_w}\" y=\"{y}\" width=\"{w}\" height=\"{bar_h}\" fill=\"var(--{s})\"><title>{n} {s}</title></rect><text x=\"{tx}\" y=\"{ty}\" font-size=\"13\">{n}</text>",
            ty = y + bar_h - 6,
            tx = label_w + w + 6,
        );
    }
    svg.push_str("</svg>");
    svg
}

fn source_cell(f: &Finding) -> String {
    match &f.source {
        Some(s) => format!("<code>{}:{}</code>", Esc(&s.file), s.line),
        None => String::new(),
    }
}

fn finding_row(out: &mut dyn Write, f: &Finding) -> std::io::Result<()> {
    writeln!(
        out,
        "<tr class=\"finding\" data-severity=\"{sev}\"><td>{badge}</td><td class=\"rule\"><code>{rule}</code></td><td><code>{field}</code></td><td>{msg}</td><td>{src}</td></tr>",
        sev = f.severity,
        badge = severity_badge(f.severity),
        rule = f.rule,
        field = Esc(&f.field),
        msg = Esc(&f.message),
        src = source_cell(f),
    )
}

/// Findings grouped by namespace (cluster-scoped first), then by object, in report order.
fn findings_section(out: &mut dyn Write, findings: &[Finding]) -> std::io::Result<()> {
    // A Namespace's own findings sit with its workloads' findings.
    let mut by_ns: BTreeMap<Option<&str>, Vec<&Finding>> = BTreeMap::new();
    for f in findings {
        let ns = match (&f.object.namespace, f.object.kind.as_str()) {
            (None, "Namespace") => Some(f.object.name.as_str()),
            (ns, _) => ns.as_deref(),
        };
        by_ns.entry(ns).or_default().push(f);
    }
    for (ns, list) in &by_ns {
        let title = match ns {
            Some(ns) => format!("namespace {}", Esc(ns)),
            None => "cluster-scoped objects".to_string(),
        };
        writeln!(
            out,
            "<details class=\"namespace\" open><summary>{title} <span class=\"muted\">({} finding{})</span></summary>",
            list.len(),
            if list.len() == 1 { "" } else { "s" }
        )?;
        let mut start = 0;
        while start < list.len() {
            let object = &list[start].object;
            let end = start
                + list[start..]
                    .iter()
                    .take_while(|f| &f.object == object)
                    .count();
            // Findings are sorted by object, so an object's findings are adjacent; a Namespace
            // moved here from the cluster-scoped group is one more run.
            writeln!(
                out,
                "<div class=\"object\"><h4>{} <code>{}</code></h4><table><tr><th>severity</th><th>rule</th><th>field</th><th>what is wrong and the fix</th><th>source</th></tr>",
                Esc(&object.kind),
                Esc(&object.name)
            )?;
            for f in &list[start..end] {
                finding_row(out, f)?;
            }
            writeln!(out, "</table></div>")?;
            start = end;
        }
        writeln!(out, "</details>")?;
    }
    Ok(())
}

pub fn write(
    report: &AuditReport,
    diags: &[Diagnostic],
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let by_severity = report.by_severity();
    let mut by_rule: BTreeMap<Rule, usize> = BTreeMap::new();
    for f in &report.findings {
        *by_rule.entry(f.rule).or_default() += 1;
    }
    let errors: Vec<&Diagnostic> = diags
        .iter()
        .filter(|d| d.severity == InputSeverity::Error)
        .collect();
    writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\"><title>Palisade audit report</title><style>{STYLE}</style></head><body>"
    )?;
    writeln!(
        out,
        "<h1>Palisade audit report</h1><p class=\"muted\">palisade {} &middot; {} objects audited &middot; {} namespaces covered</p>",
        env!("CARGO_PKG_VERSION"),
        report.objects,
        report.namespaces.len()
    )?;
    writeln!(out, "<h2>Summary</h2><div class=\"cards\">")?;
    let card = |out: &mut dyn Write, id: &str, label: &str, n: usize| {
        writeln!(
            out,
            "<div class=\"card\"><div class=\"big\" id=\"count-{id}\" data-count=\"{n}\">{n}</div>{label}</div>"
        )
    };
    card(out, "findings", "findings", report.findings.len())?;
    for s in Severity::ALL.iter().rev() {
        card(
            out,
            s.as_str(),
            s.as_str(),
            by_severity.get(s).copied().unwrap_or(0),
        )?;
    }
    card(out, "exempted", "exempted", report.exempted)?;
    card(out, "accepted", "accepted risks", report.accepted.len())?;
    card(out, "errors", "input errors", errors.len())?;
    writeln!(out, "</div>{}", chart(&by_severity))?;

    writeln!(
        out,
        "<h2>By rule</h2><table id=\"by-rule\"><tr><th>rule</th><th>severity</th><th>what it checks</th><th>reference</th><th>findings</th></tr>"
    )?;
    let mut rules: Vec<(&Rule, &usize)> = by_rule.iter().collect();
    rules.sort_by(|a, b| (b.0.severity(), b.1).cmp(&(a.0.severity(), a.1)));
    for (rule, n) in rules {
        writeln!(
            out,
            "<tr><td><code>{rule}</code></td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\" data-rule=\"{rule}\">{n}</td></tr>",
            severity_badge(rule.severity()),
            Esc(rule.title()),
            Esc(rule.reference()),
        )?;
    }
    writeln!(out, "</table>")?;

    writeln!(
        out,
        "<h2>Findings</h2><div class=\"filters\">show: {}<input id=\"filter-text\" type=\"search\" placeholder=\"filter by text\" aria-label=\"filter by text\"> <span class=\"muted\"><span id=\"shown\" data-total=\"{}\"></span> shown</span></div>",
        Severity::ALL
            .iter()
            .rev()
            .map(|s| format!(
                "<label><input type=\"checkbox\" value=\"{s}\" checked> {s}</label>"
            ))
            .collect::<String>(),
        report.findings.len()
    )?;
    if report.findings.is_empty() {
        writeln!(out, "<p>No findings.</p>")?;
    }
    findings_section(out, &report.findings)?;

    writeln!(out, "<h2>Exemptions</h2>")?;
    if report.exemptions.is_empty() {
        writeln!(out, "<p>The baseline declares no exemptions.</p>")?;
    } else {
        writeln!(
            out,
            "<table id=\"exemptions\"><tr><th>#</th><th>rules</th><th>namespaces</th><th>names</th><th>reason</th><th>expires</th><th>findings suppressed</th></tr>"
        )?;
        for e in &report.exemptions {
            let list = |v: &[String]| {
                if v.is_empty() {
                    "any".to_string()
                } else {
                    Esc(&v.join(", ")).to_string()
                }
            };
            writeln!(
                out,
                "<tr><td>spec.exemptions[{}]</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
                e.index,
                Esc(&e.rules.join(", ")),
                list(&e.namespaces),
                list(&e.names),
                Esc(&e.reason),
                Esc(e.expires.as_deref().unwrap_or("never")),
                e.suppressed
            )?;
        }
        writeln!(out, "</table>")?;
    }

    writeln!(out, "<h2>Accepted risks</h2>")?;
    if report.accepted.is_empty() {
        writeln!(out, "<p>No accepted-risk annotations.</p>")?;
    } else {
        writeln!(
            out,
            "<table id=\"accepted\"><tr><th>severity</th><th>rule</th><th>object</th><th>annotation</th><th>reason</th></tr>"
        )?;
        for a in &report.accepted {
            let f = &a.finding;
            writeln!(
                out,
                "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>",
                severity_badge(f.severity),
                f.rule,
                Esc(&f.object.to_string()),
                Esc(&a.accepted_risk.annotation),
                Esc(&a.accepted_risk.reason)
            )?;
        }
        writeln!(out, "</table>")?;
    }

    writeln!(out, "<h2>Input</h2>")?;
    if errors.is_empty() {
        writeln!(out, "<p>Every document was read.</p>")?;
    } else {
        writeln!(out, "<ul id=\"input-errors\">")?;
        for d in &errors {
            writeln!(out, "<li><code>{}</code></li>", Esc(&d.to_string()))?;
        }
        writeln!(out, "</ul>")?;
    }
    let notes: Vec<&Diagnostic> = diags
        .iter()
        .filter(|d| d.severity == InputSeverity::Skipped && d.skipped_kind.is_none())
        .collect();
    if !notes.is_empty() {
        writeln!(out, "<ul>")?;
        for d in notes {
            writeln!(out, "<li>{}</li>", Esc(&d.to_string()))?;
        }
        writeln!(out, "</ul>")?;
    }
    if let Some(line) = skipped_summary(diags) {
        writeln!(out, "<p class=\"muted\">{}</p>", Esc(&line))?;
    }
    writeln!(out, "<script>{SCRIPT}</script></body></html>")
}

#[cfg(test)]
mod tests {
    use super::Esc;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            Esc(r#"<img src=x onerror="a('b')">&"#).to_string(),
            "&lt;img src=x onerror=&quot;a(&#39;b&#39;)&quot;&gt;&amp;"
        );
        assert_eq!(Esc("plain").to_string(), "plain");
    }
}
