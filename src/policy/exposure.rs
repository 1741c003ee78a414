//! Services as attack surface: what a Service opens beyond the cluster's pod network.
//! `externalIPs` lets whoever creates the Service take over traffic to any address
//! (CVE-2020-8554); `LoadBalancer` and `NodePort` expose pods outside the cluster. Severity
//! follows the exposure: the internet, restricted source ranges, a cloud-internal network, or
//! every node's address.

use super::finding::Violation;
use super::rules::{Rule, Severity};
use k8s_openapi::api::core::v1::Service;

/// Annotations that make a cloud load balancer internal (no public address).
const INTERNAL_LB_ANNOTATIONS: &[(&str, &str)] = &[
    (
        "service.beta.kubernetes.io/aws-load-balancer-internal",
        "true",
    ),
    (
        "service.beta.kubernetes.io/aws-load-balancer-scheme",
        "internal",
    ),
    (
        "service.beta.kubernetes.io/azure-load-balancer-internal",
        "true",
    ),
    ("networking.gke.io/load-balancer-type", "Internal"),
    ("cloud.google.com/load-balancer-type", "Internal"),
    (
        "service.beta.kubernetes.io/oci-load-balancer-internal",
        "true",
    ),
    (
        "service.kubernetes.io/ibm-load-balancer-cloud-provider-ip-type",
        "private",
    ),
];

fn is_internal(svc: &Service) -> bool {
    let Some(a) = svc.metadata.annotations.as_ref() else {
        return false;
    };
    INTERNAL_LB_ANNOTATIONS.iter().any(|(k, v)| {
        a.get(*k)
            .is_some_and(|got| got.trim().eq_ignore_ascii_case(v))
    })
}

fn ports(svc: &Service, node_ports: bool) -> String {
    let spec = svc.spec.as_ref();
    let list: Vec<String> = spec
        .and_then(|s| s.ports.as_ref())
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let proto = p.protocol.as_deref().unwrap_or("TCP");
                    match (node_ports, p.node_port) {
                        (true, Some(n)) => format!("{n}/{proto} (port {})", p.port),
                        // Not set in a manifest: the API server allocates one on creation.
                        (true, None) => {
                            format!("one allocated on creation/{proto} (port {})", p.port)
                        }
                        (false, _) => format!("{}/{proto}", p.port),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    if list.is_empty() {
        "no ports".into()
    } else {
        list.join(", ")
    }
}

fn is_open_range(r: &str) -> bool {
    let r = r.trim();
    r == "0.0.0.0/0" || r == "::/0"
}

/// The exposure violations of one Service, each with its severity.
pub fn service_exposure(svc: &Service) -> Vec<(Violation, Severity)> {
    let mut out = Vec::new();
    let Some(spec) = svc.spec.as_ref() else {
        return out;
    };
    let external: Vec<&str> = spec
        .external_ips
        .iter()
        .flatten()
        .map(String::as_str)
        .filter(|ip| !ip.trim().is_empty())
        .collect();
    if !external.is_empty() {
        out.push((
            Violation::new(
                Rule::ServiceExternalIps,
                "spec.externalIPs",
                format!(
                    "routes traffic for {} to this Service's pods: whoever can create Services can take over traffic to any address (CVE-2020-8554); remove spec.externalIPs and block them cluster-wide (admission plugin DenyServiceExternalIPs)",
                    external.join(", ")
                ),
            ),
            Severity::High,
        ));
    }
    match spec.type_.as_deref() {
        Some("LoadBalancer") => {
            let ranges: Vec<&str> = spec
                .load_balancer_source_ranges
                .iter()
                .flatten()
                .map(String::as_str)
                .collect();
            let open = ranges.is_empty() || ranges.iter().any(|r| is_open_range(r));
            let (severity, reach) = if is_internal(svc) {
                (Severity::Low, "an internal cloud load balancer (its network only)".into())
            } else if open {
                (
                    Severity::High,
                    "a load balancer open to every address on the internet (no spec.loadBalancerSourceRanges, or 0.0.0.0/0)".to_string(),
                )
            } else {
                (
                    Severity::Medium,
                    format!("a load balancer reachable from {}", ranges.join(", ")),
                )
            };
            out.push((
                Violation::new(
                    Rule::ServiceLoadBalancer,
                    "spec.type",
                    format!(
                        "exposes {} outside the cluster through {reach}; restrict spec.loadBalancerSourceRanges to the clients that need it, or serve it through an Ingress/Gateway",
                        ports(svc, false)
                    ),
                ),
                severity,
            ));
        }
        Some("NodePort") => out.push((
            Violation::new(
                Rule::ServiceNodePort,
                "spec.type",
                format!(
                    "opens node ports {} on every node's addresses, bypassing NetworkPolicies that only see pod traffic at the node; use a ClusterIP Service behind an Ingress/Gateway, or firewall the node port range",
                    ports(svc, true)
                ),
            ),
            Severity::Medium,
        )),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(yaml: &str) -> Service {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn found(yaml: &str) -> Vec<(Rule, Severity, String)> {
        service_exposure(&svc(yaml))
            .into_iter()
            .map(|(v, s)| (v.rule, s, v.message))
            .collect()
    }

    #[test]
    fn cluster_ip_services_expose_nothing() {
        assert!(found("metadata: {name: a}\nspec: {ports: [{port: 80}]}").is_empty());
        assert!(found("metadata: {name: a}\nspec: {type: ClusterIP, externalIPs: []}").is_empty());
        assert!(found("metadata: {name: a}").is_empty());
    }

    #[test]
    fn external_ips_are_cve_2020_8554() {
        let f =
            found("metadata: {name: a}\nspec: {externalIPs: [203.0.113.7], ports: [{port: 80}]}");
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].0, f[0].1), (Rule::ServiceExternalIps, Severity::High));
        assert!(f[0].2.contains("203.0.113.7") && f[0].2.contains("CVE-2020-8554"));
    }

    #[test]
    fn load_balancer_severity_follows_exposure() {
        let open = found("metadata: {name: a}\nspec: {type: LoadBalancer, ports: [{port: 443}]}");
        assert_eq!(
            (open[0].0, open[0].1),
            (Rule::ServiceLoadBalancer, Severity::High)
        );
        assert!(open[0].2.contains("443/TCP"), "{}", open[0].2);
        let any = found("metadata: {name: a}\nspec: {type: LoadBalancer, loadBalancerSourceRanges: [10.0.0.0/8, 0.0.0.0/0]}");
        assert_eq!(any[0].1, Severity::High);
        let ranged = found("metadata: {name: a}\nspec: {type: LoadBalancer, loadBalancerSourceRanges: [198.51.100.0/24]}");
        assert_eq!(ranged[0].1, Severity::Medium);
        assert!(ranged[0].2.contains("198.51.100.0/24"));
        let internal = found("metadata: {name: a, annotations: {networking.gke.io/load-balancer-type: Internal}}\nspec: {type: LoadBalancer}");
        assert_eq!(internal[0].1, Severity::Low);
        // A look-alike value does not make it internal.
        let not = found("metadata: {name: a, annotations: {service.beta.kubernetes.io/aws-load-balancer-internal: \"false\"}}\nspec: {type: LoadBalancer}");
        assert_eq!(not[0].1, Severity::High);
    }

    #[test]
    fn node_ports_name_the_node_port() {
        let f = found("metadata: {name: a}\nspec: {type: NodePort, ports: [{port: 80, nodePort: 30080, protocol: UDP}]}");
        assert_eq!((f[0].0, f[0].1), (Rule::ServiceNodePort, Severity::Medium));
        assert!(f[0].2.contains("30080/UDP"), "{}", f[0].2);
    }

    #[test]
    fn a_load_balancer_with_external_ips_reports_both() {
        let f = found("metadata: {name: a}\nspec: {type: LoadBalancer, externalIPs: [192.0.2.1]}");
        let rules: Vec<Rule> = f.iter().map(|x| x.0).collect();
        assert_eq!(rules, [Rule::ServiceExternalIps, Rule::ServiceLoadBalancer]);
    }
}
