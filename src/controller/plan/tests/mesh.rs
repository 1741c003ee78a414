//! `spec.mesh.mtls: Strict`: a STRICT PeerAuthentication per owned namespace where Istio's CRDs
//! are served, nothing (and a Degraded condition that says why) where they are not, pruning of
//! what is no longer wanted, and an audit that judges the policy about to be written.

use super::*;
use crate::crd::{MeshMtls, MeshSpec};
use crate::policy::mesh::istio::PeerAuthentication;
use crate::policy::rules::Rule;
use k8s_openapi::api::apps::v1::Deployment;

fn strict(mut b: SecurityBaseline) -> SecurityBaseline {
    b.spec.mesh = Some(MeshSpec {
        mtls: Some(MeshMtls::Strict),
    });
    b
}

/// The sample's namespaces, `shop` with sidecar injection and a Deployment in it, and Istio's
/// kinds served (`istio`) or not.
fn meshed_cluster(istio: bool) -> Snapshot {
    let mut snap = cluster();
    snap.namespaces[0] = namespace(
        "shop",
        &[("team", "shop"), ("istio-injection", "enabled")],
        &[],
    );
    let web: Deployment = serde_yaml_ng::from_str(
        "metadata: {name: web, namespace: shop}\n\
         spec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c, image: i}]}",
    )
    .unwrap();
    snap.deployments = vec![Arc::new(web)];
    snap.peer_authentications = istio.then(Vec::new);
    snap
}

fn peer_auth(yaml: &str) -> Arc<PeerAuthentication> {
    Arc::new(serde_yaml_ng::from_str(yaml).unwrap())
}

fn mesh_findings(c: &Converge, rule: Rule) -> Vec<String> {
    c.report
        .findings
        .iter()
        .filter(|f| f.rule == rule)
        .map(|f| {
            format!(
                "{}/{}",
                f.object.namespace.as_deref().unwrap_or(""),
                f.object.name
            )
        })
        .collect()
}

#[test]
fn strict_mtls_generates_one_strict_namespace_wide_policy_per_owned_namespace() {
    let b = strict(sample("shop", "u1", "2026-01-01T00:00:00Z"));
    let mut snap = meshed_cluster(true);
    let first = converge(plan_of(&b, &[], &snap));
    let pa = &first.writes.peer_authentications;
    let written: Vec<_> = pa
        .apply
        .iter()
        .map(|w| {
            let o = &w.object;
            assert_eq!(w.outcome, Outcome::Created);
            assert_eq!(o.spec.selector, None, "namespace-wide");
            assert_eq!(
                o.spec.mtls.as_ref().unwrap().mode.as_deref(),
                Some("STRICT")
            );
            let labels = o.metadata.labels.as_ref().unwrap();
            assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY_VALUE);
            assert_eq!(labels[BASELINE_LABEL], "shop");
            let owner = &o.metadata.owner_references.as_ref().unwrap()[0];
            assert_eq!(
                (owner.kind.as_str(), owner.uid.as_str()),
                ("SecurityBaseline", "u1")
            );
            let annotations = o.metadata.annotations.as_ref().unwrap();
            assert_eq!(
                annotations["argocd.argoproj.io/sync-options"],
                "Prune=false"
            );
            describe(o)
        })
        .collect();
    assert_eq!(
        written,
        [
            "PeerAuthentication shop/palisade-mtls",
            "PeerAuthentication shop-legacy/palisade-mtls"
        ]
    );
    assert_eq!(first.generated().peer_authentications, 2);
    let status = first.status(None, None, now());
    assert_eq!(condition(&status, "Degraded").status, "False");

    execute(&mut snap, &first);
    let mut stored = b.clone();
    stored.metadata.finalizers = Some(vec![FINALIZER.into()]);
    let second = converge(plan_of(&stored, &[], &snap));
    assert!(writes_nothing(&second), "{:?}", second.writes.changes());
}

#[test]
fn without_istios_crds_nothing_is_generated_and_the_degraded_condition_says_why() {
    let b = strict(sample("shop", "u1", "2026-01-01T00:00:00Z"));
    let snap = meshed_cluster(false);
    let c = converge(plan_of(&b, &[], &snap));
    let pa = &c.writes.peer_authentications;
    assert!(pa.apply.is_empty() && pa.prune.is_empty());
    assert_eq!(pa.unserved.len(), 2);
    assert_eq!(c.generated().peer_authentications, 0, "nothing exists");
    let status = c.status(None, None, now());
    let degraded = condition(&status, "Degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "KindNotServed")
    );
    assert!(
        degraded.message.contains("2 PeerAuthentication"),
        "{}",
        degraded.message
    );
    assert_eq!(
        condition(&status, "Ready").status,
        "True",
        "everything else converged"
    );
    assert!(
        mesh_findings(&c, Rule::MeshMtlsPermissive).is_empty(),
        "no mesh, nothing judged"
    );
}

#[test]
fn the_audit_judges_the_strict_policy_about_to_be_written_and_an_older_one_still_wins() {
    let mut snap = meshed_cluster(true);
    let audit_only = converge(plan_of(
        &sample("shop", "u1", "2026-01-01T00:00:00Z"),
        &[],
        &snap,
    ));
    assert_eq!(
        mesh_findings(&audit_only, Rule::MeshMtlsPermissive),
        ["shop/web"],
        "no policy: PERMISSIVE"
    );
    let b = strict(sample("shop", "u1", "2026-01-01T00:00:00Z"));
    let enforced = converge(plan_of(&b, &[], &snap));
    assert!(mesh_findings(&enforced, Rule::MeshMtlsPermissive).is_empty());

    // Someone's older namespace-wide PERMISSIVE policy decides (Istio: the oldest wins), and
    // the report says so rather than trusting the generated one.
    snap.peer_authentications = Some(vec![peer_auth(
        "metadata: {name: legacy, namespace: shop, creationTimestamp: '2025-01-01T00:00:00Z'}\n\
         spec: {mtls: {mode: PERMISSIVE}}",
    )]);
    let shadowed = converge(plan_of(&b, &[], &snap));
    assert_eq!(
        mesh_findings(&shadowed, Rule::MeshMtlsPermissive),
        ["shop/web"]
    );
}

#[test]
fn dropping_strict_mtls_prunes_only_the_generated_policies() {
    let b = strict(sample("shop", "u1", "2026-01-01T00:00:00Z"));
    let mut snap = meshed_cluster(true);
    let first = converge(plan_of(&b, &[], &snap));
    execute(&mut snap, &first);
    let theirs =
        peer_auth("metadata: {name: theirs, namespace: shop}\nspec: {mtls: {mode: STRICT}}");
    snap.peer_authentications.as_mut().unwrap().push(theirs);

    let mut relaxed = b.clone();
    relaxed.spec.mesh = None;
    let c = converge(plan_of(&relaxed, &[], &snap));
    let pruned: Vec<_> = c
        .writes
        .peer_authentications
        .prune
        .iter()
        .map(|o| describe(&**o))
        .collect();
    assert_eq!(
        pruned,
        [
            "PeerAuthentication shop/palisade-mtls",
            "PeerAuthentication shop-legacy/palisade-mtls"
        ]
    );
    assert!(c.writes.peer_authentications.apply.is_empty());
}

#[test]
fn audit_mode_previews_the_policies_enforce_would_create() {
    let b = audit_mode(strict(sample("shop", "u1", "2026-01-01T00:00:00Z")));
    let snap = meshed_cluster(true);
    let c = converge(plan_of(&b, &[], &snap));
    assert!(c.writes.peer_authentications.apply.is_empty());
    let preview = c.status(None, None, now()).preview.unwrap();
    assert!(preview
        .create
        .contains(&"PeerAuthentication shop/palisade-mtls".to_string()));
}
