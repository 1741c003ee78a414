//! The node as `palisade node` sees it: its processes (a `/proc`) and its files under a root
//! (`/` on the host itself, `/host` in the DaemonSet's pod).
//!
//! Paths are the node's paths. Symlinks are resolved inside the root (an absolute link target
//! means the node's `/`, not the pod's), so a host mounted at `/host` reads as the node would.
//! Every read is bounded: a hostile or huge file is an error, not the process's memory.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

/// Largest file read (config files, manifests, kubeconfigs, `/proc` entries).
pub const MAX_READ: u64 = 4 << 20;
/// Most entries listed from one directory.
pub const MAX_DIR_ENTRIES: usize = 10_000;
/// Symlinks followed in one path, as Linux's own limit.
const MAX_SYMLINKS: usize = 40;

/// One process of the node.
#[derive(Clone, Debug, Default)]
pub struct Process {
    pub pid: u32,
    pub argv: Vec<String>,
    /// `None` when `/proc/PID/environ` could not be read (it needs ptrace access to the
    /// process; `/proc/PID/cmdline` does not).
    pub environ: Option<Vec<(String, String)>>,
    /// The working directory (relative paths of its flags are relative to it).
    pub cwd: Option<PathBuf>,
    /// `/proc/PID/cgroup`: tells a systemd service (`/system.slice/kubelet.service`).
    pub cgroup: String,
}

impl Process {
    /// An absolute node path for a path the process was given.
    pub fn absolute(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        match (&self.cwd, p.is_absolute()) {
            (Some(cwd), false) => cwd.join(p),
            _ => p.to_path_buf(),
        }
    }

    pub fn env(&self, name: &str) -> Option<&str> {
        self.environ
            .as_ref()?
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Owner, group and permission bits of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub is_dir: bool,
    pub user: String,
    pub group: String,
}

pub struct Host {
    root: PathBuf,
    proc_dir: PathBuf,
    /// Only components whose command line contains this text are checked (one of several
    /// control planes on a machine, e.g. test rigs or nodes of nested clusters).
    select: Option<String>,
    users: OnceLock<BTreeMap<u32, String>>,
    groups: OnceLock<BTreeMap<u32, String>>,
}

enum Part {
    Root,
    Parent,
    Name(OsString),
}

fn parts(path: &Path) -> impl Iterator<Item = Part> + '_ {
    path.components().filter_map(|c| match c {
        Component::RootDir | Component::Prefix(_) => Some(Part::Root),
        Component::ParentDir => Some(Part::Parent),
        Component::CurDir => None,
        Component::Normal(n) => Some(Part::Name(n.to_os_string())),
    })
}

impl Host {
    pub fn new(root: impl Into<PathBuf>, proc_dir: impl Into<PathBuf>) -> Host {
        Host {
            root: root.into(),
            proc_dir: proc_dir.into(),
            select: None,
            users: OnceLock::new(),
            groups: OnceLock::new(),
        }
    }

    /// Checks only the components whose command line contains `text`.
    pub fn select(mut self, text: Option<String>) -> Host {
        self.select = text.filter(|t| !t.is_empty());
        self
    }

    /// Whether a component's process is one the caller selected.
    pub fn selected(&self, process: &Process) -> bool {
        self.select
            .as_deref()
            .is_none_or(|t| process.argv.iter().any(|a| a.contains(t)))
    }

    /// Where the node's `path` is in this process's file system, symlinks resolved inside the
    /// root. A missing component is kept as it is (the open that follows reports it).
    fn locate(&self, path: &Path) -> Result<PathBuf, String> {
        let mut todo: VecDeque<Part> = parts(path).collect();
        let mut current = PathBuf::from("/");
        let mut links = 0;
        while let Some(part) = todo.pop_front() {
            match part {
                Part::Root => current = PathBuf::from("/"),
                Part::Parent => {
                    current.pop();
                }
                Part::Name(name) => {
                    let next = current.join(&name);
                    let on_disk = self.on_disk(&next);
                    let is_link = fs::symlink_metadata(&on_disk)
                        .map(|m| m.file_type().is_symlink())
                        .unwrap_or(false);
                    if !is_link {
                        current = next;
                        continue;
                    }
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(format!(
                            "{}: more than {MAX_SYMLINKS} symlinks",
                            path.display()
                        ));
                    }
                    let target =
                        fs::read_link(&on_disk).map_err(|e| format!("{}: {e}", next.display()))?;
                    for p in parts(&target).collect::<Vec<_>>().into_iter().rev() {
                        todo.push_front(p);
                    }
                }
            }
        }
        Ok(self.on_disk(&current))
    }

    fn on_disk(&self, node_path: &Path) -> PathBuf {
        self.root
            .join(node_path.strip_prefix("/").unwrap_or(node_path))
    }

    /// The file's text, at most [`MAX_READ`] bytes.
    pub fn read(&self, path: &Path) -> Result<String, String> {
        let located = self.locate(path)?;
        read_bounded(&located).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn stat(&self, path: &Path) -> Result<FileInfo, String> {
        let located = self.locate(path)?;
        let m = fs::metadata(&located).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(FileInfo {
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            is_dir: m.is_dir(),
            user: self.name_of(&self.users, "etc/passwd", m.uid()),
            group: self.name_of(&self.groups, "etc/group", m.gid()),
        })
    }

    pub fn exists(&self, path: &Path) -> bool {
        self.locate(path).is_ok_and(|p| p.exists())
    }

    /// The entries of a directory as node paths, sorted, at most [`MAX_DIR_ENTRIES`].
    pub fn list(&self, dir: &Path) -> Result<Vec<PathBuf>, String> {
        let located = self.locate(dir)?;
        let entries = fs::read_dir(&located).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            if out.len() == MAX_DIR_ENTRIES {
                return Err(format!(
                    "{}: more than {MAX_DIR_ENTRIES} entries",
                    dir.display()
                ));
            }
            out.push(dir.join(entry.file_name()));
        }
        out.sort();
        Ok(out)
    }

    /// The user or group name of an id, from the node's own /etc/passwd or /etc/group (the
    /// pod's would name other users); the number when it has none.
    fn name_of(&self, cache: &OnceLock<BTreeMap<u32, String>>, file: &str, id: u32) -> String {
        let names = cache.get_or_init(|| {
            let text = read_bounded(&self.root.join(file)).unwrap_or_default();
            text.lines()
                .filter_map(|l| {
                    let mut f = l.split(':');
                    let name = f.next()?;
                    let id = f.nth(1)?.parse().ok()?;
                    Some((id, name.to_string()))
                })
                .collect()
        });
        match names.get(&id) {
            Some(n) => n.clone(),
            None if id == 0 => "root".to_string(),
            None => id.to_string(),
        }
    }

    /// Every process whose command line could be read, by pid.
    pub fn processes(&self) -> Vec<Process> {
        let Ok(entries) = fs::read_dir(&self.proc_dir) else {
            return Vec::new();
        };
        let mut out: Vec<Process> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| self.process(pid))
            .collect();
        out.sort_by_key(|p| p.pid);
        out
    }

    fn process(&self, pid: u32) -> Option<Process> {
        let dir = self.proc_dir.join(pid.to_string());
        let cmdline = read_bounded(&dir.join("cmdline")).ok()?;
        let argv: Vec<String> = cmdline
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if argv.is_empty() {
            return None; // a kernel thread
        }
        let environ = read_bounded(&dir.join("environ")).ok().map(|text| {
            text.split('\0')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        });
        Some(Process {
            pid,
            argv,
            environ,
            cwd: fs::read_link(dir.join("cwd")).ok(),
            cgroup: read_bounded(&dir.join("cgroup")).unwrap_or_default(),
        })
    }
}

fn read_bounded(path: &Path) -> std::io::Result<String> {
    let mut bytes = Vec::new();
    fs::File::open(path)?
        .take(MAX_READ + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_READ {
        return Err(std::io::Error::other(format!(
            "larger than {} MiB",
            MAX_READ >> 20
        )));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
