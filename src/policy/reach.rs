//! Findings from reachability: holes in default deny that admit every pod, and declared allow
//! rules that select nothing. Evaluated with the NetworkPolicy engine over the workloads and
//! policies of the input (offline) or the cluster (operator).

use super::baseline::CompiledBaseline;
use super::finding::{Finding, ObjectRef};
use super::netpol::compile::{Port, PortMatch};
use super::netpol::{Cluster, Labels, Pod};
use super::rules::Rule;
use super::selector::Selector;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer};

fn ports_text(ports: Option<&[Port]>) -> String {
    match ports {
        None => "on every port".into(),
        Some(ps) => {
            let list: Vec<String> = ps
                .iter()
                .map(|p| match &p.port {
                    PortMatch::Any => format!("all {}", p.protocol),
                    PortMatch::Range(lo, hi) if lo == hi => format!("{lo}/{}", p.protocol),
                    PortMatch::Range(lo, hi) => format!("{lo}-{hi}/{}", p.protocol),
                    PortMatch::Named(n) => format!("{n}/{}", p.protocol),
                })
                .collect();
            format!("on {}", list.join(", "))
        }
    }
}

/// Workloads (pods stand for them: `objects[i]` is `pods[i]`'s object) that default deny isolates
/// for ingress but a rule opens to every pod of the cluster on some ports. A rule open on every
/// port is `network.allow-all-override`, reported once on the policy, not again per workload.
pub fn open_to_all_pods(cluster: &Cluster, objects: &[ObjectRef], out: &mut Vec<Finding>) {
    for (i, object) in objects.iter().enumerate() {
        for (rule, ports) in cluster.ingress_open_to_all(i) {
            if ports.is_none() {
                continue;
            }
            out.push(Finding::new(
                Rule::OpenToAllPods,
                object.clone(),
                "metadata.labels",
                format!(
                    "every pod in the cluster can reach it {} through NetworkPolicy {rule}; name the peers that need it",
                    ports_text(ports)
                ),
            ));
        }
    }
}

fn peer_selects(
    peer: &NetworkPolicyPeer,
    rule_namespaces: &[&str],
    pods: &[Pod],
    ns_labels: &dyn Fn(&str) -> Labels,
) -> bool {
    if peer.ip_block.is_some() {
        return true; // addresses outside the pod network: not ours to check
    }
    let Ok(pod_sel) = Selector::compile(&peer.pod_selector.clone().unwrap_or_default()) else {
        return true; // invalid selectors are reported by baseline validation
    };
    let ns_sel = match &peer.namespace_selector {
        None => None,
        Some(s) => match Selector::compile(s) {
            Ok(s) => Some(s),
            Err(_) => return true,
        },
    };
    pods.iter().any(|p| {
        !p.host_network
            && pod_sel.matches(&p.labels)
            && match &ns_sel {
                None => rule_namespaces.contains(&p.namespace.as_str()),
                Some(s) => s.matches(&ns_labels(&p.namespace)),
            }
    })
}

/// Declared allow rules whose pods, or one of whose peers, select no pod of the input.
/// Silent when the input has no workloads at all (nothing to judge against).
pub fn allow_rules_selecting_nothing(
    b: &CompiledBaseline,
    pods: &[Pod],
    covered: &dyn Fn(&str) -> bool,
    ns_labels: &dyn Fn(&str) -> Labels,
    out: &mut Vec<Finding>,
) {
    if pods.is_empty() {
        return;
    }
    let me = ObjectRef::new("SecurityBaseline", None, &b.name);
    for (i, rule) in b
        .spec
        .network
        .iter()
        .flat_map(|n| n.allow.iter())
        .enumerate()
    {
        let Ok(sel) = Selector::compile(&rule.pod_selector) else {
            continue;
        };
        let targets: Vec<&str> = pods
            .iter()
            .filter(|p| !p.host_network && covered(&p.namespace) && sel.matches(&p.labels))
            .map(|p| p.namespace.as_str())
            .collect();
        if targets.is_empty() {
            out.push(Finding::new(
                Rule::AllowSelectsNothing,
                me.clone(),
                format!("spec.network.allow[{i}].podSelector"),
                format!("allow rule {:?} selects no pod in the namespaces the baseline covers: it allows nothing", rule.name),
            ));
            continue;
        }
        for (key, peers) in [("from", &rule.from), ("to", &rule.to)] {
            for (j, peer) in peers.iter().enumerate() {
                if !peer_selects(peer, &targets, pods, ns_labels) {
                    out.push(Finding::new(
                        Rule::AllowSelectsNothing,
                        me.clone(),
                        format!("spec.network.allow[{i}].{key}[{j}]"),
                        format!(
                            "allow rule {:?}: this peer selects no pod, so it allows no connection",
                            rule.name
                        ),
                    ));
                }
            }
        }
    }
}

/// What the API-server check knows of a workload's account.
pub struct Account {
    pub name: String,
    pub declared: bool,
    /// Whether its pods mount the account's token (pod setting, else the account's, else yes).
    pub mounts_token: bool,
}

/// Workloads that can open connections to the API server's endpoints although their account has
/// no declared permissions or their pods mount no token: the path a stolen-token attack needs,
/// open to a pod that has no use for it.
pub fn api_reachable_without_need(
    cluster: &Cluster,
    objects: &[ObjectRef],
    account: &dyn Fn(usize) -> Option<Account>,
    api_server: &[(std::net::IpAddr, u16)],
    out: &mut Vec<Finding>,
) {
    use super::netpol::{Endpoint, Protocol, Side};
    for (i, object) in objects.iter().enumerate() {
        let Some(acct) = account(i) else { continue };
        if acct.declared && acct.mounts_token {
            continue;
        }
        let open = api_server.iter().find_map(|(ip, port)| {
            let v = cluster.verdict(Endpoint::Pod(i), Endpoint::Ip(*ip), *port, Protocol::Tcp);
            match v.egress {
                Side::Allowed(rules) => Some(format!(
                    "{ip}:{port} through NetworkPolicy {}",
                    rules
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                Side::NotIsolated => {
                    Some(format!("{ip}:{port}: no NetworkPolicy isolates its egress"))
                }
                _ => None,
            }
        });
        let Some(path) = open else { continue };
        let why = if acct.declared {
            format!("its pods mount no token of ServiceAccount {}", acct.name)
        } else {
            format!(
                "ServiceAccount {} is not declared in spec.rbac.serviceAccounts",
                acct.name
            )
        };
        out.push(Finding::new(
            Rule::ApiReachableWithoutNeed,
            object.clone(),
            "spec.serviceAccountName",
            format!("can reach the API server ({path}) although {why}; only declared accounts keep API egress under default deny"),
        ));
    }
}

/// Builds the model for both checks from the auditor's collected pods and policies.
pub fn model(
    namespaces: impl IntoIterator<Item = (String, Labels)>,
    pods: Vec<Pod>,
    policies: &[NetworkPolicy],
) -> Cluster {
    // Invalid policies are skipped here; the API server (or the user's linter) rejects them.
    Cluster::new(namespaces, pods, policies).0
}
