//! `palisade audit --cluster` against the real control plane: the findings of a live namespace
//! are those of the offline audit of the manifests that made it; one object per page reads the
//! same; the shipped read-only RBAC (deploy/audit-cluster/rbac.yaml) is all it needs; a kind the
//! caller may not list is a diagnostic naming it while everything else is still audited.

use crate::common;

use common::{apply_documents, client, service_account_kubeconfig, TestNamespace, ROOT};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use kube::Api;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_palisade");

/// What a live namespace holds, for namespace `NS`: every audited kind with something to find.
const MANIFESTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: NS, labels: {palisade-audit-live: NS}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: default, namespace: NS}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: app, namespace: NS}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: NS}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: app
      containers:
        - name: web
          image: palisade.invalid/web:1
          securityContext: {privileged: true}
---
apiVersion: v1
kind: Pod
metadata: {name: bare, namespace: NS, labels: {app: bare}}
spec:
  hostNetwork: true
  containers: [{name: c, image: palisade.invalid/bare:1}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: NS}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
            - name: job
              image: palisade.invalid/job:1
              securityContext: {runAsUser: 0}
---
apiVersion: v1
kind: Service
metadata: {name: exposed, namespace: NS}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, nodePort: NODEPORT}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-all, namespace: NS}
spec:
  podSelector: {}
  ingress: [{}]
  policyTypes: [Ingress]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: secrets, namespace: NS}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: app-secrets, namespace: NS}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: secrets}
subjects: [{kind: ServiceAccount, name: app, namespace: NS}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: NS-exec}
rules: [{apiGroups: [""], resources: [pods/exec], verbs: [create]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: NS-exec}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: NS-exec}
subjects: [{kind: ServiceAccount, name: app, namespace: NS}]
"#;

const BASELINE: &str = r#"
apiVersion: palisade.dev/v1alpha1
kind: SecurityBaseline
metadata: {name: live}
spec:
  namespaceSelector: {matchLabels: {palisade-audit-live: NS}}
  podSecurity: {level: restricted, readOnlyRootFilesystem: true, automountServiceAccountToken: false}
"#;

fn palisade(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run palisade")
}

/// The findings about this test's objects, as comparable lines (rule, object, field, message).
fn findings_about(out: &Output, ns: &str) -> BTreeSet<String> {
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "JSON report ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| {
            f["object"]["namespace"] == ns
                || f["object"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(ns))
        })
        .map(|f| {
            format!(
                "{} {} {}/{} {} {}",
                f["rule"],
                f["object"]["kind"],
                f["object"]["namespace"],
                f["object"]["name"],
                f["field"],
                f["message"]
            )
        })
        .collect()
}

fn rules_of(findings: &BTreeSet<String>, kind: &str) -> usize {
    findings
        .iter()
        .filter(|l| l.contains(&format!(" \"{kind}\" ")))
        .count()
}

/// A ServiceAccount in `ns` bound to `cluster_role`, and a kubeconfig for it.
async fn identity(
    client: &kube::Client,
    ns: &str,
    name: &str,
    cluster_role: &str,
) -> std::path::PathBuf {
    let yaml = format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {name}, namespace: {ns}}}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\n\
         metadata: {{name: {ns}-{name}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {cluster_role}}}\n\
         subjects: [{{kind: ServiceAccount, name: {name}, namespace: {ns}}}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n\
         metadata: {{name: {ns}-{name}, namespace: default}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: palisade-cluster-audit-endpoints}}\n\
         subjects: [{{kind: ServiceAccount, name: {name}, namespace: {ns}}}]\n"
    );
    apply_documents(client, &yaml).await;
    let path = std::env::temp_dir().join(format!("{ns}-{name}.kubeconfig"));
    service_account_kubeconfig(client, ns, name, &path).await;
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_namespace_audits_as_its_manifests_do_with_only_list_rights() {
    let _serial = common::serial::module(module_path!());
    let client = client().await;
    let ns = TestNamespace::new(&client, "audit-live", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests.yaml");
    let baseline = dir.path().join("baseline.yaml");
    // A fixed node port, so the live Service is the manifest's (one would be allocated otherwise).
    let node_port = (30000 + std::process::id() % 2000).to_string();
    let manifests_text = MANIFESTS
        .replace("NS", &ns.name)
        .replace("NODEPORT", &node_port);
    std::fs::write(&manifests, &manifests_text).unwrap();
    std::fs::write(&baseline, BASELINE.replace("NS", &ns.name)).unwrap();
    apply_documents(&client, &manifests_text).await;
    let rbac = std::fs::read_to_string(format!("{ROOT}/deploy/audit-cluster/rbac.yaml")).unwrap();
    apply_documents(&client, &rbac).await;
    let (baseline, manifests) = (baseline.to_str().unwrap(), manifests.to_str().unwrap());

    // The offline audit is told where the API server listens, as the live one reads it from the
    // `default/kubernetes` EndpointSlices (a plane with a node has them).
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let listed = slices
        .list(&kube::api::ListParams::default().labels("kubernetes.io/service-name=kubernetes"))
        .await
        .unwrap();
    let endpoints = palisade::live::endpoints_of(&listed.items);
    let flags: Vec<String> = endpoints
        .iter()
        .map(|(ip, port)| format!("--api-server={}", std::net::SocketAddr::new(*ip, *port)))
        .collect();
    let mut offline_args = vec!["audit", "--baseline", baseline, "--format", "json"];
    offline_args.extend(flags.iter().map(String::as_str));
    offline_args.push(manifests);
    let offline = palisade(&offline_args);
    let expected = findings_about(&offline, &ns.name);
    if !endpoints.is_empty() {
        assert!(
            expected
                .iter()
                .any(|l| l.contains("network.api-reachable-without-need")),
            "with the API server known, its reachability is judged: {expected:#?}"
        );
    }
    // Every kind with something to find is judged (the comparison is not vacuous).
    for kind in [
        "Deployment",
        "Pod",
        "CronJob",
        "Service",
        "NetworkPolicy",
        "Role",
        "ClusterRole",
        "Namespace",
    ] {
        assert!(
            rules_of(&expected, kind) > 0,
            "no finding on {kind}: {expected:#?}"
        );
    }

    // As a ServiceAccount holding exactly the shipped ClusterRole and Role.
    let kubeconfig = identity(&client, &ns.name, "auditor", "palisade-cluster-audit").await;
    let kubeconfig = kubeconfig.to_str().unwrap();
    let live_args = [
        "audit",
        "--cluster",
        "--kubeconfig",
        kubeconfig,
        "--baseline",
        baseline,
    ];
    let live = palisade(&[&live_args[..], &["--format", "json"]].concat());
    let stderr = String::from_utf8_lossy(&live.stderr);
    assert_eq!(
        live.status.code(),
        Some(1),
        "findings, no input error: {stderr}"
    );
    assert!(!stderr.contains("error"), "{stderr}");
    let found = findings_about(&live, &ns.name);
    assert_eq!(
        found.symmetric_difference(&expected).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "live vs offline"
    );

    // One object per list request: many more requests, the same findings.
    let paged = palisade(&[&live_args[..], &["--format", "json", "--page-size", "1"]].concat());
    assert_eq!(findings_about(&paged, &ns.name), expected);
    let requests = |o: &Output| -> usize {
        let text = String::from_utf8_lossy(&o.stderr);
        let line = text
            .lines()
            .find(|l| l.starts_with("read "))
            .expect("a summary line");
        line.split(" in ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    // Kinds whose CRD is not installed (the Security Profiles Operator's) answer 404: no page.
    let mut kinds = 0;
    for (api_version, kind) in palisade::manifest::audited_kinds() {
        let gvk = kube::api::GroupVersionKind::try_from(&kube::api::TypeMeta {
            api_version: api_version.into(),
            kind: kind.into(),
        })
        .unwrap();
        let ar = kube::api::ApiResource::from_gvk(&gvk);
        let api: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &ar);
        if api.list(&Default::default()).await.is_ok() {
            kinds += 1;
        }
    }
    assert!(kinds >= 16, "{kinds} kinds served");
    assert_eq!(
        requests(&live),
        kinds,
        "one page per served kind at the default size"
    );
    assert!(
        requests(&paged) > 3 * kinds,
        "pages of one: {}",
        requests(&paged)
    );

    // Without list on CronJobs: a diagnostic naming the kind, exit 2, everything else audited.
    let mut narrowed: Value =
        serde_yaml_ng::from_str(rbac.split("\n---\n").next().unwrap()).unwrap();
    narrowed["metadata"]["name"] = format!("{}-no-cronjobs", ns.name).into();
    for rule in narrowed["rules"].as_array_mut().unwrap() {
        if let Some(resources) = rule["resources"].as_array_mut() {
            resources.retain(|r| r != "cronjobs");
        }
    }
    common::apply_value(&client, &narrowed).await;
    let narrow = identity(
        &client,
        &ns.name,
        "narrow",
        narrowed["metadata"]["name"].as_str().unwrap(),
    )
    .await;
    let narrow = narrow.to_str().unwrap();
    let partial = palisade(&[
        "audit",
        "--cluster",
        "--kubeconfig",
        narrow,
        "--baseline",
        baseline,
        "--format",
        "json",
    ]);
    let stderr = String::from_utf8_lossy(&partial.stderr);
    assert_eq!(
        partial.status.code(),
        Some(2),
        "an incomplete audit fails: {stderr}"
    );
    assert!(
        stderr.contains(
            "error: cluster: list CronJob (batch/v1, resource cronjobs.batch): forbidden"
        ),
        "{stderr}"
    );
    let seen = findings_about(&partial, &ns.name);
    assert_eq!(rules_of(&seen, "CronJob"), 0);
    let without_cronjobs: BTreeSet<String> = expected
        .iter()
        .filter(|l| !l.contains(" \"CronJob\" "))
        .cloned()
        .collect();
    assert_eq!(seen, without_cronjobs);
    // The table names it too, where a person reads it.
    let table = palisade(&[
        "audit",
        "--cluster",
        "--kubeconfig",
        narrow,
        "--baseline",
        baseline,
    ]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("list CronJob"));

    // Cluster-scoped leftovers of this test, and the bindings in `default` (the namespace goes
    // on drop).
    let dp = kube::api::DeleteParams::default();
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let default_bindings: Api<RoleBinding> = Api::namespaced(client.clone(), "default");
    for name in ["exec", "no-cronjobs"] {
        roles.delete(&format!("{}-{name}", ns.name), &dp).await.ok();
    }
    for name in ["exec", "auditor", "narrow"] {
        bindings
            .delete(&format!("{}-{name}", ns.name), &dp)
            .await
            .ok();
    }
    for name in ["auditor", "narrow"] {
        default_bindings
            .delete(&format!("{}-{name}", ns.name), &dp)
            .await
            .ok();
    }
}
