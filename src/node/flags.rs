//! Command lines as the components parse them (spf13/pflag, and Go's `flag` for etcd).
//!
//! `--name=value`, `--name value` and, for boolean flags, a bare `--name` (true). A single dash
//! works too for long names (Go's `flag`, which etcd uses, accepts both). `--` ends the flags.
//! A flag given twice keeps every occurrence: scalars take the last, as pflag does.

use std::collections::BTreeMap;

/// Flags that take no separate value: `--profiling false` would make `false` a positional
/// argument, so a bare boolean flag must not swallow the next word.
const BOOLEAN: &[&str] = &[
    "allow-privileged",
    "alsologtostderr",
    "anonymous-auth",
    "auto-tls",
    "cgroups-per-qos",
    "client-cert-auth",
    "enable-bootstrap-token-auth",
    "enable-debugging-handlers",
    "enable-priority-and-fairness",
    "enable-server",
    "fail-swap-on",
    "insecure-skip-tls-verify",
    "leader-elect",
    "logtostderr",
    "make-iptables-util-chains",
    "peer-auto-tls",
    "peer-client-cert-auth",
    "profiling",
    "protect-kernel-defaults",
    "register-node",
    "rotate-certificates",
    "rotate-server-certificates",
    "seccomp-default",
    "serialize-image-pulls",
    "service-account-extend-token-expiration",
    "service-account-lookup",
    "strict-reconfig-check",
    "use-service-account-credentials",
];

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    values: BTreeMap<String, Vec<String>>,
}

impl Flags {
    /// Parses the arguments after the program name.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Flags {
        let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut i = 0;
        while i < args.len() {
            let arg = args[i].as_ref();
            i += 1;
            if arg == "--" {
                break;
            }
            let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                continue; // a positional argument
            };
            if body.is_empty() {
                continue;
            }
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, v.to_string()),
                None if BOOLEAN.contains(&body) => (body, "true".to_string()),
                None => match args.get(i).map(AsRef::as_ref) {
                    Some(next) if !next.starts_with('-') || next == "-" => {
                        i += 1;
                        (body, next.to_string())
                    }
                    // pflag would reject this; the component would not have started.
                    _ => (body, String::new()),
                },
            };
            values.entry(name.to_string()).or_default().push(value);
        }
        Flags { values }
    }

    /// The value in effect: the last occurrence.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// Every occurrence, in order (list flags such as `--feature-gates` accumulate).
    pub fn all(&self, name: &str) -> &[String] {
        self.values.get(name).map_or(&[], Vec::as_slice)
    }
}

/// Items of a comma-separated list value, trimmed, empty items dropped.
pub fn list(value: &str) -> Vec<&str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// `--feature-gates=A=true,B=false` given any number of times: the last setting of each gate.
pub fn feature_gates(occurrences: &[String]) -> BTreeMap<String, bool> {
    let mut gates = BTreeMap::new();
    for occurrence in occurrences {
        for item in list(occurrence) {
            if let Some((gate, on)) = item.split_once('=') {
                if let Some(on) = parse_bool(on) {
                    gates.insert(gate.trim().to_string(), on);
                }
            }
        }
    }
    gates
}

/// Go's strconv.ParseBool, which pflag uses for boolean flags.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equals_space_bare_boolean_and_last_wins() {
        let f = Flags::parse(&[
            "--authorization-mode=Node,RBAC",
            "--profiling",
            "--audit-log-path",
            "/var/log/audit.log",
            "-v=2",
            "--profiling=false",
            "--anonymous-auth",
            "positional",
            "--",
            "--after=ignored",
        ]);
        assert_eq!(f.get("authorization-mode"), Some("Node,RBAC"));
        assert_eq!(f.get("audit-log-path"), Some("/var/log/audit.log"));
        assert_eq!(f.get("profiling"), Some("false"));
        assert_eq!(f.all("profiling"), ["true", "false"]);
        assert_eq!(f.get("anonymous-auth"), Some("true"));
        assert_eq!(f.get("v"), Some("2"));
        assert_eq!(f.get("after"), None);
    }

    #[test]
    fn single_dash_long_names_as_etcd_accepts_them() {
        let f = Flags::parse(&["-client-cert-auth", "-data-dir", "/var/lib/etcd"]);
        assert_eq!(f.get("client-cert-auth"), Some("true"));
        assert_eq!(f.get("data-dir"), Some("/var/lib/etcd"));
    }

    #[test]
    fn a_value_flag_does_not_swallow_the_next_flag() {
        let f = Flags::parse(&["--token-auth-file", "--profiling=false"]);
        assert_eq!(f.get("token-auth-file"), Some(""));
        assert_eq!(f.get("profiling"), Some("false"));
    }

    #[test]
    fn feature_gates_merge_across_occurrences() {
        let gates = feature_gates(&[
            "A=true, RotateKubeletServerCertificate=true".to_string(),
            "RotateKubeletServerCertificate=false,bad".to_string(),
        ]);
        assert_eq!(gates.get("A"), Some(&true));
        assert_eq!(gates.get("RotateKubeletServerCertificate"), Some(&false));
        assert_eq!(gates.len(), 2);
    }
}
