//! The install manifests: the kustomize base (deploy/base) and the Helm chart (deploy/helm/palisade)
//! render the same objects, pass Palisade's own audit, and (e2e) are accepted by a real API server.
//! Renders with the control plane's pinned kubectl (`kubectl kustomize`) and a pinned helm
//! (`scripts/go-tool`), both built from the Go module proxy.

mod common;

use common::ROOT;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The findings an operator that generates Roles and admission policies cannot avoid; accepted
/// with reasons by `accepted-risk.palisade.dev/<rule>` annotations on the ClusterRole
/// (deploy/base/rbac.yaml, the chart's templates/rbac.yaml). Anything else fails the audit tests.
const ACCEPTED: &[(&str, &str)] = &[("rbac.webhook-config", "ClusterRole/palisade")];
const ANNOTATION_PREFIX: &str = "accepted-risk.palisade.dev/";
/// deploy/ holds the node agent too (deploy/node: hostPID and the host's / read-only, by design):
/// deploy/ is audited with the exemption a cluster's baseline needs for it.
const NODE_AGENT_BASELINE: &str = "tests/data/node-agent-baseline.yaml";
/// What that exemption covers: 5 rules on the DaemonSet and the Job, nothing else.
const NODE_AGENT_EXEMPTED: usize = 11;

fn run(cmd: &mut Command, stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    let input = stdin.unwrap_or_default().to_string();
    let mut pipe = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || pipe.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("wait for the command");
    writer.join().unwrap().expect("write stdin");
    out
}

fn checked(cmd: &mut Command, stdin: Option<&str>) -> String {
    let out = run(cmd, stdin);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The pinned kubectl (built once by scripts/control-plane build).
fn kubectl() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let dirs = checked(
            Command::new(format!("{ROOT}/scripts/control-plane")).arg("build"),
            None,
        );
        let k8s = dirs.lines().next().expect("the Kubernetes binaries' dir");
        format!("{k8s}/kubectl")
    })
}

fn helm() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        checked(
            Command::new(format!("{ROOT}/scripts/go-tool")).args(["path", "helm", "helm"]),
            None,
        )
        .trim()
        .to_string()
    })
}

fn kustomize_output() -> String {
    checked(
        Command::new(kubectl()).args(["kustomize", &format!("{ROOT}/deploy/base")]),
        None,
    )
}

fn helm_output(set: &[&str]) -> String {
    let mut cmd = Command::new(helm());
    cmd.args([
        "template",
        "palisade",
        &format!("{ROOT}/deploy/helm/palisade"),
    ])
    .args(["--namespace", "palisade-system", "--include-crds"]);
    for s in set {
        cmd.args(["--set", s]);
    }
    checked(&mut cmd, None)
}

fn documents(yaml: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

fn id(v: &Value) -> (String, String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        s(&v["kind"]),
        s(&v["metadata"]["namespace"]),
        s(&v["metadata"]["name"]),
    )
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

#[test]
fn kustomize_and_helm_render_the_same_objects() {
    let kust = documents(&kustomize_output());
    let helm = documents(&helm_output(&[]));
    // Helm installs into a namespace it is given (--create-namespace); the base creates its own.
    let ns = find(&kust, "Namespace", "palisade-system");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    let ids = |docs: &[Value]| -> BTreeSet<_> {
        docs.iter()
            .map(id)
            .filter(|(kind, _, _)| kind != "Namespace")
            .collect()
    };
    assert_eq!(ids(&kust), ids(&helm), "kustomize vs helm objects");
    assert!(ids(&kust).len() >= 10, "{:?}", ids(&kust));

    for (kind, name) in [
        ("ClusterRole", "palisade"),
        ("Role", "palisade-leader-election"),
        ("Role", "palisade-api-server-endpoints"),
        ("ClusterRole", "palisade-grantable-defaults"),
    ] {
        assert_eq!(
            find(&kust, kind, name)["rules"],
            find(&helm, kind, name)["rules"],
            "{kind} {name} rules"
        );
    }
    let annotations =
        |docs: &[Value]| find(docs, "ClusterRole", "palisade")["metadata"]["annotations"].clone();
    assert_eq!(
        annotations(&kust),
        annotations(&helm),
        "ClusterRole palisade annotations"
    );
    assert_eq!(
        annotations(&kust).as_object().map(|a| a.len()),
        Some(ACCEPTED.len()),
        "{}",
        annotations(&kust)
    );
    for (kind, name) in [
        ("ClusterRoleBinding", "palisade"),
        ("RoleBinding", "palisade-leader-election"),
    ] {
        for field in ["roleRef", "subjects"] {
            assert_eq!(
                find(&kust, kind, name)[field],
                find(&helm, kind, name)[field],
                "{kind} {name} {field}"
            );
        }
    }
    let (kd, hd) = (
        find(&kust, "Deployment", "palisade"),
        find(&helm, "Deployment", "palisade"),
    );
    assert_eq!(kd["spec"]["replicas"], hd["spec"]["replicas"]);
    assert_eq!(kd["spec"]["selector"], hd["spec"]["selector"]);
    let (kp, hp) = (
        &kd["spec"]["template"]["spec"],
        &hd["spec"]["template"]["spec"],
    );
    for field in [
        "serviceAccountName",
        "automountServiceAccountToken",
        "securityContext",
        "volumes",
        "affinity",
    ] {
        assert_eq!(kp[field], hp[field], "pod spec {field}");
    }
    let (kc, hc) = (&kp["containers"][0], &hp["containers"][0]);
    for field in [
        "image",
        "args",
        "env",
        "securityContext",
        "resources",
        "ports",
        "livenessProbe",
        "readinessProbe",
        "volumeMounts",
    ] {
        assert_eq!(kc[field], hc[field], "container {field}");
    }
    assert_eq!(
        kc["image"],
        format!("palisade:{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        find(&kust, "Service", "palisade-metrics")["spec"],
        find(&helm, "Service", "palisade-metrics")["spec"]
    );
    assert_eq!(
        find(&kust, "Service", "palisade-metrics")["spec"]["ports"][0]["name"],
        "metrics"
    );
    assert_eq!(
        find(&kust, "PodDisruptionBudget", "palisade")["spec"],
        find(&helm, "PodDisruptionBudget", "palisade")["spec"]
    );
}

#[test]
fn deployment_is_hardened() {
    let docs = documents(&kustomize_output());
    let d = find(&docs, "Deployment", "palisade");
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        c["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"--leader-elect"), "{args:?}");
    assert_eq!(d["spec"]["replicas"], 2);
    // The token it needs, and only that, is mounted where the in-cluster client looks.
    let sources = &pod["volumes"][0]["projected"]["sources"];
    assert_eq!(sources[0]["serviceAccountToken"]["path"], "token");
    assert_eq!(
        c["volumeMounts"][0]["mountPath"],
        "/var/run/secrets/kubernetes.io/serviceaccount"
    );
    let env = c["env"].as_array().unwrap();
    assert!(env.iter().any(|e| e["name"] == "POD_NAMESPACE"
        && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"));
}

#[test]
fn rbac_has_no_wildcards_and_leases_only_in_its_namespace() {
    let docs = documents(&kustomize_output());
    for d in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
    {
        for rule in d["rules"].as_array().into_iter().flatten() {
            for field in ["apiGroups", "resources", "verbs"] {
                let items = rule[field].as_array().unwrap();
                assert!(
                    !items.iter().any(|v| v.as_str().unwrap().contains('*')),
                    "{} {field} uses a wildcard: {rule}",
                    id(d).2
                );
            }
        }
    }
    // No escalate, bind or impersonate anywhere: generated Roles stay within the grantable
    // ceiling Palisade itself is bound to, so the API server's own escalation check suffices.
    for d in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
    {
        for rule in d["rules"].as_array().into_iter().flatten() {
            for verb in rule["verbs"].as_array().unwrap() {
                assert!(
                    !["escalate", "bind", "impersonate"].contains(&verb.as_str().unwrap()),
                    "{} grants {verb}: {rule}",
                    id(d).2
                );
            }
        }
    }
    let ceiling = find(&docs, "ClusterRole", "palisade-grantable");
    assert_eq!(
        ceiling["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"]
            ["palisade.dev/aggregate-to-grantable"],
        "true"
    );
    assert!(
        ceiling.get("rules").is_none(),
        "aggregated: the controller-manager owns its rules"
    );
    let cluster = find(&docs, "ClusterRole", "palisade").to_string();
    assert!(
        !cluster.contains("leases"),
        "leases must not be cluster-wide"
    );
    assert!(
        !cluster.contains("endpointslices"),
        "the API server's EndpointSlice is read in `default` only"
    );
    let slices = find(&docs, "Role", "palisade-api-server-endpoints");
    assert_eq!(slices["metadata"]["namespace"], "default");
    assert_eq!(
        slices["rules"][0]["verbs"],
        serde_json::json!(["get", "list", "watch"])
    );
    let role = find(&docs, "Role", "palisade-leader-election");
    assert_eq!(role["metadata"]["namespace"], "palisade-system");
    assert_eq!(
        role["rules"][1]["resourceNames"],
        serde_json::json!(["palisade-leader"])
    );
}

#[test]
fn helm_values_map_to_real_flags() {
    let help = checked(
        Command::new(env!("CARGO_BIN_EXE_palisade")).args(["run", "--help"]),
        None,
    );
    let docs = documents(&helm_output(&[
        "reports.enabled=true",
        "baselineSelector=shard=a",
        "logJson=true",
        "logLevel=debug",
        "resyncSeconds=60",
        "leaseDurationSeconds=30",
        "metrics.port=9090",
        "replicaCount=3",
        "image.repository=my.registry/palisade",
        "image.tag=1.2.3",
    ]));
    let d = find(&docs, "Deployment", "palisade");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for want in [
        "--reports",
        "--baseline-selector=shard=a",
        "--log-json",
        "--resync=60",
        "--lease-duration=30",
        "--metrics-addr=0.0.0.0:9090",
    ] {
        assert!(args.contains(&want), "{want} missing from {args:?}");
        let flag = want.split('=').next().unwrap();
        assert!(help.contains(flag), "`palisade run` has no {flag}");
    }
    assert_eq!(c["image"], "my.registry/palisade:1.2.3");
    assert_eq!(c["ports"][0]["containerPort"], 9090);
    assert_eq!(d["spec"]["replicas"], 3);
    assert!(c["env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "PALISADE_LOG" && e["value"] == "debug"));
    assert_eq!(
        find(&docs, "Service", "palisade-metrics")["spec"]["ports"][0]["port"],
        9090
    );
    // Defaults leave optional flags out.
    let defaults = documents(&helm_output(&[]));
    let args = find(&defaults, "Deployment", "palisade")["spec"]["template"]["spec"]["containers"]
        [0]["args"]
        .to_string();
    assert!(
        !args.contains("--reports") && !args.contains("--baseline-selector"),
        "{args}"
    );
}

#[test]
fn helm_chart_ships_the_generated_crd() {
    let generated = std::fs::read(format!("{ROOT}/crds/securitybaseline.yaml")).unwrap();
    let shipped = std::fs::read(format!(
        "{ROOT}/deploy/helm/palisade/crds/securitybaseline.yaml"
    ))
    .unwrap();
    assert!(
        generated == shipped,
        "deploy/helm/palisade/crds/securitybaseline.yaml is stale: copy crds/securitybaseline.yaml"
    );
}

/// (rule, Kind/name) of each entry of `list` ("findings" or "accepted") in a JSON audit report.
fn findings_in(report: &str, list: &str) -> BTreeSet<(String, String)> {
    let v: Value = serde_json::from_str(report).expect("JSON report");
    v[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list} in {report}"))
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_string(),
                format!(
                    "{}/{}",
                    f["object"]["kind"].as_str().unwrap(),
                    f["object"]["name"].as_str().unwrap()
                ),
            )
        })
        .collect()
}

fn findings(report: &str) -> BTreeSet<(String, String)> {
    findings_in(report, "findings")
}

fn audit(args: &[&str], stdin: Option<&str>) -> Output {
    run(
        Command::new(env!("CARGO_BIN_EXE_palisade"))
            .current_dir(ROOT)
            .args(["audit", "--format", "json"])
            .args(args),
        stdin,
    )
}

fn accepted() -> BTreeSet<(String, String)> {
    ACCEPTED
        .iter()
        .map(|(r, o)| (r.to_string(), o.to_string()))
        .collect()
}

/// Zero findings, exit 0, no input errors; the accepted findings are listed as accepted, each
/// with the reason its annotation gives.
fn assert_self_audit_clean(what: &str, paths: &[&str], stdin: Option<&str>) -> Value {
    let out = audit(paths, stdin);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(findings(&text), BTreeSet::new(), "{what}: {text}");
    assert_eq!(findings_in(&text, "accepted"), accepted(), "{what}: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["summary"]["findings"], 0, "{what}: {text}");
    assert_eq!(v["summary"]["accepted"], ACCEPTED.len(), "{what}: {text}");
    for a in v["accepted"].as_array().unwrap() {
        let risk = &a["acceptedRisk"];
        assert_eq!(
            risk["annotation"],
            format!("{ANNOTATION_PREFIX}{}", a["rule"].as_str().unwrap()),
            "{what}: {a}"
        );
        assert!(risk["reason"].as_str().unwrap().len() >= 10, "{what}: {a}");
    }
    assert!(
        !v["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["severity"] == "error"),
        "{what}: input errors: {text}"
    );
    assert_eq!(out.status.code(), Some(0), "{what}: {text}");
    v
}

/// `yaml` with the accepted-risk annotation for `rule` removed from ClusterRole/palisade.
fn without_annotation(yaml: &str, rule: &str) -> String {
    let mut docs = documents(yaml);
    let role = docs
        .iter_mut()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "palisade")
        .expect("ClusterRole palisade");
    let removed = role["metadata"]["annotations"]
        .as_object_mut()
        .expect("annotations")
        .remove(&format!("{ANNOTATION_PREFIX}{rule}"));
    assert!(removed.is_some(), "no annotation for {rule}");
    docs.iter()
        .map(|d| serde_yaml_ng::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Removing one annotation brings its finding back (exit 1); the other stays accepted.
fn assert_annotations_matter(what: &str, yaml: &str) {
    for (rule, object) in ACCEPTED {
        let out = audit(&["-"], Some(&without_annotation(yaml, rule)));
        let text = String::from_utf8_lossy(&out.stdout);
        let want: BTreeSet<_> = [(rule.to_string(), object.to_string())].into();
        assert_eq!(findings(&text), want, "{what} without {rule}: {text}");
        let mut rest = accepted();
        rest.retain(|(r, _)| r != rule);
        assert_eq!(findings_in(&text, "accepted"), rest, "{what}: {text}");
        assert_eq!(out.status.code(), Some(1), "{what} without {rule}: {text}");
    }
}

#[test]
fn deploy_dir_passes_palisade_audit() {
    let report = assert_self_audit_clean(
        "palisade audit deploy/",
        &["--baseline", NODE_AGENT_BASELINE, "deploy/"],
        None,
    );
    assert_eq!(
        report["summary"]["exempted"], NODE_AGENT_EXEMPTED,
        "{report}"
    );
    // Without the exemption the node agent's host access is reported, and only that.
    let bare = audit(&["deploy/node/"], None);
    let text = String::from_utf8_lossy(&bare.stdout);
    let rules: BTreeSet<String> = findings(&text).into_iter().map(|(r, _)| r).collect();
    let want: BTreeSet<String> = [
        "hardening.automount-token",
        "pss.capabilities-baseline",
        "pss.host-namespaces",
        "pss.host-path-volumes",
        "pss.run-as-non-root",
        "pss.run-as-user",
    ]
    .map(String::from)
    .into();
    assert_eq!(rules, want, "{text}");
    assert_eq!(findings(&text).len(), NODE_AGENT_EXEMPTED, "{text}");
    let diags = report["diagnostics"].as_array().unwrap();
    let note = |file: &str| {
        diags
            .iter()
            .find(|d| d["file"] == file)
            .unwrap_or_else(|| panic!("no note for {file}: {diags:?}"))
    };
    // The chart is named, with how to audit it, instead of its templates failing to parse.
    assert!(
        note("deploy/helm/palisade")["message"]
            .as_str()
            .unwrap()
            .contains("helm template deploy/helm/palisade | palisade audit -"),
        "{diags:?}"
    );
    // Files that are not Kubernetes objects (promtool tests, a dashboard) are noted, not errors.
    for file in [
        "deploy/monitoring/dashboards/palisade.json",
        "deploy/monitoring/tests/operator.yaml",
    ] {
        let d = note(file);
        assert_eq!(d["severity"], "skipped", "{d}");
        assert_eq!(d["document"], 0, "{d}");
        assert!(
            d["message"]
                .as_str()
                .unwrap()
                .starts_with("not a Kubernetes object: skipped"),
            "{d}"
        );
    }
    // The table lists the accepted findings and counts them apart from findings.
    let out = run(
        Command::new(env!("CARGO_BIN_EXE_palisade"))
            .current_dir(ROOT)
            .args(["audit", "--baseline", NODE_AGENT_BASELINE, "deploy/"]),
        None,
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{table}");
    assert!(
        table.contains(&format!(
            " 0 findings, {NODE_AGENT_EXEMPTED} exempted, 1 accepted"
        )),
        "{table}"
    );
    for (rule, object) in ACCEPTED {
        assert!(
            table
                .lines()
                .any(|l| l.contains(rule) && l.contains(object) && l.contains(ANNOTATION_PREFIX)),
            "{rule} on {object} not listed as accepted: {table}"
        );
    }
}

#[test]
fn rendered_kustomize_and_helm_pass_palisade_audit() {
    let kust = kustomize_output();
    let helm = helm_output(&[]);
    assert_self_audit_clean("kustomize", &["-"], Some(&kust));
    assert_self_audit_clean("helm", &["-"], Some(&helm));
    assert_annotations_matter("kustomize", &kust);
    assert_annotations_matter("helm", &helm);
    // SARIF: accepted findings are results suppressed in source, with the reason.
    let out = run(
        Command::new(env!("CARGO_BIN_EXE_palisade")).args(["audit", "--format", "sarif", "-"]),
        Some(&kust),
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("SARIF");
    let results = v["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), ACCEPTED.len(), "{results:?}");
    for r in results {
        let s = &r["suppressions"][0];
        assert_eq!(s["kind"], "inSource", "{r}");
        assert!(s["justification"].as_str().unwrap().len() >= 10, "{r}");
    }
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_chart_inside_an_audited_directory_is_named_not_parsed() {
    let dir = std::env::temp_dir().join(format!("palisade-chart-{}", std::process::id()));
    let chart = dir.join("mychart");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: mychart\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/pod.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {{ .Release.Name }}\n",
    )
    .unwrap();
    let out = run(
        Command::new(env!("CARGO_BIN_EXE_palisade")).args(["audit", dir.to_str().unwrap()]),
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("Helm chart"), "{text}");
    assert!(
        text.contains(&format!(
            "helm template {} | palisade audit -",
            chart.display()
        )),
        "{text}"
    );
    assert!(!text.contains("error"), "{text}");
}

#[cfg(feature = "e2e")]
mod e2e {
    use super::*;
    use common::{audit_offset, client, forbidden_requests, operator_kubeconfig};

    /// Server-side dry run: the API server validates every object (schemas, RBAC escalation
    /// checks, admission) without persisting anything.
    fn dry_run(what: &str, yaml: &str) {
        let out = run(
            Command::new(kubectl()).args([
                "apply",
                "--server-side",
                "--dry-run=server",
                // Nothing is persisted: taking over fields another test applied is harmless
                // and keeps this test independent of what ran before it.
                "--force-conflicts",
                "--field-manager=palisade-deploy-test",
                "-f",
                "-",
            ]),
            Some(yaml),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{what} rejected by the API server: {}{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let accepted = text
            .lines()
            .filter(|l| l.contains("(server dry run)"))
            .count();
        assert_eq!(
            accepted,
            documents(yaml).len(),
            "{what}: every object must be accepted: {text}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kustomize_and_helm_output_pass_a_server_side_dry_run() {
        // Objects in palisade-system need the namespace to exist (a dry run does not create it).
        let client = client().await;
        let ns = std::fs::read_to_string(format!("{ROOT}/deploy/base/namespace.yaml")).unwrap();
        common::apply_documents(&client, &ns).await;
        dry_run("kubectl kustomize deploy/base", &kustomize_output());
        dry_run("helm template deploy/helm/palisade", &helm_output(&[]));
    }

    /// The 403 check the operator tests rely on sees a denied request of the deployed account.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forbidden_requests_of_the_deployed_account_are_found_in_the_audit_log() {
        use k8s_openapi::api::core::v1::Secret;
        let path = operator_kubeconfig();
        let from = audit_offset();
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&path).unwrap(),
            &Default::default(),
        )
        .await
        .unwrap();
        let sa = kube::Client::try_from(config).unwrap();
        let secrets: kube::Api<Secret> = kube::Api::namespaced(sa.clone(), "kube-system");
        let err = secrets.list(&Default::default()).await.unwrap_err();
        assert!(
            matches!(&err, kube::Error::Api(e) if e.code == 403),
            "Palisade must not read secrets: {err}"
        );
        let denied = forbidden_requests(from);
        assert!(
            denied
                .iter()
                .any(|d| d == "list secrets in namespace kube-system"),
            "{denied:?}"
        );
        // What it is granted works under the same identity.
        let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::all(sa);
        pods.list(&Default::default())
            .await
            .expect("list pods as palisade");
    }
}

#[test]
fn helm_audit_webhook_values_map_to_real_flags_and_mounts() {
    let help = checked(
        Command::new(env!("CARGO_BIN_EXE_palisade")).args(["run", "--help"]),
        None,
    );
    let docs = documents(&helm_output(&[
        "auditWebhook.enabled=true",
        "auditWebhook.port=9443",
        "auditWebhook.tlsSecretName=tls-x",
        "auditWebhook.clientCASecretName=ca-x",
    ]));
    let spec = &find(&docs, "Deployment", "palisade")["spec"]["template"]["spec"];
    let c = &spec["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for want in [
        "--audit-webhook-addr=0.0.0.0:9443",
        "--audit-webhook-cert=/etc/palisade/audit-webhook/tls.crt",
        "--audit-webhook-key=/etc/palisade/audit-webhook/tls.key",
        "--audit-webhook-client-ca=/etc/palisade/audit-webhook-client-ca/ca.crt",
    ] {
        assert!(args.contains(&want), "{want} missing from {args:?}");
        let flag = want.split('=').next().unwrap();
        assert!(help.contains(flag), "`palisade run` has no {flag}");
    }
    let mounts = c["volumeMounts"].to_string();
    assert!(
        mounts.contains("/etc/palisade/audit-webhook-client-ca"),
        "{mounts}"
    );
    let volumes = spec["volumes"].to_string();
    assert!(
        volumes.contains("\"tls-x\"") && volumes.contains("\"ca-x\""),
        "{volumes}"
    );
    let svc = find(&docs, "Service", "palisade-audit-webhook");
    assert_eq!(svc["spec"]["ports"][0]["port"], 9443);
    let np = find(&docs, "NetworkPolicy", "palisade").to_string();
    assert!(np.contains("\"audit\""), "the audit port is let in: {np}");
    // Off by default: no flag, no Service.
    let defaults = documents(&helm_output(&[]));
    assert!(!defaults
        .iter()
        .any(|d| d["metadata"]["name"] == "palisade-audit-webhook"));
    let args = find(&defaults, "Deployment", "palisade").to_string();
    assert!(!args.contains("--audit-webhook"), "{args}");
}
