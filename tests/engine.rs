//! The engine end to end through its public API: hardening, scope, exemptions, joins, desired objects.

use k8s_openapi::jiff::Timestamp;
use palisade::crd::SecurityBaselineSpec;
use palisade::manifest;
use palisade::policy::audit::{AuditReport, Auditor};
use palisade::policy::baseline::{BaselineError, CompiledBaseline};
use palisade::policy::desired;
use palisade::policy::rules::Rule;

fn now() -> Timestamp {
    "2027-01-01T00:00:00Z".parse().unwrap()
}

fn baseline(spec_yaml: &str) -> CompiledBaseline {
    let spec: SecurityBaselineSpec = serde_yaml_ng::from_str(spec_yaml).unwrap();
    CompiledBaseline::compile("test", &spec, now()).unwrap()
}

fn audit(b: &CompiledBaseline, manifests: &str) -> AuditReport {
    let mut auditor = Auditor::new(b);
    let mut diags = vec![];
    manifest::load_str(
        "test.yaml",
        manifests,
        &mut |o, s| auditor.add(o, Some(&s)),
        &mut diags,
    );
    assert!(diags.is_empty(), "{diags:?}");
    auditor.finish()
}

fn rules_for(r: &AuditReport, name: &str) -> Vec<(Rule, String)> {
    r.findings
        .iter()
        .filter(|f| f.object.name == name)
        .map(|f| (f.rule, f.field.to_string()))
        .collect()
}

const HARDENED_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME, namespace: app, labels: {app: NAME}}
spec:
  serviceAccountName: worker
  automountServiceAccountToken: false
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: main
    image: main:1
    securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
"#;

fn pod(name: &str) -> String {
    HARDENED_POD.replace("NAME", name)
}

const NO_NETWORK: &str = "network: {defaultDeny: []}\n";

#[test]
fn hardened_pod_has_no_findings() {
    let r = audit(&baseline(NO_NETWORK), &pod("good"));
    assert!(r.findings.is_empty(), "{:?}", r.findings);
}

#[test]
fn writable_root_fs_is_reported_per_container_including_init_and_ephemeral() {
    let m = pod("w").replace(
        "  containers:",
        "  initContainers:\n  - {name: init, image: i, securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}}\n  ephemeralContainers:\n  - {name: dbg, image: d, securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: false, capabilities: {drop: [ALL]}}}\n  containers:",
    );
    let r = audit(&baseline(NO_NETWORK), &m);
    let ro: Vec<String> = rules_for(&r, "w")
        .into_iter()
        .filter(|(rule, _)| *rule == Rule::ReadOnlyRootFs)
        .map(|(_, f)| f)
        .collect();
    assert_eq!(
        ro,
        [
            "spec.ephemeralContainers[0].securityContext.readOnlyRootFilesystem",
            "spec.initContainers[0].securityContext.readOnlyRootFilesystem"
        ]
    );
    // Switched off in the baseline: nothing.
    let off =
        baseline("podSecurity: {readOnlyRootFilesystem: false}\nnetwork: {defaultDeny: []}\n");
    assert!(audit(&off, &m)
        .findings
        .iter()
        .all(|f| f.rule != Rule::ReadOnlyRootFs));
}

#[test]
fn token_automount_is_decided_by_pod_then_service_account() {
    let silent = pod("silent").replace("  automountServiceAccountToken: false\n", "");
    let b = baseline(NO_NETWORK);
    // The pod is silent and its ServiceAccount too: the token is mounted.
    let r = audit(&b, &silent);
    assert_eq!(
        rules_for(&r, "silent"),
        [(
            Rule::AutomountToken,
            "spec.automountServiceAccountToken".to_string()
        )]
    );
    // The ServiceAccount (even when it comes after the pod) disables automount: fine.
    let sa = "---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: worker, namespace: app}\nautomountServiceAccountToken: false\n";
    assert!(audit(&b, &format!("{silent}{sa}")).findings.is_empty());
    // A ServiceAccount of the same name in another namespace does not count.
    let other = sa.replace("namespace: app", "namespace: other");
    assert_eq!(audit(&b, &format!("{silent}{other}")).findings.len(), 1);
    // The pod explicitly opting in is reported, unless the baseline declares the account.
    let opt_in = pod("optin").replace(
        "automountServiceAccountToken: false",
        "automountServiceAccountToken: true",
    );
    assert_eq!(audit(&b, &opt_in).findings.len(), 1);
    let declared = baseline("network: {defaultDeny: []}\nrbac: {serviceAccounts: [{name: worker, rules: [{apiGroups: [''], resources: [configmaps], verbs: [get]}]}]}\n");
    assert!(audit(&declared, &opt_in).findings.is_empty());
}

#[test]
fn default_service_account_and_sandbox() {
    let b = baseline("network: {defaultDeny: []}\npodSecurity: {sandbox: {workloadSelector: {matchLabels: {trust: untrusted}}, runtimeClassNames: [gvisor, kata]}}\n");
    let m = pod("u")
        .replace("labels: {app: u}", "labels: {app: u, trust: untrusted}")
        .replace("  serviceAccountName: worker\n", "");
    let r = audit(&b, &m);
    let rules: Vec<Rule> = rules_for(&r, "u").into_iter().map(|(r, _)| r).collect();
    assert_eq!(rules, [Rule::SandboxRuntime, Rule::DefaultServiceAccount]);
    let sandboxed = m.replace(
        "spec:\n",
        "spec:\n  runtimeClassName: kata\n  serviceAccountName: worker\n",
    );
    assert!(
        audit(&b, &sandboxed).findings.is_empty(),
        "{:?}",
        audit(&b, &sandboxed).findings
    );
}

#[test]
fn findings_point_at_the_owner_not_each_replica() {
    let owned = pod("web-abc12").replace(
        "metadata: {name: web-abc12, namespace: app, labels: {app: web-abc12}}",
        "metadata:\n  name: web-abc12\n  namespace: app\n  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web, uid: u1, controller: true}]",
    ).replace("allowPrivilegeEscalation: false", "privileged: true");
    assert!(audit(&baseline(NO_NETWORK), &owned).findings.is_empty());
}

#[test]
fn namespace_scope_follows_the_selector_and_exclusions() {
    let b = baseline("namespaceSelector: {matchLabels: {team: a}}\nexcludeNamespaces: [a-skip]\n");
    let ns = |name: &str, team: &str| {
        format!("---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {{team: {team}}}}}\n")
    };
    let m = format!(
        "{}{}{}---{}",
        ns("a1", "a"),
        ns("a-skip", "a"),
        ns("b1", "b"),
        pod("p")
            .replace("namespace: app", "namespace: b1")
            .replace("allowPrivilegeEscalation: false", "privileged: true")
    );
    let r = audit(&b, &m);
    assert_eq!(r.namespaces, ["a1"]);
    let objects: Vec<String> = r.findings.iter().map(|f| f.object.to_string()).collect();
    assert_eq!(
        objects,
        ["Namespace/a1"],
        "only a1 lacks default deny; b1's pod is out of scope"
    );
    // Selecting by name works without a Namespace object, via kubernetes.io/metadata.name.
    let by_name =
        baseline("namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: app}}\n");
    assert_eq!(audit(&by_name, &pod("x")).namespaces, ["app"]);
}

#[test]
fn default_deny_is_recognised_per_direction() {
    let b = baseline("");
    let ingress_only = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: d, namespace: app}\nspec: {podSelector: {}}\n";
    let r = audit(&b, &format!("{}---\n{ingress_only}", pod("p")));
    let f: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.rule == Rule::NoDefaultDeny)
        .collect();
    assert_eq!(f.len(), 1);
    assert!(f[0].message.contains("for Egress"), "{}", f[0].message);
}

#[test]
fn exemptions_match_rule_namespace_names_and_labels_until_they_expire() {
    let spec = |expires: &str| {
        format!("network: {{defaultDeny: []}}\nexemptions:\n- rules: [pss.privileged]\n  namespaces: [app]\n  workloadSelector: {{matchLabels: {{app: legacy}}}}\n  reason: vendor needs it, SEC-1\n  expires: \"{expires}\"\n")
    };
    let legacy = pod("legacy").replace(
        "allowPrivilegeEscalation: false",
        "allowPrivilegeEscalation: false, privileged: true",
    );
    let other = legacy.replace("legacy", "other");
    let valid = baseline(&spec("2028-01-01T00:00:00Z"));
    let r = audit(&valid, &format!("{legacy}---{other}"));
    assert!(rules_for(&r, "legacy").is_empty());
    assert_eq!(
        rules_for(&r, "other").len(),
        1,
        "labels differ: not exempted"
    );
    assert_eq!(r.exempted, 1);
    let expired = baseline(&spec("2026-06-01T00:00:00Z"));
    let r = audit(&expired, &legacy);
    assert_eq!(rules_for(&r, "legacy").len(), 1);
    assert_eq!(
        rules_for(&r, "test"),
        [(
            Rule::ExemptionExpired,
            "spec.exemptions[0].expires".to_string()
        )]
    );
    assert_eq!(expired.next_expiry(now()), None);
    assert_eq!(
        valid.next_expiry(now()),
        Some("2028-01-01T00:00:00Z".parse().unwrap())
    );
}

#[test]
fn invalid_baselines_are_rejected_with_the_field() {
    let spec = |y: &str| serde_yaml_ng::from_str::<SecurityBaselineSpec>(y).unwrap();
    let err = |y: &str| CompiledBaseline::compile("b", &spec(y), now()).unwrap_err();
    assert!(matches!(
        err("podSecurity: {version: v1.x}"),
        BaselineError::Version(_)
    ));
    assert_eq!(
        err("exemptions: [{rules: [pss.privileged], reason: '  '}]"),
        BaselineError::MissingReason(0)
    );
    assert_eq!(
        err("network: {allow: [{name: x, podSelector: {}}]}"),
        BaselineError::AllowWithoutPeers(0)
    );
    let sel = err("namespaceSelector: {matchExpressions: [{key: a, operator: Has}]}").to_string();
    assert!(
        sel.starts_with("spec.namespaceSelector.matchExpressions[0]"),
        "{sel}"
    );
    assert!(serde_yaml_ng::from_str::<SecurityBaselineSpec>(
        "exemptions: [{rules: [pss.nope], reason: r}]"
    )
    .is_err());
}

#[test]
fn desired_objects_follow_the_baseline_and_are_deterministic() {
    let b = baseline(
        r#"
network:
  defaultDeny: [Ingress]
  allowSameNamespace: true
  allow:
  - name: web
    podSelector: {matchLabels: {app: web}}
    from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress}}}]
    ports: [{port: 8080}]
podSecurity: {level: baseline, version: v1.30}
"#,
    );
    let a = desired::namespace_objects("shop", &Default::default(), &b, None);
    assert_eq!(
        a,
        desired::namespace_objects("shop", &Default::default(), &b, None)
    );
    let names: Vec<&str> = a
        .network_policies
        .iter()
        .map(|p| p.metadata.name.as_deref().unwrap())
        .collect();
    // Egress is not denied, so no DNS allowance is needed.
    assert_eq!(
        names,
        [
            "palisade-default-deny",
            "palisade-allow-same-namespace",
            "palisade-allow-web"
        ]
    );
    let deny = a.network_policies[0].spec.as_ref().unwrap();
    assert_eq!(
        deny.policy_types.as_deref(),
        Some(&["Ingress".to_string()][..])
    );
    let labels = a.network_policies[2].metadata.labels.as_ref().unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "palisade");
    assert_eq!(labels["palisade.dev/baseline"], "test");
    assert_eq!(
        a.namespace_labels["pod-security.kubernetes.io/enforce"],
        "baseline"
    );
    assert_eq!(
        a.namespace_labels["pod-security.kubernetes.io/enforce-version"],
        "v1.30"
    );
    assert!(a.roles.is_empty());
    let c = desired::cluster_objects(&b, None);
    assert_eq!(c.admission_policies.len(), 1);
    let exprs: Vec<String> = c.admission_policies[0]
        .spec
        .as_ref()
        .unwrap()
        .validations
        .as_ref()
        .unwrap()
        .iter()
        .map(|v| v.expression.clone())
        .collect();
    assert_eq!(exprs.len(), 3, "read-only root fs, automount, default SA");
}

#[test]
fn generated_objects_satisfy_the_network_audit() {
    // What Enforce mode generates must itself be compliant: default deny present, nothing re-opened.
    let b = baseline("network: {allowSameNamespace: true}\n");
    let objs = desired::namespace_objects("app", &Default::default(), &b, None);
    let mut auditor = Auditor::new(&b);
    for np in objs.network_policies {
        auditor.add(
            palisade::policy::object::Object::NetworkPolicy(std::sync::Arc::new(np)),
            None,
        );
    }
    let r = auditor.finish();
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(r.namespaces, ["app"]);
}

// Accepted-risk annotations (src/policy/accepted.rs).

const RISKY_CLUSTER_ROLE: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: operator
  annotations:
    accepted-risk.palisade.dev/rbac.escalate-bind-impersonate: "Generated Roles grant what baselines declare."
    accepted-risk.palisade.dev/rbac.webhook-config: "needed"
    accepted-risk.palisade.dev/rbac.no-such-rule: "a reason that is long enough"
    example.com/owner: platform
rules:
  - apiGroups: [rbac.authorization.k8s.io]
    resources: [roles]
    verbs: [escalate, bind]
  - apiGroups: [admissionregistration.k8s.io]
    resources: [validatingadmissionpolicies]
    verbs: [create, patch, delete]
  - apiGroups: [""]
    resources: [secrets]
    verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: operator
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: operator}
subjects:
  - {kind: ServiceAccount, name: operator, namespace: ops}
"#;

fn annotation_field(rule: &str) -> String {
    format!("metadata.annotations[\"accepted-risk.palisade.dev/{rule}\"]")
}

#[test]
fn accepted_risk_annotations_on_a_cluster_role() {
    let r = audit(&baseline("{}"), RISKY_CLUSTER_ROLE);
    // Accepted with its reason: not a violation.
    assert_eq!(r.accepted.len(), 1, "{:?}", r.accepted);
    let a = &r.accepted[0];
    assert_eq!(a.finding.rule, Rule::EscalateBindImpersonate);
    assert_eq!(a.finding.object.to_string(), "ClusterRole/operator");
    assert_eq!(
        a.accepted_risk.reason,
        "Generated Roles grant what baselines declare."
    );
    assert_eq!(
        a.accepted_risk.annotation,
        "accepted-risk.palisade.dev/rbac.escalate-bind-impersonate"
    );
    assert_eq!(a.finding.source.as_ref().unwrap().document, 0);
    let got = rules_for(&r, "operator");
    // Too short a reason: the annotation is a finding and the rule's finding stays.
    assert!(got.contains(&(Rule::WebhookConfig, got_field(&got, Rule::WebhookConfig))));
    assert!(got.contains(&(
        Rule::AcceptedRiskInvalid,
        annotation_field("rbac.webhook-config")
    )));
    // An unknown rule id is reported on its key.
    assert!(got.contains(&(
        Rule::AcceptedRiskInvalid,
        annotation_field("rbac.no-such-rule")
    )));
    let unknown = r
        .findings
        .iter()
        .find(|f| *f.field == *annotation_field("rbac.no-such-rule"))
        .unwrap();
    assert!(
        unknown.message.contains("`rbac.no-such-rule`"),
        "{unknown:?}"
    );
    assert_eq!(unknown.object.to_string(), "ClusterRole/operator");
    // Other rules on the same object are still reported.
    assert!(
        got.iter().any(|(rule, _)| *rule == Rule::SecretsAccess),
        "{got:?}"
    );
    assert!(!got
        .iter()
        .any(|(rule, _)| *rule == Rule::EscalateBindImpersonate));
    assert_eq!(r.exempted, 0);
}

fn got_field(got: &[(Rule, String)], rule: Rule) -> String {
    got.iter()
        .find(|(r, _)| *r == rule)
        .map(|(_, f)| f.clone())
        .unwrap_or_else(|| panic!("no {rule} in {got:?}"))
}

#[test]
fn without_the_annotation_the_finding_is_a_violation() {
    let plain = RISKY_CLUSTER_ROLE.replace(
        "    accepted-risk.palisade.dev/rbac.escalate-bind-impersonate: \"Generated Roles grant what baselines declare.\"\n",
        "",
    );
    let r = audit(&baseline("{}"), &plain);
    assert!(r.accepted.is_empty());
    assert!(rules_for(&r, "operator")
        .iter()
        .any(|(rule, _)| *rule == Rule::EscalateBindImpersonate));
}

#[test]
fn accepted_risk_annotations_on_a_cluster_role_binding() {
    let r = audit(
        &baseline("{}"),
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: break-glass
  annotations:
    accepted-risk.palisade.dev/rbac.cluster-admin-binding: "Break-glass account, audited by SOC."
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects:
  - {kind: User, name: emergency}
"#,
    );
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(r.accepted.len(), 1);
    assert_eq!(r.accepted[0].finding.rule, Rule::ClusterAdminBinding);
}

#[test]
fn accepted_risk_annotations_on_namespaced_objects_and_namespaces_are_ignored() {
    let b = baseline("excludeNamespaces: [kube-system]\nnetwork: {defaultDeny: []}");
    let r = audit(
        &b,
        r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  annotations:
    accepted-risk.palisade.dev/network.no-default-deny: "tenant says so, long enough"
---
apiVersion: v1
kind: Namespace
metadata:
  name: kube-system
  annotations:
    accepted-risk.palisade.dev/network.no-default-deny: "not covered by the baseline"
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: reader
  namespace: shop
  annotations:
    accepted-risk.palisade.dev/rbac.secrets-access: "the tenant wants to read secrets"
rules:
  - {apiGroups: [""], resources: [secrets], verbs: [get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
subjects:
  - {kind: ServiceAccount, name: api, namespace: shop}
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  annotations:
    accepted-risk.palisade.dev/pss.privileged: "the tenant wants privileged pods"
spec:
  containers:
    - name: c
      image: x
      securityContext: {privileged: true}
"#,
    );
    assert!(r.accepted.is_empty(), "{:?}", r.accepted);
    let ignored: Vec<String> = r
        .findings
        .iter()
        .filter(|f| f.rule == Rule::AcceptedRiskInvalid)
        .map(|f| f.object.to_string())
        .collect();
    assert_eq!(
        ignored,
        ["Namespace/shop", "Pod/shop/web", "Role/shop/reader"],
        "{:?}",
        r.findings
    );
    let msg = &r
        .findings
        .iter()
        .find(|f| f.rule == Rule::AcceptedRiskInvalid)
        .unwrap()
        .message;
    assert!(msg.contains("ignored on a Namespace"), "{msg}");
    // The findings the annotations tried to accept are still reported.
    assert!(rules_for(&r, "reader")
        .iter()
        .any(|(rule, _)| *rule == Rule::SecretsAccess));
    assert!(rules_for(&r, "web")
        .iter()
        .any(|(rule, _)| *rule == Rule::Privileged));
}

/// Default deny is asked of namespaces whose traffic the input describes (a Namespace, a
/// workload, a NetworkPolicy), not of one where only RBAC objects are placed.
#[test]
fn only_namespaces_with_network_content_can_lack_default_deny() {
    let b = baseline("network: {defaultDeny: [Ingress]}");
    let r = audit(
        &b,
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader, namespace: rbac-only}
rules: []
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: app}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: web}]}
"#,
    );
    let flagged: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f.rule == Rule::NoDefaultDeny)
        .map(|f| f.object.name.as_str())
        .collect();
    assert_eq!(flagged, ["app"]);
}

const WEB_AND_LB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: app}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: web, ports: [{containerPort: 80}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: lb, namespace: app}
spec:
  selector: {matchLabels: {app: lb}}
  template:
    metadata: {labels: {app: lb}}
    spec: {containers: [{name: lb, image: lb}]}
"#;

/// A rule that re-opens a default-denied workload to every pod of the cluster is named, with
/// the ports it opens; a namespace without default deny is left to network.no-default-deny.
#[test]
fn a_default_deny_hole_admitting_every_pod_is_reported_on_the_workload() {
    let b = baseline("network: {defaultDeny: [Ingress]}");
    let policies = r#"
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: app}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-anywhere, namespace: app}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{namespaceSelector: {}}], ports: [{port: 80}]}, {from: [{podSelector: {matchLabels: {app: lb}}}]}]
"#;
    let r = audit(&b, &format!("{WEB_AND_LB}{policies}"));
    let holes: Vec<(&str, &str)> = r
        .findings
        .iter()
        .filter(|f| f.rule == Rule::OpenToAllPods)
        .map(|f| (f.object.name.as_str(), &*f.message))
        .collect();
    assert_eq!(holes.len(), 1, "{holes:?}");
    assert_eq!(holes[0].0, "web");
    assert!(
        holes[0]
            .1
            .contains("on 80/TCP through NetworkPolicy app/web-from-anywhere spec.ingress[0]"),
        "{}",
        holes[0].1
    );
    let open = audit(&b, WEB_AND_LB);
    assert!(!open.findings.iter().any(|f| f.rule == Rule::OpenToAllPods));
    assert!(open.findings.iter().any(|f| f.rule == Rule::NoDefaultDeny));
}

/// Declared allow rules whose pods or peers select nothing allow nothing: reported on the
/// baseline, field by field; silent without workloads to judge against.
#[test]
fn declared_allow_rules_that_select_nothing_are_reported() {
    let b = baseline(
        r#"
network:
  allow:
  - {name: ok, podSelector: {matchLabels: {app: web}}, from: [{podSelector: {matchLabels: {app: lb}}}]}
  - {name: no-pods, podSelector: {matchLabels: {app: db}}, from: [{podSelector: {matchLabels: {app: lb}}}]}
  - {name: no-peer, podSelector: {matchLabels: {app: web}}, from: [{podSelector: {matchLabels: {app: ghost}}}, {ipBlock: {cidr: 10.0.0.0/8}}]}
"#,
    );
    let r = audit(&b, WEB_AND_LB);
    let fields: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f.rule == Rule::AllowSelectsNothing)
        .map(|f| &*f.field)
        .collect();
    assert_eq!(
        fields,
        [
            "spec.network.allow[1].podSelector",
            "spec.network.allow[2].from[0]"
        ]
    );
    let none = audit(
        &b,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: app}\n",
    );
    assert!(!none
        .findings
        .iter()
        .any(|f| f.rule == Rule::AllowSelectsNothing));
}

/// With the API server's address known, a workload that can reach it although its account is
/// undeclared (or mounts no token) is reported; the declared, token-mounting account is not.
#[test]
fn api_reachable_without_need_follows_accounts_and_policies() {
    let b = baseline(
        r#"
network:
  defaultDeny: [Egress]
  allowAPIServer: {podSelector: {matchLabels: {app: tokenless}}}
rbac: {serviceAccounts: [{name: api, rules: [{apiGroups: [""], resources: [configmaps], verbs: [get]}]}]}
"#,
    );
    let workload = |name: &str, ns: &str, sa: &str, token: bool| {
        format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{serviceAccountName: {sa}, automountServiceAccountToken: {token}, containers: [{{name: c, image: c}}]}}\n"
        )
    };
    let manifests = [
        workload("ctl", "guarded", "api", true),
        workload("tokenless", "guarded", "api", false),
        workload("web", "guarded", "default", false),
        workload("open", "flat", "default", false),
    ]
    .concat();
    let api_server = [("10.0.0.1".parse().unwrap(), 6443)];
    // What Palisade generates in `guarded` (default deny egress + API allows), nothing in `flat`.
    let mut workloads = Vec::new();
    let mut diags = vec![];
    manifest::load_str(
        "w.yaml",
        &manifests,
        &mut |o, _| {
            if let palisade::policy::object::Object::Workload(w) = o {
                if w.namespace() == Some("guarded") {
                    workloads.extend(desired::WorkloadPods::of(&w));
                }
            }
        },
        &mut diags,
    );
    let ctx = desired::NamespaceContext {
        api_server: &api_server,
        workloads: &workloads,
        ..Default::default()
    };
    let generated = desired::namespace_objects("guarded", &ctx, &b, None).network_policies;
    let mut auditor = Auditor::new(&b);
    auditor.set_api_server(&api_server);
    manifest::load_str(
        "w.yaml",
        &manifests,
        &mut |o, s| auditor.add(o, Some(&s)),
        &mut diags,
    );
    for np in generated {
        auditor.add(
            palisade::policy::object::Object::NetworkPolicy(std::sync::Arc::new(np)),
            None,
        );
    }
    assert!(diags.is_empty(), "{diags:?}");
    let r = auditor.finish();
    let mut flagged: Vec<(&str, &str)> = r
        .findings
        .iter()
        .filter(|f| f.rule == Rule::ApiReachableWithoutNeed)
        .map(|f| (f.object.name.as_str(), &*f.message))
        .collect();
    flagged.sort();
    let names: Vec<&str> = flagged.iter().map(|f| f.0).collect();
    // ctl: declared and mounting its token; web: default deny cuts it off.
    assert_eq!(names, ["open", "tokenless"], "{flagged:?}");
    assert!(
        flagged[0]
            .1
            .contains("no NetworkPolicy isolates its egress"),
        "{}",
        flagged[0].1
    );
    assert!(flagged[1].1.contains("mount no token"), "{}", flagged[1].1);
    assert!(
        flagged[1].1.contains("palisade-allow-apiserver"),
        "{}",
        flagged[1].1
    );
}

/// Objects whose findings depend on the order they arrive in: workloads before their Namespace,
/// in namespaces never declared or outside the selector, joins made at the end (RBAC, default
/// deny, token automount through a ServiceAccount) and an accepted risk on a ClusterRole.
const ORDER_SENSITIVE: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: early, namespace: late-ns}
spec: {containers: [{name: c, image: i}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: late-ns, labels: {team: shop}}
---
apiVersion: v1
kind: Namespace
metadata: {name: other, labels: {team: other}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: outside, namespace: other}
spec:
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec: {hostPID: true, containers: [{name: c, image: i}]}
---
apiVersion: v1
kind: Pod
metadata: {name: stray, namespace: never-declared}
spec: {containers: [{name: c, image: i, securityContext: {privileged: true}}]}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: quiet, namespace: late-ns}
automountServiceAccountToken: false
---
apiVersion: v1
kind: Pod
metadata: {name: tokenless, namespace: late-ns}
spec: {serviceAccountName: quiet, containers: [{name: c, image: i}]}
---
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: late-ns}
spec: {type: LoadBalancer, ports: [{port: 80}]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader, namespace: late-ns}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader, namespace: late-ns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
subjects: [{kind: ServiceAccount, name: default, namespace: late-ns}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: wide
  annotations: {"accepted-risk.palisade.dev/rbac.wildcard": "the platform team owns it"}
rules: [{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: wide}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: wide}
subjects: [{kind: ServiceAccount, name: default, namespace: late-ns}]
"#;

/// A streamed audit (`--sort none`) reports exactly what the sorted one does, whatever order
/// the documents come in and whichever way the baseline selects namespaces.
#[test]
fn a_streamed_audit_reports_what_the_sorted_one_does_in_any_input_order() {
    let mut documents: Vec<(String, String)> = vec![];
    for file in [
        "config/samples/namespaces.yaml",
        "config/samples/workloads.yaml",
        "config/samples/rbac.yaml",
    ] {
        let text =
            std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        documents.extend(
            text.split("\n---")
                .map(|d| (file.to_string(), d.to_string())),
        );
    }
    documents.extend(
        ORDER_SENSITIVE
            .split("\n---")
            .map(|d| ("order.yaml".to_string(), d.to_string())),
    );
    documents.retain(|(_, d)| d.contains("kind:"));
    let baselines = [
        "{}".to_string(),
        "namespaceSelector: {matchLabels: {team: shop}}\nexcludeNamespaces: [kube-system]".to_string(),
        "namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [other]}]}".to_string(),
        std::fs::read_to_string(format!("{}/config/baseline.yaml", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
            .split("spec:\n")
            .nth(1)
            .unwrap()
            .lines()
            .map(|l| l.strip_prefix("  ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n"),
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for spec in &baselines {
        let b = baseline(spec);
        for round in 0..8 {
            // Fisher-Yates with xorshift: a different order each round, the same on every run.
            for i in (1..documents.len()).rev() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                documents.swap(i, (seed % (i as u64 + 1)) as usize);
            }
            let feed = |auditor: &mut Auditor| {
                auditor.set_baseline_source(palisade::policy::finding::Source {
                    file: "baseline.yaml".into(),
                    document: 0,
                    line: 1,
                });
                let mut diags = vec![];
                for (i, (file, doc)) in documents.iter().enumerate() {
                    let name = format!("{file}#{i}");
                    manifest::load_str(
                        &name,
                        doc,
                        &mut |o, s| auditor.add(o, Some(&s)),
                        &mut diags,
                    );
                }
                assert!(diags.iter().all(|d| d.skipped_kind.is_some()), "{diags:?}");
            };
            let mut sorted = Auditor::new(&b);
            feed(&mut sorted);
            let sorted = sorted.finish();
            let mut streamed_findings = vec![];
            let mut streaming = Auditor::new(&b);
            streaming.stream_to(|f| streamed_findings.push(f.clone()));
            feed(&mut streaming);
            let streamed = streaming.finish();
            let context = format!("baseline {spec:?}, round {round}");
            assert!(streamed.findings.is_empty(), "{context}");
            assert!(sorted.total() > 10, "{context}: the corpus breaks rules");
            assert_eq!(streamed.total(), streamed_findings.len(), "{context}");
            assert_eq!(streamed.by_severity(), sorted.by_severity(), "{context}");
            streamed_findings.sort_unstable_by(|a, b| a.sort_key().cmp(&b.sort_key()));
            assert_eq!(streamed_findings, sorted.findings, "{context}");
            assert_eq!(streamed.accepted, sorted.accepted, "{context}");
            assert_eq!(streamed.exempted, sorted.exempted, "{context}");
            assert_eq!(streamed.namespaces, sorted.namespaces, "{context}");
            // Every finding points at its file, but that of a namespace no document declares.
            let unsourced: Vec<String> = sorted
                .findings
                .iter()
                .filter(|f| f.source.is_none() && f.object.name != "never-declared")
                .map(|f| format!("{} {}", f.rule, f.object))
                .collect();
            assert!(unsourced.is_empty(), "{context}: {unsourced:?}");
        }
    }
}
