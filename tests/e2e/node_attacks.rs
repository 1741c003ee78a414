//! The attacks Palisade exists to stop, on the real node, with the sample baseline
//! (config/baseline.yaml) in Enforce mode and the operator running as its shipped
//! ServiceAccount. Each test shows the attack working before the baseline applies and failing
//! once the operator has converged. (`scripts/test`; feature `node`.)
#![cfg(feature = "node")]

use crate::common;

use common::node::{create_pod, exec_probe, probe_container, wait_ready, Probe, ENFORCED};
use common::{apply_value, client, install_crd, unique, wait_for, Operator, TestNamespace};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::PostParams;
use kube::{Api, Client};
use palisade::crd::SecurityBaseline;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const TEST_LABEL: &str = "palisade-test-attack";
const ID_LABEL: &str = "palisade-test-id";
const CONVERGED: Duration = Duration::from_secs(90);

/// One namespace the sample baseline will cover, its `api` ServiceAccount, and the operator.
struct Scene {
    client: Client,
    ns: TestNamespace,
    id: String,
    operator: Option<Operator>,
}

impl Scene {
    async fn new(prefix: &str) -> Scene {
        let client = client().await;
        install_crd(&client).await;
        let id = unique(prefix);
        let ns = TestNamespace::new(&client, prefix, &[(TEST_LABEL, &id)]).await;
        let sa: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": "api"}})).unwrap();
        Api::<ServiceAccount>::namespaced(client.clone(), &ns.name)
            .create(&PostParams::default(), &sa)
            .await
            .unwrap();
        Scene {
            client,
            ns,
            id,
            operator: None,
        }
    }

    fn n(&self) -> &str {
        &self.ns.name
    }

    /// A hardened probe pod; `sa` = Some(account) runs as that account with its token mounted.
    async fn pod(&self, name: &str, labels: Value, sa: Option<&str>, args: &[&str]) {
        let mut container = probe_container("probe", args);
        if let Some(port) = args.iter().position(|a| *a == "--tcp").map(|i| args[i + 1]) {
            let port: u16 = port.parse().unwrap();
            container["ports"] = json!([{"containerPort": port, "protocol": "TCP"}]);
            container["readinessProbe"] = json!({"tcpSocket": {"port": port}, "periodSeconds": 1});
        }
        // Without a token the pod still runs as the dedicated `api` account: the sample
        // baseline forbids the default one for new pods.
        let spec = json!({"terminationGracePeriodSeconds": 1, "containers": [container],
                          "serviceAccountName": sa.unwrap_or("api"),
                          "automountServiceAccountToken": sa.is_some()});
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": name, "labels": labels}, "spec": spec});
        create_pod(&self.client, self.n(), &pod).await;
        wait_ready(&self.client, self.n(), name).await;
    }

    fn probe(&self, pod: &str, args: &[&str]) -> Probe {
        exec_probe(self.n(), pod, args)
    }

    /// Applies the sample baseline (Enforce) to this namespace, starts the operator and waits
    /// until the baseline is Ready for its generation.
    async fn enforce(&mut self) {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/baseline.yaml"))
                .unwrap();
        let mut b: Value = serde_yaml_ng::from_str(&text).unwrap();
        b["metadata"] = json!({"name": self.id, "labels": {ID_LABEL: self.id}});
        b["spec"]["namespaceSelector"] = json!({"matchLabels": {TEST_LABEL: self.id}});
        apply_value(&self.client, &b).await;
        let selector = format!("{ID_LABEL}={}", self.id);
        let op = Operator::start(&["--baseline-selector", &selector]);
        op.wait_ready().await;
        self.operator = Some(op);
        let api: Api<SecurityBaseline> = Api::all(self.client.clone());
        wait_for("sample baseline Ready", CONVERGED, || async {
            let b = api.get(&self.id).await.ok()?;
            let s = b.status?;
            let ready = s
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            (ready && s.observed_generation == b.metadata.generation).then_some(())
        })
        .await;
    }

    /// Waits (kube-router applies policies asynchronously) until `check` holds.
    async fn eventually(&self, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + ENFORCED;
        while !check() {
            assert!(
                Instant::now() < deadline,
                "timed out after {ENFORCED:?}: {what}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Server-side dry run of creating `pod` here: Ok, or the API server's refusal.
    async fn admit(&self, pod: Value) -> Result<(), String> {
        let pod: Pod = serde_json::from_value(pod).unwrap();
        let dry = PostParams {
            dry_run: true,
            ..Default::default()
        };
        match Api::<Pod>::namespaced(self.client.clone(), self.n())
            .create(&dry, &pod)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) => Err(e.message),
            Err(e) => panic!("dry-run create: {e}"),
        }
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        if let Some(mut op) = self.operator.take() {
            if !std::thread::panicking() {
                op.assert_never_forbidden();
            }
        }
    }
}

fn api_call<'a>(method: &'a str, path: &'a str) -> Vec<&'a str> {
    vec!["api", "--method", method, "--timeout", "2s", path]
}

fn status(p: &Probe) -> Option<u64> {
    p.out["status"].as_u64()
}

/// 1. A stolen ServiceAccount token: the pod with no API need loses the API server entirely;
/// the declared account reaches it but can do only what it declared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_token_reaches_only_what_its_account_declared() {
    let _serial = common::serial::module(module_path!());
    let mut s = Scene::new("atk-token").await;
    let n = s.n().to_string();
    s.pod(
        "api",
        json!({"app": "api", "db-access": "true"}),
        Some("api"),
        &["sleep"],
    )
    .await;
    s.pod("web", json!({"app": "web"}), Some("default"), &["sleep"])
        .await;
    let secrets = format!("/api/v1/namespaces/{n}/secrets");
    let configmaps = format!("/api/v1/namespaces/{n}/configmaps");

    // Before: the web pod, which needs no API, talks to the API server with its token.
    let before = s.probe("web", &api_call("GET", "/version"));
    assert_eq!(
        status(&before),
        Some(200),
        "before the baseline: {}",
        before.out
    );

    s.enforce().await;
    // After: the web pod cannot even connect (default-deny egress, no API allow for it) ...
    s.eventually("web loses the API server", || {
        let p = s.probe("web", &api_call("GET", "/version"));
        status(&p).is_none() && p.out["error"].is_string()
    })
    .await;
    // ... while the declared account keeps the API server and exactly its declared rights.
    s.eventually("api reaches the API server", || {
        status(&s.probe("api", &api_call("GET", &configmaps))) == Some(200)
    })
    .await;
    let read = s.probe("api", &api_call("GET", &secrets));
    assert_eq!(status(&read), Some(403), "reading Secrets: {}", read.out);
    let create = s.probe(
        "api",
        &api_call("POST", &format!("/api/v1/namespaces/{n}/pods")),
    );
    assert_eq!(status(&create), Some(403), "creating pods: {}", create.out);
}

/// 2. A compromised frontend tries the database: blocked; the declared client connects; DNS
/// still resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compromised_frontend_cannot_reach_the_database() {
    let _serial = common::serial::module(module_path!());
    let mut s = Scene::new("atk-db").await;
    s.pod(
        "db",
        json!({"app": "db"}),
        None,
        &["serve", "--tcp", "5432"],
    )
    .await;
    s.pod("frontend", json!({"app": "frontend"}), None, &["sleep"])
        .await;
    s.pod(
        "api",
        json!({"app": "api", "db-access": "true"}),
        None,
        &["sleep"],
    )
    .await;
    let db = common::node::pod_ip(
        &Api::<Pod>::namespaced(s.client.clone(), s.n())
            .get("db")
            .await
            .unwrap(),
    );
    let sql = format!("{db}:5432");
    let connect = |s: &Scene, pod: &str| s.probe(pod, &["connect", "--timeout", "1s", &sql]).ok;
    assert!(
        connect(&s, "frontend"),
        "before the baseline the frontend reaches the database"
    );

    s.enforce().await;
    s.eventually("frontend blocked from the database", || {
        !connect(&s, "frontend")
    })
    .await;
    s.eventually("the declared client connects", || connect(&s, "api"))
        .await;
    assert!(!connect(&s, "frontend"));
    for pod in ["frontend", "api", "db"] {
        let r = s.probe(pod, &["resolve", "kubernetes.default.svc.cluster.local"]);
        assert!(r.ok, "{pod} resolves names under default deny: {}", r.out);
    }
}

fn pod_spec(name: &str, labels: Value, container: Value, extra: Value) -> Value {
    let mut spec = json!({"automountServiceAccountToken": false, "serviceAccountName": "api",
                          "containers": [container]});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec})
}

/// 3. A privileged root pod and a PSS-clean pod with a writable root filesystem are rejected at
/// admission; an admitted pod cannot write its root filesystem and runs with NoNewPrivs and a
/// seccomp filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_and_writable_pods_are_rejected_and_admitted_ones_are_confined() {
    let _serial = common::serial::module(module_path!());
    let mut s = Scene::new("atk-root").await;
    let root = pod_spec(
        "root",
        json!({}),
        json!({"name": "c", "image": common::node::probe_image(),
        "securityContext": {"privileged": true, "runAsUser": 0}}),
        json!({}),
    );
    let mut writable_container = probe_container("c", &["sleep"]);
    writable_container["securityContext"]["readOnlyRootFilesystem"] = json!(false);
    let writable = pod_spec("writable", json!({}), writable_container, json!({}));
    assert_eq!(
        s.admit(root.clone()).await,
        Ok(()),
        "before: a privileged root pod is admitted"
    );
    assert_eq!(s.admit(writable.clone()).await, Ok(()));

    s.enforce().await;
    let refused = wait_for("PodSecurity rejects the privileged pod", CONVERGED, || {
        let (s, root) = (&s, root.clone());
        async move {
            s.admit(root)
                .await
                .err()
                .filter(|m| m.contains("PodSecurity"))
        }
    })
    .await;
    assert!(refused.contains("privileged"), "{refused}");
    let refused = wait_for("the VAP rejects the writable pod", CONVERGED, || {
        let (s, w) = (&s, writable.clone());
        async move {
            s.admit(w)
                .await
                .err()
                .filter(|m| m.contains("ValidatingAdmissionPolicy"))
        }
    })
    .await;
    assert!(refused.contains("readOnlyRootFilesystem"), "{refused}");

    s.pod("app", json!({"app": "app"}), None, &["sleep"]).await;
    let w = s.probe("app", &["write", "/evil"]);
    assert!(!w.ok, "the root filesystem is read-only: {}", w.out);
    let st = s.probe("app", &["status"]);
    assert!(st.ok, "{}", st.out);
    assert_eq!(st.out["NoNewPrivs"], "1", "{}", st.out);
    assert_eq!(st.out["Seccomp"], "2", "seccomp filter mode: {}", st.out);
}

/// 4. An untrusted workload without the sandbox runtimeClass is rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_workload_without_the_sandbox_runtime_is_rejected() {
    let _serial = common::serial::module(module_path!());
    let mut s = Scene::new("atk-sandbox").await;
    let untrusted = |runtime: Option<&str>| {
        let extra = match runtime {
            Some(r) => json!({"runtimeClassName": r}),
            None => json!({}),
        };
        pod_spec(
            "untrusted",
            json!({"trust": "untrusted"}),
            probe_container("c", &["sleep"]),
            extra,
        )
    };
    assert_eq!(
        s.admit(untrusted(None)).await,
        Ok(()),
        "before: admitted without a sandbox"
    );

    s.enforce().await;
    let refused = wait_for("the VAP rejects the unsandboxed pod", CONVERGED, || {
        let s = &s;
        async move {
            s.admit(untrusted(None))
                .await
                .err()
                .filter(|m| m.contains("ValidatingAdmissionPolicy"))
        }
    })
    .await;
    assert!(refused.contains("gvisor"), "{refused}");
    // The same pod asking for the sandbox passes Palisade's policy (the RuntimeClass itself is
    // the cluster's business; this node has none, so only the policy verdict is checked).
    let with_sandbox = s.admit(untrusted(Some("gvisor"))).await;
    assert!(
        with_sandbox.as_ref().is_ok_and(|()| true)
            || with_sandbox
                .as_ref()
                .is_err_and(|m| !m.contains("ValidatingAdmissionPolicy")),
        "{with_sandbox:?}"
    );
}
