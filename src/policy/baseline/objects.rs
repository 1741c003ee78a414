//! What the API server checks on the objects a baseline generates, checked on the spec itself:
//! a value the CRD schema lets through but a NetworkPolicy, a binding's selector or a CEL
//! expression cannot hold would otherwise be refused at every reconcile (or, in a CEL string
//! literal, change the policy's meaning). Each problem names the spec field.

use super::BaselineError;
use crate::crd::SecurityBaselineSpec;
use crate::policy::netpol::compile::compile as compile_policy;
use crate::policy::selector::label_value_problem;
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub fn check(spec: &SecurityBaselineSpec) -> Result<(), BaselineError> {
    let invalid = |field: String, problem: String| Err(BaselineError::Invalid { field, problem });
    for (i, ns) in spec.exclude_namespaces.iter().enumerate() {
        // Excluded names become values of the admission binding's namespace selector.
        if let Some(problem) = dns_label_problem(ns).or_else(|| label_value_problem(ns)) {
            return invalid(format!("spec.excludeNamespaces[{i}]"), problem);
        }
    }
    if let Some(sb) = spec.pod_security.as_ref().and_then(|p| p.sandbox.as_ref()) {
        for (i, name) in sb.runtime_class_names.iter().enumerate() {
            // Quoted into the admission policy's CEL expression: only a real RuntimeClass name.
            if let Some(problem) = dns_subdomain_problem(name) {
                return invalid(
                    format!("spec.podSecurity.sandbox.runtimeClassNames[{i}]"),
                    problem,
                );
            }
        }
    }
    profile_problems(spec)?;
    let accounts = spec.rbac.iter().flat_map(|r| r.service_accounts.iter());
    for (i, sa) in accounts.enumerate() {
        if let Some(problem) = dns_subdomain_problem(&sa.name) {
            return invalid(format!("spec.rbac.serviceAccounts[{i}].name"), problem);
        }
    }
    let Some(net) = &spec.network else {
        return Ok(());
    };
    for (i, rule) in net.allow.iter().enumerate() {
        let policy = policy(
            rule.pod_selector.clone(),
            rule.from.clone(),
            rule.to.clone(),
            rule.ports.clone(),
        );
        policy_problem(&policy, &format!("spec.network.allow[{i}]"), "from")?;
    }
    if !net.webhook_sources.is_empty() {
        let sources = net.webhook_sources.clone();
        let policy = policy(LabelSelector::default(), sources, Vec::new(), Vec::new());
        policy_problem(&policy, "spec.network", "webhookSources")?;
    }
    Ok(())
}

/// A NetworkPolicy with the rule's selector, peers and ports, as the generator writes them.
fn policy(
    pod_selector: LabelSelector,
    from: Vec<NetworkPolicyPeer>,
    to: Vec<NetworkPolicyPeer>,
    ports: Vec<NetworkPolicyPort>,
) -> NetworkPolicy {
    let ports = (!ports.is_empty()).then_some(ports);
    NetworkPolicy {
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pod_selector),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: (!from.is_empty()).then_some(from),
                ports: ports.clone(),
            }]),
            egress: Some(vec![NetworkPolicyEgressRule {
                to: (!to.is_empty()).then_some(to),
                ports,
            }]),
        }),
        ..Default::default()
    }
}

/// The policy's first problem, its field put back where the spec has it (`from_key`: where the
/// spec keeps the ingress peers).
fn policy_problem(policy: &NetworkPolicy, base: &str, from_key: &str) -> Result<(), BaselineError> {
    let Err(e) = compile_policy(policy) else {
        return Ok(());
    };
    let field = [
        ("spec.podSelector", "podSelector"),
        ("spec.ingress[0].from", from_key),
        ("spec.egress[0].to", "to"),
        ("spec.ingress[0].ports", "ports"),
        ("spec.egress[0].ports", "ports"),
    ]
    .iter()
    .find_map(|(generated, ours)| {
        e.field
            .strip_prefix(generated)
            .map(|rest| format!("{base}.{ours}{rest}"))
    })
    .unwrap_or_else(|| format!("{base} ({})", e.field));
    Err(BaselineError::Invalid {
        field,
        problem: e.problem,
    })
}

/// Profile requirements become admission policies named after them, with their profile names
/// and SELinux types quoted into CEL: only names that are what they claim to be.
fn profile_problems(spec: &SecurityBaselineSpec) -> Result<(), BaselineError> {
    let profiles = spec.pod_security.iter().flat_map(|p| p.profiles.iter());
    let mut seen = std::collections::BTreeSet::new();
    for (i, p) in profiles.enumerate() {
        let at = |rest: &str| format!("spec.podSecurity.profiles[{i}].{rest}");
        let invalid =
            |field: String, problem: String| Err(BaselineError::Invalid { field, problem });
        if let Some(problem) = dns_label_problem(&p.name) {
            return invalid(
                at("name"),
                problem.replace("a namespace name", "a DNS label"),
            );
        }
        if p.name.len() > 40 {
            return invalid(
                at("name"),
                format!("{:?} is longer than 40 characters", p.name),
            );
        }
        if !seen.insert(p.name.as_str()) {
            return invalid(at("name"), format!("{:?} names two requirements", p.name));
        }
        if p.seccomp.is_none() && p.app_armor.is_none() && p.se_linux.is_none() {
            return invalid(
                at("name"),
                "a profile requirement needs seccomp, appArmor or seLinux".into(),
            );
        }
        let typed = [("seccomp", &p.seccomp), ("appArmor", &p.app_armor)];
        for (what, req) in typed {
            let names = req.iter().flat_map(|r| r.localhost_profiles.iter());
            for (j, name) in names.enumerate() {
                if let Some(problem) = localhost_profile_problem(name) {
                    return invalid(at(&format!("{what}.localhostProfiles[{j}]")), problem);
                }
            }
        }
        if let Some(se) = &p.se_linux {
            if se.types.is_empty() {
                return invalid(at("seLinux.types"), "name at least one SELinux type".into());
            }
            for (j, t) in se.types.iter().enumerate() {
                let ok = !t.is_empty()
                    && t.len() <= 128
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
                if !ok {
                    return invalid(
                        at(&format!("seLinux.types[{j}]")),
                        format!(
                            "{t:?} is not an SELinux type: at most 128 letters, digits, '_' or '.'"
                        ),
                    );
                }
            }
        }
    }
    Ok(())
}

/// A Localhost profile as the kubelet accepts it: a descending relative path (seccomp) or a
/// profile name (AppArmor), of letters, digits, `.`, `_`, `-` and `/`.
fn localhost_profile_problem(name: &str) -> Option<String> {
    let chars_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
    let descends = !name.starts_with('/') && name.split('/').all(|c| !c.is_empty() && c != "..");
    (name.is_empty() || name.len() > 255 || !chars_ok || !descends).then(|| {
        format!("{name:?} is not a Localhost profile: a relative path of at most 255 letters, digits, '.', '_', '-' and '/', without '..'")
    })
}

fn dns_label_ok(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

/// A DNS-1123 label (a namespace name).
fn dns_label_problem(s: &str) -> Option<String> {
    (!dns_label_ok(s)).then(|| {
        format!("{s:?} is not a namespace name: at most 63 lowercase alphanumerics or '-', starting and ending with an alphanumeric")
    })
}

/// A DNS-1123 subdomain (object names): dot-separated labels, at most 253 characters.
fn dns_subdomain_problem(s: &str) -> Option<String> {
    let ok = s.len() <= 253 && s.split('.').all(dns_label_ok);
    (!ok).then(|| {
        format!("{s:?} is not a DNS subdomain name: lowercase alphanumerics, '-' and '.', at most 253 characters")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> SecurityBaselineSpec {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn problem(yaml: &str) -> String {
        check(&spec(yaml)).unwrap_err().to_string()
    }

    #[test]
    fn what_a_generated_object_could_not_hold_is_an_invalid_spec_naming_the_field() {
        for (yaml, field) in [
            (
                "network: {allow: [{name: a, from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]}",
                "spec.network.allow[0].from[0].ipBlock.cidr: ",
            ),
            (
                "network: {allow: [{name: a, to: [{podSelector: {}}], ports: [{port: 70000}]}]}",
                "spec.network.allow[0].ports[0].port: ",
            ),
            (
                "network: {allow: [{name: a, podSelector: {matchLabels: {app: '*'}}, to: [{podSelector: {}}]}]}",
                "spec.network.allow[0].podSelector.matchLabels.app: ",
            ),
            (
                "network: {allow: [{name: a, from: [{podSelector: {}}], ports: [{protocol: ICMP}]}]}",
                "spec.network.allow[0].ports[0].protocol: ",
            ),
            (
                "network: {webhookSources: [{namespaceSelector: {matchExpressions: [{key: x, operator: In, values: ['a b']}]}}]}",
                "spec.network.webhookSources[0].namespaceSelector.matchExpressions[0].values[0]: ",
            ),
            ("excludeNamespaces: [kube-system, '*']", "spec.excludeNamespaces[1]: "),
        ] {
            let p = problem(yaml);
            assert!(p.starts_with(field), "{yaml}: {p}");
        }
    }

    #[test]
    fn a_quote_cannot_reach_the_admission_policys_cel_expression() {
        let injected = r#"podSecurity: {sandbox: {workloadSelector: {}, runtimeClassNames: ["gvisor'] || true || ['"]}}"#;
        assert!(problem(injected).starts_with("spec.podSecurity.sandbox.runtimeClassNames[0]: "));
        assert!(
            problem("rbac: {serviceAccounts: [{name: \"a'\", learn: true}]}")
                .starts_with("spec.rbac.serviceAccounts[0].name: ")
        );
    }

    #[test]
    fn profile_requirements_hold_only_names_that_are_what_they_claim() {
        for (yaml, field) in [
            ("podSecurity: {profiles: [{name: Pay, workloadSelector: {}, seccomp: {type: Localhost}}]}", "spec.podSecurity.profiles[0].name: "),
            ("podSecurity: {profiles: [{name: a, workloadSelector: {}}]}", "spec.podSecurity.profiles[0].name: a profile requirement needs"),
            ("podSecurity: {profiles: [{name: a, workloadSelector: {}, seLinux: {types: [x]}}, {name: a, workloadSelector: {}, seLinux: {types: [y]}}]}", "spec.podSecurity.profiles[1].name: "),
            ("podSecurity: {profiles: [{name: a, workloadSelector: {}, seccomp: {type: Localhost, localhostProfiles: [\"x' || true || '\"]}}]}", "spec.podSecurity.profiles[0].seccomp.localhostProfiles[0]: "),
            ("podSecurity: {profiles: [{name: a, workloadSelector: {}, appArmor: {type: Localhost, localhostProfiles: [ok, ../../etc]}}]}", "spec.podSecurity.profiles[0].appArmor.localhostProfiles[1]: "),
            ("podSecurity: {profiles: [{name: a, workloadSelector: {}, seLinux: {types: []}}]}", "spec.podSecurity.profiles[0].seLinux.types: "),
            ("podSecurity: {profiles: [{name: a, workloadSelector: {}, seLinux: {types: [\"t'\"]}}]}", "spec.podSecurity.profiles[0].seLinux.types[0]: "),
        ] {
            let p = problem(yaml);
            assert!(p.starts_with(field), "{yaml}: {p}");
        }
        check(&spec("podSecurity: {profiles: [{name: payments, workloadSelector: {matchLabels: {app: pay}}, seccomp: {type: Localhost, localhostProfiles: [operator/pay.json]}, appArmor: {type: RuntimeDefault}, seLinux: {types: [container_t]}}]}")).unwrap();
    }

    #[test]
    fn the_sample_and_ordinary_specs_pass() {
        let sample: crate::crd::SecurityBaseline =
            serde_yaml_ng::from_str(include_str!("../../../config/baseline.yaml")).unwrap();
        check(&sample.spec).unwrap();
        check(&spec("network: {allow: [{name: a, from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}], ports: [{port: dns, protocol: UDP}, {port: 8000, endPort: 8080}]}]}")).unwrap();
        check(&spec("excludeNamespaces: [kube-system, team-a]")).unwrap();
    }
}
