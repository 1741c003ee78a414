//! The control plane as the API server shows it, without a node agent: the flags of static
//! control-plane pods (their mirror pods in `kube-system`, as kubeadm and kind run them) checked
//! with the same rules as `palisade node`, and two probes of behaviour rather than flags:
//! an unauthenticated request (401 means anonymous authentication is off) and a
//! SubjectAccessReview asking whether a node may read a Secret none of its pods use (the Node
//! authorizer says no).
//!
//! What the API cannot show (files on the nodes, the kubelet, a managed control plane that runs
//! no visible pods) is reported as not assessable, never as passing.

use super::checks::CHECKS;
use super::component::{Component, Kind};
use super::host::{Host, Process};
use super::{report_for, CheckResult, Node, NodeReport, Outcome, Status};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use std::collections::BTreeMap;

/// Set by the kubelet on the API copy of a static pod.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// The Secret the Node-authorizer probe asks about: no pod references it, so no node may read it.
pub const PROBE_SECRET: &str = "palisade-node-authorizer-probe";
/// The node identity asked about when no pod names a node.
const PROBE_NODE: &str = "palisade-probe-node";

/// The report of each node that runs control-plane components as static pods. `pods` are the
/// pods of `kube-system`; only mirror pods count (a Deployment named kube-apiserver is not the
/// API server).
pub fn mirror_pod_reports(pods: &[Pod]) -> Vec<NodeReport> {
    let mut by_node: BTreeMap<String, Vec<(String, Process)>> = BTreeMap::new();
    for pod in pods {
        let meta = &pod.metadata;
        let mirrored = meta
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION));
        let (Some(spec), true) = (&pod.spec, mirrored) else {
            continue;
        };
        for c in &spec.containers {
            let argv: Vec<String> = c
                .command
                .iter()
                .flatten()
                .chain(c.args.iter().flatten())
                .cloned()
                .collect();
            if Kind::of(&argv).is_none() {
                continue;
            }
            let environ = c
                .env
                .iter()
                .flatten()
                .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
                .collect();
            let process = Process {
                argv,
                environ: Some(environ),
                ..Default::default()
            };
            let node = spec.node_name.clone().unwrap_or_default();
            let name = meta.name.clone().unwrap_or_default();
            by_node.entry(node).or_default().push((name, process));
        }
    }
    // Nothing of the node's file system is visible: every read fails, and says so below.
    let host = Host::new(
        "/nonexistent/palisade-api-view",
        "/nonexistent/palisade-api-view",
    );
    by_node
        .into_iter()
        .map(|(node_name, found)| {
            let mut notes = Vec::new();
            let mut components: Vec<Component> = Vec::new();
            for (pod, process) in found {
                let Some((kind, skip)) = Kind::of(&process.argv) else {
                    continue;
                };
                if components.iter().any(|c| c.kind == kind) {
                    notes.push(format!("{kind} has a second mirror pod {pod}; not checked"));
                    continue;
                }
                notes.push(format!("{kind}: flags of mirror pod kube-system/{pod}"));
                components.push(Component::new(&host, kind, skip, process));
            }
            components.sort_by_key(|c| c.kind);
            let node = Node {
                host: &host,
                components,
            };
            let mut report = report_for(&node, &node_name, notes);
            // The engine's reasons describe a host it could not read; here nothing of the host
            // is visible by design, so say that instead.
            for r in &mut report.results {
                if r.outcome.status != Status::NotAssessable {
                    continue;
                }
                r.outcome.reason = if r.component == Kind::Kubelet {
                    format!("the kubelet does not run as a pod: run `palisade node` on {node_name}")
                } else if node.get(r.component).is_none() {
                    format!("no mirror pod runs {} on {node_name}", r.component)
                } else {
                    format!(
                        "from the API server only the mirror pod's flags are visible, not files on {node_name}: run `palisade node` there"
                    )
                };
            }
            report
        })
        .collect()
}

/// The probes' verdicts, under the ids of the checks they stand for.
pub fn probe_report(anonymous: Outcome, node_authorizer: Outcome) -> NodeReport {
    let result = |id: &str, outcome: Outcome| {
        let check = CHECKS
            .iter()
            .find(|c| c.id == id)
            .expect("the probed checks are in the table");
        CheckResult {
            rule: check.id,
            title: check.title,
            component: check.component,
            severity: check.severity,
            outcome,
        }
    };
    NodeReport {
        node: "api-server (probed)".into(),
        components: Vec::new(),
        results: vec![
            result("cis.1.2.1", anonymous),
            result("cis.1.2.7", node_authorizer),
        ],
        notes: Vec::new(),
    }
}

/// An unauthenticated `GET /version` (allowed to anyone authenticated, anonymous included, by
/// the default `system:public-info-viewer` binding): 401 means anonymous requests are refused.
pub async fn probe_anonymous(config: &kube::Config) -> Outcome {
    let mut anonymous = config.clone();
    anonymous.auth_info = Default::default();
    let source = Some(format!(
        "GET {}version without credentials",
        config.cluster_url
    ));
    let client = match Client::try_from(anonymous) {
        Ok(c) => c,
        Err(e) => return Outcome::not_assessable(format!("no client for the probe: {e}")),
    };
    let request = match http::Request::get("/version").body(Vec::new()) {
        Ok(r) => r,
        Err(e) => return Outcome::not_assessable(format!("probe request: {e}")),
    };
    match client.request_text(request).await {
        Ok(_) => Outcome::fail(
            Some("200".into()),
            source,
            "the API server answered an anonymous request: anonymous authentication is on".into(),
        ),
        Err(kube::Error::Api(s)) if s.code == 401 => Outcome::pass(
            Some("401".into()),
            source,
            "anonymous requests are refused".into(),
        ),
        Err(kube::Error::Api(s)) if s.code == 403 => Outcome::fail(
            Some("403".into()),
            source,
            "the request was authenticated as system:anonymous (and then forbidden): anonymous authentication is on".into(),
        ),
        Err(e) => Outcome::not_assessable(format!("the anonymous probe failed: {e}")),
    }
}

/// Whether node `node` may read a Secret none of its pods use, by SubjectAccessReview.
pub async fn probe_node_authorizer(client: &Client, node: Option<&str>) -> Outcome {
    let node = node.unwrap_or(PROBE_NODE);
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:node:{node}")),
            groups: Some(vec!["system:nodes".into(), "system:authenticated".into()]),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some("kube-system".into()),
                verb: Some("get".into()),
                resource: Some("secrets".into()),
                name: Some(PROBE_SECRET.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let source = Some(format!(
        "SubjectAccessReview: may system:node:{node} get secret kube-system/{PROBE_SECRET}"
    ));
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    match api.create(&PostParams::default(), &review).await {
        Ok(answer) => {
            let status = answer.status.unwrap_or_default();
            let why = status.reason.unwrap_or_default();
            if status.allowed {
                Outcome::fail(
                    Some("allowed".into()),
                    source,
                    format!("a node may read a Secret none of its pods use ({why}): the Node authorizer does not confine kubelets"),
                )
            } else {
                Outcome::pass(
                    Some("denied".into()),
                    source,
                    "a node cannot read Secrets its pods do not use".into(),
                )
            }
        }
        Err(e) => Outcome::not_assessable(format!("the SubjectAccessReview failed: {e}")),
    }
}

/// The whole view: the probes, then one report per node with control-plane mirror pods (or a
/// note that none are visible).
pub async fn inspect(client: &Client, config: &kube::Config) -> Result<Vec<NodeReport>, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let pods = pods
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("list pods in kube-system: {e}"))?
        .items;
    let mirrors = mirror_pod_reports(&pods);
    let node = pods.iter().find_map(|p| p.spec.as_ref()?.node_name.clone());
    let anonymous = probe_anonymous(config).await;
    let authorizer = probe_node_authorizer(client, node.as_deref()).await;
    let mut probes = probe_report(anonymous, authorizer);
    if mirrors.is_empty() {
        probes.notes.push(
            "no control-plane mirror pods in kube-system (a managed control plane, or components not run as static pods): their flags are not assessable from the API server; run `palisade node` where they run".into(),
        );
    }
    Ok(std::iter::once(probes).chain(mirrors).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, mirror: bool, node: &str, command: &[&str], env: &[(&str, &str)]) -> Pod {
        let annotations = if mirror {
            serde_json::json!({MIRROR_ANNOTATION: "abc"})
        } else {
            serde_json::json!({})
        };
        let env: Vec<_> = env
            .iter()
            .map(|(k, v)| serde_json::json!({"name": k, "value": v}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "kube-system", "annotations": annotations},
            "spec": {"nodeName": node, "containers": [{"name": "c", "command": command, "env": env}]},
        }))
        .unwrap()
    }

    fn status(r: &NodeReport, rule: &str) -> (Status, Option<String>) {
        let r = r.results.iter().find(|r| r.rule == rule).unwrap();
        (r.outcome.status, r.outcome.actual.clone())
    }

    #[test]
    fn only_mirror_pods_count_and_each_node_gets_its_own_report() {
        let pods = [
            pod(
                "kube-apiserver-a",
                true,
                "a",
                &["kube-apiserver", "--authorization-mode=AlwaysAllow"],
                &[],
            ),
            // A look-alike that any namespace admin could create is not the API server.
            pod(
                "kube-apiserver-fake",
                false,
                "b",
                &["kube-apiserver", "--authorization-mode=Node,RBAC"],
                &[],
            ),
            pod(
                "etcd-b",
                true,
                "b",
                &["etcd"],
                &[("ETCD_CLIENT_CERT_AUTH", "true")],
            ),
            pod("coredns", false, "a", &["/coredns"], &[]),
        ];
        let reports = mirror_pod_reports(&pods);
        let nodes: Vec<&str> = reports.iter().map(|r| r.node.as_str()).collect();
        assert_eq!(nodes, ["a", "b"]);
        assert_eq!(
            status(&reports[0], "cis.1.2.6"),
            (Status::Fail, Some("AlwaysAllow".into()))
        );
        // Node b runs no API server pod: its checks are not assessable there, not passed.
        assert_eq!(status(&reports[1], "cis.1.2.6").0, Status::NotAssessable);
        // etcd's environment comes from the pod spec.
        assert_eq!(
            status(&reports[1], "cis.2.2"),
            (Status::Pass, Some("true".into()))
        );
        let kubelet = reports[0]
            .results
            .iter()
            .find(|r| r.rule == "cis.4.2.1")
            .unwrap();
        assert!(kubelet.outcome.reason.contains("does not run as a pod"));
        assert!(mirror_pod_reports(&pods[1..2]).is_empty());
    }
}
