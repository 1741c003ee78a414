use super::*;
use k8s_openapi::api::networking::v1::NetworkPolicy;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn pod(ns: &str, name: &str, l: &[(&str, &str)], ip: &str) -> Pod {
    Pod {
        namespace: ns.into(),
        name: name.into(),
        labels: std::sync::Arc::new(labels(l).into()),
        ips: vec![ip.parse().unwrap()],
        ports: vec![
            ContainerPort {
                name: Some("http".into()),
                port: 80,
                protocol: Protocol::Tcp,
            },
            ContainerPort {
                name: Some("dns".into()),
                port: 53,
                protocol: Protocol::Udp,
            },
            ContainerPort {
                name: None,
                port: 9000,
                protocol: Protocol::Sctp,
            },
        ],
        host_network: false,
    }
}

fn policies(yaml: &str) -> Vec<NetworkPolicy> {
    yaml.split("\n---\n")
        .map(|d| serde_yaml_ng::from_str(d).unwrap())
        .collect()
}

/// Namespaces `a` (team=a) and `b` (team=b); pods web/db in `a`, client in `b`, a host-network
/// pod in `b` on the node address.
fn cluster(yaml: &str) -> Cluster {
    let mut host = pod("b", "node-agent", &[("app", "agent")], "10.0.0.1");
    host.host_network = true;
    let (c, errors) = Cluster::new(
        [
            ("a".to_string(), labels(&[("team", "a")])),
            ("b".to_string(), labels(&[("team", "b")])),
        ],
        vec![
            pod("a", "web", &[("app", "web")], "10.1.0.1"),
            pod("a", "db", &[("app", "db")], "10.1.0.2"),
            pod("b", "client", &[("app", "client")], "10.1.1.1"),
            host,
        ],
        &policies(yaml),
    );
    assert_eq!(errors, vec![]);
    c
}

const WEB: Endpoint = Endpoint::Pod(0);
const DB: Endpoint = Endpoint::Pod(1);
const CLIENT: Endpoint = Endpoint::Pod(2);
const AGENT: Endpoint = Endpoint::Pod(3);

fn ext(ip: &str) -> Endpoint {
    Endpoint::Ip(ip.parse().unwrap())
}

fn ok(c: &Cluster, from: Endpoint, to: Endpoint, port: u16, p: Protocol) -> bool {
    let v = c.verdict(from, to, port, p);
    // The fast path and the explained path never disagree.
    assert_eq!(
        c.allows(from, to, port, p),
        (v.egress.allows(), v.ingress.allows())
    );
    v.allowed()
}

const TCP: Protocol = Protocol::Tcp;

#[test]
fn no_policies_allow_everything() {
    let c = cluster(
        "metadata: {name: none, namespace: elsewhere}\nspec: {podSelector: {matchLabels: {x: y}}}",
    );
    let v = c.verdict(WEB, DB, 80, TCP);
    assert_eq!(v.egress, Side::NotIsolated);
    assert_eq!(v.ingress, Side::NotIsolated);
    assert!(v.allowed());
}

#[test]
fn absent_policy_types_isolate_ingress_and_egress_only_with_egress_rules() {
    let c = cluster("metadata: {name: d, namespace: a}\nspec: {podSelector: {}, egress: []}");
    // `egress: []` is no egress rule: the API server defaults policyTypes to [Ingress].
    assert!(!ok(&c, CLIENT, WEB, 80, TCP));
    assert!(ok(&c, WEB, CLIENT, 80, TCP));
    let c = cluster(
        "metadata: {name: d, namespace: a}\nspec: {podSelector: {}, egress: [{ports: [{port: 53, protocol: UDP}]}]}",
    );
    assert!(!ok(&c, WEB, CLIENT, 80, TCP));
    assert!(ok(&c, WEB, CLIENT, 53, Protocol::Udp));
}

#[test]
fn rules_of_a_direction_not_in_policy_types_are_ignored() {
    let c = cluster(
        "metadata: {name: d, namespace: a}\nspec: {podSelector: {}, policyTypes: [Egress], ingress: [{}]}",
    );
    assert!(!ok(&c, WEB, CLIENT, 80, TCP));
    assert!(ok(&c, CLIENT, WEB, 80, TCP));
}

#[test]
fn default_deny_names_the_isolating_policy() {
    let c = cluster(
        "metadata: {name: deny, namespace: a}\nspec: {podSelector: {}, policyTypes: [Ingress, Egress]}",
    );
    let v = c.verdict(CLIENT, DB, 80, TCP);
    assert_eq!(v.egress, Side::NotIsolated);
    assert_eq!(v.ingress, Side::Denied(vec!["a/deny".into()]));
    assert!(!v.allowed());
    let v = c.verdict(WEB, ext("192.0.2.1"), 443, TCP);
    assert_eq!(v.ingress, Side::NotAPod);
    assert!(!v.egress.allows());
}

#[test]
fn namespace_and_pod_selector_in_one_peer_are_anded_in_two_peers_ored() {
    let one = cluster(
        r#"metadata: {name: p, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}, podSelector: {matchLabels: {app: web}}}]}]"#,
    );
    assert!(!ok(&one, CLIENT, DB, 80, TCP));
    assert!(!ok(&one, WEB, DB, 80, TCP));
    let two = cluster(
        r#"metadata: {name: p, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}}, {podSelector: {matchLabels: {app: web}}}]}]"#,
    );
    assert!(ok(&two, CLIENT, DB, 80, TCP));
    assert!(ok(&two, WEB, DB, 80, TCP));
}

#[test]
fn empty_and_absent_selectors() {
    // podSelector {} alone: every pod of the policy's namespace, not of the cluster.
    let own = cluster("metadata: {name: p, namespace: a}\nspec: {podSelector: {}, ingress: [{from: [{podSelector: {}}]}]}");
    assert!(ok(&own, WEB, DB, 80, TCP));
    assert!(!ok(&own, CLIENT, DB, 80, TCP));
    // namespaceSelector {}: every pod in every namespace (but not addresses).
    let all = cluster("metadata: {name: p, namespace: a}\nspec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {}}]}]}");
    assert!(ok(&all, CLIENT, DB, 80, TCP));
    assert!(!ok(&all, ext("192.0.2.1"), DB, 80, TCP));
    // An absent `from` is every source, addresses included.
    let any = cluster("metadata: {name: p, namespace: a}\nspec: {podSelector: {}, ingress: [{ports: [{port: 80}]}]}");
    assert!(ok(&any, ext("192.0.2.1"), DB, 80, TCP));
    assert!(!ok(&any, ext("192.0.2.1"), DB, 81, TCP));
}

#[test]
fn ip_blocks_with_except_match_addresses_and_pod_ips() {
    let c = cluster(
        r#"metadata: {name: p, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/24]}}]}]"#,
    );
    assert!(ok(&c, WEB, ext("10.9.9.9"), 80, TCP));
    assert!(ok(&c, WEB, CLIENT, 80, TCP)); // 10.1.1.1
    assert!(!ok(&c, WEB, DB, 80, TCP)); // 10.1.0.2 is excepted
    assert!(!ok(&c, WEB, ext("192.0.2.1"), 80, TCP));
    assert!(!ok(&c, WEB, ext("fd00::1"), 80, TCP));
}

#[test]
fn named_ports_resolve_on_the_destination_and_never_on_addresses() {
    let c = cluster(
        r#"metadata: {name: p, namespace: a}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress: [{ports: [{port: http}]}]
  egress: [{ports: [{port: http}, {port: dns, protocol: UDP}]}]"#,
    );
    assert!(ok(&c, WEB, DB, 80, TCP));
    assert!(!ok(&c, WEB, DB, 81, TCP));
    assert!(ok(&c, WEB, CLIENT, 53, Protocol::Udp));
    // "dns" is a UDP port; TCP 53 has no name on the destination.
    assert!(!ok(&c, WEB, CLIENT, 53, TCP));
    assert!(!ok(&c, WEB, ext("192.0.2.1"), 80, TCP));
}

#[test]
fn port_ranges_protocol_only_ports_and_sctp() {
    let c = cluster(
        r#"metadata: {name: p, namespace: a}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress: [{ports: [{port: 8000, endPort: 9000, protocol: SCTP}, {protocol: UDP}]}]"#,
    );
    assert!(ok(&c, WEB, CLIENT, 9000, Protocol::Sctp));
    assert!(ok(&c, WEB, CLIENT, 8000, Protocol::Sctp));
    assert!(!ok(&c, WEB, CLIENT, 9001, Protocol::Sctp));
    assert!(!ok(&c, WEB, CLIENT, 9000, TCP));
    assert!(ok(&c, WEB, CLIENT, 12345, Protocol::Udp));
}

#[test]
fn policies_add_up_and_the_verdict_names_every_allowing_rule() {
    let c = cluster(
        r#"metadata: {name: deny, namespace: a}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
metadata: {name: web-to-db, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}]}, {from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 80}]}]
---
metadata: {name: same-ns, namespace: a}
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {}}]}]"#,
    );
    let v = c.verdict(WEB, DB, 80, TCP);
    let refs: Vec<String> = match &v.ingress {
        Side::Allowed(r) => r.iter().map(ToString::to_string).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        refs,
        ["a/web-to-db spec.ingress[1]", "a/same-ns spec.ingress[0]"]
    );
    assert!(!ok(&c, CLIENT, DB, 80, TCP)); // `client` lives in b: the peer has no namespaceSelector
}

#[test]
fn host_network_pods_are_not_selected_and_only_match_ip_blocks() {
    let c = cluster(
        r#"metadata: {name: deny, namespace: b}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
---
metadata: {name: from-agents, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: agent}}}]}]
---
metadata: {name: from-node, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{ipBlock: {cidr: 10.0.0.1/32}}]}]"#,
    );
    // The default deny of b does not apply to the host-network pod ...
    assert_eq!(c.verdict(AGENT, WEB, 80, TCP).egress, Side::NotAPod);
    // ... nor does a pod selector match it; only its node address does.
    assert!(!ok(&c, AGENT, WEB, 80, TCP));
    assert!(ok(&c, AGENT, DB, 80, TCP));
    assert_eq!(
        c.endpoint_for_ip("10.0.0.1".parse().unwrap()),
        ext("10.0.0.1")
    );
    assert_eq!(c.endpoint_for_ip("10.1.0.2".parse().unwrap()), DB);
}

#[test]
fn namespaces_get_their_name_label() {
    let c = cluster("metadata: {name: p, namespace: a}\nspec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: b}}}]}]}");
    assert!(ok(&c, CLIENT, WEB, 80, TCP));
    assert!(!ok(&c, WEB, DB, 80, TCP));
}

#[test]
fn invalid_policies_are_reported_with_object_and_field() {
    let cases = [
        (
            "spec: {policyTypes: [Sideways]}",
            "spec.policyTypes[0]",
            "unknown policy type",
        ),
        (
            "spec: {ingress: [{from: [{}]}]}",
            "spec.ingress[0].from[0]",
            "at least one of",
        ),
        (
            "spec: {egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]}",
            "spec.egress[0].to[0]",
            "cannot be combined",
        ),
        (
            "spec: {ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}]}]}",
            "spec.ingress[0].from[0].ipBlock.except[0]",
            "not strictly inside",
        ),
        (
            "spec: {ingress: [{from: [{ipBlock: {cidr: banana}}]}]}",
            "spec.ingress[0].from[0].ipBlock.cidr",
            "not a CIDR",
        ),
        (
            "spec: {ingress: [{ports: [{port: http, endPort: 90}]}]}",
            "spec.ingress[0].ports[0].endPort",
            "numeric",
        ),
        (
            "spec: {ingress: [{ports: [{port: 90, endPort: 80}]}]}",
            "spec.ingress[0].ports[0].endPort",
            "below",
        ),
        (
            "spec: {ingress: [{ports: [{port: 70000}]}]}",
            "spec.ingress[0].ports[0].port",
            "1..=65535",
        ),
        (
            "spec: {ingress: [{ports: [{port: 80, protocol: ICMP}]}]}",
            "spec.ingress[0].ports[0].protocol",
            "unknown protocol",
        ),
        (
            "spec: {podSelector: {matchExpressions: [{key: a, operator: Is}]}}",
            "spec.podSelector.matchExpressions[0]",
            "unknown operator",
        ),
    ];
    for (spec, field, problem) in cases {
        let np: NetworkPolicy =
            serde_yaml_ng::from_str(&format!("metadata: {{name: bad, namespace: a}}\n{spec}"))
                .unwrap();
        let err = compile(&np).unwrap_err();
        assert_eq!(err.field, field, "{spec}");
        assert!(err.problem.contains(problem), "{spec}: {err}");
        assert!(
            err.to_string().starts_with("NetworkPolicy a/bad: "),
            "{err}"
        );
        let (c, errors) = Cluster::new([], vec![], &[np]);
        assert_eq!(errors.len(), 1);
        assert!(c.policies.is_empty(), "an invalid policy is not evaluated");
    }
}

#[test]
fn a_pod_always_reaches_itself() {
    let c = cluster("metadata: {name: deny, namespace: a}\nspec: {podSelector: {}, policyTypes: [Ingress, Egress]}");
    let v = c.verdict(WEB, WEB, 80, TCP);
    assert_eq!((v.egress, v.ingress), (Side::Loopback, Side::Loopback));
    assert!(ok(&c, WEB, WEB, 80, TCP));
    assert!(!ok(&c, WEB, DB, 80, TCP));
}
