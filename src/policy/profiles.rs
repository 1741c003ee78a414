//! Security profiles as layers around the app (`spec.podSecurity.profiles`): the seccomp and
//! AppArmor profile and SELinux type each container really ends up with, judged against what
//! the baseline requires of selected workloads; and the `Localhost` profiles workloads name,
//! for the join with the Security Profiles Operator's SeccompProfiles and AppArmorProfiles.
//!
//! Effective values, as the kubelet resolves them: seccomp and SELinux from the container's
//! `securityContext`, else the pod's; AppArmor from the container's field, else its legacy
//! `container.apparmor.security.beta.kubernetes.io/<name>` annotation, else the pod's field.
//! Windows pods have none of these and are skipped.

use super::baseline::CompiledBaseline;
use super::finding::Violation;
use super::pss::visit::{push_unique, Ctr, Cx};
use super::rules::Rule;
use super::workload::PodTarget;
use crate::crd::{ProfileRequirement, ProfileType, ProfileTypeRequirement};

const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";
/// Where the Security Profiles Operator writes seccomp profiles, below the kubelet's seccomp
/// directory: other Localhost paths are put on nodes by other means and are not judged.
pub const SPO_SECCOMP_PREFIX: &str = "operator/";

/// Seccomp or AppArmor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProfileKind {
    Seccomp,
    AppArmor,
}

impl ProfileKind {
    /// The Security Profiles Operator kind that provides profiles of this kind.
    pub fn of(kind: &str) -> Option<ProfileKind> {
        match kind {
            "SeccompProfile" => Some(ProfileKind::Seccomp),
            "AppArmorProfile" => Some(ProfileKind::AppArmor),
            _ => None,
        }
    }
}

/// A `Localhost` profile a container runs under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalhostRef {
    pub kind: ProfileKind,
    /// The seccomp `localhostProfile` path or the AppArmor profile name.
    pub name: String,
    pub violation: Violation,
}

/// Where a container's effective setting was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin<'a> {
    Container,
    Annotation(&'a str),
    Pod,
}

/// A container's effective seccomp or AppArmor profile.
struct Profile<'a> {
    type_: &'a str,
    localhost: Option<&'a str>,
    origin: Origin<'a>,
}

fn seccomp<'a>(cx: &Cx<'a>, c: &Ctr<'a>) -> Option<Profile<'a>> {
    let own = c.sc.and_then(|sc| sc.seccomp_profile.as_ref());
    let (p, origin) = match own {
        Some(p) => (p, Origin::Container),
        None => (cx.pod_sc()?.seccomp_profile.as_ref()?, Origin::Pod),
    };
    Some(Profile {
        type_: &p.type_,
        localhost: p.localhost_profile.as_deref(),
        origin,
    })
}

fn app_armor<'a>(cx: &Cx<'a>, c: &Ctr<'a>) -> Option<Profile<'a>> {
    if let Some(p) = c.sc.and_then(|sc| sc.app_armor_profile.as_ref()) {
        return Some(Profile {
            type_: &p.type_,
            localhost: p.localhost_profile.as_deref(),
            origin: Origin::Container,
        });
    }
    let annotation = cx
        .pod
        .annotations
        .iter()
        .find(|(k, _)| k.strip_prefix(APPARMOR_ANNOTATION_PREFIX) == Some(c.name));
    if let Some((key, value)) = annotation {
        let (type_, localhost) = match value.as_str() {
            "runtime/default" => ("RuntimeDefault", None),
            "unconfined" => ("Unconfined", None),
            v => match v.strip_prefix("localhost/") {
                Some(name) => ("Localhost", Some(name)),
                None => (v, None),
            },
        };
        if !value.is_empty() {
            return Some(Profile {
                type_,
                localhost,
                origin: Origin::Annotation(key),
            });
        }
    }
    let p = cx.pod_sc()?.app_armor_profile.as_ref()?;
    Some(Profile {
        type_: &p.type_,
        localhost: p.localhost_profile.as_deref(),
        origin: Origin::Pod,
    })
}

fn se_linux_type<'a>(cx: &Cx<'a>, c: &Ctr<'a>) -> Option<(&'a str, Origin<'a>)> {
    let of = |o: Option<&'a k8s_openapi::api::core::v1::SELinuxOptions>| {
        o.and_then(|o| o.type_.as_deref()).filter(|t| !t.is_empty())
    };
    if let Some(t) = of(c.sc.and_then(|sc| sc.se_linux_options.as_ref())) {
        return Some((t, Origin::Container));
    }
    of(cx.pod_sc().and_then(|sc| sc.se_linux_options.as_ref())).map(|t| (t, Origin::Pod))
}

/// The field to point at: where the value was written, or the container's own field to add.
fn field(cx: &Cx<'_>, c: &Ctr<'_>, origin: Option<Origin<'_>>, rest: &str) -> String {
    match origin {
        Some(Origin::Pod) => cx.spec_field(rest),
        Some(Origin::Annotation(key)) => cx.pod.annotation_path(key),
        Some(Origin::Container) | None => c.field(cx, rest),
    }
}

fn is_windows(pod: &PodTarget<'_>) -> bool {
    pod.spec.os.as_ref().is_some_and(|os| os.name == "windows")
}

/// Appends a violation for every container of a selected workload that misses a requirement.
pub fn check(pod: &PodTarget<'_>, baseline: &CompiledBaseline, out: &mut Vec<Violation>) {
    let Some(requirements) = baseline.spec.pod_security.as_ref().map(|p| &p.profiles) else {
        return;
    };
    if requirements.is_empty() || is_windows(pod) {
        return;
    }
    let cx = Cx::new(pod, u32::MAX);
    for (req, selector) in requirements.iter().zip(&baseline.profile_selectors) {
        if !selector.matches(pod.labels) {
            continue;
        }
        for c in cx.containers() {
            if let Some(want) = &req.seccomp {
                let have = seccomp(&cx, &c);
                typed(&cx, &c, req, want, have, Rule::ProfileSeccomp, out);
            }
            if let Some(want) = &req.app_armor {
                let have = app_armor(&cx, &c);
                typed(&cx, &c, req, want, have, Rule::ProfileAppArmor, out);
            }
            if let Some(want) = &req.se_linux {
                se_linux(&cx, &c, req, &want.types, out);
            }
        }
    }
}

fn typed(
    cx: &Cx<'_>,
    c: &Ctr<'_>,
    req: &ProfileRequirement,
    want: &ProfileTypeRequirement,
    have: Option<Profile<'_>>,
    rule: Rule,
    out: &mut Vec<Violation>,
) {
    let (what, rest) = match rule {
        Rule::ProfileSeccomp => ("seccomp", "securityContext.seccompProfile"),
        _ => ("AppArmor", "securityContext.appArmorProfile"),
    };
    let allowed = &want.localhost_profiles;
    let localhost_ok = |name: Option<&str>| {
        name.is_some_and(|n| allowed.is_empty() || allowed.iter().any(|a| a == n))
    };
    let ok = have.as_ref().is_some_and(|p| match (want.type_, p.type_) {
        (_, "Localhost") => localhost_ok(p.localhost),
        (ProfileType::RuntimeDefault, "RuntimeDefault") => true,
        _ => false,
    });
    if ok {
        return;
    }
    let needs = match (want.type_, allowed.is_empty()) {
        (ProfileType::Localhost, true) => "a Localhost profile".to_string(),
        (ProfileType::Localhost, false) => format!("Localhost profile {}", one_of(allowed)),
        (ProfileType::RuntimeDefault, true) => "RuntimeDefault or a Localhost profile".into(),
        (ProfileType::RuntimeDefault, false) => {
            format!("RuntimeDefault or Localhost profile {}", one_of(allowed))
        }
    };
    let (origin, is) = match &have {
        None => (None, "no explicit profile (the node decides)".to_string()),
        Some(p) => (
            Some(p.origin),
            match p.localhost {
                Some(name) if p.type_ == "Localhost" => format!("Localhost profile {name:?}"),
                _ => format!("{:?}", p.type_),
            },
        ),
    };
    let whose = match origin {
        Some(Origin::Pod) => "the pod's securityContext".to_string(),
        Some(Origin::Annotation(_)) => "its annotation".to_string(),
        _ => "its securityContext".to_string(),
    };
    push_unique(
        out,
        rule,
        field(cx, c, origin, rest),
        format!(
            "{} runs under {what} {is} from {whose}; profile requirement {:?} needs {needs}",
            c.label(),
            req.name
        ),
    );
}

fn se_linux(
    cx: &Cx<'_>,
    c: &Ctr<'_>,
    req: &ProfileRequirement,
    types: &[String],
    out: &mut Vec<Violation>,
) {
    let have = se_linux_type(cx, c);
    if have.is_some_and(|(t, _)| types.iter().any(|a| a == t)) {
        return;
    }
    let is = match have {
        Some((t, _)) => format!("SELinux type {t:?}"),
        None => "no SELinux type (the runtime's default)".into(),
    };
    push_unique(
        out,
        Rule::ProfileSeLinux,
        field(
            cx,
            c,
            have.map(|h| h.1),
            "securityContext.seLinuxOptions.type",
        ),
        format!(
            "{} runs with {is}; profile requirement {:?} needs seLinuxOptions.type {}",
            c.label(),
            req.name,
            one_of(types)
        ),
    );
}

fn one_of(names: &[String]) -> String {
    match names {
        [one] => format!("{one:?}"),
        _ => {
            let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
            format!("one of [{}]", quoted.join(", "))
        }
    }
}

/// The Localhost profiles a workload's containers run under, each with the violation to report
/// if the profile turns out not to exist. Seccomp paths outside the Security Profiles Operator's
/// directory are not returned: nothing in the API says whether a node has them.
pub fn localhost_refs(pod: &PodTarget<'_>) -> Vec<LocalhostRef> {
    let mut refs: Vec<LocalhostRef> = Vec::new();
    if is_windows(pod) {
        return refs;
    }
    let cx = Cx::new(pod, u32::MAX);
    for c in cx.containers() {
        let found = [
            (ProfileKind::Seccomp, seccomp(&cx, &c)),
            (ProfileKind::AppArmor, app_armor(&cx, &c)),
        ];
        for (kind, p) in found {
            let Some(p) = p.filter(|p| p.type_ == "Localhost") else {
                continue;
            };
            let Some(name) = p.localhost.filter(|n| !n.is_empty()) else {
                continue;
            };
            let (rule, what, custom, rest) = match kind {
                ProfileKind::Seccomp => (
                    Rule::SeccompProfileNotFound,
                    "seccomp",
                    "SeccompProfile",
                    "securityContext.seccompProfile.localhostProfile",
                ),
                ProfileKind::AppArmor => (
                    Rule::AppArmorProfileNotFound,
                    "AppArmor",
                    "AppArmorProfile",
                    "securityContext.appArmorProfile.localhostProfile",
                ),
            };
            if kind == ProfileKind::Seccomp && !name.starts_with(SPO_SECCOMP_PREFIX) {
                continue;
            }
            let field = field(&cx, &c, Some(p.origin), rest);
            if refs.iter().any(|r| r.violation.field == field) {
                continue; // a pod-level profile, inherited by several containers
            }
            refs.push(LocalhostRef {
                kind,
                name: name.to_string(),
                violation: Violation::new(
                    rule,
                    field,
                    format!(
                        "{} runs under Localhost {what} profile {name:?}, which no {custom} provides: the container cannot start where the profile is not loaded; create the {custom} or fix the name",
                        c.label()
                    ),
                ),
            });
        }
    }
    refs
}

/// The Localhost name under which the Security Profiles Operator installs a SeccompProfile:
/// its `status.localhostProfile` when reported, else `operator/[<namespace>/]<name>.json`
/// (namespaced before v0.9, cluster-scoped since).
pub fn seccomp_localhost_name(
    name: &str,
    namespace: Option<&str>,
    status_path: Option<&str>,
) -> String {
    if let Some(path) = status_path.filter(|p| !p.is_empty()) {
        return path.to_string();
    }
    let file = if name.ends_with(".json") {
        name.to_string()
    } else {
        format!("{name}.json")
    };
    match namespace.filter(|ns| !ns.is_empty()) {
        Some(ns) => format!("{SPO_SECCOMP_PREFIX}{ns}/{file}"),
        None => format!("{SPO_SECCOMP_PREFIX}{file}"),
    }
}

#[cfg(test)]
mod tests;
