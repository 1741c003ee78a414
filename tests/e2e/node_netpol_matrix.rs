//! The engine's truth table against the real data plane: the NetworkPolicies the sample
//! baseline generates, applied on the real node (kube-router enforcing), and every pod probed
//! against every declared container port of every pod. The observed matrix must equal the
//! engine's, cell for cell, and before the policies everything must connect (so a "blocked" cell
//! is the policies' doing, not a broken probe). (`scripts/test`; feature `node`.)
#![cfg(feature = "node")]

use crate::common;

use common::node::{create_pod, exec_probe, probe_pod, wait_ready, ENFORCED};
use common::{apply_value, client, unique, TestNamespace};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::jiff::Timestamp;
use kube::{Api, Client};
use palisade::crd::SecurityBaseline;
use palisade::policy::baseline::CompiledBaseline;
use palisade::policy::desired;
use palisade::policy::netpol::matrix::{declared_columns, truth_table, Column};
use palisade::policy::netpol::universe::UniverseBuilder;
use palisade::policy::netpol::{Cluster, Endpoint, Protocol};
use palisade::policy::object::Object;
use palisade::policy::workload::Workload;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TEST_LABEL: &str = "palisade-test-matrix";

/// frontend and api serve 8080/TCP, the database 5432/TCP and 5353/UDP, all declared.
fn app_pods() -> Vec<Value> {
    let pod = |name: &str, labels: Value, tcp: u16, udp: Option<u16>| {
        let mut args = vec!["serve".to_string(), "--tcp".into(), tcp.to_string()];
        let mut ports = vec![json!({"containerPort": tcp, "protocol": "TCP", "name": "main"})];
        if let Some(u) = udp {
            args.extend(["--udp".into(), u.to_string()]);
            ports.push(json!({"containerPort": u, "protocol": "UDP", "name": "stats"}));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut p = probe_pod(name, labels, &args);
        p["spec"]["containers"][0]["ports"] = json!(ports);
        p["spec"]["containers"][0]["readinessProbe"] =
            json!({"tcpSocket": {"port": tcp}, "periodSeconds": 1});
        p
    };
    vec![
        pod("frontend", json!({"app": "frontend"}), 8080, None),
        pod(
            "api",
            json!({"app": "api", "db-access": "true"}),
            8080,
            None,
        ),
        pod("db", json!({"app": "db"}), 5432, Some(5353)),
    ]
}

/// The sample baseline, selecting this test's namespaces.
fn sample_baseline(id: &str) -> CompiledBaseline {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/baseline.yaml"))
            .unwrap();
    let mut b: SecurityBaseline = serde_yaml_ng::from_str(&text).unwrap();
    b.spec.namespace_selector =
        Some(serde_json::from_value(json!({"matchLabels": {TEST_LABEL: id}})).unwrap());
    CompiledBaseline::compile("shop", &b.spec, Timestamp::now()).unwrap()
}

/// The engine's model of this test's namespaces, read back from the API server.
async fn live_cluster(client: &Client, namespaces: &[&str]) -> Cluster {
    let mut builder = UniverseBuilder::default();
    for ns in namespaces {
        let n = Api::<Namespace>::all(client.clone()).get(ns).await.unwrap();
        builder.add(&Object::Namespace(Arc::new(n)), true);
        for p in Api::<Pod>::namespaced(client.clone(), ns)
            .list(&Default::default())
            .await
            .unwrap()
        {
            builder.add(&Object::Workload(Workload::Pod(Arc::new(p))), true);
        }
        for np in Api::<NetworkPolicy>::namespaced(client.clone(), ns)
            .list(&Default::default())
            .await
            .unwrap()
        {
            builder.add(&Object::NetworkPolicy(Arc::new(np)), true);
        }
    }
    assert!(builder.problems.is_empty(), "{:?}", builder.problems);
    let (cluster, invalid) = builder.build();
    assert!(invalid.is_empty(), "{invalid:?}");
    cluster
}

fn target(cluster: &Cluster, c: &Column) -> String {
    let Endpoint::Pod(i) = c.to else {
        unreachable!("columns are pods")
    };
    let ip = cluster.pods[i].ips[0];
    match c.protocol {
        Protocol::Udp => format!("udp:{ip}:{}", c.port),
        _ => format!("{ip}:{}", c.port),
    }
}

/// Probes every row against every column (one `probe matrix` per source pod, all targets at
/// once); returns the cells in truth-table order.
async fn observe(cluster: &Cluster, rows: &[Endpoint], columns: &[Column]) -> Vec<bool> {
    let targets: Vec<String> = columns.iter().map(|c| target(cluster, c)).collect();
    let mut cells = Vec::new();
    for &row in rows {
        let Endpoint::Pod(i) = row else {
            unreachable!()
        };
        let (ns, name) = (
            cluster.pods[i].namespace.clone(),
            cluster.pods[i].name.clone(),
        );
        let t = targets.clone();
        let probe = tokio::task::spawn_blocking(move || {
            let mut args = vec!["matrix", "--timeout", "1s"];
            args.extend(t.iter().map(String::as_str));
            exec_probe(&ns, &name, &args)
        })
        .await
        .unwrap();
        assert!(probe.ok, "probe matrix did not run: {}", probe.out);
        for t in &targets {
            cells.push(
                probe.out["reached"][t]
                    .as_bool()
                    .expect("every target answered"),
            );
        }
    }
    cells
}

fn differences(
    cluster: &Cluster,
    rows: &[Endpoint],
    columns: &[Column],
    want: &[bool],
    got: &[bool],
) -> Vec<String> {
    let name = |e: Endpoint| match e {
        Endpoint::Pod(i) => cluster.pods[i].id(),
        Endpoint::Ip(ip) => ip.to_string(),
    };
    want.iter()
        .zip(got)
        .enumerate()
        .filter(|(_, (w, g))| w != g)
        .map(|(k, (w, g))| {
            let (r, c) = (k / columns.len(), k % columns.len());
            format!(
                "{} -> {}:{}/{}: engine {w}, data plane {g}",
                name(rows[r]),
                name(columns[c].to),
                columns[c].port,
                columns[c].protocol
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_data_plane_enforces_exactly_the_engines_truth_table_for_the_generated_policies() {
    let _serial = common::serial::module(module_path!());
    let client = client().await;
    let id = unique("m");
    // Two namespaces the baseline covers, one it does not.
    let a = TestNamespace::new(&client, "matrix-a", &[(TEST_LABEL, &id)]).await;
    let b = TestNamespace::new(&client, "matrix-b", &[(TEST_LABEL, &id)]).await;
    let c = TestNamespace::new(&client, "matrix-c", &[]).await;
    let names = [a.name.as_str(), b.name.as_str(), c.name.as_str()];
    for ns in names {
        for pod in app_pods() {
            create_pod(&client, ns, &pod).await;
        }
    }
    for ns in names {
        for pod in ["frontend", "api", "db"] {
            wait_ready(&client, ns, pod).await;
        }
    }

    let before = live_cluster(&client, &names).await;
    let rows: Vec<Endpoint> = (0..before.pods.len()).map(Endpoint::Pod).collect();
    let columns = declared_columns(&before);
    assert_eq!((rows.len(), columns.len()), (9, 12));
    let observed = observe(&before, &rows, &columns).await;
    assert!(
        observed.iter().all(|c| *c),
        "without policies every probe connects: {:?}",
        differences(
            &before,
            &rows,
            &columns,
            &vec![true; observed.len()],
            &observed
        )
    );

    let baseline = sample_baseline(&id);
    let ns_api = Api::<Namespace>::all(client.clone());
    let mut applied = 0;
    for ns in names {
        let labels: BTreeMap<String, String> = ns_api
            .get(ns)
            .await
            .unwrap()
            .metadata
            .labels
            .unwrap_or_default();
        if !baseline.covers_namespace(ns, &labels) {
            continue;
        }
        for np in desired::namespace_objects(
            ns,
            &desired::NamespaceContext {
                labels: Some(&labels),
                ..Default::default()
            },
            &baseline,
            None,
        )
        .network_policies
        {
            let mut v = serde_json::to_value(&np).unwrap();
            v["apiVersion"] = json!("networking.k8s.io/v1");
            v["kind"] = json!("NetworkPolicy");
            apply_value(&client, &v).await;
            applied += 1;
        }
    }
    assert!(
        applied >= 8,
        "the sample generates its set in both covered namespaces"
    );

    let after = live_cluster(&client, &names).await;
    let want: Vec<bool> = truth_table(&after, &rows, &columns)
        .into_iter()
        .map(|(e, i)| e && i)
        .collect();
    let denied = want.iter().filter(|c| !**c).count();
    assert!(
        denied > 0 && denied < want.len(),
        "a table with both outcomes"
    );
    // kube-router applies policies asynchronously: wait for the data plane to match, then
    // probe once more to show it stays matched.
    let deadline = Instant::now() + ENFORCED + Duration::from_secs(30);
    let mut diff;
    loop {
        let got = observe(&after, &rows, &columns).await;
        diff = differences(&after, &rows, &columns, &want, &got);
        if diff.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        diff.is_empty(),
        "observed matrix differs from the engine's:\n{}",
        diff.join("\n")
    );
    let again = observe(&after, &rows, &columns).await;
    let diff = differences(&after, &rows, &columns, &want, &again);
    assert!(
        diff.is_empty(),
        "the data plane drifted from the engine's table:\n{}",
        diff.join("\n")
    );
    eprintln!(
        "real-node matrix: {} cells ({denied} denied) equal to the engine's truth table",
        want.len()
    );

    // DNS still resolves under the generated default deny (allow-dns).
    let probe = tokio::task::spawn_blocking({
        let ns = a.name.clone();
        move || {
            exec_probe(
                &ns,
                "frontend",
                &["resolve", "kubernetes.default.svc.cluster.local"],
            )
        }
    })
    .await
    .unwrap();
    assert!(probe.ok, "DNS under default deny: {}", probe.out);
}
