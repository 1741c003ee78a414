//! Incremental planning: what the last plan of a baseline found per namespace, so that the next
//! one rebuilds only the namespaces whose objects changed.
//!
//! A namespace's generated objects depend on the namespace itself (labels), the objects in it
//! (workloads, Services, Palisade's generated objects) and inputs shared by every namespace (the
//! compiled spec, the API server's addresses, webhooks, the grantable ceiling, learned rules,
//! contested objects). The triggers say which namespaces changed ([`Changed`]); the shared
//! inputs are compared by value ([`Globals`]), and any difference plans from scratch. So does the
//! periodic resync, so a missed trigger costs at most one resync interval.

use crate::policy::desired::{NamespaceObjects, WebhookBackend};
use k8s_openapi::api::rbac::v1::PolicyRule;
use k8s_openapi::jiff::Timestamp;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What changed since a baseline's last reconcile, as its triggers saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Changed {
    /// Unknown or cluster-wide (a requeue, the baseline itself, a cluster-scoped object): plan
    /// from scratch.
    #[default]
    Everything,
    /// Only objects in these namespaces (or the Namespace objects themselves).
    Namespaces(BTreeSet<String>),
}

impl Changed {
    /// Folds in a change of an object in `namespace` (`None`: cluster-scoped, or unknown).
    pub fn add(&mut self, namespace: Option<&str>) {
        match (namespace, &mut *self) {
            (Some(ns), Changed::Namespaces(set)) => {
                set.insert(ns.to_string());
            }
            _ => *self = Changed::Everything,
        }
    }

    pub fn namespace(ns: &str) -> Self {
        Changed::Namespaces(BTreeSet::from([ns.to_string()]))
    }
}

/// The inputs every namespace's objects depend on. A plan whose globals differ from the memo's
/// rebuilds every namespace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Globals {
    pub uid: String,
    pub generation: Option<i64>,
    /// The next exemption expiry of the compiled spec: the compile changes then.
    pub expiry: Option<Timestamp>,
    pub api_server: Vec<(std::net::IpAddr, u16)>,
    pub webhooks: BTreeMap<String, Vec<WebhookBackend>>,
    pub ceiling: Vec<PolicyRule>,
    pub learned: crate::controller::learned::ReadyRules,
    pub contested: Vec<String>,
    /// Whether each optional kind is served.
    pub served: Vec<bool>,
}

/// One owned namespace as the last plan left it (its writes executed).
#[derive(Clone, Debug, PartialEq)]
pub struct Namespace {
    pub objects: Arc<NamespaceObjects>,
    /// Learned Role rules left out (outside the grantable ceiling), for status.
    pub refused: Vec<String>,
    /// Wanted objects whose names are taken, left to another writer, or of unserved kinds.
    pub foreign: Vec<String>,
    pub contested: Vec<String>,
    pub unserved: Vec<String>,
    /// The namespace carries this baseline's Pod Security labels (once its patch is applied).
    pub labelled: bool,
    /// Wanted Pod Security labels another manager holds with another value (left alone).
    pub label_foreign: Vec<String>,
}

/// What the last successful converge of a baseline planned. Kept only once its writes all
/// succeeded: a failed write leaves the cluster short of the memo, so the next plan starts over.
#[derive(Clone, Debug, Default)]
pub struct Memo {
    pub globals: Globals,
    /// When the last from-scratch plan ran: the resync plans from scratch again.
    pub from_scratch_at: Option<Timestamp>,
    pub namespaces: BTreeMap<String, Namespace>,
    pub audit: Option<Arc<Audited>>,
    /// When `audit` was made.
    pub audited_at: Option<Timestamp>,
    /// Something the audit reads changed since `audit` was made (a reconcile within the audit
    /// interval reused it): the next one after the interval audits again.
    pub audit_behind: bool,
    /// How long making `audit` took: on a large cluster the interval between audits grows with
    /// it (see [`super::audit_interval`]).
    pub audit_took: std::time::Duration,
    /// The per-workload checks' verdicts of the last audit, reused for unchanged workloads.
    pub verdicts: crate::policy::verdicts::Verdicts,
}

/// An audit and the OpenReports reports made of it.
#[derive(Debug)]
pub struct Audited {
    pub report: Arc<crate::policy::audit::AuditReport>,
    pub reports: Option<Arc<Vec<serde_json::Value>>>,
}

/// Which namespaces a plan rebuilds and where it may prune.
pub enum Scope {
    /// Every owned namespace; prune anywhere.
    Everything,
    /// Rebuild these owned namespaces; prune in these (rebuilt, changed, or no longer owned).
    Namespaces {
        rebuild: BTreeSet<String>,
        prune: BTreeSet<String>,
    },
}

impl Scope {
    /// The scope of a plan given the previous memo, what changed, the globals now and the owned
    /// namespaces now.
    pub fn of(
        previous: Option<&Memo>,
        changed: &Changed,
        globals: &Globals,
        owned: &BTreeSet<String>,
        now: Timestamp,
        resync: std::time::Duration,
    ) -> Scope {
        let (Some(memo), Changed::Namespaces(changed)) = (previous, changed) else {
            return Scope::Everything;
        };
        let resync_due = memo
            .from_scratch_at
            .is_none_or(|t| now.as_second() - t.as_second() >= resync.as_secs() as i64);
        if resync_due || memo.globals != *globals {
            return Scope::Everything;
        }
        // Namespaces that became owned or stopped being owned count as changed.
        let mut prune: BTreeSet<String> = changed.clone();
        prune.extend(
            owned
                .iter()
                .filter(|n| !memo.namespaces.contains_key(*n))
                .cloned(),
        );
        prune.extend(
            memo.namespaces
                .keys()
                .filter(|n| !owned.contains(*n))
                .cloned(),
        );
        let rebuild = prune
            .iter()
            .filter(|n| owned.contains(*n))
            .cloned()
            .collect();
        Scope::Namespaces { rebuild, prune }
    }

    pub fn rebuilds(&self, ns: &str) -> bool {
        match self {
            Scope::Everything => true,
            Scope::Namespaces { rebuild, .. } => rebuild.contains(ns),
        }
    }

    pub fn prunes_in(&self, ns: &str) -> bool {
        match self {
            Scope::Everything => true,
            Scope::Namespaces { prune, .. } => prune.contains(ns),
        }
    }

    pub fn is_everything(&self) -> bool {
        matches!(self, Scope::Everything)
    }
}
