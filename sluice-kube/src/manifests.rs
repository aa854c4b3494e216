//! `--manifests DIR`: objects from YAML (or JSON) files instead of an API
//! server, for any binary's set of kinds ([`Decoder`]).
//!
//! Files (`*.yaml`, `*.yml`, `*.json`, sorted by name) may hold several
//! documents and `List` objects (`kind: List`, as `kubectl get -o yaml`
//! writes them, or `kind: ServiceList` and the like, whose items may omit
//! their kind as the API server writes them). A document of a kind
//! the binary does not handle is skipped with a log line; one that does not
//! decode is reported ([`ManifestError`]) and skipped; the rest are used. A
//! namespaced object without a namespace lives in `default`, as
//! `kubectl apply` would put it.
//!
//! The directory is polled ([`watch`]); when any file changes, the whole
//! set is re-read and sent as one [`SourceEvent::Replace`] per kind, so
//! edits, additions and deletions all take effect.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::source::{SourceEvent, Watched};

/// What a binary reads from a manifest directory.
pub trait Decoder {
    /// The binary's objects.
    type Object: Watched;

    /// Every kind a reload replaces (each gets a Replace, empty or not).
    fn kinds(&self) -> Vec<<Self::Object as Watched>::Kind>;

    /// Decodes a document whose `kind` is `kind` (usually with
    /// [`decode`]); `None` when the binary does not handle that kind.
    fn decode(&self, kind: &str, doc: Value) -> Option<Result<Self::Object, DecodeError>>;
}

/// A document that names a kind the binary handles but does not decode as
/// that kind.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {source}")]
pub struct DecodeError {
    /// The kind.
    pub kind: &'static str,
    /// What serde found.
    #[source]
    pub source: serde_json::Error,
}

/// Decodes `doc` as a `K`; a namespaced object without a namespace gets
/// `default`.
pub fn decode<K>(doc: Value) -> Result<K, DecodeError>
where
    K: k8s_openapi::Resource + k8s_openapi::Metadata<Ty = ObjectMeta> + DeserializeOwned,
    K::Scope: 'static,
{
    let mut obj: K = serde_json::from_value(doc).map_err(|source| DecodeError {
        kind: K::KIND,
        source,
    })?;
    let namespaced = std::any::TypeId::of::<K::Scope>()
        == std::any::TypeId::of::<k8s_openapi::NamespaceResourceScope>();
    let meta = obj.metadata_mut();
    if namespaced && meta.namespace.as_deref().is_none_or(str::is_empty) {
        meta.namespace = Some("default".to_owned());
    }
    Ok(obj)
}

/// Why a file, or a document in it, could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestProblem {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Read(#[source] std::io::Error),
    /// The file is not YAML.
    #[error("not YAML: {0}")]
    NotYaml(String),
    /// A document of a handled kind that does not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// A file or document that could not be used, with where it came from.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", file.display())]
pub struct ManifestError {
    /// The file.
    pub file: PathBuf,
    /// What was wrong.
    pub problem: ManifestProblem,
}

/// A document of a kind the binary does not handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file.
    pub file: PathBuf,
    /// Its `kind` (empty if it has none).
    pub kind: String,
}

/// What a directory held.
#[derive(Debug)]
pub struct Loaded<T> {
    /// The objects, in file and document order.
    pub objects: Vec<T>,
    /// What could not be used.
    pub errors: Vec<ManifestError>,
    /// Documents of kinds not handled.
    pub skipped: Vec<Skipped>,
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
        })
        .collect();
    out.sort();
    out
}

/// Whether `kind` names a list (`List`, `ServiceList`, …).
fn is_list(kind: &str) -> bool {
    kind.ends_with("List")
}

impl<T> Default for Loaded<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Loaded<T> {
    /// Nothing loaded yet.
    pub fn new() -> Self {
        Self {
            objects: Vec::new(),
            errors: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// Takes every document of one file's `text` (YAML, which includes
    /// JSON): what [`load_dir`] does with each file. `file` names the
    /// source in errors and skips.
    pub fn add_text<D: Decoder<Object = T>>(&mut self, decoder: &D, file: &Path, text: &str) {
        let docs: Vec<Value> = match serde_saphyr::from_multiple(text) {
            Ok(d) => d,
            Err(e) => {
                self.errors.push(ManifestError {
                    file: file.to_owned(),
                    problem: ManifestProblem::NotYaml(e.to_string()),
                });
                return;
            }
        };
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            self.document(decoder, file, doc, None);
        }
    }

    /// Takes one document; `item_of` is the kind a `ServiceList` (say)
    /// implies for items without one, as the API server writes them.
    fn document<D: Decoder<Object = T>>(
        &mut self,
        decoder: &D,
        file: &Path,
        doc: Value,
        item_of: Option<&str>,
    ) {
        let kind = match doc.get("kind").and_then(Value::as_str) {
            Some(k) => k.to_owned(),
            None => item_of.unwrap_or_default().to_owned(),
        };
        if is_list(&kind) {
            let items = match doc {
                Value::Object(mut m) => m.remove("items"),
                _ => None,
            };
            let item_kind = kind.strip_suffix("List").filter(|k| !k.is_empty());
            if let Some(Value::Array(items)) = items {
                for item in items {
                    self.document(decoder, file, item, item_kind);
                }
            }
            return;
        }
        match decoder.decode(&kind, doc) {
            Some(Ok(o)) => self.objects.push(o),
            Some(Err(e)) => self.errors.push(ManifestError {
                file: file.to_owned(),
                problem: e.into(),
            }),
            None => self.skipped.push(Skipped {
                file: file.to_owned(),
                kind,
            }),
        }
    }
}

/// Reads every manifest in `dir`.
pub fn load_dir<D: Decoder>(dir: &Path, decoder: &D) -> Loaded<D::Object> {
    let mut out = Loaded::new();
    for file in files(dir) {
        match std::fs::read_to_string(&file) {
            Ok(text) => out.add_text(decoder, &file, &text),
            Err(e) => out.errors.push(ManifestError {
                file,
                problem: ManifestProblem::Read(e),
            }),
        }
    }
    out
}

/// The events that replace every kind of `decoder` with `objects`.
pub fn replace_events<D: Decoder>(
    decoder: &D,
    objects: Vec<D::Object>,
) -> Vec<SourceEvent<D::Object>> {
    let mut by_kind: Vec<(_, Vec<D::Object>)> = decoder
        .kinds()
        .into_iter()
        .map(|k| (k, Vec::new()))
        .collect();
    for o in objects {
        let kind = o.kind();
        if let Some((_, v)) = by_kind.iter_mut().find(|(k, _)| *k == kind) {
            v.push(o);
        }
    }
    by_kind
        .into_iter()
        .map(|(k, objs)| SourceEvent::Replace(k, objs))
        .collect()
}

/// Names, modification times and sizes: what changes when a file does.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    files(dir)
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let mtime = meta.as_ref().and_then(|m| m.modified().ok());
            let len = meta.map(|m| m.len()).unwrap_or(0);
            (p, mtime, len)
        })
        .collect()
}

/// Sends the directory's contents now and again whenever a file changes,
/// checking every `interval`, until the receiver is dropped.
pub async fn watch<D: Decoder>(
    dir: PathBuf,
    decoder: D,
    tx: mpsc::Sender<SourceEvent<D::Object>>,
    interval: Duration,
) {
    let mut last = None;
    loop {
        let now = fingerprint(&dir);
        if last.as_ref() != Some(&now) {
            let loaded = load_dir(&dir, &decoder);
            for e in &loaded.errors {
                tracing::warn!(file = %e.file.display(), reason = %e.problem, "skipping manifest document");
            }
            for s in &loaded.skipped {
                tracing::debug!(file = %s.file.display(), kind = %s.kind, "skipping manifest document of a kind not handled here");
            }
            tracing::info!(
                dir = %dir.display(),
                objects = loaded.objects.len(),
                skipped = loaded.skipped.len(),
                "loaded manifests (skipped: documents of kinds not handled here)"
            );
            for ev in replace_events(&decoder, loaded.objects) {
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
            last = Some(now);
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Node, Service};

    use super::*;

    /// A binary that handles Services and Nodes.
    #[derive(Debug)]
    #[allow(clippy::large_enum_variant)]
    enum Obj {
        Service(Service),
        Node(Node),
    }

    impl Watched for Obj {
        type Kind = &'static str;
        fn kind(&self) -> &'static str {
            match self {
                Self::Service(_) => "Service",
                Self::Node(_) => "Node",
            }
        }
    }

    struct Dec;

    impl Decoder for Dec {
        type Object = Obj;
        fn kinds(&self) -> Vec<&'static str> {
            vec!["Service", "Node"]
        }
        fn decode(&self, kind: &str, doc: Value) -> Option<Result<Obj, DecodeError>> {
            Some(match kind {
                "Service" => decode(doc).map(Obj::Service),
                "Node" => decode(doc).map(Obj::Node),
                _ => return None,
            })
        }
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sluice-kube-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn names(l: &Loaded<Obj>) -> Vec<String> {
        l.objects
            .iter()
            .map(|o| match o {
                Obj::Service(s) => format!(
                    "Service {}/{}",
                    s.metadata.namespace.as_deref().unwrap_or("?"),
                    s.metadata.name.as_deref().unwrap_or("?")
                ),
                Obj::Node(n) => format!(
                    "Node {}{}",
                    n.metadata.namespace.as_deref().unwrap_or(""),
                    n.metadata.name.as_deref().unwrap_or("?")
                ),
            })
            .collect()
    }

    #[test]
    fn documents_lists_and_kinds_not_handled() {
        let d = dir("docs");
        std::fs::write(
            d.join("a.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n\
             spec: {ports: [{port: 80}]}\n---\n\
             apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ignored}\n---\n\
             apiVersion: v1\nkind: List\nitems:\n\
             - {apiVersion: v1, kind: Node, metadata: {name: node-1}}\n\
             - {apiVersion: v1, kind: Service, metadata: {name: api}}\n---\n",
        )
        .unwrap();
        std::fs::write(
            d.join("b.json"),
            r#"{"apiVersion": "v1", "kind": "ServiceList", "items": [
                 {"metadata": {"name": "db", "namespace": "x"}},
                 {"kind": "ConfigMap", "metadata": {"name": "c"}}]}"#,
        )
        .unwrap();
        std::fs::write(d.join("notes.txt"), "kind: Service\n").unwrap();
        let l = load_dir(&d, &Dec);
        // A namespaced object without a namespace is in `default`; a
        // cluster-scoped one gets none. Items of a ServiceList without a
        // kind (as the API server writes them) are Services.
        assert_eq!(
            names(&l),
            [
                "Service shop/web",
                "Node node-1",
                "Service default/api",
                "Service x/db"
            ]
        );
        let skipped: Vec<&str> = l.skipped.iter().map(|s| s.kind.as_str()).collect();
        assert_eq!(skipped, ["Deployment", "ConfigMap"]);
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        let events = replace_events(&Dec, l.objects);
        let kinds: Vec<(&str, usize)> = events
            .iter()
            .map(|e| match e {
                SourceEvent::Replace(k, v) => (*k, v.len()),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(kinds, [("Service", 3), ("Node", 1)]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bad_files_and_documents_are_reported_and_the_rest_used() {
        let d = dir("bad");
        std::fs::write(d.join("a.yaml"), "kind: Service\nspec: {ports: nope}\n").unwrap();
        std::fs::write(d.join("b.yaml"), "{ not yaml").unwrap();
        std::fs::write(
            d.join("c.yml"),
            "kind: Node\nmetadata: {name: node-n}\n---\nkind: Node\nmetadata: 7\n",
        )
        .unwrap();
        let l = load_dir(&d, &Dec);
        assert_eq!(names(&l), ["Node node-n"], "{:?}", l.errors);
        let errors: Vec<String> = l.errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("a.yaml: Service: "), "{errors:?}");
        assert!(errors[1].contains("b.yaml: not YAML"), "{errors:?}");
        assert!(errors[2].contains("c.yml: Node: "), "{errors:?}");
        // Every kind is replaced, even with nothing: a deleted file's
        // objects go away.
        assert_eq!(replace_events(&Dec, l.objects).len(), 2);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[tokio::test]
    async fn watch_sends_again_when_a_file_changes() {
        let d = dir("watch");
        std::fs::write(d.join("a.yaml"), "kind: Node\nmetadata: {name: n1}\n").unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let task = tokio::spawn(watch(d.clone(), Dec, tx, Duration::from_millis(20)));
        let mut next_nodes = async || loop {
            if let Some(SourceEvent::Replace("Node", v)) = rx.recv().await {
                return v.len();
            }
        };
        assert_eq!(next_nodes().await, 1);
        std::fs::write(
            d.join("b.yaml"),
            "kind: Node\nmetadata: {name: n2}\n---\nkind: Node\nmetadata: {name: n3}\n",
        )
        .unwrap();
        assert_eq!(next_nodes().await, 3);
        std::fs::remove_file(d.join("a.yaml")).unwrap();
        assert_eq!(next_nodes().await, 2);
        task.abort();
        std::fs::remove_dir_all(&d).unwrap();
    }
}
