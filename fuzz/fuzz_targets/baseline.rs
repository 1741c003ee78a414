//! Arbitrary bytes -> a SecurityBaseline spec (YAML or JSON, as the API server could store it)
//! -> compile -> a full reconcile plan over a small fixed cluster -> status and change lines.
//! Whatever the spec, this must not panic: a spec the engine rejects becomes an Invalid plan
//! (one status write, no retry), never a crash or a hot loop.
#![no_main]

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use palisade::controller::cache::Snapshot;
use palisade::controller::plan::{plan, Env, Plan};
use palisade::crd::{SecurityBaseline, SecurityBaselineSpec};
use palisade::policy::baseline::CompiledBaseline;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const CLUSTER: &str = r#"
- {apiVersion: v1, kind: Namespace, metadata: {name: shop, labels: {team: shop, tier: web}}}
- {apiVersion: v1, kind: Namespace, metadata: {name: kube-system}}
- apiVersion: v1
  kind: Namespace
  metadata: {name: legacy, labels: {team: shop}, annotations: {palisade.dev/pod-security-labels: fuzz}}
"#;

const POD: &str = r#"
metadata: {name: web, namespace: shop, labels: {app: web, trust: untrusted}}
spec:
  serviceAccountName: api
  hostNetwork: true
  containers: [{name: c, image: i, securityContext: {privileged: true, runAsUser: 0}}]
"#;

fn snapshot() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| {
        let namespaces: Vec<Namespace> = serde_yaml_ng::from_str(CLUSTER).unwrap();
        let pod: Pod = serde_yaml_ng::from_str(POD).unwrap();
        let grantable: ClusterRole = serde_yaml_ng::from_str(
            "metadata: {name: palisade-grantable}\nrules: [{apiGroups: [''], resources: [configmaps], verbs: [get]}]",
        )
        .unwrap();
        Snapshot {
            namespaces: namespaces.into_iter().map(Arc::new).collect(),
            pods: vec![Arc::new(pod)],
            cluster_roles: vec![Arc::new(grantable)],
            ..Default::default()
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = serde_yaml_ng::from_str::<SecurityBaselineSpec>(text) else {
        return;
    };
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    let mut b = SecurityBaseline::new("fuzz", spec);
    b.metadata.uid = Some("uid-fuzz".into());
    b.metadata.generation = Some(1);
    let compiled = CompiledBaseline::compile("fuzz", &b.spec, now).map_err(|e| e.to_string());
    let contested = BTreeMap::new();
    let env = Env {
        grantable: "palisade-grantable",
        report_max_results: Some(10),
        learn: None,
        resync: Duration::from_secs(300),
        contested: &contested,
    };
    match plan(&b, compiled.as_ref().map_err(|e| e.as_str()), &[], snapshot(), &env, now) {
        Plan::Converge(c) => {
            let status = c.status(None, None, now);
            assert!(status.conflicts.len() <= 50, "status stays bounded");
            assert!(c.requeue <= Duration::from_secs(300), "a plan always comes back");
            let _ = c.change_lines();
            let _ = c.generated();
        }
        Plan::Invalid(status) => {
            assert!(compiled.is_err(), "only a spec that does not compile is invalid");
            assert!(status.is_some(), "an invalid spec is reported");
        }
        Plan::Release(_) => unreachable!("the baseline is not being deleted"),
    }
});
