//! Server-side apply of generated objects, only when the cluster differs from what is wanted,
//! and pruning of what Palisade generated and no longer wants.

use crate::metrics::{KindLabels, Metrics};
use crate::policy::desired::{BASELINE_LABEL, FIELD_MANAGER, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::fmt::Debug;

/// The API of a generated kind, namespaced or cluster-scoped as the kind is.
pub trait Scoped: Resource<DynamicType = ()> + Sized {
    fn api(client: &Client, namespace: Option<&str>) -> Api<Self>;
}

macro_rules! scoped {
    (namespaced: $($n:ty),*; cluster: $($c:ty),*) => {
        $(impl Scoped for $n {
            fn api(client: &Client, namespace: Option<&str>) -> Api<Self> {
                Api::namespaced(client.clone(), namespace.unwrap_or("default"))
            }
        })*
        $(impl Scoped for $c {
            fn api(client: &Client, _: Option<&str>) -> Api<Self> {
                Api::all(client.clone())
            }
        })*
    };
}
scoped!(
    namespaced: k8s_openapi::api::networking::v1::NetworkPolicy, k8s_openapi::api::rbac::v1::Role, k8s_openapi::api::rbac::v1::RoleBinding, crate::policy::mesh::istio::PeerAuthentication;
    cluster: k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy, k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding
);

/// True when every field set in `wanted` has the same value in `actual`. Fields the API server
/// defaulted, or other managers added, do not count as drift; changed or removed ones do.
/// An explicitly empty list or map in `wanted` must be empty (or absent: the API server drops empty
/// lists) in `actual`: that is how "no ingress rules" is asserted on a default-deny policy.
pub fn is_subset(wanted: &Value, actual: &Value) -> bool {
    let empty = |v: &Value| match v {
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    match (wanted, actual) {
        (Value::Object(w), Value::Object(a)) => w.iter().all(|(k, wv)| {
            if wv.is_null() {
                true
            } else if empty(wv) {
                a.get(k).is_none_or(|av| av.is_null() || empty(av))
            } else {
                a.get(k).is_some_and(|av| is_subset(wv, av))
            }
        }),
        (Value::Array(w), Value::Array(a)) => {
            w.len() == a.len() && w.iter().zip(a).all(|(wv, av)| is_subset(wv, av))
        }
        _ => wanted == actual,
    }
}

/// What happened to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Created,
    /// Existed but differed: someone else changed it (drift) or the baseline changed.
    Updated,
}

/// What applying `wanted` over the cached `actual` would do: the one decision both `apply` and
/// the Audit-mode preview make, so a preview lists exactly what Enforce writes.
pub fn planned<K: Serialize>(wanted: &K, actual: Option<&K>) -> Outcome {
    match actual {
        None => Outcome::Created,
        Some(a) => {
            let w = serde_json::to_value(wanted).expect("k8s objects always serialize");
            let a = serde_json::to_value(a).expect("k8s objects always serialize");
            if is_subset(&w, &a) {
                Outcome::Unchanged
            } else {
                Outcome::Updated
            }
        }
    }
}

/// Applies `wanted`, which the plan found missing (`Created`) or differing from the cache
/// (`Updated`: drift, or a changed baseline).
pub async fn apply<K>(
    client: &Client,
    metrics: &Metrics,
    baseline: &str,
    wanted: &K,
    outcome: Outcome,
) -> Result<(), kube::Error>
where
    K: Scoped + Serialize + DeserializeOwned + Clone + Debug,
{
    let wanted_json = serde_json::to_value(wanted).expect("k8s objects always serialize");
    let kind = K::kind(&()).to_string();
    let mut body = wanted_json;
    body["apiVersion"] = K::api_version(&()).into();
    body["kind"] = kind.clone().into();
    let api = K::api(client, wanted.meta().namespace.as_deref());
    // force: Palisade is the only rightful manager of these fields; another manager's edit is drift.
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&wanted.name_any(), &params, &Patch::Apply(&body))
        .await?;
    metrics.count_write(&kind, "apply");
    if outcome == Outcome::Updated {
        metrics
            .drift_corrections
            .get_or_create(&KindLabels {
                baseline: baseline.into(),
                kind: kind.clone(),
            })
            .inc();
        tracing::info!(baseline, kind = %kind, name = %wanted.name_any(), namespace = ?wanted.meta().namespace, "restored generated object that differed from the baseline");
    }
    Ok(())
}

/// The writers other than Palisade that hold fields of `obj` (as the cache keeps them: see
/// [`keep_other_writers`]), each as `manager (Operation): field, field`, fields two levels deep.
pub fn other_writers<K: Resource>(obj: &K) -> Vec<String> {
    fn paths(v: &Value, prefix: &str, depth: usize, out: &mut Vec<String>) {
        let Some(map) = v.as_object() else { return };
        for (k, child) in map {
            let Some(name) = k.strip_prefix("f:") else {
                continue; // list items (`k:`, `v:`) and `.`: the parent path says enough
            };
            let path = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            };
            let leaf = child
                .as_object()
                .is_none_or(|m| m.keys().all(|k| !k.starts_with("f:")));
            if depth == 1 || leaf {
                out.push(path);
            } else {
                paths(child, &path, depth - 1, out);
            }
        }
    }
    let mut out = Vec::new();
    for e in obj.meta().managed_fields.iter().flatten() {
        let manager = e.manager.as_deref().unwrap_or("unknown");
        if manager == FIELD_MANAGER {
            continue;
        }
        let mut fields = Vec::new();
        if let Some(f) = &e.fields_v1 {
            paths(&f.0, "", 2, &mut fields);
        }
        fields.dedup();
        let more = fields.len().saturating_sub(4);
        fields.truncate(4);
        if more > 0 {
            fields.push(format!("{more} more"));
        }
        out.push(format!(
            "{manager} ({}): {}",
            e.operation.as_deref().unwrap_or("?"),
            fields.join(", ")
        ));
    }
    out
}

/// What the cache keeps of a generated kind's field managers: on Palisade's own objects, the
/// entries of other writers (none in steady state), so the plan can name who rewrote one; on
/// everyone else's objects, nothing.
pub fn keep_other_writers(meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
    let ours = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .map(String::as_str)
        == Some(MANAGED_BY_VALUE);
    let kept: Vec<_> = meta
        .managed_fields
        .take()
        .into_iter()
        .flatten()
        .filter(|e| ours && e.manager.as_deref() != Some(FIELD_MANAGER))
        .map(
            |e| k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
                time: None,
                ..e
            },
        )
        .collect();
    meta.managed_fields = (!kept.is_empty()).then_some(kept);
}

/// Whether Palisade generated `obj` for baseline `name`: its labels name the baseline and it is
/// owned by that baseline (uid `uid`). Only such objects are ever pruned: a copy of a generated
/// object (labels kept, owner dropped, as a GitOps repository may hold one) is not Palisade's.
pub fn generated_by<K: Resource>(obj: &K, name: &str, uid: &str) -> bool {
    let labels = obj.labels();
    let labelled = labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE)
        && labels.get(BASELINE_LABEL).map(String::as_str) == Some(name);
    let owned = obj
        .owner_references()
        .iter()
        .any(|o| o.kind == "SecurityBaseline" && o.uid == uid);
    labelled && owned && !uid.is_empty()
}

/// Whether an existing object of a generated name is Palisade's to write: labelled as generated
/// by Palisade (for any baseline: a namespace can pass from one baseline to another) or owned
/// by a baseline. Anything else is someone else's object and is left alone.
pub fn palisades<K: Resource>(obj: &K) -> bool {
    obj.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE)
        || obj
            .owner_references()
            .iter()
            .any(|o| o.kind == "SecurityBaseline")
}

/// Deletes a generated object that is no longer wanted. Only ever called on objects that pass
/// [`generated_by`]; a precondition on the uid avoids deleting a replacement created meanwhile.
pub async fn prune<K>(client: &Client, metrics: &Metrics, obj: &K) -> Result<(), kube::Error>
where
    K: Scoped + DeserializeOwned + Clone + Debug,
{
    let api = K::api(client, obj.meta().namespace.as_deref());
    let mut dp = DeleteParams::default();
    if let Some(uid) = obj.meta().uid.clone() {
        dp.preconditions = Some(kube::api::Preconditions {
            uid: Some(uid),
            resource_version: None,
        });
    }
    match api.delete(&obj.name_any(), &dp).await {
        Ok(_) => {}
        // Already gone (or replaced): nothing to prune.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => return Err(e),
    }
    metrics.count_write(K::kind(&()).as_ref(), "delete");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaulted_and_foreign_fields_are_not_drift() {
        let wanted = json!({"spec": {"ports": [{"port": 53}], "policyTypes": ["Egress"]}, "metadata": {"labels": {"a": "1"}}});
        let actual = json!({"spec": {"ports": [{"port": 53, "protocol": "TCP"}], "policyTypes": ["Egress"]},
                            "metadata": {"labels": {"a": "1", "team": "x"}, "uid": "u"}});
        assert!(is_subset(&wanted, &actual));
    }

    #[test]
    fn explicitly_empty_lists_must_stay_empty() {
        let wanted = json!({"spec": {"ingress": [], "podSelector": {}}});
        assert!(is_subset(&wanted, &json!({"spec": {"podSelector": {}}})));
        assert!(is_subset(
            &wanted,
            &json!({"spec": {"ingress": [], "podSelector": {}}})
        ));
        assert!(!is_subset(
            &wanted,
            &json!({"spec": {"ingress": [{}], "podSelector": {}}})
        ));
        assert!(!is_subset(
            &wanted,
            &json!({"spec": {"podSelector": {"matchLabels": {"a": "b"}}}})
        ));
    }

    #[test]
    fn changed_removed_or_added_list_items_are_drift() {
        let wanted = json!({"spec": {"ports": [{"port": 53}]}});
        assert!(!is_subset(
            &wanted,
            &json!({"spec": {"ports": [{"port": 54}]}})
        ));
        assert!(!is_subset(&wanted, &json!({"spec": {}})));
        assert!(!is_subset(
            &wanted,
            &json!({"spec": {"ports": [{"port": 53}, {"port": 80}]}})
        ));
    }
}
