//! Policy reports: a baseline's findings per covered namespace as `openreports.io/v1alpha1`
//! `Report` objects, the format Kyverno, Kubewarden and Trivy write, so the same dashboards and
//! tools (Policy Reporter, `kubectl get reports`) read Palisade's results.
//!
//! One report per baseline and namespace (`palisade-<baseline>`), owned by the baseline (garbage
//! collection removes it with the baseline), applied only when its content differs from the
//! cache, pruned when the namespace leaves coverage or `--reports` is turned off.

use super::apply::is_subset;
use super::cache::{store_ready, Trigger};
use crate::metrics::Metrics;
use crate::policy::desired::{generated_labels, gitops_annotations, BASELINE_LABEL, FIELD_MANAGER};
use crate::policy::desired::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::policy::finding::Finding;
use crate::policy::rules::Category;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Identifies Palisade as the engine of its reports (`source`).
pub const SOURCE: &str = "palisade";
/// Default bound on results per report: keeps each object far below etcd's size limit.
pub const DEFAULT_MAX_RESULTS: usize = 200;
/// `"true"` when the report lists fewer results than there are findings.
pub const TRUNCATED_ANNOTATION: &str = "palisade.dev/truncated";
/// The number of findings in the namespace, listed or not.
pub const TOTAL_ANNOTATION: &str = "palisade.dev/total-results";

/// The OpenReports `Report` kind (namespaced).
pub fn api_resource() -> ApiResource {
    ApiResource {
        group: "openreports.io".into(),
        version: "v1alpha1".into(),
        api_version: "openreports.io/v1alpha1".into(),
        kind: "Report".into(),
        plural: "reports".into(),
    }
}

/// Name of the report of `baseline` in each namespace (a DNS subdomain of at most 253 chars).
pub fn report_name(baseline: &str) -> String {
    let mut name = format!("palisade-{baseline}");
    name.truncate(253);
    name.trim_end_matches(['-', '.']).to_string()
}

use crate::manifest::api_version_of;

fn category(c: Category) -> &'static str {
    match c {
        Category::PodSecurityBaseline => "Pod Security Standards (baseline)",
        Category::PodSecurityRestricted => "Pod Security Standards (restricted)",
        Category::Hardening => "Hardening",
        Category::Rbac => "RBAC",
        Category::Network => "Network isolation",
        Category::Baseline => "Baseline",
    }
}

fn result(baseline: &str, f: &Finding) -> Value {
    let mut resource = json!({"kind": f.object.kind, "name": f.object.name});
    if let Some(ns) = &f.object.namespace {
        resource["namespace"] = ns.clone().into();
    }
    if let Some(v) = api_version_of(&f.object.kind) {
        resource["apiVersion"] = v.into();
    }
    // As Kyverno does: the policy object (here the baseline) and the rule inside it.
    json!({
        "source": SOURCE,
        "policy": baseline,
        "rule": f.rule.id(),
        "category": category(f.rule.category()),
        "severity": f.severity.as_str(),
        "result": "fail",
        "scored": true,
        "message": f.message,
        "resources": [resource],
        "properties": {"field": f.field, "reference": f.reference()},
    })
}

/// The report of `baseline` for one namespace: the most severe `max_results` findings (ties in
/// the engine's order), the summary counting all of them. No timestamps: the content only
/// changes when the findings do, so an unchanged namespace costs no write.
pub fn build(
    baseline: &str,
    namespace: &str,
    findings: &[&Finding],
    owner: Option<&OwnerReference>,
    max_results: usize,
) -> Value {
    let mut ranked: Vec<&&Finding> = findings.iter().collect();
    ranked.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let results: Vec<Value> = ranked
        .iter()
        .take(max_results)
        .map(|f| result(baseline, f))
        .collect();
    let mut annotations = gitops_annotations();
    annotations.insert(
        TRUNCATED_ANNOTATION.into(),
        (findings.len() > max_results).to_string(),
    );
    annotations.insert(TOTAL_ANNOTATION.into(), findings.len().to_string());
    let mut metadata = json!({
        "name": report_name(baseline),
        "namespace": namespace,
        "labels": generated_labels(baseline),
        "annotations": annotations,
    });
    if let Some(o) = owner {
        metadata["ownerReferences"] = json!([o]);
    }
    json!({
        "apiVersion": api_resource().api_version,
        "kind": "Report",
        "metadata": metadata,
        "source": SOURCE,
        "configuration": {"limits": {"maxResults": max_results, "statusFilter": ["fail"]}},
        "summary": {"pass": 0, "fail": findings.len(), "warn": 0, "error": 0, "skip": 0},
        "results": results,
    })
}

/// The reports `baseline` wants: one per covered namespace, none when publishing is off.
pub fn wanted(
    baseline: &str,
    namespaces: &[String],
    findings: &[Finding],
    owner: Option<&OwnerReference>,
    max_results: usize,
) -> Vec<Value> {
    let mut per_ns: BTreeMap<&str, Vec<&Finding>> = namespaces
        .iter()
        .map(|n| (n.as_str(), Vec::new()))
        .collect();
    for f in findings {
        // Cluster-scoped findings have no namespace to report in.
        if let Some(v) = f
            .object
            .namespace
            .as_deref()
            .and_then(|n| per_ns.get_mut(n))
        {
            v.push(f);
        }
    }
    per_ns
        .into_iter()
        .map(|(ns, fs)| build(baseline, ns, &fs, owner, max_results))
        .collect()
}

/// Why `--reports` cannot work.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("--reports needs the OpenReports CRD (reports.openreports.io, v1alpha1), which this cluster does not serve; install it (e.g. from github.com/openreports/reports-api config/crd) or run without --reports")]
    CrdMissing,
    #[error("--reports: cannot list openreports.io reports: {0}")]
    Api(kube::Error),
}

/// A failed report write, for the reconcile error.
#[derive(Debug)]
pub enum WriteError {
    Apply(String, kube::Error),
    Prune(String, kube::Error),
}

/// Publishes (or, with `--reports` off, only prunes) the reports of every baseline.
pub struct Reports {
    client: Client,
    store: Store<DynamicObject>,
    publish: bool,
    pub max_results: usize,
}

/// Starts the cache of Palisade's reports. With `--reports` the API must be served (else a clear
/// error); without it, reports an earlier run published are still pruned when the API is there.
pub async fn start(
    client: &Client,
    publish: bool,
    max_results: usize,
) -> Result<Option<(Reports, Trigger<DynamicObject>)>, StartError> {
    let ar = api_resource();
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let ours = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}");
    match api
        .list(&ListParams::default().labels(&ours).limit(1))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 && publish => return Err(StartError::CrdMissing),
        Err(e) if publish => return Err(StartError::Api(e)),
        Err(e) => {
            tracing::debug!(error = %e, "no OpenReports API: nothing to prune");
            return Ok(None);
        }
    }
    let writer = reflector::store::Writer::new(ar.clone());
    let store = writer.as_reader();
    let mut stream = watcher(api, watcher::Config::default().labels(&ours).any_semantic())
        .default_backoff()
        .modify(|o: &mut DynamicObject| o.metadata.managed_fields = None)
        .reflect(writer)
        .touched_objects()
        .boxed();
    // Its own task, as for the other caches: a reconcile waiting for this store must not depend
    // on the controller polling the trigger stream.
    let (tx, rx) = tokio::sync::mpsc::channel::<DynamicObject>(256);
    tokio::spawn(async move {
        while let Some(event) = stream.next().await {
            match event {
                Ok(o) => {
                    if tx.send(o).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "watching reports failed; retrying"),
            }
        }
    });
    let trigger =
        futures::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|o| (Ok(o), rx)) },
        )
        .boxed();
    let reports = Reports {
        client: client.clone(),
        store,
        publish,
        max_results: max_results.max(1),
    };
    Ok(Some((reports, trigger)))
}

impl Reports {
    pub fn publishing(&self) -> bool {
        self.publish
    }

    /// Applies the reports in `wanted` that differ from the cache and deletes this baseline's
    /// others. Returns how many reports the baseline has afterwards.
    pub async fn converge(
        &self,
        metrics: &Metrics,
        baseline: &str,
        uid: &str,
        wanted: Vec<Value>,
    ) -> Result<u32, WriteError> {
        // Deciding what to prune from a partial list would delete reports that exist.
        let _ = store_ready(&self.store).await;
        let wanted = if self.publish { wanted } else { Vec::new() };
        let ar = api_resource();
        let cached: BTreeMap<(String, String), _> = self
            .store
            .state()
            .into_iter()
            .map(|o| ((o.namespace().unwrap_or_default(), o.name_any()), o))
            .collect();
        let mut keep = BTreeSet::new();
        for w in &wanted {
            let ns = w["metadata"]["namespace"].as_str().unwrap_or_default();
            let name = w["metadata"]["name"].as_str().unwrap_or_default();
            let key = (ns.to_string(), name.to_string());
            let same = cached.get(&key).is_some_and(|a| {
                serde_json::to_value(&**a).is_ok_and(|actual| is_subset(w, &actual))
            });
            keep.insert(key);
            if same {
                continue;
            }
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
            api.patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(w),
            )
            .await
            .map_err(|e| WriteError::Apply(format!("{ns}/{name}"), e))?;
            metrics.count_write("Report", "apply");
        }
        for (key, o) in &cached {
            let mine = o.labels().get(BASELINE_LABEL).map(String::as_str) == Some(baseline)
                && o.owner_references()
                    .iter()
                    .all(|r| r.kind != "SecurityBaseline" || r.uid == uid);
            if keep.contains(key) || !mine {
                continue;
            }
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &key.0, &ar);
            let dp = DeleteParams {
                preconditions: o.uid().map(|uid| kube::api::Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&key.1, &dp).await {
                Ok(_) => metrics.count_write("Report", "delete"),
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => return Err(WriteError::Prune(format!("{}/{}", key.0, key.1), e)),
            }
        }
        Ok(wanted.len() as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::finding::ObjectRef;
    use crate::policy::rules::Rule;

    fn finding(rule: Rule, ns: Option<&str>, name: &str) -> Finding {
        Finding::new(
            rule,
            ObjectRef::new("Deployment", ns, name),
            "spec.template.spec.hostNetwork",
            "do not",
        )
    }

    #[test]
    fn one_report_per_covered_namespace_with_its_findings() {
        let fs = vec![
            finding(Rule::HostNamespaces, Some("a"), "web"),
            finding(Rule::HostNamespaces, Some("elsewhere"), "x"),
            finding(Rule::HostNamespaces, None, "cluster-wide"),
        ];
        let w = wanted("shop", &["a".into(), "b".into()], &fs, None, 10);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0]["metadata"]["namespace"], "a");
        assert_eq!(w[0]["summary"]["fail"], 1);
        let r = &w[0]["results"][0];
        assert_eq!(r["policy"], "shop");
        assert_eq!(r["rule"], Rule::HostNamespaces.id());
        assert_eq!(r["result"], "fail");
        assert_eq!(r["resources"][0]["apiVersion"], "apps/v1");
        assert_eq!(w[1]["metadata"]["namespace"], "b");
        assert_eq!(w[1]["results"], json!([]));
        assert_eq!(
            w[1]["metadata"]["annotations"][TRUNCATED_ANNOTATION],
            "false"
        );
    }

    #[test]
    fn reports_are_bounded_most_severe_first_and_say_so() {
        let mut fs = Vec::new();
        for i in 0..10 {
            fs.push(finding(
                Rule::DefaultServiceAccount,
                Some("a"),
                &format!("low-{i}"),
            ));
        }
        fs.push(finding(Rule::Privileged, Some("a"), "critical"));
        let refs: Vec<&Finding> = fs.iter().collect();
        let r = build("shop", "a", &refs, None, 3);
        assert_eq!(r["results"].as_array().unwrap().len(), 3);
        assert_eq!(r["results"][0]["severity"], "critical");
        assert_eq!(r["summary"]["fail"], 11);
        assert_eq!(r["metadata"]["annotations"][TRUNCATED_ANNOTATION], "true");
        assert_eq!(r["metadata"]["annotations"][TOTAL_ANNOTATION], "11");
        assert_eq!(r["configuration"]["limits"]["maxResults"], 3);
    }

    #[test]
    fn same_findings_give_identical_reports() {
        let fs = [finding(Rule::HostNamespaces, Some("a"), "web")];
        let refs: Vec<&Finding> = fs.iter().collect();
        assert_eq!(
            build("shop", "a", &refs, None, 5),
            build("shop", "a", &refs, None, 5)
        );
    }

    #[test]
    fn names_stay_valid_for_long_baseline_names() {
        assert_eq!(report_name("shop"), "palisade-shop");
        assert!(report_name(&"a".repeat(253)).len() <= 253);
    }
}
