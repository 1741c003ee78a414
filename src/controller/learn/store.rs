//! The learned aggregate, persisted compactly in ConfigMaps of Palisade's namespace: one per
//! account (`palisade-usage-<hash>`, at most [`MAX_ENTRIES_PER_ACCOUNT`] lines of ~60 bytes,
//! far below the 1 MiB object limit) and `palisade-usage` holding when collection started.
//! Writes merge: read the stored aggregate, union it with the local one, replace with the read
//! resourceVersion (a conflict retries), so replicas that both collect never lose each other's
//! requests.
//!
//! [`MAX_ENTRIES_PER_ACCOUNT`]: crate::policy::rbac::learn::usage::MAX_ENTRIES_PER_ACCOUNT

use super::LearnState;
use crate::policy::rbac::learn::usage::{decode, encode};
use crate::policy::rbac::learn::Account;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub const USAGE_LABEL: &str = "palisade.dev/usage";
const ACCOUNT_ANNOTATION: &str = "palisade.dev/account";
const INDEX_NAME: &str = "palisade-usage";
const FLUSH_EVERY: Duration = Duration::from_secs(10);
/// The longest window a baseline may set: older accesses are of no use to anyone.
const RETENTION: i64 = 2160 * 3600;

pub fn config_map_name(account: &Account) -> String {
    let h = crate::policy::rbac::learn::fnv64(&format!("{}/{}", account.namespace, account.name));
    format!("palisade-usage-{h:016x}")
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_string(),
            "palisade".to_string(),
        ),
        (USAGE_LABEL.to_string(), "account".to_string()),
    ])
}

/// Loads every persisted account into `state`.
pub async fn load(
    client: &Client,
    namespace: &str,
    state: &LearnState,
) -> Result<usize, kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let mut loaded = 0;
    let list = api
        .list(&ListParams::default().labels(&format!("{USAGE_LABEL}=account")))
        .await?;
    for cm in list.items {
        let name = cm.metadata.name.clone().unwrap_or_default();
        let account = cm
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ACCOUNT_ANNOTATION))
            .and_then(|a| Account::parse(a));
        let text = cm.data.as_ref().and_then(|d| d.get("usage"));
        match (account, text.map(|t| decode(t))) {
            (Some(account), Some(Ok(usage))) => {
                state.merge(&account, &usage);
                loaded += 1;
            }
            (_, Some(Err(e))) => {
                tracing::warn!(configmap = %name, error = %e, "unreadable learned usage; ignored")
            }
            _ => {
                tracing::warn!(configmap = %name, "learned usage without account or data; ignored")
            }
        }
    }
    if let Some(cm) = api.get_opt(INDEX_NAME).await? {
        let since = cm
            .data
            .as_ref()
            .and_then(|d| d.get("collectingSince"))
            .and_then(|s| s.parse().ok());
        state.started_at(since.unwrap_or(0));
    }
    Ok(loaded)
}

async fn write_merged(
    api: &Api<ConfigMap>,
    name: &str,
    annotation: &str,
    key: &str,
    state: &LearnState,
    account: Option<&Account>,
) -> Result<(), kube::Error> {
    for _ in 0..3 {
        let existing = api.get_opt(name).await?;
        let value = match account {
            Some(a) => {
                if let Some(text) = existing
                    .as_ref()
                    .and_then(|c| c.data.as_ref())
                    .and_then(|d| d.get(key))
                {
                    if let Ok(stored) = decode(text) {
                        if state.merge(a, &stored) {
                            state.changed.notify_waiters();
                        }
                    }
                }
                encode(&state.account(a).unwrap_or_default())
            }
            None => {
                if let Some(t) = existing
                    .as_ref()
                    .and_then(|c| c.data.as_ref())
                    .and_then(|d| d.get(key))
                    .and_then(|s| s.parse().ok())
                {
                    state.started_at(t);
                }
                state.collecting_since().to_string()
            }
        };
        let mut cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(labels()),
                annotations: (!annotation.is_empty()).then(|| {
                    BTreeMap::from([(ACCOUNT_ANNOTATION.to_string(), annotation.to_string())])
                }),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(key.to_string(), value)])),
            ..Default::default()
        };
        if account.is_none() {
            if let Some(l) = cm.metadata.labels.as_mut() {
                l.insert(USAGE_LABEL.to_string(), "index".to_string());
            }
        }
        let result = match existing {
            Some(old) => {
                if old.data == cm.data && old.metadata.labels == cm.metadata.labels {
                    return Ok(()); // nothing new: no write
                }
                cm.metadata.resource_version = old.metadata.resource_version;
                api.replace(
                    name,
                    &PostParams {
                        field_manager: Some("palisade".into()),
                        ..Default::default()
                    },
                    &cm,
                )
                .await
            }
            None => {
                api.create(
                    &PostParams {
                        field_manager: Some("palisade".into()),
                        ..Default::default()
                    },
                    &cm,
                )
                .await
            }
        };
        match result {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => continue, // another replica wrote: merge again
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes changed accounts every few seconds, until the task is dropped.
pub async fn flush_loop(client: Client, namespace: String, state: Arc<LearnState>) {
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    let mut index_written = 0;
    loop {
        tick.tick().await;
        state.expire(k8s_openapi::jiff::Timestamp::now().as_second() - RETENTION);
        let dirty = state.take_dirty();
        if dirty.is_empty() {
            continue;
        }
        let since = state.collecting_since();
        if since != index_written {
            match write_merged(&api, INDEX_NAME, "", "collectingSince", &state, None).await {
                Ok(()) => index_written = since,
                Err(e) => {
                    tracing::warn!(error = %e, "persisting the learning start failed; retrying")
                }
            }
        }
        let mut failed = Vec::new();
        for account in dirty {
            let name = config_map_name(&account);
            if let Err(e) = write_merged(
                &api,
                &name,
                &account.to_string(),
                "usage",
                &state,
                Some(&account),
            )
            .await
            {
                tracing::warn!(%account, error = %e, "persisting learned usage failed; retrying");
                failed.push(account);
            }
        }
        state.mark_dirty(failed);
        state.changed.notify_waiters();
    }
}
