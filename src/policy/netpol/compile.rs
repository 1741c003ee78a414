//! A NetworkPolicy reduced to what decides traffic, validated as the API server validates it
//! (offline manifests are not), with API-server defaulting applied.

use super::cidr::Cidr;
use crate::policy::selector::Selector;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Way {
    Ingress,
    Egress,
}

impl Way {
    pub fn as_str(self) -> &'static str {
        match self {
            Way::Ingress => "ingress",
            Way::Egress => "egress",
        }
    }
}

/// Which namespaces a pod peer's pods may live in.
#[derive(Clone, Debug, PartialEq)]
pub enum Namespaces {
    /// No namespaceSelector: the policy's own namespace.
    Own,
    /// A namespaceSelector (`{}` is every namespace).
    Matching(Selector),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Peer {
    /// Pods selected by namespace and pod selectors (both in one peer: AND).
    Pods {
        namespaces: Namespaces,
        pods: Selector,
    },
    IpBlock {
        cidr: Cidr,
        except: Vec<Cidr>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum PortMatch {
    /// Protocol only: every port.
    Any,
    Range(u16, u16),
    /// A container port name of the destination pod.
    Named(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Port {
    pub protocol: Protocol,
    pub port: PortMatch,
}

impl Port {
    /// Does traffic to `number`/`protocol`, whose destination container port is called `name`
    /// (if the destination is a pod that declares it), match?
    pub fn matches(&self, number: u16, name: Option<&str>, protocol: Protocol) -> bool {
        self.protocol == protocol
            && match &self.port {
                PortMatch::Any => true,
                PortMatch::Range(lo, hi) => (*lo..=*hi).contains(&number),
                PortMatch::Named(n) => name == Some(n.as_str()),
            }
    }
}

/// One ingress or egress rule. `None` peers or ports (absent or empty lists) match everything.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub peers: Option<Vec<Peer>>,
    pub ports: Option<Vec<Port>>,
}

impl Rule {
    pub fn ports_match(&self, number: u16, name: Option<&str>, protocol: Protocol) -> bool {
        self.ports
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|p| p.matches(number, name, protocol)))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct CompiledPolicy {
    pub namespace: String,
    pub name: String,
    pub pod_selector: Selector,
    /// `Some` when the policy isolates its pods for ingress (rules may be empty: deny all).
    pub ingress: Option<Vec<Rule>>,
    pub egress: Option<Vec<Rule>>,
}

impl CompiledPolicy {
    pub fn rules(&self, way: Way) -> Option<&[Rule]> {
        match way {
            Way::Ingress => self.ingress.as_deref(),
            Way::Egress => self.egress.as_deref(),
        }
    }
}

/// A policy the API server would reject; names the object and the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("NetworkPolicy {namespace}/{name}: {field}: {problem}")]
pub struct InvalidPolicy {
    pub namespace: String,
    pub name: String,
    pub field: String,
    pub problem: String,
}

struct Ctx<'a> {
    namespace: &'a str,
    name: &'a str,
}

impl Ctx<'_> {
    fn err(&self, field: impl Into<String>, problem: impl Into<String>) -> InvalidPolicy {
        InvalidPolicy {
            namespace: self.namespace.to_string(),
            name: self.name.to_string(),
            field: field.into(),
            problem: problem.into(),
        }
    }

    fn selector(&self, field: &str, sel: &LabelSelector) -> Result<Selector, InvalidPolicy> {
        Selector::compile(sel).map_err(|e| self.err(format!("{field}.{}", e.field), e.problem))
    }
}

/// A rule's peers (`from` or `to`) and ports, as written.
type RawRule<'a> = (
    Option<&'a [NetworkPolicyPeer]>,
    Option<&'a [NetworkPolicyPort]>,
);

/// The policy's namespace as the API server would store it (`default` when a manifest omits it).
pub fn policy_namespace(np: &NetworkPolicy) -> &str {
    np.metadata.namespace.as_deref().unwrap_or("default")
}

/// Compiles `np`, applying the API server's `policyTypes` defaulting: Ingress always, Egress when
/// the policy has egress rules.
pub fn compile(np: &NetworkPolicy) -> Result<CompiledPolicy, InvalidPolicy> {
    let ctx = Ctx {
        namespace: policy_namespace(np),
        name: np.metadata.name.as_deref().unwrap_or(""),
    };
    let spec = np.spec.clone().unwrap_or_default();
    let pod_selector = ctx.selector(
        "spec.podSelector",
        spec.pod_selector
            .as_ref()
            .unwrap_or(&LabelSelector::default()),
    )?;
    let (mut ingress, mut egress) = (false, false);
    match &spec.policy_types {
        Some(types) if !types.is_empty() => {
            for (i, t) in types.iter().enumerate() {
                match t.as_str() {
                    "Ingress" => ingress = true,
                    "Egress" => egress = true,
                    other => {
                        return Err(ctx.err(
                            format!("spec.policyTypes[{i}]"),
                            format!("unknown policy type {other:?} (want Ingress or Egress)"),
                        ))
                    }
                }
            }
        }
        _ => {
            ingress = true;
            egress = spec.egress.as_ref().is_some_and(|e| !e.is_empty());
        }
    }
    let compile_rules = |key: &str, peers_key: &str, rules: Vec<RawRule<'_>>| {
        rules
            .into_iter()
            .enumerate()
            .map(|(i, (peers, ports))| {
                rule(&ctx, &format!("spec.{key}[{i}]"), peers_key, peers, ports)
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let ingress_rules = compile_rules(
        "ingress",
        "from",
        spec.ingress
            .iter()
            .flatten()
            .map(|r| (r.from.as_deref(), r.ports.as_deref()))
            .collect(),
    )?;
    let egress_rules = compile_rules(
        "egress",
        "to",
        spec.egress
            .iter()
            .flatten()
            .map(|r| (r.to.as_deref(), r.ports.as_deref()))
            .collect(),
    )?;
    Ok(CompiledPolicy {
        namespace: ctx.namespace.to_string(),
        name: ctx.name.to_string(),
        pod_selector,
        // Rules of a direction the policy does not isolate are ignored, as by the API's semantics.
        ingress: ingress.then_some(ingress_rules),
        egress: egress.then_some(egress_rules),
    })
}

fn rule(
    ctx: &Ctx,
    path: &str,
    peers_key: &str,
    peers: Option<&[NetworkPolicyPeer]>,
    ports: Option<&[NetworkPolicyPort]>,
) -> Result<Rule, InvalidPolicy> {
    let peers = match peers {
        Some(list) if !list.is_empty() => Some(
            list.iter()
                .enumerate()
                .map(|(i, p)| peer(ctx, &format!("{path}.{peers_key}[{i}]"), p))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        _ => None,
    };
    let ports = match ports {
        Some(list) if !list.is_empty() => Some(
            list.iter()
                .enumerate()
                .map(|(i, p)| port(ctx, &format!("{path}.ports[{i}]"), p))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        _ => None,
    };
    Ok(Rule { peers, ports })
}

fn peer(ctx: &Ctx, path: &str, p: &NetworkPolicyPeer) -> Result<Peer, InvalidPolicy> {
    if let Some(block) = &p.ip_block {
        if p.pod_selector.is_some() || p.namespace_selector.is_some() {
            return Err(ctx.err(
                path,
                "ipBlock cannot be combined with podSelector or namespaceSelector in one peer",
            ));
        }
        let cidr: Cidr = block
            .cidr
            .parse()
            .map_err(|e| ctx.err(format!("{path}.ipBlock.cidr"), e))?;
        let mut except = Vec::new();
        for (i, e) in block.except.iter().flatten().enumerate() {
            let field = format!("{path}.ipBlock.except[{i}]");
            let c: Cidr = e.parse().map_err(|p| ctx.err(&field, p))?;
            if !cidr.strictly_contains(&c) {
                return Err(ctx.err(field, format!("{c} is not strictly inside {cidr}")));
            }
            except.push(c);
        }
        return Ok(Peer::IpBlock { cidr, except });
    }
    if p.pod_selector.is_none() && p.namespace_selector.is_none() {
        return Err(ctx.err(
            path,
            "a peer needs at least one of podSelector, namespaceSelector or ipBlock",
        ));
    }
    let namespaces = match &p.namespace_selector {
        None => Namespaces::Own,
        Some(s) => Namespaces::Matching(ctx.selector(&format!("{path}.namespaceSelector"), s)?),
    };
    let pods = match &p.pod_selector {
        None => Selector::everything(),
        Some(s) => ctx.selector(&format!("{path}.podSelector"), s)?,
    };
    Ok(Peer::Pods { namespaces, pods })
}

/// A container port name as the API server accepts it in a NetworkPolicy (IANA_SVC_NAME).
fn is_port_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

fn port(ctx: &Ctx, path: &str, p: &NetworkPolicyPort) -> Result<Port, InvalidPolicy> {
    let protocol = match p.protocol.as_deref() {
        None => Protocol::Tcp,
        Some(s) => Protocol::parse(s).ok_or_else(|| {
            ctx.err(
                format!("{path}.protocol"),
                format!("unknown protocol {s:?} (want TCP, UDP or SCTP)"),
            )
        })?,
    };
    let number = |n: i32, field: &str| {
        u16::try_from(n).ok().filter(|n| *n >= 1).ok_or_else(|| {
            ctx.err(
                format!("{path}.{field}"),
                format!("{n} is not in 1..=65535"),
            )
        })
    };
    let port = match (&p.port, p.end_port) {
        (None, None) => PortMatch::Any,
        (None, Some(_)) => return Err(ctx.err(format!("{path}.endPort"), "endPort needs port")),
        (Some(IntOrString::String(name)), None) => {
            if !is_port_name(name) {
                return Err(ctx.err(
                    format!("{path}.port"),
                    format!("{name:?} is not a port name (IANA_SVC_NAME: 1 to 15 lowercase alphanumerics or '-', with a letter, no '-' at either end or twice in a row)"),
                ));
            }
            PortMatch::Named(name.clone())
        }
        (Some(IntOrString::String(_)), Some(_)) => {
            return Err(ctx.err(
                format!("{path}.endPort"),
                "endPort needs a numeric port, not a named one",
            ))
        }
        (Some(IntOrString::Int(n)), end) => {
            let lo = number(*n, "port")?;
            let hi = match end {
                None => lo,
                Some(e) => {
                    let hi = number(e, "endPort")?;
                    if hi < lo {
                        return Err(ctx.err(
                            format!("{path}.endPort"),
                            format!("{hi} is below port {lo}"),
                        ));
                    }
                    hi
                }
            };
            PortMatch::Range(lo, hi)
        }
    };
    Ok(Port { protocol, port })
}
