//! The universe traffic is decided in: namespaces (labels), pods (labels, addresses, named
//! ports) and compiled policies, indexed once so that a truth table costs bit lookups.

use super::compile::{compile, CompiledPolicy, InvalidPolicy, Namespaces, Peer, Protocol, Way};
use crate::policy::selector::Selector;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

pub type Labels = BTreeMap<String, String>;
pub use crate::policy::selector::CompactLabels;

/// The label every namespace carries (set by the API server since 1.21); added when a manifest
/// omits it so that offline and live answers agree.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerPort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    /// A pod name, or `Kind/name` for a workload's pod template offline.
    pub name: String,
    /// Shared with the audit's other records of the workload (a label map is a few hundred
    /// bytes; a 100k-workload repository held several copies of each).
    pub labels: Arc<CompactLabels>,
    /// The pod's primary address first; empty offline (ipBlocks then never match the pod).
    pub ips: Vec<IpAddr>,
    pub ports: Vec<ContainerPort>,
    /// Policies neither select nor match host-network pods: their traffic is the node's.
    pub host_network: bool,
}

impl Pod {
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn port_name(&self, number: u16, protocol: Protocol) -> Option<&str> {
        self.ports
            .iter()
            .find(|p| p.port == number && p.protocol == protocol)
            .and_then(|p| p.name.as_deref())
    }
}

/// One end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// Index into [`Cluster::pods`].
    Pod(usize),
    /// An address that is no pod's (outside the cluster, a node, the API server ...).
    Ip(IpAddr),
}

/// A policy rule, named for verdicts: `namespace/policy` and the rule's index in its direction.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuleRef {
    pub policy: String,
    pub way: Way,
    pub index: usize,
}

impl std::fmt::Display for RuleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} spec.{}[{}]",
            self.policy,
            self.way.as_str(),
            self.index
        )
    }
}

/// What one direction says about a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Side {
    /// No policy selects the pod for this direction: everything is allowed.
    NotIsolated,
    /// This end is not a pod policies apply to (an address, or a host-network pod).
    NotAPod,
    /// A pod connecting to itself: the traffic never leaves its network namespace, so no policy
    /// can see it (Kubernetes' own NetworkPolicy e2e tests expect it allowed: AllowLoopback).
    Loopback,
    /// Allowed by these rules.
    Allowed(Vec<RuleRef>),
    /// Isolated by these policies and none of their rules allows the connection.
    Denied(Vec<String>),
}

impl Side {
    pub fn allows(&self) -> bool {
        !matches!(self, Side::Denied(_))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The source's egress.
    pub egress: Side,
    /// The destination's ingress.
    pub ingress: Side,
}

impl Verdict {
    pub fn allowed(&self) -> bool {
        self.egress.allows() && self.ingress.allows()
    }
}

/// A set of pod indices, sorted (sparse: a rule's peers are usually a small part of a large
/// cluster, and a bitset per rule would cost rules × pods bits).
#[derive(Clone, Debug, Default)]
struct PodSet(Vec<u32>);

impl PodSet {
    fn contains(&self, i: usize) -> bool {
        self.0.binary_search(&(i as u32)).is_ok()
    }
}

/// A rule with its pod peers resolved against the cluster.
#[derive(Debug)]
struct IndexedRule {
    /// `None`: every peer (absent or empty `from`/`to`).
    pod_peers: Option<PodSet>,
}

#[derive(Debug)]
struct IndexedPolicy {
    ingress: Vec<IndexedRule>,
    egress: Vec<IndexedRule>,
}

/// Namespaces, pods and policies, with every selector evaluated once.
#[derive(Debug)]
pub struct Cluster {
    pub namespaces: BTreeMap<String, Labels>,
    pub pods: Vec<Pod>,
    pub policies: Vec<CompiledPolicy>,
    indexed: Vec<IndexedPolicy>,
    /// Per pod: the policies that isolate it, by direction.
    isolating: Vec<[Vec<usize>; 2]>,
}

fn slot(way: Way) -> usize {
    match way {
        Way::Ingress => 0,
        Way::Egress => 1,
    }
}

impl Cluster {
    /// Builds the universe. Namespaces named by pods or policies but not listed get only the
    /// name label; invalid policies are returned, not used (the API server would reject them).
    pub fn new<'p>(
        namespaces: impl IntoIterator<Item = (String, Labels)>,
        pods: Vec<Pod>,
        policies: impl IntoIterator<Item = &'p NetworkPolicy>,
    ) -> (Cluster, Vec<InvalidPolicy>) {
        let mut errors = Vec::new();
        let compiled: Vec<CompiledPolicy> = policies
            .into_iter()
            .filter_map(|p| compile(p).map_err(|e| errors.push(e)).ok())
            .collect();
        (Cluster::from_compiled(namespaces, pods, compiled), errors)
    }

    pub fn from_compiled(
        namespaces: impl IntoIterator<Item = (String, Labels)>,
        pods: Vec<Pod>,
        policies: Vec<CompiledPolicy>,
    ) -> Cluster {
        let mut ns: BTreeMap<String, Labels> = namespaces.into_iter().collect();
        let named = pods
            .iter()
            .map(|p| p.namespace.clone())
            .chain(policies.iter().map(|p| p.namespace.clone()))
            .collect::<Vec<_>>();
        for n in named {
            ns.entry(n).or_default();
        }
        for (name, labels) in ns.iter_mut() {
            labels
                .entry(NAMESPACE_NAME_LABEL.to_string())
                .or_insert_with(|| name.clone());
        }
        let mut cluster = Cluster {
            namespaces: ns,
            pods,
            policies,
            indexed: Vec::new(),
            isolating: Vec::new(),
        };
        cluster.index();
        cluster
    }

    fn index(&mut self) {
        let n = self.pods.len();
        let empty = Labels::new();
        let ns_labels = |ns: &str| self.namespaces.get(ns).unwrap_or(&empty);
        // Pods by namespace (pod-network pods only: policies neither select nor match the
        // others), so each selector is evaluated against the pods it can concern.
        let mut by_ns: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, pod) in self.pods.iter().enumerate() {
            if !pod.host_network {
                by_ns.entry(pod.namespace.as_str()).or_default().push(i);
            }
        }
        let with_ips: Vec<usize> = (0..n).filter(|&i| !self.pods[i].ips.is_empty()).collect();
        let mut isolating = vec![[Vec::new(), Vec::new()]; n];
        let mut indexed = Vec::with_capacity(self.policies.len());
        // The namespaces each namespaceSelector matches, once per distinct selector: generated
        // policies repeat the same peers (DNS in kube-system) in every namespace, and matching
        // each against every namespace made the index grow with policies x namespaces.
        let matching: RefCell<HashMap<Selector, Vec<&Vec<usize>>>> = RefCell::default();
        for (pi, policy) in self.policies.iter().enumerate() {
            for &i in by_ns.get(policy.namespace.as_str()).into_iter().flatten() {
                if policy.pod_selector.matches(&self.pods[i].labels) {
                    for way in [Way::Ingress, Way::Egress] {
                        if policy.rules(way).is_some() {
                            isolating[i][slot(way)].push(pi);
                        }
                    }
                }
            }
            let peer_pods = |peer: &Peer, set: &mut Vec<u32>| match peer {
                Peer::Pods { namespaces, pods } => {
                    let candidates: Vec<&Vec<usize>> = match namespaces {
                        Namespaces::Own => {
                            by_ns.get(policy.namespace.as_str()).into_iter().collect()
                        }
                        Namespaces::Matching(s) => {
                            let mut known = matching.borrow_mut();
                            if let Some(v) = known.get(s) {
                                v.clone()
                            } else {
                                let v: Vec<&Vec<usize>> = by_ns
                                    .iter()
                                    .filter(|(ns, _)| s.matches(ns_labels(ns)))
                                    .map(|(_, v)| v)
                                    .collect();
                                known.insert(s.clone(), v.clone());
                                v
                            }
                        }
                    };
                    for &i in candidates.into_iter().flatten() {
                        if pods.matches(&self.pods[i].labels) {
                            set.push(i as u32);
                        }
                    }
                }
                Peer::IpBlock { .. } => {
                    for &i in &with_ips {
                        if ip_block_matches(peer, self.pods[i].ips[0]) {
                            set.push(i as u32);
                        }
                    }
                }
            };
            let index_rules = |way: Way| -> Vec<IndexedRule> {
                policy
                    .rules(way)
                    .unwrap_or_default()
                    .iter()
                    .map(|rule| IndexedRule {
                        pod_peers: rule.peers.as_ref().map(|peers| {
                            let mut set = Vec::new();
                            for peer in peers {
                                peer_pods(peer, &mut set);
                            }
                            set.sort_unstable();
                            set.dedup();
                            PodSet(set)
                        }),
                    })
                    .collect()
            };
            indexed.push(IndexedPolicy {
                ingress: index_rules(Way::Ingress),
                egress: index_rules(Way::Egress),
            });
        }
        self.indexed = indexed;
        self.isolating = isolating;
    }

    pub fn pod_index(&self, namespace: &str, name: &str) -> Option<usize> {
        self.pods
            .iter()
            .position(|p| p.namespace == namespace && p.name == name)
    }

    /// Is a connection from `from` to `to` on `port`/`protocol` allowed, and by what?
    pub fn verdict(&self, from: Endpoint, to: Endpoint, port: u16, protocol: Protocol) -> Verdict {
        if Self::loopback(from, to) {
            return Verdict {
                egress: Side::Loopback,
                ingress: Side::Loopback,
            };
        }
        let port_name = match to {
            Endpoint::Pod(i) => self.pods[i].port_name(port, protocol),
            Endpoint::Ip(_) => None,
        };
        Verdict {
            egress: self.side(Way::Egress, from, to, port, port_name, protocol),
            ingress: self.side(Way::Ingress, to, from, port, port_name, protocol),
        }
    }

    /// Both directions' yes/no, without naming rules (the truth-table fast path).
    pub fn allows(
        &self,
        from: Endpoint,
        to: Endpoint,
        port: u16,
        protocol: Protocol,
    ) -> (bool, bool) {
        if Self::loopback(from, to) {
            return (true, true);
        }
        let port_name = match to {
            Endpoint::Pod(i) => self.pods[i].port_name(port, protocol),
            Endpoint::Ip(_) => None,
        };
        let one = |way, target, peer| match self.isolating_policies(way, target) {
            Err(_) => true,
            Ok(policies) => self
                .allowing(way, policies, peer, port, port_name, protocol)
                .next()
                .is_some(),
        };
        (one(Way::Egress, from, to), one(Way::Ingress, to, from))
    }

    fn loopback(from: Endpoint, to: Endpoint) -> bool {
        matches!((from, to), (Endpoint::Pod(a), Endpoint::Pod(b)) if a == b)
    }

    /// The pod's isolating policies in this direction, or why there are none.
    fn isolating_policies(&self, way: Way, target: Endpoint) -> Result<&[usize], Side> {
        let Endpoint::Pod(t) = target else {
            return Err(Side::NotAPod);
        };
        if self.pods[t].host_network {
            return Err(Side::NotAPod);
        }
        let policies = &self.isolating[t][slot(way)];
        if policies.is_empty() {
            return Err(Side::NotIsolated);
        }
        Ok(policies)
    }

    /// (policy, rule) pairs among `policies` that allow traffic with `peer` on the port.
    fn allowing<'a>(
        &'a self,
        way: Way,
        policies: &'a [usize],
        peer: Endpoint,
        port: u16,
        port_name: Option<&'a str>,
        protocol: Protocol,
    ) -> impl Iterator<Item = (usize, usize)> + 'a {
        policies.iter().flat_map(move |&pi| {
            let rules = self.policies[pi].rules(way).unwrap_or_default();
            let indexed = match way {
                Way::Ingress => &self.indexed[pi].ingress,
                Way::Egress => &self.indexed[pi].egress,
            };
            rules
                .iter()
                .zip(indexed)
                .enumerate()
                .filter(move |(_, (rule, ix))| {
                    rule.ports_match(port, port_name, protocol)
                        && match (&ix.pod_peers, peer) {
                            (None, _) => true,
                            (Some(set), Endpoint::Pod(p)) => set.contains(p),
                            (Some(_), Endpoint::Ip(ip)) => rule
                                .peers
                                .iter()
                                .flatten()
                                .any(|peer| ip_block_matches(peer, ip)),
                        }
                })
                .map(move |(ri, _)| (pi, ri))
        })
    }

    fn side(
        &self,
        way: Way,
        target: Endpoint,
        peer: Endpoint,
        port: u16,
        port_name: Option<&str>,
        protocol: Protocol,
    ) -> Side {
        let policies = match self.isolating_policies(way, target) {
            Ok(p) => p,
            Err(side) => return side,
        };
        let name = |pi: usize| {
            let p = &self.policies[pi];
            format!("{}/{}", p.namespace, p.name)
        };
        let allowed: Vec<RuleRef> = self
            .allowing(way, policies, peer, port, port_name, protocol)
            .map(|(pi, index)| RuleRef {
                policy: name(pi),
                way,
                index,
            })
            .collect();
        if allowed.is_empty() {
            Side::Denied(policies.iter().map(|&pi| name(pi)).collect())
        } else {
            Side::Allowed(allowed)
        }
    }

    /// Ingress rules that admit every pod of the cluster to `pod` (no peers, a peer of every
    /// namespace and pod, or an ipBlock of all addresses), with their ports (`None`: all).
    /// Empty when no policy isolates the pod for ingress: that is a missing default deny.
    pub fn ingress_open_to_all(
        &self,
        pod: usize,
    ) -> Vec<(RuleRef, Option<&[super::compile::Port]>)> {
        let everyone = |peer: &Peer| match peer {
            Peer::Pods { namespaces, pods } => {
                matches!(namespaces, Namespaces::Matching(s) if s.is_everything())
                    && pods.is_everything()
            }
            Peer::IpBlock { cidr, except } => except.is_empty() && cidr.to_string().ends_with("/0"),
        };
        let mut out = Vec::new();
        for &pi in &self.isolating[pod][slot(Way::Ingress)] {
            let p = &self.policies[pi];
            for (index, rule) in p.rules(Way::Ingress).unwrap_or_default().iter().enumerate() {
                if rule
                    .peers
                    .as_ref()
                    .is_none_or(|peers| peers.iter().any(everyone))
                {
                    out.push((
                        RuleRef {
                            policy: format!("{}/{}", p.namespace, p.name),
                            way: Way::Ingress,
                            index,
                        },
                        rule.ports.as_deref(),
                    ));
                }
            }
        }
        out
    }

    /// The endpoint for an address: the pod that has it, else the address itself.
    pub fn endpoint_for_ip(&self, ip: IpAddr) -> Endpoint {
        self.pods
            .iter()
            .position(|p| !p.host_network && p.ips.contains(&ip))
            .map_or(Endpoint::Ip(ip), Endpoint::Pod)
    }
}

fn ip_block_matches(peer: &Peer, ip: IpAddr) -> bool {
    match peer {
        Peer::IpBlock { cidr, except } => {
            cidr.contains(ip) && !except.iter().any(|e| e.contains(ip))
        }
        Peer::Pods { .. } => false,
    }
}
