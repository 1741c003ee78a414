//! Loading manifests: files, directories (recursively), stdin; multi-document YAML and `List`s.
//!
//! Every problem becomes a [`Diagnostic`] naming the file, the document index and its line,
//! and (for type errors) the field path. A broken document never hides the others.

mod block_yaml;

use crate::policy::finding::Source;
use crate::policy::object::Object;
use crate::policy::workload::Workload;
use serde::de::DeserializeOwned;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// What happened to a document that produced no object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Input could not be read or parsed: reported, exit status 2.
    Error,
    /// A valid object Palisade does not evaluate (unknown kind, CRD, ...): noted only.
    Skipped,
}

/// A problem with one file or document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    /// 0-based document index in the file, when the problem is in one document.
    pub document: Option<usize>,
    /// 1-based line, when known.
    pub line: Option<usize>,
    pub message: String,
    /// For a document skipped because Palisade does not audit its kind: that kind (reports
    /// summarise these in one line instead of one line each).
    pub skipped_kind: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.severity {
            Severity::Error => "error",
            Severity::Skipped => "skipped",
        };
        write!(f, "{what}: {}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(doc) = self.document {
            write!(f, " (document {doc})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Receives each object with where it came from.
pub type Sink<'s> = dyn FnMut(Object, Source) + 's;

/// Loads a file, a directory (recursively: `*.yaml`, `*.yml`, `*.json`, sorted) or `-` (stdin).
pub fn load_path(path: &str, sink: &mut Sink<'_>, diags: &mut Vec<Diagnostic>) {
    if path == "-" {
        let mut buf = Vec::new();
        match std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf) {
            Ok(_) => load_bytes("<stdin>", &buf, sink, diags),
            Err(e) => diags.push(file_error("<stdin>", format!("cannot read: {e}"))),
        }
        return;
    }
    let p = Path::new(path);
    if p.is_dir() {
        let mut files = Vec::new();
        collect_files(p, &mut files, diags);
        files.sort();
        for f in files {
            load_file(&f.to_string_lossy(), sink, diags);
        }
    } else {
        load_file(path, sink, diags);
    }
}

/// Loads many paths, parsing files on `threads` threads (parsing is nearly all of an audit's
/// time); `sink` runs on the calling thread. Diagnostics come back sorted by file and document,
/// so the output does not depend on scheduling.
pub fn load_paths(
    paths: &[String],
    threads: usize,
    sink: &mut Sink<'_>,
    diags: &mut Vec<Diagnostic>,
) {
    let mut files = Vec::new();
    for path in paths {
        let p = Path::new(path);
        if path == "-" {
            load_path(path, sink, diags);
        } else if p.is_dir() {
            let mut found = Vec::new();
            collect_files(p, &mut found, diags);
            found.sort();
            files.extend(found.into_iter().map(|f| f.to_string_lossy().into_owned()));
        } else {
            files.push(path.clone());
        }
    }
    let threads = threads.clamp(1, files.len().max(1));
    if threads == 1 {
        for f in &files {
            load_file(f, sink, diags);
        }
    } else {
        /// One file's objects and diagnostics: one channel message per file, not per object.
        type Batch = (Vec<(Object, Source)>, Vec<Diagnostic>);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(2 * threads);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                let tx = tx.clone();
                let (files, next) = (&files, &next);
                scope.spawn(move || loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(f) = files.get(i) else { return };
                    let (mut objects, mut local) = (Vec::new(), Vec::new());
                    load_file(f, &mut |o, s| objects.push((o, s)), &mut local);
                    if tx.send((objects, local)).is_err() {
                        return;
                    }
                });
            }
            drop(tx);
            for (objects, d) in rx {
                for (o, s) in objects {
                    sink(o, s);
                }
                diags.extend(d);
            }
        });
    }
    diags.sort_by(|a, b| (&a.file, a.document).cmp(&(&b.file, b.document)));
}

fn collect_files(dir: &Path, out: &mut Vec<std::path::PathBuf>, diags: &mut Vec<Diagnostic>) {
    if dir.join("Chart.yaml").is_file() {
        diags.push(helm_chart_skipped(dir));
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            diags.push(file_error(
                &dir.to_string_lossy(),
                format!("cannot read directory: {e}"),
            ));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue; // .git and friends
        }
        if path.is_dir() {
            collect_files(&path, out, diags);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(path);
        }
    }
}

/// A Helm chart's templates are Go templates, not manifests: say so and how to audit it, rather
/// than reporting parse errors or silently skipping.
fn helm_chart_skipped(dir: &Path) -> Diagnostic {
    let dir = dir.to_string_lossy();
    Diagnostic {
        severity: Severity::Skipped,
        file: dir.to_string(),
        document: None,
        line: None,
        message: format!(
            "Helm chart (Chart.yaml): its templates are not audited; audit the rendered chart with `helm template {dir} | palisade audit -`"
        ),
        skipped_kind: None,
    }
}

fn file_error(file: &str, message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        file: file.to_string(),
        document: None,
        line: None,
        message,
        skipped_kind: None,
    }
}

fn load_file(path: &str, sink: &mut Sink<'_>, diags: &mut Vec<Diagnostic>) {
    match std::fs::read(path) {
        Ok(bytes) => load_bytes(path, &bytes, sink, diags),
        Err(e) => diags.push(file_error(path, format!("cannot read: {e}"))),
    }
}

/// Loads manifests from memory; `name` is used in sources and diagnostics.
pub fn load_bytes(name: &str, bytes: &[u8], sink: &mut Sink<'_>, diags: &mut Vec<Diagnostic>) {
    if bytes.contains(&0) {
        diags.push(file_error(
            name,
            "binary data (NUL byte), not YAML or JSON".into(),
        ));
        return;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => load_str(name, text, sink, diags),
        Err(e) => diags.push(file_error(
            name,
            format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )),
    }
}

/// One YAML document of a stream: its text and the line it starts on.
struct Document<'a> {
    text: &'a str,
    line: usize,
}

/// Splits a YAML stream on `---` / `...` lines. A marker always starts at column 0 and block
/// scalars are indented, so this never splits inside a document.
fn split_documents(text: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (i, line) in lines_inclusive(text).enumerate() {
        // Most lines start with neither: skip them before trimming anything.
        if !(line.starts_with("---") || line.starts_with("...")) {
            offset += line.len();
            continue;
        }
        let trimmed = line.trim_end();
        let is_marker = trimmed == "---"
            || trimmed.starts_with("--- ")
            || trimmed.starts_with("---\t")
            || trimmed == "...";
        if is_marker {
            docs.push(Document {
                text: &text[start..offset],
                line: start_line,
            });
            // `--- {a: 1}` carries content on the marker line itself.
            let rest = trimmed.strip_prefix("---").unwrap_or("");
            start = if rest.trim().is_empty() || trimmed == "..." {
                offset + line.len()
            } else {
                offset + 3
            };
            start_line = i + 2 - usize::from(start == offset + 3);
        }
        offset += line.len();
    }
    docs.push(Document {
        text: &text[start..],
        line: start_line,
    });
    docs.retain(|d| !is_blank(d.text));
    docs
}

/// `text.split_inclusive('\n')` with memchr: faster on short lines. Splits the stream into
/// documents here and each document into lines in the block reader.
fn lines_inclusive(text: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= text.len() {
            return None;
        }
        let end =
            memchr::memchr(b'\n', &text.as_bytes()[start..]).map_or(text.len(), |p| start + p + 1);
        let line = &text[start..end];
        start = end;
        Some(line)
    })
}

fn is_blank(doc: &str) -> bool {
    doc.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#')
    })
}

/// A count kept as u32 in findings (see [`Source`]): past u32::MAX it stays there.
fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Loads every document of a YAML/JSON stream.
pub fn load_str(name: &str, text: &str, sink: &mut Sink<'_>, diags: &mut Vec<Diagnostic>) {
    let file: std::sync::Arc<str> = name.into();
    for (index, doc) in split_documents(text).into_iter().enumerate() {
        let source = Source {
            file: file.clone(),
            document: saturate(index),
            line: saturate(doc.line),
        };
        load_document(doc.text, &source, sink, diags);
    }
}

/// Parses every document of a stream with the readers the audit uses (the fast block-style
/// reader, else serde_yaml_ng) and drops the result: the parsing limit of an audit, measured
/// by `examples/yaml_scan.rs`. Returns the number of documents, or the first syntax error.
pub fn scan_str(text: &str) -> Result<usize, String> {
    use serde::Deserialize;
    let docs = split_documents(text);
    for doc in &docs {
        let text = yaml11_octals(doc.text);
        if !block_yaml::reads(&text) {
            serde::de::IgnoredAny::deserialize(serde_yaml_ng::Deserializer::from_str(&text))
                .map_err(|e| format!("document at line {}: {e}", doc.line))?;
        }
    }
    Ok(docs.len())
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<serde::de::IgnoredAny>,
}

/// Why a document has no apiVersion/kind to dispatch on.
enum NoTypeMeta {
    /// A mapping with none of `apiVersion`, `kind`, `metadata`: some other file (Helm values,
    /// a dashboard, test data) that a GitOps repository keeps next to its manifests.
    NotAnObject,
    /// A broken manifest: the message names the missing or mistyped field.
    Invalid(String),
}

/// Finds `apiVersion` and `kind` from top-level keys without parsing the document
/// (they are at column 0 in block style); falls back to a parse for flow style / JSON.
fn type_meta(doc: &str) -> Result<(String, String), NoTypeMeta> {
    let mut api = None;
    let mut kind = None;
    for line in doc.lines() {
        if let Some(v) = line.strip_prefix("kind:") {
            kind = Some(unquote(v));
        } else if let Some(v) = line.strip_prefix("apiVersion:") {
            api = Some(unquote(v));
        }
        if api.is_some() && kind.is_some() {
            break;
        }
    }
    if let (Some(a), Some(k)) = (&api, &kind) {
        if !a.is_empty() && !k.is_empty() {
            return Ok((a.clone(), k.clone()));
        }
    }
    let tm: TypeMeta =
        serde_yaml_ng::from_str(doc).map_err(|e| NoTypeMeta::Invalid(e.to_string()))?;
    let invalid = |m: &str| Err(NoTypeMeta::Invalid(m.into()));
    match (tm.api_version, tm.kind) {
        (Some(a), Some(k)) if !a.is_empty() && !k.is_empty() => Ok((a, k)),
        // Only a mapping: a sequence or a scalar is more likely a broken manifest.
        (None, None)
            if tm.metadata.is_none()
                && serde_yaml_ng::from_str::<serde_yaml_ng::Value>(doc)
                    .is_ok_and(|v| v.is_mapping()) =>
        {
            Err(NoTypeMeta::NotAnObject)
        }
        (_, None) => invalid("missing field `kind`"),
        _ => invalid("missing field `apiVersion`"),
    }
}

fn unquote(v: &str) -> String {
    let v = v.split(" #").next().unwrap_or("").trim();
    v.trim_matches(|c| c == '"' || c == '\'').to_string()
}

fn doc_error(source: &Source, line: Option<usize>, message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        file: source.file.to_string(),
        document: Some(source.document as usize),
        line: line.or(Some(source.line as usize)),
        message,
        skipped_kind: None,
    }
}

/// Kubernetes reads manifests as YAML 1.1, where an unquoted `0644` is the octal integer 420
/// (file modes in charts are written this way); YAML 1.2 parsers read it as a string. Rewrites
/// such plain scalars (mapping values and list items) to decimal, keeping every line in place.
fn yaml11_octals(doc: &str) -> std::borrow::Cow<'_, str> {
    let bytes = doc.as_bytes();
    // Fast exit: a rewrite needs `0` then an octal digit, right after a value indicator (which
    // ends in ' ' or '['). `runAsUser: 0` or `maxUnavailable: 0` alone do not qualify.
    let maybe_octal = doc.match_indices('0').any(|(i, _)| {
        i > 0
            && matches!(bytes[i - 1], b' ' | b'[')
            && matches!(bytes.get(i + 1), Some(b'0'..=b'7'))
    });
    if !maybe_octal {
        return std::borrow::Cow::Borrowed(doc);
    }
    let mut out = String::with_capacity(doc.len());
    let mut last = 0;
    let (mut single, mut double, mut comment) = (false, false, false);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\n' => (single, double, comment) = (false, false, false),
            _ if comment => {}
            b'\'' if !double => single = !single,
            b'"' if !single => double = !double,
            b'#' if !single && !double && (i == 0 || bytes[i - 1].is_ascii_whitespace()) => {
                comment = true
            }
            b'0' if !single && !double => {
                let before = &doc[..i];
                let starts_value = before.ends_with(": ")
                    || before.ends_with("- ")
                    || before.ends_with('[')
                    || before.ends_with(", ")
                    || before.ends_with("[ ");
                let end = i + bytes[i..].iter().take_while(|c| c.is_ascii_digit()).count();
                let ends_value = end == bytes.len()
                    || matches!(bytes[end], b'\n' | b'\r' | b' ' | b',' | b']' | b'}');
                let token = &doc[i..end];
                if starts_value && ends_value && token.len() > 1 && token.bytes().all(|c| c <= b'7')
                {
                    if let Ok(v) = i64::from_str_radix(token, 8) {
                        out.push_str(&doc[last..i]);
                        out.push_str(&v.to_string());
                        last = end;
                        i = end;
                        continue;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    if last == 0 {
        return std::borrow::Cow::Borrowed(doc);
    }
    out.push_str(&doc[last..]);
    std::borrow::Cow::Owned(out)
}

/// Deserializes into `T`, reporting the field path and line of the first type error.
fn typed<T: DeserializeOwned>(doc: &str, source: &Source) -> Result<T, Diagnostic> {
    let doc = yaml11_octals(doc);
    // The block-style reader first; it leaves what it is not sure of to serde_yaml_ng.
    if let Some(v) = block_yaml::from_str::<T>(&doc) {
        return Ok(v);
    }
    // Without path tracking; on failure, parse again to name the field.
    if let Ok(v) = serde_yaml_ng::from_str::<T>(&doc) {
        return Ok(v);
    }
    let de = serde_yaml_ng::Deserializer::from_str(&doc);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let line = inner
            .location()
            .map(|l| source.line as usize + l.line() - 1);
        let msg = inner.to_string();
        // serde_yaml_ng appends "at line X column Y" relative to the document; our line is absolute.
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        // serde_yaml_ng already names the field in most messages; do not say it twice.
        let message = if path == "." || path.is_empty() || msg.starts_with(&format!("{path}:")) {
            msg
        } else {
            format!("{path}: {msg}")
        };
        doc_error(source, line, message)
    })
}

fn typed_value<T: DeserializeOwned>(
    v: serde_yaml_ng::Value,
    source: &Source,
    item: usize,
) -> Result<T, Diagnostic> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        doc_error(
            source,
            None,
            format!("items[{item}].{path}: {}", e.into_inner()),
        )
    })
}

/// A document of a kind Palisade does not audit at any apiVersion (Service, ConfigMap, custom
/// resources): noted, and summarised by kind in reports. A kind it audits, at an apiVersion it
/// does not read (`extensions/v1beta1 Deployment`), is worth a line of its own.
fn skipped_kind(source: &Source, message: String, kind: &str) -> Diagnostic {
    let audited = audits_kind(kind);
    Diagnostic {
        skipped_kind: (!audited).then(|| kind.to_string()),
        ..skipped(source, message)
    }
}

fn skipped(source: &Source, message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Skipped,
        file: source.file.to_string(),
        document: Some(source.document as usize),
        line: Some(source.line as usize),
        message,
        skipped_kind: None,
    }
}

/// Every apiVersion/kind Palisade reads, and how: the one list to extend with a new kind
/// (plus its `Decoder` variant and the `decode_with!` arm that builds its `Object`).
const KINDS: &[(&str, &str, Decoder)] = &[
    ("v1", "Pod", Decoder::Pod),
    ("apps/v1", "Deployment", Decoder::Deployment),
    ("apps/v1", "ReplicaSet", Decoder::ReplicaSet),
    ("apps/v1", "StatefulSet", Decoder::StatefulSet),
    ("apps/v1", "DaemonSet", Decoder::DaemonSet),
    ("batch/v1", "Job", Decoder::Job),
    ("batch/v1", "CronJob", Decoder::CronJob),
    (
        "v1",
        "ReplicationController",
        Decoder::ReplicationController,
    ),
    ("v1", "Namespace", Decoder::Namespace),
    ("v1", "ServiceAccount", Decoder::ServiceAccount),
    ("v1", "Service", Decoder::Service),
    (
        "networking.k8s.io/v1",
        "NetworkPolicy",
        Decoder::NetworkPolicy,
    ),
    ("rbac.authorization.k8s.io/v1", "Role", Decoder::Role),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        Decoder::ClusterRole,
    ),
    (
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        Decoder::RoleBinding,
    ),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        Decoder::ClusterRoleBinding,
    ),
    (
        "security-profiles-operator.x-k8s.io/v1beta1",
        "SeccompProfile",
        Decoder::SeccompProfile,
    ),
    (
        "security-profiles-operator.x-k8s.io/v1alpha1",
        "AppArmorProfile",
        Decoder::AppArmorProfile,
    ),
    (
        "security.istio.io/v1",
        "PeerAuthentication",
        Decoder::PeerAuthentication,
    ),
    (
        "security.istio.io/v1beta1",
        "PeerAuthentication",
        Decoder::PeerAuthentication,
    ),
    (
        "networking.istio.io/v1",
        "DestinationRule",
        Decoder::DestinationRule,
    ),
    (
        "networking.istio.io/v1beta1",
        "DestinationRule",
        Decoder::DestinationRule,
    ),
    (
        "networking.istio.io/v1alpha3",
        "DestinationRule",
        Decoder::DestinationRule,
    ),
];

/// How Palisade reads one apiVersion/kind, if it reads it at all.
fn decoder(api_version: &str, kind: &str) -> Option<Decoder> {
    KINDS
        .iter()
        .find(|(a, k, _)| *a == api_version && *k == kind)
        .map(|(_, _, d)| *d)
}

/// The apiVersion Palisade reads `kind` at (for references to objects it reports on).
pub fn api_version_of(kind: &str) -> Option<&'static str> {
    KINDS
        .iter()
        .find(|(_, k, _)| *k == kind)
        .map(|(a, _, _)| *a)
}

/// Every (apiVersion, kind) Palisade audits, in the order of [`KINDS`]: what a live-cluster
/// audit lists.
pub fn audited_kinds() -> impl Iterator<Item = (&'static str, &'static str)> {
    // A kind read at several versions is listed once, at the first (the served one).
    KINDS
        .iter()
        .enumerate()
        .filter(|(i, (_, k, _))| !KINDS[..*i].iter().any(|(_, seen, _)| seen == k))
        .map(|(_, (a, k, _))| (*a, *k))
}

/// Whether Palisade reads this kind at some apiVersion.
fn audits_kind(kind: &str) -> bool {
    KINDS.iter().any(|(_, k, _)| *k == kind)
}

#[derive(Clone, Copy)]
enum Decoder {
    Pod,
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    ReplicationController,
    Namespace,
    ServiceAccount,
    Service,
    NetworkPolicy,
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
    SeccompProfile,
    AppArmorProfile,
    PeerAuthentication,
    DestinationRule,
}

/// Decodes into the object for decoder `$d`, calling the generic `$f(args)` for the concrete type.
macro_rules! decode_with {
    ($d:expr, $f:ident ( $($arg:expr),* )) => {{
        use Decoder as D;
        let w = Object::Workload;
        match $d {
            D::Pod => w(Workload::Pod(Arc::new($f($($arg),*)?))),
            D::Deployment => w(Workload::Deployment(Arc::new($f($($arg),*)?))),
            D::ReplicaSet => w(Workload::ReplicaSet(Arc::new($f($($arg),*)?))),
            D::StatefulSet => w(Workload::StatefulSet(Arc::new($f($($arg),*)?))),
            D::DaemonSet => w(Workload::DaemonSet(Arc::new($f($($arg),*)?))),
            D::Job => w(Workload::Job(Arc::new($f($($arg),*)?))),
            D::CronJob => w(Workload::CronJob(Arc::new($f($($arg),*)?))),
            D::ReplicationController => w(Workload::ReplicationController(Arc::new($f($($arg),*)?))),
            D::Namespace => Object::Namespace(Arc::new($f($($arg),*)?)),
            D::ServiceAccount => Object::ServiceAccount(Arc::new($f($($arg),*)?)),
            D::Service => Object::Service(Arc::new($f($($arg),*)?)),
            D::NetworkPolicy => Object::NetworkPolicy(Arc::new($f($($arg),*)?)),
            D::Role => Object::Role(Arc::new($f($($arg),*)?)),
            D::ClusterRole => Object::ClusterRole(Arc::new($f($($arg),*)?)),
            D::RoleBinding => Object::RoleBinding(Arc::new($f($($arg),*)?)),
            D::ClusterRoleBinding => Object::ClusterRoleBinding(Arc::new($f($($arg),*)?)),
            D::SeccompProfile => Object::SeccompProfile($f($($arg),*)?),
            D::AppArmorProfile => Object::AppArmorProfile($f($($arg),*)?),
            D::PeerAuthentication => Object::PeerAuthentication(Arc::new($f($($arg),*)?)),
            D::DestinationRule => Object::DestinationRule(Arc::new($f($($arg),*)?)),
        }
    }};
}

fn decode_text(d: Decoder, doc: &str, source: &Source) -> Result<Object, Diagnostic> {
    Ok(decode_with!(d, typed(doc, source)))
}

fn decode_value(
    d: Decoder,
    value: serde_yaml_ng::Value,
    source: &Source,
    item: usize,
) -> Result<Object, Diagnostic> {
    Ok(decode_with!(d, typed_value(value, source, item)))
}

/// Decodes one object the API server returned (JSON; list items carry no apiVersion/kind, so
/// the caller names them). `None` for a kind Palisade does not audit. A type error names
/// `source` and the field path.
pub fn decode_json(
    api_version: &str,
    kind: &str,
    value: serde_json::Value,
    source: &Source,
) -> Option<Result<Object, Diagnostic>> {
    fn typed_json<T: DeserializeOwned>(
        v: serde_json::Value,
        source: &Source,
    ) -> Result<T, Diagnostic> {
        serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            let message = format!("{path}: {}", e.into_inner());
            Diagnostic {
                line: None,
                document: None,
                ..doc_error(source, None, message)
            }
        })
    }
    fn decode(d: Decoder, value: serde_json::Value, source: &Source) -> Result<Object, Diagnostic> {
        Ok(decode_with!(d, typed_json(value, source)))
    }
    Some(decode(decoder(api_version, kind)?, value, source))
}

fn load_document(doc: &str, source: &Source, sink: &mut Sink<'_>, diags: &mut Vec<Diagnostic>) {
    let (api_version, kind) = match type_meta(doc) {
        Ok(tm) => tm,
        Err(NoTypeMeta::NotAnObject) => {
            diags.push(skipped(
                source,
                "not a Kubernetes object: skipped (no apiVersion, kind or metadata)".into(),
            ));
            return;
        }
        Err(NoTypeMeta::Invalid(e)) => {
            let msg = e.split(" at line ").next().unwrap_or(&e).to_string();
            diags.push(doc_error(
                source,
                None,
                format!("not a Kubernetes object: {msg}"),
            ));
            return;
        }
    };
    if let Some(d) = decoder(&api_version, &kind) {
        match decode_text(d, doc, source) {
            Ok(obj) => sink(obj, source.clone()),
            Err(diag) => diags.push(diag),
        }
    } else if kind.ends_with("List") && api_version == "v1" {
        load_list(doc, source, sink, diags);
    } else {
        let why = if kind == "CustomResourceDefinition" {
            "CustomResourceDefinition is not audited".to_string()
        } else {
            format!("{api_version} {kind} is not a kind Palisade audits")
        };
        diags.push(skipped_kind(source, why, &kind));
    }
}

fn load_list(doc: &str, source: &Source, sink: &mut Sink<'_>, diags: &mut Vec<Diagnostic>) {
    #[derive(serde::Deserialize)]
    struct List {
        #[serde(default)]
        items: Vec<serde_yaml_ng::Value>,
    }
    let list: List = match typed(doc, source) {
        Ok(l) => l,
        Err(d) => return diags.push(d),
    };
    for (i, item) in list.items.into_iter().enumerate() {
        let field = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let (api_version, kind) = (field("apiVersion"), field("kind"));
        let Some(d) = decoder(&api_version, &kind) else {
            diags.push(skipped_kind(
                source,
                format!("items[{i}]: {api_version} {kind} is not a kind Palisade audits"),
                &kind,
            ));
            continue;
        };
        match decode_value(d, item, source, i) {
            Ok(obj) => sink(obj, source.clone()),
            Err(diag) => diags.push(diag),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> (Vec<(String, Source)>, Vec<Diagnostic>) {
        let mut objs = vec![];
        let mut diags = vec![];
        load_str(
            "f.yaml",
            text,
            &mut |o, s| {
                let kind = match o {
                    Object::Workload(w) => w.kind().to_string(),
                    Object::Namespace(_) => "Namespace".into(),
                    other => format!("{other:?}").split('(').next().unwrap().to_string(),
                };
                objs.push((kind, s))
            },
            &mut diags,
        );
        (objs, diags)
    }

    #[test]
    fn documents_keep_their_index_and_start_line() {
        let text = "# header\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n...\n";
        let (objs, diags) = load(text);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(objs.len(), 2);
        assert_eq!((objs[0].1.document, objs[0].1.line), (0, 3));
        assert_eq!(
            (objs[1].0.as_str(), objs[1].1.document, objs[1].1.line),
            ("Pod", 1, 9)
        );
    }

    #[test]
    fn the_parse_only_scan_reads_both_styles_and_names_a_broken_document() {
        let block = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n";
        let flow = "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\"}\n";
        assert_eq!(scan_str(&format!("{block}---\n{flow}---\n")), Ok(2));
        let err = scan_str(&format!("{block}---\nkind: [a\n")).unwrap_err();
        assert!(err.starts_with("document at line 6:"), "{err}");
    }

    #[test]
    fn block_scalars_containing_dashes_do_not_split() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  annotations:\n    note: |\n      ---\n      not a marker\n";
        let (objs, diags) = load(text);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(objs.len(), 1);
    }

    #[test]
    fn json_and_flow_style_documents_load() {
        let (objs, diags) = load(
            "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"j\"}}\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(objs[0].0, "Namespace");
    }

    #[test]
    fn missing_kind_and_syntax_errors_are_diagnosed_not_panicked() {
        let (_, diags) =
            load("apiVersion: v1\nmetadata: {name: a}\n---\n: : :\n  - [\n---\nkind: Pod\n");
        let msgs: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        assert_eq!(diags.len(), 3, "{msgs:?}");
        assert!(msgs[0].contains("missing field `kind`"), "{msgs:?}");
        assert!(
            msgs[0].starts_with("error: f.yaml:1 (document 0)"),
            "{msgs:?}"
        );
        assert!(msgs[2].contains("missing field `apiVersion`"), "{msgs:?}");
    }

    #[test]
    fn documents_without_api_version_kind_and_metadata_are_skipped_with_a_note() {
        // A promtool test, a dashboard (JSON), Helm values: not Kubernetes objects.
        let text = "rule_files: [rules.yaml]\ntests:\n  - interval: 1m\n---\n{\"title\": \"Palisade\", \"panels\": [{\"type\": \"graph\"}]}\n---\nreplicaCount: 2\nimage: {tag: x}\n";
        let (objs, diags) = load(text);
        assert!(objs.is_empty());
        let msgs: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        assert_eq!(diags.len(), 3, "{msgs:?}");
        for (i, d) in diags.iter().enumerate() {
            assert_eq!(d.severity, Severity::Skipped, "{msgs:?}");
            assert_eq!(d.document, Some(i));
        }
        assert_eq!(
            msgs[0],
            "skipped: f.yaml:1 (document 0): not a Kubernetes object: skipped (no apiVersion, kind or metadata)"
        );
        // Some but not all of them, a wrong type, or no mapping at all: still input errors.
        let (_, diags) = load(
            "metadata: {name: a}\nspec: {}\n---\napiVersoin: v1\nkind: Pod\n---\n{apiVersion: v1, kind: [Pod]}\n---\n- a\n---\njust text\n",
        );
        let msgs: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        assert_eq!(diags.len(), 5, "{msgs:?}");
        assert!(
            diags.iter().all(|d| d.severity == Severity::Error),
            "{msgs:?}"
        );
        assert!(msgs[0].contains("missing field `kind`"), "{msgs:?}");
        assert!(msgs[1].contains("missing field `apiVersion`"), "{msgs:?}");
        assert!(msgs[2].contains("kind: invalid type: sequence"), "{msgs:?}");
    }

    #[test]
    fn yaml_1_1_octal_file_modes_are_read_as_kubernetes_reads_them() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: []\n  volumes:\n  - name: s\n    secret:\n      secretName: s\n      defaultMode: 0400 # owner read\n      items:\n      - {key: k, path: k, mode: 0644}\n";
        let mut modes = vec![];
        let mut diags = vec![];
        load_str(
            "f.yaml",
            text,
            &mut |o, _| {
                if let Object::Workload(Workload::Pod(p)) = o {
                    let secret = p.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0]
                        .secret
                        .clone()
                        .unwrap();
                    modes.push(secret.default_mode.unwrap());
                }
            },
            &mut diags,
        );
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(modes, [0o400]);
        assert_eq!(
            yaml11_octals("a: 0644\nb: \"0644\"\nc: 0\nd: 089\n- 0755\ne: [0600, 0]\nf: x # y: 0644\ng: '- 0644'\n"),
            "a: 420\nb: \"0644\"\nc: 0\nd: 089\n- 493\ne: [384, 0]\nf: x # y: 0644\ng: '- 0644'\n"
        );
    }

    #[test]
    fn unsupported_api_versions_are_skipped() {
        let (objs, diags) =
            load("apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: old}\n");
        assert!(objs.is_empty());
        assert_eq!(diags[0].severity, Severity::Skipped);
        assert!(diags[0].message.contains("extensions/v1beta1 Deployment"));
    }
}
