//! The fast reader against serde_yaml_ng (libyaml) on the same text: whenever the fast path
//! answers, the answer must be serde_yaml_ng's, as a generic value and as Kubernetes types.

use super::{from_str, parse, Unsupported};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::Role;
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;
use std::fmt::Debug;

/// Whether the fast path answered; panics if its answer differs from serde_yaml_ng's.
fn agrees<T: DeserializeOwned + PartialEq + Debug>(doc: &str) -> bool {
    let Some(fast) = from_str::<T>(doc) else {
        return false;
    };
    match serde_yaml_ng::from_str::<T>(doc) {
        Ok(slow) => assert_eq!(fast, slow, "fast and libyaml readings differ:\n{doc}"),
        Err(e) => panic!("the fast path accepted what serde_yaml_ng refuses ({e}):\n{doc}"),
    }
    true
}

fn accepted(doc: &str) -> bool {
    agrees::<Value>(doc)
}

#[test]
fn manifest_constructs_are_read_as_libyaml_reads_them() {
    let docs = [
        "a: b\n",
        "a: b",
        "a:  b   # comment\nc: d\n",
        "# leading comment\n\na: 1\nb: -2\nc: 0\nd: true\ne: False\nf: ~\ng: null\nh:\n",
        "a: 10%\nb: 1.27-alpine\nc: v1\nd: http://x:80/y\ne: a,b\nf: a#b\ng: it's\n",
        "metadata:\n  name: x\n  labels:\n    app.kubernetes.io/name: web\n    k8s-app: dns\n",
        "list:\n- a\n- b\n-\n- c: d\n  e: f\nnext: 1\n",
        "list:\n  - a\n  -   b: 1\n      c: 2\n",
        "list:\n  - - nested\n",
        "spec:\n  containers:\n    - name: app\n      image: nginx\n      args: [\"--port\", '80', -v]\n      ports:\n        - containerPort: 80\n          protocol: TCP\n",
        "a: \"x\\ny\\t\\\"z\\\" \\u00e9 \\x41 \\/ \\\\\"\nb: 'it''s'\nc: \"\"\nd: ''\n",
        "\"quoted key\": 1\n'single': \"two\"\n",
        "empty: {}\nnone: []\nflow: {a: 1, b: [c, \"d\"], e: {}}\n",
        "script: |\n  echo a\n\n    indented\n  echo b\nnext: 1\n",
        "script: |-\n  one\n  two\n\n\nnext: 1\n",
        "text: >\n  folded\n  lines\n\n  para\nt2: >-\n  x\n  y\n",
        "a: |\nb: c\n",
        "a:\n  b:\n    c:\n      - d\n  e: f\n",
        "  indented: root\n  second: 2\n",
        "k: v\n    # deeper comment\nk2: v2\n",
        "a: 18446744073709551615\nb: -9223372036854775808\n",
        "a: null # comment\nb: 'null'\nc: \"true\"\n",
        "a: - b\n",
        "a: b: c\n",
        "a: [b,]\n",
        "a: &x 1\nb: *x\n",
        "a: !!str 1\n",
        "a: multi\n  line\n",
        "a: \"multi\n  line\"\n",
        "a:\tb\n",
        "a: 0x1F\nb: 1e3\nc: +5\nd: .inf\ne: 0o17\nf: 007\n",
        "a: b\r\nc: d\r\n",
        "? complex\n: key\n",
        "a: |2\n   x\n",
        "a: |+\n  x\n\n",
        "[a, b]\n",
        "just a scalar\n",
        "a:\n  b: 1\n c: 2\n",
        "a: {b: c\n  , d: e}\n",
    ];
    let mut answered = 0;
    for doc in docs {
        answered += usize::from(accepted(doc));
    }
    // Most of these are what manifests look like; the rest must be left to libyaml.
    assert!(
        answered >= 20,
        "only {answered} documents took the fast path"
    );
}

#[test]
fn what_it_is_not_sure_of_goes_to_serde_yaml_ng() {
    for doc in [
        "a: &anchor 1\n",
        "a: *alias\n",
        "a: !tag 1\n",
        "a: multi\n  line plain\n",
        "a: \"open\n  quote\"\n",
        "a:\tb\n",
        "a: b\r\n",
        "%YAML 1.1\n---\na: 1\n",
        "a: |2\n  x\n",
        "a: |+\n  x\n",
        "a: {b:c}\n",
        "a: [b, ]\n",
        "? k\n: v\n",
        "<<: {a: 1}\n",
        "a: 0x10\n",
        "a: \"\\q\"\n",
        "\u{feff}a: 1\n",
        "a: b\u{2028}c\n",
        "[1, 2]\n",
    ] {
        let answered = parse(doc).is_ok() && from_str::<Value>(doc).is_some();
        assert!(!answered, "the fast path should have given up on:\n{doc:?}");
    }
    assert_eq!(parse("a: b: c\n"), Err(Unsupported));
}

#[test]
fn kubernetes_types_come_out_the_same() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: n\n  annotations:\n    a: \"1\"\nspec:\n  automountServiceAccountToken: false\n  securityContext:\n    runAsNonRoot: true\n    runAsUser: 1000\n    seccompProfile: {type: RuntimeDefault}\n  volumes:\n  - name: v\n    secret:\n      secretName: s\n      defaultMode: 420\n  containers:\n  - name: c\n    image: nginx:1.27\n    command: [\"sh\", \"-c\"]\n    args:\n    - |\n      echo hi\n      sleep 1\n    resources:\n      limits: {cpu: 500m, memory: 128Mi}\n    securityContext:\n      allowPrivilegeEscalation: false\n      capabilities:\n        drop: [ALL]\n        add:\n    ports:\n    - containerPort: 8080\n      name: http\n";
    assert!(agrees::<Pod>(pod));
    let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  replicas: 3\n  strategy:\n    rollingUpdate:\n      maxSurge: 25%\n      maxUnavailable: 1\n  selector:\n    matchLabels: {app: d}\n  template:\n    metadata:\n      labels: {app: d}\n    spec:\n      containers:\n      - name: c\n        image: x\n        livenessProbe:\n          httpGet: {path: /healthz, port: http}\n";
    assert!(agrees::<Deployment>(deploy));
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  type: LoadBalancer\n  externalIPs: [1.2.3.4]\n  ports:\n  - port: 80\n    targetPort: 8080\n";
    assert!(agrees::<Service>(svc));
    let np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: n\nspec:\n  podSelector: {}\n  policyTypes: [Ingress, Egress]\n  egress:\n  - to:\n    - namespaceSelector:\n        matchExpressions:\n        - {key: kubernetes.io/metadata.name, operator: In, values: [kube-system]}\n    ports:\n    - {protocol: UDP, port: 53}\n";
    assert!(agrees::<NetworkPolicy>(np));
    let role = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: r\nrules:\n- apiGroups: [\"\"]\n  resources: [secrets]\n  verbs: [\"get\", list]\n";
    assert!(agrees::<Role>(role));
    // A type error is never answered by the fast path: serde_yaml_ng words the diagnostic.
    assert!(!agrees::<Pod>(
        "apiVersion: v1\nkind: Pod\nspec:\n  containers: 3\n"
    ));
    assert!(!agrees::<Pod>(
        "apiVersion: v1\nkind: Pod\nspec:\n  hostPID: yes\n"
    ));
}

/// Every YAML document of the repository's manifests and of the official Pod Security
/// fixtures (`../shared/conformance`, when present).
#[test]
fn real_manifests_agree() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [
        "deploy",
        "config",
        "crds",
        "tests",
        "examples",
        "fuzz",
        "../shared/conformance",
    ] {
        collect(&root.join(dir), &mut files);
    }
    let (mut docs, mut answered) = (0, 0);
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for doc in super::super::split_documents(&text) {
            let doc = super::super::yaml11_octals(doc.text);
            docs += 1;
            if accepted(&doc) {
                answered += 1;
                if doc.contains("\nkind: Pod\n") {
                    agrees::<Pod>(&doc);
                }
            }
        }
    }
    eprintln!("{answered} of {docs} documents took the fast path");
    assert!(docs > 100, "only {docs} documents found");
    // Hand-written and generated manifests are the fast path's case: most must take it.
    assert!(
        answered * 10 >= docs * 6,
        "{answered} of {docs} documents took the fast path"
    );
}

fn collect(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

/// Deterministic xorshift: the same documents on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const KEYS: &[&str] = &[
    "a",
    "name",
    "app.kubernetes.io/name",
    "k8s-app",
    "x y",
    "a:b",
    "null",
    "true",
    "80",
    "-x",
    "a#b",
    "\"q\"",
    "'s''q'",
    "\"a: b\"",
    "k ",
    "~",
    "<<",
    "a # c",
    "?",
    "[a]",
];

/// Scalars both readers take, however they resolve them.
const SCALARS: &[&str] = &[
    "v",
    "0",
    "7",
    "-1",
    "~",
    "null",
    "Null",
    "NULL",
    "true",
    "True",
    "yes",
    "on",
    "10%",
    "a b",
    "a #c",
    "http://x",
    "a,b",
    "500m",
    "128Mi",
    "1.27-alpine",
    "nan",
    "Infinity",
    "é",
    "-v",
    "--flag=1",
    "\"a\\nb\"",
    "\"\\u00e9\"",
    "\"\\x41\"",
    "'it''s'",
    "\"\"",
    "''",
    "[]",
    "{}",
    "[a, b]",
    "[\"a\", 'b', 1]",
    "{a: 1, b: [c]}",
    "{a: {b: c}}",
    "[-v, --x]",
    "\"a: b\"",
];

/// What the fast path must refuse or read exactly: number spellings, errors, YAML features.
const TRICKY: &[&str] = &[
    "-0",
    "007",
    "1.5",
    "1e3",
    "0x1F",
    "+5",
    ".inf",
    "a: b",
    "a]",
    "b:",
    "\"\\q\"",
    "[a,]",
    "{a:1}",
    "- x",
    "&a x",
    "*a",
    "!t x",
    "\"x\" y",
    "'x'#c",
    "@x",
    "`x`",
    "-",
    "99999999999999999999",
    "-99999999999999999999",
    "1_000",
    "a\tb",
    "1.2.3",
    "[a",
    "{a: }",
    "'open",
    "\"open",
    "a #",
    "#",
    "[a, [b, {c: d}]]",
    "{\"a\": [1, -2]}",
];

const BLOCK_HEADERS: &[&str] = &["|", "|-", ">", ">-", "|+", "|2", "| # c", ">#c"];

fn scalar_lines(rng: &mut Rng, indent: usize, out: &mut String) {
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 => out.push('\n'),
            1 => out.push_str(&format!("{}  more indented\n", " ".repeat(indent))),
            2 => out.push_str(&format!("{}   \n", " ".repeat(indent))),
            _ => out.push_str(&format!("{}line {}\n", " ".repeat(indent), rng.below(9))),
        }
    }
}

/// A value after `key:` (or `- `) in a collection at `indent`.
fn value(rng: &mut Rng, indent: usize, depth: usize, out: &mut String) {
    let deeper = indent + 1 + rng.below(3);
    match rng.below(if depth > 3 { 3 } else { 6 }) {
        0 | 1 => {
            out.push(' ');
            out.push_str(if rng.below(8) == 0 {
                rng.pick(TRICKY)
            } else {
                rng.pick(SCALARS)
            });
            if rng.below(5) == 0 {
                out.push_str(" # trailing");
            }
            out.push('\n');
            if rng.below(12) == 0 {
                out.push_str(&format!("{}continued\n", " ".repeat(deeper)));
            }
        }
        2 => {
            out.push(' ');
            out.push_str(rng.pick(BLOCK_HEADERS));
            out.push('\n');
            scalar_lines(rng, deeper, out);
        }
        3 => {
            out.push('\n');
            mapping(rng, deeper, depth + 1, out);
        }
        4 => {
            out.push('\n');
            // Compact (same indent) or indented sequences.
            let at = if rng.below(2) == 0 { indent } else { deeper };
            sequence(rng, at, depth + 1, out);
        }
        _ => out.push('\n'),
    }
}

fn mapping(rng: &mut Rng, indent: usize, depth: usize, out: &mut String) {
    // Mostly distinct keys: a duplicate makes both readers refuse the document.
    let first = rng.below(KEYS.len());
    for k in 0..1 + rng.below(4) {
        if rng.below(8) == 0 {
            out.push_str(&format!("{}# comment\n", " ".repeat(rng.below(indent + 3))));
        }
        let off = if rng.below(30) == 0 { 1 } else { 0 };
        out.push_str(&" ".repeat(indent + off));
        out.push_str(KEYS[(first + k * 7) % KEYS.len()]);
        out.push(':');
        value(rng, indent, depth, out);
    }
}

fn sequence(rng: &mut Rng, indent: usize, depth: usize, out: &mut String) {
    for _ in 0..1 + rng.below(3) {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match rng.below(4) {
            0 => {
                // `- key: v` and the rest of that mapping lined up with `key`.
                let mut item = String::new();
                mapping(rng, indent + 2, depth + 1, &mut item);
                out.push(' ');
                out.push_str(item.trim_start_matches(' '));
            }
            _ => value(rng, indent, depth, out),
        }
    }
}

#[test]
fn generated_documents_agree() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut answered, total) = (0, 40_000);
    for _ in 0..total {
        let mut doc = String::new();
        mapping(&mut rng, 0, 0, &mut doc);
        if rng.below(10) == 0 {
            doc.pop();
        }
        answered += usize::from(accepted(&doc));
    }
    eprintln!("{answered} of {total} generated documents took the fast path");
    // The generator mixes in every construct the fast path refuses; a good share of the
    // documents still has none, so the comparison is not vacuous.
    assert!(
        answered * 8 >= total,
        "only {answered} of {total} generated documents took the fast path"
    );
}
