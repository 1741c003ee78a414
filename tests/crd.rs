//! The committed CRD is what the code generates, every field is documented, and the schema
//! carries no defaults (so GitOps tools never see a server-side rewrite).

use serde_json::Value;

fn committed() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/securitybaseline.yaml"
    ))
    .unwrap()
}

#[test]
fn committed_crd_is_current() {
    assert!(
        committed() == palisade::crdgen::crd_yaml(),
        "crds/securitybaseline.yaml is stale: run `cargo run -- crd > crds/securitybaseline.yaml`"
    );
}

fn schema() -> Value {
    let crd: Value = serde_yaml_ng::from_str(&palisade::crdgen::crd_yaml()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn walk(v: &Value, path: &str, undocumented: &mut Vec<String>, defaults: &mut Vec<String>) {
    let Some(map) = v.as_object() else { return };
    if map.contains_key("default") {
        defaults.push(path.to_string());
    }
    if let Some(props) = map.get("properties").and_then(Value::as_object) {
        for (name, p) in props {
            let child = format!("{path}.{name}");
            // metadata is the API server's; apiVersion/kind are documented by Kubernetes itself.
            if !["apiVersion", "kind", "metadata"].contains(&name.as_str())
                && p.get("description")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
            {
                undocumented.push(child.clone());
            }
            walk(p, &child, undocumented, defaults);
        }
    }
    if let Some(items) = map.get("items") {
        walk(items, &format!("{path}[]"), undocumented, defaults);
    }
    if let Some(extra) = map.get("additionalProperties") {
        walk(extra, &format!("{path}{{}}"), undocumented, defaults);
    }
}

#[test]
fn every_field_is_documented_and_nothing_is_defaulted() {
    let (mut undocumented, mut defaults) = (vec![], vec![]);
    walk(&schema(), "", &mut undocumented, &mut defaults);
    assert!(
        undocumented.is_empty(),
        "fields without description: {undocumented:?}"
    );
    assert!(defaults.is_empty(), "schema defaults at: {defaults:?}");
}

#[test]
fn schema_validates_rule_ids_reasons_and_allow_peers() {
    let s = schema();
    let ex = &s["properties"]["spec"]["properties"]["exemptions"]["items"];
    let ids = ex["properties"]["rules"]["items"]["enum"]
        .as_array()
        .unwrap();
    assert!(ids.iter().any(|v| v == "pss.run-as-non-root"));
    assert_eq!(ids.len(), palisade::policy::rules::Rule::ALL.len());
    let cel = ex["x-kubernetes-validations"][0]["rule"].as_str().unwrap();
    assert!(cel.contains("self.reason"), "{cel}");
    let allow = &s["properties"]["spec"]["properties"]["network"]["properties"]["allow"]["items"];
    assert!(allow["x-kubernetes-validations"][0]["rule"]
        .as_str()
        .unwrap()
        .contains("size(self.from)"));
    let version = &s["properties"]["spec"]["properties"]["podSecurity"]["properties"]["version"];
    assert!(version["pattern"]
        .as_str()
        .unwrap()
        .starts_with("^(latest|v1"));
}

#[test]
fn printer_columns_and_short_name() {
    let crd: Value = serde_yaml_ng::from_str(&palisade::crdgen::crd_yaml()).unwrap();
    assert_eq!(crd["spec"]["scope"], "Cluster");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "sb");
    let cols: Vec<&str> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        cols,
        ["Enforcement", "Namespaces", "Violations", "Ready", "Age"]
    );
    assert!(crd["spec"]["versions"][0]["subresources"]["status"].is_object());
}
