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
    // The API server rejects unknown fields (strict field validation); so does the offline reader,
    // or a typo like `allowDns` would silently fall back to a default.
    let mut unknown = Vec::new();
    let mut record = |p: serde_ignored::Path<'_>| unknown.push(p.to_string());
    let tracked = serde_ignored::Deserializer::new(de, &mut record);
    let b: SecurityBaseline = serde_path_to_error::deserialize(tracked).map_err(|e| {
        let field = e.path().to_string();
        format!("{path}: {field}: {}", e.into_inner())
    })?;
    // The generated type reads apiVersion/kind itself; check them here.
    unknown.retain(|p| p != "apiVersion" && p != "kind");
    let meta: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("{path}: {e}"))?;
    if meta.get("kind").and_then(|k| k.as_str()) != Some("SecurityBaseline")
        || meta.get("apiVersion").and_then(|k| k.as_str()) != Some("palisade.dev/v1alpha1")
    {
        return Err(format!(
            "{path}: kind: want apiVersion palisade.dev/v1alpha1, kind SecurityBaseline"
        ));
    }
    if let Some(field) = unknown.first() {
        return Err(format!("{path}: {field}: unknown field"));
    }
    if b.metadata.name.as_deref().unwrap_or("").is_empty() {
        return Err(format!(
            "{path}: metadata.name: a SecurityBaseline needs a name"
        ));
    }
    Ok(b)
}
