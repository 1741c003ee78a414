//! The control plane, checked by the operator: `palisade control-plane`'s view
//! ([`crate::node::api_view`]: mirror pods' flags, the anonymous and Node-authorizer probes) run
//! by the leader every interval. Results become metrics (how many reports have each outcome, by
//! rule and severity: bounded by the check table, no node names) and, with `--reports`, one
//! OpenReports `ClusterReport` per report (`palisade-control-plane-<node>`, and `...-api-server`
//! for the probes), written only when its content changed and deleted when its node's report
//! goes away.

use crate::metrics::{ControlPlaneLabels, Metrics};
use crate::node::api_view;
use crate::node::{NodeReport, Status};
use crate::policy::desired::{
    gitops_annotations, FIELD_MANAGER, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
};
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Labels every control-plane report carries (with Palisade's managed-by label).
pub const REPORT_LABEL: &str = "palisade.dev/report";
pub const REPORT_VALUE: &str = "control-plane";

/// The OpenReports `ClusterReport` kind.
pub fn cluster_report_resource() -> ApiResource {
    ApiResource {
        group: "openreports.io".into(),
        version: "v1alpha1".into(),
        api_version: "openreports.io/v1alpha1".into(),
        kind: "ClusterReport".into(),
        plural: "clusterreports".into(),
    }
}

/// `palisade-control-plane-<node>` as an object name: lowercase, other characters as `-`.
pub fn report_name(node: &str) -> String {
    let node = node.strip_suffix(" (probed)").unwrap_or(node);
    let cleaned: String = node
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '.' | '-') => c,
            _ => '-',
        })
        .collect();
    let mut name = format!("palisade-control-plane-{cleaned}");
    name.truncate(253);
    name.trim_end_matches(['-', '.']).to_string()
}

fn outcome(status: Status) -> &'static str {
    match status {
        Status::Pass => "pass",
        Status::Fail => "fail",
        Status::NotAssessable => "skip",
    }
}

/// The ClusterReport of one node report (or of the probes). No timestamps: an unchanged
/// control plane costs no write.
pub fn build(report: &NodeReport) -> Value {
    let results: Vec<Value> = report
        .results
        .iter()
        .map(|r| {
            let mut properties = serde_json::Map::new();
            properties.insert("component".into(), r.component.to_string().into());
            for (k, v) in [("actual", &r.outcome.actual), ("source", &r.outcome.source)] {
                if let Some(v) = v {
                    properties.insert(k.into(), v.clone().into());
                }
            }
            if !r.outcome.reason.is_empty() {
                properties.insert("reason".into(), r.outcome.reason.clone().into());
            }
            json!({
                "source": "palisade",
                "policy": "cis-kubernetes-benchmark-v1.12",
                "rule": r.rule,
                "category": r.component.to_string(),
                "severity": r.severity.as_str(),
                "result": outcome(r.outcome.status),
                "scored": true,
                "message": r.title,
                "properties": properties,
            })
        })
        .collect();
    let mut labels = BTreeMap::new();
    labels.insert(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string());
    labels.insert(REPORT_LABEL.to_string(), REPORT_VALUE.to_string());
    let mut doc = json!({
        "apiVersion": "openreports.io/v1alpha1",
        "kind": "ClusterReport",
        "metadata": {
            "name": report_name(&report.node),
            "labels": labels,
            "annotations": gitops_annotations(),
        },
        "source": "palisade",
        "summary": {
            "pass": report.count(Status::Pass),
            "fail": report.count(Status::Fail),
            "skip": report.count(Status::NotAssessable),
            "warn": 0,
            "error": 0,
        },
        "results": results,
    });
    if !report.components.is_empty() {
        doc["scope"] = json!({"apiVersion": "v1", "kind": "Node", "name": report.node});
    }
    doc
}

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
        tokio::time::sleep(interval).await;
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
        .map(|r| (report_name(&r.node), build(r)))
        .collect();
    for (name, body) in &wanted {
        if written.get(name) == Some(body) {
            continue;
        }
        api.patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await?;
        written.insert(name.clone(), body.clone());
    }
    let ours = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{REPORT_LABEL}={REPORT_VALUE}");
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
        assert_eq!(
            report_name("api-server (probed)"),
            "palisade-control-plane-api-server"
        );
        assert_eq!(
            report_name("Node_1.example"),
            "palisade-control-plane-node-1.example"
        );
        let probes = probe_report(
            Outcome::fail(Some("200".into()), Some("GET /version".into()), "on".into()),
            Outcome::not_assessable("the SubjectAccessReview failed: 403"),
        );
        let doc = build(&probes);
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
    }
}
