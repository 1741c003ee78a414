//! Sysctls (baseline): only namespaced, pod-isolated ("safe") sysctls may be set.
//!
//! Version history of the allowed set:
//! - v1.0: kernel.shm_rmid_forced, net.ipv4.ip_local_port_range, net.ipv4.tcp_syncookies,
//!   net.ipv4.ping_group_range, net.ipv4.ip_unprivileged_port_start
//! - v1.27: + net.ipv4.ip_local_reserved_ports
//! - v1.29: + net.ipv4.tcp_keepalive_time, net.ipv4.tcp_fin_timeout,
//!   net.ipv4.tcp_keepalive_intvl, net.ipv4.tcp_keepalive_probes
//! - v1.32: + net.ipv4.tcp_rmem, net.ipv4.tcp_wmem
//! - v1.37: + net.ipv4.tcp_slow_start_after_idle, net.ipv4.tcp_notsent_lowat

use super::super::finding::Violation;
use super::super::rules::Rule;
use super::visit::Cx;

/// The first minor version in which `name` is allowed, if ever.
fn allowed_since(name: &str) -> Option<u32> {
    Some(match name {
        "kernel.shm_rmid_forced"
        | "net.ipv4.ip_local_port_range"
        | "net.ipv4.tcp_syncookies"
        | "net.ipv4.ping_group_range"
        | "net.ipv4.ip_unprivileged_port_start" => 0,
        "net.ipv4.ip_local_reserved_ports" => 27,
        "net.ipv4.tcp_keepalive_time"
        | "net.ipv4.tcp_fin_timeout"
        | "net.ipv4.tcp_keepalive_intvl"
        | "net.ipv4.tcp_keepalive_probes" => 29,
        "net.ipv4.tcp_rmem" | "net.ipv4.tcp_wmem" => 32,
        "net.ipv4.tcp_slow_start_after_idle" | "net.ipv4.tcp_notsent_lowat" => 37,
        _ => return None,
    })
}

pub(super) fn baseline(cx: &Cx<'_>, out: &mut Vec<Violation>) {
    let sysctls = cx
        .pod_sc()
        .and_then(|sc| sc.sysctls.as_deref())
        .unwrap_or_default();
    for (i, s) in sysctls.iter().enumerate() {
        let ok = allowed_since(&s.name).is_some_and(|since| cx.minor >= since);
        if !ok {
            let hint = match allowed_since(&s.name) {
                Some(since) => format!(" (allowed from PSS v1.{since})"),
                None => String::new(),
            };
            out.push(Violation::new(
                Rule::Sysctls,
                cx.spec_field(&format!("securityContext.sysctls[{i}].name")),
                format!(
                    "pod must not set unsafe sysctl {:?}{hint}; remove it",
                    s.name
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
    use serde_json::json;

    #[test]
    fn allowed_set_grows_by_version() {
        let s = spec(json!({
            "securityContext": {"sysctls": [
                {"name": "kernel.shm_rmid_forced", "value": "1"},
                {"name": "net.ipv4.ip_local_reserved_ports", "value": "1"},
                {"name": "net.ipv4.tcp_wmem", "value": "1"},
                {"name": "net.ipv4.tcp_notsent_lowat", "value": "1"},
                {"name": "kernel.msgmax", "value": "1"}]},
            "containers": [{"name": "app"}],
        }));
        let n = |minor| run_on(&s, Level::Baseline, Version::Minor(minor)).len();
        assert_eq!(
            [n(26), n(27), n(31), n(32), n(36), n(37)],
            [4, 3, 3, 2, 2, 1]
        );
        let v = run_on(&s, Level::Restricted, Version::Latest);
        let v: Vec<_> = v.iter().filter(|v| v.rule == Rule::Sysctls).collect();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].field, "spec.securityContext.sysctls[4].name");
    }
}
