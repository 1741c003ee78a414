//! Shared plumbing for the checks: the evaluation context and a uniform view of every container.

use super::super::finding::Violation;
use super::super::rules::Rule;
use super::super::workload::PodTarget;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EphemeralContainer, Lifecycle, PodSecurityContext, PodSpec, Probe,
    SecurityContext,
};

/// What every check sees: the pod and the minor version whose semantics apply.
pub(in crate::policy) struct Cx<'a> {
    pub pod: &'a PodTarget<'a>,
    pub minor: u32,
}

impl<'a> Cx<'a> {
    pub fn new(pod: &'a PodTarget<'a>, minor: u32) -> Self {
        Cx { pod, minor }
    }

    pub fn spec(&self) -> &'a PodSpec {
        self.pod.spec
    }

    pub fn pod_sc(&self) -> Option<&'a PodSecurityContext> {
        self.pod.spec.security_context.as_ref()
    }

    /// `spec.os.name` is exactly `windows` (the API value is case-sensitive).
    pub fn is_windows(&self) -> bool {
        self.pod
            .spec
            .os
            .as_ref()
            .is_some_and(|os| os.name == "windows")
    }

    /// `spec.hostUsers: false`, i.e. the pod runs in its own user namespace.
    pub fn in_user_namespace(&self) -> bool {
        self.pod.spec.host_users == Some(false)
    }

    /// Path of a field below the pod spec, e.g. `spec.template.spec.hostPID`.
    pub fn spec_field(&self, rest: &str) -> String {
        format!("{}.{}", self.pod.spec_path, rest)
    }

    /// Init containers, then containers, then ephemeral containers (the order PSA visits them).
    pub fn containers(&self) -> impl Iterator<Item = Ctr<'a>> + 'a {
        let spec = self.pod.spec;
        let init = spec.init_containers.as_deref().unwrap_or_default();
        let eph = spec.ephemeral_containers.as_deref().unwrap_or_default();
        let init = init
            .iter()
            .enumerate()
            .map(|(i, c)| Ctr::of(Kind::Init, i, c));
        let main = spec
            .containers
            .iter()
            .enumerate()
            .map(|(i, c)| Ctr::of(Kind::Main, i, c));
        let eph = eph.iter().enumerate().map(|(i, c)| Ctr::of_ephemeral(i, c));
        init.chain(main).chain(eph)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::policy) enum Kind {
    Init,
    Main,
    Ephemeral,
}

/// The fields of a container (regular, init or ephemeral) that the checks read.
#[derive(Clone, Copy)]
pub(in crate::policy) struct Ctr<'a> {
    pub kind: Kind,
    pub index: usize,
    pub name: &'a str,
    pub sc: Option<&'a SecurityContext>,
    pub ports: &'a [ContainerPort],
    pub liveness: Option<&'a Probe>,
    pub readiness: Option<&'a Probe>,
    pub startup: Option<&'a Probe>,
    pub lifecycle: Option<&'a Lifecycle>,
}

impl<'a> Ctr<'a> {
    fn of(kind: Kind, index: usize, c: &'a Container) -> Self {
        Ctr {
            kind,
            index,
            name: &c.name,
            sc: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
            liveness: c.liveness_probe.as_ref(),
            readiness: c.readiness_probe.as_ref(),
            startup: c.startup_probe.as_ref(),
            lifecycle: c.lifecycle.as_ref(),
        }
    }

    fn of_ephemeral(index: usize, c: &'a EphemeralContainer) -> Self {
        Ctr {
            kind: Kind::Ephemeral,
            index,
            name: &c.name,
            sc: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
            liveness: c.liveness_probe.as_ref(),
            readiness: c.readiness_probe.as_ref(),
            startup: c.startup_probe.as_ref(),
            lifecycle: c.lifecycle.as_ref(),
        }
    }

    /// The list this container lives in, as named in the pod spec.
    pub fn list(&self) -> &'static str {
        match self.kind {
            Kind::Init => "initContainers",
            Kind::Main => "containers",
            Kind::Ephemeral => "ephemeralContainers",
        }
    }

    /// How messages refer to this container: `container "app"`, `init container "setup"`, ...
    pub fn label(&self) -> String {
        let what = match self.kind {
            Kind::Init => "init container",
            Kind::Main => "container",
            Kind::Ephemeral => "ephemeral container",
        };
        format!("{what} {:?}", self.name)
    }

    /// Path of a field below this container, e.g. `spec.containers[1].securityContext.privileged`.
    pub fn field(&self, cx: &Cx<'_>, rest: &str) -> String {
        format!(
            "{}.{}[{}].{}",
            cx.pod.spec_path,
            self.list(),
            self.index,
            rest
        )
    }
}

/// Appends a violation unless one with the same rule and field is already there
/// (possible only for malformed pods, e.g. two containers sharing a name).
pub(in crate::policy) fn push_unique(
    out: &mut Vec<Violation>,
    rule: Rule,
    field: String,
    message: String,
) {
    if !out.iter().any(|v| v.rule == rule && v.field == field) {
        out.push(Violation::new(rule, field, message));
    }
}
