//! The parsing limit of `palisade audit`: a bare YAML event scan of the same files with the
//! same parser (serde_yaml_ng over unsafe-libyaml, every document read and ignored) and the
//! same allocator. `scripts/bench-offline` reports Palisade's CPU time as a multiple of this.
//!
//! usage: cargo run --release --example yaml_scan -- FILE_OR_DIR...

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

fn main() -> ExitCode {
    let mut files = Vec::new();
    for arg in std::env::args().skip(1) {
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
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            if let Err(e) = IgnoredAny::deserialize(doc) {
                eprintln!("error: {}: {e}", f.display());
                return ExitCode::from(2);
            }
            documents += 1;
        }
    }
    println!(
        "{{\"files\": {}, \"documents\": {documents}, \"bytes\": {bytes}}}",
        files.len()
    );
    ExitCode::SUCCESS
}
