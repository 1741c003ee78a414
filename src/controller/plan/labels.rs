//! Pod Security labels on namespaces, without taking over anyone else's.
//!
//! A `pod-security.kubernetes.io/*` label that another field manager holds with a different value
//! (the platform team's GitOps repository, say) is never written by Palisade: forcing it would
//! take the field over, and the later removal would delete the other manager's setting and leave
//! the namespace with no Pod Security enforcement at all. Palisade leaves it, reports it, and
//! sets only the labels nobody else holds (or holds with Palisade's value: then both own it, and
//! Palisade's removal leaves it to the other manager). The namespace cache keeps exactly the
//! field-manager entries of these labels (see `Trim for Namespace`).

use super::{LabelPatch, PSA_ANNOTATION};
use crate::controller::cache::Snapshot;
use crate::policy::desired::{NamespaceObjects, FIELD_MANAGER};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::ResourceExt;
use std::collections::BTreeMap;

/// The label prefix Pod Security Admission reads.
pub const PSA_PREFIX: &str = "pod-security.kubernetes.io/";

/// The label patches that bring every namespace to `per_ns`'s Pod Security labels for baseline
/// `name`, sorted by namespace.
#[derive(Default)]
pub struct LabelPlan {
    pub patches: Vec<LabelPatch>,
    /// Namespaces that carry this baseline's labels once the patches are applied.
    pub labelled: u32,
    /// `Namespace ns label k=v (...)` for each wanted label another manager holds with another
    /// value: left alone.
    pub foreign: Vec<String>,
}

impl LabelPlan {
    pub fn add(&mut self, one: NamespaceLabels) {
        self.patches.extend(one.patch);
        self.labelled += u32::from(one.labelled);
        self.foreign.extend(one.foreign);
    }

    pub fn finish(mut self) -> Self {
        self.patches.sort_by(|a, b| a.namespace.cmp(&b.namespace));
        self.foreign.sort();
        self
    }
}

pub fn plan(
    snap: &Snapshot,
    name: &str,
    per_ns: &BTreeMap<String, std::sync::Arc<NamespaceObjects>>,
) -> LabelPlan {
    let mut out = LabelPlan::default();
    for ns in &snap.namespaces {
        let wanted = ns.metadata.name.as_deref().and_then(|n| per_ns.get(n));
        out.add(of_namespace(ns, name, wanted.map(|o| &o.namespace_labels)));
    }
    out.finish()
}

/// One namespace's part of a [`LabelPlan`]. It depends on nothing but the namespace and what the
/// baseline wants there, so an incremental plan keeps it for the namespaces it does not rebuild.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NamespaceLabels {
    /// The patch that brings the namespace to what is wanted, when it is not there yet.
    pub patch: Option<LabelPatch>,
    /// The namespace carries this baseline's labels once the patch is applied.
    pub labelled: bool,
    /// Wanted labels another manager holds with another value (left alone), as in [`LabelPlan`].
    pub foreign: Vec<String>,
}

/// The Pod Security labels of `ns` for baseline `name`, which wants `wanted` there (`None` or
/// empty: none, so the ones it set go).
pub fn of_namespace(
    ns: &Namespace,
    name: &str,
    wanted: Option<&BTreeMap<String, String>>,
) -> NamespaceLabels {
    let mut out = NamespaceLabels::default();
    let wanted = wanted.filter(|l| !l.is_empty());
    let ours = ns.annotations().get(PSA_ANNOTATION).map(String::as_str) == Some(name);
    let current = ns.labels();
    let namespace = || ns.name_any();
    let body = match wanted {
        Some(labels) => {
            out.labelled = true;
            let mut applied = BTreeMap::new();
            for (key, value) in labels {
                match current.get(key) {
                    Some(theirs) if theirs != value && !held_by_others(ns, key).is_empty() => {
                        out.foreign.push(format!(
                            "Namespace {} label {key}={theirs} (managed by {}; this baseline wants {value})",
                            namespace(),
                            held_by_others(ns, key).join(", ")
                        ));
                    }
                    _ => {
                        applied.insert(key, value);
                    }
                }
            }
            let in_place = applied.iter().all(|(k, v)| current.get(*k) == Some(*v));
            if ours && in_place && held_by_palisade(ns, applied.keys().copied()) {
                return out;
            }
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {
                "name": namespace(), "labels": applied, "annotations": {PSA_ANNOTATION: name}}})
        }
        // Applying nothing under our field manager removes the labels we set, and only those:
        // a label another manager also holds stays.
        None if ours => {
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace()}})
        }
        None => return out,
    };
    out.patch = Some(LabelPatch {
        namespace: namespace(),
        body,
        set: wanted.is_some(),
    });
    out
}

/// The field managers other than Palisade that hold label `key` of `ns`.
fn held_by_others<'a>(ns: &'a Namespace, key: &str) -> Vec<&'a str> {
    let mut managers: Vec<&str> = entries(ns)
        .filter(|e| e.manager.as_deref() != Some(FIELD_MANAGER) && holds(e, key))
        .filter_map(|e| e.manager.as_deref())
        .collect();
    managers.sort();
    managers.dedup();
    managers
}

/// Whether Palisade's own apply holds every one of `keys` (a label set by Palisade and then
/// overwritten with the same value by another writer is no longer Palisade's: apply again).
/// A namespace whose cache has no field-manager entries at all (a server without managed fields)
/// is taken at its labels.
fn held_by_palisade<'k>(ns: &Namespace, mut keys: impl Iterator<Item = &'k String>) -> bool {
    if entries(ns).next().is_none() {
        return true;
    }
    let ours: Vec<&ManagedFieldsEntry> = entries(ns)
        .filter(|e| e.manager.as_deref() == Some(FIELD_MANAGER))
        .collect();
    keys.all(|k| ours.iter().any(|e| holds(e, k)))
}

fn entries(ns: &Namespace) -> impl Iterator<Item = &ManagedFieldsEntry> {
    ns.metadata.managed_fields.iter().flatten()
}

fn holds(entry: &ManagedFieldsEntry, key: &str) -> bool {
    entry.fields_v1.as_ref().is_some_and(|f| {
        f.0.get("f:metadata")
            .and_then(|m| m.get("f:labels"))
            .and_then(|l| l.get(format!("f:{key}")))
            .is_some()
    })
}

/// Keeps of a namespace's field-manager entries only who holds which Pod Security label: all the
/// plan reads, a few bytes per namespace instead of every manager's full field set.
pub fn trim_managed_fields(
    entries: Option<Vec<ManagedFieldsEntry>>,
) -> Option<Vec<ManagedFieldsEntry>> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1;
    let kept: Vec<ManagedFieldsEntry> = entries?
        .into_iter()
        .filter_map(|e| {
            let labels = e.fields_v1.as_ref()?.0.get("f:metadata")?.get("f:labels")?;
            let psa: serde_json::Map<String, serde_json::Value> = labels
                .as_object()?
                .iter()
                .filter(|(k, _)| k.starts_with(&format!("f:{PSA_PREFIX}")))
                .map(|(k, _)| (k.clone(), serde_json::json!({})))
                .collect();
            (!psa.is_empty()).then(|| ManagedFieldsEntry {
                manager: e.manager,
                operation: e.operation,
                fields_v1: Some(FieldsV1(
                    serde_json::json!({"f:metadata": {"f:labels": psa}}),
                )),
                ..Default::default()
            })
        })
        .collect();
    (!kept.is_empty()).then_some(kept)
}
