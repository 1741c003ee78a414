//! Checks that read more than one setting or a file the setting names: admission plugins in
//! effect, authorizers, anonymous authentication, encryption at rest, cipher suites, the audit
//! policy, etcd's CA.

use super::checks::*;
use super::component::{lookup, Component, Key, Kind, Setting};
use super::flags::{self, feature_gates};
use super::{Node, Outcome};
use serde_json::Value;

/// The admission plugins kube-apiserver 1.34 enables when `--enable-admission-plugins` does not
/// name them (`kube-apiserver --help`, "enabled by default").
const DEFAULT_ADMISSION: &[&str] = &[
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "TaintNodesByCondition",
    "PodSecurity",
    "Priority",
    "DefaultTolerationSeconds",
    "DefaultStorageClass",
    "StorageObjectInUseProtection",
    "PersistentVolumeClaimResize",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "ClusterTrustBundleAttest",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "PodTopologyLabels",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
];

fn api<'n>(node: &'n Node<'_>) -> Result<&'n Component, Outcome> {
    node.need(Kind::ApiServer).map_err(Outcome::not_assessable)
}

fn setting(c: &Component, key: &Key) -> Result<Setting, Outcome> {
    c.setting(key).map_err(Outcome::not_assessable)
}

/// Plugins in effect: the defaults plus `--enable-admission-plugins`, minus
/// `--disable-admission-plugins`.
fn admission(node: &Node, plugin: &str, want: bool) -> Outcome {
    let api = match api(node) {
        Ok(a) => a,
        Err(o) => return o,
    };
    let enabled = api.flags.get(API_ENABLE_ADMISSION.flag).unwrap_or("");
    let disabled = api.flags.get(API_DISABLE_ADMISSION.flag).unwrap_or("");
    let by_default = DEFAULT_ADMISSION.contains(&plugin);
    let on = !flags::list(disabled).contains(&plugin)
        && (by_default || flags::list(enabled).contains(&plugin));
    let source = if flags::list(disabled).contains(&plugin) {
        "--disable-admission-plugins"
    } else if flags::list(enabled).contains(&plugin) {
        "--enable-admission-plugins"
    } else {
        "default"
    };
    let actual = format!("{plugin} {}", if on { "enabled" } else { "not enabled" });
    let reason = if by_default && source == "default" {
        format!("{plugin} is enabled by default in kube-apiserver")
    } else {
        String::new()
    };
    Outcome::judge(on == want, Some(actual), Some(source.to_string()), reason)
}

pub fn admission_deny_external_ips(node: &Node) -> Outcome {
    admission(node, "DenyServiceExternalIPs", true)
}
pub fn admission_event_rate_limit(node: &Node) -> Outcome {
    admission(node, "EventRateLimit", true)
}
pub fn admission_no_always_admit(node: &Node) -> Outcome {
    admission(node, "AlwaysAdmit", false)
}
pub fn admission_always_pull(node: &Node) -> Outcome {
    admission(node, "AlwaysPullImages", true)
}
pub fn admission_service_account(node: &Node) -> Outcome {
    admission(node, "ServiceAccount", true)
}
pub fn admission_namespace_lifecycle(node: &Node) -> Outcome {
    admission(node, "NamespaceLifecycle", true)
}
pub fn admission_node_restriction(node: &Node) -> Outcome {
    admission(node, "NodeRestriction", true)
}

/// The authorizer chain: `--authorization-config` (an AuthorizationConfiguration) or
/// `--authorization-mode`.
fn authorizers(node: &Node) -> Result<(Vec<String>, String), Outcome> {
    let api = api(node)?;
    if let Some(path) = api
        .path(&API_AUTHZ_CONFIG)
        .map_err(Outcome::not_assessable)?
    {
        let doc = yaml(node, &path)?;
        let types = doc
            .get("authorizers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.get("type")?.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        return Ok((types, format!("authorizers in {}", path.display())));
    }
    let s = setting(api, &API_AUTHZ_MODE)?;
    let modes = flags::list(s.value.as_deref().unwrap_or(""))
        .into_iter()
        .map(str::to_string)
        .collect();
    Ok((modes, s.origin.to_string()))
}

fn authorizer(node: &Node, mode: &str, want: bool) -> Outcome {
    match authorizers(node) {
        Ok((modes, source)) => {
            let has = modes.iter().any(|m| m == mode);
            Outcome::judge(
                has == want,
                Some(modes.join(",")),
                Some(source),
                String::new(),
            )
        }
        Err(o) => o,
    }
}

pub fn authorizer_not_always_allow(node: &Node) -> Outcome {
    authorizer(node, "AlwaysAllow", false)
}
pub fn authorizer_node(node: &Node) -> Outcome {
    authorizer(node, "Node", true)
}
pub fn authorizer_rbac(node: &Node) -> Outcome {
    authorizer(node, "RBAC", true)
}

/// Health paths anonymous requests may reach without exposing anything else.
const HEALTH_PATHS: &[&str] = &["/healthz", "/livez", "/readyz"];

/// `--anonymous-auth`, or the `anonymous` section of an AuthenticationConfiguration, which may
/// limit anonymous requests to some paths.
pub fn api_anonymous(node: &Node) -> Outcome {
    let api = match api(node) {
        Ok(a) => a,
        Err(o) => return o,
    };
    let config = match api.path(&API_AUTHN_CONFIG) {
        Ok(c) => c,
        Err(e) => return Outcome::not_assessable(e),
    };
    if let Some(path) = config {
        let doc = match yaml(node, &path) {
            Ok(d) => d,
            Err(o) => return o,
        };
        if let Some(anon) = doc.get("anonymous") {
            let source = Some(format!("anonymous in {}", path.display()));
            let enabled = anon
                .get("enabled")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let paths: Vec<&str> = anon
                .get("conditions")
                .and_then(Value::as_array)
                .map(|c| c.iter().filter_map(|x| x.get("path")?.as_str()).collect())
                .unwrap_or_default();
            if !enabled {
                return Outcome::pass(Some("disabled".into()), source, String::new());
            }
            if !paths.is_empty() && paths.iter().all(|p| HEALTH_PATHS.contains(p)) {
                let reason = "anonymous requests reach only health paths".to_string();
                return Outcome::pass(Some(format!("only {}", paths.join(","))), source, reason);
            }
            let actual = if paths.is_empty() {
                "enabled for every path".to_string()
            } else {
                format!("enabled for {}", paths.join(","))
            };
            return Outcome::fail(Some(actual), source, String::new());
        }
    }
    match setting(api, &API_ANONYMOUS) {
        Ok(s) => Outcome::judge(
            s.value.as_deref().and_then(flags::parse_bool) == Some(false),
            s.value,
            Some(s.origin.to_string()),
            String::new(),
        ),
        Err(o) => o,
    }
}

/// Providers compatible with CIS 1.2.28 as the first (writing) provider for Secrets.
const STRONG_PROVIDERS: &[&str] = &["aescbc", "kms", "secretbox"];

pub fn encryption_providers(node: &Node) -> Outcome {
    let api = match api(node) {
        Ok(a) => a,
        Err(o) => return o,
    };
    let path = match api.path(&API_ENCRYPTION) {
        Ok(Some(p)) => p,
        Ok(None) => {
            return Outcome::fail(
                Some("no --encryption-provider-config".into()),
                Some("not set".into()),
                "Secrets are stored in etcd in plain text".into(),
            )
        }
        Err(e) => return Outcome::not_assessable(e),
    };
    let doc = match yaml(node, &path) {
        Ok(d) => d,
        Err(o) => return o,
    };
    let source = Some(path.display().to_string());
    let covers_secrets = |entry: &Value| {
        entry
            .get("resources")
            .and_then(Value::as_array)
            .is_some_and(|r| {
                r.iter()
                    .filter_map(Value::as_str)
                    .any(|x| matches!(x, "secrets" | "*.*" | "*."))
            })
    };
    let entry = doc
        .get("resources")
        .and_then(Value::as_array)
        .and_then(|entries| entries.iter().find(|e| covers_secrets(e)));
    let Some(entry) = entry else {
        return Outcome::fail(
            Some("no resources entry covers secrets".into()),
            source,
            "Secrets are stored in etcd in plain text".into(),
        );
    };
    // The first provider encrypts what is written; the others only read.
    let first = entry
        .get("providers")
        .and_then(Value::as_array)
        .and_then(|p| p.first())
        .and_then(Value::as_object)
        .and_then(|p| p.keys().next().cloned())
        .unwrap_or_else(|| "none".into());
    let reason = match first.as_str() {
        "identity" => "identity writes Secrets in plain text".to_string(),
        "aesgcm" => "aesgcm needs its key rotated every 200,000 writes".to_string(),
        _ => String::new(),
    };
    Outcome::judge(
        STRONG_PROVIDERS.contains(&first.as_str()),
        Some(format!("secrets: {first}")),
        source,
        reason,
    )
}

fn ciphers(c: &Component, key: &Key, min: &Key, strong: &[&str]) -> Outcome {
    let s = match setting(c, key) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let value = s.value.unwrap_or_default();
    let suites = flags::list(&value);
    if suites.is_empty() {
        let min = c.setting(min).ok().and_then(|m| m.value);
        if min.as_deref() == Some("VersionTLS13") {
            let reason = "TLS 1.3 only: its suites are all strong".to_string();
            return Outcome::pass(Some("unset".into()), Some("tls-min-version".into()), reason);
        }
        return Outcome::fail(
            Some("unset".into()),
            Some(s.origin.to_string()),
            "Go's default TLS 1.2 suites include CBC-mode suites".into(),
        );
    }
    let weak: Vec<&str> = suites
        .iter()
        .copied()
        .filter(|x| !strong.contains(x))
        .collect();
    let reason = if weak.is_empty() {
        String::new()
    } else {
        format!("weak: {}", weak.join(","))
    };
    Outcome::judge(
        weak.is_empty(),
        Some(value),
        Some(s.origin.to_string()),
        reason,
    )
}

pub fn api_ciphers(node: &Node) -> Outcome {
    match api(node) {
        Ok(a) => ciphers(a, &API_CIPHERS, &API_TLS_MIN, API_STRONG_CIPHERS),
        Err(o) => o,
    }
}

pub fn kubelet_ciphers(node: &Node) -> Outcome {
    match node.need(Kind::Kubelet) {
        Ok(k) => ciphers(
            k,
            &KUBELET_CIPHERS,
            &KUBELET_TLS_MIN,
            KUBELET_STRONG_CIPHERS,
        ),
        Err(e) => Outcome::not_assessable(e),
    }
}

const ROTATE_SERVER_CERT: &str = "RotateKubeletServerCertificate";

/// A feature gate on by default: fails only when switched off.
fn gate_not_disabled(c: &Component, config_gate: Option<bool>) -> Outcome {
    let from_flags = feature_gates(c.flags.all(KCM_FEATURE_GATES.flag))
        .get(ROTATE_SERVER_CERT)
        .copied();
    let (value, source) = match (from_flags, config_gate) {
        (Some(v), _) => (v, "--feature-gates".to_string()),
        (None, Some(v)) => (v, "featureGates in the config file".to_string()),
        (None, None) => (true, "default (on)".to_string()),
    };
    Outcome::judge(
        value,
        Some(format!("{ROTATE_SERVER_CERT}={value}")),
        Some(source),
        String::new(),
    )
}

pub fn kcm_rotate_server_certificate(node: &Node) -> Outcome {
    match node.need(Kind::ControllerManager) {
        Ok(c) => gate_not_disabled(c, None),
        Err(e) => Outcome::not_assessable(e),
    }
}

pub fn kubelet_rotate_server_certificate(node: &Node) -> Outcome {
    let k = match node.need(Kind::Kubelet) {
        Ok(k) => k,
        Err(e) => return Outcome::not_assessable(e),
    };
    let config_gate = match &k.config {
        Some(c) => match &c.content {
            Ok(v) => lookup(v, &format!("featureGates.{ROTATE_SERVER_CERT}"))
                .and_then(|s| flags::parse_bool(&s)),
            Err(e) => return Outcome::not_assessable(format!("{}: {e}", c.path.display())),
        },
        None => None,
    };
    gate_not_disabled(k, config_gate)
}

pub fn kubelet_serving_certificate(node: &Node) -> Outcome {
    let k = match node.need(Kind::Kubelet) {
        Ok(k) => k,
        Err(e) => return Outcome::not_assessable(e),
    };
    let mut files = Vec::new();
    for key in &KUBELET_TLS {
        match k.setting(key) {
            Ok(s) => files.extend(s.value.filter(|v| !v.is_empty())),
            Err(e) => return Outcome::not_assessable(e),
        }
    }
    if files.len() == 2 {
        return Outcome::pass(Some(files.join(",")), None, String::new());
    }
    match k.setting(&KUBELET_SERVER_BOOTSTRAP) {
        Ok(s) if s.value.as_deref().and_then(flags::parse_bool) == Some(true) => Outcome::pass(
            Some("serverTLSBootstrap".into()),
            Some(s.origin.to_string()),
            "the serving certificate is issued by the cluster through a CSR".into(),
        ),
        Ok(_) => Outcome::fail(
            Some("unset".into()),
            None,
            "the kubelet serves a self-signed certificate nobody can verify".into(),
        ),
        Err(e) => Outcome::not_assessable(e),
    }
}

/// CIS 2.7: etcd's client CA must not be the CA that signs the cluster's other clients, or any
/// client certificate of the cluster can talk to etcd.
pub fn etcd_unique_ca(node: &Node) -> Outcome {
    let etcd = match node.need(Kind::Etcd) {
        Ok(e) => e,
        Err(e) => return Outcome::not_assessable(e),
    };
    let ca = match etcd.path(&ETCD_TRUSTED_CA) {
        Ok(Some(ca)) => ca,
        Ok(None) => {
            return Outcome::fail(
                Some("unset".into()),
                Some("--trusted-ca-file".into()),
                "etcd verifies no client certificates".into(),
            )
        }
        Err(e) => return Outcome::not_assessable(e),
    };
    let actual = Some(ca.display().to_string());
    let Some(Ok(Some(api_ca))) = node.get(Kind::ApiServer).map(|a| a.path(&API_CLIENT_CA)) else {
        let reason = "no kube-apiserver with --client-ca-file on this node to compare with";
        return Outcome::pass(actual, None, reason.into());
    };
    let same = api_ca == ca
        || matches!((node.host.read(&api_ca), node.host.read(&ca)), (Ok(a), Ok(b)) if a.trim() == b.trim());
    let reason = if same {
        format!(
            "the API server's client CA {} is etcd's too",
            api_ca.display()
        )
    } else {
        String::new()
    };
    Outcome::judge(!same, actual, None, reason)
}

pub fn audit_policy(node: &Node) -> Outcome {
    let api = match api(node) {
        Ok(a) => a,
        Err(o) => return o,
    };
    let path = match api.path(&API_AUDIT_POLICY) {
        Ok(Some(p)) => p,
        Ok(None) => {
            return Outcome::fail(
                Some("unset".into()),
                Some("--audit-policy-file".into()),
                "nothing is audited".into(),
            )
        }
        Err(e) => return Outcome::not_assessable(e),
    };
    let doc = match yaml(node, &path) {
        Ok(d) => d,
        Err(o) => return o,
    };
    let rules = doc
        .get("rules")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    Outcome::judge(
        rules > 0,
        Some(format!("{rules} rules")),
        Some(path.display().to_string()),
        if rules == 0 {
            "a policy without rules audits nothing".into()
        } else {
            String::new()
        },
    )
}

fn yaml(node: &Node, path: &std::path::Path) -> Result<Value, Outcome> {
    let text = node.host.read(path).map_err(Outcome::not_assessable)?;
    serde_yaml_ng::from_str(&text)
        .map_err(|e| Outcome::not_assessable(format!("{}: not valid YAML: {e}", path.display())))
}
