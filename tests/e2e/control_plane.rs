//! The local control plane is real: the Palisade CRD installs and validates on a real
//! kube-apiserver, server-side apply records field managers, kube-controller-manager garbage
//! collects and finalizes namespaces, and admission (ValidatingAdmissionPolicy, Pod Security
//! Admission) is enforced. Run with `cargo test --features e2e --test e2e control_plane::` and
//! KUBECONFIG pointing at `scripts/control-plane up`.

use crate::common;

use common::{apply_yaml, client, install_crd, unique, wait_for, TestNamespace, ROOT};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::Role;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GetParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use palisade::crd::SecurityBaseline;
use serde_json::{json, Value};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);

/// The API server's message for a rejected request; panics if the request succeeded or failed
/// any other way.
fn api_message<T: std::fmt::Debug>(what: &str, res: Result<T, kube::Error>) -> String {
    match res {
        Err(kube::Error::Api(status)) => status.message,
        Err(e) => panic!("{what}: expected an API error, got {e}"),
        Ok(v) => panic!("{what}: expected a rejection, but the API server accepted it: {v:?}"),
    }
}

fn baseline_api(client: &Client) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &ApiResource::erase::<SecurityBaseline>(&()))
}

/// config/baseline.yaml as JSON, renamed to `name`.
fn sample_baseline(name: &str) -> Value {
    let yaml = std::fs::read_to_string(format!("{ROOT}/config/baseline.yaml")).unwrap();
    let mut v: Value = serde_yaml_ng::from_str(&yaml).expect("config/baseline.yaml parses");
    v["metadata"] = json!({ "name": name });
    v
}

fn dynamic(v: &Value) -> DynamicObject {
    serde_json::from_value(v.clone()).expect("a Kubernetes object")
}

/// Waits for the ServiceAccount `default` that kube-controller-manager creates in `ns`.
async fn wait_for_default_sa(client: &Client, ns: &str) {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    wait_for(&format!("ServiceAccount {ns}/default"), DEADLINE, || {
        let sas = sas.clone();
        async move { sas.get_opt("default").await.ok().flatten().map(|_| ()) }
    })
    .await;
}

/// Deletes what a test created when dropped, also when the test panics: it blocks the (multi-thread)
/// test runtime until the deletes are sent, so nothing leaks into later runs on the same plane.
/// Namespaces are only asked to delete (the namespace controller finishes asynchronously).
struct Cleanup {
    client: Client,
    namespaces: Vec<String>,
    baselines: Vec<String>,
    admission_policies: Vec<String>,
}

impl Cleanup {
    fn new(client: &Client) -> Self {
        Cleanup {
            client: client.clone(),
            namespaces: vec![],
            baselines: vec![],
            admission_policies: vec![],
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let client = self.client.clone();
        let (namespaces, baselines, policies) = (
            std::mem::take(&mut self.namespaces),
            std::mem::take(&mut self.baselines),
            std::mem::take(&mut self.admission_policies),
        );
        let work = async move {
            let dp = DeleteParams::default();
            for name in &policies {
                let _ = Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
                    .delete(name, &dp)
                    .await;
                let _ = Api::<ValidatingAdmissionPolicy>::all(client.clone())
                    .delete(name, &dp)
                    .await;
            }
            for name in &baselines {
                let _ = baseline_api(&client).delete(name, &dp).await;
            }
            for name in &namespaces {
                let _ = Api::<Namespace>::all(client.clone())
                    .delete(name, &dp)
                    .await;
            }
        };
        let handle = tokio::runtime::Handle::current();
        assert!(
            matches!(
                handle.runtime_flavor(),
                tokio::runtime::RuntimeFlavor::MultiThread
            ),
            "Cleanup needs #[tokio::test(flavor = \"multi_thread\")]"
        );
        tokio::task::block_in_place(|| handle.block_on(work));
    }
}

fn pod(name: &str, pod_security_context: Value, container_security_context: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name },
        "spec": {
            "securityContext": pod_security_context,
            "containers": [{
                "name": "app",
                "image": "registry.k8s.io/pause:3.10",
                "securityContext": container_security_context,
            }],
        },
    }))
    .unwrap()
}

// ------------------------------------------------------------------------------------ CRD

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_baseline_round_trips_without_server_side_changes() {
    let _serial = common::serial::module(module_path!());
    let client = client().await;
    install_crd(&client).await;
    let api = baseline_api(&client);
    let name = unique("roundtrip");
    let mut cleanup = Cleanup::new(&client);
    cleanup.baselines.push(name.clone());
    let sent = sample_baseline(&name);

    let created = api
        .create(&PostParams::default(), &dynamic(&sent))
        .await
        .expect("create the sample baseline");
    assert_eq!(
        created.data["spec"], sent["spec"],
        "create response spec differs from what was sent"
    );

    // Read back raw: the spec must be byte-for-byte what was sent (no schema defaulting, no pruning).
    let got = api.get(&name).await.expect("read the baseline back");
    assert_eq!(
        serde_json::to_string(&got.data["spec"]).unwrap(),
        serde_json::to_string(&sent["spec"]).unwrap(),
        "the API server changed the spec"
    );
    assert!(
        got.metadata.uid.is_some() && got.metadata.creation_timestamp.is_some(),
        "server metadata missing"
    );

    // And through the typed API: the stored object decodes into the same spec the file does.
    let typed: Api<SecurityBaseline> = Api::all(client.clone());
    let stored = typed.get(&name).await.expect("typed get");
    let from_file: SecurityBaseline = serde_json::from_value(sent.clone()).expect("sample decodes");
    assert_eq!(stored.spec, from_file.spec);
    assert_eq!(
        serde_json::to_value(&stored.spec).unwrap(),
        sent["spec"],
        "typed spec re-encodes differently"
    );

    // Printer columns: declared on the served CRD ...
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds.get("securitybaselines.palisade.dev").await.unwrap();
    let version = crd
        .spec
        .versions
        .iter()
        .find(|v| v.name == "v1alpha1")
        .expect("v1alpha1 served");
    assert!(version.served && version.storage);
    let columns: Vec<(String, String)> = version
        .additional_printer_columns
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|c| (c.name.clone(), c.json_path.clone()))
        .collect();
    let expected = [
        ("Enforcement", ".spec.enforcement"),
        ("Namespaces", ".status.namespaces"),
        ("Violations", ".status.violations.total"),
        ("Ready", ".status.conditions[?(@.type==\"Ready\")].status"),
        ("Age", ".metadata.creationTimestamp"),
    ];
    assert_eq!(
        columns,
        expected
            .iter()
            .map(|(n, p)| (n.to_string(), p.to_string()))
            .collect::<Vec<_>>()
    );

    // ... and actually used by the API server when a client asks for a Table (what kubectl get prints).
    let url = SecurityBaseline::url_path(&(), None);
    let mut req = kube::core::Request::new(url)
        .get(&name, &GetParams::default())
        .unwrap();
    req.headers_mut().insert(
        "accept",
        "application/json;as=Table;v=v1;g=meta.k8s.io"
            .parse()
            .unwrap(),
    );
    let table: Value = client.request(req).await.expect("table request");
    assert_eq!(table["kind"], "Table", "{table}");
    let headers: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("columnDefinitions")
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        headers,
        [
            "Name",
            "Enforcement",
            "Namespaces",
            "Violations",
            "Ready",
            "Age"
        ]
    );
    let cells = &table["rows"][0]["cells"];
    assert_eq!(cells[0], json!(name));
    assert_eq!(cells[1], "Enforce");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_security_baselines_are_rejected_by_the_api_server() {
    let _serial = common::serial::module(module_path!());
    let client = client().await;
    install_crd(&client).await;
    let api = baseline_api(&client);
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };

    // Control: the unmodified sample is valid, so each rejection below is caused by its one change.
    let name = unique("valid");
    api.create(&dry_run, &dynamic(&sample_baseline(&name)))
        .await
        .expect("the sample baseline is valid");

    type Mutation = fn(&mut Value);
    let cases: [(&str, Mutation, &[&str]); 6] = [
        (
            "exemption without a reason",
            |v| {
                v["spec"]["exemptions"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("reason");
            },
            &["spec.exemptions[0].reason", "Required value"],
        ),
        (
            "exemption with a too-short reason",
            |v| v["spec"]["exemptions"][0]["reason"] = json!("  because "),
            &[
                "spec.exemptions[0].reason",
                "reason must explain the exemption",
            ],
        ),
        (
            "unknown rule id in an exemption",
            |v| {
                v["spec"]["exemptions"][0]["rules"] =
                    json!(["pss.run-as-non-root", "pss.no-such-rule"])
            },
            &[
                "spec.exemptions[0].rules[1]",
                "Unsupported value",
                "pss.no-such-rule",
            ],
        ),
        (
            "allow rule with no peers",
            |v| {
                v["spec"]["network"]["allow"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("from");
            },
            &[
                "spec.network.allow[0].from",
                "an allow rule needs at least one peer",
            ],
        ),
        (
            "malformed podSecurity.version",
            |v| v["spec"]["podSecurity"]["version"] = json!("v2.0"),
            &["spec.podSecurity.version", "should match", "v2.0"],
        ),
        (
            "wildcard verb in a least-privilege rule",
            |v| v["spec"]["rbac"]["serviceAccounts"][0]["rules"][0]["verbs"] = json!(["get", "*"]),
            &[
                "spec.rbac.serviceAccounts[0].rules[0].verbs[1]",
                "should match",
            ],
        ),
    ];

    let mut cleanup = Cleanup::new(&client);
    let mut failures = vec![];
    for (what, mutate, expected) in cases {
        let name = unique("invalid");
        cleanup.baselines.push(name.clone()); // in case the API server wrongly accepts it
        let mut doc = sample_baseline(&name);
        mutate(&mut doc);
        let res = api.create(&PostParams::default(), &dynamic(&doc)).await;
        let message = api_message(what, res);
        eprintln!("{what}: {message}");
        let missing: Vec<&&str> = expected.iter().filter(|e| !message.contains(**e)).collect();
        if !missing.is_empty() {
            failures.push(format!("{what}: message lacks {missing:?}: {message}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------- server-side apply

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_records_the_palisade_field_manager() {
    let _serial = common::serial::module(module_path!());
    let client = client().await;
    let ns = TestNamespace::new(&client, "ssa", &[]).await;
    let mut cleanup = Cleanup::new(&client);
    cleanup.namespaces.push(ns.name.clone());

    fn applied_by_palisade(meta: &kube::api::ObjectMeta) -> bool {
        meta.managed_fields.iter().flatten().any(|m| {
            m.manager.as_deref() == Some("palisade")
                && m.operation.as_deref() == Some("Apply")
                && m.fields_v1
                    .as_ref()
                    .is_some_and(|f| f.0.get("f:spec").is_some() || f.0.get("f:rules").is_some())
        })
    }

    let netpols: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    apply_yaml(
        &netpols,
        "palisade",
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: palisade-default-deny}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
"#,
    )
    .await;
    let np = netpols.get("palisade-default-deny").await.unwrap();
    assert!(
        applied_by_palisade(&np.metadata),
        "managedFields: {:?}",
        np.metadata.managed_fields
    );

    let roles: Api<Role> = Api::namespaced(client.clone(), &ns.name);
    apply_yaml(
        &roles,
        "palisade",
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: palisade-api}
rules:
  - apiGroups: [""]
    resources: [configmaps]
    verbs: [get, list, watch]
"#,
    )
    .await;
    let role = roles.get("palisade-api").await.unwrap();
    assert!(
        applied_by_palisade(&role.metadata),
        "managedFields: {:?}",
        role.metadata.managed_fields
    );
    assert_eq!(
        role.rules.as_ref().unwrap()[0].verbs,
        ["get", "list", "watch"]
    );

    // Control: a plain create is recorded as an Update by its own manager, not as palisade's Apply.
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("plain".into());
    cm.data = Some([("k".to_string(), "v".to_string())].into());
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let cm = cms
        .create(
            &PostParams {
                field_manager: Some("someone-else".into()),
                ..Default::default()
            },
            &cm,
        )
        .await
        .unwrap();
    assert!(!applied_by_palisade(&cm.metadata));
    assert!(cm
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .any(|m| m.manager.as_deref() == Some("someone-else")
            && m.operation.as_deref() == Some("Update")));
}

// ------------------------------------------------------------------- controller-manager

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collector_deletes_dependents_of_a_deleted_owner() {
    let _serial = common::serial::module(module_path!());
    let client = client().await;
    let ns = TestNamespace::new(&client, "gc", &[]).await;
    let mut cleanup = Cleanup::new(&client);
    cleanup.namespaces.push(ns.name.clone());
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);

    let mut owner = ConfigMap::default();
    owner.metadata.name = Some("owner".into());
    let owner = cms.create(&PostParams::default(), &owner).await.unwrap();

    let mut dependent = ConfigMap::default();
    dependent.metadata.name = Some("dependent".into());
    dependent.metadata.owner_references = Some(vec![owner.controller_owner_ref(&()).unwrap()]);
    let dependent = cms
        .create(&PostParams::default(), &dependent)
        .await
        .unwrap();
    let dependent_uid = dependent.uid().unwrap();

    // Control: a ConfigMap without an owner reference must survive the same deletion.
    let mut bystander = ConfigMap::default();
    bystander.metadata.name = Some("bystander".into());
    cms.create(&PostParams::default(), &bystander)
        .await
        .unwrap();

    cms.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    wait_for(
        "the garbage collector to delete the dependent",
        DEADLINE,
        || {
            let cms = cms.clone();
            let uid = dependent_uid.clone();
            async move {
                match cms.get_opt("dependent").await.expect("get dependent") {
                    None => Some(()),
                    Some(cm) if cm.uid().as_deref() != Some(&uid) => Some(()),
                    Some(_) => None,
                }
            }
        },
    )
    .await;
    assert!(
        cms.get_opt("bystander").await.unwrap().is_some(),
        "an unowned ConfigMap was deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_deletion_completes() {
    let _serial = common::serial::module(module_path!());
    let client = client().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let name = unique("nsdel");
    let mut cleanup = Cleanup::new(&client);
    cleanup.namespaces.push(name.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.clone());
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &name);
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("content".into());
    cm.data = Some([("k".to_string(), "v".to_string())].into());
    cms.create(&PostParams::default(), &cm).await.unwrap();

    // The namespace has the `kubernetes` finalizer: deletion only starts it (Terminating); the
    // namespace controller must empty it and remove the finalizer.
    let deleting = namespaces
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    let terminating = deleting.left().expect("namespace deletion is asynchronous");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(
        terminating.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );

    wait_for("the namespace to be gone", DEADLINE, || {
        let namespaces = namespaces.clone();
        let name = name.clone();
        async move {
            match namespaces.get(&name).await {
                Err(kube::Error::Api(s)) if s.code == 404 => Some(()),
                Err(e) => panic!("get namespace {name}: {e}"),
                Ok(_) => None,
            }
        }
    })
    .await;
    assert!(
        cms.get_opt("content").await.unwrap().is_none(),
        "ConfigMap survived its namespace"
    );
}

// ----------------------------------------------------------------------------- admission

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validating_admission_policy_is_enforced() {
    let _serial = common::serial::module(module_path!());
    let client = client().await;
    let name = unique("palisade-test-nonroot");
    let mut cleanup = Cleanup::new(&client);
    cleanup.admission_policies.push(name.clone());
    let message = format!("{name}: pods must set spec.securityContext.runAsNonRoot=true");

    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    apply_yaml(
        &policies,
        "palisade-tests",
        &json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": { "name": name },
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": { "resourceRules": [{
                    "apiGroups": [""], "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE"], "resources": ["pods"],
                }]},
                "validations": [{
                    "expression": "has(object.spec.securityContext) && has(object.spec.securityContext.runAsNonRoot) && object.spec.securityContext.runAsNonRoot == true",
                    "message": message,
                }],
            },
        })
        .to_string(),
    )
    .await;
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    apply_yaml(
        &bindings,
        "palisade-tests",
        &json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": { "name": name },
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": { "namespaceSelector": { "matchLabels": { "palisade-test/vap": name } } },
            },
        })
        .to_string(),
    )
    .await;

    let ns = TestNamespace::new(&client, "vap", &[("palisade-test/vap", &name)]).await;
    cleanup.namespaces.push(ns.name.clone());
    wait_for_default_sa(&client, &ns.name).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);

    // The binding becomes effective asynchronously (the policy is compiled and its type-checked
    // state cached): retry creating the non-compliant pod until it is denied.
    let denial = wait_for(
        "the ValidatingAdmissionPolicy to deny a root pod",
        DEADLINE,
        || {
            let pods = pods.clone();
            async move {
                let bad = pod(&unique("root"), json!({}), json!({}));
                match pods.create(&PostParams::default(), &bad).await {
                    Err(kube::Error::Api(s)) => Some(s),
                    Err(e) => panic!("create pod: {e}"),
                    Ok(admitted) => {
                        // Not effective yet; remove it (unscheduled pods delete immediately) and retry.
                        let _ = pods
                            .delete(&admitted.name_any(), &DeleteParams::default())
                            .await;
                        None
                    }
                }
            }
        },
    )
    .await;
    assert_eq!(denial.code, 422, "{denial:?}");
    assert!(
        denial.message.contains(&message),
        "denial does not carry the policy's message: {}",
        denial.message
    );
    assert!(
        denial
            .message
            .contains(&format!("ValidatingAdmissionPolicy '{name}'")),
        "{}",
        denial.message
    );

    // A compliant pod is admitted (it stays Pending: there are no nodes).
    let good = pod(
        "nonroot",
        json!({ "runAsNonRoot": true, "runAsUser": 1000 }),
        json!({}),
    );
    let admitted = pods
        .create(&PostParams::default(), &good)
        .await
        .expect("compliant pod is admitted");
    assert_eq!(
        admitted
            .spec
            .unwrap()
            .security_context
            .unwrap()
            .run_as_non_root,
        Some(true)
    );

    // Control: the binding is scoped by namespace label, so an unlabelled namespace admits the root pod.
    let other = TestNamespace::new(&client, "vap-unbound", &[]).await;
    cleanup.namespaces.push(other.name.clone());
    wait_for_default_sa(&client, &other.name).await;
    let other_pods: Api<Pod> = Api::namespaced(client.clone(), &other.name);
    other_pods
        .create(&PostParams::default(), &pod("root", json!({}), json!({})))
        .await
        .expect("the policy does not apply outside its bound namespaces");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_security_admission_enforces_restricted() {
    let _serial = common::serial::module(module_path!());
    let client = client().await;
    let ns = TestNamespace::new(
        &client,
        "psa",
        &[("pod-security.kubernetes.io/enforce", "restricted")],
    )
    .await;
    let mut cleanup = Cleanup::new(&client);
    cleanup.namespaces.push(ns.name.clone());
    wait_for_default_sa(&client, &ns.name).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);

    let root = pod("root", json!({ "runAsUser": 0 }), json!({}));
    let message = api_message(
        "root pod in a restricted namespace",
        pods.create(&PostParams::default(), &root).await,
    );
    assert!(
        message.contains("violates PodSecurity \"restricted:latest\""),
        "{message}"
    );
    assert!(message.contains("runAsUser=0"), "{message}");

    // Control: a pod meeting restricted is admitted.
    let restricted = pod(
        "restricted",
        json!({ "runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": { "type": "RuntimeDefault" } }),
        json!({ "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] } }),
    );
    pods.create(&PostParams::default(), &restricted)
        .await
        .expect("a restricted-compliant pod is admitted");
}
