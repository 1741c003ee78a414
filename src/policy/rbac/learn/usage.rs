//! What each ServiceAccount did, aggregated with bounded memory: the distinct accesses (verb,
//! group, resource, namespace, name) and when each was last seen. Bounds (the state never
//! grows past them, whatever the API server sends):
//! - [`MAX_NAMES`] names per (account, verb, resource, namespace): one more collapses them into
//!   "any name" (the learned rule then has no `resourceNames`, as it would have anyway);
//! - [`MAX_ENTRIES_PER_ACCOUNT`] accesses per account and [`MAX_ENTRIES`] in total, and
//!   [`MAX_ACCOUNTS`] accounts; past them a request is counted as dropped, and an account with
//!   drops is *incomplete*: its learned Role is shown but never enforced.
//!
//! Filled to the bounds the state holds 12.6 MiB (263 bytes an access: five short strings and a
//! timestamp in a B-tree; `tests/learn_memory.rs` keeps it under 20 MiB); a typical controller
//! uses 10-60 accesses.

use super::event::{Access, Account, Request, Target};
use std::collections::BTreeMap;

pub const MAX_NAMES: usize = 8;
pub const MAX_ENTRIES_PER_ACCOUNT: usize = 256;
pub const MAX_ENTRIES: usize = 50_000;
pub const MAX_ACCOUNTS: usize = 5_000;

/// What one account did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountUsage {
    /// Access -> last seen (Unix seconds).
    pub accesses: BTreeMap<Access, i64>,
    /// First request recorded (Unix seconds).
    pub first_seen: i64,
    /// Allowed requests not recorded because a bound was reached.
    pub dropped: u64,
    /// Requests the authorizer denied (never learned).
    pub denied: u64,
}

impl AccountUsage {
    pub fn complete(&self) -> bool {
        self.dropped == 0
    }

    /// The accesses seen at or after `since`.
    pub fn used_since(&self, since: i64) -> impl Iterator<Item = &Access> {
        self.accesses
            .iter()
            .filter(move |(_, &at)| at >= since)
            .map(|(a, _)| a)
    }
}

/// Every account's usage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub accounts: BTreeMap<Account, AccountUsage>,
    entries: usize,
    /// Requests of accounts not recorded because [`MAX_ACCOUNTS`] was reached.
    pub dropped_accounts: u64,
}

/// The access with its name removed: the key names collapse into.
fn unnamed(access: &Access) -> Option<Access> {
    match &access.target {
        Target::Resource {
            group,
            resource,
            namespace,
            name,
        } if !name.is_empty() => Some(Access {
            verb: access.verb.clone(),
            target: Target::Resource {
                group: group.clone(),
                resource: resource.clone(),
                namespace: namespace.clone(),
                name: String::new(),
            },
        }),
        _ => None,
    }
}

fn same_unnamed(a: &Access, key: &Access) -> bool {
    match (&a.target, &key.target) {
        (
            Target::Resource {
                group: g1,
                resource: r1,
                namespace: n1,
                ..
            },
            Target::Resource {
                group: g2,
                resource: r2,
                namespace: n2,
                ..
            },
        ) => a.verb == key.verb && g1 == g2 && r1 == r2 && n1 == n2,
        _ => false,
    }
}

impl Usage {
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// A copy holding only the accounts `keep` selects (a reconcile's covered namespaces).
    pub fn subset(&self, keep: impl Fn(&Account) -> bool) -> Usage {
        let accounts: BTreeMap<Account, AccountUsage> = self
            .accounts
            .iter()
            .filter(|(a, _)| keep(a))
            .map(|(a, u)| (a.clone(), u.clone()))
            .collect();
        let entries = accounts.values().map(|u| u.accesses.len()).sum();
        Usage {
            accounts,
            entries,
            dropped_accounts: 0,
        }
    }

    /// Records one request; true when the state changed (a new access, or a later time).
    pub fn record(&mut self, req: &Request) -> bool {
        if !self.accounts.contains_key(&req.account) && self.accounts.len() >= MAX_ACCOUNTS {
            self.dropped_accounts += 1;
            return false;
        }
        let usage = self.accounts.entry(req.account.clone()).or_default();
        if usage.first_seen == 0 || req.at < usage.first_seen {
            usage.first_seen = req.at;
        }
        if !req.allowed {
            usage.denied += 1;
            return true;
        }
        let mut access = req.access.clone();
        if let Some(any) = unnamed(&access) {
            if usage.accesses.contains_key(&any) {
                access = any; // "any name" already covers this one
            } else {
                let names = usage
                    .accesses
                    .range(&any..)
                    .take_while(|(a, _)| same_unnamed(a, &any))
                    .count();
                if names >= MAX_NAMES && !usage.accesses.contains_key(&access) {
                    // Collapse the names into one "any name" entry.
                    let named: Vec<Access> = usage
                        .accesses
                        .range(&any..)
                        .take_while(|(a, _)| same_unnamed(a, &any))
                        .map(|(a, _)| a.clone())
                        .collect();
                    let mut last = req.at;
                    for a in named {
                        last = last.max(usage.accesses.remove(&a).unwrap_or(0));
                        self.entries -= 1;
                    }
                    usage.accesses.insert(any, last);
                    self.entries += 1;
                    return true;
                }
            }
        }
        if let Some(at) = usage.accesses.get_mut(&access) {
            if *at >= req.at {
                return false;
            }
            *at = req.at;
            return true;
        }
        if usage.accesses.len() >= MAX_ENTRIES_PER_ACCOUNT || self.entries >= MAX_ENTRIES {
            usage.dropped += 1;
            return true;
        }
        usage.accesses.insert(access, req.at);
        self.entries += 1;
        true
    }

    /// Forgets accesses last seen before `cutoff`, and accounts with nothing left that were
    /// first seen before it (a deleted namespace's accounts do not stay forever).
    pub fn expire(&mut self, cutoff: i64) {
        let mut removed = 0;
        self.accounts.retain(|_, usage| {
            let before = usage.accesses.len();
            usage.accesses.retain(|_, at| *at >= cutoff);
            removed += before - usage.accesses.len();
            !usage.accesses.is_empty() || usage.first_seen >= cutoff
        });
        self.entries -= removed;
    }

    /// Merges another aggregate (another replica's, or the persisted one): union of accesses,
    /// the later time of each; the bounds still hold.
    pub fn merge(&mut self, account: &Account, other: &AccountUsage) {
        for (access, &at) in &other.accesses {
            let req = Request {
                account: account.clone(),
                access: access.clone(),
                at,
                allowed: true,
            };
            self.record(&req);
        }
        if let Some(u) = self.accounts.get_mut(account) {
            if other.first_seen != 0 && (u.first_seen == 0 || other.first_seen < u.first_seen) {
                u.first_seen = other.first_seen;
            }
            u.dropped = u.dropped.max(other.dropped);
            u.denied = u.denied.max(other.denied);
        }
    }
}

/// The compact text form one account's usage is persisted in (one line per access, fields
/// separated by spaces, `-` for empty; names and paths cannot contain spaces):
/// `first_seen <t>`, `dropped <n>`, `denied <n>`, then `r <verb> <group> <resource> <ns> <name> <t>`
/// or `u <verb> <path> <t>`.
pub fn encode(usage: &AccountUsage) -> String {
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    let mut out = format!(
        "first_seen {}\ndropped {}\ndenied {}\n",
        usage.first_seen, usage.dropped, usage.denied
    );
    for (a, at) in &usage.accesses {
        match &a.target {
            Target::Resource {
                group,
                resource,
                namespace,
                name,
            } => out.push_str(&format!(
                "r {} {} {} {} {} {at}\n",
                a.verb,
                dash(group),
                resource,
                dash(namespace),
                dash(name)
            )),
            Target::NonResource { path } => out.push_str(&format!("u {} {path} {at}\n", a.verb)),
        }
    }
    out
}

/// Reads [`encode`]'s form; a malformed line is an error naming its number.
pub fn decode(text: &str) -> Result<AccountUsage, String> {
    let undash = |s: &str| {
        if s == "-" {
            String::new()
        } else {
            s.to_string()
        }
    };
    let mut usage = AccountUsage::default();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split(' ').collect();
        let bad = || format!("line {}: {line:?}", i + 1);
        let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
        match f.as_slice() {
            [] | [""] => {}
            ["first_seen", t] => usage.first_seen = num(t)?,
            ["dropped", n] => usage.dropped = num(n)?.max(0) as u64,
            ["denied", n] => usage.denied = num(n)?.max(0) as u64,
            ["r", verb, group, resource, ns, name, t] => {
                let access = Access {
                    verb: verb.to_string(),
                    target: Target::Resource {
                        group: undash(group),
                        resource: resource.to_string(),
                        namespace: undash(ns),
                        name: undash(name),
                    },
                };
                usage.accesses.insert(access, num(t)?);
            }
            ["u", verb, path, t] => {
                let access = Access {
                    verb: verb.to_string(),
                    target: Target::NonResource {
                        path: path.to_string(),
                    },
                };
                usage.accesses.insert(access, num(t)?);
            }
            _ => return Err(bad()),
        }
    }
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn req(verb: &str, resource: &str, ns: &str, name: &str, at: i64) -> Request {
        Request {
            account: Account::new("shop", "api"),
            access: Access {
                verb: verb.into(),
                target: Target::Resource {
                    group: String::new(),
                    resource: resource.into(),
                    namespace: ns.into(),
                    name: name.into(),
                },
            },
            at,
            allowed: true,
        }
    }

    #[test]
    fn records_distinct_accesses_with_their_last_time() {
        let mut u = Usage::default();
        assert!(u.record(&req("get", "configmaps", "shop", "a", 10)));
        assert!(
            !u.record(&req("get", "configmaps", "shop", "a", 5)),
            "older: nothing new"
        );
        assert!(u.record(&req("get", "configmaps", "shop", "a", 20)));
        assert!(u.record(&req("list", "configmaps", "shop", "", 15)));
        let acc = &u.accounts[&Account::new("shop", "api")];
        assert_eq!(acc.accesses.len(), 2);
        assert_eq!(
            acc.first_seen, 5,
            "the earliest request, even if it repeats a later one"
        );
        assert_eq!(u.entries(), 2);
        assert_eq!(acc.accesses.values().copied().max(), Some(20));
    }

    #[test]
    fn denied_requests_are_counted_not_learned() {
        let mut u = Usage::default();
        let mut r = req("delete", "secrets", "shop", "db", 10);
        r.allowed = false;
        u.record(&r);
        let acc = &u.accounts[&Account::new("shop", "api")];
        assert!(acc.accesses.is_empty());
        assert_eq!(acc.denied, 1);
    }

    #[test]
    fn many_names_collapse_into_any_name() {
        let mut u = Usage::default();
        for i in 0..MAX_NAMES {
            u.record(&req(
                "get",
                "configmaps",
                "shop",
                &format!("c{i}"),
                i as i64 + 1,
            ));
        }
        assert_eq!(u.entries(), MAX_NAMES);
        u.record(&req("get", "configmaps", "shop", "one-more", 100));
        let acc = &u.accounts[&Account::new("shop", "api")];
        assert_eq!(acc.accesses.len(), 1);
        assert_eq!(u.entries(), 1);
        let (a, &at) = acc.accesses.iter().next().unwrap();
        assert!(matches!(&a.target, Target::Resource { name, .. } if name.is_empty()));
        assert_eq!(at, 100);
        // later names land on the unnamed entry
        u.record(&req("get", "configmaps", "shop", "c1", 200));
        assert_eq!(u.entries(), 1);
        assert!(u.accounts[&Account::new("shop", "api")].complete());
    }

    #[test]
    fn bounds_hold_and_make_the_account_incomplete() {
        let mut u = Usage::default();
        for i in 0..MAX_ENTRIES_PER_ACCOUNT + 10 {
            u.record(&req("get", &format!("r{i}"), "shop", "", 1));
        }
        let acc = &u.accounts[&Account::new("shop", "api")];
        assert_eq!(acc.accesses.len(), MAX_ENTRIES_PER_ACCOUNT);
        assert_eq!(acc.dropped, 10);
        assert!(!acc.complete());
        let mut many = Usage::default();
        for i in 0..MAX_ACCOUNTS + 3 {
            let mut r = req("get", "pods", "ns", "", 1);
            r.account = Account::new("ns", &format!("sa{i}"));
            many.record(&r);
        }
        assert_eq!(many.accounts.len(), MAX_ACCOUNTS);
        assert_eq!(many.dropped_accounts, 3);
    }

    #[test]
    fn expire_and_merge() {
        let mut u = Usage::default();
        u.record(&req("get", "configmaps", "shop", "a", 10));
        u.record(&req("list", "pods", "shop", "", 50));
        u.expire(20);
        assert_eq!(u.entries(), 1);
        let mut gone = Usage::default();
        gone.record(&req("get", "configmaps", "shop", "a", 10));
        gone.expire(20);
        assert!(
            gone.accounts.is_empty(),
            "an account with nothing left is forgotten"
        );
        assert_eq!(gone.entries(), 0);
        let mut other = Usage::default();
        other.record(&req("list", "pods", "shop", "", 70));
        other.record(&req("watch", "pods", "shop", "", 5));
        let acc = Account::new("shop", "api");
        u.merge(&acc, &other.accounts[&acc]);
        let merged = &u.accounts[&acc];
        assert_eq!(merged.accesses.len(), 2);
        assert_eq!(merged.first_seen, 5);
        assert_eq!(merged.accesses.values().copied().max(), Some(70));
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut u = Usage::default();
        u.record(&req("get", "configmaps", "shop", "a", 10));
        u.record(&req("list", "namespaces", "", "", 11));
        let mut url = req("get", "x", "", "", 12);
        url.access.target = Target::NonResource {
            path: "/healthz".into(),
        };
        u.record(&url);
        let acc = &u.accounts[&Account::new("shop", "api")];
        let text = encode(acc);
        assert!(text.contains("r list - namespaces - - 11\n"), "{text}");
        assert_eq!(&decode(&text).unwrap(), acc);
        assert_eq!(decode("r get a b\n").unwrap_err(), "line 1: \"r get a b\"");
        assert!(decode("first_seen soon").is_err());
    }
}
