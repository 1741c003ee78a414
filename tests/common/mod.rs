//! Shared plumbing for end-to-end tests against the real local control plane
//! (`scripts/test` starts it and exports KUBECONFIG; tests are behind the `e2e` feature).
#![allow(dead_code)]

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A client for the control plane in KUBECONFIG. Fails loudly when there is none: e2e tests
/// never pass by skipping.
pub async fn client() -> Client {
    assert!(
        std::env::var_os("KUBECONFIG").is_some(),
        "KUBECONFIG is not set: run the e2e tests through scripts/test, which starts a control plane"
    );
    Client::try_default()
        .await
        .expect("a client for the control plane in KUBECONFIG")
}

/// Polls `check` until it returns Some, or panics with `what` after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    let mut delay = Duration::from_millis(20);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(250));
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique name with a readable prefix: `prefix-<pid>-<n>`.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id() % 100_000,
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A namespace that is deleted when dropped (deletion is asynchronous; the test does not wait).
pub struct TestNamespace {
    pub name: String,
    client: Client,
}

impl TestNamespace {
    pub async fn new(client: &Client, prefix: &str, labels: &[(&str, &str)]) -> Self {
        let name = unique(prefix);
        let api: Api<Namespace> = Api::all(client.clone());
        let mut ns = Namespace::default();
        ns.metadata.name = Some(name.clone());
        ns.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        api.create(&PostParams::default(), &ns)
            .await
            .expect("create test namespace");
        TestNamespace {
            name,
            client: client.clone(),
        }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let client = self.client.clone();
        let name = self.name.clone();
        // Send the delete before the test's runtime shuts down (a spawned task would be dropped).
        // Needs a multi-threaded test runtime; elsewhere the plane's teardown cleans up.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
                tokio::task::block_in_place(|| {
                    handle.block_on(async move {
                        let api: Api<Namespace> = Api::all(client);
                        let _ = api.delete(&name, &DeleteParams::default()).await;
                    })
                });
            }
        }
    }
}

/// Applies a YAML document with server-side apply as field manager `manager`.
pub async fn apply_yaml<K>(api: &Api<K>, manager: &str, yaml: &str) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let value: serde_json::Value = serde_yaml_ng::from_str(yaml).expect("test YAML parses");
    let name = value["metadata"]["name"]
        .as_str()
        .expect("metadata.name")
        .to_string();
    api.patch(
        &name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&value),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {name}: {e}"))
}

/// Installs (or updates) the SecurityBaseline CRD from crds/ and waits until it is served.
pub async fn install_crd(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let yaml = std::fs::read_to_string(format!("{ROOT}/crds/securitybaseline.yaml")).unwrap();
    apply_yaml(&api, "palisade-tests", &yaml).await;
    wait_for("CRD established", Duration::from_secs(30), || {
        let api = api.clone();
        async move {
            let crd = api.get("securitybaselines.palisade.dev").await.ok()?;
            let ok = crd
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            ok.then_some(())
        }
    })
    .await;
}

/// A `palisade run` process, killed when dropped.
pub struct Operator {
    pub child: Child,
    pub metrics_port: u16,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Operator {
    pub fn start(extra: &[&str]) -> Self {
        let metrics_port = free_port();
        let addr = format!("127.0.0.1:{metrics_port}");
        let log = std::fs::File::create(
            std::env::temp_dir().join(format!("palisade-op-{metrics_port}.log")),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["run", "--metrics-addr", &addr, "--debounce-ms", "50"])
            .args(extra)
            .env(
                "PALISADE_LOG",
                std::env::var("PALISADE_TEST_OPERATOR_LOG")
                    .unwrap_or_else(|_| "info,kube=warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start palisade run");
        Operator {
            child,
            metrics_port,
        }
    }

    pub fn log_path(&self) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("palisade-op-{}.log", self.metrics_port))
    }

    /// GET on the operator's HTTP endpoint; None while it is not listening.
    pub async fn http_get(&self, path: &str) -> Option<(u16, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port))
            .await
            .ok()?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.ok()?;
        let code = buf.split_whitespace().nth(1)?.parse().ok()?;
        let body = buf
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Some((code, body))
    }

    /// Sum of a metric's samples whose label set contains all of `labels` (e.g. `kind="NetworkPolicy"`).
    pub async fn metric(&self, name: &str, labels: &[&str]) -> Option<f64> {
        let (_, body) = self.http_get("/metrics").await?;
        let mut total = None;
        for line in body.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.trim().rsplit_once(' ') else {
                continue;
            };
            let metric = series.split('{').next().unwrap_or_default();
            if metric == name && labels.iter().all(|l| series.contains(l)) {
                if let Ok(v) = value.parse::<f64>() {
                    *total.get_or_insert(0.0) += v;
                }
            }
        }
        total
    }

    pub async fn wait_ready(&self) {
        wait_for("operator /readyz", Duration::from_secs(60), || async {
            matches!(self.http_get("/readyz").await, Some((200, _))).then_some(())
        })
        .await;
    }

    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Show what the operator said: the test failed while it ran.
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- operator log ({}) ---", self.log_path().display());
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The name of an object, for assertions.
pub fn names<K: kube::Resource>(objs: &[K]) -> Vec<String> {
    let mut v: Vec<String> = objs.iter().map(|o| o.name_any()).collect();
    v.sort();
    v
}
