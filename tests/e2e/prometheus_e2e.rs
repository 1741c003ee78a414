//! deploy/monitoring against real components: the prometheus-operator CRDs (from the pinned
//! prometheus-operator Go module) validate the kustomize and Helm monitoring objects with a
//! server-side dry run, and a real Prometheus scraping a real operator fires and resolves the
//! violations alert as a workload is broken and fixed.

use crate::common;

use common::{install_crd, unique, wait_for, Operator, TestNamespace, ROOT};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PROMETHEUS_OPERATOR: &str = "github.com/prometheus-operator/prometheus-operator@v0.85.0";
const TEST_LABEL: &str = "palisade-test";
const ID_LABEL: &str = "palisade-test-id";

// ------------------------------------------------------------------------------------ helpers

fn output(cmd: &mut Command) -> String {
    let out: Output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn go_tool(name: &str, cmd: &str) -> PathBuf {
    PathBuf::from(
        output(Command::new(Path::new(ROOT).join("scripts/go-tool")).args(["path", name, cmd]))
            .trim(),
    )
}

fn yaml_docs(s: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(s)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML parses"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn kustomize_monitoring() -> Vec<Value> {
    let dirs = output(Command::new(Path::new(ROOT).join("scripts/control-plane")).arg("build"));
    let kubectl = Path::new(dirs.lines().next().unwrap()).join("kubectl");
    yaml_docs(&output(
        Command::new(kubectl)
            .arg("kustomize")
            .arg(Path::new(ROOT).join("deploy/monitoring")),
    ))
}

fn helm_monitoring() -> Vec<Value> {
    yaml_docs(&output(
        Command::new(go_tool("helm", "helm"))
            .args(["template", "palisade"])
            .arg(Path::new(ROOT).join("deploy/helm/palisade"))
            .args(["--namespace", "palisade-system", "--kube-version", "1.34.4"])
            .args(["--set", "metrics.serviceMonitor.enabled=true"])
            .args(["--set", "metrics.prometheusRule.enabled=true"]),
    ))
    .into_iter()
    .filter(|o| o["apiVersion"] == "monitoring.coreos.com/v1")
    .collect()
}

/// Installs one prometheus-operator CRD from the pinned Go module and waits until it is served.
async fn install_upstream_crd(client: &Client, file: &str, name: &str) {
    let path = format!("example/prometheus-operator-crd/{file}");
    let names = common::install_module_crds(client, PROMETHEUS_OPERATOR, &path).await;
    assert_eq!(names, [name]);
}

async fn install_prometheus_operator_crds(client: &Client) {
    install_upstream_crd(
        client,
        "monitoring.coreos.com_servicemonitors.yaml",
        "servicemonitors.monitoring.coreos.com",
    )
    .await;
    install_upstream_crd(
        client,
        "monitoring.coreos.com_prometheusrules.yaml",
        "prometheusrules.monitoring.coreos.com",
    )
    .await;
}

/// Server-side apply with `dryRun=All` of `obj` into namespace `ns`: the API server runs
/// schema validation (the CRD's OpenAPI schema, CEL rules) and admission, and stores nothing.
async fn dry_run(client: &Client, ns: &str, obj: &Value) -> Result<(), kube::Error> {
    let (group, version) = obj["apiVersion"]
        .as_str()
        .unwrap()
        .rsplit_once('/')
        .unwrap_or(("", obj["apiVersion"].as_str().unwrap()));
    let gvk = GroupVersionKind::gvk(group, version, obj["kind"].as_str().unwrap());
    // Discovery can lag a freshly established CRD: retry until the kind is known.
    let (ar, _) = wait_for(
        &format!("{gvk:?} in discovery"),
        Duration::from_secs(30),
        || async { kube::discovery::pinned_kind(client, &gvk).await.ok() },
    )
    .await;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let mut obj = obj.clone();
    obj["metadata"]["namespace"] = ns.into();
    let name = obj["metadata"]["name"].as_str().unwrap().to_string();
    api.patch(
        &name,
        &PatchParams::apply("palisade-tests").force().dry_run(),
        &Patch::Apply(&obj),
    )
    .await
    .map(|_| ())
}

/// A GET on 127.0.0.1:`port` with HTTP/1.0 (so the body is never chunked); (status, body).
async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut buf))
        .await
        .ok()?
        .ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// --------------------------------------------------------------------------------- Prometheus

/// A real Prometheus with a private data directory on a free port; stopped when dropped (also
/// when the test panics, which prints the end of its log).
struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `target` (host:port) every second and evaluates `rules` (a Prometheus rule file)
    /// every second.
    fn start(target: &str, rules: &Value) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("rules.yaml"),
            serde_yaml_ng::to_string(rules).unwrap(),
        )
        .unwrap();
        let config = json!({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": ["rules.yaml"],
            "scrape_configs": [{"job_name": "palisade", "static_configs": [{"targets": [target]}]}],
        });
        std::fs::write(
            dir.path().join("prometheus.yml"),
            serde_yaml_ng::to_string(&config).unwrap(),
        )
        .unwrap();
        let port = common::free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(go_tool("prometheus", "prometheus"))
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus { child, port, dir }
    }

    async fn wait_ready(&self) {
        wait_for("Prometheus /-/ready", Duration::from_secs(60), || async {
            matches!(http_get(self.port, "/-/ready").await, Some((200, _))).then_some(())
        })
        .await;
    }

    async fn api(&self, path: &str) -> Option<Value> {
        let (code, body) = http_get(self.port, path).await?;
        let v: Value = serde_json::from_str(&body).ok()?;
        (code == 200 && v["status"] == "success").then_some(v["data"].clone())
    }

    /// The result vector of an instant query.
    async fn query(&self, promql: &str) -> Option<Vec<Value>> {
        let data = self
            .api(&format!("/api/v1/query?query={}", urlencode(promql)))
            .await?;
        data["result"].as_array().cloned()
    }

    /// Active (pending or firing) alerts.
    async fn alerts(&self) -> Option<Vec<Value>> {
        self.api("/api/v1/alerts").await?["alerts"]
            .as_array()
            .cloned()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "---- prometheus log, last 40 lines ----\n{}\n----",
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
    }
}

/// The rule file Prometheus reads: the PrometheusRule's `spec.groups`.
fn shipped_rule_groups() -> Value {
    let rule: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join("deploy/monitoring/prometheusrule.yaml"))
            .unwrap(),
    )
    .unwrap();
    json!({"groups": rule["spec"]["groups"]})
}

fn is_alert(a: &Value, name: &str, ns: &str) -> bool {
    a["labels"]["alertname"] == name && a["labels"]["namespace"] == ns
}

// ------------------------------------------------------------------------------------- tests

/// The kustomize and Helm monitoring objects pass the API server's validation with the real
/// prometheus-operator CRDs; a broken PrometheusRule does not (the dry run does validate).
#[tokio::test(flavor = "multi_thread")]
async fn monitoring_objects_pass_server_side_dry_run() {
    let _serial = common::serial::module(module_path!());
    let client = common::client().await;
    install_prometheus_operator_crds(&client).await;
    let ns = TestNamespace::new(&client, "monitoring-dry-run", &[]).await;

    let kustomized = kustomize_monitoring();
    let kinds: Vec<&str> = kustomized
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    for kind in ["ServiceMonitor", "PrometheusRule", "ConfigMap"] {
        assert!(kinds.contains(&kind), "kustomize output lacks {kind}");
    }
    let helm = helm_monitoring();
    assert_eq!(
        helm.len(),
        2,
        "helm renders ServiceMonitor + PrometheusRule"
    );
    for obj in kustomized.iter().chain(&helm) {
        dry_run(&client, &ns.name, obj).await.unwrap_or_else(|e| {
            panic!(
                "server-side dry run of {} {} rejected: {e}",
                obj["kind"], obj["metadata"]["name"]
            )
        });
    }

    // Negative control: a duration the CRD's schema does not accept.
    let mut broken = kustomized
        .iter()
        .find(|o| o["kind"] == "PrometheusRule")
        .unwrap()
        .clone();
    broken["spec"]["groups"][0]["rules"][0]["for"] = "5 minutes".into();
    let err = dry_run(&client, &ns.name, &broken)
        .await
        .expect_err("a PrometheusRule with `for: 5 minutes` must be rejected");
    assert!(err.to_string().contains("for"), "{err}");
}

/// A real Prometheus scrapes the operator with the shipped rules: a privileged Deployment makes
/// PalisadeCriticalViolations fire for its namespace, fixing it resolves the alert, and no
/// operator-health alert is active throughout.
#[tokio::test(flavor = "multi_thread")]
async fn violations_alert_fires_and_resolves_in_prometheus() {
    let _serial = common::serial::module(module_path!());
    let client = common::client().await;
    install_crd(&client).await;
    let id = unique("prom");
    let ns = TestNamespace::new(&client, "prom-alerts", &[(TEST_LABEL, &id)]).await;

    // Audit only: the privileged workload must be admitted to be reported.
    let baseline = json!({
        "apiVersion": "palisade.dev/v1alpha1",
        "kind": "SecurityBaseline",
        "metadata": {"name": id, "labels": {ID_LABEL: id}},
        "spec": {"enforcement": "Audit", "namespaceSelector": {"matchLabels": {TEST_LABEL: id}}},
    });
    let baselines: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &kube::discovery::ApiResource::erase::<palisade::crd::SecurityBaseline>(&()),
    );
    baselines
        .patch(
            &id,
            &PatchParams::apply("palisade-tests").force(),
            &Patch::Apply(&baseline),
        )
        .await
        .expect("apply baseline");

    let selector = format!("{ID_LABEL}={id}");
    let op = Operator::start(&["--baseline-selector", &selector]);
    op.wait_ready().await;

    // The shipped rules; only the violation alerts' `for` is shortened to 1s (their real
    // durations, 5m to 1h, are covered by the promtool tests). Everything else is as shipped.
    let mut rules = shipped_rule_groups();
    for group in rules["groups"].as_array_mut().unwrap() {
        for r in group["rules"].as_array_mut().unwrap() {
            let name = r["alert"].as_str().unwrap_or_default();
            if name.ends_with("Violations") {
                r["for"] = "1s".into();
            }
        }
    }
    let prom = Prometheus::start(&format!("127.0.0.1:{}", op.metrics_port), &rules);
    prom.wait_ready().await;
    wait_for(
        "Prometheus scrapes the operator",
        Duration::from_secs(60),
        || async {
            let up = prom.query("up{job=\"palisade\"} == 1").await?;
            (!up.is_empty()).then_some(())
        },
    )
    .await;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let apply_deployment = |privileged: bool| {
        let body = common::deployment(&ns.name, "web", privileged);
        let deployments = deployments.clone();
        async move {
            deployments
                .patch(
                    "web",
                    &PatchParams::apply("palisade-tests").force(),
                    &Patch::Apply(&body),
                )
                .await
                .expect("apply deployment")
        }
    };

    let broken_at = Instant::now();
    apply_deployment(true).await;
    let alert = wait_for(
        "PalisadeCriticalViolations firing for the test namespace",
        Duration::from_secs(90),
        || async {
            prom.alerts().await?.into_iter().find(|a| {
                is_alert(a, "PalisadeCriticalViolations", &ns.name) && a["state"] == "firing"
            })
        },
    )
    .await;
    let fired_after = broken_at.elapsed();
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["labels"]["baseline"], id.as_str());
    assert_eq!(
        alert["value"].as_str().map(|v| v.parse::<f64>().unwrap()),
        Some(1.0)
    );
    assert!(
        alert["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains(&ns.name),
        "{alert}"
    );

    let fixed_at = Instant::now();
    apply_deployment(false).await;
    wait_for(
        "PalisadeCriticalViolations resolved for the test namespace",
        Duration::from_secs(90),
        || async {
            let active = prom
                .alerts()
                .await?
                .iter()
                .any(|a| is_alert(a, "PalisadeCriticalViolations", &ns.name));
            (!active).then_some(())
        },
    )
    .await;
    let resolved_after = fixed_at.elapsed();
    let critical = prom
        .query(&format!(
            "palisade_violations{{severity=\"critical\",namespace=\"{}\"}}",
            ns.name
        ))
        .await
        .expect("query");
    assert!(
        critical.is_empty(),
        "critical series still present: {critical:?}"
    );

    eprintln!(
        "PalisadeCriticalViolations fired {:.1}s after the privileged Deployment was applied, \
         resolved {:.1}s after it was fixed",
        fired_after.as_secs_f64(),
        resolved_after.as_secs_f64()
    );

    // The operator-health alerts see a healthy operator: one leader, reconciles succeeding.
    let leaders = prom.query("sum(palisade_leader)").await.expect("query");
    assert_eq!(leaders[0]["value"][1], "1", "{leaders:?}");
    let unhealthy = prom
        .query("ALERTS{alertname=~\"PalisadeLeaderAbsent|PalisadeReconcileStalled|PalisadeReconcileErrors|PalisadeWatchRestarts\"}")
        .await
        .expect("query");
    assert!(
        unhealthy.is_empty(),
        "operator alerts active: {unhealthy:?}"
    );

    let _ = baselines.delete(&id, &Default::default()).await;
}
