//! Shared plumbing for end-to-end tests against the real local control plane
//! (`scripts/test` starts it and exports KUBECONFIG; tests are behind the `e2e` feature).
#![allow(dead_code)]

pub mod baseline;
pub mod node;
pub mod serial;

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

/// A namespace that is deleted when dropped, also when the test fails (deletion is asynchronous;
/// the test does not wait).
pub struct TestNamespace {
    pub name: String,
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
        TestNamespace { name }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let name = self.name.clone();
        cleanup(move |client| async move {
            let api: Api<Namespace> = Api::all(client);
            let _ = api.delete(&name, &DeleteParams::default()).await;
        });
    }
}

/// Runs a cleanup to completion from a `Drop`, also while a failed test unwinds: on a thread and
/// runtime of its own, with a client of its own (the test's client may live on the runtime that
/// is blocked in this drop). Best effort: the plane's teardown removes whatever is left.
pub fn cleanup<F, Fut>(work: F)
where
    F: FnOnce(Client) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let done = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the cleanup");
        rt.block_on(async move {
            if let Ok(client) = Client::try_default().await {
                let _ = tokio::time::timeout(Duration::from_secs(20), work(client)).await;
            }
        });
    });
    let _ = done.join();
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

/// A `palisade run` process, killed when dropped. It runs as the deployed ServiceAccount
/// (deploy/base RBAC, a TokenRequest token), and when it stops the test fails if the API server
/// denied it anything (audit log): the shipped RBAC must be enough.
pub struct Operator {
    pub child: Child,
    pub metrics_port: u16,
    audit_from: u64,
    checked: bool,
    /// The `--baseline-selector` it was started with: the test's baselines.
    baselines: Option<String>,
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
        let kubeconfig = operator_kubeconfig();
        let audit_from = audit_offset();
        let metrics_port = free_port();
        let addr = format!("127.0.0.1:{metrics_port}");
        let log = std::fs::File::create(
            std::env::temp_dir().join(format!("palisade-op-{metrics_port}.log")),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["run", "--metrics-addr", &addr, "--debounce-ms", "50"])
            .args(extra)
            .env("KUBECONFIG", &kubeconfig)
            .env(
                "PALISADE_LOG",
                std::env::var("PALISADE_TEST_OPERATOR_LOG")
                    .unwrap_or_else(|_| "info,kube=warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start palisade run");
        let baselines = extra
            .iter()
            .enumerate()
            .find_map(|(i, a)| match a.split_once('=') {
                Some(("--baseline-selector", v)) => Some(v.to_string()),
                _ if *a == "--baseline-selector" => extra.get(i + 1).map(|v| v.to_string()),
                _ => None,
            });
        Operator {
            child,
            metrics_port,
            audit_from,
            checked: false,
            baselines,
        }
    }

    /// Panics, naming each denied request, when the API server answered this operator's
    /// ServiceAccount 403 since it started (operators running beside it share the account).
    pub fn assert_never_forbidden(&mut self) {
        self.checked = true;
        let denied = forbidden_requests(self.audit_from);
        assert!(
            denied.is_empty(),
            "the API server denied {OPERATOR_USER} {} request(s); deploy/base/rbac.yaml lacks:\n  {}",
            denied.len(),
            denied.join("\n  ")
        );
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
        while Instant::now() < deadline && !matches!(self.child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.assert_never_forbidden();
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
        if let (true, Some(selector)) = (std::thread::panicking(), self.baselines.clone()) {
            // The test failed before deleting its baselines: delete them while the operator can
            // still release their namespaces, then drop their finalizers so none is left
            // Terminating once it is gone.
            cleanup(move |client| baseline::delete_selected(client, selector));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if !self.checked && !std::thread::panicking() {
            self.assert_never_forbidden();
        }
    }
}

/// The name of an object, for assertions.
pub fn names<K: kube::Resource>(objs: &[K]) -> Vec<String> {
    let mut v: Vec<String> = objs.iter().map(|o| o.name_any()).collect();
    v.sort();
    v
}

// ------------------------------------------------------------- the operator's deployed identity

/// The user Palisade runs as when deployed (deploy/base), as the API server names it.
pub const OPERATOR_USER: &str = "system:serviceaccount:palisade-system:palisade";

/// The deploy/base files holding the objects the operator's identity needs.
const IDENTITY_FILES: &[&str] = &["namespace.yaml", "serviceaccount.yaml", "rbac.yaml"];

/// Applies (server-side) every document of `yaml` with the admin client.
pub async fn apply_documents(client: &Client, yaml: &str) {
    use serde::Deserialize;
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value = serde_json::Value::deserialize(doc).expect("deploy YAML parses");
        if !value.is_null() {
            apply_value(client, &value).await;
        }
    }
}

/// Server-side apply (manager `palisade-tests`, forced) of one object of any kind, given as JSON
/// with apiVersion, kind and metadata (namespace for namespaced kinds).
pub async fn apply_value(client: &Client, value: &serde_json::Value) {
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    let obj: DynamicObject = serde_json::from_value(value.clone()).expect("a Kubernetes object");
    let types = obj.types.clone().expect("apiVersion and kind");
    let gvk = GroupVersionKind::try_from(&types).expect("a valid apiVersion");
    let ar = ApiResource::from_gvk(&gvk);
    let api: Api<DynamicObject> = match obj.metadata.namespace.as_deref() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    api.patch(
        &obj.name_any(),
        &PatchParams::apply("palisade-tests").force(),
        &Patch::Apply(value),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {} {}: {e}", types.kind, obj.name_any()));
}

/// A kubeconfig authenticating as Palisade's ServiceAccount with a TokenRequest token, with the
/// server and CA of the admin kubeconfig in KUBECONFIG. Applies deploy/base's namespace,
/// ServiceAccount and RBAC first, so the operator gets exactly the permissions it ships with.
pub async fn operator_identity_kubeconfig(path: &std::path::Path) {
    let client = client().await;
    for f in IDENTITY_FILES {
        let yaml = std::fs::read_to_string(format!("{ROOT}/deploy/base/{f}"))
            .unwrap_or_else(|e| panic!("read deploy/base/{f}: {e}"));
        apply_documents(&client, &yaml).await;
    }
    service_account_kubeconfig(&client, "palisade-system", "palisade", path).await;
}

/// A kubeconfig authenticating as ServiceAccount `namespace/name` (a TokenRequest token valid
/// for 4 h), with the server and CA of the admin kubeconfig in KUBECONFIG.
pub async fn service_account_kubeconfig(
    client: &Client,
    namespace: &str,
    name: &str,
    path: &std::path::Path,
) {
    bound_service_account_kubeconfig(client, namespace, name, None, path).await
}

/// As [`service_account_kubeconfig`], with the token bound to pod `pod` of the namespace when
/// given (the API server then knows the pod's node: user extra
/// `authentication.kubernetes.io/node-name`, as for the pod's own mounted token).
pub async fn bound_service_account_kubeconfig(
    client: &Client,
    namespace: &str,
    name: &str,
    pod: Option<&str>,
    path: &std::path::Path,
) {
    use k8s_openapi::api::authentication::v1::{
        BoundObjectReference, TokenRequest, TokenRequestSpec,
    };
    use k8s_openapi::api::core::v1::ServiceAccount;
    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(if pod.is_some() { 600 } else { 4 * 3600 }),
            bound_object_ref: pod.map(|p| BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(p.into()),
                uid: None,
            }),
        },
        ..Default::default()
    };
    let token = sa
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{name}: {e}"))
        .status
        .expect("a TokenRequest status")
        .token;

    let admin = kube::config::Kubeconfig::read().expect("read the admin kubeconfig (KUBECONFIG)");
    let context = admin
        .current_context
        .as_deref()
        .and_then(|c| admin.contexts.iter().find(|n| n.name == c))
        .and_then(|n| n.context.clone())
        .expect("the admin kubeconfig has a current context");
    let cluster = admin
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.clone())
        .expect("the current context's cluster");
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "palisade", "cluster": {
            "server": cluster.server,
            "certificate-authority-data": cluster.certificate_authority_data,
            "certificate-authority": cluster.certificate_authority,
        }}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "palisade", "user": "sa"}}],
        "current-context": "sa",
    });
    std::fs::write(path, serde_yaml_ng::to_string(&config).unwrap())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The operator's kubeconfig for this test process (created once; the token lasts 4 h).
pub fn operator_kubeconfig() -> std::path::PathBuf {
    static PATH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let path =
            std::env::temp_dir().join(format!("palisade-sa-{}.kubeconfig", std::process::id()));
        let p = path.clone();
        // Its own thread and runtime: callers may be sync code inside a test's runtime.
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(operator_identity_kubeconfig(&p))
        })
        .join()
        .expect("setting up the operator's ServiceAccount identity");
        path
    })
    .clone()
}

// --------------------------------------------------------------------- the API server audit log

/// The audit log `scripts/control-plane up` writes (requests of [`OPERATOR_USER`] only).
pub fn audit_log() -> std::path::PathBuf {
    let path = std::env::var_os("PALISADE_CP_AUDIT_LOG")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("PALISADE_CP_STATE")
                .map(|s| std::path::PathBuf::from(s).join("audit/audit.log"))
        })
        .expect(
            "neither PALISADE_CP_AUDIT_LOG nor PALISADE_CP_STATE is set: run through scripts/test",
        );
    assert!(
        path.exists(),
        "no API audit log at {}: restart the control plane with scripts/control-plane up, which enables it",
        path.display()
    );
    path
}

/// Current end of the audit log: requests logged later are read from here.
pub fn audit_offset() -> u64 {
    std::fs::metadata(audit_log()).map(|m| m.len()).unwrap_or(0)
}

/// Requests of [`OPERATOR_USER`] the API server answered 403, logged after `offset`, described as
/// `verb resource[/subresource].group [namespace/]name`. Reads the whole file when it was
/// rotated meanwhile (shorter than `offset`).
pub fn forbidden_requests(offset: u64) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(audit_log()).expect("open the audit log");
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len >= offset {
        file.seek(SeekFrom::Start(offset))
            .expect("seek the audit log");
    }
    let mut text = String::new();
    file.read_to_string(&mut text).expect("read the audit log");
    let mut seen = std::collections::BTreeSet::new();
    let mut allowed = std::collections::BTreeSet::new();
    let mut denied = Vec::new();
    for line in text.lines() {
        let Ok(e) = serde_json::from_str::<serde_json::Value>(line) else {
            continue; // a line being written right now
        };
        if e["user"]["username"] != OPERATOR_USER {
            continue;
        }
        let code = e["responseStatus"]["code"].as_u64().unwrap_or(0);
        // 404 passed authorization too (it runs before routing): an optional kind whose CRD
        // is not installed.
        if (200..300).contains(&code) || code == 404 {
            allowed.insert(describe(&e));
        }
        if code != 403 {
            continue;
        }
        if !seen.insert(e["auditID"].as_str().unwrap_or_default().to_string()) {
            continue;
        }
        denied.push(describe(&e));
    }
    // A request allowed later was denied only while a (re)starting API server's authorizer
    // caches were still empty; what the shipped RBAC lacks is never allowed.
    denied.retain(|d| !allowed.contains(d));
    denied
}

fn describe(e: &serde_json::Value) -> String {
    {
        let o = &e["objectRef"];
        let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        let mut resource = s(&o["resource"]);
        if let Some(sub) = o["subresource"].as_str() {
            resource = format!("{resource}/{sub}");
        }
        let group = s(&o["apiGroup"]);
        if !group.is_empty() {
            resource = format!("{resource}.{group}");
        }
        let target = match (o["namespace"].as_str(), o["name"].as_str()) {
            (Some(ns), Some(n)) => format!(" {ns}/{n}"),
            (Some(ns), None) => format!(" in namespace {ns}"),
            (None, Some(n)) => format!(" {n}"),
            (None, None) => String::new(),
        };
        format!("{} {resource}{target}", s(&e["verb"]))
    }
}

/// A one-replica Deployment whose only container is privileged or not: the violating and the
/// fixed workload of the e2e scenarios.
pub fn deployment(ns: &str, name: &str, privileged: bool) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "app",
                    "image": "registry.example/app:1.0",
                    "securityContext": {"privileged": privileged},
                }]},
            },
        },
    })
}

/// The text of file `path` of Go module `module` (`scripts/go-module-file`: the module proxy,
/// cached in Go's module cache).
pub fn go_module_file(module: &str, path: &str) -> String {
    let out = Command::new(format!("{ROOT}/scripts/go-module-file"))
        .args([module, path])
        .output()
        .expect("scripts/go-module-file");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = String::from_utf8(out.stdout).unwrap();
    std::fs::read_to_string(file.trim()).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The names of the CustomResourceDefinitions in a YAML stream.
pub fn crd_names(yaml: &str) -> Vec<String> {
    use serde::Deserialize;
    serde_yaml_ng::Deserializer::from_str(yaml)
        .filter_map(|doc| serde_json::Value::deserialize(doc).ok())
        .filter(|v| v["kind"] == "CustomResourceDefinition")
        .filter_map(|v| v["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

/// Installs the CRDs of a module's file and waits until each is Established; returns their names.
pub async fn install_module_crds(client: &Client, module: &str, path: &str) -> Vec<String> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let yaml = go_module_file(module, path);
    apply_documents(client, &yaml).await;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let names = crd_names(&yaml);
    assert!(!names.is_empty(), "no CRD in {module} {path}");
    for name in &names {
        wait_for(
            &format!("{name} established"),
            Duration::from_secs(60),
            || async {
                let crd = api.get(name).await.ok()?;
                crd.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            },
        )
        .await;
    }
    names
}

/// How long a CRD may take to go: the API server's CRD finalizer checks for remaining
/// instances for up to a minute per attempt, so one retry must fit.
pub const CRD_REMOVAL_DEADLINE: Duration = Duration::from_secs(150);

/// A CRD whose finalizer reported a failure is nudged after this long (see [`remove_crds`]).
const CRD_NUDGE_AFTER: Duration = Duration::from_secs(3);

/// Removes CRDs the way a careful uninstall does, waiting until each is gone; one still present
/// at the deadline fails the test with its conditions and the instances it still holds.
///
/// Two things about the API server's CRD finalizer (apiextensions-apiserver 1.34) make a
/// removal right after an install slow:
/// - it lists the instances through the resource's watch cache, which a CRD nobody has read
///   yet creates on that first request and which answers "storage is (re)initializing" until
///   it has synced. So each CRD's cache is warmed first (a list served from the cache must
///   succeed), and its instances are deleted before the CRD, so the finalizer finds none;
/// - after such a failure its retry can be lost (a conflict on its own status write drops the
///   key, and it ignores status events that only change its Terminating condition), leaving
///   the CRD Terminating until the informer's 5-minute resync. Any other change requeues it,
///   so a CRD whose Terminating condition says the deletion failed gets an annotation.
pub async fn remove_crds(client: &Client, names: &[&str]) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::ListParams;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in names {
        let Ok(Some(crd)) = api.get_opt(name).await else {
            continue;
        };
        let instances = instance_api(client, &crd);
        wait_for(
            &format!("{name}'s watch cache"),
            CRD_REMOVAL_DEADLINE,
            || async {
                let from_cache = ListParams::default().match_any().limit(1);
                instances.list_metadata(&from_cache).await.ok().map(|_| ())
            },
        )
        .await;
        let _ = instances
            .delete_collection(&DeleteParams::default(), &Default::default())
            .await;
        let _ = api.delete(name, &DeleteParams::default()).await;
    }
    let start = Instant::now();
    let mut nudges = 0u32;
    let mut last_nudge: Option<Instant> = None;
    loop {
        let mut left = Vec::new();
        for name in names {
            match api.get_opt(name).await {
                Ok(None) => {}
                Ok(Some(crd)) => left.push(crd),
                Err(e) => panic!("get CRD {name}: {e}"),
            }
        }
        if left.is_empty() {
            return;
        }
        let nudge_due = last_nudge.is_none_or(|t| t.elapsed() > CRD_NUDGE_AFTER);
        for crd in left.iter().filter(|_| nudge_due) {
            if deletion_failed_since(crd).is_some_and(|d| d > CRD_NUDGE_AFTER) {
                last_nudge = Some(Instant::now());
                nudges += 1;
                let patch = serde_json::json!({"metadata": {"annotations": {
                    "palisade.dev/test-finalizer-nudge": nudges.to_string()}}});
                let _ = api
                    .patch(
                        &crd.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await;
            }
        }
        if start.elapsed() > CRD_REMOVAL_DEADLINE {
            let mut report = Vec::new();
            for crd in &left {
                report.push(crd_removal_state(client, crd).await);
            }
            panic!(
                "CRDs not gone after {CRD_REMOVAL_DEADLINE:?} ({nudges} nudges):\n{}",
                report.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// How long ago the CRD finalizer reported that it could not delete the instances, if it did.
fn deletion_failed_since(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Option<Duration> {
    let c = crd
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Terminating" && c.status == "True")?;
    if !c.reason.as_deref()?.starts_with("InstanceDeletion")
        || c.reason.as_deref() == Some("InstanceDeletionInProgress")
    {
        return None;
    }
    let since = c.last_transition_time.as_ref()?.0;
    let age = k8s_openapi::jiff::Timestamp::now().duration_since(since);
    Some(Duration::try_from(age).unwrap_or_default())
}

/// The instances of a CRD, all namespaces, at its storage version.
fn instance_api(
    client: &Client,
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Api<kube::api::DynamicObject> {
    let version = crd
        .spec
        .versions
        .iter()
        .find(|v| v.storage)
        .map_or_else(|| crd.spec.versions[0].name.clone(), |v| v.name.clone());
    let gvk = kube::api::GroupVersionKind::gvk(&crd.spec.group, &version, &crd.spec.names.kind);
    let resource = kube::api::ApiResource::from_gvk_with_plural(&gvk, &crd.spec.names.plural);
    Api::all_with(client.clone(), &resource)
}

/// One line on a CRD that is slow to go: its deletion mark, conditions and remaining instances.
async fn crd_removal_state(
    client: &Client,
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> String {
    let conditions: Vec<String> = crd
        .status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .map(|c| {
            let reason = c.reason.as_deref().unwrap_or("");
            let message = c.message.as_deref().unwrap_or("");
            format!("{}={} {reason}: {message}", c.type_, c.status)
        })
        .collect();
    let instances = match instance_api(client, crd).list(&Default::default()).await {
        Ok(list) => list
            .items
            .iter()
            .map(|o| {
                let finalizers = o.metadata.finalizers.clone().unwrap_or_default();
                format!(
                    "{}/{} finalizers={finalizers:?}",
                    o.namespace().unwrap_or_default(),
                    o.name_any()
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        Err(e) => format!("(list failed: {e})"),
    };
    format!(
        "  {} deletionTimestamp={:?} finalizers={:?} conditions=[{}] instances=[{instances}]",
        crd.name_any(),
        crd.metadata.deletion_timestamp.as_ref().map(|t| t.0),
        crd.metadata.finalizers.clone().unwrap_or_default(),
        conditions.join("; ")
    )
}
