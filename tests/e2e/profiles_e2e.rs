//! Workload profiles (`spec.podSecurity.profiles`) and Security Profiles Operator references on
//! the real local control plane: the generated admission policy rejects exactly the pods the
//! engine reports, and Localhost references are judged once the operator's real CRDs (from its
//! Go module) are installed, without restarting Palisade.

use crate::common;

use common::baseline::{
    apply_baseline, converged, get_baseline, has_finding, ID_LABEL, TEST_LABEL,
};
use common::{install_crd, unique, wait_for, Operator, TestNamespace};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::PostParams;
use kube::{Api, Client};
use palisade::crd::SecurityBaselineSpec;
use palisade::policy::audit::Auditor;
use palisade::policy::baseline::CompiledBaseline;
use serde_json::{json, Value};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);
/// A CRD installed later is found at the watcher's next retry: back-off tops out at 30 s.
const CRD_DEADLINE: Duration = Duration::from_secs(120);
const SPO_MODULE: &str = "sigs.k8s.io/security-profiles-operator@v0.9.0";
const SPO_CRDS: &[(&str, &str)] = &[
    (
        "seccompprofiles.security-profiles-operator.x-k8s.io",
        "deploy/base-crds/crds/seccompprofile.yaml",
    ),
    (
        "apparmorprofiles.security-profiles-operator.x-k8s.io",
        "deploy/base-crds/crds/apparmorprofile.yaml",
    ),
];

/// Everything but the profiles relaxed, so that only the profile policy decides admission.
fn spec_with(profiles: Value, enforcement: &str) -> Value {
    json!({
        "enforcement": enforcement,
        "podSecurity": {
            "readOnlyRootFilesystem": false,
            "automountServiceAccountToken": true,
            "forbidDefaultServiceAccount": false,
            "profiles": profiles,
        },
        "network": {"defaultDeny": []},
        "rbac": {"audit": false},
    })
}

/// A PSS-restricted pod labelled `app`, with `pod_sc` merged into the pod's securityContext,
/// `ctr_sc` into its container's, and `annotations`.
fn pod(name: &str, app: &str, pod_sc: Value, ctr_sc: Value, annotations: Value) -> Value {
    let mut psc = json!({"runAsNonRoot": true, "runAsUser": 1000,
                         "seccompProfile": {"type": "RuntimeDefault"}});
    merge(&mut psc, pod_sc);
    let mut csc = json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}});
    merge(&mut csc, ctr_sc);
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}, "annotations": annotations},
        "spec": {
            "securityContext": psc,
            "containers": [{"name": "app", "image": "registry.example/app:1.0", "securityContext": csc}],
        },
    })
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

/// The `profile.*` rules the engine reports for one pod in namespace `ns`.
fn engine_profile_rules(spec: &Value, ns: &str, pod: &Value) -> Vec<String> {
    let spec: SecurityBaselineSpec = serde_json::from_value(spec.clone()).unwrap();
    let b = CompiledBaseline::compile("e2e", &spec, k8s_openapi::jiff::Timestamp::now()).unwrap();
    let mut auditor = Auditor::new(&b);
    let mut p = pod.clone();
    p["metadata"]["namespace"] = json!(ns);
    let mut diags = vec![];
    palisade::manifest::load_str(
        "pod.json",
        &p.to_string(),
        &mut |o, s| auditor.add(o, Some(&s)),
        &mut diags,
    );
    assert!(diags.is_empty(), "{diags:?}");
    auditor
        .finish()
        .findings
        .iter()
        .map(|f| f.rule.id().to_string())
        .filter(|r| r.starts_with("profile."))
        .collect()
}

/// Admission's verdict on a dry-run create: None when admitted, the message when denied.
async fn admission(pods: &Api<Pod>, pod: &Value) -> Option<String> {
    let pod: Pod = serde_json::from_value(pod.clone()).unwrap();
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    match pods.create(&dry, &pod).await {
        Ok(_) => None,
        Err(kube::Error::Api(e)) => Some(e.message),
        Err(e) => panic!("create {}: {e}", pod.metadata.name.unwrap_or_default()),
    }
}

/// Each case: the generated policy denies the pod exactly when the engine reports a profile
/// finding for it, and both match what the case expects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_profile_policy_denies_exactly_what_the_engine_reports() {
    let _serial = common::serial::module(module_path!());
    let client = common::client().await;
    install_crd(&client).await;
    let id = unique("profiles");
    let ns = TestNamespace::new(&client, "profiles", &[(TEST_LABEL, &id)]).await;
    let profiles = json!([{
        "name": "payments",
        "workloadSelector": {"matchLabels": {"app": "pay"}},
        "seccomp": {"type": "Localhost", "localhostProfiles": ["operator/pay.json"]},
        "appArmor": {"type": "RuntimeDefault"},
        "seLinux": {"types": ["container_t"]},
    }]);
    let spec = spec_with(profiles, "Enforce");
    apply_baseline(&client, &id, &id, &id, spec.clone()).await;
    let mut op = Operator::start(&["--baseline-selector", &format!("{ID_LABEL}={id}")]);
    op.wait_ready().await;
    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns.name);
    wait_for("the default ServiceAccount", DEADLINE, || async {
        sa.get_opt("default").await.ok().flatten()
    })
    .await;

    let good_pod_sc = json!({
        "seccompProfile": {"type": "Localhost", "localhostProfile": "operator/pay.json"},
        "appArmorProfile": {"type": "RuntimeDefault"},
        "seLinuxOptions": {"type": "container_t"},
    });
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let no_seccomp = pod("no-localhost", "pay", json!({}), json!({}), json!({}));
    // The binding becomes live in the API server a moment after the operator applies it.
    let first = wait_for("the profile policy denies a pod", DEADLINE, || async {
        admission(&pods, &no_seccomp).await
    })
    .await;
    assert!(
        first.contains(&format!("palisade-{id}-profile-payments")),
        "{first}"
    );
    let cases: Vec<(&str, Value, bool)> = vec![
        (
            "inherits-everything",
            pod("a", "pay", good_pod_sc.clone(), json!({}), json!({})),
            true,
        ),
        (
            "container-overrides-seccomp",
            pod(
                "b",
                "pay",
                good_pod_sc.clone(),
                json!({"seccompProfile": {"type": "RuntimeDefault"}}),
                json!({}),
            ),
            false,
        ),
        (
            "unlisted-localhost",
            pod(
                "c",
                "pay",
                good_pod_sc.clone(),
                json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "operator/other.json"}}),
                json!({}),
            ),
            false,
        ),
        (
            "no-apparmor",
            {
                let mut sc = good_pod_sc.clone();
                sc.as_object_mut().unwrap().remove("appArmorProfile");
                pod("d", "pay", sc, json!({}), json!({}))
            },
            false,
        ),
        (
            "apparmor-by-annotation",
            {
                let mut sc = good_pod_sc.clone();
                sc.as_object_mut().unwrap().remove("appArmorProfile");
                pod(
                    "e",
                    "pay",
                    sc,
                    json!({}),
                    json!({"container.apparmor.security.beta.kubernetes.io/app": "localhost/pay"}),
                )
            },
            true,
        ),
        (
            "other-selinux-type",
            pod(
                "f",
                "pay",
                good_pod_sc.clone(),
                json!({"seLinuxOptions": {"type": "container_init_t"}}),
                json!({}),
            ),
            false,
        ),
        (
            "not-selected",
            pod("g", "web", json!({}), json!({}), json!({})),
            true,
        ),
    ];
    for (case, p, admitted) in cases {
        let engine = engine_profile_rules(&spec, &ns.name, &p);
        let denied = admission(&pods, &p).await;
        assert_eq!(
            engine.is_empty(),
            admitted,
            "{case}: engine reports {engine:?}"
        );
        assert_eq!(
            denied.is_none(),
            admitted,
            "{case}: admission says {denied:?}, the engine {engine:?}"
        );
        if let Some(message) = denied {
            assert!(message.contains("profile."), "{case}: {message}");
        }
    }
    // A Deployment is admitted (its pods are what the policy guards) and reported in status.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let template = pod("x", "pay", json!({}), json!({}), json!({}));
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "payments"},
        "spec": {"selector": {"matchLabels": {"app": "pay"}}, "replicas": 0,
                 "template": {"metadata": {"labels": {"app": "pay"}}, "spec": template["spec"]}},
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    wait_for(
        "status reports profile.seccomp on the Deployment",
        DEADLINE,
        || async {
            let s = converged(&get_baseline(&client, &id).await?)?;
            has_finding(&s, "profile.seccomp", "Deployment", "payments").then_some(())
        },
    )
    .await;
    op.assert_never_forbidden();
    common::baseline::delete_baseline(&client, &id).await;
}

fn profile_rules(s: &palisade::crd::SecurityBaselineStatus) -> Vec<&str> {
    s.top_violations
        .iter()
        .map(|v| v.rule.as_str())
        .filter(|r| r.starts_with("profile."))
        .collect()
}

async fn spo_crds_absent(client: &Client) {
    let names: Vec<&str> = SPO_CRDS.iter().map(|(name, _)| *name).collect();
    common::remove_crds(client, &names).await;
}

async fn install_spo_crds(client: &Client) {
    for (_, file) in SPO_CRDS {
        common::install_module_crds(client, SPO_MODULE, file).await;
    }
}

async fn seccomp_profile(client: &Client, name: &str) {
    common::apply_value(
        client,
        &json!({
            "apiVersion": "security-profiles-operator.x-k8s.io/v1beta1",
            "kind": "SeccompProfile",
            "metadata": {"name": name},
            "spec": {"defaultAction": "SCMP_ACT_ERRNO"},
        }),
    )
    .await;
}

/// Without the CRDs nothing is judged and nothing fails; installed later, they are watched
/// without a restart; a reference to a SeccompProfile that does not exist is reported until
/// the profile is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localhost_references_are_judged_once_the_security_profiles_operator_is_installed() {
    let _serial = common::serial::module(module_path!());
    let client = common::client().await;
    install_crd(&client).await;
    spo_crds_absent(&client).await;
    let id = unique("spo");
    let ns = TestNamespace::new(&client, "spo", &[(TEST_LABEL, &id)]).await;
    apply_baseline(&client, &id, &id, &id, spec_with(json!([]), "Audit")).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let template = pod(
        "x",
        "tool",
        json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "operator/spo-gone.json"}}),
        json!({}),
        json!({}),
    );
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "tool"},
        "spec": {"selector": {"matchLabels": {"app": "tool"}}, "replicas": 0,
                 "template": {"metadata": {"labels": {"app": "tool"}}, "spec": template["spec"]}},
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let mut op = Operator::start(&["--baseline-selector", &format!("{ID_LABEL}={id}")]);
    op.wait_ready().await;
    let reported = |want: bool| {
        let client = client.clone();
        let id = id.clone();
        async move {
            let s = converged(&get_baseline(&client, &id).await?)?;
            (has_finding(&s, "profile.seccomp-not-found", "Deployment", "tool") == want)
                .then_some(s)
        }
    };
    let before = wait_for("converged without the CRDs", DEADLINE, || reported(false)).await;
    assert_eq!(profile_rules(&before), Vec::<&str>::new());

    install_spo_crds(&client).await;
    seccomp_profile(&client, "spo-present").await;
    wait_for("the missing profile reported", CRD_DEADLINE, || {
        reported(true)
    })
    .await;
    seccomp_profile(&client, "spo-gone").await;
    wait_for(
        "the finding cleared once the profile exists",
        DEADLINE,
        || reported(false),
    )
    .await;

    spo_crds_absent(&client).await;
    let after = wait_for("converged after the CRDs are gone", DEADLINE, || {
        reported(false)
    })
    .await;
    assert_eq!(profile_rules(&after), Vec::<&str>::new());
    let log = std::fs::read_to_string(op.log_path()).unwrap();
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("watch failed") && l.contains("Profile"))
        .collect();
    assert!(
        failures.is_empty(),
        "an absent CRD is not a watch failure: {failures:?}"
    );
    op.assert_never_forbidden();
    common::baseline::delete_baseline(&client, &id).await;
}
