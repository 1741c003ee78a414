//! `palisade node` against fake hosts: a root directory and a `/proc` of its own, so every
//! resolution rule is tested without a real control plane (tests/e2e/node_e2e.rs runs it against one).

use super::checks::CHECKS;
use super::host::Host;
use super::{inspect, NodeReport, Status};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

struct Fake {
    dir: tempfile::TempDir,
    next_pid: u32,
}

impl Fake {
    fn new() -> Fake {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("root")).unwrap();
        fs::create_dir_all(dir.path().join("proc")).unwrap();
        Fake { dir, next_pid: 100 }
    }

    /// A file at a node path, with permission bits.
    fn file(&self, path: &str, text: &str, mode: u32) -> &Self {
        let on_disk = self
            .dir
            .path()
            .join("root")
            .join(path.trim_start_matches('/'));
        fs::create_dir_all(on_disk.parent().unwrap()).unwrap();
        fs::write(&on_disk, text).unwrap();
        fs::set_permissions(&on_disk, fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    fn process(&mut self, argv: &[&str], env: &[(&str, &str)], cgroup: &str) -> &mut Self {
        let dir = self.dir.path().join("proc").join(self.next_pid.to_string());
        self.next_pid += 1;
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("cmdline"), argv.join("\0") + "\0").unwrap();
        let environ: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        fs::write(dir.join("environ"), environ.join("\0")).unwrap();
        fs::write(dir.join("cgroup"), cgroup).unwrap();
        std::os::unix::fs::symlink("/var/lib/work", dir.join("cwd")).unwrap();
        self
    }

    fn run(&self) -> NodeReport {
        let host = Host::new(self.dir.path().join("root"), self.dir.path().join("proc"));
        inspect(&host, "node-1")
    }
}

fn status(report: &NodeReport, rule: &str) -> Status {
    result(report, rule).outcome.status
}

fn result<'a>(report: &'a NodeReport, rule: &str) -> &'a super::CheckResult {
    report
        .results
        .iter()
        .find(|r| r.rule == rule)
        .unwrap_or_else(|| panic!("no result for {rule}"))
}

const HARDENED_API: &[&str] = &[
    "/usr/local/bin/kube-apiserver",
    "--anonymous-auth=false",
    "--authorization-mode=Node,RBAC",
    "--enable-admission-plugins=NodeRestriction,EventRateLimit",
    "--profiling=false",
    "--audit-log-path=/var/log/audit.log",
    "--audit-log-maxage=30",
    "--audit-log-maxbackup",
    "10",
    "--audit-log-maxsize=100",
    "--audit-policy-file=/etc/kubernetes/audit.yaml",
    "--encryption-provider-config=/etc/kubernetes/enc.yaml",
    "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_AES_128_GCM_SHA256",
    "--client-ca-file=/etc/kubernetes/pki/ca.crt",
    "--service-account-extend-token-expiration=false",
];

const ENCRYPTION: &str = "apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [configmaps]
    providers: [{identity: {}}]
  - resources: [secrets]
    providers:
      - secretbox: {keys: [{name: k, secret: c2VjcmV0}]}
      - identity: {}
";

#[test]
fn every_check_has_one_result_and_a_stable_unique_id() {
    let report = Fake::new().run();
    assert_eq!(report.results.len(), CHECKS.len());
    let mut ids: Vec<&str> = CHECKS.iter().map(|c| c.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), CHECKS.len(), "duplicate rule ids");
    assert!(CHECKS
        .iter()
        .all(|c| c.id.starts_with("cis.") || c.id.starts_with("kubelet.")));
}

#[test]
fn nothing_running_is_not_assessable_never_a_silent_pass_or_fail() {
    let report = Fake::new().run();
    for r in &report.results {
        assert_eq!(r.outcome.status, Status::NotAssessable, "{}", r.rule);
        assert!(!r.outcome.reason.is_empty(), "{} has no reason", r.rule);
    }
    assert!(result(&report, "cis.1.2.7")
        .outcome
        .reason
        .contains("kube-apiserver is not running"));
}

#[test]
fn a_hardened_api_server_passes_and_its_files_are_read() {
    let mut fake = Fake::new();
    fake.file("/etc/kubernetes/enc.yaml", ENCRYPTION, 0o600)
        .file(
            "/etc/kubernetes/audit.yaml",
            "rules: [{level: Metadata}]\n",
            0o600,
        )
        .file(
            "/etc/kubernetes/pki/ca.crt",
            "-----BEGIN CERTIFICATE-----\n",
            0o644,
        )
        .file(
            "/etc/kubernetes/pki/ca.key",
            "-----BEGIN RSA PRIVATE KEY-----\n",
            0o600,
        );
    fake.process(HARDENED_API, &[], "");
    let report = fake.run();
    for rule in [
        "cis.1.2.1",
        "cis.1.2.6",
        "cis.1.2.7",
        "cis.1.2.8",
        "cis.1.2.9",
        "cis.1.2.10",
        "cis.1.2.12",
        "cis.1.2.13",
        "cis.1.2.14",
        "cis.1.2.15",
        "cis.1.2.16",
        "cis.1.2.17",
        "cis.1.2.18",
        "cis.1.2.19",
        "cis.1.2.21",
        "cis.1.2.27",
        "cis.1.2.28",
        "cis.1.2.29",
        "cis.1.2.30",
        "cis.3.2.1",
        "cis.1.1.20",
        "cis.1.1.21",
    ] {
        assert_eq!(
            status(&report, rule),
            Status::Pass,
            "{rule}: {:?}",
            result(&report, rule)
        );
    }
    assert_eq!(
        result(&report, "cis.1.2.28").outcome.actual.as_deref(),
        Some("secrets: secretbox")
    );
    // Not given, so failing (defaults that are unsafe, or files nobody set).
    for rule in [
        "cis.1.2.3",
        "cis.1.2.4",
        "cis.1.2.11",
        "cis.1.2.23",
        "cis.1.2.24",
    ] {
        assert_eq!(status(&report, rule), Status::Fail, "{rule}");
    }
}

#[test]
fn api_server_defaults_are_judged_as_the_server_applies_them() {
    let mut fake = Fake::new();
    fake.process(
        &[
            "kube-apiserver",
            "--disable-admission-plugins=ServiceAccount",
            "--tls-min-version=VersionTLS13",
        ],
        &[],
        "",
    );
    let report = fake.run();
    // anonymous auth and AlwaysAllow are the defaults: fail, with the default named.
    assert_eq!(status(&report, "cis.1.2.1"), Status::Fail);
    assert_eq!(
        result(&report, "cis.1.2.1").outcome.source.as_deref(),
        Some("default")
    );
    assert_eq!(status(&report, "cis.1.2.6"), Status::Fail);
    assert_eq!(
        result(&report, "cis.1.2.6").outcome.actual.as_deref(),
        Some("AlwaysAllow")
    );
    assert_eq!(
        status(&report, "cis.1.2.12"),
        Status::Fail,
        "ServiceAccount disabled"
    );
    assert_eq!(
        status(&report, "cis.1.2.13"),
        Status::Pass,
        "NamespaceLifecycle is a default"
    );
    assert_eq!(
        status(&report, "cis.1.2.21"),
        Status::Pass,
        "service-account-lookup defaults to true"
    );
    assert_eq!(
        status(&report, "cis.1.2.30"),
        Status::Fail,
        "extend-token-expiration defaults to true"
    );
    assert_eq!(status(&report, "cis.1.2.29"), Status::Pass, "TLS 1.3 only");
    assert_eq!(status(&report, "cis.1.2.28"), Status::Fail);
    assert_eq!(status(&report, "cis.3.2.1"), Status::Fail);
}

#[test]
fn weak_providers_ciphers_and_an_unreadable_config_are_told_apart() {
    let mut fake = Fake::new();
    fake.file(
        "/etc/enc.yaml",
        "resources: [{resources: ['*.*'], providers: [{identity: {}}, {aescbc: {}}]}]\n",
        0o600,
    );
    fake.process(
        &[
            "kube-apiserver",
            "--encryption-provider-config=/etc/enc.yaml",
            "--tls-cipher-suites=TLS_RSA_WITH_AES_128_CBC_SHA",
            "--audit-policy-file=/etc/missing.yaml",
        ],
        &[],
        "",
    );
    let report = fake.run();
    let enc = result(&report, "cis.1.2.28");
    assert_eq!(enc.outcome.status, Status::Fail);
    assert!(enc.outcome.reason.contains("plain text"), "{enc:?}");
    let ciphers = result(&report, "cis.1.2.29");
    assert_eq!(ciphers.outcome.status, Status::Fail);
    assert!(ciphers
        .outcome
        .reason
        .contains("TLS_RSA_WITH_AES_128_CBC_SHA"));
    let policy = result(&report, "cis.3.2.1");
    assert_eq!(policy.outcome.status, Status::NotAssessable);
    assert!(
        policy.outcome.reason.contains("/etc/missing.yaml"),
        "{policy:?}"
    );
}

#[test]
fn anonymous_only_for_health_paths_passes_through_the_authentication_config() {
    let mut fake = Fake::new();
    fake.file(
        "/etc/authn.yaml",
        "anonymous:\n  enabled: true\n  conditions: [{path: /livez}, {path: /readyz}]\n",
        0o600,
    )
    .file(
        "/etc/authz.yaml",
        "authorizers: [{type: Node, name: node}, {type: RBAC, name: rbac}]\n",
        0o600,
    );
    fake.process(
        &[
            "kube-apiserver",
            "--authentication-config=/etc/authn.yaml",
            "--authorization-config",
            "/etc/authz.yaml",
        ],
        &[],
        "",
    );
    let report = fake.run();
    assert_eq!(status(&report, "cis.1.2.1"), Status::Pass);
    assert_eq!(status(&report, "cis.1.2.7"), Status::Pass);
    assert_eq!(status(&report, "cis.1.2.8"), Status::Pass);
    assert_eq!(status(&report, "cis.1.2.6"), Status::Pass);
}

const KUBELET_CONFIG: &str = "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  x509: {clientCAFile: /etc/kubernetes/pki/ca.crt}
authorization: {mode: Webhook}
readOnlyPort: 10255
rotateCertificates: true
seccompDefault: true
tlsCipherSuites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
";

#[test]
fn kubelet_flags_override_the_config_and_drop_ins_override_the_file() {
    let mut fake = Fake::new();
    fake.file("/var/lib/kubelet/config.yaml", KUBELET_CONFIG, 0o644)
        .file(
            "/etc/kubernetes/kubelet.conf.d/10-pids.conf",
            "podPidsLimit: 4096\n",
            0o600,
        )
        .file(
            "/etc/kubernetes/kubelet.conf.d/20-port.conf",
            "readOnlyPort: 0\n",
            0o600,
        )
        .file(
            "/etc/kubernetes/pki/ca.crt",
            "-----BEGIN CERTIFICATE-----\n",
            0o644,
        )
        .file("/etc/systemd/system/kubelet.service", "[Service]\n", 0o644);
    fake.process(
        &[
            "/usr/bin/kubelet",
            "--config=/var/lib/kubelet/config.yaml",
            "--config-dir=/etc/kubernetes/kubelet.conf.d",
            "--anonymous-auth=true",
        ],
        &[],
        "12:pids:/system.slice/kubelet.service\n1:name=systemd:/system.slice/kubelet.service\n",
    );
    let report = fake.run();
    let anon = result(&report, "cis.4.2.1");
    assert_eq!(
        anon.outcome.status,
        Status::Fail,
        "the flag wins over the file"
    );
    assert_eq!(anon.outcome.source.as_deref(), Some("--anonymous-auth"));
    assert_eq!(status(&report, "cis.4.2.2"), Status::Pass);
    assert_eq!(
        status(&report, "cis.4.2.4"),
        Status::Pass,
        "a drop-in set readOnlyPort 0"
    );
    assert_eq!(
        status(&report, "cis.4.2.13"),
        Status::Pass,
        "podPidsLimit from a drop-in"
    );
    assert_eq!(status(&report, "cis.4.2.10"), Status::Pass);
    assert_eq!(status(&report, "cis.4.2.14"), Status::Pass);
    assert_eq!(status(&report, "cis.4.2.12"), Status::Pass);
    assert_eq!(status(&report, "cis.4.2.5"), Status::Pass, "the 4h default");
    assert_eq!(
        status(&report, "kubelet.protect-kernel-defaults"),
        Status::Fail
    );
    // Files: the config 0644 fails its 600, the CA 0644 passes its 644, the unit 0644 fails.
    assert_eq!(status(&report, "cis.4.1.9"), Status::Fail);
    assert_eq!(status(&report, "cis.4.1.7"), Status::Pass);
    let unit = result(&report, "cis.4.1.1");
    assert_eq!(unit.outcome.status, Status::Fail);
    assert!(unit
        .outcome
        .actual
        .as_deref()
        .unwrap()
        .contains("/etc/systemd/system/kubelet.service 644"));
    // No --kubeconfig: standalone.
    assert_eq!(status(&report, "cis.4.1.5"), Status::NotAssessable);
}

#[test]
fn kubelet_without_a_config_file_has_the_legacy_flag_defaults() {
    let mut fake = Fake::new();
    fake.process(
        &["kubelet", "--kubeconfig=/etc/kubelet.conf"],
        &[],
        "0::/kubepods\n",
    );
    let report = fake.run();
    assert_eq!(
        status(&report, "cis.4.2.1"),
        Status::Fail,
        "anonymous auth on"
    );
    assert_eq!(
        result(&report, "cis.4.2.2").outcome.actual.as_deref(),
        Some("AlwaysAllow")
    );
    assert_eq!(
        result(&report, "cis.4.2.4").outcome.actual.as_deref(),
        Some("10255")
    );
    let unit = result(&report, "cis.4.1.1");
    assert_eq!(unit.outcome.status, Status::NotAssessable);
    assert!(
        unit.outcome.reason.contains("not run by a systemd service"),
        "{unit:?}"
    );
    // A kubeconfig named but missing: not assessable, with the path.
    let kc = result(&report, "cis.4.1.5");
    assert_eq!(kc.outcome.status, Status::NotAssessable);
    assert!(kc.outcome.reason.contains("/etc/kubelet.conf"), "{kc:?}");
}

#[test]
fn etcd_flags_beat_the_environment_and_a_config_file_replaces_both() {
    let mut fake = Fake::new();
    fake.process(
        &["etcd", "-client-cert-auth=false", "--data-dir=data"],
        &[
            ("ETCD_CLIENT_CERT_AUTH", "true"),
            ("ETCD_PEER_CLIENT_CERT_AUTH", "true"),
            ("ETCD_AUTO_TLS", "true"),
        ],
        "",
    );
    let report = fake.run();
    assert_eq!(status(&report, "cis.2.2"), Status::Fail, "the flag wins");
    let peer = result(&report, "cis.2.5");
    assert_eq!(peer.outcome.status, Status::Pass);
    assert_eq!(
        peer.outcome.source.as_deref(),
        Some("$ETCD_PEER_CLIENT_CERT_AUTH")
    );
    assert_eq!(status(&report, "cis.2.3"), Status::Fail);
    // A relative data dir is relative to etcd's working directory; it does not exist here.
    let data = result(&report, "cis.1.1.11");
    assert_eq!(data.outcome.status, Status::NotAssessable);
    assert!(
        data.outcome.reason.contains("/var/lib/work/data"),
        "{data:?}"
    );

    let mut fake = Fake::new();
    fake.file(
        "/etc/etcd.yaml",
        "client-transport-security:\n  client-cert-auth: true\n  cert-file: /p/s.crt\n  key-file: /p/s.key\n",
        0o600,
    );
    fake.process(
        &["etcd", "--config-file=/etc/etcd.yaml", "--auto-tls"],
        &[("ETCD_AUTO_TLS", "true")],
        "",
    );
    let report = fake.run();
    assert_eq!(status(&report, "cis.2.2"), Status::Pass);
    assert_eq!(status(&report, "cis.2.1"), Status::Pass);
    assert_eq!(
        status(&report, "cis.2.3"),
        Status::Pass,
        "flags and env are ignored with --config-file"
    );
}

#[test]
fn static_pod_manifests_and_symlinks_resolve_inside_the_host_root() {
    let mut fake = Fake::new();
    fake.file(
        "/etc/kubernetes/manifests/kube-apiserver.yaml",
        "spec: {}\n",
        0o644,
    )
    .file(
        "/srv/manifests/sched.yaml",
        "command:\n- kube-scheduler\n",
        0o600,
    );
    // An absolute link target is the node's path, not this process's /etc.
    let root = fake.dir.path().join("root");
    std::os::unix::fs::symlink("/srv/manifests", root.join("etc/static")).unwrap();
    let report = fake.run();
    // No kubelet: kubeadm's directory.
    assert_eq!(status(&report, "cis.1.1.1"), Status::Fail);
    assert!(result(&report, "cis.1.1.1")
        .outcome
        .actual
        .as_deref()
        .unwrap()
        .contains("644"));
    assert_eq!(status(&report, "cis.1.1.5"), Status::NotAssessable);

    fake.file(
        "/var/lib/kubelet/config.yaml",
        "staticPodPath: /etc/static\n",
        0o600,
    );
    fake.process(
        &["kubelet", "--config", "/var/lib/kubelet/config.yaml"],
        &[],
        "",
    );
    let report = fake.run();
    let sched = result(&report, "cis.1.1.5");
    assert_eq!(sched.outcome.status, Status::Pass, "{sched:?}");
    assert!(sched
        .outcome
        .actual
        .as_deref()
        .unwrap()
        .starts_with("/etc/static/sched.yaml 600"));
    assert_eq!(
        status(&report, "cis.1.1.1"),
        Status::NotAssessable,
        "not in the kubelet's directory"
    );
}

#[test]
fn ownership_is_named_from_the_hosts_own_user_database() {
    let mut fake = Fake::new();
    let uid = fs::metadata(fake.dir.path())
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap();
    fake.file(
        "/etc/passwd",
        &format!("someone:x:{uid}:{uid}::/:/bin/sh\n"),
        0o644,
    )
    .file("/etc/group", &format!("somegroup:x:{uid}:\n"), 0o644)
    .file("/var/lib/etcd/member", "", 0o600);
    fs::set_permissions(
        fake.dir.path().join("root/var/lib/etcd"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    fake.process(&["etcd", "--data-dir=/var/lib/etcd"], &[], "");
    let report = fake.run();
    let owner = result(&report, "cis.1.1.12");
    assert_eq!(owner.outcome.status, Status::Fail);
    assert_eq!(
        owner.outcome.actual.as_deref(),
        Some("/var/lib/etcd someone:somegroup")
    );
    assert_eq!(status(&report, "cis.1.1.11"), Status::Pass);
}

#[test]
fn bind_addresses_and_the_proxy_metrics_default() {
    let mut fake = Fake::new();
    fake.process(
        &[
            "kube-controller-manager",
            "--bind-address=127.0.0.1",
            "--feature-gates=RotateKubeletServerCertificate=false",
        ],
        &[],
        "",
    );
    fake.process(
        &["hyperkube", "kube-scheduler", "--profiling=false"],
        &[],
        "",
    );
    fake.process(
        &["kube-proxy", "--metrics-bind-address=0.0.0.0:10249"],
        &[],
        "",
    );
    let report = fake.run();
    assert_eq!(status(&report, "cis.1.3.7"), Status::Pass);
    assert_eq!(status(&report, "cis.1.3.6"), Status::Fail);
    assert_eq!(status(&report, "cis.1.4.1"), Status::Pass);
    assert_eq!(
        status(&report, "cis.1.4.2"),
        Status::Fail,
        "0.0.0.0 by default"
    );
    assert_eq!(status(&report, "cis.4.3.1"), Status::Fail);
    assert_eq!(report.components.len(), 3);
}

#[test]
fn the_scheduler_ignores_profiling_flags_once_given_a_config() {
    let mut fake = Fake::new();
    fake.file("/etc/sched.yaml", "enableProfiling: true\n", 0o600);
    fake.process(
        &[
            "kube-scheduler",
            "--config=/etc/sched.yaml",
            "--profiling=false",
        ],
        &[],
        "",
    );
    let report = fake.run();
    let p = result(&report, "cis.1.4.1");
    assert_eq!(p.outcome.status, Status::Fail);
    assert_eq!(
        p.outcome.source.as_deref(),
        Some("enableProfiling in /etc/sched.yaml")
    );
}

#[test]
fn huge_and_looping_files_are_errors_not_memory() {
    let fake = Fake::new();
    let root = fake.dir.path().join("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    std::os::unix::fs::symlink("/etc/b", root.join("etc/a")).unwrap();
    std::os::unix::fs::symlink("/etc/a", root.join("etc/b")).unwrap();
    let big = root.join("etc/big");
    fs::File::create(&big)
        .unwrap()
        .set_len(super::host::MAX_READ + 1)
        .unwrap();
    let host = Host::new(&root, fake.dir.path().join("proc"));
    assert!(host
        .read(Path::new("/etc/a"))
        .unwrap_err()
        .contains("symlinks"));
    assert!(host
        .read(Path::new("/etc/big"))
        .unwrap_err()
        .contains("larger than"));
}
