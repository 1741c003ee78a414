//! SecurityBaselines in tests: applied for one test's operator (`--baseline-selector`), read
//! back, and judged converged.

use super::wait_for;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use palisade::crd::{SecurityBaseline, SecurityBaselineStatus};
use serde_json::{json, Value};
use std::time::Duration;

/// Namespaces a test's baseline selects carry `palisade-test=<baseline>`.
pub const TEST_LABEL: &str = "palisade-test";
/// A test's baselines carry `palisade-test-id=<id>`; its operator watches only those.
pub const ID_LABEL: &str = "palisade-test-id";
const DEADLINE: Duration = Duration::from_secs(60);

/// Applies baseline `name` (labelled for the test's operator) selecting namespaces labelled
/// `palisade-test=<selects>`, with `spec` merged in.
pub async fn apply_baseline(
    client: &Client,
    name: &str,
    id: &str,
    selects: &str,
    mut spec: Value,
) -> SecurityBaseline {
    spec["namespaceSelector"] = json!({"matchLabels": {TEST_LABEL: selects}});
    let body = json!({
        "apiVersion": "palisade.dev/v1alpha1",
        "kind": "SecurityBaseline",
        "metadata": {"name": name, "labels": {ID_LABEL: id}},
        "spec": spec,
    });
    Api::all(client.clone())
        .patch(
            name,
            &PatchParams::apply("palisade-tests").force(),
            &Patch::Apply(&body),
        )
        .await
        .unwrap_or_else(|e| panic!("apply baseline {name}: {e}"))
}

pub async fn get_baseline(client: &Client, name: &str) -> Option<SecurityBaseline> {
    Api::<SecurityBaseline>::all(client.clone())
        .get_opt(name)
        .await
        .ok()
        .flatten()
}

/// The status once it describes the current generation and the baseline is Ready.
pub fn converged(b: &SecurityBaseline) -> Option<SecurityBaselineStatus> {
    let s = b.status.clone()?;
    let ready = s
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    (s.observed_generation == b.metadata.generation && ready).then_some(s)
}

pub async fn wait_converged(client: &Client, name: &str) -> SecurityBaselineStatus {
    wait_for(
        &format!("baseline {name} converged (status of current generation, Ready)"),
        DEADLINE,
        || async { converged(&get_baseline(client, name).await?) },
    )
    .await
}

pub fn has_finding(s: &SecurityBaselineStatus, rule: &str, kind: &str, name: &str) -> bool {
    s.top_violations
        .iter()
        .any(|v| v.rule == rule && v.kind == kind && v.name == name)
}

pub async fn delete_baseline(client: &Client, name: &str) {
    let _ = Api::<SecurityBaseline>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
}

/// Deletes the baselines matching `selector` (a failed test's): waits a little for the operator
/// to release them, then removes whatever finalizer is left.
pub async fn delete_selected(client: Client, selector: String) {
    use kube::api::ListParams;
    let api = Api::<SecurityBaseline>::all(client);
    let Ok(list) = api.list(&ListParams::default().labels(&selector)).await else {
        return;
    };
    let names: Vec<String> = list
        .items
        .iter()
        .filter_map(|b| b.metadata.name.clone())
        .collect();
    for name in &names {
        let _ = api.delete(name, &DeleteParams::default()).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for name in &names {
        while std::time::Instant::now() < deadline && matches!(api.get_opt(name).await, Ok(Some(_)))
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let clear = json!({"metadata": {"finalizers": null}});
        let _ = api
            .patch(name, &PatchParams::default(), &Patch::Merge(&clear))
            .await;
    }
}
