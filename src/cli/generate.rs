use super::baseline_file;
use clap::Args;
use k8s_openapi::jiff::Timestamp;
use palisade::manifest::{self, Severity as InputSeverity};
use palisade::policy::desired;
use palisade::policy::object::Object;
use serde::Serialize;
use std::collections::BTreeMap;
use std::process::ExitCode;

#[derive(Args)]
pub struct GenerateArgs {
    /// SecurityBaseline YAML.
    #[arg(long)]
    baseline: String,
    /// Namespace to generate for (repeatable).
    #[arg(long = "namespace", short = 'n')]
    namespaces: Vec<String>,
    /// The API server's endpoint address (IP:PORT, repeatable; in a cluster, the addresses of
    /// the `default/kubernetes` EndpointSlice): generates the API egress allows of workloads
    /// that need it (none without it).
    #[arg(long = "api-server")]
    api_server: Vec<std::net::SocketAddr>,
    /// kube-apiserver audit logs (JSON lines, repeatable): the Roles of `learn: true` accounts
    /// include the rules learned from what they did there (the logs are the window).
    #[arg(long = "audit-log")]
    audit_logs: Vec<String>,
    /// Manifests whose Namespace objects the baseline's selector picks from (and whose workloads
    /// decide the API egress allows).
    paths: Vec<String>,
}

/// Appends `objects` as YAML documents, each with its kind's apiVersion and kind.
fn emit<K: kube::Resource<DynamicType = ()> + Serialize>(out: &mut String, objects: &[K]) {
    for o in objects {
        out.push_str(&to_yaml(&K::api_version(&()), &K::kind(&()), o));
    }
}

fn to_yaml<T: Serialize>(api_version: &str, kind: &str, obj: &T) -> String {
    let mut v = serde_json::to_value(obj).expect("k8s objects always serialize");
    if let Some(m) = v.as_object_mut() {
        // apiVersion/kind first, as kubectl prints them.
        let mut ordered = serde_json::Map::new();
        ordered.insert("apiVersion".into(), api_version.into());
        ordered.insert("kind".into(), kind.into());
        ordered.extend(std::mem::take(m));
        v = serde_json::Value::Object(ordered);
    }
    format!(
        "---\n{}",
        serde_yaml_ng::to_string(&v).expect("JSON values always serialize")
    )
}

pub fn run(args: GenerateArgs) -> ExitCode {
    let baseline = match baseline_file::load(Some(&args.baseline), Timestamp::now()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return super::input_error();
        }
    };
    let mut namespaces: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut workloads: BTreeMap<String, Vec<desired::WorkloadPods>> = BTreeMap::new();
    let mut diags = Vec::new();
    for path in &args.paths {
        manifest::load_path(
            path,
            &mut |obj, _| match obj {
                Object::Namespace(ns) => {
                    // Freshly decoded: the only reference, so this moves rather than copies.
                    let ns = std::sync::Arc::unwrap_or_clone(ns);
                    namespaces.insert(
                        ns.metadata.name.unwrap_or_default(),
                        ns.metadata.labels.unwrap_or_default(),
                    );
                }
                Object::Workload(w) => {
                    let ns = w.namespace().unwrap_or("default").to_string();
                    workloads
                        .entry(ns)
                        .or_default()
                        .extend(desired::WorkloadPods::of(&w));
                }
                _ => {}
            },
            &mut diags,
        );
    }
    let log = match super::rbac::read_audit_logs(&args.audit_logs, None) {
        Ok(l) => l,
        Err(code) => return code,
    };
    if log.errors_total > 0 {
        return super::input_error();
    }
    // namespace -> account -> its learned rules there
    let mut learned: BTreeMap<
        String,
        BTreeMap<String, Vec<k8s_openapi::api::rbac::v1::PolicyRule>>,
    > = BTreeMap::new();
    for (account, usage) in &log.usage.accounts {
        let rules = palisade::policy::rbac::learn::minimal_rules(usage.accesses.keys());
        if let Some(r) = rules.namespaced.get(&account.namespace) {
            learned
                .entry(account.namespace.clone())
                .or_default()
                .insert(account.name.clone(), r.clone());
        }
    }
    let api_server: Vec<(std::net::IpAddr, u16)> =
        args.api_server.iter().map(|a| (a.ip(), a.port())).collect();
    let errors: Vec<_> = diags
        .iter()
        .filter(|d| d.severity == InputSeverity::Error)
        .collect();
    for d in &errors {
        eprintln!("{d}");
    }
    if !errors.is_empty() {
        return super::input_error();
    }
    let mut selected: Vec<String> = namespaces
        .iter()
        .filter(|(name, labels)| baseline.covers_namespace(name, labels))
        .map(|(n, _)| n.clone())
        .collect();
    selected.extend(args.namespaces.iter().cloned());
    selected.sort();
    selected.dedup();
    if selected.is_empty() {
        eprintln!("error: no namespace selected: pass --namespace NS or manifests with Namespace objects the baseline selects");
        return super::input_error();
    }
    let mut out = String::new();
    for ns in &selected {
        let inputs = desired::NamespaceContext {
            labels: namespaces.get(ns),
            api_server: &api_server,
            workloads: workloads.get(ns).map_or(&[], Vec::as_slice),
            // Offline manifests carry no webhook configurations and Services the engine reads.
            webhooks: &[],
            learned: learned.get(ns),
        };
        // Named without `..`: a generated kind added there does not compile until printed here.
        let desired::NamespaceObjects {
            network_policies,
            roles,
            role_bindings,
            peer_authentications,
            namespace_labels,
            allowances: _, // status only
        } = desired::namespace_objects(ns, &inputs, &baseline, None);
        if !namespace_labels.is_empty() {
            let patch = serde_json::json!({"metadata": {"name": ns, "labels": namespace_labels}});
            out.push_str(&to_yaml("v1", "Namespace", &patch));
        }
        emit(&mut out, &network_policies);
        emit(&mut out, &roles);
        emit(&mut out, &role_bindings);
        emit(&mut out, &peer_authentications);
    }
    let desired::ClusterObjects {
        admission_policies,
        admission_bindings,
    } = desired::cluster_objects(&baseline, None);
    emit(&mut out, &admission_policies);
    emit(&mut out, &admission_bindings);
    print!("{out}");
    ExitCode::SUCCESS
}
