//! Status: built from the audit and the apply results, written only when it changed.

use crate::crd::{
    EnforcePreview, GeneratedCounts, SecurityBaselineStatus, ViolationSummary, ViolationTotals,
};
use crate::policy::audit::AuditReport;
use crate::policy::rules::Severity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeMap;

/// Most violations listed in status; the rest are counted only.
pub const TOP_VIOLATIONS: usize = 50;

/// Inputs for one status.
pub struct StatusInput<'a> {
    pub generation: Option<i64>,
    pub report: &'a AuditReport,
    pub generated: GeneratedCounts,
    /// Safe-default-deny allowances (API server egress, webhook ingress), one line each.
    pub allowances: Vec<String>,
    /// Audit mode: what Enforce would create, change and delete.
    pub preview: Option<EnforcePreview>,
    /// Declared Role rules outside the grantable ceiling, left out of the generated Roles.
    pub refused_rules: Vec<String>,
    pub conflicts: Vec<String>,
    /// Generated names taken by objects that are not Palisade's (`Kind namespace/name`).
    pub foreign: Vec<String>,
    /// Generated objects left to another writer that keeps rewriting them, one line each.
    pub contested: Vec<String>,
    /// Wanted objects of kinds the API server does not serve (`Kind namespace/name`).
    pub unserved: Vec<String>,
    pub learned: Vec<crate::crd::LearnedRole>,
    /// Problems that kept the reconcile from converging (apply errors), empty when fine.
    pub degraded: Option<String>,
    pub enforce: bool,
}

fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: Time(now),
    }
}

/// Which kinds are missing and how many objects wait for them: `spec.mesh.mtls: Strict` without
/// Istio's CRDs is a setting that does nothing, which the user must be told.
fn unserved_message(unserved: &[String]) -> String {
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for o in unserved {
        *by_kind.entry(o.split(' ').next().unwrap_or(o)).or_default() += 1;
    }
    let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
    format!(
        "not generated, their kind is not served by the API server (install its CRDs; they are picked up without a restart): {}",
        kinds.join(", ")
    )
}

/// The status for `input`, keeping `lastTransitionTime` of conditions whose status did not change.
pub fn build(
    input: StatusInput<'_>,
    previous: Option<&SecurityBaselineStatus>,
    now: Timestamp,
) -> SecurityBaselineStatus {
    let r = input.report;
    let mut by_severity = BTreeMap::new();
    for (s, n) in r.by_severity() {
        by_severity.insert(s.to_string(), n as u32);
    }
    let mut ranked: Vec<_> = r.findings.iter().collect();
    // Most severe first; ties keep the engine's deterministic order.
    ranked.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let top_violations = ranked
        .into_iter()
        .take(TOP_VIOLATIONS)
        .map(|f| ViolationSummary {
            rule: f.rule.id().into(),
            severity: f.severity.to_string(),
            kind: f.object.kind.clone(),
            namespace: f.object.namespace.clone(),
            name: f.object.name.clone(),
            field: f.field.to_string(),
            message: f.message.to_string(),
        })
        .collect();
    let total = r.findings.len();
    let worst = r.findings.iter().map(|f| f.severity).max();
    let g = input.generation;
    let mut conditions = vec![
        match &input.degraded {
            None => condition(
                "Ready",
                true,
                if input.enforce { "Enforced" } else { "Audited" },
                format!("{} namespaces reconciled", r.namespaces.len()),
                g,
                now,
            ),
            Some(why) => condition("Ready", false, "ApplyFailed", why.clone(), g, now),
        },
        if total == 0 {
            condition(
                "Compliant",
                true,
                "NoViolations",
                "no violations".into(),
                g,
                now,
            )
        } else {
            condition(
                "Compliant",
                false,
                "ViolationsFound",
                format!(
                    "{total} violations, worst {}",
                    worst.unwrap_or(Severity::Info)
                ),
                g,
                now,
            )
        },
        match (&input.degraded, input.conflicts.is_empty()) {
            (Some(why), _) => condition("Degraded", true, "ApplyFailed", why.clone(), g, now),
            (None, _) if !input.unserved.is_empty() => condition(
                "Degraded",
                true,
                "KindNotServed",
                unserved_message(&input.unserved),
                g,
                now,
            ),
            (None, _) if !input.contested.is_empty() => condition(
                "Degraded",
                true,
                "Conflict",
                format!(
                    "{} generated objects are rewritten by another writer: see the Conflict condition",
                    input.contested.len()
                ),
                g,
                now,
            ),
            (None, _) if !input.refused_rules.is_empty() => condition(
                "Degraded",
                true,
                "RulesOutsideGrantableCeiling",
                format!(
                    "not granted (outside the grantable ceiling ClusterRole; ask the cluster admin to aggregate them into it, or remove them): {}",
                    input.refused_rules.join(", ")
                ),
                g,
                now,
            ),
            (None, false) => condition(
                "Degraded",
                true,
                "BaselineConflict",
                format!(
                    "{} namespaces are generated by another baseline",
                    input.conflicts.len()
                ),
                g,
                now,
            ),
            (None, true) if !input.foreign.is_empty() => condition(
                "Degraded",
                true,
                "ForeignObjects",
                format!(
                    "{} objects or Pod Security labels Palisade would write already exist and are not Palisade's (objects without Palisade's labels and baseline owner, labels another field manager holds with another value); they are left alone: see status.conflicts",
                    input.foreign.len()
                ),
                g,
                now,
            ),
            (None, true) => condition(
                "Degraded",
                false,
                "AsExpected",
                "no conflicts or errors".into(),
                g,
                now,
            ),
        },
    ];
    conditions.push(if input.contested.is_empty() {
        condition(
            "Conflict",
            false,
            "NoFight",
            "no other writer keeps rewriting generated objects".into(),
            g,
            now,
        )
    } else {
        condition(
            "Conflict",
            true,
            "FightingAnotherWriter",
            input.contested.join("\n").chars().take(4000).collect(),
            g,
            now,
        )
    });
    if let Some(prev) = previous {
        for c in &mut conditions {
            if let Some(p) = prev
                .conditions
                .iter()
                .find(|p| p.type_ == c.type_ && p.status == c.status)
            {
                c.last_transition_time = p.last_transition_time.clone();
            }
        }
    }
    let mut conflicts = input.contested;
    conflicts.extend(input.conflicts);
    conflicts.extend(
        input
            .foreign
            .iter()
            .map(|f| format!("{f}: exists and is not Palisade's; left alone")),
    );
    conflicts.truncate(50);
    let mut allowances = input.allowances;
    allowances.truncate(50);
    let mut learned = input.learned;
    learned.truncate(50);
    SecurityBaselineStatus {
        observed_generation: g,
        conditions,
        namespaces: Some(r.namespaces.len() as u32),
        generated: Some(input.generated),
        violations: Some(ViolationTotals {
            total: total as u32,
            by_severity,
            exempted: r.exempted as u32,
            accepted: r.accepted.len() as u32,
        }),
        top_violations,
        preview: input.preview,
        allowances,
        learned,
        conflicts,
    }
}
