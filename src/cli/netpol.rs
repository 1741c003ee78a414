//! `palisade netpol reach|matrix`: what the NetworkPolicies (and a baseline's generated ones)
//! allow, offline over manifests or against the cluster in KUBECONFIG.

use super::baseline_file;
use clap::{Args, Subcommand, ValueEnum};
use k8s_openapi::jiff::Timestamp;
use palisade::manifest::{self, Severity as InputSeverity};
use palisade::policy::desired;
use palisade::policy::netpol::matrix::{declared_columns, Column};
use palisade::policy::netpol::universe::UniverseBuilder;
use palisade::policy::netpol::{Cluster, Endpoint, Protocol, Side};
use palisade::policy::object::Object;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Subcommand)]
pub enum NetpolCommand {
    /// Is FROM allowed to connect to TO:PORT[/PROTO]? Exit 0 allowed, 1 denied, 2 bad input.
    Reach(ReachArgs),
    /// Every pod against every declared container port.
    Matrix(Source),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Args)]
pub struct Source {
    /// Read namespaces, pods and NetworkPolicies from the cluster in KUBECONFIG.
    #[arg(long)]
    live: bool,
    /// Also apply the NetworkPolicies this SecurityBaseline generates for the namespaces it covers.
    #[arg(long)]
    baseline: Option<String>,
    /// With --baseline: the API server's endpoint (IP:PORT, repeatable), for the API egress
    /// allows of workloads that need it.
    #[arg(long = "api-server")]
    api_server: Vec<std::net::SocketAddr>,
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: Output,
    /// Manifests (files, directories, `-`) with Namespaces, workloads and NetworkPolicies.
    paths: Vec<String>,
}

#[derive(Args)]
pub struct ReachArgs {
    /// NAMESPACE/POD, NAMESPACE/KIND/NAME (offline workloads) or an IP address.
    from: String,
    /// Destination and port: NAMESPACE/POD:PORT[/PROTO] or IP:PORT[/PROTO] ([v6]:PORT).
    to: String,
    #[command(flatten)]
    source: Source,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    super::input_error()
}

pub fn run(cmd: NetpolCommand) -> ExitCode {
    let (source, reach) = match &cmd {
        NetpolCommand::Reach(r) => (&r.source, Some(r)),
        NetpolCommand::Matrix(s) => (s, None),
    };
    let cluster = match load(source) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match reach {
        Some(r) => reach_cmd(&cluster, r),
        None => matrix_cmd(&cluster, source.output),
    }
}

fn load(source: &Source) -> Result<Cluster, String> {
    let mut builder = UniverseBuilder::default();
    if source.live {
        for obj in live_objects()? {
            builder.add(&obj, true);
        }
    }
    let mut workloads: std::collections::BTreeMap<String, Vec<desired::WorkloadPods>> =
        Default::default();
    let mut diags = Vec::new();
    for path in &source.paths {
        manifest::load_path(
            path,
            &mut |obj, _| {
                if let Object::Workload(w) = &obj {
                    let ns = w.namespace().unwrap_or("default").to_string();
                    workloads
                        .entry(ns)
                        .or_default()
                        .extend(desired::WorkloadPods::of(w));
                }
                builder.add(&obj, false)
            },
            &mut diags,
        );
    }
    let errors: Vec<String> = diags
        .iter()
        .filter(|d| d.severity == InputSeverity::Error)
        .map(ToString::to_string)
        .collect();
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    if !source.live && source.paths.is_empty() {
        return Err("nothing to analyse: pass manifests or --live".into());
    }
    if let Some(path) = &source.baseline {
        let b = baseline_file::load(Some(path), Timestamp::now())?;
        let api_server: Vec<_> = source
            .api_server
            .iter()
            .map(|a| (a.ip(), a.port()))
            .collect();
        let generated: Vec<_> = builder
            .namespaces()
            .filter(|(n, l)| b.covers_namespace(n, l))
            .flat_map(|(n, l)| {
                let inputs = desired::NamespaceContext {
                    labels: Some(l),
                    api_server: &api_server,
                    workloads: workloads.get(n.as_str()).map_or(&[], Vec::as_slice),
                    webhooks: &[],
                    learned: None,
                };
                desired::namespace_objects(n, &inputs, &b, None).network_policies
            })
            .collect();
        builder.add_policies(generated);
    }
    if !builder.problems.is_empty() {
        return Err(builder.problems.join("\n"));
    }
    let (cluster, invalid) = builder.build();
    if !invalid.is_empty() {
        let list: Vec<String> = invalid.iter().map(ToString::to_string).collect();
        return Err(list.join("\n"));
    }
    Ok(cluster)
}

fn live_objects() -> Result<Vec<Object>, String> {
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use kube::api::{Api, ListParams};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| format!("kubeconfig: {e}"))?;
        let lp = ListParams::default();
        let err = |what: &str, e: kube::Error| format!("listing {what}: {e}");
        let mut out = Vec::new();
        for ns in Api::<Namespace>::all(client.clone())
            .list(&lp)
            .await
            .map_err(|e| err("namespaces", e))?
        {
            out.push(Object::Namespace(Arc::new(ns)));
        }
        for pod in Api::<Pod>::all(client.clone())
            .list(&lp)
            .await
            .map_err(|e| err("pods", e))?
        {
            let running = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_none_or(|p| p != "Succeeded" && p != "Failed");
            if running {
                out.push(Object::Workload(palisade::policy::workload::Workload::Pod(
                    Arc::new(pod),
                )));
            }
        }
        for np in Api::<NetworkPolicy>::all(client)
            .list(&lp)
            .await
            .map_err(|e| err("networkpolicies", e))?
        {
            out.push(Object::NetworkPolicy(Arc::new(np)));
        }
        Ok(out)
    })
}

/// `ns/pod`, `ns/Kind/name` or an address.
fn endpoint(cluster: &Cluster, s: &str) -> Result<Endpoint, String> {
    let s = s.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = s.parse() {
        return Ok(cluster.endpoint_for_ip(ip));
    }
    let (ns, name) = s.split_once('/').ok_or_else(|| {
        format!("{s:?}: want NAMESPACE/POD, NAMESPACE/KIND/NAME or an IP address")
    })?;
    if let Some(i) = cluster.pod_index(ns, name) {
        return Ok(Endpoint::Pod(i));
    }
    // Offline, `ns/web` finds the workload `ns/Deployment/web` when the name is unique.
    let matches: Vec<usize> = (0..cluster.pods.len())
        .filter(|&i| {
            let p = &cluster.pods[i];
            p.namespace == ns && p.name.rsplit('/').next() == Some(name)
        })
        .collect();
    match matches.as_slice() {
        [i] => Ok(Endpoint::Pod(*i)),
        [] => Err(format!("{s:?}: no such pod or workload")),
        _ => Err(format!(
            "{s:?} is ambiguous: name the kind (NAMESPACE/KIND/NAME)"
        )),
    }
}

/// Splits `dest:port[/proto]`, the port after the last colon (IPv6 in brackets).
fn target(cluster: &Cluster, s: &str) -> Result<(Endpoint, u16, Protocol), String> {
    let (dest, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?}: want DESTINATION:PORT[/PROTO]"))?;
    let (port, proto) = port.split_once('/').unwrap_or((port, "TCP"));
    let protocol = Protocol::parse(&proto.to_ascii_uppercase())
        .ok_or_else(|| format!("{proto:?}: want TCP, UDP or SCTP"))?;
    let to = endpoint(cluster, dest)?;
    let number = match port.parse::<u16>() {
        Ok(n) if n > 0 => n,
        // A port name resolves on the destination pod.
        _ => match to {
            Endpoint::Pod(i) => cluster.pods[i]
                .ports
                .iter()
                .find(|p| p.name.as_deref() == Some(port) && p.protocol == protocol)
                .map(|p| p.port)
                .ok_or_else(|| {
                    format!(
                        "{port:?}: {} declares no such {protocol} port",
                        cluster.pods[i].id()
                    )
                })?,
            Endpoint::Ip(_) => return Err(format!("{port:?} is not a port number")),
        },
    };
    Ok((to, number, protocol))
}

fn name(cluster: &Cluster, e: Endpoint) -> String {
    match e {
        Endpoint::Pod(i) => cluster.pods[i].id(),
        Endpoint::Ip(ip) => ip.to_string(),
    }
}

fn side_json(side: &Side) -> Value {
    match side {
        Side::NotIsolated => json!({"allowed": true, "reason": "not-isolated"}),
        Side::NotAPod => json!({"allowed": true, "reason": "not-a-pod"}),
        Side::Loopback => json!({"allowed": true, "reason": "loopback"}),
        Side::Allowed(rules) => json!({"allowed": true, "reason": "allowed",
            "rules": rules.iter().map(ToString::to_string).collect::<Vec<_>>()}),
        Side::Denied(policies) => {
            json!({"allowed": false, "reason": "denied", "isolatedBy": policies})
        }
    }
}

fn side_text(side: &Side, way: &str, who: &str) -> String {
    match side {
        Side::NotIsolated => format!("{way}: allowed: no NetworkPolicy selects {who} for {way}"),
        Side::NotAPod => format!(
            "{way}: allowed: {who} is an address or a host-network pod; NetworkPolicies do not apply"
        ),
        Side::Loopback => format!("{way}: allowed: a pod's traffic to itself never leaves it"),
        Side::Allowed(rules) => {
            let list: Vec<String> = rules.iter().map(ToString::to_string).collect();
            format!("{way}: allowed by {}", list.join(", "))
        }
        Side::Denied(p) => format!(
            "{way}: DENIED: {who} is isolated by {} and no rule allows this",
            p.join(", ")
        ),
    }
}

fn reach_cmd(cluster: &Cluster, r: &ReachArgs) -> ExitCode {
    let resolved = endpoint(cluster, &r.from).and_then(|f| Ok((f, target(cluster, &r.to)?)));
    let (from, (to, port, protocol)) = match resolved {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let v = cluster.verdict(from, to, port, protocol);
    let (f, t) = (name(cluster, from), name(cluster, to));
    match r.source.output {
        Output::Json => println!(
            "{}",
            json!({"from": f, "to": t, "port": port, "protocol": protocol.as_str(),
                   "allowed": v.allowed(), "egress": side_json(&v.egress), "ingress": side_json(&v.ingress)})
        ),
        Output::Text => {
            let verdict = if v.allowed() { "ALLOWED" } else { "DENIED" };
            println!("{verdict}: {f} -> {t} {port}/{protocol}");
            println!("  {}", side_text(&v.egress, "egress", &f));
            println!("  {}", side_text(&v.ingress, "ingress", &t));
        }
    }
    if v.allowed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn matrix_cmd(cluster: &Cluster, output: Output) -> ExitCode {
    let rows: Vec<Endpoint> = (0..cluster.pods.len()).map(Endpoint::Pod).collect();
    let columns: Vec<Column> = declared_columns(cluster);
    let col_name = |c: &Column| format!("{}:{}/{}", name(cluster, c.to), c.port, c.protocol);
    let cells: Vec<Vec<bool>> = rows
        .iter()
        .map(|&r| {
            columns
                .iter()
                .map(|c| {
                    let (e, i) = cluster.allows(r, c.to, c.port, c.protocol);
                    e && i
                })
                .collect()
        })
        .collect();
    match output {
        Output::Json => println!(
            "{}",
            json!({"rows": rows.iter().map(|r| name(cluster, *r)).collect::<Vec<_>>(),
                   "columns": columns.iter().map(col_name).collect::<Vec<_>>(),
                   "allowed": cells})
        ),
        Output::Text => {
            println!("destinations (columns):");
            for (i, c) in columns.iter().enumerate() {
                println!("  {:>3}  {}", i + 1, col_name(c));
            }
            println!("\nsources (rows); + allowed, . denied:");
            let width = rows
                .iter()
                .map(|r| name(cluster, *r).len())
                .max()
                .unwrap_or(0);
            for (r, row) in rows.iter().zip(&cells) {
                let marks: String = row.iter().map(|a| if *a { '+' } else { '.' }).collect();
                println!("  {:<width$}  {marks}", name(cluster, *r));
            }
        }
    }
    ExitCode::SUCCESS
}
