//! Host access checks (baseline): HostProcess, host namespaces, host ports, probe/lifecycle hosts.
//!
//! Version history:
//! - windowsHostProcess, hostNamespaces, hostPorts: unchanged since v1.0.
//! - hostProbesAndHostLifecycle: added in v1.34.

use super::super::finding::Violation;
use super::super::rules::Rule;
use super::visit::{Ctr, Cx};
use k8s_openapi::api::core::v1::{HTTPGetAction, TCPSocketAction};

/// First version with the probe / lifecycle-handler host check.
pub(super) const PROBES_SINCE: u32 = 34;

/// `securityContext.windowsOptions.hostProcess` must not be true, on the pod or any container.
pub(super) fn host_process(cx: &Cx<'_>, out: &mut Vec<Violation>) {
    const FIELD: &str = "securityContext.windowsOptions.hostProcess";
    let pod_hp = cx
        .pod_sc()
        .and_then(|sc| sc.windows_options.as_ref())
        .and_then(|w| w.host_process);
    if pod_hp == Some(true) {
        out.push(Violation::new(
            Rule::HostProcess,
            cx.spec_field(FIELD),
            "pod must not set securityContext.windowsOptions.hostProcess=true; remove it or set it to false",
        ));
    }
    for c in cx.containers() {
        let hp =
            c.sc.and_then(|sc| sc.windows_options.as_ref())
                .and_then(|w| w.host_process);
        if hp == Some(true) {
            out.push(Violation::new(
                Rule::HostProcess,
                c.field(cx, FIELD),
                format!(
                    "{} must not set securityContext.windowsOptions.hostProcess=true; remove it or set it to false",
                    c.label()
                ),
            ));
        }
    }
}

/// `hostNetwork`, `hostPID` and `hostIPC` must be unset or false.
pub(super) fn host_namespaces(cx: &Cx<'_>, out: &mut Vec<Violation>) {
    let spec = cx.spec();
    for (set, name) in [
        (spec.host_network, "hostNetwork"),
        (spec.host_pid, "hostPID"),
        (spec.host_ipc, "hostIPC"),
    ] {
        if set == Some(true) {
            out.push(Violation::new(
                Rule::HostNamespaces,
                cx.spec_field(name),
                format!("pod must not set {name}=true; remove it or set it to false"),
            ));
        }
    }
}

/// No container port may set a non-zero `hostPort`.
pub(super) fn host_ports(cx: &Cx<'_>, out: &mut Vec<Violation>) {
    for c in cx.containers() {
        for (i, p) in c.ports.iter().enumerate() {
            match p.host_port {
                Some(hp) if hp != 0 => out.push(Violation::new(
                    Rule::HostPorts,
                    c.field(cx, &format!("ports[{i}].hostPort")),
                    format!("{} must not bind hostPort {hp}; remove ports[{i}].hostPort (use a Service instead)", c.label()),
                )),
                _ => {}
            }
        }
    }
}

/// Probes and lifecycle handlers must not name a `host` (httpGet or tcpSocket).
pub(super) fn host_probes(cx: &Cx<'_>, out: &mut Vec<Violation>) {
    for c in cx.containers() {
        for (name, probe) in [
            ("livenessProbe", c.liveness),
            ("readinessProbe", c.readiness),
            ("startupProbe", c.startup),
        ] {
            if let Some(p) = probe {
                handler_hosts(
                    cx,
                    &c,
                    name,
                    p.http_get.as_ref(),
                    p.tcp_socket.as_ref(),
                    out,
                );
            }
        }
        if let Some(lc) = c.lifecycle {
            for (name, handler) in [
                ("lifecycle.postStart", lc.post_start.as_ref()),
                ("lifecycle.preStop", lc.pre_stop.as_ref()),
            ] {
                if let Some(h) = handler {
                    handler_hosts(
                        cx,
                        &c,
                        name,
                        h.http_get.as_ref(),
                        h.tcp_socket.as_ref(),
                        out,
                    );
                }
            }
        }
    }
}

fn handler_hosts(
    cx: &Cx<'_>,
    c: &Ctr<'_>,
    name: &str,
    http: Option<&HTTPGetAction>,
    tcp: Option<&TCPSocketAction>,
    out: &mut Vec<Violation>,
) {
    let hosts = [
        ("httpGet", http.and_then(|a| a.host.as_deref())),
        ("tcpSocket", tcp.and_then(|a| a.host.as_deref())),
    ];
    for (action, host) in hosts {
        if let Some(host) = host.filter(|h| !h.is_empty()) {
            out.push(Violation::new(
                Rule::HostProbes,
                c.field(cx, &format!("{name}.{action}.host")),
                format!(
                    "{} must not set {name}.{action}.host (is {host:?}); remove it so the kubelet targets the pod",
                    c.label()
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{Level, Version};
    use super::*;

    #[test]
    fn host_namespaces_one_violation_per_field() {
        let spec = spec(serde_json::json!({
            "hostNetwork": true, "hostPID": false, "hostIPC": true,
            "containers": [{"name": "app"}],
        }));
        let v = run_on(&spec, Level::Baseline, Version::Latest);
        assert_eq!(fields(&v), ["spec.hostNetwork", "spec.hostIPC"]);
        assert!(v.iter().all(|v| v.rule == Rule::HostNamespaces));
    }

    #[test]
    fn host_ports_per_port_and_ephemeral_containers() {
        let spec = spec(serde_json::json!({
            "initContainers": [{"name": "init", "ports": [
                {"containerPort": 1}, {"containerPort": 2, "hostPort": 0}, {"containerPort": 3, "hostPort": 8080}]}],
            "containers": [{"name": "app"}],
            "ephemeralContainers": [{"name": "dbg", "ports": [{"containerPort": 9, "hostPort": 9}]}],
        }));
        let v = run_on(&spec, Level::Baseline, Version::Minor(0));
        assert_eq!(
            fields(&v),
            [
                "spec.initContainers[0].ports[2].hostPort",
                "spec.ephemeralContainers[0].ports[0].hostPort"
            ]
        );
        assert!(
            v[1].message.starts_with("ephemeral container \"dbg\""),
            "{}",
            v[1].message
        );
    }

    #[test]
    fn host_probes_only_from_v1_34() {
        let spec = spec(serde_json::json!({
            "containers": [{"name": "app",
                "livenessProbe": {"httpGet": {"port": 80, "host": "10.0.0.1"}},
                "readinessProbe": {"tcpSocket": {"port": 80, "host": ""}},
                "lifecycle": {"preStop": {"tcpSocket": {"port": 80, "host": "example.com"}}}}],
        }));
        assert!(run_on(&spec, Level::Baseline, Version::Minor(33)).is_empty());
        let v = run_on(&spec, Level::Baseline, Version::Minor(34));
        assert_eq!(
            fields(&v),
            [
                "spec.containers[0].livenessProbe.httpGet.host",
                "spec.containers[0].lifecycle.preStop.tcpSocket.host"
            ]
        );
        assert!(v.iter().all(|v| v.rule == Rule::HostProbes));
    }

    #[test]
    fn host_process_pod_and_container() {
        let spec = spec(serde_json::json!({
            "securityContext": {"windowsOptions": {"hostProcess": true}},
            "containers": [{"name": "a", "securityContext": {"windowsOptions": {"hostProcess": false}}},
                           {"name": "b", "securityContext": {"windowsOptions": {"hostProcess": true}}}],
        }));
        let v = run_on(&spec, Level::Baseline, Version::Latest);
        assert_eq!(
            fields(&v),
            [
                "spec.securityContext.windowsOptions.hostProcess",
                "spec.containers[1].securityContext.windowsOptions.hostProcess"
            ]
        );
    }
}
