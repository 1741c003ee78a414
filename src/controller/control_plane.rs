//! The control plane, checked by the operator: `palisade control-plane`'s view
//! ([`crate::node::api_view`]: mirror pods' flags, the anonymous and Node-authorizer probes) run
//! by the leader every interval. Results become metrics (how many reports have each outcome, by
//! rule and severity: bounded by the check table, no node names) and, with `--reports`, one
//! OpenReports `ClusterReport` per report (`palisade-control-plane-<node>`, and `...-api-server`
//! for the probes), written only when its content changed and deleted when its node's report
//! goes away.

use crate::metrics::{ControlPlaneLabels, Metrics};
use crate::node::api_view;
use crate::node::checks::CHECKS;
use crate::node::cluster_report::{self, cluster_report_resource, CONTROL_PLANE, REPORT_LABEL};
use crate::node::{NodeReport, Status};
use crate::policy::desired::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use kube::api::{DeleteParams, DynamicObject, ListParams};
use kube::{Api, Client, ResourceExt};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Sets the outcome counts (stale rule/outcome pairs are cleared, not left at old values).
pub fn record(metrics: &Metrics, reports: &[NodeReport]) {
    let mut counts: BTreeMap<ControlPlaneLabels, i64> = BTreeMap::new();
    for r in reports.iter().flat_map(|r| &r.results) {
        let key = ControlPlaneLabels {
            rule: r.rule.to_string(),
            severity: r.severity.as_str().to_string(),
            status: r.outcome.status.as_str().to_string(),
        };
        *counts.entry(key).or_default() += 1;
    }
    metrics.control_plane.clear();
    for (labels, n) in counts {
        metrics.control_plane.get_or_create(&labels).set(n);
    }
}

/// Checks every `interval` while this replica leads.
pub async fn run(client: Client, metrics: Arc<Metrics>, interval: Duration, publish: bool) {
    let config = match kube::Config::infer().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "control-plane checks: no client configuration; not run");
            return;
        }
    };
    let mut written: BTreeMap<String, Value> = BTreeMap::new();
    loop {
        match api_view::inspect(&client, &config).await {
            Ok(reports) => {
                record(&metrics, &reports);
                if publish {
                    if let Err(e) = publish_reports(&client, &reports, &mut written).await {
                        tracing::warn!(error = %e, "control-plane reports not written");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "control-plane checks failed"),
        }
        // The node agents' own reports (deploy/node --publish), where any are published.
        match node_reports(&client).await {
            Ok(reports) => record_node_reports(&metrics, &reports),
            Err(e) => tracing::debug!(error = %e, "no node reports to count"),
        }
        tokio::time::sleep(interval).await;
    }
}

/// The ClusterReports node agents published (`palisade.dev/report=node`).
async fn node_reports(client: &Client) -> Result<Vec<DynamicObject>, kube::Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &cluster_report_resource());
    let ours = format!(
        "{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{REPORT_LABEL}={}",
        cluster_report::NODE
    );
    Ok(api.list(&ListParams::default().labels(&ours)).await?.items)
}

/// How many nodes have each outcome per check, from the node agents' reports. Only results
/// with a known rule id count (the label set stays the check table's), whoever wrote them.
pub fn record_node_reports(metrics: &Metrics, reports: &[DynamicObject]) {
    let mut counts: BTreeMap<ControlPlaneLabels, i64> = BTreeMap::new();
    for report in reports {
        let results = report.data["results"].as_array().into_iter().flatten();
        for r in results {
            let Some(check) = CHECKS.iter().find(|c| r["rule"] == c.id) else {
                continue;
            };
            let status = match r["result"].as_str() {
                Some("pass") => Status::Pass,
                Some("fail") => Status::Fail,
                Some("skip") => Status::NotAssessable,
                _ => continue,
            };
            let key = ControlPlaneLabels {
                rule: check.id.to_string(),
                severity: check.severity.as_str().to_string(),
                status: status.as_str().to_string(),
            };
            *counts.entry(key).or_default() += 1;
        }
    }
    metrics.node_checks.clear();
    for (labels, n) in counts {
        metrics.node_checks.get_or_create(&labels).set(n);
    }
}

async fn publish_reports(
    client: &Client,
    reports: &[NodeReport],
    written: &mut BTreeMap<String, Value>,
) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &cluster_report_resource());
    let wanted: BTreeMap<String, Value> = reports
        .iter()
        .map(|r| {
            let name = cluster_report::report_name(CONTROL_PLANE, &r.node);
            (name, cluster_report::build(r, CONTROL_PLANE))
        })
        .collect();
    for (name, body) in &wanted {
        if written.get(name) == Some(body) {
            continue;
        }
        cluster_report::apply(client, body).await?;
        written.insert(name.clone(), body.clone());
    }
    let ours = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{REPORT_LABEL}={CONTROL_PLANE}");
    for old in api.list(&ListParams::default().labels(&ours)).await?.items {
        let name = old.name_any();
        if !wanted.contains_key(&name) {
            api.delete(&name, &DeleteParams::default()).await?;
            written.remove(&name);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::api_view::probe_report;
    use crate::node::Outcome;

    #[test]
    fn reports_are_named_after_nodes_and_hold_every_outcome() {
        use cluster_report::{build, report_name};
        assert_eq!(
            report_name(CONTROL_PLANE, "api-server (probed)"),
            "palisade-control-plane-api-server"
        );
        assert_eq!(
            report_name(cluster_report::NODE, "Node_1.example"),
            "palisade-node-node-1.example"
        );
        let probes = probe_report(
            Outcome::fail(Some("200".into()), Some("GET /version".into()), "on".into()),
            Outcome::not_assessable("the SubjectAccessReview failed: 403"),
        );
        let doc = build(&probes, CONTROL_PLANE);
        assert_eq!(doc["summary"]["fail"], 1);
        assert_eq!(doc["summary"]["skip"], 1);
        assert_eq!(doc["results"][0]["rule"], "cis.1.2.1");
        assert_eq!(doc["results"][0]["properties"]["actual"], "200");
        assert_eq!(doc["results"][1]["result"], "skip");
        assert!(doc.get("scope").is_none(), "the probes are about no node");
        let metrics = Metrics::default();
        record(&metrics, &[probes]);
        let fail = ControlPlaneLabels {
            rule: "cis.1.2.1".into(),
            severity: "high".into(),
            status: "fail".into(),
        };
        assert_eq!(metrics.control_plane.get_or_create(&fail).get(), 1);
        // A node agent's report counts per rule; unknown rules (a forged label set) do not.
        let report: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "openreports.io/v1alpha1", "kind": "ClusterReport",
            "metadata": {"name": "palisade-node-a"},
            "results": [{"rule": "cis.4.2.1", "result": "pass"}, {"rule": "made.up", "result": "fail"}],
        }))
        .unwrap();
        record_node_reports(&metrics, &[report.clone(), report]);
        let pass = ControlPlaneLabels {
            rule: "cis.4.2.1".into(),
            severity: "critical".into(),
            status: "pass".into(),
        };
        assert_eq!(metrics.node_checks.get_or_create(&pass).get(), 2);
        let text = metrics.encode();
        assert!(!text.contains("made.up"), "{text}");
    }
}
