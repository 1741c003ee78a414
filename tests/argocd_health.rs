//! The Argo CD health check (deploy/argocd/securitybaseline-health.lua) run by a real Lua
//! interpreter (`lua5.4`, installed by scripts/lib/prereqs.sh) on fixtures covering every
//! branch, and on statuses built by the operator's own status code.

use k8s_openapi::jiff::Timestamp;
use palisade::controller::status::{self, StatusInput};
use palisade::crd::{GeneratedCounts, SecurityBaseline, SecurityBaselineSpec};
use palisade::policy::audit::AuditReport;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn argocd_dir() -> PathBuf {
    Path::new(ROOT).join("deploy/argocd")
}

/// A JSON value as a Lua table constructor (`null` becomes an absent field, as in Argo CD).
fn to_lua(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(to_lua).collect();
            format!("{{{}}}", inner.join(", "))
        }
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), to_lua(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
    }
}

fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for b in s.bytes() {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out.push('"');
    out
}

/// Runs the health script on `obj`; returns (status, message).
fn health(obj: &Value) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("obj.lua");
    std::fs::write(&fixture, format!("return {}\n", to_lua(obj))).unwrap();
    let out = Command::new("lua5.4")
        .arg(argocd_dir().join("testdata/driver.lua"))
        .arg(argocd_dir().join("securitybaseline-health.lua"))
        .arg(&fixture)
        .output()
        .expect("lua5.4 is not installed: run scripts/lib/prereqs.sh (Debian package lua5.4)");
    assert!(
        out.status.success(),
        "health script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let status = lines.next().unwrap_or_default().to_string();
    let message = lines.next().unwrap_or_default().to_string();
    (status, message)
}

fn yaml_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_fixture_gets_its_expected_health() {
    let cases = yaml_file(&argocd_dir().join("testdata/health_test.yaml"));
    let cases = cases["tests"].as_array().expect("tests list");
    let mut seen = std::collections::BTreeSet::new();
    for case in cases {
        let input = case["inputPath"].as_str().unwrap();
        let obj = yaml_file(&argocd_dir().join(input));
        let (status, message) = health(&obj);
        assert_eq!(
            (status.as_str(), message.as_str()),
            (
                case["healthStatus"]["status"].as_str().unwrap(),
                case["healthStatus"]["message"].as_str().unwrap()
            ),
            "{input}"
        );
        seen.insert(status);
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["Degraded", "Healthy", "Progressing"],
        "the fixtures cover every health status"
    );
}

#[test]
fn every_fixture_file_has_an_expectation() {
    let cases = std::fs::read_to_string(argocd_dir().join("testdata/health_test.yaml")).unwrap();
    for entry in std::fs::read_dir(argocd_dir().join("testdata")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".yaml") && name != "health_test.yaml" {
            assert!(
                cases.contains(&format!("testdata/{name}")),
                "{name} is not listed in health_test.yaml"
            );
        }
    }
}

#[test]
fn argocd_cm_embeds_the_same_script() {
    let script = std::fs::read_to_string(argocd_dir().join("securitybaseline-health.lua")).unwrap();
    let cm = yaml_file(&argocd_dir().join("argocd-cm.yaml"));
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    let embedded = cm["data"]["resource.customizations.health.palisade.dev_SecurityBaseline"]
        .as_str()
        .expect("the health key in argocd-cm");
    assert_eq!(
        embedded, script,
        "argocd-cm.yaml must embed the script verbatim"
    );
}

/// A baseline carrying the status the operator itself builds, as Argo CD would read it.
fn baseline_with_status(
    generation: i64,
    conflicts: Vec<String>,
    degraded: Option<String>,
) -> Value {
    let report = AuditReport {
        findings: Vec::new(),
        exempted: 0,
        accepted: Vec::new(),
        namespaces: vec!["shop".into(), "shop-2".into()],
        objects: 0,
        ..Default::default()
    };
    let st = status::build(
        StatusInput {
            generation: Some(generation),
            report: &report,
            generated: GeneratedCounts::default(),
            allowances: Vec::new(),
            preview: None,
            refused_rules: Vec::new(),
            conflicts,
            foreign: Vec::new(),
            contested: vec![],
            unserved: Vec::new(),
            learned: Vec::new(),
            degraded,
            enforce: true,
        },
        None,
        Timestamp::now(),
    );
    let mut b = SecurityBaseline::new("shop", SecurityBaselineSpec::default());
    b.metadata.generation = Some(generation);
    b.status = Some(st);
    serde_json::to_value(b).unwrap()
}

#[test]
fn statuses_written_by_the_operator_map_to_health() {
    let (s, m) = health(&baseline_with_status(2, vec![], None));
    assert_eq!(
        (s.as_str(), m.as_str()),
        ("Healthy", "Enforced: 2 namespaces reconciled")
    );

    let (s, m) = health(&baseline_with_status(2, vec!["shop-2".into()], None));
    assert_eq!(s, "Degraded");
    assert!(m.starts_with("BaselineConflict: 1 namespaces"), "{m}");

    let (s, m) = health(&baseline_with_status(
        2,
        vec![],
        Some("applying Role x: forbidden".into()),
    ));
    assert_eq!(
        (s.as_str(), m.as_str()),
        ("Degraded", "ApplyFailed: applying Role x: forbidden")
    );

    // The spec changed after the status was written.
    let mut stale = baseline_with_status(2, vec![], None);
    stale["metadata"]["generation"] = 3.into();
    assert_eq!(health(&stale).0, "Progressing");
}
