//! `palisade audit --format html`, opened in a real headless Chromium (Debian's `chromium`;
//! scripts/test installs it): the page renders (screenshot), its script runs without a console
//! message, and the counts it shows are the JSON report's.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_palisade");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn chromium() -> PathBuf {
    let path = std::env::var_os("PALISADE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "{} not found: install Debian's chromium (scripts/test does) or set PALISADE_CHROMIUM",
        path.display()
    );
    path
}

/// Runs headless Chromium on a local file with a fresh profile and no network use of its own.
/// Returns (stdout, the console messages it logged).
fn render(page: &Path, extra: &[&str]) -> (String, Vec<String>) {
    let profile = tempfile::tempdir().unwrap();
    let out: Output = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,1800",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let console = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

fn audit(format: &str, inputs: &[&str]) -> Vec<u8> {
    let o = Command::new(BIN)
        .args([
            "audit",
            "--baseline",
            "config/baseline.yaml",
            "--format",
            format,
        ])
        .args(inputs)
        .current_dir(ROOT)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// The value of `attr` on the element with id `id` in the serialized DOM.
fn attr_of(dom: &str, id: &str, attr: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let start = dom[..at].rfind('<')?;
    let end = at + dom[at..].find('>')?;
    let tag = &dom[start..end];
    let key = format!("{attr}=\"");
    let v = tag.find(&key)? + key.len();
    Some(tag[v..v + tag[v..].find('"')?].to_string())
}

fn text_of(dom: &str, id: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let open = at + dom[at..].find('>')? + 1;
    Some(dom[open..open + dom[open..].find('<')?].to_string())
}

const ACCEPTED: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: <script>alert(1)</script>
  annotations:
    accepted-risk.palisade.dev/rbac.secrets-access: "the backup agent reads every Secret; SEC-77"
rules:
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
"#;

#[test]
fn the_harness_sees_console_errors() {
    // A page that throws: if this is not caught, a clean report proves nothing.
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("broken.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><body><script>missingFunction();</script></body></html>",
    )
    .unwrap();
    let (_, console) = render(&page, &["--dump-dom"]);
    assert!(
        console.iter().any(|l| l.contains("missingFunction")),
        "{console:?}"
    );
}

#[test]
fn html_report_renders_in_chromium_with_the_json_counts() {
    let dir = tempfile::tempdir().unwrap();
    let extra = dir.path().join("accepted.yaml");
    std::fs::write(&extra, ACCEPTED).unwrap();
    let extra = extra.to_str().unwrap();
    let json: Value = serde_json::from_slice(&audit("json", &["config/samples", extra])).unwrap();
    let html = audit("html", &["config/samples", extra]);
    let html_text = String::from_utf8(html.clone()).unwrap();

    // Self-contained: nothing fetched from anywhere, so it works offline as a CI artifact.
    for external in ["<link", "src=\"http", "href=\"http", "@import", "url("] {
        assert!(!html_text.contains(external), "external asset: {external}");
    }
    // Hostile names are text, never markup.
    assert!(!html_text.contains("<script>alert(1)</script>"));
    assert!(html_text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));

    let page = dir.path().join("report.html");
    std::fs::write(&page, &html).unwrap();
    let shot = dir.path().join("report.png");
    let (_, console) = render(&page, &[&format!("--screenshot={}", shot.display())]);
    assert!(console.is_empty(), "console messages: {console:?}");
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000);

    let (dom, console) = render(&page, &["--dump-dom"]);
    assert!(console.is_empty(), "console messages: {console:?}");
    let summary = &json["summary"];
    let count = |id: &str| attr_of(&dom, &format!("count-{id}"), "data-count");
    let findings = summary["findings"].as_u64().unwrap();
    assert!(findings > 5, "{summary}");
    assert_eq!(count("findings"), Some(findings.to_string()));
    for sev in ["critical", "high", "medium", "low", "info"] {
        let want = summary["bySeverity"][sev].as_u64().unwrap_or(0);
        assert_eq!(count(sev), Some(want.to_string()), "{sev}");
    }
    assert_eq!(count("exempted"), Some(summary["exempted"].to_string()));
    assert!(summary["exempted"].as_u64().unwrap() >= 1);
    assert_eq!(count("accepted"), Some(summary["accepted"].to_string()));
    assert_eq!(summary["accepted"], 1);
    // The script ran: it filled in how many findings are shown (all, unfiltered).
    assert_eq!(text_of(&dom, "shown"), Some(findings.to_string()));
    // One row per finding, each rule's count as in the JSON.
    assert_eq!(dom.matches("<tr class=\"finding").count() as u64, findings);
    let mut by_rule = std::collections::BTreeMap::<String, u64>::new();
    for f in json["findings"].as_array().unwrap() {
        *by_rule
            .entry(f["rule"].as_str().unwrap().into())
            .or_default() += 1;
    }
    for (rule, n) in &by_rule {
        assert!(
            dom.contains(&format!("data-rule=\"{rule}\">{n}<")),
            "{rule}: {n}"
        );
    }
    // Exemptions with what they suppressed, the accepted risk with its reason, input notes.
    assert!(dom.contains("vendor image runs as root; ticket SEC-123"));
    assert!(dom.contains("the backup agent reads every Secret; SEC-77"));
    assert!(dom.contains("skipped 1 document of kinds Palisade does not audit: ConfigMap x1"));
}
