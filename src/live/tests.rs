use super::*;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};

const RBAC: &str = include_str!("../../deploy/audit-cluster/rbac.yaml");

fn shipped() -> (ClusterRole, Role) {
    let mut docs = serde_yaml_ng::Deserializer::from_str(RBAC);
    let cluster_role = ClusterRole::deserialize(docs.next().unwrap()).unwrap();
    let role = Role::deserialize(docs.next().unwrap()).unwrap();
    assert!(
        docs.next().is_none(),
        "rbac.yaml holds exactly a ClusterRole and a Role"
    );
    (cluster_role, role)
}

#[test]
fn the_shipped_clusterrole_lists_every_audited_kind_and_grants_nothing_else() {
    let (cluster_role, role) = shipped();
    let rules = cluster_role.rules.unwrap();
    let granted: Vec<(String, String)> = rules
        .iter()
        .flat_map(|r| {
            assert_eq!(r.verbs, ["list"], "only list is granted: {r:?}");
            assert!(r.resource_names.is_none() && r.non_resource_urls.is_none());
            let groups = r.api_groups.clone().unwrap();
            let resources = r.resources.clone().unwrap();
            groups.into_iter().flat_map(move |g| {
                resources
                    .clone()
                    .into_iter()
                    .map(move |res| (g.clone(), res))
            })
        })
        .collect();
    let needed: Vec<(String, String)> = manifest::audited_kinds()
        .map(|(v, k)| {
            let r = api_resource(v, k);
            (r.group, r.plural)
        })
        .collect();
    for n in &needed {
        assert!(granted.contains(n), "{n:?} is audited but not listable");
    }
    for g in &granted {
        assert!(needed.contains(g), "{g:?} is granted but not audited");
    }
    assert!(!granted.iter().any(|(_, r)| r == "*" || r == "secrets"));
    // The API server's addresses: list on EndpointSlices in `default` only.
    assert_eq!(role.metadata.namespace.as_deref(), Some("default"));
    let rules = role.rules.unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].verbs, ["list"]);
    assert_eq!(rules[0].resources.as_deref().unwrap(), ["endpointslices"]);
}

#[test]
fn resources_are_the_api_servers_plurals() {
    let urls: Vec<String> = [
        ("v1", "Pod"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ("v1", "ReplicationController"),
    ]
    .iter()
    .map(|(v, k)| DynamicObject::url_path(&api_resource(v, k), None))
    .collect();
    assert_eq!(
        urls,
        [
            "/api/v1/pods",
            "/apis/networking.k8s.io/v1/networkpolicies",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            "/api/v1/replicationcontrollers",
        ]
    );
}

#[test]
fn field_managers_and_status_are_dropped_before_decoding_but_a_namespaces_phase_is_kept() {
    let mut pod = serde_json::json!({
        "metadata": {"name": "p", "namespace": "shop", "managedFields": [{"manager": "kubectl"}]},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": "Running"},
    });
    trim("Pod", &mut pod);
    assert!(pod["metadata"].get("managedFields").is_none());
    assert!(pod.get("status").is_none());
    assert_eq!(pod["spec"]["containers"][0]["name"], "c");
    let mut ns =
        serde_json::json!({"metadata": {"name": "shop"}, "status": {"phase": "Terminating"}});
    trim("Namespace", &mut ns);
    assert_eq!(ns["status"]["phase"], "Terminating");
}

#[test]
fn a_type_error_names_the_object_and_the_field() {
    let item = serde_json::json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"replicas": "three", "selector": {}, "template": {}},
    });
    let source = object_source("Deployment", &item);
    let err = match manifest::decode_json("apps/v1", "Deployment", item, &source) {
        Some(Err(d)) => d,
        _ => panic!("a string in replicas does not decode"),
    };
    assert_eq!(err.file, "cluster: Deployment shop/web");
    assert!(
        err.message.starts_with("spec.replicas: "),
        "{}",
        err.message
    );
    assert_eq!(err.severity, Severity::Error);
    let cluster_scoped = object_source(
        "ClusterRole",
        &serde_json::json!({"metadata": {"name": "admin"}}),
    );
    assert_eq!(&*cluster_scoped.file, "cluster: ClusterRole admin");
}

#[test]
fn forbidden_and_unserved_kinds_are_diagnostics_and_bad_credentials_end_the_read() {
    let resource = api_resource("batch/v1", "CronJob");
    let status = |code: u16, message: &str| {
        kube::Error::Api(
            kube::core::Status::failure(message, "")
                .with_code(code)
                .boxed(),
        )
    };
    let forbidden = kind_error(&resource, status(403, "cronjobs.batch is forbidden")).unwrap();
    assert_eq!(forbidden.severity, Severity::Error);
    assert!(forbidden.to_string().starts_with(
        "error: cluster: list CronJob (batch/v1, resource cronjobs.batch): forbidden"
    ));
    let unserved = kind_error(&resource, status(404, "not found")).unwrap();
    assert_eq!(unserved.severity, Severity::Skipped);
    assert!(matches!(
        kind_error(&resource, status(401, "Unauthorized")),
        Err(ReadError::Unauthorized(_))
    ));
    let expired = kind_error(&resource, status(410, "continue expired")).unwrap();
    assert!(
        expired.message.contains("incomplete"),
        "{}",
        expired.message
    );
}

#[test]
fn endpoints_keep_ready_tcp_addresses_only() {
    let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "kubernetes"},
        "addressType": "IPv4",
        "ports": [{"port": 6443, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
        "endpoints": [
            {"addresses": ["10.0.0.2"], "conditions": {"ready": true}},
            {"addresses": ["10.0.0.3"], "conditions": {"ready": false}},
            {"addresses": ["10.0.0.1"]},
        ],
    }))
    .unwrap();
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    assert_eq!(
        endpoints_of([&slice, &slice]),
        [(ip("10.0.0.1"), 6443), (ip("10.0.0.2"), 6443)]
    );
}
