//! The GitOps flow end to end (Argo CD and Flux both apply with server-side apply under their
//! own field manager): config/baseline.yaml is applied exactly as committed, the operator
//! converges, and then a server-side diff of the committed file shows nothing to change, the
//! operator owns no spec field, and no GitOps tracking metadata spread to generated objects.

use crate::common;

use common::{install_crd, unique, wait_for, Operator, TestNamespace, ROOT};
use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Resource};
use palisade::crd::SecurityBaseline;
use palisade::policy::desired::{is_gitops_tracking_key, GITOPS_ANNOTATIONS};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);
/// The field managers Argo CD's application controller and Flux's kustomize-controller use.
const MANAGERS: [&str; 2] = ["argocd-controller", "kustomize-controller"];
const COMMITTED: &str = "config/baseline.yaml";

/// The pinned kubectl of the local control plane (or the one on PATH outside scripts/test).
fn kubectl() -> Command {
    if std::env::var_os("PALISADE_CP_STATE").is_some() {
        let mut c = Command::new(format!("{ROOT}/scripts/control-plane"));
        c.arg("kubectl");
        c
    } else {
        Command::new("kubectl")
    }
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.current_dir(ROOT).output().expect("run kubectl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The committed baseline's name ("shop"): the test must not rewrite the file to rename it.
fn committed() -> Value {
    let yaml = std::fs::read_to_string(format!("{ROOT}/{COMMITTED}")).unwrap();
    serde_yaml_ng::from_str(&yaml).unwrap()
}

/// Deletes a baseline left over by an earlier failed run (no operator runs for it any more, so
/// its finalizer is removed by hand).
async fn remove_leftover(api: &Api<SecurityBaseline>, name: &str) {
    if api.get_opt(name).await.unwrap().is_none() {
        return;
    }
    let _ = api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await;
    let _ = api.delete(name, &DeleteParams::default()).await;
    wait_for("left-over baseline deleted", DEADLINE, || async {
        api.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
}

fn assert_gitops_safe(kind: &str, meta: &ObjectMeta) {
    let annotations = meta.annotations.clone().unwrap_or_default();
    for (k, v) in GITOPS_ANNOTATIONS {
        assert_eq!(
            annotations.get(k).map(String::as_str),
            Some(v),
            "{kind} {:?} lacks {k}",
            meta.name
        );
    }
    let keys = meta.labels.iter().flatten().chain(annotations.iter());
    for (k, _) in keys {
        assert!(
            !is_gitops_tracking_key(k),
            "{kind} {:?} carries the GitOps tracking key {k}",
            meta.name
        );
    }
}

/// Reconciles of `baseline` that finished (the duration histogram's count).
async fn reconciles_done(op: &Operator, baseline: &str) -> f64 {
    let label = format!("baseline=\"{baseline}\"");
    op.metric("palisade_reconcile_duration_seconds_count", &[&label])
        .await
        .unwrap_or(0.0)
}

/// Field paths (`f:spec...`) a managedFields entry owns at top level.
fn owns_spec(entry: &Value) -> bool {
    entry["fieldsV1"].get("f:spec").is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_baseline_shows_no_diff_after_the_operator_converged() {
    let _serial = common::serial::module(module_path!());
    let client = common::client().await;
    install_crd(&client).await;
    let doc = committed();
    let name = doc["metadata"]["name"].as_str().unwrap().to_string();
    let api: Api<SecurityBaseline> = Api::all(client.clone());
    remove_leftover(&api, &name).await;
    // A namespace the committed baseline selects (team=shop).
    let ns = TestNamespace::new(&client, "gitops", &[("team", "shop")]).await;

    // 1. The GitOps tools apply the committed file, byte for byte.
    for manager in MANAGERS {
        let (code, out, err) = run(kubectl().args([
            "apply",
            "--server-side",
            &format!("--field-manager={manager}"),
            "-f",
            COMMITTED,
        ]));
        assert_eq!(code, 0, "kubectl apply as {manager}: {out}{err}");
    }
    // The tracking metadata they add to what they manage (Argo CD's label and annotation
    // tracking, Flux's labels); the label also selects the baseline for this test's operator.
    let app = unique("gitops");
    let tracking = json!({
        "apiVersion": "palisade.dev/v1alpha1", "kind": "SecurityBaseline",
        "metadata": {"name": name,
            "labels": {"app.kubernetes.io/instance": app, "kustomize.toolkit.fluxcd.io/name": app,
                       "kustomize.toolkit.fluxcd.io/namespace": "flux-system"},
            "annotations": {"argocd.argoproj.io/tracking-id": format!("{app}:palisade.dev/SecurityBaseline:/{name}")}},
    });
    api.patch(
        &name,
        &PatchParams::apply("gitops-tracking"),
        &Patch::Apply(&tracking),
    )
    .await
    .unwrap();

    // 2. The operator converges: status of the current generation, Ready, objects generated.
    let mut op = Operator::start(&[
        "--baseline-selector",
        &format!("app.kubernetes.io/instance={app}"),
    ]);
    wait_for("baseline converged", DEADLINE, || async {
        let b = api.get(&name).await.ok()?;
        let s = b.status.as_ref()?;
        let ready = s
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        (ready && s.observed_generation == b.metadata.generation).then_some(())
    })
    .await;
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    let wanted = [
        "palisade-allow-db-from-api",
        "palisade-allow-db-from-api-from-0",
        "palisade-allow-dns",
        "palisade-default-deny",
    ];
    let generated = wait_for("generated NetworkPolicies", DEADLINE, || async {
        let list = policies.list(&Default::default()).await.ok()?;
        let names = common::names(&list.items);
        (names == wanted).then_some(list.items)
    })
    .await;
    for p in &generated {
        assert_gitops_safe("NetworkPolicy", p.meta());
    }
    let role = Api::<Role>::namespaced(client.clone(), &ns.name)
        .get("palisade-api")
        .await
        .unwrap();
    assert_gitops_safe("Role", role.meta());
    let binding = Api::<RoleBinding>::namespaced(client.clone(), &ns.name)
        .get("palisade-api")
        .await
        .unwrap();
    assert_gitops_safe("RoleBinding", binding.meta());
    let vap = Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .get(&format!("palisade-{name}"))
        .await
        .unwrap();
    assert_gitops_safe("ValidatingAdmissionPolicy", vap.meta());

    // 3. A server-side diff of the committed file, as each tool would compute it: nothing.
    for manager in MANAGERS {
        let (code, out, err) = run(kubectl().args([
            "diff",
            "--server-side",
            &format!("--field-manager={manager}"),
            "-f",
            COMMITTED,
        ]));
        assert_eq!(
            code, 0,
            "kubectl diff as {manager} shows changes:\n{out}{err}"
        );
        assert!(out.trim().is_empty(), "{out}");
    }
    // The same through the API: a dry-run apply (no force: a conflict would mean another
    // manager took a field) returns the live object unchanged.
    let live = api.get(&name).await.unwrap();
    for manager in MANAGERS {
        let dry = api
            .patch(
                &name,
                &PatchParams::apply(manager).dry_run(),
                &Patch::Apply(&doc),
            )
            .await
            .unwrap_or_else(|e| panic!("dry-run apply as {manager}: {e}"));
        assert_eq!(dry.spec, live.spec, "{manager}");
        assert_eq!(dry.metadata.generation, live.metadata.generation);
        assert_eq!(
            dry.metadata.resource_version,
            live.metadata.resource_version
        );
        assert_eq!(dry.metadata.labels, live.metadata.labels);
        assert_eq!(dry.metadata.annotations, live.metadata.annotations);
        assert_eq!(dry.metadata.finalizers, live.metadata.finalizers);
    }

    // 4. The operator's writes (status, finalizer) own no spec field; only the GitOps managers do.
    let raw: Value = serde_json::to_value(&live).unwrap();
    let entries = raw["metadata"]["managedFields"].as_array().unwrap().clone();
    let palisade: Vec<&Value> = entries
        .iter()
        .filter(|e| !MANAGERS.contains(&e["manager"].as_str().unwrap_or_default()))
        .filter(|e| e["manager"] != "gitops-tracking")
        .collect();
    assert!(
        palisade.iter().any(|e| e["subresource"] == "status"),
        "the operator's status write is recorded: {entries:#?}"
    );
    for e in &palisade {
        assert!(!owns_spec(e), "{} owns spec fields: {e:#}", e["manager"]);
    }
    for manager in MANAGERS {
        assert!(
            entries
                .iter()
                .any(|e| e["manager"] == manager && owns_spec(e)),
            "{manager} owns the spec it applied"
        );
    }

    // 5. Steady state: a reconcile that finds everything as wanted writes nothing.
    let before_writes = op
        .metric("palisade_api_writes_total", &[])
        .await
        .unwrap_or(0.0);
    let before = reconciles_done(&op, &name).await;
    Api::<Namespace>::all(client.clone())
        .patch(
            &ns.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"touched": "1"}}})),
        )
        .await
        .unwrap();
    wait_for("a reconcile after the touch", DEADLINE, || async {
        (reconciles_done(&op, &name).await > before).then_some(())
    })
    .await;
    let after_writes = op
        .metric("palisade_api_writes_total", &[])
        .await
        .unwrap_or(0.0);
    assert_eq!(after_writes, before_writes, "writes in steady state");

    // Cleanup while the operator runs: it removes its finalizer (PSA labels) on deletion.
    api.delete(&name, &DeleteParams::default()).await.unwrap();
    wait_for("baseline deleted", DEADLINE, || async {
        api.get_opt(&name).await.ok()?.is_none().then_some(())
    })
    .await;
    op.stop();
}
