//! Kubernetes audit events (`audit.k8s.io/v1` Event), read as what a learner needs: who made
//! the request, what it touched, when, and whether it was allowed. The API server writes them
//! one JSON object per line to `--audit-log-path` and POSTs them as an `EventList` to an audit
//! webhook; both are read here. Only the fields used are decoded (Metadata level is enough).

use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;
use std::collections::BTreeMap;

/// A ServiceAccount, as the API server names its user `system:serviceaccount:<ns>:<name>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Account {
    pub namespace: String,
    pub name: String,
}

impl Account {
    pub fn new(namespace: &str, name: &str) -> Self {
        Account {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// `system:serviceaccount:<ns>:<name>` -> the account; other users -> `None`.
    pub fn from_username(user: &str) -> Option<Self> {
        let rest = user.strip_prefix("system:serviceaccount:")?;
        let (ns, name) = rest.split_once(':')?;
        (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then(|| Account::new(ns, name))
    }

    /// `NS/NAME` (the CLI's form) or `NS:NAME` (audit2rbac's).
    pub fn parse(s: &str) -> Option<Self> {
        let (ns, name) = s.split_once('/').or_else(|| s.split_once(':'))?;
        (!ns.is_empty() && !name.is_empty() && !name.contains(['/', ':']))
            .then(|| Account::new(ns, name))
    }
}

impl std::fmt::Display for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What one request touched. Resource requests name a resource (with `/subresource`), its API
/// group, namespace (`""`: cluster-scoped or across all namespaces) and name (`""`: no name);
/// other requests (`/healthz`, `/version`, discovery) are non-resource URLs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Resource {
        group: String,
        resource: String,
        namespace: String,
        name: String,
    },
    NonResource {
        path: String,
    },
}

/// One request: a verb on a target.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Access {
    pub verb: String,
    pub target: Target,
}

/// A request as the learner records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub account: Account,
    pub access: Access,
    /// Seconds since the Unix epoch (the event's `stageTimestamp`).
    pub at: i64,
    /// The authorizer allowed it. Denied requests are counted, never learned: learning them
    /// would let a stolen token grant itself whatever it asks for.
    pub allowed: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEvent {
    #[serde(default)]
    stage: String,
    #[serde(default)]
    verb: String,
    #[serde(default, rename = "requestURI")]
    request_uri: String,
    #[serde(default)]
    user: RawUser,
    impersonated_user: Option<RawUser>,
    object_ref: Option<RawObjectRef>,
    response_status: Option<RawStatus>,
    #[serde(default)]
    stage_timestamp: String,
    #[serde(default)]
    request_received_timestamp: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Default, Deserialize)]
struct RawUser {
    #[serde(default)]
    username: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawObjectRef {
    #[serde(default)]
    resource: String,
    #[serde(default)]
    subresource: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    api_group: String,
}

#[derive(Deserialize)]
struct RawStatus {
    #[serde(default)]
    code: u16,
}

#[derive(Deserialize)]
struct RawEventList {
    #[serde(default)]
    kind: String,
    items: Vec<serde_json::Value>,
}

/// Why an event line could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("not a JSON audit event: {0}")]
    Json(String),
    #[error("field {field}: {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
}

const DECISION: &str = "authorization.k8s.io/decision";

/// One audit event -> the request of a ServiceAccount it records. `Ok(None)`: not a
/// ServiceAccount's request, or a stage that repeats another (`RequestReceived` comes before
/// the authorizer decided; a long watch is recorded at `ResponseStarted` and again at the end).
pub fn parse_event(value: serde_json::Value) -> Result<Option<Request>, EventError> {
    let raw: RawEvent =
        serde_json::from_value(value).map_err(|e| EventError::Json(e.to_string()))?;
    if raw.stage == "RequestReceived" {
        return Ok(None);
    }
    // An impersonated request is authorized as the impersonated user.
    let user = raw.impersonated_user.as_ref().unwrap_or(&raw.user);
    let Some(account) = Account::from_username(&user.username) else {
        return Ok(None);
    };
    if raw.verb.is_empty() {
        return Err(EventError::Field {
            field: "verb",
            problem: "missing".into(),
        });
    }
    let stamp = if raw.stage_timestamp.is_empty() {
        &raw.request_received_timestamp
    } else {
        &raw.stage_timestamp
    };
    let at = stamp
        .parse::<Timestamp>()
        .map_err(|e| EventError::Field {
            field: "stageTimestamp",
            problem: format!("{stamp:?}: {e}"),
        })?
        .as_second();
    let allowed = match raw.annotations.get(DECISION).map(String::as_str) {
        Some("allow") => true,
        Some(_) => false,
        // Without the annotation (a policy that drops it), the response code tells.
        None => !matches!(
            raw.response_status.as_ref().map(|s| s.code),
            Some(401 | 403)
        ),
    };
    let target = match raw.object_ref {
        Some(o) if !o.resource.is_empty() => Target::Resource {
            group: o.api_group,
            resource: if o.subresource.is_empty() {
                o.resource
            } else {
                format!("{}/{}", o.resource, o.subresource)
            },
            namespace: o.namespace,
            name: o.name,
        },
        _ => Target::NonResource {
            path: raw
                .request_uri
                .split('?')
                .next()
                .unwrap_or_default()
                .to_string(),
        },
    };
    Ok(Some(Request {
        account,
        access: Access {
            verb: raw.verb,
            target,
        },
        at,
        allowed,
    }))
}

/// The items of an audit webhook's `EventList` body, each parsed on its own (one bad event
/// does not lose the batch).
pub fn parse_event_list(
    body: &[u8],
) -> Result<Vec<Result<Option<Request>, EventError>>, EventError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| EventError::Json(e.to_string()))?;
    if !value.is_object() {
        return Err(EventError::Json(
            "an EventList must be a JSON object".into(),
        ));
    }
    let list: RawEventList =
        serde_json::from_value(value).map_err(|e| EventError::Json(e.to_string()))?;
    if !list.kind.is_empty() && list.kind != "EventList" {
        return Err(EventError::Field {
            field: "kind",
            problem: format!("{:?} is not EventList", list.kind),
        });
    }
    Ok(list.items.into_iter().map(parse_event).collect())
}

/// One line of an audit log file. Blank lines are `Ok(None)`.
pub fn parse_log_line(line: &str) -> Result<Option<Request>, EventError> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| EventError::Json(e.to_string()))?;
    parse_event(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(extra: serde_json::Value) -> serde_json::Value {
        let mut e = serde_json::json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
            "auditID": "a", "stage": "ResponseComplete",
            "requestURI": "/api/v1/namespaces/shop/configmaps/settings", "verb": "get",
            "user": {"username": "system:serviceaccount:shop:api", "groups": ["system:serviceaccounts"]},
            "objectRef": {"resource": "configmaps", "namespace": "shop", "name": "settings", "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": 200},
            "requestReceivedTimestamp": "2026-12-01T10:00:00.000000Z",
            "stageTimestamp": "2026-12-01T10:00:00.002000Z",
            "annotations": {"authorization.k8s.io/decision": "allow"}
        });
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    }

    #[test]
    fn a_service_accounts_resource_request() {
        let r = parse_event(event(serde_json::json!({}))).unwrap().unwrap();
        assert_eq!(r.account, Account::new("shop", "api"));
        assert_eq!(r.access.verb, "get");
        assert_eq!(
            r.access.target,
            Target::Resource {
                group: "".into(),
                resource: "configmaps".into(),
                namespace: "shop".into(),
                name: "settings".into()
            }
        );
        assert!(r.allowed);
        assert_eq!(r.at, 1_796_119_200);
    }

    #[test]
    fn subresources_groups_and_non_resource_urls() {
        let r = parse_event(event(serde_json::json!({
            "verb": "update",
            "objectRef": {"resource": "deployments", "subresource": "scale", "apiGroup": "apps", "namespace": "shop", "name": "web"}
        })))
        .unwrap()
        .unwrap();
        assert!(
            matches!(&r.access.target, Target::Resource { group, resource, .. } if group == "apps" && resource == "deployments/scale")
        );
        let r = parse_event(event(
            serde_json::json!({"requestURI": "/healthz?verbose=1", "objectRef": null}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            r.access.target,
            Target::NonResource {
                path: "/healthz".into()
            }
        );
    }

    #[test]
    fn denied_impersonated_and_foreign_events() {
        let denied = event(
            serde_json::json!({"annotations": {"authorization.k8s.io/decision": "forbid"}, "responseStatus": {"code": 403}}),
        );
        assert!(!parse_event(denied).unwrap().unwrap().allowed);
        let no_annotation =
            event(serde_json::json!({"annotations": {}, "responseStatus": {"code": 403}}));
        assert!(!parse_event(no_annotation).unwrap().unwrap().allowed);
        let imp = event(
            serde_json::json!({"user": {"username": "alice"}, "impersonatedUser": {"username": "system:serviceaccount:shop:db"}}),
        );
        assert_eq!(
            parse_event(imp).unwrap().unwrap().account,
            Account::new("shop", "db")
        );
        let user = event(serde_json::json!({"user": {"username": "alice"}}));
        assert_eq!(parse_event(user).unwrap(), None);
        let early = event(serde_json::json!({"stage": "RequestReceived"}));
        assert_eq!(parse_event(early).unwrap(), None);
    }

    #[test]
    fn bad_events_name_the_problem() {
        assert!(matches!(
            parse_log_line("{not json"),
            Err(EventError::Json(_))
        ));
        let e = parse_event(event(serde_json::json!({"stageTimestamp": "yesterday"}))).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("field stageTimestamp: \"yesterday\""),
            "{e}"
        );
        assert_eq!(parse_log_line("   ").unwrap(), None);
        let list = parse_event_list(br#"{"kind":"EventList","items":[{"verb":1}]}"#).unwrap();
        assert!(list[0].is_err());
        assert!(parse_event_list(b"[]").is_err());
    }

    #[test]
    fn account_names() {
        assert_eq!(
            Account::from_username("system:serviceaccount:a:b"),
            Some(Account::new("a", "b"))
        );
        assert_eq!(Account::from_username("system:serviceaccount:a"), None);
        assert_eq!(Account::from_username("system:serviceaccount:a:b:c"), None);
        assert_eq!(
            Account::parse("shop/api"),
            Some(Account::new("shop", "api"))
        );
        assert_eq!(
            Account::parse("shop:api"),
            Some(Account::new("shop", "api"))
        );
        assert_eq!(Account::parse("shop"), None);
    }
}
