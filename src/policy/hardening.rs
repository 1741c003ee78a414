//! Hardening beyond the Pod Security Standards: read-only root filesystem, token automount,
//! sandboxed runtimes for untrusted workloads, and use of the `default` ServiceAccount.

use super::baseline::CompiledBaseline;
use super::finding::Violation;
use super::rules::Rule;
use super::workload::PodTarget;
use k8s_openapi::api::core::v1::SecurityContext;

/// Token automount cannot always be decided from the pod alone: when the pod is silent,
/// the ServiceAccount's `automountServiceAccountToken` decides.
#[derive(Clone, Debug, PartialEq)]
pub enum Automount {
    /// The pod decides: no token, or a token that is allowed.
    Decided,
    /// The pod mounts a token whatever its ServiceAccount says.
    Mounted(Violation),
    /// The pod mounts a token unless this ServiceAccount disables automount.
    DependsOnServiceAccount(String, Violation),
}

/// The ServiceAccount a pod runs as.
pub fn service_account_name<'a>(pod: &PodTarget<'a>) -> &'a str {
    pod.spec
        .service_account_name
        .as_deref()
        .or(pod.spec.service_account.as_deref())
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
}

fn is_windows(pod: &PodTarget<'_>) -> bool {
    pod.spec.os.as_ref().is_some_and(|os| os.name == "windows")
}

/// Appends hardening violations that the pod alone decides, and returns the automount verdict.
pub fn check(
    pod: &PodTarget<'_>,
    baseline: &CompiledBaseline,
    out: &mut Vec<Violation>,
) -> Automount {
    let s = &baseline.settings;
    if s.read_only_root_filesystem && !is_windows(pod) {
        read_only_root_fs(pod, out);
    }
    if let Some(sel) = &baseline.sandbox_selector {
        if sel.matches(pod.labels) {
            sandbox(pod, baseline, out);
        }
    }
    let sa = service_account_name(pod);
    if s.forbid_default_service_account && sa == "default" {
        out.push(Violation::new(
            Rule::DefaultServiceAccount,
            format!("{}.serviceAccountName", pod.spec_path),
            "runs as the namespace's default ServiceAccount; create a dedicated ServiceAccount and set serviceAccountName",
        ));
    }
    if s.allow_token_automount || baseline.declared_service_accounts.contains(sa) {
        return Automount::Decided;
    }
    let field = format!("{}.automountServiceAccountToken", pod.spec_path);
    match pod.spec.automount_service_account_token {
        Some(false) => Automount::Decided,
        Some(true) => Automount::Mounted(Violation::new(
            Rule::AutomountToken,
            field,
            format!("mounts a token for ServiceAccount {sa:?}; set automountServiceAccountToken=false unless the pod calls the API (then declare the account in spec.rbac.serviceAccounts)"),
        )),
        None => Automount::DependsOnServiceAccount(
            sa.to_string(),
            Violation::new(
                Rule::AutomountToken,
                field,
                format!("mounts a token for ServiceAccount {sa:?} by default; set automountServiceAccountToken=false on the pod or the ServiceAccount"),
            ),
        ),
    }
}

fn read_only_root_fs(pod: &PodTarget<'_>, out: &mut Vec<Violation>) {
    let groups = [
        (
            "containers",
            pod.spec
                .containers
                .iter()
                .map(|c| (&c.name, &c.security_context))
                .collect::<Vec<_>>(),
        ),
        (
            "initContainers",
            pod.spec
                .init_containers
                .iter()
                .flatten()
                .map(|c| (&c.name, &c.security_context))
                .collect(),
        ),
        (
            "ephemeralContainers",
            pod.spec
                .ephemeral_containers
                .iter()
                .flatten()
                .map(|c| (&c.name, &c.security_context))
                .collect(),
        ),
    ];
    for (group, containers) in groups {
        for (i, (name, sc)) in containers.into_iter().enumerate() {
            let ro = sc
                .as_ref()
                .and_then(|sc: &SecurityContext| sc.read_only_root_filesystem);
            if ro != Some(true) {
                out.push(Violation::new(
                    Rule::ReadOnlyRootFs,
                    format!("{}.{group}[{i}].securityContext.readOnlyRootFilesystem", pod.spec_path),
                    format!("container {name:?} must set securityContext.readOnlyRootFilesystem=true (mount an emptyDir where it needs to write)"),
                ));
            }
        }
    }
}

fn sandbox(pod: &PodTarget<'_>, baseline: &CompiledBaseline, out: &mut Vec<Violation>) {
    let allowed = baseline
        .spec
        .pod_security
        .as_ref()
        .and_then(|p| p.sandbox.as_ref())
        .map(|s| s.runtime_class_names.as_slice())
        .unwrap_or_default();
    let rc = pod.spec.runtime_class_name.as_deref();
    if !rc.is_some_and(|rc| allowed.iter().any(|a| a == rc)) {
        out.push(Violation::new(
            Rule::SandboxRuntime,
            format!("{}.runtimeClassName", pod.spec_path),
            format!(
                "untrusted workload must set runtimeClassName to one of [{}] (now {})",
                allowed.join(", "),
                rc.map_or("unset".to_string(), |r| format!("{r:?}"))
            ),
        ));
    }
}
