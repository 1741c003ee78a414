use crate::policy::audit::Auditor;
use crate::policy::baseline::CompiledBaseline;
use crate::policy::rules::Rule;
use crate::policy::testkit::{baseline, feed};

const REQUIREMENTS: &str = r#"
podSecurity:
  level: privileged
  readOnlyRootFilesystem: false
  automountServiceAccountToken: true
  forbidDefaultServiceAccount: false
  profiles:
  - name: payments
    workloadSelector: {matchLabels: {app: pay}}
    seccomp: {type: Localhost, localhostProfiles: [operator/pay.json]}
    appArmor: {type: RuntimeDefault}
    seLinux: {types: [pay_t]}
network: {defaultDeny: []}
rbac: {audit: false}
"#;

/// (rule, field) of every finding, sorted.
fn findings(b: &CompiledBaseline, docs: &str) -> Vec<(Rule, String)> {
    let mut auditor = Auditor::new(b);
    feed(&mut auditor, docs);
    let mut out: Vec<(Rule, String)> = auditor
        .finish()
        .findings
        .iter()
        .map(|f| (f.rule, f.field.to_string()))
        .collect();
    out.sort();
    out
}

fn pod(labels: &str, pod_sc: &str, containers: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: app, labels: {labels}}}\nspec:\n  securityContext: {pod_sc}\n  containers: {containers}\n"
    )
}

fn f(rule: Rule, field: &str) -> (Rule, String) {
    (rule, field.to_string())
}

#[test]
fn a_selected_workload_meets_every_requirement_through_inheritance() {
    let b = baseline(REQUIREMENTS);
    let ok = pod(
        "{app: pay}",
        "{seccompProfile: {type: Localhost, localhostProfile: operator/pay.json}, appArmorProfile: {type: RuntimeDefault}, seLinuxOptions: {type: pay_t}}",
        "[{name: a, image: a}, {name: b, image: b}]",
    );
    assert_eq!(findings(&b, &ok), vec![]);
    // Unselected workloads are not held to it.
    assert_eq!(
        findings(&b, &pod("{app: web}", "{}", "[{name: a, image: a}]")),
        vec![]
    );
}

#[test]
fn each_missing_or_wrong_profile_is_a_finding_at_the_field_to_change() {
    let b = baseline(REQUIREMENTS);
    // Nothing set: the container's own fields are where to set them.
    assert_eq!(
        findings(&b, &pod("{app: pay}", "{}", "[{name: a, image: a}]")),
        vec![
            f(
                Rule::ProfileSeccomp,
                "spec.containers[0].securityContext.seccompProfile"
            ),
            f(
                Rule::ProfileAppArmor,
                "spec.containers[0].securityContext.appArmorProfile"
            ),
            f(
                Rule::ProfileSeLinux,
                "spec.containers[0].securityContext.seLinuxOptions.type"
            ),
        ]
    );
    // Wrong at pod level: one finding at the pod's field, not one per container.
    let wrong_pod = pod(
        "{app: pay}",
        "{seccompProfile: {type: RuntimeDefault}, appArmorProfile: {type: Unconfined}, seLinuxOptions: {type: container_t}}",
        "[{name: a, image: a}, {name: b, image: b}]",
    );
    assert_eq!(
        findings(&b, &wrong_pod)
            .into_iter()
            .filter(|(r, _)| r.id().starts_with("profile."))
            .collect::<Vec<_>>(),
        vec![
            f(Rule::ProfileSeccomp, "spec.securityContext.seccompProfile"),
            f(
                Rule::ProfileAppArmor,
                "spec.securityContext.appArmorProfile"
            ),
            f(
                Rule::ProfileSeLinux,
                "spec.securityContext.seLinuxOptions.type"
            ),
        ]
    );
    // A Localhost profile that is not an accepted one; a container overriding a good pod value.
    let overridden = pod(
        "{app: pay}",
        "{seccompProfile: {type: Localhost, localhostProfile: operator/pay.json}, appArmorProfile: {type: RuntimeDefault}, seLinuxOptions: {type: pay_t}}",
        "[{name: a, image: a, securityContext: {seccompProfile: {type: Localhost, localhostProfile: other.json}}}, {name: b, image: b, securityContext: {seLinuxOptions: {type: spc_t}}}]",
    );
    assert_eq!(
        findings(&b, &overridden),
        vec![
            f(
                Rule::ProfileSeccomp,
                "spec.containers[0].securityContext.seccompProfile"
            ),
            f(
                Rule::ProfileSeLinux,
                "spec.containers[1].securityContext.seLinuxOptions.type"
            ),
        ]
    );
}

#[test]
fn app_armor_counts_the_field_then_the_legacy_annotation_then_the_pod() {
    let spec = r#"
podSecurity:
  level: privileged
  readOnlyRootFilesystem: false
  automountServiceAccountToken: true
  forbidDefaultServiceAccount: false
  profiles:
  - {name: strict, workloadSelector: {}, appArmor: {type: Localhost}}
network: {defaultDeny: []}
rbac: {audit: false}
"#;
    let b = baseline(spec);
    let doc = |annotation: &str, pod_sc: &str, ctr_sc: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: d, namespace: app}}\nspec:\n  selector: {{matchLabels: {{app: d}}}}\n  template:\n    metadata: {{labels: {{app: d}}, annotations: {{{annotation}}}}}\n    spec:\n      securityContext: {pod_sc}\n      containers: [{{name: app, image: a, securityContext: {ctr_sc}}}]\n"
        )
    };
    let annotation = "container.apparmor.security.beta.kubernetes.io/app: localhost/app-profile";
    // The annotation satisfies it, and beats a weaker pod value.
    assert_eq!(
        findings(
            &b,
            &doc(
                annotation,
                "{appArmorProfile: {type: RuntimeDefault}}",
                "{}"
            )
        ),
        vec![]
    );
    // The container's field beats the annotation.
    assert_eq!(
        findings(
            &b,
            &doc(
                annotation,
                "{}",
                "{appArmorProfile: {type: RuntimeDefault}}"
            )
        ),
        vec![f(
            Rule::ProfileAppArmor,
            "spec.template.spec.containers[0].securityContext.appArmorProfile"
        )]
    );
    // An annotation saying runtime/default is reported at the annotation.
    let weak = "container.apparmor.security.beta.kubernetes.io/app: runtime/default";
    assert_eq!(
        findings(&b, &doc(weak, "{}", "{}")),
        vec![f(
            Rule::ProfileAppArmor,
            "spec.template.metadata.annotations['container.apparmor.security.beta.kubernetes.io/app']"
        )]
    );
    // Windows pods have no AppArmor: not held to it.
    let windows =
        doc("", "{}", "{}").replace("      securityContext: {}\n", "      os: {name: windows}\n");
    assert_eq!(findings(&b, &windows), vec![]);
}

#[test]
fn runtime_default_accepts_a_listed_localhost_profile_only() {
    let spec = REQUIREMENTS.replace(
        "appArmor: {type: RuntimeDefault}",
        "appArmor: {type: RuntimeDefault, localhostProfiles: [pay]}",
    );
    let b = baseline(&spec);
    let with = |apparmor: &str| {
        pod(
            "{app: pay}",
            &format!("{{seccompProfile: {{type: Localhost, localhostProfile: operator/pay.json}}, appArmorProfile: {apparmor}, seLinuxOptions: {{type: pay_t}}}}"),
            "[{name: a, image: a}]",
        )
    };
    assert_eq!(
        findings(&b, &with("{type: Localhost, localhostProfile: pay}")),
        vec![]
    );
    assert_eq!(
        findings(&b, &with("{type: Localhost, localhostProfile: other}")),
        vec![f(
            Rule::ProfileAppArmor,
            "spec.securityContext.appArmorProfile"
        )]
    );
}

const PERMISSIVE: &str = "podSecurity: {level: privileged, readOnlyRootFilesystem: false, automountServiceAccountToken: true, forbidDefaultServiceAccount: false}\nnetwork: {defaultDeny: []}\nrbac: {audit: false}\n";

fn seccomp_profile(name: &str, status: Option<&str>) -> String {
    let status = status.map_or(String::new(), |s| {
        format!("status: {{localhostProfile: {s}}}\n")
    });
    format!("apiVersion: security-profiles-operator.x-k8s.io/v1beta1\nkind: SeccompProfile\nmetadata: {{name: {name}}}\nspec: {{defaultAction: SCMP_ACT_ERRNO}}\n{status}")
}

#[test]
fn localhost_profiles_missing_from_the_security_profiles_operator_are_reported() {
    let b = baseline(PERMISSIVE);
    let user = pod(
        "{app: x}",
        "{seccompProfile: {type: Localhost, localhostProfile: operator/gone.json}}",
        "[{name: a, image: a, securityContext: {appArmorProfile: {type: Localhost, localhostProfile: missing}}}, {name: b, image: b, securityContext: {seccompProfile: {type: Localhost, localhostProfile: node-local/x.json}}}]",
    );
    // No profile kind known: nothing can be said.
    assert_eq!(findings(&b, &user), vec![]);
    // SeccompProfiles known (by derived name and by reported status), AppArmorProfiles not.
    let docs = format!(
        "{}---\n{}---\n{user}",
        seccomp_profile("present", None),
        seccomp_profile("other", Some("operator/elsewhere.json"))
    );
    assert_eq!(
        findings(&b, &docs),
        vec![f(
            Rule::SeccompProfileNotFound,
            "spec.securityContext.seccompProfile.localhostProfile"
        )]
    );
    let found = docs.replace("operator/gone.json", "operator/present.json");
    assert_eq!(findings(&b, &found), vec![]);
    let by_status = docs.replace("operator/gone.json", "operator/elsewhere.json");
    assert_eq!(findings(&b, &by_status), vec![]);
    // An AppArmorProfile of another name makes the kind known: the reference is reported.
    let apparmor = "apiVersion: security-profiles-operator.x-k8s.io/v1alpha1\nkind: AppArmorProfile\nmetadata: {name: present}\n---\n";
    assert_eq!(
        findings(&b, &format!("{apparmor}{found}")),
        vec![f(
            Rule::AppArmorProfileNotFound,
            "spec.containers[0].securityContext.appArmorProfile.localhostProfile"
        )]
    );
    // Exempted like any rule.
    let exempt = format!("{PERMISSIVE}exemptions: [{{rules: [profile.apparmor-not-found], reason: loaded by the node image}}]\n");
    assert_eq!(
        findings(&baseline(&exempt), &format!("{apparmor}{found}")),
        vec![]
    );
}

#[test]
fn the_operator_tells_which_profile_kinds_are_served() {
    let b = baseline(PERMISSIVE);
    let user = pod(
        "{app: x}",
        "{seccompProfile: {type: Localhost, localhostProfile: operator/gone.json}}",
        "[{name: a, image: a}]",
    );
    let mut auditor = Auditor::new(&b);
    // The CRD is installed but holds no profile.
    auditor.add_profiles(super::ProfileKind::Seccomp, []);
    feed(&mut auditor, &user);
    let report = auditor.finish();
    let rules: Vec<Rule> = report.findings.iter().map(|f| f.rule).collect();
    assert_eq!(rules, vec![Rule::SeccompProfileNotFound]);
    assert!(report.findings[0]
        .message
        .contains("\"operator/gone.json\""));
}

#[test]
fn seccomp_profile_names_follow_the_operators_layout() {
    use super::seccomp_localhost_name as name;
    assert_eq!(name("pay", None, None), "operator/pay.json");
    assert_eq!(name("pay.json", None, None), "operator/pay.json");
    assert_eq!(name("pay", Some("team"), None), "operator/team/pay.json");
    assert_eq!(
        name("pay", None, Some("operator/x.json")),
        "operator/x.json"
    );
    assert_eq!(name("pay", None, Some("")), "operator/pay.json");
}
