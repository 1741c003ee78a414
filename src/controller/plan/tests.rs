//! The plan without a server: every branch of a reconcile, and a simulated API server that
//! executes a plan so that planning again can be checked to write nothing.

use super::*;
use crate::controller::reconcile::FINALIZER;
use crate::policy::desired::{BASELINE_LABEL, FIELD_MANAGER, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

const SAMPLE: &str = include_str!("../../../config/baseline.yaml");
const RESYNC: Duration = Duration::from_secs(600);
static NO_CONTESTS: BTreeMap<String, crate::controller::fights::Contest> = BTreeMap::new();

fn now() -> Timestamp {
    "2026-12-01T10:00:00Z".parse().unwrap()
}

fn env() -> Env<'static> {
    Env {
        grantable: "palisade-grantable",
        report_max_results: Some(100),
        learn: None,
        resync: RESYNC,
        // Every plan audits (the throttle has tests of its own).
        audit_interval: Duration::ZERO,
        contested: &NO_CONTESTS,
    }
}

/// The sample baseline (Enforce, namespaces labelled `team: shop`), as stored by the server.
fn sample(name: &str, uid: &str, created: &str) -> SecurityBaseline {
    let mut b: SecurityBaseline = serde_yaml_ng::from_str(SAMPLE).unwrap();
    b.metadata.name = Some(name.into());
    b.metadata.uid = Some(uid.into());
    b.metadata.generation = Some(1);
    b.metadata.creation_timestamp = Some(Time(created.parse().unwrap()));
    b
}

fn audit_mode(mut b: SecurityBaseline) -> SecurityBaseline {
    b.spec.enforcement = Some(Enforcement::Audit);
    b
}

fn compile(b: &SecurityBaseline) -> CompiledBaseline {
    CompiledBaseline::compile(&b.name_any(), &b.spec, now()).unwrap()
}

fn other(b: &SecurityBaseline) -> OtherBaseline {
    OtherBaseline {
        name: b.name_any(),
        created: b.metadata.creation_timestamp.as_ref().map(|t| t.0),
        compiled: Arc::new(compile(b)),
    }
}

fn namespace(name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Arc<Namespace> {
    let map = |kv: &[(&str, &str)]| {
        (!kv.is_empty()).then(|| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
    };
    Arc::new(Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: map(labels),
            annotations: map(annotations),
            ..Default::default()
        },
        ..Default::default()
    })
}

/// Namespaces `shop` and `shop-legacy` (covered), `web` (not), `kube-system` (excluded).
fn cluster() -> Snapshot {
    Snapshot {
        namespaces: vec![
            namespace("shop", &[("team", "shop")], &[]),
            namespace("shop-legacy", &[("team", "shop")], &[]),
            namespace("web", &[("team", "web")], &[]),
            namespace("kube-system", &[("team", "shop")], &[]),
        ],
        cluster_roles: vec![Arc::new(grantable())],
        ..Default::default()
    }
}

/// The ceiling the operator may grant from: what the sample's `api` account declares.
fn grantable() -> ClusterRole {
    serde_yaml_ng::from_str(
        "metadata: {name: palisade-grantable}\n\
         rules: [{apiGroups: [''], resources: [configmaps], verbs: [get, list, watch]}]",
    )
    .unwrap()
}

fn plan_of(b: &SecurityBaseline, others: &[OtherBaseline], snap: &Snapshot) -> Plan {
    plan(b, Ok(&compile(b)), others, snap, &env(), now())
}

fn converge(p: Plan) -> Box<Converge> {
    match p {
        Plan::Converge(c) => c,
        Plan::Release(_) => panic!("expected Converge, got Release"),
        Plan::Invalid(_) => panic!("expected Converge, got Invalid"),
    }
}

/// What the API server does with a plan's writes: applied objects are stored (with a uid, as
/// the server adds), pruned ones removed, label patches set or remove the labels.
fn execute(snap: &mut Snapshot, c: &Converge) {
    fn kind<K: Resource + Clone>(cached: &mut Vec<Arc<K>>, p: &KindPlan<K>) {
        for w in &p.apply {
            let k = key(&w.object);
            cached.retain(|o| key(&**o) != k);
            let mut stored = w.object.clone();
            stored.meta_mut().uid = Some(format!("uid-{}", stored.name_any()));
            cached.push(Arc::new(stored));
        }
        for gone in &p.prune {
            cached.retain(|o| key(&**o) != key(&**gone));
        }
    }
    let Writes {
        network_policies,
        roles,
        role_bindings,
        admission_policies,
        admission_bindings,
        peer_authentications,
    } = &c.writes;
    kind(&mut snap.network_policies, network_policies);
    kind(&mut snap.roles, roles);
    kind(&mut snap.role_bindings, role_bindings);
    kind(&mut snap.admission_policies, admission_policies);
    kind(&mut snap.admission_bindings, admission_bindings);
    if let Some(cached) = &mut snap.peer_authentications {
        kind(cached, peer_authentications);
    }
    for patch in &c.labels {
        server_side_apply_labels(snap, patch);
    }
}

/// Server-side apply of a label patch by Palisade's field manager, not forced, as the API server
/// does it for labels: the manager's set becomes the patch's keys; a key it drops is removed only
/// when no other manager holds it; a key another manager holds with another value is a conflict
/// (a plan must never send one).
fn server_side_apply_labels(snap: &mut Snapshot, patch: &LabelPatch) {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
    let ns = snap
        .namespaces
        .iter_mut()
        .find(|n| n.name_any() == patch.namespace)
        .unwrap();
    let mut n = (**ns).clone();
    let empty = serde_json::Map::new();
    let wanted = patch.body["metadata"]["labels"]
        .as_object()
        .unwrap_or(&empty);
    let mut entries = n.metadata.managed_fields.take().unwrap_or_default();
    let holders = |entries: &[ManagedFieldsEntry], key: &str, others: bool| {
        entries
            .iter()
            .filter(|e| (e.manager.as_deref() != Some(FIELD_MANAGER)) == others)
            .any(|e| {
                e.fields_v1.as_ref().unwrap().0["f:metadata"]["f:labels"]
                    .get(format!("f:{key}"))
                    .is_some()
            })
    };
    let labels = n.metadata.labels.get_or_insert_with(Default::default);
    for (k, v) in wanted {
        let v = v.as_str().unwrap();
        if holders(&entries, k, true) && labels.get(k).map(String::as_str) != Some(v) {
            panic!(
                "conflict: {k} on {} is held by another manager",
                patch.namespace
            );
        }
        labels.insert(k.clone(), v.into());
    }
    let dropped: Vec<String> = labels
        .keys()
        .filter(|k| {
            !wanted.contains_key(*k) && holders(&entries, k, false) && !holders(&entries, k, true)
        })
        .cloned()
        .collect();
    for k in dropped {
        labels.remove(&k);
    }
    entries.retain(|e| e.manager.as_deref() != Some(FIELD_MANAGER));
    if !wanted.is_empty() {
        let held: serde_json::Map<_, _> = wanted
            .keys()
            .map(|k| (format!("f:{k}"), serde_json::json!({})))
            .collect();
        entries.push(ManagedFieldsEntry {
            manager: Some(FIELD_MANAGER.into()),
            operation: Some("Apply".into()),
            fields_v1: Some(FieldsV1(
                serde_json::json!({"f:metadata": {"f:labels": held}}),
            )),
            ..Default::default()
        });
    }
    n.metadata.managed_fields = (!entries.is_empty()).then_some(entries);
    let annotations = n.metadata.annotations.get_or_insert_with(Default::default);
    match patch.body["metadata"]["annotations"].as_object() {
        Some(a) => annotations.extend(
            a.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())),
        ),
        None => {
            annotations.remove(PSA_ANNOTATION);
        }
    }
    *ns = Arc::new(n);
}

/// Namespace `name` of `snap` with labels set by another field manager (`kubectl label`, a GitOps
/// controller), as the API server records them.
fn labelled_by(snap: &mut Snapshot, name: &str, manager: &str, labels: &[(&str, &str)]) {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
    let ns = snap
        .namespaces
        .iter_mut()
        .find(|n| n.name_any() == name)
        .unwrap();
    let mut n = (**ns).clone();
    let held: serde_json::Map<_, _> = labels
        .iter()
        .map(|(k, _)| (format!("f:{k}"), serde_json::json!({})))
        .collect();
    n.metadata
        .labels
        .get_or_insert_with(Default::default)
        .extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    n.metadata
        .managed_fields
        .get_or_insert_with(Vec::new)
        .push(ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some("Update".into()),
            fields_v1: Some(FieldsV1(
                serde_json::json!({"f:metadata": {"f:labels": held}}),
            )),
            ..Default::default()
        });
    *ns = Arc::new(n);
}

/// The status's condition of `type_` (every status carries all of them).
fn condition<'s>(status: &'s SecurityBaselineStatus, type_: &str) -> &'s Condition {
    status.conditions.iter().find(|c| c.type_ == type_).unwrap()
}

fn writes_nothing(c: &Converge) -> bool {
    c.writes.changes() == Changes::default() && c.labels.is_empty() && !c.add_finalizer
}

#[test]
fn enforce_generates_in_covered_namespaces_and_planning_again_writes_nothing() {
    let b = sample("shop", "u1", "2026-01-01T00:00:00Z");
    let mut snap = cluster();
    let first = converge(plan_of(&b, &[], &snap));
    assert!(
        first.add_finalizer,
        "Enforce with namespace labels holds the finalizer"
    );
    let nps = &first.writes.network_policies;
    assert!(!nps.apply.is_empty());
    assert!(nps.apply.iter().all(|w| w.outcome == Outcome::Created));
    let in_ns: BTreeSet<_> = nps
        .apply
        .iter()
        .map(|w| w.object.metadata.namespace.clone().unwrap())
        .collect();
    assert_eq!(in_ns, BTreeSet::from(["shop".into(), "shop-legacy".into()]));
    assert!(first
        .writes
        .roles
        .apply
        .iter()
        .any(|w| w.object.name_any().contains("api")));
    assert!(first.writes.admission_policies.wanted > 0);
    let labelled: Vec<_> = first.labels.iter().map(|p| p.namespace.as_str()).collect();
    assert_eq!(labelled, ["shop", "shop-legacy"]);
    assert!(first.labels.iter().all(|p| p.set));
    assert_eq!(first.labelled, 2);
    assert_eq!(
        first.requeue, RESYNC,
        "the sample's exemption expires in 2030"
    );
    let reports = first.reports.as_ref().unwrap();
    assert_eq!(reports.len(), 2, "one report per covered namespace");
    let status = first.status(None, None, now());
    assert_eq!(status.namespaces, Some(2));
    assert_eq!(status.generated.as_ref().unwrap().labelled_namespaces, 2);

    execute(&mut snap, &first);
    let mut stored = b.clone();
    stored.metadata.finalizers = Some(vec![FINALIZER.into()]);
    stored.status = Some(status.clone());
    let second = converge(plan_of(&stored, &[], &snap));
    assert!(
        writes_nothing(&second),
        "second plan writes {:?} {:?}",
        second.writes.changes(),
        second.labels
    );
    assert!(!second.remove_finalizer);
    assert_eq!(
        second.generated(),
        first.generated(),
        "counts are of what is wanted"
    );
    let later = now() + Duration::from_secs(3600);
    assert_eq!(
        second.status(None, Some(&status), later),
        status,
        "nothing changed: the status (and its transition times) stays as it is"
    );
}

#[test]
fn drift_is_updated_unwanted_generated_objects_pruned_and_nothing_else_touched() {
    let b = sample("shop", "u1", "2026-01-01T00:00:00Z");
    let mut snap = cluster();
    let first = converge(plan_of(&b, &[], &snap));
    execute(&mut snap, &first);
    let generated = |name: &str, baseline: &str, owner: Option<&str>| {
        let mut np = NetworkPolicy::default();
        np.metadata.name = Some(name.into());
        np.metadata.namespace = Some("shop".into());
        np.metadata.labels = Some(BTreeMap::from([
            (MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into()),
            (BASELINE_LABEL.into(), baseline.into()),
        ]));
        np.metadata.owner_references = owner.map(|uid| {
            vec![OwnerReference {
                kind: "SecurityBaseline".into(),
                uid: uid.into(),
                ..Default::default()
            }]
        });
        Arc::new(np)
    };
    // Drift: another manager emptied the default-deny policy's types.
    let drifted = snap
        .network_policies
        .iter()
        .position(|p| {
            p.name_any() == "palisade-default-deny"
                && p.metadata.namespace.as_deref() == Some("shop")
        })
        .unwrap();
    let mut np = (*snap.network_policies[drifted]).clone();
    np.spec.as_mut().unwrap().policy_types = Some(vec!["Ingress".into()]);
    snap.network_policies[drifted] = Arc::new(np);
    snap.network_policies.extend([
        generated("palisade-old", "shop", Some("u1")), // ours, no longer wanted: pruned
        generated("copy", "shop", None),               // a copy without owner: kept
        generated("earlier", "shop", Some("u0")),      // an earlier baseline of that name: kept
        generated("theirs", "other", Some("u2")),      // another baseline's: kept
    ]);
    let c = converge(plan_of(&b, &[], &snap));
    let changes = c.writes.changes();
    assert_eq!(changes.update, ["NetworkPolicy shop/palisade-default-deny"]);
    assert_eq!(changes.delete, ["NetworkPolicy shop/palisade-old"]);
    assert!(changes.create.is_empty(), "{:?}", changes.create);
    assert_eq!(
        c.change_lines(),
        [
            "Updated NetworkPolicy shop/palisade-default-deny",
            "Pruned NetworkPolicy shop/palisade-old"
        ]
    );
}

#[test]
fn a_generated_name_taken_by_someone_elses_object_is_left_alone_and_reported() {
    let b = sample("shop", "u1", "2026-01-01T00:00:00Z");
    let mut snap = cluster();
    let mut theirs = NetworkPolicy::default();
    theirs.metadata.name = Some("palisade-default-deny".into());
    theirs.metadata.namespace = Some("shop".into());
    theirs.metadata.labels = Some(BTreeMap::from([("team".into(), "shop".into())]));
    snap.network_policies.push(Arc::new(theirs));
    let c = converge(plan_of(&b, &[], &snap));
    let changes = c.writes.changes();
    assert_eq!(
        changes.foreign,
        ["NetworkPolicy shop/palisade-default-deny"]
    );
    assert!(!changes
        .create
        .iter()
        .chain(&changes.update)
        .chain(&changes.delete)
        .any(|l| l == "NetworkPolicy shop/palisade-default-deny"));
    let status = c.status(None, None, now());
    let degraded = condition(&status, "Degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "ForeignObjects")
    );
    assert!(status.conflicts.iter().any(
        |l| l.starts_with("NetworkPolicy shop/palisade-default-deny: exists and is not Palisade's")
    ));
}

#[test]
fn audit_mode_writes_nothing_and_previews_what_enforce_would_write() {
    let b = audit_mode(sample("shop", "u1", "2026-01-01T00:00:00Z"));
    let snap = cluster();
    let c = converge(plan_of(&b, &[], &snap));
    assert!(
        writes_nothing(&c),
        "{:?} {:?}",
        c.writes.changes(),
        c.labels
    );
    assert_eq!(c.generated(), GeneratedCounts::default());
    let status = c.status(None, None, now());
    let preview = status.preview.clone().expect("Audit mode previews Enforce");
    assert!(preview
        .create
        .contains(&"NetworkPolicy shop/palisade-default-deny".to_string()));
    assert!(preview
        .create
        .iter()
        .any(|l| l.starts_with("ValidatingAdmissionPolicy ")));
    assert_eq!(preview.label_namespaces, ["shop", "shop-legacy"]);
    assert!(preview.delete.is_empty());
    let ready = condition(&status, "Ready");
    assert_eq!(ready.reason, "Audited");
    // The report still judges the covered namespaces.
    assert_eq!(c.report.namespaces.len(), 2);
}

#[test]
fn the_older_of_two_enforce_baselines_generates_in_a_namespace_both_cover() {
    let older = sample("platform", "u0", "2025-01-01T00:00:00Z");
    let mut younger = sample("shop", "u1", "2026-01-01T00:00:00Z");
    // The younger one also covers `web`, which only it covers.
    younger.spec.namespace_selector = Some(
        serde_yaml_ng::from_str(
            "matchExpressions: [{key: team, operator: In, values: [shop, web]}]",
        )
        .unwrap(),
    );
    let snap = cluster();
    let y = converge(plan_of(&younger, &[other(&older)], &snap));
    let generated_in: BTreeSet<_> = y
        .writes
        .network_policies
        .apply
        .iter()
        .map(|w| w.object.metadata.namespace.clone().unwrap())
        .collect();
    assert_eq!(generated_in, BTreeSet::from(["web".to_string()]));
    let status = y.status(None, None, now());
    assert_eq!(status.conflicts.len(), 2, "{:?}", status.conflicts);
    assert!(status.conflicts[0].starts_with("shop: also covered by older baseline platform"));
    let degraded = condition(&status, "Degraded");
    assert_eq!(degraded.reason, "BaselineConflict");
    // The older one generates in both shared namespaces and reports no conflict.
    let o = converge(plan_of(&older, &[other(&younger)], &snap));
    assert_eq!(o.labelled, 2);
    assert!(o.status(None, None, now()).conflicts.is_empty());
    // An Audit baseline never takes a namespace from anyone.
    let a = converge(plan_of(
        &older,
        &[other(&audit_mode(younger.clone()))],
        &snap,
    ));
    assert_eq!(a.labelled, 2);
}

#[test]
fn a_deleted_baseline_removes_only_the_labels_it_set_then_its_finalizer() {
    let mut b = sample("shop", "u1", "2026-01-01T00:00:00Z");
    b.metadata.deletion_timestamp = Some(Time(now()));
    b.metadata.finalizers = Some(vec!["other.io/keep".into(), FINALIZER.into()]);
    let psa = ("pod-security.kubernetes.io/enforce", "restricted");
    let snap = Snapshot {
        namespaces: vec![
            namespace("ours", &[psa], &[(PSA_ANNOTATION, "shop")]),
            namespace("another-baselines", &[psa], &[(PSA_ANNOTATION, "platform")]),
            namespace("platform-team", &[psa], &[]),
        ],
        ..Default::default()
    };
    // Deletion is handled before compilation: an invalid spec does not keep the finalizer.
    for compiled in [
        Ok(&compile(&b)),
        Err("spec.namespaceSelector: bad operator"),
    ] {
        let Plan::Release(r) = plan(&b, compiled, &[], &snap, &env(), now()) else {
            panic!("a deleted baseline is released");
        };
        let patched: Vec<_> = r
            .labels
            .iter()
            .map(|p| (p.namespace.as_str(), p.set))
            .collect();
        assert_eq!(patched, [("ours", false)]);
        assert_eq!(
            r.labels[0].body,
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ours"}}),
            "an empty apply under Palisade's field manager removes only what it set"
        );
        assert!(r.remove_finalizer);
    }
    b.metadata.finalizers = Some(vec!["other.io/keep".into()]);
    let Plan::Release(r) = plan_of(&b, &[], &snap) else {
        panic!("a deleted baseline is released");
    };
    assert!(!r.remove_finalizer, "no finalizer of Palisade's to remove");
}

#[test]
fn an_invalid_spec_gets_its_status_once_and_nothing_else() {
    let b = sample("shop", "u1", "2026-01-01T00:00:00Z");
    let snap = cluster();
    let why =
        "spec.namespaceSelector.matchExpressions[0].operator: \"Sometimes\" is not an operator";
    let Plan::Invalid(Some(status)) = plan(&b, Err(why), &[], &snap, &env(), now()) else {
        panic!("an invalid spec writes its status");
    };
    let ready = &status.conditions[0];
    assert_eq!(
        (
            ready.type_.as_str(),
            ready.status.as_str(),
            ready.reason.as_str()
        ),
        ("Ready", "False", "InvalidSpec")
    );
    assert_eq!(ready.message, why);
    let mut stored = b.clone();
    stored.status = Some(*status);
    let later = now() + Duration::from_secs(60);
    assert!(matches!(
        plan(&stored, Err(why), &[], &snap, &env(), later),
        Plan::Invalid(None)
    ));
}

#[test]
fn an_invalid_specs_conditions_keep_their_transition_time_when_only_the_message_changes() {
    let t0: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
    let t1: Timestamp = "2026-12-01T11:00:00Z".parse().unwrap();
    let first = invalid_status(None, Some(1), "spec.a: bad", t0);
    let second = invalid_status(Some(&first), Some(2), "spec.b: bad", t1);
    assert_eq!(second.conditions[1].message, "spec.b: bad");
    assert_eq!(second.observed_generation, Some(2));
    for c in &second.conditions {
        assert_eq!(c.last_transition_time.0, t0, "{}", c.type_);
    }
    // From Ready=True to Ready=False is a transition.
    let mut ready = first.clone();
    ready.conditions[0].status = "True".into();
    let after = invalid_status(Some(&ready), Some(3), "spec.c: bad", t1);
    assert_eq!(after.conditions[0].last_transition_time.0, t1);
    assert_eq!(after.conditions[1].last_transition_time.0, t0);
}

#[test]
fn the_finalizer_goes_once_no_namespace_keeps_labels_this_baseline_set() {
    // Labels turned off: the labels set earlier are removed, and the finalizer with them.
    let mut b = sample("shop", "u1", "2026-01-01T00:00:00Z");
    b.spec
        .pod_security
        .as_mut()
        .unwrap()
        .admission
        .as_mut()
        .unwrap()
        .namespace_labels = Some(false);
    b.metadata.finalizers = Some(vec![FINALIZER.into()]);
    let mut snap = cluster();
    snap.namespaces[0] = namespace(
        "shop",
        &[
            ("team", "shop"),
            ("pod-security.kubernetes.io/enforce", "restricted"),
        ],
        &[(PSA_ANNOTATION, "shop")],
    );
    let c = converge(plan_of(&b, &[], &snap));
    assert!(!c.add_finalizer);
    assert_eq!(c.labels.len(), 1);
    assert!(!c.labels[0].set);
    assert_eq!(c.labelled, 0);
    assert!(
        c.remove_finalizer,
        "removed after the labels, in the same reconcile"
    );
    // Audit mode never labels, so it never needs the finalizer either.
    let a = converge(plan_of(&audit_mode(b), &[], &snap));
    assert!(a.remove_finalizer);
}

#[test]
fn the_next_reconcile_is_due_when_an_exemption_expires() {
    let mut b = sample("shop", "u1", "2026-01-01T00:00:00Z");
    b.spec.exemptions[0].expires = Some(Time(now() + Duration::from_secs(120)));
    let c = converge(plan_of(&b, &[], &cluster()));
    assert_eq!(c.requeue, Duration::from_secs(120));
    // Expired exemptions are reported (their finding) and no longer shorten the wait.
    let compiled_later =
        CompiledBaseline::compile("shop", &b.spec, now() + Duration::from_secs(121)).unwrap();
    let later = plan(
        &b,
        Ok(&compiled_later),
        &[],
        &cluster(),
        &env(),
        now() + Duration::from_secs(121),
    );
    assert_eq!(converge(later).requeue, RESYNC);
}

/// A tiny deterministic generator (no dependency): the same seeds give the same states.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

#[test]
fn for_arbitrary_cluster_states_every_prune_targets_an_object_this_baseline_generated() {
    let b = sample("shop", "u1", "2026-01-01T00:00:00Z");
    let names = [
        "palisade-default-deny",
        "palisade-allow-dns",
        "palisade-old",
        "app",
        "palisade-allow-db-from-api-to-0",
    ];
    let namespaces = ["shop", "shop-legacy", "web", "kube-system"];
    let managed = [None, Some(MANAGED_BY_VALUE), Some("argocd")];
    let baselines = [None, Some("shop"), Some("platform")];
    let owners = [None, Some("u1"), Some("u0"), Some("u2")];
    let owner_kinds = ["SecurityBaseline", "Application"];
    let mut pruned = 0;
    for seed in 1..=400u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut snap = cluster();
        if rng.next().is_multiple_of(2) {
            // Some states start from a converged cluster.
            let first = converge(plan_of(&b, &[], &snap));
            execute(&mut snap, &first);
        }
        for _ in 0..(rng.next() % 12) {
            let mut np = NetworkPolicy::default();
            np.metadata.name = Some(rng.pick(&names).to_string());
            np.metadata.namespace = Some(rng.pick(&namespaces).to_string());
            let mut labels = BTreeMap::new();
            if let Some(m) = rng.pick(&managed) {
                labels.insert(MANAGED_BY_LABEL.to_string(), m.to_string());
            }
            if let Some(b) = rng.pick(&baselines) {
                labels.insert(BASELINE_LABEL.to_string(), b.to_string());
            }
            np.metadata.labels = Some(labels);
            np.metadata.owner_references = rng.pick(&owners).map(|uid| {
                vec![OwnerReference {
                    kind: rng.pick(&owner_kinds).to_string(),
                    uid: uid.into(),
                    ..Default::default()
                }]
            });
            let k = key(&np);
            snap.network_policies.retain(|o| key(&**o) != k);
            snap.network_policies.push(Arc::new(np));
        }
        let c = converge(plan_of(&b, &[], &snap));
        for o in &c.writes.network_policies.prune {
            pruned += 1;
            let labels = o.labels();
            assert_eq!(
                labels.get(MANAGED_BY_LABEL).map(String::as_str),
                Some(MANAGED_BY_VALUE),
                "seed {seed}"
            );
            assert_eq!(
                labels.get(BASELINE_LABEL).map(String::as_str),
                Some("shop"),
                "seed {seed}"
            );
            assert!(
                o.owner_references()
                    .iter()
                    .any(|r| r.kind == "SecurityBaseline" && r.uid == "u1"),
                "seed {seed}: pruned {} without this baseline's owner",
                describe(&**o)
            );
        }
        for w in &c.writes.network_policies.apply {
            if let Some(existing) = snap
                .network_policies
                .iter()
                .find(|o| key(&***o) == key(&w.object))
            {
                assert!(
                    palisades(&**existing),
                    "seed {seed}: overwrote someone else's {}",
                    describe(&w.object)
                );
            }
        }
    }
    assert!(
        pruned > 20,
        "the generator reaches the prune branch ({pruned} prunes)"
    );
}

#[test]
fn declared_rules_outside_the_grantable_ceiling_are_left_out_and_named() {
    let b = sample("shop", "u1", "2026-01-01T00:00:00Z");
    let mut snap = cluster();
    snap.cluster_roles.clear();
    let c = converge(plan_of(&b, &[], &snap));
    // The API server would refuse a Role holding them: none of their rules is written.
    assert!(c.writes.roles.apply.iter().all(|w| w
        .object
        .rules
        .as_deref()
        .unwrap_or_default()
        .is_empty()));
    let status = c.status(None, None, now());
    let degraded = condition(&status, "Degraded");
    assert_eq!(degraded.reason, "RulesOutsideGrantableCeiling");
    assert!(
        degraded
            .message
            .contains("spec.rbac.serviceAccounts[0].rules[0]"),
        "{}",
        degraded.message
    );
    // With the ceiling holding them, the same plan writes them and is not degraded.
    let granted = converge(plan_of(&b, &[], &cluster()));
    assert!(granted.writes.roles.apply.iter().any(|w| w
        .object
        .rules
        .as_deref()
        .unwrap_or_default()
        .len()
        == 1));
    let status = granted.status(None, None, now());
    let degraded = condition(&status, "Degraded");
    assert_eq!(degraded.status, "False");
}

/// The baseline once the first reconcile added its finalizer.
fn holding_finalizer(mut b: SecurityBaseline) -> SecurityBaseline {
    b.metadata.finalizers = Some(vec![FINALIZER.into()]);
    b
}

fn labels_of(snap: &Snapshot, ns: &str) -> BTreeMap<String, String> {
    let n = snap.namespaces.iter().find(|n| n.name_any() == ns).unwrap();
    n.labels()
        .iter()
        .filter(|(k, _)| k.starts_with("pod-security.kubernetes.io/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn release(b: &SecurityBaseline, snap: &mut Snapshot) {
    let mut deleted = b.clone();
    deleted.metadata.deletion_timestamp = Some(Time(now()));
    deleted.metadata.finalizers = Some(vec![FINALIZER.into()]);
    let Plan::Release(r) = plan_of(&deleted, &[], snap) else {
        panic!("a deleted baseline is released");
    };
    for patch in &r.labels {
        server_side_apply_labels(snap, patch);
    }
}

#[test]
fn a_pod_security_label_someone_else_set_is_never_taken_over_and_survives_the_baseline() {
    let b = holding_finalizer(sample("shop", "u1", "2026-01-01T00:00:00Z"));
    let mut snap = cluster();
    // The platform team's GitOps repository says `enforce: baseline` for shop, and the same
    // `warn: restricted` Palisade wants for shop-legacy.
    labelled_by(
        &mut snap,
        "shop",
        "platform-gitops",
        &[("pod-security.kubernetes.io/enforce", "baseline")],
    );
    labelled_by(
        &mut snap,
        "shop-legacy",
        "platform-gitops",
        &[("pod-security.kubernetes.io/warn", "restricted")],
    );
    let before_shop = labels_of(&snap, "shop");
    let c = converge(plan_of(&b, &[], &snap));
    let shop = c.labels.iter().find(|p| p.namespace == "shop").unwrap();
    let sent = shop.body["metadata"]["labels"].as_object().unwrap();
    assert!(
        !sent.contains_key("pod-security.kubernetes.io/enforce"),
        "never forced over: {sent:?}"
    );
    assert_eq!(
        sent["pod-security.kubernetes.io/warn"], "restricted",
        "the labels nobody holds are set"
    );
    let status = c.status(None, None, now());
    let degraded = condition(&status, "Degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "ForeignObjects")
    );
    assert_eq!(
        status.conflicts,
        ["Namespace shop label pod-security.kubernetes.io/enforce=baseline (managed by platform-gitops; this baseline wants restricted): exists and is not Palisade's; left alone"]
    );
    execute(&mut snap, &c);
    assert_eq!(
        labels_of(&snap, "shop")["pod-security.kubernetes.io/enforce"],
        "baseline"
    );
    // Steady state: nothing to write, the conflict still reported.
    let again = converge(plan_of(&b, &[], &snap));
    assert!(writes_nothing(&again), "{:?}", again.labels);
    assert_eq!(again.status(None, None, now()).conflicts.len(), 1);
    // The baseline goes: its own labels go, the platform team's stay, in both namespaces.
    release(&b, &mut snap);
    assert_eq!(labels_of(&snap, "shop"), before_shop);
    assert_eq!(
        labels_of(&snap, "shop-legacy"),
        BTreeMap::from([(
            "pod-security.kubernetes.io/warn".to_string(),
            "restricted".to_string()
        )]),
        "a label both held stays with the other manager"
    );
}

#[test]
fn a_label_palisade_set_is_applied_again_when_another_writer_took_it_with_the_same_value() {
    let b = holding_finalizer(sample("shop", "u1", "2026-01-01T00:00:00Z"));
    let mut snap = cluster();
    let first = converge(plan_of(&b, &[], &snap));
    execute(&mut snap, &first);
    // `kubectl label --overwrite` with the same value takes the field from Palisade's apply.
    let n = snap
        .namespaces
        .iter_mut()
        .find(|n| n.name_any() == "shop")
        .unwrap();
    let mut taken = (**n).clone();
    for e in taken.metadata.managed_fields.iter_mut().flatten() {
        let labels = e.fields_v1.as_mut().unwrap().0["f:metadata"]["f:labels"]
            .as_object_mut()
            .unwrap();
        labels.remove("f:pod-security.kubernetes.io/enforce");
    }
    *n = Arc::new(taken);
    labelled_by(
        &mut snap,
        "shop",
        "kubectl-label",
        &[("pod-security.kubernetes.io/enforce", "restricted")],
    );
    let c = converge(plan_of(&b, &[], &snap));
    let patched: Vec<_> = c.labels.iter().map(|p| p.namespace.as_str()).collect();
    assert_eq!(
        patched,
        ["shop"],
        "Palisade holds its labels again (shared, no conflict)"
    );
    assert!(c.status(None, None, now()).conflicts.is_empty());
    execute(&mut snap, &c);
    assert!(writes_nothing(&converge(plan_of(&b, &[], &snap))));
}

#[test]
fn namespace_field_managers_are_trimmed_to_the_pod_security_labels() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
    let entry = |manager: &str, fields: serde_json::Value| ManagedFieldsEntry {
        manager: Some(manager.into()),
        operation: Some("Update".into()),
        fields_v1: Some(FieldsV1(fields)),
        time: Some(Time(now())),
        ..Default::default()
    };
    let trimmed = labels::trim_managed_fields(Some(vec![
        entry(
            "kube-controller-manager",
            serde_json::json!({"f:status": {"f:phase": {}}}),
        ),
        entry(
            "platform-gitops",
            serde_json::json!({"f:metadata": {"f:labels": {
                "f:team": {}, "f:pod-security.kubernetes.io/enforce": {}}}}),
        ),
    ]))
    .unwrap();
    assert_eq!(trimmed.len(), 1);
    assert_eq!(trimmed[0].manager.as_deref(), Some("platform-gitops"));
    assert_eq!(
        trimmed[0].fields_v1.as_ref().unwrap().0,
        serde_json::json!({"f:metadata": {"f:labels": {"f:pod-security.kubernetes.io/enforce": {}}}})
    );
    assert!(trimmed[0].time.is_none());
    assert!(labels::trim_managed_fields(Some(vec![entry("x", serde_json::json!({}))])).is_none());
}

#[test]
fn a_drifted_object_names_its_other_writer_and_a_contested_one_is_left_alone_until_the_backoff_ends(
) {
    use crate::controller::fights::Contest;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
    let b = holding_finalizer(sample("shop", "u1", "2026-01-01T00:00:00Z"));
    let mut snap = cluster();
    let first = converge(plan_of(&b, &[], &snap));
    execute(&mut snap, &first);
    let deny = "NetworkPolicy shop/palisade-default-deny";
    let at = snap
        .network_policies
        .iter()
        .position(|p| describe(&**p) == deny)
        .unwrap();
    let mut np = (*snap.network_policies[at]).clone();
    np.spec.as_mut().unwrap().policy_types = Some(vec!["Ingress".into()]);
    np.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
        manager: Some("gitops".into()),
        operation: Some("Apply".into()),
        fields_v1: Some(FieldsV1(
            serde_json::json!({"f:spec": {"f:policyTypes": {}}}),
        )),
        ..Default::default()
    }]);
    snap.network_policies[at] = Arc::new(np);

    let restore = converge(plan_of(&b, &[], &snap));
    let w = restore
        .writes
        .network_policies
        .apply
        .iter()
        .find(|w| describe(&w.object) == deny)
        .expect("drift is restored");
    assert_eq!(w.outcome, Outcome::Updated);
    assert_eq!(w.writers, ["gitops (Apply): spec.policyTypes"]);

    // Once it is a fight, the same drift is left alone, reported, and looked at again when the
    // back-off ends.
    let until: Timestamp = "2026-12-01T10:07:00Z".parse().unwrap();
    let contested = BTreeMap::from([(
        deny.to_string(),
        Contest {
            writers: w.writers.clone(),
            restores: 5,
            until,
        },
    )]);
    let env = Env {
        contested: &contested,
        ..env()
    };
    let Plan::Converge(left) = plan(&b, Ok(&compile(&b)), &[], &snap, &env, now()) else {
        panic!("converges");
    };
    assert!(left
        .writes
        .network_policies
        .apply
        .iter()
        .all(|w| describe(&w.object) != deny));
    assert_eq!(left.writes.changes().contested, [deny]);
    assert_eq!(left.requeue, Duration::from_secs(7 * 60));
    let status = left.status(None, None, now());
    let conflict = condition(&status, "Conflict");
    assert_eq!(
        (conflict.status.as_str(), conflict.reason.as_str()),
        ("True", "FightingAnotherWriter")
    );
    assert!(
        conflict.message.starts_with(&format!(
            "{deny}: rewritten by gitops (Apply): spec.policyTypes"
        )),
        "{}",
        conflict.message
    );
    let degraded = condition(&status, "Degraded");
    assert_eq!(degraded.reason, "Conflict");
    assert!(status.conflicts[0].starts_with(deny));
    // Without a fight the Conflict condition is False.
    let calm = restore.status(None, None, now());
    let conflict = condition(&calm, "Conflict");
    assert_eq!(
        (conflict.status.as_str(), conflict.reason.as_str()),
        ("False", "NoFight")
    );
}

#[test]
fn the_cache_keeps_other_writers_of_palisades_objects_only() {
    use crate::controller::apply::keep_other_writers;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    let entry = |m: &str| ManagedFieldsEntry {
        manager: Some(m.into()),
        time: Some(Time(now())),
        ..Default::default()
    };
    let mut ours = ObjectMeta {
        labels: Some(BTreeMap::from([(
            MANAGED_BY_LABEL.into(),
            MANAGED_BY_VALUE.into(),
        )])),
        managed_fields: Some(vec![entry(FIELD_MANAGER), entry("kubectl-edit")]),
        ..Default::default()
    };
    keep_other_writers(&mut ours);
    let kept = ours.managed_fields.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].manager.as_deref(), Some("kubectl-edit"));
    assert!(kept[0].time.is_none());
    let mut theirs = ObjectMeta {
        managed_fields: Some(vec![entry("kubectl-edit")]),
        ..Default::default()
    };
    keep_other_writers(&mut theirs);
    assert!(theirs.managed_fields.is_none());
    let mut steady = ObjectMeta {
        labels: ours.labels.clone(),
        managed_fields: Some(vec![entry(FIELD_MANAGER)]),
        ..Default::default()
    };
    keep_other_writers(&mut steady);
    assert!(
        steady.managed_fields.is_none(),
        "steady state keeps nothing"
    );
}

mod incremental;
mod mesh;
