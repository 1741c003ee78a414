//! Incremental planning gives what planning from scratch gives: over random sequences of changes
//! (namespaces created, deleted and relabelled, pods, drift, foreign objects, a cluster-wide
//! change), the incremental plan and a from-scratch plan over the same snapshot are compared
//! write for write, finding for finding and in their status; then the incremental one is
//! executed, and its own writes are recorded as changes, as the watches would.

use super::*;
use crate::controller::plan::memo::{Changed, Memo};
use k8s_openapi::api::core::v1::Pod;

fn bare_pod(ns: &str, name: &str, labels: &[(&str, &str)]) -> Arc<Pod> {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut p: Pod = serde_yaml_ng::from_str(&format!(
        "metadata: {{name: {name}, namespace: {ns}}}\n\
         spec: {{containers: [{{name: c, image: i}}]}}"
    ))
    .unwrap();
    p.metadata.labels = Some(labels);
    // What the API server gives every object: the identity the kept verdicts are keyed on.
    p.metadata.uid = Some(format!("uid-{ns}-{name}"));
    p.metadata.resource_version = Some("1".into());
    Arc::new(p)
}

/// The pod after an update: privileged or not (which its verdict must follow), a new
/// resourceVersion.
fn toggled_privileged(p: &Pod) -> Pod {
    let mut p = p.clone();
    let c = &mut p.spec.as_mut().unwrap().containers[0];
    let sc = c.security_context.get_or_insert_with(Default::default);
    sc.privileged = Some(!sc.privileged.unwrap_or(false));
    let rv: u64 = p
        .metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    p.metadata.resource_version = Some((rv + 1).to_string());
    p
}

/// One step of both plans; returns the incremental one, how many namespaces it rebuilt
/// (`None`: from scratch) and whether it reused the previous audit.
fn step(
    b: &SecurityBaseline,
    snap: &Snapshot,
    previous: Option<Memo>,
    changed: Changed,
    when: Timestamp,
    what: &str,
) -> (Box<Converge>, Option<usize>, bool) {
    let compiled = CompiledBaseline::compile(&b.name_any(), &b.spec, when).unwrap();
    let env = env();
    let since = Since { previous, changed };
    let Prepared::Converge(writing) = prepare(b, Ok(&compiled), &[], snap, &env, when, since)
    else {
        panic!("{what}: expected Converge");
    };
    let (rebuilt, reused) = (writing.rebuilt, writing.reuses_audit);
    let inc = Box::new(writing.audit(snap));
    let full = converge(plan(b, Ok(&compiled), &[], snap, &env, when));
    // Write for write; the lines naming objects left alone are compared in the status (an
    // incremental plan keeps those of the namespaces it did not rebuild in its memo).
    assert_eq!(
        writes_only(&inc.writes),
        writes_only(&full.writes),
        "{what}: writes"
    );
    assert_eq!(inc.labels, full.labels, "{what}: namespace labels");
    // Both plans fold their labels from per-namespace results; the whole-cluster label plan over
    // the same wanted objects is the reference for them.
    let wanted: BTreeMap<String, Arc<NamespaceObjects>> = full
        .memo
        .namespaces
        .iter()
        .map(|(ns, m)| (ns.clone(), m.objects.clone()))
        .collect();
    let reference = labels::plan(snap, &b.name_any(), &wanted);
    assert_eq!(inc.labels, reference.patches, "{what}: namespace labels");
    assert_eq!(inc.labelled, reference.labelled, "{what}: labelled");
    let mut foreign: Vec<String> = inc
        .memo
        .namespaces
        .values()
        .flat_map(|m| m.label_foreign.iter().cloned())
        .collect();
    foreign.sort();
    assert_eq!(foreign, reference.foreign, "{what}: labels left alone");
    for line in &reference.foreign {
        assert!(
            inc.status.foreign.contains(line),
            "{what}: {line} in status"
        );
    }
    assert_eq!(inc.generated(), full.generated(), "{what}: counts");
    assert_eq!(
        format!("{:?}", inc.report.findings),
        format!("{:?}", full.report.findings),
        "{what}: findings"
    );
    assert_eq!(inc.reports, full.reports, "{what}: reports");
    assert_eq!(
        inc.status(None, b.status.as_ref(), when),
        full.status(None, b.status.as_ref(), when),
        "{what}: status"
    );
    assert_eq!(
        inc.memo.namespaces, full.memo.namespaces,
        "{what}: what the next plan reuses"
    );
    (inc, rebuilt, reused)
}

fn writes_only(w: &Writes) -> Writes {
    fn kind<K: Clone>(p: &KindPlan<K>) -> KindPlan<K> {
        KindPlan {
            wanted: p.wanted,
            apply: p.apply.clone(),
            prune: p.prune.clone(),
            ..KindPlan::default()
        }
    }
    Writes {
        network_policies: kind(&w.network_policies),
        roles: kind(&w.roles),
        role_bindings: kind(&w.role_bindings),
        admission_policies: kind(&w.admission_policies),
        admission_bindings: kind(&w.admission_bindings),
        peer_authentications: kind(&w.peer_authentications),
    }
}

/// The changes the watches report after `c` is executed: every namespace written in, and a
/// cluster-wide change for cluster-scoped writes.
fn written(c: &Converge) -> Changed {
    let mut changed = Changed::Namespaces(BTreeSet::new());
    let Writes {
        network_policies,
        roles,
        role_bindings,
        admission_policies,
        admission_bindings,
        peer_authentications,
    } = &c.writes;
    fn kind<K: Resource>(p: &KindPlan<K>, out: &mut Changed) {
        let written = p.apply.iter().map(|w| w.object.meta().namespace.clone());
        for ns in written.chain(p.prune.iter().map(|o| o.meta().namespace.clone())) {
            out.add(ns.as_deref());
        }
    }
    kind(network_policies, &mut changed);
    kind(roles, &mut changed);
    kind(role_bindings, &mut changed);
    kind(admission_policies, &mut changed);
    kind(admission_bindings, &mut changed);
    kind(peer_authentications, &mut changed);
    for p in &c.labels {
        changed.add(Some(&p.namespace));
    }
    changed
}

fn merge(a: Changed, b: Changed) -> Changed {
    match (a, b) {
        (Changed::Namespaces(mut x), Changed::Namespaces(y)) => {
            x.extend(y);
            Changed::Namespaces(x)
        }
        _ => Changed::Everything,
    }
}

#[test]
fn incremental_plans_equal_from_scratch_plans_over_random_changes() {
    let mut b = sample("shop", "u1", "2026-01-01T00:00:00Z");
    b.metadata.finalizers = Some(vec![FINALIZER.into()]);
    let pod_labels: [&[(&str, &str)]; 4] = [
        &[("app", "db")],
        &[("db-access", "true")],
        &[("app", "vendor-x")],
        &[("app", "web"), ("trust", "untrusted")],
    ];
    let (mut scoped, mut from_scratch, mut rebuilt_total, mut owned_total) = (0, 0, 0, 0);
    let (mut reuses, mut verdicts_reused, mut foreign_labels) = (0, 0, 0);
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut snap = cluster();
        let mut memo = None;
        let mut changed = Changed::Everything;
        for i in 0..25 {
            let names: Vec<String> = snap.namespaces.iter().map(|n| n.name_any()).collect();
            if names.is_empty() {
                snap.namespaces
                    .push(namespace("shop", &[("team", "shop")], &[]));
                changed.add(Some("shop"));
                continue;
            }
            let ns = rng.pick(&names).clone();
            let what = match rng.next() % 13 {
                0 => {
                    let new = format!("ns-{i}");
                    snap.namespaces
                        .push(namespace(&new, &[("team", "shop")], &[]));
                    changed.add(Some(&new));
                    format!("namespace {new} created")
                }
                1 => {
                    let new = format!("other-{i}");
                    snap.namespaces
                        .push(namespace(&new, &[("team", "web")], &[]));
                    changed.add(Some(&new));
                    format!("namespace {new} created, not covered")
                }
                2 => {
                    snap.namespaces.retain(|n| n.name_any() != ns);
                    if rng.next().is_multiple_of(2) {
                        // The namespace controller has removed its objects too.
                        snap.network_policies
                            .retain(|o| o.metadata.namespace.as_deref() != Some(&ns));
                        snap.pods
                            .retain(|o| o.metadata.namespace.as_deref() != Some(&ns));
                    }
                    changed.add(Some(&ns));
                    format!("namespace {ns} deleted")
                }
                3 => {
                    let n = snap
                        .namespaces
                        .iter_mut()
                        .find(|n| n.name_any() == ns)
                        .unwrap();
                    let mut relabelled = (**n).clone();
                    let labels = relabelled
                        .metadata
                        .labels
                        .get_or_insert_with(Default::default);
                    let team = if labels.get("team").map(String::as_str) == Some("shop") {
                        "web"
                    } else {
                        "shop"
                    };
                    labels.insert("team".into(), team.into());
                    *n = Arc::new(relabelled);
                    changed.add(Some(&ns));
                    format!("namespace {ns} relabelled team={team}")
                }
                5 if !snap.pods.is_empty() => {
                    let at = (rng.next() % snap.pods.len() as u64) as usize;
                    let updated = toggled_privileged(&snap.pods[at]);
                    changed.add(updated.metadata.namespace.as_deref());
                    let what = format!(
                        "pod {} updated, privileged: {:?}",
                        updated.name_any(),
                        updated.spec.as_ref().unwrap().containers[0].security_context
                    );
                    snap.pods[at] = Arc::new(updated);
                    what
                }
                4 | 5 => {
                    let labels = *rng.pick(&pod_labels);
                    snap.pods.push(bare_pod(&ns, &format!("p-{i}"), labels));
                    changed.add(Some(&ns));
                    format!("pod {ns}/p-{i} {labels:?} created")
                }
                6 => {
                    if snap.pods.is_empty() {
                        continue;
                    }
                    let gone = (rng.next() % snap.pods.len() as u64) as usize;
                    let p = snap.pods.remove(gone);
                    changed.add(p.metadata.namespace.as_deref());
                    format!("pod {} deleted", p.name_any())
                }
                7 => {
                    let Some(at) = snap.network_policies.iter().position(|o| palisades(&**o))
                    else {
                        continue;
                    };
                    let mut drifted = (*snap.network_policies[at]).clone();
                    drifted.spec.get_or_insert_with(Default::default).ingress =
                        Some(vec![Default::default()]);
                    let ns = drifted.metadata.namespace.clone();
                    snap.network_policies[at] = Arc::new(drifted);
                    changed.add(ns.as_deref());
                    format!("drift in {}", describe(&*snap.network_policies[at]))
                }
                8 => {
                    let Some(at) = snap.roles.iter().position(|o| palisades(&**o)) else {
                        continue;
                    };
                    let r = snap.roles.remove(at);
                    changed.add(r.metadata.namespace.as_deref());
                    format!("{} deleted", describe(&*r))
                }
                9 => {
                    let mut np = NetworkPolicy::default();
                    np.metadata.name = Some("palisade-default-deny".into());
                    np.metadata.namespace = Some(ns.clone());
                    snap.network_policies.retain(|o| key(&**o) != key(&np));
                    snap.network_policies.push(Arc::new(np));
                    changed.add(Some(&ns));
                    format!("someone else's palisade-default-deny in {ns}")
                }
                // A trigger that changes nothing: the echo of the last writes,
                // then (if those were all) an empty change set.
                10 => "nothing changed".to_string(),
                11 => {
                    // Another manager holds a Pod Security label: left alone, and reported
                    // for as long as the namespace is owned, rebuilt or not.
                    let level = *rng.pick(&["privileged", "restricted"]);
                    labelled_by(
                        &mut snap,
                        &ns,
                        "gitops",
                        &[("pod-security.kubernetes.io/enforce", level)],
                    );
                    changed.add(Some(&ns));
                    format!("namespace {ns} labelled enforce={level} by another manager")
                }
                _ => {
                    // The grantable ceiling changes: a cluster-scoped object.
                    let mut role = grantable();
                    if rng.next().is_multiple_of(2) {
                        role.rules = Some(Vec::new());
                    }
                    snap.cluster_roles = vec![Arc::new(role)];
                    changed.add(None);
                    "grantable ClusterRole changed".to_string()
                }
            };
            let what = format!("seed {seed} step {i}: {what}");
            let taken = std::mem::replace(&mut changed, Changed::Namespaces(BTreeSet::new()));
            let (c, rebuilt, reused) = step(&b, &snap, memo.take(), taken, now(), &what);
            reuses += usize::from(reused);
            foreign_labels += usize::from(
                c.memo
                    .namespaces
                    .values()
                    .any(|m| !m.label_foreign.is_empty()),
            );
            verdicts_reused += c.memo.verdicts.reused();
            let owned = c.memo.namespaces.len();
            match rebuilt {
                Some(n) => {
                    scoped += 1;
                    rebuilt_total += n;
                    owned_total += owned;
                }
                None => from_scratch += 1,
            }
            execute(&mut snap, &c);
            changed = merge(changed, written(&c));
            memo = Some(c.memo);
        }
    }
    assert!(
        scoped > 3 * from_scratch,
        "most plans are incremental ({scoped} incremental, {from_scratch} from scratch)"
    );
    assert!(reuses > 0, "some steps change nothing the audit reads");
    assert!(
        foreign_labels > 0,
        "some plans leave a label another manager holds alone"
    );
    assert!(
        verdicts_reused > 0,
        "unchanged pods keep their verdicts from the previous audit"
    );
    assert!(
        rebuilt_total * 2 < owned_total,
        "an incremental plan rebuilds a fraction of the namespaces ({rebuilt_total} of {owned_total})"
    );
}

#[test]
fn a_change_every_namespace_shares_or_the_resync_plans_from_scratch_whatever_was_recorded() {
    let mut b = sample("shop", "u1", "2026-01-01T00:00:00Z");
    b.metadata.finalizers = Some(vec![FINALIZER.into()]);
    let mut snap = cluster();
    let (first, rebuilt, reused) = step(&b, &snap, None, Changed::Everything, now(), "first");
    assert_eq!((rebuilt, reused), (None, false));
    execute(&mut snap, &first);
    let nothing = || Changed::Namespaces(BTreeSet::new());
    let (again, rebuilt, reused) = step(&b, &snap, Some(first.memo), nothing(), now(), "again");
    assert_eq!(rebuilt, Some(0), "nothing changed: nothing rebuilt");
    assert!(reused, "nothing changed: the audit is reused");
    assert!(writes_nothing(&again));

    // The ceiling shrinks, and no trigger said so: the globals differ.
    let mut role = grantable();
    role.rules = Some(Vec::new());
    snap.cluster_roles = vec![Arc::new(role)];
    let (shrunk, rebuilt, reused) = step(&b, &snap, Some(again.memo), nothing(), now(), "ceiling");
    assert_eq!(rebuilt, None, "a shared input changed: from scratch");
    assert!(!reused);
    assert!(
        !shrunk.writes.roles.apply.is_empty(),
        "the Roles lose the rule"
    );
    execute(&mut snap, &shrunk);

    let memo = shrunk.memo;
    let (_, rebuilt, _) = step(&b, &snap, Some(memo.clone()), nothing(), now(), "soon");
    assert_eq!(rebuilt, Some(0));
    let due = now() + RESYNC;
    let (_, rebuilt, reused) = step(&b, &snap, Some(memo), nothing(), due, "resync");
    assert_eq!(rebuilt, None, "the resync plans from scratch");
    assert!(!reused);
}

/// Pod churn within the audit interval: each plan writes what changed at once and reports the
/// previous audit, marked as behind and with a reconcile asked for when the interval ends; that
/// reconcile audits again and reports what a from-scratch plan reports.
#[test]
fn within_the_audit_interval_writes_go_out_and_the_report_follows_when_it_ends() {
    let mut b = sample("shop", "u1", "2026-01-01T00:00:00Z");
    b.metadata.finalizers = Some(vec![FINALIZER.into()]);
    let env = Env {
        audit_interval: Duration::from_secs(1),
        ..env()
    };
    let at = |ms: i64| now() + k8s_openapi::jiff::SignedDuration::from_millis(ms);
    let compiled = CompiledBaseline::compile(&b.name_any(), &b.spec, now()).unwrap();
    let run = |snap: &Snapshot, previous: Option<Memo>, changed: Changed, when: Timestamp| {
        let since = Since { previous, changed };
        let Prepared::Converge(w) = prepare(&b, Ok(&compiled), &[], snap, &env, when, since) else {
            panic!("expected Converge");
        };
        w.audit(snap)
    };
    let privileged = |c: &Converge| {
        c.report
            .findings
            .iter()
            .any(|f| f.rule == crate::policy::rules::Rule::Privileged)
    };
    let mut snap = cluster();
    let mut first = run(&snap, None, Changed::Everything, at(0));
    assert!(!first.audit_reused && !privileged(&first));
    assert!(
        first.memo.audit_took > Duration::ZERO,
        "the audit's cost is measured"
    );
    // The interval grows with what audits cost (below); here audits are cheap.
    first.memo.audit_took = Duration::from_millis(10);
    execute(&mut snap, &first);

    // A privileged pod and a new namespace, 100 ms later: the new namespace's defenses are
    // written at once, the report follows.
    let pod = bare_pod("shop", "new", &[("app", "web")]);
    snap.pods.push(Arc::new(toggled_privileged(&pod)));
    snap.namespaces
        .push(namespace("late", &[("team", "shop")], &[]));
    let mut changed = Changed::namespace("shop");
    changed.add(Some("late"));
    let churn = run(&snap, Some(first.memo), changed, at(100));
    let applied_in = |ns: &str| {
        churn
            .writes
            .network_policies
            .apply
            .iter()
            .any(|w| w.object.metadata.namespace.as_deref() == Some(ns))
    };
    assert!(
        applied_in("late"),
        "the new namespace's NetworkPolicies are written at once"
    );
    assert!(
        churn.audit_reused,
        "within the interval the previous audit is reported"
    );
    assert!(!privileged(&churn));
    assert!(churn.memo.audit_behind && churn.report_behind());
    assert!(
        churn.requeue <= Duration::from_millis(900) && churn.requeue >= Duration::from_millis(10),
        "a reconcile is asked for when the interval ends, not later: {:?}",
        churn.requeue
    );
    execute(&mut snap, &churn);

    // An echo inside the interval changes nothing: still behind, still asking.
    let echo = run(
        &snap,
        Some(churn.memo),
        Changed::Namespaces(BTreeSet::new()),
        at(500),
    );
    assert!(echo.audit_reused && echo.memo.audit_behind);
    assert!(echo.requeue <= Duration::from_millis(500));

    // The requeue once the interval is over: audited again, as from scratch.
    let when = at(1_100);
    let mut echo = echo;
    echo.memo.audit_took = Duration::from_millis(10);
    let mut caught_up = run(
        &snap,
        Some(echo.memo),
        Changed::Namespaces(BTreeSet::new()),
        when,
    );
    let full = converge(plan(&b, Ok(&compiled), &[], &snap, &env, when));
    assert!(!caught_up.audit_reused && !caught_up.report_behind());
    assert!(privileged(&caught_up));
    assert_eq!(
        format!("{:?}", caught_up.report.findings),
        format!("{:?}", full.report.findings)
    );

    // An audit that took 300 ms holds the next one back for 3 s, not 1.
    caught_up.memo.audit_took = Duration::from_millis(300);
    snap.pods.push(bare_pod("shop", "later", &[("app", "web")]));
    let slow = run(
        &snap,
        Some(caught_up.memo),
        Changed::namespace("shop"),
        at(2_100),
    );
    assert!(slow.audit_reused && slow.report_behind());
    assert!(
        slow.requeue > Duration::from_millis(1_500) && slow.requeue <= Duration::from_millis(2_000),
        "the next audit is due 3 s after the last: {:?}",
        slow.requeue
    );
    execute(&mut snap, &slow);

    // A cluster-wide change is audited at once, whatever the interval says.
    snap.cluster_roles = vec![Arc::new(grantable())];
    let wide = run(&snap, Some(slow.memo), Changed::Everything, at(2_200));
    assert!(!wide.audit_reused);
}

#[test]
fn the_audit_interval_grows_with_the_audits_cost_up_to_a_bound() {
    use crate::controller::plan::audit_interval;
    let ms = Duration::from_millis;
    assert_eq!(audit_interval(ms(1_000), ms(20)), ms(1_000));
    assert_eq!(audit_interval(ms(1_000), ms(500)), ms(5_000));
    assert_eq!(audit_interval(ms(1_000), ms(20_000)), ms(30_000));
    assert_eq!(
        audit_interval(ms(60_000), ms(20_000)),
        ms(60_000),
        "never below the configured one"
    );
    assert_eq!(
        audit_interval(Duration::ZERO, ms(500)),
        Duration::ZERO,
        "0 audits every time"
    );
}
