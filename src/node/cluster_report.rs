//! Check reports as OpenReports `ClusterReport`s: one per node (`palisade node --publish`, from
//! the node agent) and one per report of the API server's view (the operator). No timestamps:
//! an unchanged node costs no write.

use super::{NodeReport, Status};
use crate::policy::desired::{
    gitops_annotations, FIELD_MANAGER, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// What a report is about (with Palisade's managed-by label): `control-plane` (the operator's
/// API view) or `node` (a node agent's own checks).
pub const REPORT_LABEL: &str = "palisade.dev/report";
pub const CONTROL_PLANE: &str = "control-plane";
pub const NODE: &str = "node";

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

/// `palisade-<what>-<node>` as an object name: lowercase, other characters as `-`.
pub fn report_name(what: &str, node: &str) -> String {
    let node = node.strip_suffix(" (probed)").unwrap_or(node);
    let cleaned: String = node
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '.' | '-') => c,
            _ => '-',
        })
        .collect();
    let mut name = format!("palisade-{what}-{cleaned}");
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
pub fn build(report: &NodeReport, what: &str) -> Value {
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
    labels.insert(REPORT_LABEL.to_string(), what.to_string());
    let mut doc = json!({
        "apiVersion": "openreports.io/v1alpha1",
        "kind": "ClusterReport",
        "metadata": {
            "name": report_name(what, &report.node),
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

/// The owner reference to Node `node` (no `blockOwnerDeletion`: a report never holds up a
/// node's deletion, and setting it would need update rights on the Node).
pub async fn node_owner(client: &Client, node: &str) -> Result<Value, kube::Error> {
    let api: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let n = api.get_metadata(node).await?;
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "name": node,
        "uid": n.metadata.uid.unwrap_or_default(),
    }))
}

/// Server-side applies one report (manager `palisade`, forced: the report is Palisade's alone).
pub async fn apply(client: &Client, body: &Value) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &cluster_report_resource());
    let name = body["metadata"]["name"].as_str().unwrap_or_default();
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map(|_| ())
}
