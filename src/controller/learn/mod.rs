//! Learning least privilege in the operator: every replica serves the audit webhook and
//! records what service accounts do into one bounded [`Usage`]; the aggregate is persisted in
//! ConfigMaps of Palisade's namespace (`store`), merged on write, so restarts and failover keep
//! it; reconciles read it to propose and generate learned Roles and report unused permissions.

pub mod store;
pub mod webhook;

use crate::policy::rbac::learn::{Account, Request, Usage};
use std::collections::BTreeSet;
use std::sync::Mutex;

/// Options of the learner (`palisade run --audit-webhook-*`).
#[derive(Clone, Debug)]
pub struct LearnConfig {
    pub addr: std::net::SocketAddr,
    pub tls: webhook::TlsFiles,
    /// Where the aggregate is persisted (Palisade's own namespace).
    pub namespace: String,
}

/// The shared aggregate.
#[derive(Default)]
pub struct LearnState {
    inner: Mutex<Inner>,
    /// Signalled after a flush that changed something: baselines that learn reconcile again.
    pub changed: tokio::sync::Notify,
}

#[derive(Default)]
struct Inner {
    usage: Usage,
    /// Accounts changed since the last flush.
    dirty: BTreeSet<Account>,
    /// When the first event arrived (Unix seconds; 0: none yet). A window counts from here:
    /// before any event, nothing says the webhook is even configured.
    collecting_since: i64,
}

fn now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

impl LearnState {
    pub fn record(&self, requests: &[Request]) {
        if requests.is_empty() {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.collecting_since == 0 {
            inner.collecting_since = now();
        }
        for r in requests {
            if inner.usage.record(r) {
                inner.dirty.insert(r.account.clone());
            }
        }
    }

    /// Runs `f` on the aggregate and the time collection started.
    pub fn with<T>(&self, f: impl FnOnce(&Usage, i64) -> T) -> T {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&inner.usage, inner.collecting_since)
    }

    fn take_dirty(&self) -> BTreeSet<Account> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut inner.dirty)
    }

    fn mark_dirty(&self, accounts: impl IntoIterator<Item = Account>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.dirty.extend(accounts);
    }

    /// Merges what is persisted (or another replica wrote); returns whether anything changed.
    fn merge(&self, account: &Account, other: &crate::policy::rbac::learn::AccountUsage) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let before = inner.usage.accounts.get(account).cloned();
        inner.usage.merge(account, other);
        inner.usage.accounts.get(account) != before.as_ref()
    }

    fn account(&self, account: &Account) -> Option<crate::policy::rbac::learn::AccountUsage> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.usage.accounts.get(account).cloned()
    }

    fn collecting_since(&self) -> i64 {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .collecting_since
    }

    /// Keeps the earlier start (another replica's, or a previous run's).
    fn started_at(&self, t: i64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if t > 0 && (inner.collecting_since == 0 || t < inner.collecting_since) {
            inner.collecting_since = t;
        }
    }

    fn expire(&self, cutoff: i64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.usage.expire(cutoff);
    }
}
