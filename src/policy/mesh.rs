//! Service-mesh mTLS (Istio), against a man in the middle: whether the workloads of covered
//! namespaces are in the mesh, which mTLS mode each really accepts, and which clients are told
//! to send plain text or one-way TLS to in-mesh hosts.
//!
//! The effective mode is resolved as Istio resolves it: the workload's PeerAuthentication (its
//! namespace, a selector matching its labels), else the namespace's (no selector), else the
//! mesh's (no selector, in the root namespace `istio-system`); `UNSET` inherits from the next
//! level and no policy at all means `PERMISSIVE`. Where several policies compete at one level,
//! the oldest wins (then the name, for a stable answer). `portLevelMtls` overrides per port, on
//! selector policies only. The mesh rules are evaluated only where Istio is present: its kinds
//! are served (the operator, `audit --cluster`) or its objects are in the audited files.

pub mod istio;

use super::finding::{ObjectRef, Source, Violation};
use super::rules::{Rule, Severity};
use super::selector::{CompactLabels, LabelLookup};
use super::workload::PodTarget;
use istio::{DestinationRule, PeerAuthentication};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Istio's default root namespace: mesh-wide policies live there.
pub const ROOT_NAMESPACE: &str = "istio-system";

/// Whether a workload's pods run with a sidecar or in ambient mode, as far as its own metadata
/// says; `Namespace` defers to the namespace's labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dataplane {
    Sidecar,
    Ambient,
    NoSidecar,
    Namespace,
}

fn dataplane(pod: &PodTarget<'_>) -> Dataplane {
    let get = |key: &str| {
        pod.labels
            .get(key)
            .or_else(|| pod.annotations.get(key))
            .map(String::as_str)
    };
    if pod.annotations.contains_key("sidecar.istio.io/status") {
        return Dataplane::Sidecar;
    }
    if get("istio.io/dataplane-mode") == Some("ambient") {
        return Dataplane::Ambient;
    }
    match get("sidecar.istio.io/inject") {
        Some("true") => Dataplane::Sidecar,
        Some("false") => Dataplane::NoSidecar,
        _ => Dataplane::Namespace,
    }
}

fn namespace_dataplane(labels: &BTreeMap<String, String>) -> Dataplane {
    if labels.get("istio.io/dataplane-mode").map(String::as_str) == Some("ambient") {
        Dataplane::Ambient
    } else if labels.get("istio-injection").map(String::as_str) == Some("enabled")
        || labels.contains_key("istio.io/rev")
    {
        Dataplane::Sidecar
    } else {
        Dataplane::NoSidecar
    }
}

/// Kept for every namespaced workload until the end (whether Istio runs is known only then):
/// shared parts only, and the namespace is the object's.
struct MeshWorkload {
    object: Arc<ObjectRef>,
    labels: Arc<CompactLabels>,
    meta_path: &'static str,
    dataplane: Dataplane,
    source: Option<Source>,
}

/// A mesh finding about an object, with what exemptions match it by.
pub struct MeshFinding {
    pub object: Arc<ObjectRef>,
    pub labels: Arc<CompactLabels>,
    pub source: Option<Source>,
    pub violation: Violation,
    pub severity: Option<Severity>,
}

/// What the audit collects for the mesh findings.
#[derive(Default)]
pub struct MeshBuilder {
    /// Istio's kinds are served or its objects were seen.
    present: bool,
    policies: Vec<Arc<PeerAuthentication>>,
    workloads: Vec<MeshWorkload>,
    client_tls: Vec<MeshFinding>,
}

impl MeshBuilder {
    /// Istio is installed (its kinds are served), even with no object of them.
    pub fn set_present(&mut self) {
        self.present = true;
    }

    pub fn add_peer_authentication(&mut self, pa: Arc<PeerAuthentication>) {
        self.present = true;
        self.policies.push(pa);
    }

    /// `labels` are the pod's (`pod.labels`), shared with the audit's other records.
    pub fn add_workload(
        &mut self,
        object: &Arc<ObjectRef>,
        pod: &PodTarget<'_>,
        labels: &Arc<CompactLabels>,
        source: Option<&Source>,
    ) {
        if object.namespace.is_none() {
            return;
        }
        if pod.spec.host_network == Some(true) {
            return; // never injected: nothing to say about mesh traffic
        }
        self.workloads.push(MeshWorkload {
            object: object.clone(),
            labels: labels.clone(),
            meta_path: pod.meta_path,
            dataplane: dataplane(pod),
            source: source.cloned(),
        });
    }

    /// A DestinationRule telling clients to send plain text (`DISABLE`) or one-way TLS
    /// (`SIMPLE`) to an in-mesh host bypasses mutual TLS.
    pub fn add_destination_rule(&mut self, dr: &DestinationRule, source: Option<&Source>) {
        self.present = true;
        let namespace = dr.metadata.namespace.as_deref();
        let name = dr.metadata.name.as_deref().unwrap_or("");
        let host = dr.spec.host.as_str();
        if !in_mesh_host(host) {
            return;
        }
        let object = Arc::new(ObjectRef::new("DestinationRule", namespace, name));
        let labels = Arc::new(
            dr.metadata
                .labels
                .as_ref()
                .map(CompactLabels::from)
                .unwrap_or_default(),
        );
        let Some(policy) = &dr.spec.traffic_policy else {
            return;
        };
        let mut modes = vec![(
            "spec.trafficPolicy.tls.mode".to_string(),
            "all ports".to_string(),
            policy.tls.as_ref(),
        )];
        for (i, p) in policy.port_level_settings.iter().enumerate() {
            let port = p
                .port
                .as_ref()
                .and_then(|p| p.number)
                .map_or("a port".to_string(), |n| format!("port {n}"));
            modes.push((
                format!("spec.trafficPolicy.portLevelSettings[{i}].tls.mode"),
                port,
                p.tls.as_ref(),
            ));
        }
        for (field, ports, tls) in modes {
            let Some(mode) = tls.and_then(|t| t.mode.as_deref()) else {
                continue;
            };
            let (severity, what) = match mode {
                "DISABLE" => (Severity::High, "plain text"),
                "SIMPLE" => (
                    Severity::Medium,
                    "one-way TLS without the client's mesh identity",
                ),
                _ => continue,
            };
            self.client_tls.push(MeshFinding {
                object: object.clone(),
                labels: labels.clone(),
                source: source.cloned(),
                violation: Violation::new(
                    Rule::MeshClientTls,
                    field,
                    format!("tells clients to send {what} to in-mesh host {host:?} on {ports} (tls.mode {mode}); use ISTIO_MUTUAL or remove the tls setting"),
                ),
                severity: Some(severity),
            });
        }
    }

    /// The mesh findings, now that every namespace and policy has been seen.
    /// `namespace_labels` is `None` for a namespace whose object was not seen: whether its
    /// workloads get sidecars is then unknown, and only their mTLS mode is judged.
    pub fn finish(
        self,
        namespace_labels: impl Fn(&str) -> Option<BTreeMap<String, String>>,
    ) -> Vec<MeshFinding> {
        if !self.present {
            return Vec::new();
        }
        let mut policies: Vec<&PeerAuthentication> = self.policies.iter().map(|p| &**p).collect();
        policies.sort_by(|a, b| {
            let key = |p: &PeerAuthentication| {
                (
                    p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    p.metadata.namespace.clone(),
                    p.metadata.name.clone(),
                )
            };
            key(a).cmp(&key(b))
        });
        let mut out = self.client_tls;
        for w in self.workloads {
            let namespace = w.object.namespace.as_deref().unwrap_or_default();
            let labels_path = format!("{}.labels", w.meta_path);
            let plane = match w.dataplane {
                Dataplane::Namespace => namespace_labels(namespace)
                    .map_or(Dataplane::Namespace, |l| namespace_dataplane(&l)),
                other => other,
            };
            let mut finding = |rule: Rule, field: String, message: String| {
                out.push(MeshFinding {
                    object: w.object.clone(),
                    labels: w.labels.clone(),
                    source: w.source.clone(),
                    violation: Violation::new(rule, field, message),
                    severity: None,
                });
            };
            if plane == Dataplane::NoSidecar {
                finding(
                    Rule::MeshNoSidecar,
                    labels_path.clone(),
                    "is not in the mesh (no sidecar injected, not ambient): its traffic is plain text; label the namespace istio-injection=enabled (or istio.io/dataplane-mode=ambient)".into(),
                );
                continue;
            }
            let decided = effective_mode(&policies, namespace, &w.labels);
            let mut judge = |mode: &str, by: &str, field: String, ports: &str| {
                let rule = match mode {
                    "STRICT" => return,
                    "DISABLE" => Rule::MeshMtlsDisabled,
                    _ => Rule::MeshMtlsPermissive,
                };
                let accepts = if rule == Rule::MeshMtlsDisabled {
                    "accepts only plain text"
                } else {
                    "accepts plain text beside mTLS"
                };
                finding(
                    rule,
                    field,
                    format!("{accepts} on {ports}: mTLS mode {mode} ({by}); set a PeerAuthentication with mtls.mode STRICT"),
                );
            };
            judge(&decided.mode, &decided.by, labels_path.clone(), "all ports");
            for (port, mode, by) in &decided.ports {
                judge(mode, by, labels_path.clone(), &format!("port {port}"));
            }
        }
        out
    }
}

/// Hosts the mesh serves: Kubernetes Service names, short or qualified.
fn in_mesh_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    !host.is_empty()
        && host != "*"
        && (!host.contains('.')
            || host.ends_with(".svc")
            || host.contains(".svc.")
            || host.ends_with(".cluster.local"))
}

struct Decided {
    mode: String,
    by: String,
    /// Port overrides: (port, mode, by).
    ports: Vec<(String, String, String)>,
}

fn mode_of(p: &PeerAuthentication) -> Option<&str> {
    p.spec
        .mtls
        .as_ref()
        .and_then(|m| m.mode.as_deref())
        .filter(|m| *m != "UNSET")
}

fn described(p: &PeerAuthentication) -> String {
    format!(
        "PeerAuthentication {}/{}",
        p.metadata.namespace.as_deref().unwrap_or(""),
        p.metadata.name.as_deref().unwrap_or("")
    )
}

fn namespace_wide(p: &PeerAuthentication) -> bool {
    p.spec
        .selector
        .as_ref()
        .is_none_or(|s| s.match_labels.is_empty())
}

fn effective_mode(
    policies: &[&PeerAuthentication],
    namespace: &str,
    labels: &CompactLabels,
) -> Decided {
    fn in_ns<'p>(
        policies: &'p [&'p PeerAuthentication],
        ns: &'p str,
    ) -> impl Iterator<Item = &'p PeerAuthentication> + 'p {
        policies
            .iter()
            .copied()
            .filter(move |p| p.metadata.namespace.as_deref() == Some(ns))
    }
    let mesh = in_ns(policies, ROOT_NAMESPACE).find(|p| namespace_wide(p));
    let namespace_policy = in_ns(policies, namespace).find(|p| namespace_wide(p));
    let workload = in_ns(policies, namespace).find(|p| {
        !namespace_wide(p)
            && p.spec.selector.as_ref().is_some_and(|s| {
                s.match_labels
                    .iter()
                    .all(|(k, v)| labels.label(k) == Some(v.as_str()))
            })
    });
    let mut decided = Decided {
        mode: "PERMISSIVE".into(),
        by: "no PeerAuthentication applies: Istio's default".into(),
        ports: Vec::new(),
    };
    for p in [mesh, namespace_policy, workload].into_iter().flatten() {
        if let Some(m) = mode_of(p) {
            decided.mode = m.to_string();
            decided.by = format!("{} spec.mtls.mode", described(p));
        }
    }
    if let Some(p) = workload {
        for (port, m) in &p.spec.port_level_mtls {
            if let Some(mode) = m.mode.as_deref().filter(|m| *m != "UNSET") {
                decided.ports.push((
                    port.clone(),
                    mode.to_string(),
                    format!("{} spec.portLevelMtls.{port}.mode", described(p)),
                ));
            }
        }
    }
    decided
}

#[cfg(test)]
mod tests;
