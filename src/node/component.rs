//! The Kubernetes components running on the node, and each setting's value in effect, resolved
//! the way the component itself resolves it:
//!
//! - kube-apiserver, kube-controller-manager: the flag, else the built-in default;
//! - kubelet: the flag, else the `--config` file merged with the `--config-dir` drop-ins, else
//!   the default, which differs with and without a config file (without one the legacy flag
//!   defaults apply: anonymous auth on, `AlwaysAllow`, read-only port 10255);
//! - kube-scheduler, kube-proxy: with `--config`, the file replaces the flags it covers;
//! - etcd: with `--config-file`, the file alone (etcd ignores flags and environment then); else
//!   the flag, else the `ETCD_*` environment variable, else the default.

use super::flags::{self, Flags};
use super::host::{Host, Process};
use serde::Serialize;
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    ApiServer,
    ControllerManager,
    Scheduler,
    Etcd,
    Kubelet,
    Proxy,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::ApiServer,
        Kind::ControllerManager,
        Kind::Scheduler,
        Kind::Etcd,
        Kind::Kubelet,
        Kind::Proxy,
    ];

    pub fn binary(self) -> &'static str {
        match self {
            Kind::ApiServer => "kube-apiserver",
            Kind::ControllerManager => "kube-controller-manager",
            Kind::Scheduler => "kube-scheduler",
            Kind::Etcd => "etcd",
            Kind::Kubelet => "kubelet",
            Kind::Proxy => "kube-proxy",
        }
    }

    /// The flag naming the component's configuration file, if it has one.
    fn config_flag(self) -> Option<&'static str> {
        match self {
            Kind::Kubelet | Kind::Scheduler | Kind::Proxy => Some("config"),
            Kind::Etcd => Some("config-file"),
            Kind::ApiServer | Kind::ControllerManager => None,
        }
    }

    /// Which component a command line runs, and where its flags start. `hyperkube NAME` and
    /// the `kube-NAME` aliases it accepts count too.
    pub fn of(argv: &[String]) -> Option<(Kind, usize)> {
        let base = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
        let first = base(argv.first()?);
        let (name, skip) = if first == "hyperkube" {
            (base(argv.get(1)?), 2)
        } else {
            (first, 1)
        };
        // hyperkube also takes the names without `kube-`; alone, only the binaries' own names
        // count (a program called `proxy` is not kube-proxy).
        Kind::ALL
            .into_iter()
            .find(|k| {
                name == k.binary()
                    || (skip == 2 && Some(name.as_str()) == k.binary().strip_prefix("kube-"))
            })
            .map(|k| (k, skip))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.binary())
    }
}

/// A setting: its flag, where it lives in the component's config file (dotted path), and its
/// defaults.
#[derive(Clone, Copy, Debug)]
pub struct Key {
    pub flag: &'static str,
    pub config: Option<&'static str>,
    /// The default when no config file is used (or the component has none).
    pub default: Option<&'static str>,
    /// The default when a config file is used, if it differs.
    pub config_default: Option<&'static str>,
}

impl Key {
    pub const fn flag(flag: &'static str, default: Option<&'static str>) -> Key {
        Key {
            flag,
            config: None,
            default,
            config_default: None,
        }
    }

    pub const fn with_config(
        flag: &'static str,
        config: &'static str,
        default: Option<&'static str>,
        config_default: Option<&'static str>,
    ) -> Key {
        Key {
            flag,
            config: Some(config),
            default,
            config_default,
        }
    }
}

/// Where a value in effect came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Flag(&'static str),
    Config(PathBuf, &'static str),
    Env(String),
    Default,
    Unset,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(name) => write!(f, "--{name}"),
            Origin::Config(path, key) => write!(f, "{key} in {}", path.display()),
            Origin::Env(name) => write!(f, "${name}"),
            Origin::Default => f.write_str("default"),
            Origin::Unset => f.write_str("not set"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    pub value: Option<String>,
    pub origin: Origin,
}

/// The component's config file: its path and its content (or why it could not be read).
#[derive(Clone, Debug)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub content: Result<Value, String>,
}

#[derive(Clone, Debug)]
pub struct Component {
    pub kind: Kind,
    pub process: Process,
    pub flags: Flags,
    pub config: Option<ConfigFile>,
}

impl Component {
    pub fn new(host: &Host, kind: Kind, skip: usize, process: Process) -> Component {
        let flags = Flags::parse(&process.argv[skip.min(process.argv.len())..]);
        let config = kind
            .config_flag()
            .and_then(|f| flags.get(f))
            .filter(|p| !p.is_empty())
            .map(|p| {
                let path = process.absolute(p);
                let mut content = load_yaml(host, &path);
                if kind == Kind::Kubelet {
                    if let (Ok(base), Some(dir)) = (&mut content, flags.get("config-dir")) {
                        if let Err(e) = merge_drop_ins(host, &process.absolute(dir), base) {
                            content = Err(e);
                        }
                    }
                }
                ConfigFile { path, content }
            });
        Component {
            kind,
            process,
            flags,
            config,
        }
    }

    /// The value in effect, or an error when the config file that would decide it is unreadable.
    pub fn setting(&self, key: &Key) -> Result<Setting, String> {
        let from_flag = || {
            self.flags.get(key.flag).map(|v| Setting {
                value: Some(v.to_string()),
                origin: Origin::Flag(key.flag),
            })
        };
        let from_config = || -> Result<Option<Setting>, String> {
            let (Some(config), Some(path)) = (&self.config, key.config) else {
                return Ok(None);
            };
            let content = config
                .content
                .as_ref()
                .map_err(|e| format!("config file {}: {e}", config.path.display()))?;
            Ok(lookup(content, path).map(|v| Setting {
                value: Some(v),
                origin: Origin::Config(config.path.clone(), path),
            }))
        };
        let default = || {
            let value = match (&self.config, key.config_default) {
                (Some(_), Some(d)) => Some(d),
                _ => key.default,
            };
            Setting {
                value: value.map(str::to_string),
                origin: if value.is_some() {
                    Origin::Default
                } else {
                    Origin::Unset
                },
            }
        };
        let config_decides = self.config.is_some() && key.config.is_some();
        let found = match self.kind {
            Kind::Kubelet => match from_flag() {
                Some(s) => Some(s),
                None => from_config()?,
            },
            Kind::Scheduler | Kind::Proxy | Kind::Etcd if config_decides => from_config()?,
            Kind::Etcd if self.config.is_some() => None,
            Kind::Etcd => from_flag().or_else(|| {
                let name = format!("ETCD_{}", key.flag.replace('-', "_").to_uppercase());
                self.process.env(&name).map(|v| Setting {
                    value: Some(v.to_string()),
                    origin: Origin::Env(name),
                })
            }),
            _ => from_flag(),
        };
        Ok(found.unwrap_or_else(default))
    }

    /// A path the component was given, made absolute against its working directory.
    pub fn path(&self, key: &Key) -> Result<Option<PathBuf>, String> {
        Ok(self
            .setting(key)?
            .value
            .filter(|v| !v.is_empty())
            .map(|v| self.process.absolute(&v)))
    }
}

fn load_yaml(host: &Host, path: &Path) -> Result<Value, String> {
    let text = host.read(path)?;
    serde_yaml_ng::from_str::<Value>(&text).map_err(|e| format!("not valid YAML: {e}"))
}

/// The kubelet's `--config-dir`: `*.conf` files in lexical order, each merged over the config.
fn merge_drop_ins(host: &Host, dir: &Path, base: &mut Value) -> Result<(), String> {
    for file in host.list(dir)? {
        if file.extension().is_some_and(|e| e == "conf") {
            let overlay =
                load_yaml(host, &file).map_err(|e| format!("drop-in {}: {e}", file.display()))?;
            merge(base, overlay);
        }
    }
    Ok(())
}

fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

/// A dotted path's value as a flag-like string (lists comma-joined).
pub fn lookup(root: &Value, path: &str) -> Option<String> {
    let mut v = root;
    for part in path.split('.') {
        v = v.get(part)?;
    }
    scalar(v)
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(scalar)
                .collect::<Vec<_>>()
                .join(","),
        ),
        Value::Object(_) => Some(v.to_string()),
    }
}

/// The components found among the node's processes: the first (lowest pid) of each kind, and a
/// note for each kind that runs more than once.
pub fn discover(host: &Host) -> (Vec<Component>, Vec<String>) {
    let mut found: Vec<Component> = Vec::new();
    let mut notes = Vec::new();
    for process in host.processes() {
        let Some((kind, skip)) = Kind::of(&process.argv) else {
            continue;
        };
        if !host.selected(&process) {
            continue;
        }
        if found.iter().any(|c| c.kind == kind) {
            notes.push(format!(
                "{kind} runs more than once; pid {} is not checked",
                process.pid
            ));
            continue;
        }
        found.push(Component::new(host, kind, skip, process));
    }
    found.sort_by_key(|c| c.kind);
    (found, notes)
}

/// `true`/`false` however the component spells it.
pub fn truthy(value: &str) -> Option<bool> {
    flags::parse_bool(value)
}
