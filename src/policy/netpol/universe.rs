//! Builds the cluster model from Kubernetes objects: live Pods (with addresses) or, offline,
//! one stand-in pod per workload template (`Deployment/web`, no address).

use super::cluster::{Cluster, CompactLabels, ContainerPort, Labels, Pod};
use super::compile::{InvalidPolicy, Protocol};
use crate::policy::object::Object;
use crate::policy::workload::{PodTarget, Workload};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Collects what reachability needs from a stream of objects.
#[derive(Default)]
pub struct UniverseBuilder {
    namespaces: BTreeMap<String, Labels>,
    pods: Vec<Pod>,
    policies: Vec<Arc<NetworkPolicy>>,
    /// Problems that leave a pod out (e.g. an unknown port protocol), by object.
    pub problems: Vec<String>,
}

fn ports(target: &PodTarget<'_>, id: &str, problems: &mut Vec<String>) -> Vec<ContainerPort> {
    let mut out = Vec::new();
    let containers = target
        .spec
        .init_containers
        .iter()
        .flatten()
        // Sidecars (restartPolicy Always) serve traffic like containers do.
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .chain(target.spec.containers.iter());
    for c in containers {
        for (i, p) in c.ports.iter().flatten().enumerate() {
            let protocol = match p.protocol.as_deref() {
                None => Protocol::Tcp,
                Some(s) => match Protocol::parse(s) {
                    Some(p) => p,
                    None => {
                        problems.push(format!(
                            "{id}: container {:?} ports[{i}].protocol: unknown protocol {s:?}",
                            c.name
                        ));
                        continue;
                    }
                },
            };
            match u16::try_from(p.container_port) {
                Ok(port) if port > 0 => out.push(ContainerPort {
                    name: p.name.clone(),
                    port,
                    protocol,
                }),
                _ => problems.push(format!(
                    "{id}: container {:?} ports[{i}].containerPort: {} is not in 1..=65535",
                    c.name, p.container_port
                )),
            }
        }
    }
    // Kept for every pod of the audit: a pushed-to Vec holds room for four ports.
    out.shrink_to_fit();
    out
}

impl UniverseBuilder {
    /// Adds one object. `live`: real Pods are the endpoints and templates are skipped; offline,
    /// each top-level workload (a bare Pod included) stands for its pods.
    pub fn add(&mut self, object: &Object, live: bool) {
        match object {
            Object::Namespace(ns) => {
                self.namespaces.insert(
                    ns.metadata.name.clone().unwrap_or_default(),
                    ns.metadata.labels.clone().unwrap_or_default(),
                );
            }
            Object::NetworkPolicy(np) => self.policies.push(np.clone()),
            Object::Workload(w) => self.add_workload(w, live),
            _ => {}
        }
    }

    /// Adds one workload (see [`UniverseBuilder::add`]).
    pub fn add_workload(&mut self, w: &Workload, live: bool) {
        if let Some(target) = w.pod_target() {
            let labels = Arc::new(CompactLabels::from(target.labels));
            self.add_pod_target(w, &target, labels, live);
        }
    }

    /// Adds one workload whose pod target and labels the caller already has; the labels are
    /// shared, not copied.
    pub fn add_pod_target(
        &mut self,
        w: &Workload,
        target: &PodTarget<'_>,
        labels: Arc<CompactLabels>,
        live: bool,
    ) {
        let is_pod = matches!(w, Workload::Pod(_));
        // Live, the Pods are the endpoints; offline, top-level objects stand for their pods.
        if (live && !is_pod) || (!live && w.is_owned_by_workload()) {
            return;
        }
        let namespace = w.namespace().unwrap_or("default").to_string();
        let name = if is_pod {
            w.name().to_string()
        } else {
            format!("{}/{}", w.kind(), w.name())
        };
        let id = format!("{namespace}/{name}");
        let ips = match w {
            Workload::Pod(p) => p
                .status
                .iter()
                .flat_map(|s| s.pod_ips.iter().flatten())
                .filter_map(|ip| ip.ip.parse().ok())
                .collect(),
            _ => Vec::new(),
        };
        let ports = ports(target, &id, &mut self.problems);
        self.pods.push(Pod {
            namespace,
            name,
            labels,
            ips,
            ports,
            host_network: target.spec.host_network == Some(true),
        });
    }

    /// Adds NetworkPolicies that are not (yet) in the cluster, e.g. a baseline's generated set.
    pub fn add_policies(&mut self, policies: impl IntoIterator<Item = NetworkPolicy>) {
        self.policies.extend(policies.into_iter().map(Arc::new));
    }

    pub fn namespaces(&self) -> impl Iterator<Item = (&String, &Labels)> {
        self.namespaces.iter()
    }

    pub fn build(mut self) -> (Cluster, Vec<InvalidPolicy>) {
        self.pods
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Cluster::new(
            self.namespaces,
            self.pods,
            self.policies.iter().map(|p| &**p),
        )
    }
}
