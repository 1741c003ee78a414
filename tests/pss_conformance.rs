//! Runs pod-security-admission's generated fixtures through `palisade::policy::pss::check`.
//!
//! Layout: `<level>/<version>/<pass|fail>/<check id lowercased><n>.yaml`, each a v1 Pod.
//! Directory: `$PALISADE_CONFORMANCE_DIR`, else
//! `$CARGO_MANIFEST_DIR/../shared/conformance/pod-security-admission/testdata`.

use k8s_openapi::api::core::v1::Pod;
use palisade::policy::finding::Violation;
use palisade::policy::pss::{check, Level, Version};
use palisade::policy::rules::Rule;
use palisade::policy::workload::PodTarget;
use std::fs;
use std::path::{Path, PathBuf};

const MIN_FIXTURES: usize = 4000;

fn fixture_dir() -> PathBuf {
    match std::env::var_os("PALISADE_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/conformance/pod-security-admission/testdata"),
    }
}

/// The rule for a fixture file-name prefix (the PSA check id, lowercased).
fn rule_for(prefix: &str) -> Option<Rule> {
    Some(match prefix {
        "windowshostprocess" => Rule::HostProcess,
        "hostnamespaces" => Rule::HostNamespaces,
        "privileged" => Rule::Privileged,
        "capabilities_baseline" => Rule::CapabilitiesBaseline,
        "hostpathvolumes" => Rule::HostPathVolumes,
        "hostports" => Rule::HostPorts,
        "hostprobesandhostlifecycle" => Rule::HostProbes,
        "apparmorprofile" => Rule::AppArmor,
        "selinuxoptions" => Rule::SeLinux,
        "procmount" | "procmount_restricted" => Rule::ProcMount,
        "seccompprofile_baseline" => Rule::SeccompBaseline,
        "sysctls" => Rule::Sysctls,
        "restrictedvolumes" => Rule::VolumeTypes,
        "allowprivilegeescalation" => Rule::PrivilegeEscalation,
        "runasnonroot" => Rule::RunAsNonRoot,
        "runasuser" => Rule::RunAsUser,
        "seccompprofile_restricted" => Rule::SeccompRestricted,
        "capabilities_restricted" => Rule::CapabilitiesRestricted,
        _ => return None,
    })
}

/// At the restricted level pod-security-admission runs some restricted checks *instead of*
/// baseline ones, so a baseline fixture evaluated there fails under the replacing check.
fn replacement_at_restricted(rule: Rule, minor: u32) -> Option<Rule> {
    match rule {
        Rule::HostPathVolumes => Some(Rule::VolumeTypes),
        Rule::SeccompBaseline if minor >= 19 => Some(Rule::SeccompRestricted),
        Rule::CapabilitiesBaseline if minor >= 22 => Some(Rule::CapabilitiesRestricted),
        _ => None,
    }
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.expect("readable directory entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn name_of(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or_default()
}

fn describe(v: &[Violation]) -> String {
    v.iter()
        .map(|v| format!("{} @ {}", v.rule, v.field))
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn pss_conformance() {
    let root = fixture_dir();
    assert!(
        root.is_dir(),
        "conformance fixtures not found at {} (set PALISADE_CONFORMANCE_DIR)",
        root.display()
    );

    let mut total = 0usize;
    let mut correct = 0usize;
    let mut failures: Vec<String> = Vec::new();
    let mut out = Vec::new();

    for level_dir in subdirs(&root) {
        let level = match name_of(&level_dir) {
            "baseline" => Level::Baseline,
            "restricted" => Level::Restricted,
            "privileged" => Level::Privileged,
            other => panic!("unexpected level directory {other:?}"),
        };
        for version_dir in subdirs(&level_dir) {
            let version = Version::parse(name_of(&version_dir))
                .unwrap_or_else(|| panic!("bad version directory {}", version_dir.display()));
            for expect_pass in [true, false] {
                let dir = version_dir.join(if expect_pass { "pass" } else { "fail" });
                for file in yaml_files(&dir) {
                    total += 1;
                    let rel = file
                        .strip_prefix(&root)
                        .unwrap_or(&file)
                        .display()
                        .to_string();
                    let text = fs::read_to_string(&file).expect("readable fixture");
                    let pod: Pod = match serde_yaml_ng::from_str(&text) {
                        Ok(pod) => pod,
                        Err(e) => {
                            failures.push(format!("{rel}: does not parse: {e}"));
                            continue;
                        }
                    };
                    let Some(target) = PodTarget::from_pod(&pod) else {
                        failures.push(format!("{rel}: pod has no spec"));
                        continue;
                    };
                    out.clear();
                    check(&target, level, version, &mut out);

                    if expect_pass {
                        if out.is_empty() {
                            correct += 1;
                        } else {
                            failures.push(format!("{rel}: expected pass, got {}", describe(&out)));
                        }
                        continue;
                    }
                    let stem = file
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .unwrap_or_default();
                    let prefix = stem.trim_end_matches(|c: char| c.is_ascii_digit());
                    let Some(rule) = rule_for(prefix) else {
                        failures.push(format!("{rel}: unknown check prefix {prefix:?}"));
                        continue;
                    };
                    let expected = match level {
                        Level::Restricted => {
                            replacement_at_restricted(rule, version.minor()).unwrap_or(rule)
                        }
                        _ => rule,
                    };
                    // At the restricted level a problem the superseded baseline check covers is
                    // reported under that more specific rule (hostPath, a non-default capability).
                    let specific = match expected {
                        Rule::VolumeTypes => Some(Rule::HostPathVolumes),
                        Rule::CapabilitiesRestricted => Some(Rule::CapabilitiesBaseline),
                        _ => None,
                    };
                    if out.is_empty() {
                        failures.push(format!("{rel}: expected {expected} violation, got none"));
                    } else if !out
                        .iter()
                        .any(|v| v.rule == expected || Some(v.rule) == specific)
                    {
                        failures.push(format!(
                            "{rel}: expected {expected} violation, got {}",
                            describe(&out)
                        ));
                    } else {
                        correct += 1;
                    }
                }
            }
        }
    }

    for f in &failures {
        println!("MISCLASSIFIED {f}");
    }
    println!("PSS conformance: {correct}/{total} fixtures classified correctly");
    assert!(
        total >= MIN_FIXTURES,
        "only {total} fixtures under {} (expected at least {MIN_FIXTURES})",
        root.display()
    );
    assert!(
        failures.is_empty(),
        "{} of {total} fixtures misclassified (see output above)",
        failures.len()
    );
    assert_eq!(correct, total);
}

/// Evaluates the fixtures round-robin 100k times at restricted/latest (a mix of passing and
/// failing pods) and prints the rate. Only a loose bound is asserted: test builds are unoptimised.
#[test]
fn pss_throughput() {
    let root = fixture_dir();
    let mut pods: Vec<Pod> = Vec::new();
    for dir in [
        root.join("restricted/v1.37/pass"),
        root.join("restricted/v1.37/fail"),
    ] {
        for file in yaml_files(&dir) {
            let text = fs::read_to_string(&file).expect("readable fixture");
            pods.push(serde_yaml_ng::from_str(&text).expect("fixture parses"));
        }
    }
    if pods.is_empty() {
        println!("PSS throughput: no fixtures under {}", root.display());
        return;
    }
    let targets: Vec<PodTarget<'_>> = pods.iter().filter_map(PodTarget::from_pod).collect();
    const N: usize = 100_000;
    let mut out = Vec::new();
    let mut violations = 0usize;
    let start = std::time::Instant::now();
    for i in 0..N {
        out.clear();
        check(
            &targets[i % targets.len()],
            Level::Restricted,
            Version::Latest,
            &mut out,
        );
        violations += out.len();
    }
    let elapsed = start.elapsed();
    println!("PSS throughput: {N} pods in {elapsed:?} ({violations} violations)");
    assert!(elapsed.as_secs() < 10, "far too slow: {elapsed:?}");
}
