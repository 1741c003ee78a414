#![forbid(unsafe_code)]
//! `palisade`: audit manifests offline, preview generated objects, print the CRD.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod cli;

// The allocator: the offline audit allocates a string per YAML scalar, and glibc's malloc/free
// were a quarter of its profile. Its build-time options are in .cargo/config.toml.
// `RUSTFLAGS="--cfg palisade_system_alloc"` keeps the system allocator, for heap profiles
// (heaptrack sees only malloc/free; docs/bench-operator.md).
#[cfg(not(palisade_system_alloc))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "palisade",
    version,
    about = "Kubernetes security operator: defense in depth as a controller"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Audit manifests (files, directories, `-` for stdin) against a SecurityBaseline.
    Audit(cli::audit::AuditArgs),
    /// Print the objects the operator would create for a baseline, as YAML.
    Generate(cli::generate::GenerateArgs),
    /// What NetworkPolicies allow: `reach FROM TO:PORT[/PROTO]` and `matrix`.
    #[command(subcommand)]
    Netpol(cli::netpol::NetpolCommand),
    /// Check this node's control plane, etcd and kubelet against the CIS Kubernetes Benchmark.
    Node(cli::node::NodeArgs),
    /// Check the control plane from the API server's view: static control-plane pods' flags,
    /// anonymous authentication and the Node authorizer, probed.
    ControlPlane(cli::control_plane::ControlPlaneArgs),
    /// Least privilege learned from audit logs: `learn --audit-log FILE`.
    #[command(subcommand)]
    Rbac(cli::rbac::RbacCommand),
    /// Print the SecurityBaseline CustomResourceDefinition.
    Crd,
    /// Run the operator against the cluster in KUBECONFIG (or in-cluster config).
    Run(cli::run::RunArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Command::Audit(a) => cli::audit::run(a),
        Command::Generate(g) => cli::generate::run(g),
        Command::Run(r) => cli::run::run(r),
        Command::Netpol(n) => cli::netpol::run(n),
        Command::Rbac(r) => cli::rbac::run(r),
        Command::Node(n) => cli::node::run(n),
        Command::ControlPlane(c) => cli::control_plane::run(c),
        Command::Crd => {
            print!("{}", palisade::crdgen::crd_yaml());
            ExitCode::SUCCESS
        }
    }
}
