use crate::policy::audit::Auditor;
use crate::policy::rules::{Rule, Severity};
use crate::policy::testkit::{baseline, feed};

/// Everything but the mesh quiet.
const BASELINE: &str = "podSecurity: {level: privileged, readOnlyRootFilesystem: false, automountServiceAccountToken: true, forbidDefaultServiceAccount: false}\nnetwork: {defaultDeny: []}\nrbac: {audit: false}\n";

fn run(docs: &str) -> Vec<(Rule, String, String, Severity)> {
    let b = baseline(BASELINE);
    let mut auditor = Auditor::new(&b);
    feed(&mut auditor, docs);
    let mut out: Vec<_> = auditor
        .finish()
        .findings
        .iter()
        .filter(|f| f.rule.id().starts_with("mesh."))
        .map(|f| {
            (
                f.rule,
                f.object.name.clone(),
                f.message.to_string(),
                f.severity,
            )
        })
        .collect();
    out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    out
}

fn namespace(name: &str, labels: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {labels}}}\n---\n")
}

fn deployment(ns: &str, name: &str, labels: &str) -> String {
    format!("apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {labels}}}\n    spec: {{containers: [{{name: c, image: i}}]}}\n---\n")
}

fn peer_auth(ns: &str, name: &str, body: &str) -> String {
    format!("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {body}\n---\n")
}

fn rules(found: &[(Rule, String, String, Severity)]) -> Vec<(Rule, &str)> {
    found.iter().map(|(r, n, _, _)| (*r, n.as_str())).collect()
}

#[test]
fn without_istio_nothing_is_judged() {
    let docs = format!(
        "{}{}",
        namespace("app", "{}"),
        deployment("app", "web", "{app: web}")
    );
    assert_eq!(run(&docs), vec![]);
}

#[test]
fn no_policy_means_permissive_and_mesh_namespace_workload_levels_override_in_turn() {
    let ns = namespace("app", "{istio-injection: enabled}");
    let apps = format!(
        "{}{}",
        deployment("app", "web", "{app: web}"),
        deployment("app", "db", "{app: db}")
    );
    // Istio present (a policy elsewhere), nothing applies here: Istio's default, PERMISSIVE.
    let elsewhere = peer_auth("other", "x", "{mtls: {mode: STRICT}}");
    let found = run(&format!("{ns}{apps}{elsewhere}"));
    assert_eq!(
        rules(&found),
        vec![
            (Rule::MeshMtlsPermissive, "db"),
            (Rule::MeshMtlsPermissive, "web")
        ]
    );
    assert!(
        found[0].2.contains("no PeerAuthentication applies"),
        "{}",
        found[0].2
    );
    // Mesh-wide STRICT: clean.
    let mesh = peer_auth("istio-system", "default", "{mtls: {mode: STRICT}}");
    assert_eq!(run(&format!("{ns}{apps}{mesh}")), vec![]);
    // The namespace relaxes it; a workload policy restores it for db, with UNSET inheriting.
    let relaxed = peer_auth("app", "ns", "{mtls: {mode: PERMISSIVE}}");
    let db = peer_auth(
        "app",
        "db",
        "{selector: {matchLabels: {app: db}}, mtls: {mode: STRICT}}",
    );
    let unset = peer_auth(
        "app",
        "web",
        "{selector: {matchLabels: {app: web}}, mtls: {mode: UNSET}}",
    );
    let found = run(&format!("{ns}{apps}{mesh}{relaxed}{db}{unset}"));
    assert_eq!(rules(&found), vec![(Rule::MeshMtlsPermissive, "web")]);
    assert!(
        found[0]
            .2
            .contains("PeerAuthentication app/ns spec.mtls.mode"),
        "{}",
        found[0].2
    );
    // DISABLE is its own, higher finding; a port-level override is reported with its port.
    let disabled = peer_auth("app", "ns", "{mtls: {mode: DISABLE}}");
    let port = peer_auth(
        "app",
        "db",
        "{selector: {matchLabels: {app: db}}, mtls: {mode: STRICT}, portLevelMtls: {'5432': {mode: PERMISSIVE}}}",
    );
    let found = run(&format!("{ns}{apps}{mesh}{disabled}{port}"));
    assert_eq!(
        rules(&found),
        vec![
            (Rule::MeshMtlsPermissive, "db"),
            (Rule::MeshMtlsDisabled, "web")
        ]
    );
    assert!(found[0].2.contains("on port 5432"), "{}", found[0].2);
    assert_eq!(found[1].3, Severity::High);
}

#[test]
fn workloads_outside_the_mesh_are_reported_unless_sidecar_or_ambient() {
    let mesh = peer_auth("istio-system", "default", "{mtls: {mode: STRICT}}");
    let docs = format!(
        "{}{}{}{}{}{}{}{}",
        namespace("plain", "{}"),
        deployment("plain", "outside", "{app: outside}"),
        deployment(
            "plain",
            "opted-in",
            "{app: opted-in, sidecar.istio.io/inject: 'true'}"
        ),
        namespace("amb", "{istio.io/dataplane-mode: ambient}"),
        deployment("amb", "ambient", "{app: ambient}"),
        namespace("inj", "{istio.io/rev: stable}"),
        deployment(
            "inj",
            "opted-out",
            "{app: opted-out, sidecar.istio.io/inject: 'false'}"
        ),
        mesh,
    );
    assert_eq!(
        rules(&run(&docs)),
        vec![
            (Rule::MeshNoSidecar, "opted-out"),
            (Rule::MeshNoSidecar, "outside")
        ]
    );
    // A namespace whose object was not seen: sidecars unknown, only the mode is judged.
    let unknown = format!("{}{mesh}", deployment("unseen", "x", "{app: x}"));
    assert_eq!(run(&unknown), vec![]);
}

#[test]
fn destination_rules_sending_plain_text_or_one_way_tls_to_in_mesh_hosts() {
    let dr = |name: &str, host: &str, policy: &str| {
        format!("apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: app}}\nspec: {{host: {host}, trafficPolicy: {policy}}}\n---\n")
    };
    let docs = format!(
        "{}{}{}{}",
        dr(
            "plain",
            "db.app.svc.cluster.local",
            "{tls: {mode: DISABLE}}"
        ),
        dr(
            "one-way",
            "db",
            "{portLevelSettings: [{port: {number: 5432}, tls: {mode: SIMPLE}}]}"
        ),
        dr("mutual", "db", "{tls: {mode: ISTIO_MUTUAL}}"),
        dr("external", "api.example.com", "{tls: {mode: SIMPLE}}"),
    );
    let found = run(&docs);
    assert_eq!(
        rules(&found),
        vec![
            (Rule::MeshClientTls, "one-way"),
            (Rule::MeshClientTls, "plain")
        ]
    );
    assert_eq!(found[0].3, Severity::Medium);
    assert!(found[0].2.contains("port 5432"), "{}", found[0].2);
    assert_eq!(found[1].3, Severity::High);
}

#[test]
fn the_operator_says_istio_is_installed() {
    let b = baseline(BASELINE);
    let mut auditor = Auditor::new(&b);
    auditor.set_mesh_present();
    let docs = format!(
        "{}{}",
        namespace("app", "{}"),
        deployment("app", "web", "{app: web}")
    );
    feed(&mut auditor, &docs);
    let rules: Vec<Rule> = auditor.finish().findings.iter().map(|f| f.rule).collect();
    assert!(rules.contains(&Rule::MeshNoSidecar), "{rules:?}");
}
