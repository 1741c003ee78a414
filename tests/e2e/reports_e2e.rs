//! `palisade run --reports` against the real control plane with the OpenReports CRD (taken from
//! the github.com/openreports/reports-api module): one Report per covered namespace, updated when
//! a violation is fixed, no writes in steady state, bounded in size, removed when the namespace
//! leaves coverage or the flag is turned off; and a clear failure when the CRD is missing.

use crate::common;

use common::{install_crd, unique, wait_for, Operator, TestNamespace};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use palisade::crd::SecurityBaseline;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::sync::RwLock;

const DEADLINE: Duration = Duration::from_secs(60);
const CRD_NAME: &str = "reports.openreports.io";
const MODULE: &str = "github.com/openreports/reports-api@v0.2.1";
const ID_LABEL: &str = "palisade-test-id";
const NS_LABEL: &str = "palisade-test";

/// Tests that need the CRD share it; the test that removes it runs alone.
static CRD: RwLock<()> = RwLock::const_new(());

fn reports_api() -> ApiResource {
    palisade::controller::reports::api_resource()
}

async fn install_openreports_crd(client: &Client) {
    install_module_crd(
        client,
        "config/crd/openreports.io_reports.yaml",
        &reports_api(),
    )
    .await;
}

/// A CRD of the OpenReports module, established and served (listing works).
async fn install_module_crd(client: &Client, file: &str, served: &ApiResource) {
    common::install_module_crds(client, MODULE, file).await;
    let api = Api::<DynamicObject>::all_with(client.clone(), served);
    wait_for("the OpenReports kind served", DEADLINE, || async {
        api.list(&Default::default()).await.ok().map(|_| ())
    })
    .await;
}

async fn apply_baseline(client: &Client, name: &str, id: &str, spec: Value) -> SecurityBaseline {
    let body = json!({
        "apiVersion": "palisade.dev/v1alpha1", "kind": "SecurityBaseline",
        "metadata": {"name": name, "labels": {ID_LABEL: id}},
        "spec": spec,
    });
    Api::<SecurityBaseline>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply("palisade-tests").force(),
            &Patch::Apply(&body),
        )
        .await
        .unwrap()
}

/// A Deployment with `hostNetwork` as given (plus whatever else the restricted level reports).
async fn deployment(client: &Client, ns: &str, name: &str, host_network: bool) {
    let body = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"hostNetwork": host_network,
                    "containers": [{"name": "app", "image": "registry.invalid/app:1"}]}}},
    });
    Api::<Deployment>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::apply("palisade-tests").force(),
            &Patch::Apply(&body),
        )
        .await
        .unwrap();
}

async fn report(client: &Client, ns: &str, name: &str) -> Option<DynamicObject> {
    Api::<DynamicObject>::namespaced_with(client.clone(), ns, &reports_api())
        .get_opt(name)
        .await
        .ok()
        .flatten()
}

fn data(r: &DynamicObject) -> &Value {
    &r.data
}

fn has_result(r: &DynamicObject, rule: &str, name: &str) -> bool {
    data(r)["results"].as_array().is_some_and(|rs| {
        rs.iter()
            .any(|x| x["rule"] == rule && x["resources"][0]["name"] == name)
    })
}

async fn reconciles_done(op: &Operator, baseline: &str) -> f64 {
    let label = format!("baseline=\"{baseline}\"");
    op.metric("palisade_reconcile_duration_seconds_count", &[&label])
        .await
        .unwrap_or(0.0)
}

async fn report_writes(op: &Operator) -> f64 {
    op.metric("palisade_api_writes_total", &["kind=\"Report\""])
        .await
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_follow_findings_and_coverage() {
    let _serial = common::serial::module(module_path!());
    let _shared = CRD.read().await;
    let client = common::client().await;
    install_crd(&client).await;
    install_openreports_crd(&client).await;
    let id = unique("reports");
    let ns1 = TestNamespace::new(&client, "rep-a", &[(NS_LABEL, id.as_str())]).await;
    let ns2 = TestNamespace::new(&client, "rep-b", &[(NS_LABEL, id.as_str())]).await;
    deployment(&client, &ns1.name, "web", true).await;
    let baseline = apply_baseline(
        &client,
        &id,
        &id,
        json!({"namespaceSelector": {"matchLabels": {NS_LABEL: id}}}),
    )
    .await;
    let selector = format!("{ID_LABEL}={id}");
    let mut op = Operator::start(&["--baseline-selector", &selector, "--reports"]);
    let name = format!("palisade-{id}");

    // A report per covered namespace, with the violation, owned by the baseline.
    let r1 = wait_for("report with the hostNetwork finding", DEADLINE, || async {
        let r = report(&client, &ns1.name, &name).await?;
        has_result(&r, "pss.host-namespaces", "web").then_some(r)
    })
    .await;
    let owner = &r1.owner_references()[0];
    assert_eq!(owner.kind, "SecurityBaseline");
    assert_eq!(Some(&owner.uid), baseline.metadata.uid.as_ref());
    assert_eq!(data(&r1)["source"], "palisade");
    let results = data(&r1)["results"].as_array().unwrap();
    assert_eq!(data(&r1)["summary"]["fail"], results.len());
    assert!(results.iter().all(|x| x["result"] == "fail"));
    let hostnet = results
        .iter()
        .find(|x| x["rule"] == "pss.host-namespaces")
        .unwrap();
    assert_eq!(hostnet["severity"], "high");
    assert_eq!(hostnet["policy"], id.as_str());
    assert_eq!(hostnet["resources"][0]["kind"], "Deployment");
    assert_eq!(hostnet["resources"][0]["apiVersion"], "apps/v1");
    // A Service the operator caches anyway is audited for exposure too.
    let lb = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "public", "namespace": ns1.name},
        "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 443}]},
    });
    Api::<Service>::namespaced(client.clone(), &ns1.name)
        .patch(
            "public",
            &PatchParams::apply("palisade-tests").force(),
            &Patch::Apply(&lb),
        )
        .await
        .unwrap();
    let with_lb = wait_for("report with the exposed Service", DEADLINE, || async {
        let r = report(&client, &ns1.name, &name).await?;
        has_result(&r, "network.service-load-balancer", "public").then_some(r)
    })
    .await;
    let exposed = data(&with_lb)["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["rule"] == "network.service-load-balancer")
        .unwrap()
        .clone();
    assert_eq!(exposed["severity"], "high", "{exposed}");
    assert_eq!(exposed["resources"][0]["kind"], "Service");
    assert_eq!(exposed["resources"][0]["apiVersion"], "v1");
    wait_for("report in the second namespace", DEADLINE, || async {
        report(&client, &ns2.name, &name).await
    })
    .await;

    // Fixing the violation updates the report.
    deployment(&client, &ns1.name, "web", false).await;
    let fixed = wait_for("report without the fixed finding", DEADLINE, || async {
        let r = report(&client, &ns1.name, &name).await?;
        (!has_result(&r, "pss.host-namespaces", "web")).then_some(r)
    })
    .await;
    assert!(
        has_result(&fixed, "pss.run-as-non-root", "web"),
        "the other findings stay"
    );

    // Steady state: a reconcile that changes nothing writes no report.
    let rv = fixed.resource_version();
    wait_for("operator settled", DEADLINE, || async {
        let before = reconciles_done(&op, &id).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        (reconciles_done(&op, &id).await == before).then_some(())
    })
    .await;
    let writes = report_writes(&op).await;
    let before = reconciles_done(&op, &id).await;
    Api::<Namespace>::all(client.clone())
        .patch(
            &ns1.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"touched": "1"}}})),
        )
        .await
        .unwrap();
    wait_for("a reconcile after the touch", DEADLINE, || async {
        (reconciles_done(&op, &id).await > before).then_some(())
    })
    .await;
    assert_eq!(
        report_writes(&op).await,
        writes,
        "report writes in steady state"
    );
    let again = report(&client, &ns1.name, &name).await.unwrap();
    assert_eq!(again.resource_version(), rv);

    // A namespace that leaves coverage loses its report.
    Api::<Namespace>::all(client.clone())
        .patch(
            &ns2.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {NS_LABEL: "elsewhere"}}})),
        )
        .await
        .unwrap();
    wait_for(
        "report of the uncovered namespace pruned",
        DEADLINE,
        || async {
            report(&client, &ns2.name, &name)
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
    assert!(report(&client, &ns1.name, &name).await.is_some());

    // Without --reports the operator removes what it published.
    op.stop();
    let mut op = Operator::start(&["--baseline-selector", &selector]);
    wait_for("reports pruned with --reports off", DEADLINE, || async {
        report(&client, &ns1.name, &name)
            .await
            .is_none()
            .then_some(())
    })
    .await;
    // The report is gone on the server before the operator has the answer and counts it.
    wait_for("the delete is counted", DEADLINE, || async {
        (report_writes(&op).await >= 1.0).then_some(())
    })
    .await;
    let _ = Api::<SecurityBaseline>::all(client.clone())
        .delete(&id, &DeleteParams::default())
        .await;
    op.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_bounded_and_say_they_are_truncated() {
    let _serial = common::serial::module(module_path!());
    let _shared = CRD.read().await;
    let client = common::client().await;
    install_crd(&client).await;
    install_openreports_crd(&client).await;
    let id = unique("bounded");
    let ns = TestNamespace::new(&client, "rep-many", &[(NS_LABEL, id.as_str())]).await;
    for i in 0..6 {
        deployment(&client, &ns.name, &format!("app-{i}"), i % 2 == 0).await;
    }
    apply_baseline(
        &client,
        &id,
        &id,
        json!({"namespaceSelector": {"matchLabels": {NS_LABEL: id}}}),
    )
    .await;
    let selector = format!("{ID_LABEL}={id}");
    let mut op = Operator::start(&[
        "--baseline-selector",
        &selector,
        "--reports",
        "--reports-max-results",
        "5",
    ]);
    let name = format!("palisade-{id}");
    let r = wait_for("a report of all six deployments", DEADLINE, || async {
        let r = report(&client, &ns.name, &name).await?;
        // Every deployment breaks several restricted rules: far more than 5 findings.
        (data(&r)["summary"]["fail"].as_u64()? > 6 * 3).then_some(r)
    })
    .await;
    let results = data(&r)["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    assert!(
        results.iter().all(|x| x["severity"] == "high"),
        "the most severe first: {results:#?}"
    );
    assert_eq!(r.annotations()["palisade.dev/truncated"], "true");
    assert_eq!(
        r.annotations()["palisade.dev/total-results"],
        data(&r)["summary"]["fail"].to_string()
    );
    assert_eq!(data(&r)["configuration"]["limits"]["maxResults"], 5);
    let _ = Api::<SecurityBaseline>::all(client.clone())
        .delete(&id, &DeleteParams::default())
        .await;
    op.stop();
}

/// With `--reports` and no OpenReports CRD the operator stops at once with a message naming the
/// CRD (a Deployment crash-loops visibly instead of silently publishing nothing); without the
/// flag it runs normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_crd_reports_fail_clearly() {
    let _serial = common::serial::module(module_path!());
    let _alone = CRD.write().await;
    let client = common::client().await;
    install_crd(&client).await;
    common::remove_crds(&client, &[CRD_NAME]).await;
    wait_for("OpenReports API unserved", DEADLINE, || async {
        let unserved = Api::<DynamicObject>::all_with(client.clone(), &reports_api())
            .list(&Default::default())
            .await
            .is_err();
        unserved.then_some(())
    })
    .await;

    let selector = format!("{ID_LABEL}={}", unique("nocrd"));
    let mut op = Operator::start(&["--baseline-selector", &selector, "--reports"]);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = op.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the operator kept running without the CRD"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success());
    let log = std::fs::read_to_string(op.log_path()).unwrap();
    assert!(
        log.contains("--reports needs the OpenReports CRD (reports.openreports.io"),
        "{log}"
    );

    let mut plain = Operator::start(&["--baseline-selector", &selector]);
    plain.wait_ready().await;
    assert!(plain.child.try_wait().unwrap().is_none());
    plain.stop();
    op.stop();
}

/// The leader checks the control plane from the API server's view and publishes one
/// ClusterReport per report (here: the probes, as this plane runs no static pods), with the
/// outcome counts as metrics; a stale report of ours is pruned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_is_published_as_cluster_reports_and_metrics() {
    let _serial = common::serial::module(module_path!());
    let _shared = CRD.read().await;
    let client = common::client().await;
    install_crd(&client).await;
    install_openreports_crd(&client).await;
    let cluster_reports = palisade::node::cluster_report::cluster_report_resource();
    install_module_crd(
        &client,
        "config/crd/openreports.io_clusterreports.yaml",
        &cluster_reports,
    )
    .await;
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &cluster_reports);
    // A report of ours for a node that no longer has one: pruned.
    common::apply_value(
        &client,
        &json!({
            "apiVersion": "openreports.io/v1alpha1", "kind": "ClusterReport",
            "metadata": {"name": "palisade-control-plane-gone-node",
                         "labels": {"app.kubernetes.io/managed-by": "palisade",
                                    "palisade.dev/report": "control-plane"}},
        }),
    )
    .await;
    let selector = format!("{ID_LABEL}={}", unique("cp"));
    let mut op = Operator::start(&[
        "--baseline-selector",
        &selector,
        "--reports",
        "--control-plane-interval",
        "10",
    ]);
    op.wait_ready().await;
    let probes = wait_for("the probes' ClusterReport", DEADLINE, || async {
        api.get_opt("palisade-control-plane-api-server")
            .await
            .ok()
            .flatten()
    })
    .await;
    let results = probes.data["results"].as_array().unwrap().clone();
    let anonymous = results.iter().find(|r| r["rule"] == "cis.1.2.1").unwrap();
    // The default profile answers anonymous requests; kubelets cannot read arbitrary Secrets.
    assert_eq!(anonymous["result"], "fail", "{anonymous}");
    assert_eq!(anonymous["properties"]["actual"], "200");
    let node = results.iter().find(|r| r["rule"] == "cis.1.2.7").unwrap();
    assert_eq!(node["result"], "pass", "{node}");
    assert_eq!(probes.data["summary"]["fail"], 1);
    let failing = op
        .metric(
            "palisade_control_plane_checks",
            &["rule=\"cis.1.2.1\"", "status=\"fail\""],
        )
        .await;
    assert_eq!(failing, Some(1.0));
    wait_for("the stale report pruned", DEADLINE, || async {
        api.get_opt("palisade-control-plane-gone-node")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    // Steady state: the next rounds write nothing.
    let rv = probes.metadata.resource_version.clone();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let again = api.get("palisade-control-plane-api-server").await.unwrap();
    assert_eq!(
        again.metadata.resource_version, rv,
        "rewritten without a change"
    );
    op.assert_never_forbidden();
}
