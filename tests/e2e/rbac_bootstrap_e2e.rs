//! The bootstrap RBAC policy Palisade embeds (what "built-in" means) is exactly what the real
//! kube-apiserver of the local control plane creates: regenerate it with `scripts/rbac-bootstrap`
//! when this fails after a Kubernetes bump.

use crate::common;

use common::ROOT;

#[test]
fn embedded_bootstrap_policy_equals_the_api_servers() {
    let _serial = common::serial::module(module_path!());
    let out = std::process::Command::new(format!("{ROOT}/scripts/rbac-bootstrap"))
        .output()
        .expect("run scripts/rbac-bootstrap");
    assert!(
        out.status.success(),
        "scripts/rbac-bootstrap: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let live: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/src/policy/rbac/bootstrap/v1.34.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        live["version"]
            .as_str()
            .unwrap()
            .rsplit_once('.')
            .unwrap()
            .0,
        "v1.34",
        "the plane runs another minor version: add its policy file"
    );
    for section in [
        "clusterRoles",
        "roles",
        "clusterRoleBindings",
        "roleBindings",
    ] {
        let (l, c) = (&live[section], &committed[section]);
        let names =
            |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(names(l), names(c), "{section}: names differ");
        for name in names(l) {
            assert_eq!(l[&name], c[&name], "{section} {name} differs");
        }
    }
}
