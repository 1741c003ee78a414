//! deploy/monitoring: the alerts unit-tested by a real promtool (`promtool check rules`,
//! `promtool test rules` on deploy/monitoring/tests/), the metric names they and the Grafana
//! dashboard use checked against what the operator exports, the kustomize output checked against
//! the Service it scrapes, and the Helm chart's monitoring objects checked equal to kustomize's.
//! promtool/prometheus and helm are built from pinned Go modules by scripts/go-tool; kubectl
//! (for `kubectl kustomize`) comes from the local control plane's build.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn monitoring_dir() -> PathBuf {
    Path::new(ROOT).join("deploy/monitoring")
}

fn go_tool(name: &str, cmd: &str) -> PathBuf {
    let out = Command::new(Path::new(ROOT).join("scripts/go-tool"))
        .args(["path", name, cmd])
        .output()
        .expect("run scripts/go-tool");
    assert!(
        out.status.success(),
        "scripts/go-tool path {name} {cmd} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn kubectl() -> PathBuf {
    let out = Command::new(Path::new(ROOT).join("scripts/control-plane"))
        .arg("build")
        .output()
        .expect("run scripts/control-plane build");
    assert!(
        out.status.success(),
        "scripts/control-plane build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let k8s = String::from_utf8(out.stdout).unwrap();
    let dir = k8s
        .lines()
        .next()
        .expect("the Kubernetes binaries' directory");
    Path::new(dir).join("kubectl")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn yaml_docs(s: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(s)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML parses"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn read_yaml(path: &Path) -> Value {
    let s = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&s).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn prometheus_rule() -> Value {
    read_yaml(&monitoring_dir().join("prometheusrule.yaml"))
}

/// Alert names of the PrometheusRule, in file order.
fn alerts(rule: &Value) -> Vec<String> {
    rule["spec"]["groups"]
        .as_array()
        .expect("spec.groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .filter_map(|r| r["alert"].as_str().map(String::from))
        .collect()
}

/// A directory holding `rules.yaml` (the rule file Prometheus reads: the PrometheusRule's
/// `spec.groups`) next to copies of the promtool test files, which refer to it by that name.
fn promtool_workdir(rule: &Value) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let groups = serde_json::json!({"groups": rule["spec"]["groups"]});
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_yaml_ng::to_string(&groups).unwrap(),
    )
    .unwrap();
    let mut tests = Vec::new();
    for entry in std::fs::read_dir(monitoring_dir().join("tests")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let copy = dir.path().join(path.file_name().unwrap());
            std::fs::copy(&path, &copy).unwrap();
            tests.push(copy);
        }
    }
    tests.sort();
    assert!(
        !tests.is_empty(),
        "no promtool tests in deploy/monitoring/tests"
    );
    (dir, tests)
}

fn promtool_test(rule: &Value) -> Output {
    let (_dir, tests) = promtool_workdir(rule);
    run(Command::new(go_tool("prometheus", "promtool"))
        .args(["test", "rules"])
        .args(&tests))
}

#[test]
fn promtool_check_rules_accepts_the_rule_groups() {
    let rule = prometheus_rule();
    let (dir, _) = promtool_workdir(&rule);
    let out = run(Command::new(go_tool("prometheus", "promtool"))
        .args(["check", "rules", "--lint=all", "--lint-fatal"])
        .arg(dir.path().join("rules.yaml")));
    assert!(
        out.status.success(),
        "promtool check rules:\n{}",
        text(&out)
    );
    let n = alerts(&rule).len();
    assert!(
        text(&out).contains(&format!("SUCCESS: {n} rules found")),
        "promtool saw a different number of rules than the {n} alerts:\n{}",
        text(&out)
    );
}

#[test]
fn promtool_unit_tests_pass() {
    let out = promtool_test(&prometheus_rule());
    assert!(out.status.success(), "promtool test rules:\n{}", text(&out));
    assert!(text(&out).contains("SUCCESS"), "{}", text(&out));
}

/// Every alert has a test case where it fires and one where it must not.
#[test]
fn every_alert_has_firing_and_silent_test_cases() {
    let (mut fires, mut silent) = (BTreeSet::new(), BTreeSet::new());
    for entry in std::fs::read_dir(monitoring_dir().join("tests")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let doc = read_yaml(&path);
        for test in doc["tests"].as_array().expect("tests") {
            for case in test["alert_rule_test"].as_array().into_iter().flatten() {
                let name = case["alertname"].as_str().unwrap().to_string();
                match case["exp_alerts"].as_array() {
                    Some(a) if !a.is_empty() => fires.insert(name),
                    _ => silent.insert(name),
                };
            }
        }
    }
    for alert in alerts(&prometheus_rule()) {
        assert!(
            fires.contains(&alert),
            "no promtool case where {alert} fires"
        );
        assert!(
            silent.contains(&alert),
            "no promtool case where {alert} stays silent"
        );
    }
}

/// The unit tests pin each alert's `for` duration: the same rules with any one alert made
/// instant must fail them (so the tests do test the shipped durations).
#[test]
fn promtool_tests_catch_a_changed_for_duration() {
    let rule = prometheus_rule();
    for alert in alerts(&rule) {
        let mut changed = rule.clone();
        for group in changed["spec"]["groups"].as_array_mut().unwrap() {
            for r in group["rules"].as_array_mut().unwrap() {
                if r["alert"] == alert.as_str() {
                    r["for"] = "0s".into();
                }
            }
        }
        let out = promtool_test(&changed);
        assert!(
            !out.status.success(),
            "promtool tests still pass with {alert} firing instantly"
        );
        assert!(text(&out).contains(&alert), "{}", text(&out));
    }
}

/// Metric names (`palisade_...`) mentioned in `s`.
fn metric_names(s: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = s;
    while let Some(i) = rest.find("palisade_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// Every metric family with one series: families without series are not encoded at all.
fn populated_metrics() -> palisade::metrics::Metrics {
    use palisade::metrics::*;
    let m = Metrics::default();
    let b = || "b".to_string();
    m.reconciles
        .get_or_create(&BaselineLabels { baseline: b() })
        .inc();
    m.reconcile_errors
        .get_or_create(&ErrorLabels {
            baseline: b(),
            category: "apply".into(),
        })
        .inc();
    m.reconcile_duration
        .get_or_create(&BaselineLabels { baseline: b() })
        .observe(0.1);
    m.violations
        .get_or_create(&ViolationLabels {
            baseline: b(),
            rule: "pss.privileged".into(),
            severity: "critical".into(),
            namespace: "ns".into(),
        })
        .set(1);
    let kind = KindLabels {
        baseline: b(),
        kind: "Role".into(),
    };
    m.generated.get_or_create(&kind).set(1);
    m.drift_corrections.get_or_create(&kind).inc();
    m.fights.get_or_create(&kind).inc();
    m.contested
        .get_or_create(&BaselineLabels { baseline: b() })
        .set(1);
    m.watch_restarts
        .get_or_create(&WatchLabels { kind: "Pod".into() })
        .inc();
    m.count_write("Role", "apply");
    m.throttled.inc();
    m.last_success
        .get_or_create(&BaselineLabels { baseline: b() })
        .set(1);
    m
}

/// The series names the operator exports (`_total` for counters, `_bucket`/`_sum`/`_count`
/// for histograms), from its own encoder.
fn exported_series() -> BTreeSet<String> {
    let text = populated_metrics().encode();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap();
        match kind {
            "counter" => names.insert(format!("{name}_total")),
            "histogram" => {
                for s in ["bucket", "sum", "count"] {
                    names.insert(format!("{name}_{s}"));
                }
                true
            }
            _ => names.insert(name.to_string()),
        };
    }
    names
}

#[test]
fn alerts_and_dashboard_use_only_exported_metrics() {
    let exported = exported_series();
    assert!(exported.contains("palisade_violations"), "{exported:?}");
    let rules = std::fs::read_to_string(monitoring_dir().join("prometheusrule.yaml")).unwrap();
    let dashboard =
        std::fs::read_to_string(monitoring_dir().join("dashboards/palisade.json")).unwrap();
    for (what, s) in [
        ("prometheusrule.yaml", &rules),
        ("palisade.json", &dashboard),
    ] {
        let used = metric_names(s);
        assert!(!used.is_empty(), "{what} uses no Palisade metric");
        let unknown: Vec<_> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{what} uses metrics the operator does not export: {unknown:?}"
        );
    }
    // The dashboard shows every metric family.
    let used = metric_names(&dashboard);
    let families = populated_metrics().encode();
    assert!(families.matches("# TYPE ").count() >= 10, "{families}");
    for family in families
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
    {
        assert!(
            used.iter().any(|u| u.starts_with(&family)),
            "the dashboard does not show {family}"
        );
    }
}

#[test]
fn dashboard_is_valid_grafana_json() {
    let d: Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring_dir().join("dashboards/palisade.json")).unwrap(),
    )
    .expect("dashboard JSON parses");
    assert_eq!(d["uid"], "palisade-operator");
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(vars.contains(&"datasource"), "{vars:?}");
    let panels = d["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate panel id");
        if p["type"] == "row" {
            continue;
        }
        // Every query goes to the selected data source, never a hard-coded one.
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()));
        }
    }
}

/// `kubectl kustomize deploy/monitoring`, as objects.
fn kustomize_monitoring() -> Vec<Value> {
    let out = run(Command::new(kubectl())
        .arg("kustomize")
        .arg(monitoring_dir()));
    assert!(out.status.success(), "kubectl kustomize:\n{}", text(&out));
    yaml_docs(&String::from_utf8(out.stdout).unwrap())
}

fn find<'a>(objs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objs.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind}, got {}", found.len());
    found[0]
}

#[test]
fn kustomize_output_scrapes_the_operator_service() {
    let objs = kustomize_monitoring();
    assert_eq!(objs.len(), 3, "{objs:#?}");
    assert_eq!(*find(&objs, "PrometheusRule"), prometheus_rule());

    let cm = find(&objs, "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "palisade-grafana-dashboard");
    assert_eq!(cm["metadata"]["namespace"], "palisade-system");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let raw = std::fs::read_to_string(monitoring_dir().join("dashboards/palisade.json")).unwrap();
    assert_eq!(cm["data"]["palisade.json"].as_str(), Some(raw.as_str()));

    // The ServiceMonitor selects the operator's metrics Service from deploy/base by its labels,
    // namespace and port name.
    let sm = find(&objs, "ServiceMonitor");
    let svc = read_yaml(&Path::new(ROOT).join("deploy/base/service.yaml"));
    let ns = svc["metadata"]["namespace"].as_str().unwrap();
    assert_eq!(sm["metadata"]["namespace"], ns);
    assert_eq!(sm["spec"]["namespaceSelector"]["matchNames"][0], ns);
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&svc["metadata"]["labels"][k], v, "Service label {k}");
    }
    let port = sm["spec"]["endpoints"][0]["port"].as_str().unwrap();
    assert!(
        svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == port),
        "the Service has no port named {port}"
    );
}

/// `helm template` of the chart with `--set` values, as objects.
fn helm_template(sets: &[&str]) -> Vec<Value> {
    let mut cmd = Command::new(go_tool("helm", "helm"));
    cmd.args(["template", "palisade"])
        .arg(Path::new(ROOT).join("deploy/helm/palisade"))
        .args(["--namespace", "palisade-system"])
        // The chart requires Kubernetes >= 1.33; helm template assumes an older one by default.
        .args(["--kube-version", "1.34.4"]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = run(&mut cmd);
    assert!(out.status.success(), "helm template:\n{}", text(&out));
    yaml_docs(&String::from_utf8(out.stdout).unwrap())
}

#[test]
fn helm_chart_renders_the_kustomize_monitoring_objects() {
    let kustomized = kustomize_monitoring();
    let on = helm_template(&[
        "metrics.serviceMonitor.enabled=true",
        "metrics.prometheusRule.enabled=true",
    ]);
    for kind in ["ServiceMonitor", "PrometheusRule"] {
        assert_eq!(
            find(&on, kind),
            find(&kustomized, kind),
            "helm and kustomize {kind} differ"
        );
    }
    let off = helm_template(&[
        "metrics.serviceMonitor.enabled=false",
        "metrics.prometheusRule.enabled=false",
    ]);
    for kind in ["ServiceMonitor", "PrometheusRule"] {
        assert!(
            !off.iter().any(|o| o["kind"] == kind),
            "{kind} rendered while disabled"
        );
    }
}
