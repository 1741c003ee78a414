//! The offline audit's core (read every file, audit, write the JSON report) with the system
//! allocator, so that heap profilers that interpose malloc (heaptrack) can attribute its memory.
//! The `palisade` binary uses mimalloc, which they cannot see into.
//!
//! usage: heaptrack cargo-target/release/examples/audit_heap FILE_OR_DIR...

use palisade::crd::{PodSecuritySpec, SecurityBaselineSpec};
use palisade::policy::audit::Auditor;
use palisade::policy::baseline::CompiledBaseline;
use palisade::policy::pss::Level;
use palisade::report::{self, Format};

fn main() {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    let spec = SecurityBaselineSpec {
        pod_security: Some(PodSecuritySpec {
            level: Some(Level::Restricted),
            ..Default::default()
        }),
        ..Default::default()
    };
    let now = k8s_openapi::jiff::Timestamp::now();
    let baseline = CompiledBaseline::compile("default", &spec, now).expect("the default baseline");
    let mut auditor = Auditor::new(&baseline);
    let mut diags = Vec::new();
    palisade::manifest::load_paths(&paths, 2, &mut |o, s| auditor.add(o, Some(&s)), &mut diags);
    let report = auditor.finish();
    let mut out = std::io::BufWriter::new(std::io::sink());
    report::write(Format::Json, &report, &diags, false, &mut out).expect("writing to a sink");
    eprintln!(
        "{} findings, {} diagnostics",
        report.findings.len(),
        diags.len()
    );
}
