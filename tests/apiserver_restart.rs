//! The operator survives a kube-apiserver restart and converges afterwards without being restarted.
//! Its own test binary: restarting the API server would disturb tests running beside it.
#![cfg(feature = "e2e")]

mod common;

use common::*;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::Api;
use palisade::crd::SecurityBaseline;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_recovers_after_apiserver_restart() {
    let client = client().await;
    install_crd(&client).await;
    let id = unique("restart");
    let baselines: Api<SecurityBaseline> = Api::all(client.clone());
    apply_yaml(
        &baselines,
        "palisade-tests",
        &format!(
            "apiVersion: palisade.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: {id}, labels: {{palisade-test-id: {id}}}}}\nspec:\n  namespaceSelector: {{matchLabels: {{palisade-test: {id}}}}}\n  enforcement: Enforce\n"
        ),
    )
    .await;
    let mut op = Operator::start(&["--baseline-selector", &format!("palisade-test-id={id}")]);
    op.wait_ready().await;
    let before = TestNamespace::new(&client, "before", &[("palisade-test", &id)]).await;
    let policies = |ns: &str| Api::<NetworkPolicy>::namespaced(client.clone(), ns);
    let deny_exists = |api: Api<NetworkPolicy>| async move {
        api.get_opt("palisade-default-deny").await.ok().flatten()
    };
    wait_for(
        "default deny before the restart",
        Duration::from_secs(60),
        || deny_exists(policies(&before.name)),
    )
    .await;

    let state = std::env::var("PALISADE_CP_STATE").expect("scripts/test exports PALISADE_CP_STATE");
    let status = std::process::Command::new(format!("{ROOT}/scripts/control-plane"))
        .arg("restart-apiserver")
        .env("PALISADE_CP_STATE", &state)
        .status()
        .expect("run scripts/control-plane restart-apiserver");
    assert!(status.success(), "restart-apiserver failed");
    let restarted = Instant::now();

    // A change made after the restart is converged by the same operator process.
    let client = common::client().await;
    let after = TestNamespace::new(&client, "after", &[("palisade-test", &id)]).await;
    let api = Api::<NetworkPolicy>::namespaced(client.clone(), &after.name);
    wait_for(
        "default deny after the restart",
        Duration::from_secs(90),
        || deny_exists(api.clone()),
    )
    .await;
    eprintln!(
        "apiserver-restart-to-converged: {} ms",
        restarted.elapsed().as_millis()
    );
    assert!(
        op.child.try_wait().unwrap().is_none(),
        "the operator must not have exited"
    );
    let restarts = op
        .metric("palisade_watch_restarts_total", &[])
        .await
        .unwrap_or(0.0);
    eprintln!("watch restarts seen by the operator: {restarts}");
    op.stop();
    let _ = baselines.delete(&id, &Default::default()).await;
}
