//! Palisade in the tools users already run: the real `pre-commit` (from PyPI) with this
//! repository's `.pre-commit-hooks.yaml`, and the real `kubectl` finding `kubectl-palisade`
//! on PATH as a plugin.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_palisade");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const PRE_COMMIT_VERSION: &str = "4.7.0";

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// `pre-commit` from PyPI in a virtualenv cached under ~/.cache/palisade/py/ (scripts/test
/// installs it; installed here if missing).
fn pre_commit() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let venv = Path::new(&home).join(format!(
        ".cache/palisade/py/pre-commit-{PRE_COMMIT_VERSION}"
    ));
    let bin = venv.join("bin/pre-commit");
    if !bin.exists() {
        let o = run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
        assert!(o.status.success(), "{}", text(&o));
        let o = run(Command::new(venv.join("bin/pip")).args([
            "install",
            "-q",
            &format!("pre-commit=={PRE_COMMIT_VERSION}"),
        ]));
        assert!(o.status.success(), "{}", text(&o));
    }
    bin
}

fn git(dir: &Path, args: &[&str]) {
    let o = run(Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .current_dir(dir));
    assert!(o.status.success(), "git {args:?}: {}", text(&o));
}

/// A PATH whose first entry holds `name` -> the palisade binary.
fn path_with(dir: &Path, name: &str) -> String {
    std::os::unix::fs::symlink(BIN, dir.join(name)).unwrap();
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

const PRIVILEGED: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: a}\nspec:\n  containers:\n  - name: c\n    image: c:1\n    securityContext: {privileged: true}\n";

#[test]
fn pre_commit_runs_the_hook_on_changed_manifests() {
    let tmp = tempfile::tempdir().unwrap();
    // The hook repository: this repository's hooks file, committed (pre-commit clones it).
    let hooks = tmp.path().join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    std::fs::copy(
        Path::new(ROOT).join(".pre-commit-hooks.yaml"),
        hooks.join(".pre-commit-hooks.yaml"),
    )
    .unwrap();
    git(&hooks, &["init", "-q"]);
    git(&hooks, &["add", "."]);
    git(&hooks, &["commit", "-q", "-m", "hooks"]);
    let rev = String::from_utf8(
        run(Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(&hooks))
        .stdout,
    )
    .unwrap();

    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("charts/app/templates")).unwrap();
    git(&repo, &["init", "-q"]);
    std::fs::write(
        repo.join(".pre-commit-config.yaml"),
        format!(
            "repos:\n- repo: {}\n  rev: {}\n  hooks:\n  - id: palisade-audit\n    args: [--fail-on, critical]\n",
            hooks.display(),
            rev.trim()
        ),
    )
    .unwrap();
    std::fs::write(repo.join("pod.yaml"), PRIVILEGED).unwrap();
    // A chart template is not a manifest: excluded by the hook, never a parse error.
    std::fs::write(
        repo.join("charts/app/templates/deploy.yaml"),
        "{{- if .Values.enabled }}\nkind: [\n{{- end }}\n",
    )
    .unwrap();
    std::fs::write(
        repo.join("charts/app/Chart.yaml"),
        "apiVersion: v2\nname: app\n",
    )
    .unwrap();
    git(&repo, &["add", "."]);

    let bin_dir = tmp.path().join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    let path = path_with(&bin_dir, "palisade");
    let pre_commit = |repo: &Path| {
        run(Command::new(pre_commit())
            .args(["run", "--color", "never"])
            .current_dir(repo)
            .env("PATH", &path)
            .env("PRE_COMMIT_HOME", tmp.path().join("cache")))
    };
    let o = pre_commit(&repo);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("palisade audit") && out.contains("Failed"),
        "{out}"
    );
    assert!(
        out.contains("pss.privileged") && out.contains("Pod/a/p"),
        "{out}"
    );
    assert!(
        !out.contains("deploy.yaml"),
        "templates must be excluded: {out}"
    );

    // Fixed manifest: the hook passes.
    std::fs::write(
        repo.join("pod.yaml"),
        PRIVILEGED.replace("privileged: true", "privileged: false"),
    )
    .unwrap();
    git(&repo, &["add", "."]);
    let o = pre_commit(&repo);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("Passed"), "{}", text(&o));
}

/// The pinned kubectl of the local control plane (scripts/control-plane build), or kubectl on
/// PATH.
fn kubectl() -> PathBuf {
    if let Some(k) = std::env::var_os("PALISADE_KUBECTL") {
        return k.into();
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let cache = Path::new(&home).join(".cache/palisade/control-plane");
    if let Ok(entries) = std::fs::read_dir(&cache) {
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path().join("kubectl"))
            .filter(|p| p.exists())
            .collect();
        found.sort();
        if let Some(k) = found.pop() {
            return k;
        }
    }
    "kubectl".into()
}

#[test]
fn kubectl_runs_palisade_as_a_plugin() {
    let tmp = tempfile::tempdir().unwrap();
    let path = path_with(tmp.path(), "kubectl-palisade");
    let kubectl = |args: &[&str]| {
        run(Command::new(kubectl())
            .args(args)
            .current_dir(ROOT)
            .env("PATH", &path)
            .env("KUBECONFIG", tmp.path().join("no-cluster")))
    };
    let o = kubectl(&["plugin", "list"]);
    assert!(text(&o).contains("kubectl-palisade"), "{}", text(&o));
    let args = [
        "audit",
        "--baseline",
        "config/baseline.yaml",
        "--format",
        "json",
        "config/samples",
    ];
    let mut via_kubectl = vec!["palisade"];
    via_kubectl.extend(args);
    let o = kubectl(&via_kubectl);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let direct = run(Command::new(BIN).args(args).current_dir(ROOT));
    assert_eq!(o.stdout, direct.stdout, "the plugin is the same program");
    assert!(String::from_utf8_lossy(&o.stdout).contains("pss.privileged"));
}
