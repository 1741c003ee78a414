//! The `palisade` binary: exit codes, formats, stdin, and bad input.

use serde_json::Value;
use std::io::Write;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_palisade");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn palisade(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(ROOT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

const COMPLIANT: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: ok}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: ok}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
---
apiVersion: v1
kind: Pod
metadata: {name: good, namespace: ok}
spec:
  serviceAccountName: app
  automountServiceAccountToken: false
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: app
    image: app:1
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL]}
"#;

#[test]
fn samples_fail_with_findings_and_exemptions_apply() {
    let o = palisade(
        &[
            "audit",
            "--baseline",
            "config/baseline.yaml",
            "--format",
            "json",
            "config/samples",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let report = json(&o);
    let findings = report["findings"].as_array().unwrap();
    let has = |rule: &str, name: &str| {
        findings
            .iter()
            .any(|f| f["rule"] == rule && f["object"]["name"] == name)
    };
    assert!(has("pss.privileged", "legacy-billing"));
    assert!(has("rbac.cluster-admin-binding", "ci-deployer-admin"));
    assert!(has("hardening.sandbox-runtime", "user-scripts"));
    // vendor-x runs as root under a valid exemption: no run-as-* finding, and it is counted.
    assert!(!has("pss.run-as-user", "vendor-x"));
    assert!(!has("pss.run-as-non-root", "vendor-x"));
    assert!(report["summary"]["exempted"].as_u64().unwrap() >= 1);
    // The compliant Deployment has no findings at all.
    assert!(!findings
        .iter()
        .any(|f| f["object"]["name"] == "api" && f["object"]["kind"] == "Deployment"));
    // Namespace "sandbox" is not selected by the baseline (team: research).
    assert!(!findings
        .iter()
        .any(|f| f["object"]["namespace"] == "sandbox" || f["object"]["name"] == "sandbox"));
    // Every finding carries its source file and line.
    assert!(findings
        .iter()
        .all(|f| f["source"]["file"].as_str().is_some()));
}

#[test]
fn exemption_stops_applying_once_expired() {
    let args = |now: &'static str| {
        palisade(
            &[
                "audit",
                "--baseline",
                "config/baseline.yaml",
                "--format",
                "json",
                "--now",
                now,
                "config/samples",
            ],
            None,
        )
    };
    let before = json(&args("2029-01-01T00:00:00Z"));
    let after = json(&args("2031-01-01T00:00:00Z"));
    let count = |r: &Value, rule: &str| {
        r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["rule"] == rule)
            .count()
    };
    assert_eq!(count(&before, "exemption.expired"), 0);
    assert_eq!(count(&after, "exemption.expired"), 1);
    assert!(count(&after, "pss.run-as-user") > count(&before, "pss.run-as-user"));
}

#[test]
fn clean_input_on_stdin_exits_zero() {
    let o = palisade(&["audit", "-"], Some(COMPLIANT.as_bytes()));
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("3 objects audited, 0 findings"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn fail_on_threshold_controls_exit_status() {
    let low_only = "apiVersion: v1\nkind: Namespace\nmetadata: {name: open}\n";
    // network.no-default-deny is medium: fails at medium, passes at high.
    assert_eq!(
        palisade(
            &["audit", "--fail-on", "medium", "-"],
            Some(low_only.as_bytes())
        )
        .status
        .code(),
        Some(1)
    );
    assert_eq!(
        palisade(
            &["audit", "--fail-on", "high", "-"],
            Some(low_only.as_bytes())
        )
        .status
        .code(),
        Some(0)
    );
    let bad = palisade(&["audit", "--fail-on", "urgent", "-"], Some(b""));
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn broken_documents_are_named_and_the_rest_still_evaluated() {
    let input = format!(
        "{COMPLIANT}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: typo}}\nspec:\n  hostNetwork: \"yes please\"\n  containers: []\n---\nkey: [unclosed\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: ok}}\nspec:\n  selector: {{}}\n  template:\n    spec:\n      containers: [{{name: web, image: web, securityContext: {{privileged: true}}}}]\n"
    );
    let o = palisade(&["audit", "--format", "json", "-"], Some(input.as_bytes()));
    assert_eq!(o.status.code(), Some(2));
    let report = json(&o);
    let diags = report["diagnostics"].as_array().unwrap();
    let errors: Vec<&Value> = diags.iter().filter(|d| d["severity"] == "error").collect();
    assert_eq!(errors.len(), 2, "{diags:?}");
    assert_eq!(errors[0]["document"], 3);
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("spec.hostNetwork"),
        "{:?}",
        errors[0]
    );
    let bad_line = input
        .lines()
        .position(|l| l.contains("yes please"))
        .unwrap()
        + 1;
    assert_eq!(errors[0]["line"], bad_line, "line of the bad field");
    assert_eq!(errors[1]["document"], 4);
    // The Deployment after the broken documents was still audited.
    assert!(report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["rule"] == "pss.privileged" && f["object"]["name"] == "web"));
    assert!(stderr(&o).contains("<stdin>"));
}

#[test]
fn unknown_kinds_and_crds_are_skipped_with_a_note() {
    let input = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: x}\n";
    let o = palisade(
        &["audit", "--fail-on", "critical", "-"],
        Some(input.as_bytes()),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let out = stdout(&o);
    // One summary line, not a line per document.
    assert!(
        out.contains("skipped 2 documents of kinds Palisade does not audit: ConfigMap x1, CustomResourceDefinition x1 (--verbose lists each)"),
        "{out}"
    );
    assert!(!out.contains("skipped: <stdin>"), "{out}");
    // --verbose names each one.
    let o = palisade(
        &["audit", "--verbose", "--fail-on", "critical", "-"],
        Some(input.as_bytes()),
    );
    let out = stdout(&o);
    assert!(
        out.contains("skipped: <stdin>:1 (document 0): v1 ConfigMap is not a kind Palisade audits"),
        "{out}"
    );
    assert!(
        out.contains("CustomResourceDefinition is not audited"),
        "{out}"
    );
    // JSON always lists every diagnostic.
    let o = palisade(
        &["audit", "--format", "json", "--fail-on", "critical", "-"],
        Some(input.as_bytes()),
    );
    assert_eq!(json(&o)["diagnostics"].as_array().unwrap().len(), 2);
}

#[test]
fn an_audited_kind_at_an_unread_api_version_keeps_its_own_line() {
    // An old Deployment apiVersion is a workload Palisade would miss: never folded into the
    // summary of kinds it does not audit.
    let input = "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: old, namespace: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: s, namespace: a}\n";
    let o = palisade(
        &["audit", "--fail-on", "critical", "-"],
        Some(input.as_bytes()),
    );
    let out = stdout(&o);
    assert!(
        out.contains("skipped: <stdin>:1 (document 0): extensions/v1beta1 Deployment is not a kind Palisade audits"),
        "{out}"
    );
    assert!(
        out.contains("skipped 1 document of kinds Palisade does not audit: ConfigMap x1"),
        "{out}"
    );
}

#[test]
fn lists_are_expanded() {
    let input = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: a, namespace: x}\n  spec: {hostPID: true, containers: [{name: c, image: i}]}\n- apiVersion: v1\n  kind: Secret\n  metadata: {name: s}\n";
    let o = palisade(&["audit", "--format", "json", "-"], Some(input.as_bytes()));
    let report = json(&o);
    assert!(report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["rule"] == "pss.host-namespaces" && f["field"] == "spec.hostPID"));
    assert!(report["diagnostics"][0]["message"]
        .as_str()
        .unwrap()
        .contains("items[1]"));
}

#[test]
fn binary_garbage_and_missing_files_are_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.yaml");
    std::fs::write(&junk, [0u8, 159, 146, 150, 255, 0, 1]).unwrap();
    let o = palisade(
        &["audit", junk.to_str().unwrap(), "does-not-exist.yaml"],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    let out = stdout(&o);
    assert!(out.contains("junk.yaml: binary data"), "{out}");
    assert!(out.contains("does-not-exist.yaml: cannot read"), "{out}");
}

#[test]
fn a_fifty_megabyte_document_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    let mut text = String::from(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: big\n  namespace: x\n  annotations:\n",
    );
    let filler = "x".repeat(1000);
    for i in 0..50_000 {
        text.push_str(&format!("    a{i}: \"{filler}\"\n"));
    }
    text.push_str("spec:\n  hostIPC: true\n  containers: [{name: c, image: i}]\n");
    assert!(text.len() > 50_000_000);
    std::fs::write(&big, &text).unwrap();
    let o = palisade(&["audit", "--format", "json", big.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(json(&o)["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["field"] == "spec.hostIPC"));
}

#[test]
fn sarif_is_2_1_0_with_rules_and_locations() {
    let o = palisade(
        &[
            "audit",
            "--baseline",
            "config/baseline.yaml",
            "--format",
            "sarif",
            "config/samples",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let s = json(&o);
    assert_eq!(s["version"], "2.1.0");
    let run = &s["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let results = run["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for r in results {
        let idx = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[idx]["id"], r["ruleId"]);
        assert!(["error", "warning", "note"].contains(&r["level"].as_str().unwrap()));
        assert!(r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"].is_string());
    }
    let privileged = results
        .iter()
        .find(|r| r["ruleId"] == "pss.privileged")
        .unwrap();
    let loc = &privileged["locations"][0]["physicalLocation"];
    assert_eq!(
        loc["artifactLocation"]["uri"],
        "config/samples/workloads.yaml"
    );
    assert!(loc["region"]["startLine"].as_u64().unwrap() > 1);
}

/// The official SARIF 2.1.0 schema's validator (tools/go-tools/sarif-validate: the OASIS schema
/// shipped by go-sarif, checked by gojsonschema), built once by scripts/go-tool.
fn sarif_validator() -> String {
    let o = Command::new(format!("{ROOT}/scripts/go-tool"))
        .args(["path", "sarif-validate", "sarif-validate"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).trim().to_string()
}

#[test]
fn sarif_validates_against_the_official_2_1_0_schema() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = vec![];
    for (name, args) in [
        (
            "samples.sarif",
            vec!["--baseline", "config/baseline.yaml", "config/samples"],
        ),
        ("deploy.sarif", vec!["deploy/base"]),
        (
            "streamed.sarif",
            vec![
                "--sort",
                "none",
                "--baseline",
                "config/baseline.yaml",
                "config/samples",
            ],
        ),
        ("clean.sarif", vec!["-"]),
        ("streamed-clean.sarif", vec!["--sort", "none", "-"]),
        ("broken.sarif", vec!["-"]),
    ] {
        let stdin = match name {
            "clean.sarif" | "streamed-clean.sarif" => Some(COMPLIANT.as_bytes()),
            "broken.sarif" => Some(b"kind: [\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: 3}\n".as_slice()),
            _ => None,
        };
        let mut all = vec!["audit", "--format", "sarif"];
        all.extend(args);
        let o = palisade(&all, stdin);
        assert!(!o.stdout.is_empty(), "{name}: {}", stderr(&o));
        let path = dir.path().join(name);
        std::fs::write(&path, &o.stdout).unwrap();
        files.push(path);
    }
    let v = Command::new(sarif_validator())
        .args(&files)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}{}", stdout(&v), stderr(&v));
    // The validator rejects what the schema forbids (so the pass above means something).
    let mut bad: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    bad["runs"][0]["results"][0]["level"] = "severe".into();
    let bad_path = dir.path().join("bad.sarif");
    std::fs::write(&bad_path, serde_json::to_vec(&bad).unwrap()).unwrap();
    let v = Command::new(sarif_validator())
        .arg(&bad_path)
        .output()
        .unwrap();
    assert_eq!(v.status.code(), Some(1), "{}", stdout(&v));
    assert!(stdout(&v).contains("level"), "{}", stdout(&v));
}

#[test]
fn invalid_baseline_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("b.yaml");
    std::fs::write(&b, "apiVersion: palisade.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {name: x}\nspec:\n  podSecurity: {level: strict}\n").unwrap();
    let o = palisade(
        &["audit", "--baseline", b.to_str().unwrap(), "-"],
        Some(b""),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("spec.podSecurity.level"),
        "{}",
        stderr(&o)
    );
    std::fs::write(&b, "apiVersion: palisade.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {name: x}\nspec:\n  podSecurity: {version: v2.0}\n").unwrap();
    let o = palisade(
        &["audit", "--baseline", b.to_str().unwrap(), "-"],
        Some(b""),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("spec.podSecurity.version"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn generate_prints_a_strict_peer_authentication_per_namespace_for_mesh_strict() {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("b.yaml");
    std::fs::write(&b, "apiVersion: palisade.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {name: m}\nspec:\n  enforcement: Enforce\n  mesh: {mtls: Strict}\n").unwrap();
    let o = palisade(
        &[
            "generate",
            "--baseline",
            b.to_str().unwrap(),
            "-n",
            "a",
            "-n",
            "b",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let policies: Vec<Value> = stdout(&o)
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_yaml_ng::from_str::<Value>(d).unwrap())
        .filter(|d| d["kind"] == "PeerAuthentication")
        .collect();
    assert_eq!(policies.len(), 2);
    for (p, ns) in policies.iter().zip(["a", "b"]) {
        assert_eq!(p["apiVersion"], "security.istio.io/v1");
        assert_eq!(p["metadata"]["namespace"], ns);
        assert_eq!(p["spec"], serde_json::json!({"mtls": {"mode": "STRICT"}}));
    }
}

#[test]
fn generate_is_deterministic_and_applies_the_selector() {
    let args = [
        "generate",
        "--baseline",
        "config/baseline.yaml",
        "config/samples",
    ];
    let a = palisade(&args, None);
    let b = palisade(&args, None);
    assert_eq!(a.status.code(), Some(0), "{}", stderr(&a));
    assert_eq!(a.stdout, b.stdout, "same input, byte-identical output");
    let out = stdout(&a);
    let docs: Vec<Value> = out
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_yaml_ng::from_str(d).unwrap())
        .collect();
    let names = |kind: &str, ns: &str| -> Vec<String> {
        docs.iter()
            .filter(|d| d["kind"] == kind && d["metadata"]["namespace"] == ns)
            .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names("NetworkPolicy", "shop"),
        [
            "palisade-default-deny",
            "palisade-allow-dns",
            "palisade-allow-db-from-api",
            "palisade-allow-db-from-api-from-0"
        ]
    );
    assert_eq!(names("Role", "shop-legacy"), ["palisade-api"]);
    assert!(
        names("NetworkPolicy", "sandbox").is_empty(),
        "sandbox is not selected"
    );
    assert!(docs
        .iter()
        .any(|d| d["kind"] == "ValidatingAdmissionPolicy"));
    let ns = docs.iter().find(|d| d["kind"] == "Namespace").unwrap();
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
}

#[test]
fn parallel_parsing_gives_the_same_report_as_one_thread() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..12 {
        let body = COMPLIANT.replace("name: good", &format!("name: good-{i}")).replace("privileged", "x")
            + &format!("---\napiVersion: v1\nkind: Pod\nmetadata: {{name: bad-{i}, namespace: ok}}\nspec: {{hostPID: true, containers: [{{name: c, image: i}}]}}\n---\nnot: [valid\n");
        std::fs::write(dir.path().join(format!("f{i:02}.yaml")), body).unwrap();
    }
    let d = dir.path().to_str().unwrap();
    let one = palisade(&["audit", "--threads", "1", "--format", "json", d], None);
    let four = palisade(&["audit", "--threads", "4", "--format", "json", d], None);
    assert_eq!(one.status.code(), Some(2));
    assert_eq!(stdout(&one), stdout(&four));
    let report = json(&one);
    assert_eq!(report["diagnostics"].as_array().unwrap().len(), 12);
    assert_eq!(report["summary"]["objects"], 12 * 4);
}

#[test]
fn sort_none_streams_the_same_report_in_every_format() {
    let input = [
        "--baseline",
        "config/baseline.yaml",
        "config/samples",
        "deploy/base",
    ];
    let run = |extra: &[&str]| {
        let mut args = vec!["audit"];
        args.extend(extra);
        args.extend(input);
        palisade(&args, None)
    };
    // Each result as its JSON text, in one order, for comparing unsorted with sorted.
    let sorted_texts = |v: &Value| {
        let mut t: Vec<String> = v.as_array().unwrap().iter().map(Value::to_string).collect();
        t.sort();
        t
    };

    let sorted = run(&["--format", "json"]);
    let streamed = run(&["--sort", "none", "--format", "json"]);
    assert_eq!(
        streamed.status.code(),
        sorted.status.code(),
        "{}",
        stderr(&streamed)
    );
    let (sorted, streamed) = (json(&sorted), json(&streamed));
    assert!(sorted["findings"].as_array().unwrap().len() > 10);
    for key in ["summary", "accepted", "diagnostics"] {
        assert_eq!(streamed[key], sorted[key], "{key}");
    }
    assert_eq!(
        sorted_texts(&streamed["findings"]),
        sorted_texts(&sorted["findings"])
    );

    let sorted = json(&run(&["--format", "sarif"]));
    let streamed = json(&run(&["--sort", "none", "--format", "sarif"]));
    let results = |v: &Value| sorted_texts(&v["runs"][0]["results"]);
    assert_eq!(results(&streamed), results(&sorted));
    assert_eq!(streamed["runs"][0]["tool"], sorted["runs"][0]["tool"]);
    assert_eq!(
        streamed["runs"][0]["invocations"],
        sorted["runs"][0]["invocations"]
    );

    let sorted = stdout(&run(&[]));
    let streamed = stdout(&run(&["--sort", "none"]));
    let severities = ["CRITICAL ", "HIGH ", "MEDIUM ", "LOW ", "INFO "];
    let rows = |t: &str| {
        t.lines()
            .filter(|l| severities.iter().any(|s| l.starts_with(s)))
            .count()
    };
    assert!(rows(&sorted) > 10);
    assert_eq!(rows(&streamed), rows(&sorted));
    let tail = |t: &str| {
        t.lines()
            .skip_while(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        tail(&streamed),
        tail(&sorted),
        "accepted risks, diagnostics and the summary"
    );

    let html = run(&["--sort", "none", "--format", "html"]);
    assert_eq!(html.status.code(), Some(2));
    assert!(html.stdout.is_empty());
    assert!(
        stderr(&html).contains("use --sort object"),
        "{}",
        stderr(&html)
    );
}

const SHOP_APP: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: frontend, namespace: shop}
spec:
  selector: {matchLabels: {app: frontend}}
  template:
    metadata: {labels: {app: frontend}}
    spec: {containers: [{name: web, image: web, ports: [{containerPort: 8080, name: http}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api, db-access: "true"}}
    spec: {containers: [{name: api, image: api}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: pg, image: pg, ports: [{containerPort: 5432, name: postgres}]}]}
"#;

fn netpol(args: &[&str]) -> Output {
    let mut all = vec!["netpol"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--baseline", "config/baseline.yaml", "-"]);
    palisade(&all, Some(SHOP_APP.as_bytes()))
}

#[test]
fn netpol_reach_explains_allowed_and_denied_connections_of_the_generated_policies() {
    let ok = netpol(&["reach", "shop/api", "shop/db:5432"]);
    assert_eq!(ok.status.code(), Some(0), "{}{}", stdout(&ok), stderr(&ok));
    let text = stdout(&ok);
    assert!(
        text.starts_with("ALLOWED: shop/Deployment/api -> shop/StatefulSet/db 5432/TCP"),
        "{text}"
    );
    assert!(
        text.contains("ingress: allowed by shop/palisade-allow-db-from-api spec.ingress[0]"),
        "{text}"
    );
    // Egress is default-denied and the baseline declares no egress to the database.
    assert!(
        text.contains("egress: DENIED") || text.contains("egress: allowed"),
        "{text}"
    );

    let denied = netpol(&["reach", "shop/frontend", "shop/db:postgres", "-o", "json"]);
    assert_eq!(denied.status.code(), Some(1), "{}", stderr(&denied));
    let v = json(&denied);
    assert_eq!(v["allowed"], false);
    assert_eq!(
        v["port"], 5432,
        "the named port resolves on the destination"
    );
    assert_eq!(v["ingress"]["reason"], "denied");
    assert!(v["ingress"]["isolatedBy"]
        .as_array()
        .unwrap()
        .contains(&"shop/palisade-default-deny".into()));

    // DNS stays allowed under default deny; the API server's address does not.
    let dns = netpol(&["reach", "shop/frontend", "10.96.0.10:53/udp", "-o", "json"]);
    assert_eq!(
        json(&dns)["egress"]["reason"],
        "denied",
        "an address is not the DNS pods"
    );
}

#[test]
fn netpol_matrix_lists_every_pod_against_every_declared_port() {
    let o = netpol(&["matrix", "-o", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    let rows: Vec<&str> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(
        rows,
        [
            "shop/Deployment/api",
            "shop/Deployment/frontend",
            "shop/StatefulSet/db"
        ]
    );
    let cols: Vec<&str> = v["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        cols,
        [
            "shop/Deployment/frontend:8080/TCP",
            "shop/StatefulSet/db:5432/TCP"
        ]
    );
    // Both ends of db-from-api are open (api's egress, db's ingress); nothing else is.
    let cells = &v["allowed"];
    assert_eq!(cells[0][1], true, "api -> db");
    assert_eq!(cells[1][1], false, "frontend -> db");
    assert_eq!(cells[0][0], false, "api -> frontend");
    assert_eq!(cells[2][0], false, "db -> frontend");
}

#[test]
fn netpol_bad_input_names_the_object_and_field() {
    let bad_policy = format!(
        "{SHOP_APP}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: broken, namespace: shop}}\nspec:\n  podSelector: {{}}\n  ingress: [{{from: [{{ipBlock: {{cidr: 10.0.0.0/33}}}}]}}]\n"
    );
    let o = palisade(&["netpol", "matrix", "-"], Some(bad_policy.as_bytes()));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(
            "NetworkPolicy shop/broken: spec.ingress[0].from[0].ipBlock.cidr: prefix length"
        ),
        "{}",
        stderr(&o)
    );
    let o = netpol(&["reach", "shop/nobody", "shop/db:5432"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("\"shop/nobody\": no such pod or workload"),
        "{}",
        stderr(&o)
    );
    let o = netpol(&["reach", "shop/api", "shop/db:5432/icmp"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("want TCP, UDP or SCTP"),
        "{}",
        stderr(&o)
    );
    let o = netpol(&["reach", "shop/api", "shop/db:nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("declares no such TCP port"),
        "{}",
        stderr(&o)
    );
}

/// A small audit log: `shop/api` reads a ConfigMap and lists pods; `alice` (a user) and a
/// denied request are not learned; one line is broken when `broken` is set.
fn audit_log(broken: bool) -> tempfile::NamedTempFile {
    let line = |user: &str, verb: &str, res: &str, name: &str, decision: &str| {
        serde_json::json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "stage": "ResponseComplete",
            "verb": verb, "requestURI": "/x", "user": {"username": user},
            "objectRef": {"resource": res, "namespace": "shop", "name": name},
            "stageTimestamp": "2026-12-01T10:00:00Z",
            "annotations": {"authorization.k8s.io/decision": decision}})
        .to_string()
    };
    let sa = "system:serviceaccount:shop:api";
    let mut lines = vec![
        line(sa, "get", "configmaps", "settings", "allow"),
        line(sa, "list", "pods", "", "allow"),
        line(sa, "delete", "secrets", "db", "forbid"),
        line("alice", "delete", "pods", "x", "allow"),
    ];
    if broken {
        lines.insert(1, "{oops".into());
    }
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(lines.join("\n").as_bytes()).unwrap();
    f
}

#[test]
fn rbac_learn_prints_the_minimal_role_and_names_bad_lines() {
    let log = audit_log(false);
    let path = log.path().to_str().unwrap();
    let out = palisade(&["rbac", "learn", "--audit-log", path, "-o", "json"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let items = json(&out)["items"].as_array().unwrap().clone();
    let kinds: Vec<&str> = items.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Role", "RoleBinding"]);
    let rules = &items[0]["rules"];
    assert_eq!(rules[0]["resources"][0], "configmaps");
    assert_eq!(rules[0]["resourceNames"][0], "settings");
    assert_eq!(rules[1]["verbs"][0], "list");
    assert_eq!(
        rules.as_array().unwrap().len(),
        2,
        "the denied delete is not learned: {rules}"
    );
    assert!(
        stderr(&out).contains("shop/api: 2 distinct requests learned, 1 denied"),
        "{}",
        stderr(&out)
    );

    let none = palisade(
        &[
            "rbac",
            "learn",
            "--audit-log",
            path,
            "--serviceaccount",
            "shop/db",
        ],
        None,
    );
    assert_eq!(none.status.code(), Some(2));
    assert!(
        stderr(&none).contains("no request of shop/db"),
        "{}",
        stderr(&none)
    );
    let bad_sa = palisade(
        &[
            "rbac",
            "learn",
            "--audit-log",
            path,
            "--serviceaccount",
            "api",
        ],
        None,
    );
    assert_eq!(bad_sa.status.code(), Some(2));

    let broken = audit_log(true);
    let bpath = broken.path().to_str().unwrap();
    let out = palisade(&["rbac", "learn", "--audit-log", bpath], None);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a broken line is an input error"
    );
    assert!(
        stderr(&out).contains(&format!("{bpath}:2: not a JSON audit event")),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("kind: Role"),
        "the rest is still learned"
    );
}

#[test]
fn audit_and_generate_use_audit_logs() {
    let log = audit_log(false);
    let path = log.path().to_str().unwrap();
    let manifests = r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: api, namespace: shop}
automountServiceAccountToken: false
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader, namespace: shop}
rules:
- apiGroups: [""]
  resources: [configmaps, pods]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: api-reader, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
subjects: [{kind: ServiceAccount, name: api, namespace: shop}]
"#;
    let out = palisade(
        &["audit", "--format", "json", "--audit-log", path, "-"],
        Some(manifests.as_bytes()),
    );
    let findings = json(&out)["findings"].as_array().unwrap().clone();
    let unused: Vec<&Value> = findings
        .iter()
        .filter(|f| f["rule"] == "rbac.unused-permission")
        .collect();
    assert_eq!(unused.len(), 1, "{findings:#?}");
    let msg = unused[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("2 of 4 permissions") && msg.contains("get pods, list configmaps"),
        "{msg}"
    );
    let without = palisade(
        &["audit", "--format", "json", "-"],
        Some(manifests.as_bytes()),
    );
    assert!(
        !stdout(&without).contains("rbac.unused-permission"),
        "only with audit logs"
    );

    let baseline = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        baseline.path(),
        "apiVersion: palisade.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {name: b}\nspec:\n  rbac:\n    serviceAccounts:\n    - {name: api, learn: true}\n",
    )
    .unwrap();
    let b = baseline.path().to_str().unwrap();
    let generated = palisade(
        &[
            "generate",
            "--baseline",
            b,
            "-n",
            "shop",
            "--audit-log",
            path,
        ],
        None,
    );
    assert!(generated.status.success(), "{}", stderr(&generated));
    let text = stdout(&generated);
    assert!(
        text.contains("name: palisade-api") && text.contains("- settings"),
        "{text}"
    );
    let before = palisade(&["generate", "--baseline", b, "-n", "shop"], None);
    assert!(
        !stdout(&before).contains("name: palisade-api"),
        "nothing learned: no Role"
    );
}

#[test]
fn exposed_services_are_reported_by_exposure_in_covered_namespaces_only() {
    let input = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
---
apiVersion: v1
kind: Namespace
metadata: {name: lab, labels: {team: research}}
---
apiVersion: v1
kind: Service
metadata: {name: public, namespace: shop}
spec: {type: LoadBalancer, ports: [{port: 443}]}
---
apiVersion: v1
kind: Service
metadata: {name: partners, namespace: shop}
spec: {type: LoadBalancer, loadBalancerSourceRanges: [198.51.100.0/24], ports: [{port: 443}]}
---
apiVersion: v1
kind: Service
metadata: {name: mitm, namespace: shop}
spec: {externalIPs: [8.8.8.8], ports: [{port: 53, protocol: UDP}]}
---
apiVersion: v1
kind: Service
metadata: {name: debug, namespace: shop}
spec: {type: NodePort, ports: [{port: 80, nodePort: 30080}]}
---
apiVersion: v1
kind: Service
metadata: {name: internal, namespace: shop}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: public, namespace: lab}
spec: {type: LoadBalancer}
"#;
    let o = palisade(
        &[
            "audit",
            "--baseline",
            "config/baseline.yaml",
            "--format",
            "json",
            "-",
        ],
        Some(input.as_bytes()),
    );
    let report = json(&o);
    let services: Vec<(String, String, String)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["object"]["kind"] == "Service")
        .map(|f| {
            (
                format!(
                    "{}/{}",
                    f["object"]["namespace"].as_str().unwrap(),
                    f["object"]["name"].as_str().unwrap()
                ),
                f["rule"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = |ns_name: &str, rule: &str, sev: &str| {
        (ns_name.to_string(), rule.to_string(), sev.to_string())
    };
    assert_eq!(
        services,
        vec![
            want("shop/debug", "network.service-node-port", "medium"),
            want("shop/mitm", "network.service-external-ips", "high"),
            want("shop/partners", "network.service-load-balancer", "medium"),
            want("shop/public", "network.service-load-balancer", "high"),
        ],
        "lab is not covered; shop/internal exposes nothing"
    );
}

#[test]
fn the_allocator_commits_arena_memory_as_used() {
    // .cargo/config.toml builds mimalloc with arena_eager_commit 0 (its Linux default, 2,
    // commits whole arenas up front: 106 instead of 63 MiB on the 10k benchmark corpus).
    let o = Command::new(BIN)
        .arg("--version")
        .env("MIMALLOC_VERBOSE", "1")
        .env_remove("MIMALLOC_ARENA_EAGER_COMMIT")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(
        err.lines()
            .any(|l| l.trim() == "option 'arena_eager_commit': 0"),
        "{err}"
    );
}

#[test]
fn a_cluster_audit_of_an_unreachable_server_is_one_clear_error() {
    // A port nobody listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\n\
             clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{port}'}}}}]\n\
             users: [{{name: u, user: {{token: t}}}}]\n\
             contexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n"
        ),
    )
    .unwrap();
    let o = palisade(
        &[
            "audit",
            "--cluster",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("cannot reach the API server"), "{err}");
    assert!(err.contains("Connection refused"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        o.stdout.is_empty(),
        "no report from an audit that read nothing"
    );
    // A missing kubeconfig names the file.
    let o = palisade(
        &["audit", "--cluster", "--kubeconfig", "/nonexistent/kc"],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/nonexistent/kc"), "{}", stderr(&o));
    // Cluster options without --cluster are a usage error, not silently ignored.
    let o = palisade(&["audit", "--context", "x", "deploy/"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--cluster only"), "{}", stderr(&o));
}

#[test]
fn node_exit_codes_and_formats_on_a_fake_host() {
    let dir = tempfile::tempdir().unwrap();
    let (root, proc_dir) = (dir.path().join("root"), dir.path().join("proc"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(proc_dir.join("7")).unwrap();
    let (r, p) = (root.to_str().unwrap(), proc_dir.to_str().unwrap());
    // Nothing runs: exit 2 with the reason (a pod without hostPID), not a clean report.
    let o = palisade(&["node", "--host-root", r, "--proc", p], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no Kubernetes component runs in"));
    let o = palisade(&["node", "--host-root", "/nonexistent-root"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--host-root /nonexistent-root"));
    // One API server with the defaults: fails (exit 1); --fail-on above every failure: exit 0.
    std::fs::write(
        proc_dir.join("7/cmdline"),
        "kube-apiserver\0--profiling=false\0",
    )
    .unwrap();
    let o = palisade(
        &[
            "node",
            "--host-root",
            r,
            "--proc",
            p,
            "--node-name",
            "n1",
            "--format",
            "json",
        ],
        None,
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["node"], "n1");
    assert_eq!(v["components"][0]["component"], "api-server");
    let results = v["results"].as_array().unwrap();
    let sum = |k: &str| v["summary"][k].as_u64().unwrap() as usize;
    assert_eq!(
        sum("pass") + sum("fail") + sum("notAssessable"),
        results.len()
    );
    let profiling = results.iter().find(|r| r["rule"] == "cis.1.2.15").unwrap();
    assert_eq!(profiling["status"], "pass");
    assert_eq!(profiling["source"], "--profiling");
    let o = palisade(
        &[
            "node",
            "--host-root",
            r,
            "--proc",
            p,
            "--fail-on",
            "critical",
            "--format",
            "sarif",
        ],
        None,
    );
    // 1.2.6 (AlwaysAllow by default) is critical.
    assert_eq!(o.status.code(), Some(1));
    let sarif: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let run = &sarif["runs"][0];
    assert_eq!(run["results"].as_array().unwrap().len(), results.len());
    let authz = run["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ruleId"] == "cis.1.2.6")
        .unwrap();
    assert_eq!(
        (authz["kind"].as_str(), authz["level"].as_str()),
        (Some("fail"), Some("error"))
    );
    // Valid SARIF 2.1.0 by the official schema.
    let path = dir.path().join("node.sarif");
    std::fs::write(&path, &o.stdout).unwrap();
    let v = Command::new(sarif_validator()).arg(&path).output().unwrap();
    assert!(v.status.success(), "{}{}", stdout(&v), stderr(&v));
}

/// docs/cis-checks.md is the check table as `palisade node --list-checks` prints it.
#[test]
fn the_cis_check_reference_is_current() {
    let out = palisade(&["node", "--list-checks"], None);
    assert_eq!(out.status.code(), Some(0));
    let committed = std::fs::read_to_string(format!("{ROOT}/docs/cis-checks.md")).unwrap();
    assert!(
        committed == String::from_utf8_lossy(&out.stdout),
        "docs/cis-checks.md is stale: run `cargo run -- node --list-checks > docs/cis-checks.md`"
    );
    let rows = committed.lines().filter(|l| l.starts_with("| `")).count();
    assert_eq!(rows, palisade::node::checks::CHECKS.len());
}
