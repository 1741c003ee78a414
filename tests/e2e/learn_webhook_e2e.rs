//! The audit webhook's front door: only the API server's audit client (a certificate of the
//! dedicated client CA) is served; every other caller is refused in the TLS handshake, even one
//! holding a certificate of the cluster CA; bodies are bounded and must be an EventList.
//! (`scripts/test`; feature `e2e`.)

use crate::common;

use common::{client, free_port, install_crd, wait_for, Operator};
use std::process::Command;
use std::time::Duration;

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: eval \"$(scripts/control-plane env)\""))
}

struct Curl {
    addr: String,
    certs: String,
}

impl Curl {
    /// (curl exit code, HTTP status or 0).
    fn call(&self, client: Option<&str>, args: &[&str]) -> (i32, u16) {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(["--cacert", &format!("{}/ca.crt", self.certs)]);
        if let Some(c) = client {
            cmd.args(["--cert", &format!("{c}.crt"), "--key", &format!("{c}.key")]);
        }
        let out = cmd
            .args(args)
            .arg(format!("https://{}/audit", self.addr))
            .output()
            .expect("run curl");
        let code = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        (out.status.code().unwrap_or(-1), code)
    }
}

fn event_list(user: &str) -> String {
    serde_json::json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [{
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "stage": "ResponseComplete",
        "verb": "get", "requestURI": "/api/v1/namespaces/x/configmaps/c", "user": {"username": user},
        "objectRef": {"resource": "configmaps", "namespace": "x", "name": "c"},
        "stageTimestamp": "2026-12-01T10:00:00Z",
        "annotations": {"authorization.k8s.io/decision": "allow"}}]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_api_servers_audit_client_is_served() {
    let _serial = common::serial::module(module_path!());
    install_crd(&client().await).await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    // No baseline of its own: the selector keeps it off the other tests' baselines (one being
    // deleted may hold a finalizer after its test's operator stopped).
    let selector = format!("palisade-test-id={}", common::unique("webhook"));
    let mut op = Operator::start(&[
        "--baseline-selector",
        &selector,
        "--audit-webhook-addr",
        &addr,
        "--audit-webhook-cert",
        &env("PALISADE_CP_AUDIT_WEBHOOK_CERT"),
        "--audit-webhook-key",
        &env("PALISADE_CP_AUDIT_WEBHOOK_KEY"),
        "--audit-webhook-client-ca",
        &env("PALISADE_CP_AUDIT_WEBHOOK_CLIENT_CA"),
    ]);
    op.wait_ready().await;
    let certs = env("PALISADE_CP_CERTS");
    let curl = Curl {
        addr,
        certs: certs.clone(),
    };
    let audit_client = env("PALISADE_CP_AUDIT_WEBHOOK_CLIENT");
    let body = event_list("system:serviceaccount:x:reader");
    let post = [
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &body,
    ];

    // The API server's audit client is served, and its event is learned.
    assert_eq!(curl.call(Some(&audit_client), &post), (0, 200));
    wait_for(
        "the event counted as learned",
        Duration::from_secs(10),
        || async {
            let n = op
                .metric("palisade_audit_events_total", &["result=\"learned\""])
                .await?;
            (n >= 1.0).then_some(())
        },
    )
    .await;

    // No client certificate, or one of the cluster CA (every user has one): refused in the
    // handshake, nothing served, counted.
    let (exit, code) = curl.call(None, &post);
    assert!(
        exit != 0 && code == 0,
        "without a client certificate: curl {exit}, HTTP {code}"
    );
    let admin = format!("{certs}/admin");
    let (exit, code) = curl.call(Some(&admin), &post);
    assert!(
        exit != 0 && code == 0,
        "with the cluster admin's certificate: curl {exit}, HTTP {code}"
    );
    wait_for(
        "refused handshakes counted",
        Duration::from_secs(10),
        || async {
            let n = op
                .metric("palisade_audit_events_total", &["result=\"rejected\""])
                .await?;
            (n >= 2.0).then_some(())
        },
    )
    .await;

    // Bounded and strict about what it accepts.
    assert_eq!(curl.call(Some(&audit_client), &[]).1, 405, "GET");
    let bad = ["-X", "POST", "--data-binary", "{not json"];
    assert_eq!(
        curl.call(Some(&audit_client), &bad).1,
        400,
        "malformed JSON"
    );
    let big = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(big.path(), vec![b' '; 9 << 20]).unwrap();
    let file = format!("@{}", big.path().display());
    let huge = ["-X", "POST", "--data-binary", &file];
    assert_eq!(curl.call(Some(&audit_client), &huge).1, 413, "a 9 MiB body");
    op.stop();
    op.assert_never_forbidden();
}
