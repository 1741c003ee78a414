//! Arbitrary bytes -> manifest loader -> streaming Auditor (default baseline) -> finish() ->
//! every report format. None of it may panic, whatever the input.
#![no_main]

use k8s_openapi::jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use palisade::manifest::load_bytes;
use palisade::policy::audit::Auditor;
use palisade::policy::baseline::CompiledBaseline;
use palisade::report::{render, Format};
use std::sync::OnceLock;

fn baseline() -> &'static CompiledBaseline {
    static BASELINE: OnceLock<CompiledBaseline> = OnceLock::new();
    BASELINE.get_or_init(|| {
        CompiledBaseline::compile("fuzz", &Default::default(), Timestamp::UNIX_EPOCH)
            .expect("the default baseline compiles")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut auditor = Auditor::new(baseline());
    let mut diags = Vec::new();
    load_bytes(
        "fuzz.yaml",
        data,
        &mut |obj, src| auditor.add(obj, Some(&src)),
        &mut diags,
    );
    let report = auditor.finish();
    for format in [Format::Json, Format::Sarif, Format::Table] {
        let _ = render(format, &report, &diags);
    }
});
