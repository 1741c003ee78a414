//! The parsing limit of `palisade audit`: every document of the same files parsed and
//! dropped, with the same allocator. `scripts/bench-offline` reports Palisade's CPU time as a
//! multiple of this.
//!
//! - `--reader palisade` (the default): the readers the audit uses, the fast block-style
//!   reader and serde_yaml_ng for what it leaves (`palisade::manifest::scan_str`);
//! - `--reader libyaml`: serde_yaml_ng over unsafe-libyaml alone (`IgnoredAny`), the parser
//!   the audit used before the fast reader.
//!
//! usage: cargo run --release --example yaml_scan -- [--reader palisade|libyaml] FILE_OR_DIR...

use serde::de::{Deserialize, IgnoredAny};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.path());
        for e in entries {
            collect(&e.path(), out)?;
        }
    } else if path
        .extension()
        .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
    {
        out.push(path.to_path_buf());
    }
    Ok(())
}

fn libyaml_scan(text: &str) -> Result<usize, String> {
    let mut documents = 0;
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        IgnoredAny::deserialize(doc).map_err(|e| e.to_string())?;
        documents += 1;
    }
    Ok(documents)
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut libyaml = false;
    if let Some(i) = args.iter().position(|a| a == "--reader") {
        match args.get(i + 1).map(String::as_str) {
            Some("palisade") => {}
            Some("libyaml") => libyaml = true,
            other => {
                eprintln!("error: --reader takes palisade or libyaml, not {other:?}");
                return ExitCode::from(2);
            }
        }
        args.drain(i..i + 2);
    }
    let mut files = Vec::new();
    for arg in &args {
        if let Err(e) = collect(Path::new(&arg), &mut files) {
            eprintln!("error: {arg}: {e}");
            return ExitCode::from(2);
        }
    }
    let (mut documents, mut bytes) = (0usize, 0usize);
    for f in &files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {}: {e}", f.display());
                return ExitCode::from(2);
            }
        };
        bytes += text.len();
        let scanned = if libyaml {
            libyaml_scan(&text)
        } else {
            palisade::manifest::scan_str(&text)
        };
        match scanned {
            Ok(n) => documents += n,
            Err(e) => {
                eprintln!("error: {}: {e}", f.display());
                return ExitCode::from(2);
            }
        }
    }
    println!(
        "{{\"files\": {}, \"documents\": {documents}, \"bytes\": {bytes}}}",
        files.len()
    );
    ExitCode::SUCCESS
}
