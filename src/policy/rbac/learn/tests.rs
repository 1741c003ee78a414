use super::*;
use crate::policy::finding::Finding;
use crate::policy::rbac::RbacObjects;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use std::collections::BTreeSet;

fn line(user: &str, verb: &str, resource: &str, ns: &str, name: &str, at: &str) -> String {
    serde_json::json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "stage": "ResponseComplete",
        "verb": verb, "requestURI": "/x", "user": {"username": user},
        "objectRef": {"resource": resource, "namespace": ns, "name": name},
        "stageTimestamp": at, "annotations": {"authorization.k8s.io/decision": "allow"}
    })
    .to_string()
}

#[test]
fn reading_a_log_keeps_going_past_bad_lines_and_names_them() {
    let api = "system:serviceaccount:shop:api";
    let log = [
        line(
            api,
            "get",
            "configmaps",
            "shop",
            "settings",
            "2026-12-01T10:00:00Z",
        ),
        "{broken".to_string(),
        line(
            "alice",
            "delete",
            "pods",
            "shop",
            "x",
            "2026-12-01T10:00:01Z",
        ),
        line(
            "system:serviceaccount:shop:db",
            "list",
            "pods",
            "shop",
            "",
            "2026-12-01T10:00:02Z",
        ),
        line(api, "list", "pods", "shop", "", "2026-12-01T11:00:00Z"),
    ]
    .join("\n");
    let mut read = LogRead::default();
    read.read(log.as_bytes(), "audit.log", None).unwrap();
    assert_eq!((read.lines, read.requests, read.errors_total), (5, 3, 1));
    assert!(
        read.errors[0].starts_with("audit.log:2: not a JSON audit event"),
        "{:?}",
        read.errors
    );
    assert_eq!(read.last - read.first, 3600);
    assert_eq!(read.usage.accounts.len(), 2);

    let mut only = LogRead::default();
    let api = Account::new("shop", "api");
    only.read(log.as_bytes(), "audit.log", Some(&api)).unwrap();
    assert_eq!(only.usage.accounts.keys().collect::<Vec<_>>(), [&api]);
}

fn yaml<T: serde::de::DeserializeOwned>(s: &str) -> T {
    serde_yaml_ng::from_str(s).unwrap()
}

struct Fixture {
    roles: Vec<Role>,
    cluster_roles: Vec<ClusterRole>,
    role_bindings: Vec<RoleBinding>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            roles: vec![yaml(
                "metadata: {name: editor, namespace: shop}\nrules:\n- apiGroups: ['']\n  resources: [configmaps]\n  verbs: [get, list, update, delete]\n- apiGroups: [apps]\n  resources: [deployments]\n  verbs: [get, patch]",
            )],
            cluster_roles: vec![
                yaml("metadata: {name: pod-reader, labels: {agg: 'yes'}}\nrules:\n- apiGroups: ['']\n  resources: [pods]\n  verbs: [list, watch]"),
                yaml("metadata: {name: reader}\naggregationRule:\n  clusterRoleSelectors: [{matchLabels: {agg: 'yes'}}]"),
            ],
            role_bindings: vec![
                yaml("metadata: {name: api-edit, namespace: shop}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: editor}\nsubjects:\n- {kind: ServiceAccount, name: api}"),
            ],
            cluster_role_bindings: vec![
                yaml("metadata: {name: all-sa-read}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader}\nsubjects:\n- {kind: Group, name: 'system:serviceaccounts:shop', apiGroup: rbac.authorization.k8s.io}\n- {kind: Group, name: 'system:authenticated', apiGroup: rbac.authorization.k8s.io}"),
            ],
        }
    }

    fn objs(&self) -> RbacObjects<'_> {
        RbacObjects {
            roles: self.roles.iter().collect(),
            cluster_roles: self.cluster_roles.iter().collect(),
            role_bindings: self.role_bindings.iter().collect(),
            cluster_role_bindings: self.cluster_role_bindings.iter().collect(),
        }
    }
}

fn request(
    account: &Account,
    verb: &str,
    group: &str,
    resource: &str,
    ns: &str,
    name: &str,
    at: i64,
) -> Request {
    Request {
        account: account.clone(),
        access: Access {
            verb: verb.into(),
            target: Target::Resource {
                group: group.into(),
                resource: resource.into(),
                namespace: ns.into(),
                name: name.into(),
            },
        },
        at,
        allowed: true,
    }
}

fn unused(f: &Fixture, usage: &Usage, accounts: &BTreeSet<Account>, since: i64) -> Vec<Finding> {
    let mut out = Vec::new();
    let window = Window {
        accounts,
        since,
        label: "168h",
    };
    unused_permissions(&f.objs(), usage, &window, &mut out);
    out
}

#[test]
fn unused_permissions_of_direct_and_group_bindings() {
    let f = Fixture::new();
    let api = Account::new("shop", "api");
    let accounts = BTreeSet::from([api.clone()]);
    let mut usage = Usage::default();
    usage.record(&request(
        &api,
        "get",
        "",
        "configmaps",
        "shop",
        "settings",
        100,
    ));
    usage.record(&request(&api, "list", "", "configmaps", "shop", "", 100));
    // used in another namespace: does not count for the RoleBinding in shop
    usage.record(&request(
        &api,
        "delete",
        "",
        "configmaps",
        "other",
        "x",
        100,
    ));

    let found = unused(&f, &usage, &accounts, 50);
    let messages: Vec<&str> = found.iter().map(|f| &*f.message).collect();
    assert_eq!(found.len(), 2, "{messages:#?}");
    let edit = &found[1];
    assert_eq!(edit.rule.id(), "rbac.unused-permission");
    assert_eq!(edit.object.name, "api-edit");
    assert_eq!(&*edit.field, "subjects[0]");
    assert!(
        edit.message.contains("4 of 6 permissions (Role editor)"),
        "{}",
        edit.message
    );
    assert!(
        edit.message.contains(
            "delete configmaps, get apps/deployments, patch apps/deployments, update configmaps"
        ),
        "{}",
        edit.message
    );
    assert!(
        edit.message
            .contains("covered by: get configmaps[settings] in shop, list configmaps in shop"),
        "{}",
        edit.message
    );
    // The aggregated ClusterRole, through the namespace's group; system:authenticated is not evaluated.
    let group = &found[0];
    assert_eq!(
        (group.object.name.as_str(), &*group.field),
        ("all-sa-read", "subjects[0]")
    );
    assert!(
        group.message.contains("list pods, watch pods"),
        "{}",
        group.message
    );
    assert!(
        group.message.contains("used none of them"),
        "{}",
        group.message
    );

    // Once it lists pods (through the group), only watch is unused there.
    usage.record(&request(&api, "list", "", "pods", "shop", "", 120));
    let found = unused(&f, &usage, &accounts, 50);
    assert!(
        found[0].message.contains("1 of 2 permissions"),
        "{}",
        found[0].message
    );
    // Outside the window, nothing counts as used.
    let found = unused(&f, &usage, &accounts, 500);
    assert!(found[1].message.contains("6 of 6"), "{}", found[1].message);
    // Accounts not evaluated (not collected) are not reported.
    assert!(unused(&f, &usage, &BTreeSet::new(), 50).is_empty());
}

#[test]
fn everything_used_means_no_finding_and_builtin_bindings_are_skipped() {
    let f = Fixture::new();
    let api = Account::new("shop", "api");
    let accounts = BTreeSet::from([api.clone()]);
    let mut usage = Usage::default();
    for (verb, group, res) in [
        ("get", "", "configmaps"),
        ("list", "", "configmaps"),
        ("update", "", "configmaps"),
        ("delete", "", "configmaps"),
        ("get", "apps", "deployments"),
        ("patch", "apps", "deployments"),
        ("list", "", "pods"),
        ("watch", "", "pods"),
    ] {
        usage.record(&request(&api, verb, group, res, "shop", "", 1));
    }
    assert!(unused(&f, &usage, &accounts, 0).is_empty());
    let mut builtin = Fixture::new();
    builtin.cluster_role_bindings = vec![yaml(&crate::policy::rbac::bootstrap::builtin_yaml(
        "ClusterRoleBinding",
        "system:basic-user",
    ))];
    builtin
        .cluster_roles
        .push(yaml(&crate::policy::rbac::bootstrap::builtin_yaml(
            "ClusterRole",
            "system:basic-user",
        )));
    builtin.role_bindings.clear();
    assert!(unused(&builtin, &Usage::default(), &accounts, 0).is_empty());
}

#[test]
fn learned_objects_bind_the_account() {
    let api = Account::new("shop", "api");
    let mut usage = Usage::default();
    usage.record(&request(
        &api,
        "get",
        "",
        "configmaps",
        "shop",
        "settings",
        1,
    ));
    usage.record(&request(&api, "list", "", "namespaces", "", "", 1));
    let learned = minimal_rules(usage.accounts[&api].accesses.keys());
    let objs = learned_objects(&api, &learned, "palisade-learned-");
    let kinds: Vec<(&str, &str)> = objs
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("Role", "palisade-learned-api"),
            ("RoleBinding", "palisade-learned-api"),
            ("ClusterRole", "palisade-learned-shop-api"),
            ("ClusterRoleBinding", "palisade-learned-shop-api"),
        ]
    );
    assert_eq!(objs[1]["subjects"][0]["namespace"], "shop");
    assert_eq!(objs[0]["rules"][0]["resourceNames"][0], "settings");
    let long = Account::new("shop", &"a".repeat(253));
    let objs = learned_objects(&long, &learned, "palisade-learned-");
    assert!(objs
        .iter()
        .all(|o| o["metadata"]["name"].as_str().unwrap().len() <= 253));
}
