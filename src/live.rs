//! Reading a live cluster for a one-shot audit (`palisade audit --cluster`): every kind the
//! engine audits, listed in pages with the kubeconfig's credentials and decoded by the code that
//! decodes manifests. Read-only: list requests only.
//!
//! A kind the credentials may not list, or the server does not serve, is a diagnostic naming the
//! kind and what to grant; the other kinds are still read. Only an unreachable server or
//! rejected credentials end the read.

use crate::manifest::{self, Diagnostic, Severity};
use crate::policy::finding::Source;
use crate::policy::object::Object;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use kube::api::ListParams;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind, Resource};
use kube::Client;
use serde::Deserialize;
use std::sync::Arc;

/// kubectl's page size: pages stay a few MB even with large objects.
pub const DEFAULT_PAGE_SIZE: u32 = 500;

/// The read could not happen at all.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the API server rejected the kubeconfig's credentials (HTTP 401): {0}")]
    Unauthorized(String),
    #[error("cannot reach the API server: {0}")]
    Unreachable(String),
}

/// What one read saw, for a summary line.
#[derive(Debug, Default)]
pub struct ReadSummary {
    /// Objects handed to the sink (top-level objects; those a workload controller created are
    /// judged through their owner and not counted).
    pub objects: usize,
    /// List requests made (pages).
    pub pages: usize,
    /// Kinds the API server served (listed without error, possibly empty).
    pub served: Vec<&'static str>,
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<serde_json::Value>,
}

/// Lists every audited kind cluster-wide, `page_size` objects per request, and gives each
/// top-level object to `sink`. Problems with one kind or one object become `diags`.
pub async fn read(
    client: &Client,
    page_size: u32,
    sink: &mut dyn FnMut(Object),
    diags: &mut Vec<Diagnostic>,
) -> Result<ReadSummary, ReadError> {
    let mut summary = ReadSummary::default();
    for (api_version, kind) in manifest::audited_kinds() {
        let resource = api_resource(api_version, kind);
        let url = DynamicObject::url_path(&resource, None);
        let mut params = ListParams::default().limit(page_size);
        loop {
            let page = match list_page(client, &url, &params).await {
                Ok(p) => p,
                Err(e) => {
                    diags.push(kind_error(&resource, e)?);
                    break;
                }
            };
            summary.pages += 1;
            if params.continue_token.is_none() {
                summary.served.push(kind);
            }
            for mut item in page.items {
                trim(kind, &mut item);
                let source = object_source(kind, &item);
                match manifest::decode_json(api_version, kind, item, &source) {
                    Some(Ok(Object::Workload(w))) if w.is_owned_by_workload() => {}
                    Some(Ok(object)) => {
                        summary.objects += 1;
                        sink(object);
                    }
                    Some(Err(d)) => diags.push(d),
                    // audited_kinds() lists decodable kinds only.
                    None => diags.push(cluster_diagnostic(format!("{kind}: no decoder"))),
                }
            }
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params.continue_token = Some(token),
                _ => break,
            }
        }
    }
    Ok(summary)
}

/// The API server's addresses (the `default/kubernetes` EndpointSlices), for
/// `network.api-reachable-without-need`. Needs only list on EndpointSlices in `default`.
pub async fn api_server_endpoints(
    client: &Client,
) -> Result<Vec<(std::net::IpAddr, u16)>, Diagnostic> {
    let api: kube::Api<EndpointSlice> = kube::Api::namespaced(client.clone(), "default");
    let params = ListParams::default().labels("kubernetes.io/service-name=kubernetes");
    match api.list(&params).await {
        Ok(list) => Ok(endpoints_of(&list.items)),
        Err(e) => Err(cluster_diagnostic(format!(
            "list EndpointSlices in default (the API server's addresses): {}; \
             network.api-reachable-without-need is not evaluated (pass --api-server IP:PORT)",
            describe(&e)
        ))),
    }
}

/// The ready addresses and TCP ports of EndpointSlices, sorted and deduplicated.
pub fn endpoints_of<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> Vec<(std::net::IpAddr, u16)> {
    let mut out = Vec::new();
    for slice in slices {
        let ports: Vec<u16> = slice
            .ports
            .iter()
            .flatten()
            .filter(|p| p.protocol.as_deref().is_none_or(|p| p == "TCP"))
            .filter_map(|p| p.port.and_then(|n| u16::try_from(n).ok()))
            .collect();
        for ep in &slice.endpoints {
            if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for ip in ep.addresses.iter().filter_map(|a| a.parse().ok()) {
                out.extend(ports.iter().map(|p| (ip, *p)));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn api_resource(api_version: &str, kind: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

async fn list_page(client: &Client, url: &str, params: &ListParams) -> Result<Page, kube::Error> {
    let request = kube::core::Request::new(url)
        .list(params)
        .map_err(kube::Error::BuildRequest)?;
    client.request::<Page>(request).await
}

/// Drops what the engine never reads before decoding (as the operator's caches do): field
/// managers everywhere, status except a Namespace's (its phase says it is terminating).
fn trim(kind: &str, item: &mut serde_json::Value) {
    if let Some(meta) = item.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.remove("managedFields");
    }
    if kind != "Namespace" {
        if let Some(obj) = item.as_object_mut() {
            obj.remove("status");
        }
    }
}

/// Names an object in a decode error: `cluster: Deployment shop/web`.
fn object_source(kind: &str, item: &serde_json::Value) -> Source {
    let meta = |k: &str| item["metadata"][k].as_str().unwrap_or("");
    let name = match meta("namespace") {
        "" => meta("name").to_string(),
        ns => format!("{ns}/{}", meta("name")),
    };
    Source {
        file: Arc::from(format!("cluster: {kind} {name}")),
        document: 0,
        line: 0,
    }
}

/// A failed list of one kind as a diagnostic, or the end of the read when the server cannot be
/// used at all.
fn kind_error(resource: &ApiResource, e: kube::Error) -> Result<Diagnostic, ReadError> {
    let what = format!(
        "list {} ({}, resource {})",
        resource.kind,
        resource.api_version,
        qualified(resource)
    );
    let message = match &e {
        kube::Error::Api(status) => match status.code {
            401 => return Err(ReadError::Unauthorized(status.message.clone())),
            403 => format!(
                "{what}: forbidden: {}; its findings are missing (grant list on it: \
                 deploy/audit-cluster/rbac.yaml)",
                status.message
            ),
            404 => {
                return Ok(Diagnostic {
                    severity: Severity::Skipped,
                    ..cluster_diagnostic(format!(
                        "{what}: not served by this API server: not audited"
                    ))
                })
            }
            410 => format!(
                "{what}: the list expired between pages (HTTP 410: it took longer than the API \
                 server keeps a list's snapshot); findings of this kind are incomplete: rerun, \
                 or raise --page-size"
            ),
            code => format!("{what}: HTTP {code}: {}", status.message),
        },
        _ => return Err(ReadError::Unreachable(describe(&e))),
    };
    Ok(cluster_diagnostic(message))
}

fn qualified(resource: &ApiResource) -> String {
    if resource.group.is_empty() {
        resource.plural.clone()
    } else {
        format!("{}.{}", resource.plural, resource.group)
    }
}

fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("HTTP {}: {}", status.code, status.message),
        other => {
            // The chain, so "connection refused" is not hidden behind "client error".
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                let s_text = s.to_string();
                if !text.contains(&s_text) {
                    text.push_str(": ");
                    text.push_str(&s_text);
                }
                source = s.source();
            }
            text
        }
    }
}

fn cluster_diagnostic(message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        file: "cluster".into(),
        document: None,
        line: None,
        message,
        skipped_kind: None,
    }
}

#[cfg(test)]
mod tests;
