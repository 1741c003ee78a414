//! The files a check is about, found where the running components say they are (their flags
//! and config files), with the kubeadm paths as the fallback kube-bench also uses.

use super::component::{Key, Kind};
use super::Node;
use std::path::{Path, PathBuf};

const KUBEADM_MANIFESTS: &str = "/etc/kubernetes/manifests";
const KUBEADM_PKI: &str = "/etc/kubernetes/pki";
const DEFAULT_CNI_DIR: &str = "/etc/cni/net.d";
const SYSTEMD_DIRS: [&str; 3] = [
    "/etc/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// A set of files a permission or ownership check covers.
#[derive(Clone, Copy, Debug)]
pub enum FileSet {
    StaticPod(Kind),
    CniConfig,
    EtcdDataDir,
    AdminKubeconfig,
    Kubeconfig(Kind),
    PkiAll,
    PkiCertificates,
    PkiKeys,
    KubeletUnit,
    KubeletClientCa,
    KubeletConfig,
}

/// The files, or why none can be assessed.
pub fn files(node: &Node, set: FileSet) -> Result<Vec<PathBuf>, String> {
    let found = match set {
        FileSet::StaticPod(kind) => static_pod(node, kind)?,
        FileSet::CniConfig => cni_config(node)?,
        FileSet::EtcdDataDir => vec![etcd_data_dir(node)?],
        FileSet::AdminKubeconfig => {
            let found: Vec<PathBuf> = ["admin.conf", "super-admin.conf"]
                .iter()
                .map(|f| Path::new("/etc/kubernetes").join(f))
                .filter(|p| node.host.exists(p))
                .collect();
            if found.is_empty() {
                return Err(
                    "no /etc/kubernetes/admin.conf or super-admin.conf (kubeadm's \
                            paths); this node keeps its administrative credential elsewhere \
                            or not at all"
                        .into(),
                );
            }
            found
        }
        FileSet::Kubeconfig(kind) => vec![kubeconfig(node, kind)?],
        FileSet::PkiAll => pki(node, None)?,
        FileSet::PkiCertificates => pki(
            node,
            Some(|text: &str| {
                text.contains("-----BEGIN CERTIFICATE-----") && !text.contains("PRIVATE KEY-----")
            }),
        )?,
        FileSet::PkiKeys => pki(node, Some(|text: &str| text.contains("PRIVATE KEY-----")))?,
        FileSet::KubeletUnit => kubelet_unit(node)?,
        FileSet::KubeletClientCa => vec![path_of(
            node,
            Kind::Kubelet,
            &super::checks::KUBELET_CLIENT_CA,
        )?],
        FileSet::KubeletConfig => {
            let kubelet = node.need(Kind::Kubelet)?;
            match &kubelet.config {
                Some(c) => vec![c.path.clone()],
                None => return Err("kubelet runs without --config".into()),
            }
        }
    };
    Ok(found)
}

fn path_of(node: &Node, kind: Kind, key: &Key) -> Result<PathBuf, String> {
    let component = node.need(kind)?;
    component
        .path(key)?
        .ok_or_else(|| format!("{kind} is not given --{}", key.flag))
}

/// The component's static pod manifest in the kubelet's static pod directory (kubeadm's when no
/// kubelet runs here): `NAME.yaml`, else the manifest whose text runs the binary.
fn static_pod(node: &Node, kind: Kind) -> Result<Vec<PathBuf>, String> {
    let dir = match node.get(Kind::Kubelet) {
        Some(k) => k.path(&super::checks::KUBELET_STATIC_PODS)?,
        None => Some(PathBuf::from(KUBEADM_MANIFESTS)),
    };
    let Some(dir) = dir else {
        return Err(format!(
            "{kind} does not run from a static pod: the kubelet has no static pod path \
             (staticPodPath / --pod-manifest-path)"
        ));
    };
    let named = dir.join(format!("{}.yaml", kind.binary()));
    if node.host.exists(&named) {
        return Ok(vec![named]);
    }
    let entries = node.host.list(&dir).unwrap_or_default();
    for file in entries {
        if let Ok(text) = node.host.read(&file) {
            if text.contains(&format!("- {}", kind.binary())) {
                return Ok(vec![file]);
            }
        }
    }
    Err(format!(
        "no static pod manifest runs {kind} in {} (it is not run as a static pod here)",
        dir.display()
    ))
}

/// The CNI configuration directory containerd reads (`conf_dir` of its config file) and the
/// files in it.
fn cni_config(node: &Node) -> Result<Vec<PathBuf>, String> {
    let containerd = node
        .host
        .processes()
        .into_iter()
        .find(|p| p.argv.first().is_some_and(|a| a.ends_with("containerd")));
    let config = containerd
        .as_ref()
        .and_then(|p| {
            let f = super::flags::Flags::parse(&p.argv[1..]);
            f.get("config").or(f.get("c")).map(|c| p.absolute(c))
        })
        .unwrap_or_else(|| PathBuf::from("/etc/containerd/config.toml"));
    let dir = node
        .host
        .read(&config)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == "conf_dir").then(|| v.trim().trim_matches('"').to_string())
            })
        })
        .map_or_else(|| PathBuf::from(DEFAULT_CNI_DIR), PathBuf::from);
    let files: Vec<PathBuf> = node
        .host
        .list(&dir)
        .map_err(|e| format!("CNI configuration directory: {e}"))?
        .into_iter()
        .filter(|f| node.host.stat(f).is_ok_and(|i| !i.is_dir))
        .collect();
    if files.is_empty() {
        return Err(format!("no CNI configuration in {}", dir.display()));
    }
    Ok(files)
}

fn etcd_data_dir(node: &Node) -> Result<PathBuf, String> {
    let etcd = node.need(Kind::Etcd)?;
    if let Some(dir) = etcd.path(&super::checks::ETCD_DATA_DIR)? {
        return Ok(dir);
    }
    // etcd's default: NAME.etcd in its working directory.
    let name = etcd
        .setting(&super::checks::ETCD_NAME)?
        .value
        .unwrap_or_else(|| "default".into());
    Ok(etcd.process.absolute(&format!("{name}.etcd")))
}

fn kubeconfig(node: &Node, kind: Kind) -> Result<PathBuf, String> {
    let key = super::checks::kubeconfig_key(kind);
    if let Some(c) = node.get(kind) {
        return c
            .path(&key)?
            .ok_or_else(|| format!("{kind} runs without a kubeconfig file (in-cluster)"));
    }
    let kubeadm = match kind {
        Kind::Scheduler => "/etc/kubernetes/scheduler.conf",
        Kind::ControllerManager => "/etc/kubernetes/controller-manager.conf",
        _ => return Err(format!("{kind} is not running on this node")),
    };
    if node.host.exists(Path::new(kubeadm)) {
        Ok(PathBuf::from(kubeadm))
    } else {
        Err(format!(
            "{kind} is not running on this node and {kubeadm} does not exist"
        ))
    }
}

/// Files of the PKI directories (kubeadm's, and those of every certificate, key and CA the
/// control-plane components and the kubelet are given) whose text `keep` selects; without
/// `keep`, every file and the directories themselves.
fn pki(node: &Node, keep: Option<fn(&str) -> bool>) -> Result<Vec<PathBuf>, String> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if node.host.exists(Path::new(KUBEADM_PKI)) {
        dirs.push(PathBuf::from(KUBEADM_PKI));
    }
    for (kind, key) in super::checks::pki_keys() {
        if let Some(Ok(Some(path))) = node.get(kind).map(|c| c.path(&key)) {
            if let Some(parent) = path.parent() {
                if !dirs.iter().any(|d| parent.starts_with(d)) {
                    dirs.retain(|d| !d.starts_with(parent));
                    dirs.push(parent.to_path_buf());
                }
            }
        }
    }
    if dirs.is_empty() {
        return Err(
            "no PKI directory: no /etc/kubernetes/pki and no component given \
                    certificate files"
                .into(),
        );
    }
    let everything = keep.is_none();
    let mut out = Vec::new();
    for dir in &dirs {
        if everything {
            out.push(dir.clone());
        }
        walk(node, dir, 2, &mut |file| {
            if keep.is_none_or(|keep| node.host.read(file).is_ok_and(|t| keep(&t))) {
                out.push(file.to_path_buf());
            }
        });
    }
    if out.is_empty() {
        return Err(format!("no such file in {}", join(&dirs)));
    }
    Ok(out)
}

fn walk(node: &Node, dir: &Path, depth: usize, visit: &mut dyn FnMut(&Path)) {
    for entry in node.host.list(dir).unwrap_or_default() {
        match node.host.stat(&entry) {
            Ok(info) if info.is_dir && depth > 1 => walk(node, &entry, depth - 1, visit),
            Ok(info) if !info.is_dir => visit(&entry),
            _ => {}
        }
    }
}

/// The kubelet's systemd unit and its drop-ins, named by the kubelet's own cgroup.
fn kubelet_unit(node: &Node) -> Result<Vec<PathBuf>, String> {
    let kubelet = node.need(Kind::Kubelet)?;
    let cgroup = &kubelet.process.cgroup;
    let Some(unit) = cgroup
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .find(|u| u.ends_with(".service"))
    else {
        let first = cgroup.lines().next().unwrap_or("unknown");
        return Err(format!(
            "the kubelet is not run by a systemd service (cgroup {first})"
        ));
    };
    let mut out = Vec::new();
    for dir in SYSTEMD_DIRS {
        let file = Path::new(dir).join(unit);
        if node.host.exists(&file) {
            out.push(file);
        }
        let drop_ins = Path::new(dir).join(format!("{unit}.d"));
        for f in node.host.list(&drop_ins).unwrap_or_default() {
            if f.extension().is_some_and(|e| e == "conf") {
                out.push(f);
            }
        }
    }
    if out.is_empty() {
        return Err(format!(
            "no unit file for {unit} in {}",
            SYSTEMD_DIRS.join(", ")
        ));
    }
    Ok(out)
}

fn join(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
