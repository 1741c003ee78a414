//! Reading a SecurityBaseline from a file for offline use.

use k8s_openapi::jiff::Timestamp;
use palisade::crd::{SecurityBaseline, SecurityBaselineSpec};
use palisade::policy::baseline::CompiledBaseline;
use palisade::policy::pss::Level;

/// The baseline used when none is given: restricted PSS, hardening, RBAC and network audit.
pub fn default_baseline() -> SecurityBaseline {
    let spec = SecurityBaselineSpec {
        pod_security: Some(palisade::crd::PodSecuritySpec {
            level: Some(Level::Restricted),
            ..Default::default()
        }),
        ..Default::default()
    };
    SecurityBaseline::new("default", spec)
}

/// Reads and compiles a baseline file; the error names the file and the field.
pub fn load(path: Option<&str>, now: Timestamp) -> Result<CompiledBaseline, String> {
    let baseline = match path {
        None => default_baseline(),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{p}: cannot read: {e}"))?;
            parse(p, &text)?
        }
    };
    let name = baseline
        .metadata
        .name
        .clone()
        .unwrap_or_else(|| "baseline".into());
    CompiledBaseline::compile(&name, &baseline.spec, now)
        .map_err(|e| format!("{}: {e}", path.unwrap_or("default baseline")))
}

fn parse(path: &str, text: &str) -> Result<SecurityBaseline, String> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let b: SecurityBaseline = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        format!("{path}: {field}: {}", e.into_inner())
    })?;
    if b.metadata.name.as_deref().unwrap_or("").is_empty() {
        return Err(format!(
            "{path}: metadata.name: a SecurityBaseline needs a name"
        ));
    }
    Ok(b)
}
