//! `palisade rbac learn`: the minimal Roles/RoleBindings (and ClusterRole/Binding where cluster
//! scope was used) that allow what service accounts did, read from kube-apiserver audit logs.

use clap::{Args, Subcommand, ValueEnum};
use palisade::policy::rbac::learn::{learned_objects, minimal_rules, Account, LogRead};
use std::io::BufReader;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum RbacCommand {
    /// Print the least-privilege RBAC that covers what service accounts did in audit logs
    /// (JSON lines, `--audit-log-format=json`; Metadata level is enough). Denied requests are
    /// never learned. Exit 0, or 2 on unreadable input (every bad line is named on stderr).
    Learn(LearnArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Yaml,
    Json,
}

#[derive(Args)]
pub struct LearnArgs {
    /// An audit log file (repeatable; `-` for stdin).
    #[arg(long = "audit-log", required = true)]
    audit_logs: Vec<String>,
    /// Only this account (NAMESPACE/NAME); default every service account in the logs.
    #[arg(long)]
    serviceaccount: Option<String>,
    /// Prefix of the generated objects' names.
    #[arg(long, default_value = "palisade-learned-")]
    prefix: String,
    #[arg(long, short = 'o', value_enum, default_value = "yaml")]
    output: Format,
}

/// Reads audit logs (`-`: stdin), keeping `only`'s requests if given. Unreadable lines are
/// named on stderr (the caller decides the exit status from `errors_total`); a file that cannot
/// be read at all is an input error.
pub fn read_audit_logs(paths: &[String], only: Option<&Account>) -> Result<LogRead, ExitCode> {
    let mut read = LogRead::default();
    for path in paths {
        let result = if path == "-" {
            read.read(std::io::stdin().lock(), "<stdin>", only)
        } else {
            std::fs::File::open(path).and_then(|f| read.read(BufReader::new(f), path, only))
        };
        if let Err(e) = result {
            eprintln!("error: {path}: {e}");
            return Err(super::input_error());
        }
    }
    for e in &read.errors {
        eprintln!("error: {e}");
    }
    if read.errors_total > read.errors.len() as u64 {
        eprintln!(
            "error: ... and {} more unreadable lines",
            read.errors_total - read.errors.len() as u64
        );
    }
    Ok(read)
}

pub fn run(cmd: RbacCommand) -> ExitCode {
    match cmd {
        RbacCommand::Learn(a) => learn(a),
    }
}

fn learn(args: LearnArgs) -> ExitCode {
    let only = match args
        .serviceaccount
        .as_deref()
        .map(|s| (s, Account::parse(s)))
    {
        Some((s, None)) => {
            eprintln!("error: --serviceaccount {s:?}: expected NAMESPACE/NAME");
            return super::input_error();
        }
        Some((_, a)) => a,
        None => None,
    };
    let read = match read_audit_logs(&args.audit_logs, only.as_ref()) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if read.usage.accounts.is_empty() {
        let whom = only.map_or("any service account".to_string(), |a| a.to_string());
        eprintln!(
            "error: no request of {whom} in {} lines of {}",
            read.lines,
            args.audit_logs.join(", ")
        );
        return super::input_error();
    }
    let mut docs = Vec::new();
    let mut notes = Vec::new();
    for (account, usage) in &read.usage.accounts {
        let learned = minimal_rules(usage.accesses.keys());
        let mut note = format!(
            "{account}: {} distinct requests learned, {} denied (not learned)",
            usage.accesses.len(),
            usage.denied
        );
        if !usage.complete() {
            note.push_str(&format!(
                "; INCOMPLETE: {} requests past the per-account bound were not recorded",
                usage.dropped
            ));
        }
        if learned.is_empty() {
            note.push_str("; needs no permissions beyond what every user has");
        }
        notes.push(note);
        docs.extend(learned_objects(account, &learned, &args.prefix));
    }
    for n in &notes {
        eprintln!("{n}");
    }
    match args.output {
        Format::Json => {
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": docs});
            println!("{}", serde_json::to_string_pretty(&list).expect("JSON"));
        }
        Format::Yaml => {
            for d in &docs {
                print!("---\n{}", serde_yaml_ng::to_string(d).expect("YAML"));
            }
        }
    }
    if read.errors_total > 0 {
        super::input_error()
    } else {
        ExitCode::SUCCESS
    }
}
