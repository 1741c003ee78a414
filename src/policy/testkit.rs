//! Shared helpers of the engine's unit tests: a baseline from YAML, documents fed to an audit.

use super::audit::Auditor;
use super::baseline::CompiledBaseline;
use crate::crd::SecurityBaselineSpec;
use crate::manifest;

/// A baseline named `b` compiled from a spec in YAML.
pub fn baseline(yaml: &str) -> CompiledBaseline {
    let spec: SecurityBaselineSpec = serde_yaml_ng::from_str(yaml).unwrap();
    CompiledBaseline::compile("b", &spec, k8s_openapi::jiff::Timestamp::now()).unwrap()
}

/// Feeds every document of `docs` to the audit; they must load without a diagnostic.
pub fn feed(auditor: &mut Auditor<'_>, docs: &str) {
    let mut diags = vec![];
    manifest::load_str(
        "t.yaml",
        docs,
        &mut |o, s| auditor.add(o, Some(&s)),
        &mut diags,
    );
    assert!(diags.is_empty(), "{diags:?}");
}
