//! `--manifests DIR`: IngressClasses, Ingresses, Services, EndpointSlices
//! and Secrets from YAML (or JSON) files instead of an API server. Files
//! may hold several documents and `kind: List` objects; other kinds are
//! ignored. The directory is polled; when any file changes, everything is
//! re-read and sent as one [`SourceEvent::Replace`] per kind, so edits,
//! additions and deletions all take effect.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::sync::mpsc;

use super::snapshot::{Kind, Object, SourceEvent};

/// A document that could not be used, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// The file.
    pub file: PathBuf,
    /// What was wrong.
    pub reason: String,
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

fn parse<T: k8s_openapi::serde::de::DeserializeOwned>(
    kind: &str,
    doc: Value,
    wrap: fn(T) -> Object,
) -> Result<Object, String> {
    serde_json::from_value(doc)
        .map(wrap)
        .map_err(|e| format!("{kind}: {e}"))
}

fn object(doc: Value, out: &mut Vec<Object>) -> Result<(), String> {
    let kind = doc
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or_default()
        .to_owned();
    let o = match kind.as_str() {
        "IngressClass" => parse(&kind, doc, Object::IngressClass)?,
        "Ingress" => parse(&kind, doc, Object::Ingress)?,
        "Service" => parse(&kind, doc, Object::Service)?,
        "EndpointSlice" => parse(&kind, doc, Object::EndpointSlice)?,
        "Secret" => parse(&kind, doc, Object::Secret)?,
        k if k == "List" || k.ends_with("List") => {
            let items = match doc {
                Value::Object(mut m) => m.remove("items"),
                _ => None,
            };
            for item in items
                .and_then(|i| i.as_array().cloned())
                .unwrap_or_default()
            {
                object(item, out)?;
            }
            return Ok(());
        }
        // Other kinds (Deployments, ...) may share the directory.
        _ => return Ok(()),
    };
    out.push(o);
    Ok(())
}

/// Reads every manifest in `dir`. Bad documents are reported and skipped.
/// Objects without a namespace get `default`, as `kubectl apply` would.
pub fn load_dir(dir: &Path) -> (Vec<Object>, Vec<ManifestError>) {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for file in files(dir) {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(ManifestError {
                    file,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let docs: Vec<Value> = match serde_saphyr::from_multiple(&text) {
            Ok(d) => d,
            Err(e) => {
                errors.push(ManifestError {
                    file,
                    reason: format!("not YAML: {e}"),
                });
                continue;
            }
        };
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            if let Err(reason) = object(doc, &mut objects) {
                errors.push(ManifestError {
                    file: file.clone(),
                    reason,
                });
            }
        }
    }
    for o in &mut objects {
        let meta = match o {
            Object::IngressClass(_) => continue,
            Object::Ingress(x) => &mut x.metadata,
            Object::Service(x) => &mut x.metadata,
            Object::EndpointSlice(x) => &mut x.metadata,
            Object::Secret(x) => &mut x.metadata,
        };
        meta.namespace.get_or_insert_with(|| "default".to_owned());
    }
    (objects, errors)
}

/// The events that replace every kind with `objects`.
pub fn replace_events(objects: Vec<Object>) -> Vec<SourceEvent> {
    let mut by_kind: Vec<(Kind, Vec<Object>)> =
        Kind::ALL.iter().map(|k| (*k, Vec::new())).collect();
    for o in objects {
        if let Some((_, v)) = by_kind.iter_mut().find(|(k, _)| *k == o.kind()) {
            v.push(o);
        }
    }
    by_kind
        .into_iter()
        .map(|(k, objs)| SourceEvent::Replace(k, objs))
        .collect()
}

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
pub async fn watch(dir: PathBuf, tx: mpsc::Sender<SourceEvent>, interval: Duration) {
    let mut last = None;
    loop {
        let now = fingerprint(&dir);
        if last.as_ref() != Some(&now) {
            let (objects, errors) = load_dir(&dir);
            for e in &errors {
                tracing::warn!(file = %e.file.display(), reason = %e.reason, "skipping manifest document");
            }
            tracing::info!(dir = %dir.display(), objects = objects.len(), "loaded manifests");
            for ev in replace_events(objects) {
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
    use super::*;

    #[test]
    fn loads_all_kinds_lists_and_reports_bad_documents() {
        let dir =
            std::env::temp_dir().join(format!("sluice-ingress-manifests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("a.yaml"),
            "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: sluice}\n\
             spec: {controller: sluice.dev/ingress-controller}\n---\n\
             apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\n\
             spec: {ingressClassName: sluice}\n---\n\
             apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ignored}\n---\n\
             apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata: {name: s, namespace: x}\n",
        )
        .unwrap();
        std::fs::write(dir.join("b.yaml"), "kind: Service\nspec: {ports: nope}\n").unwrap();
        std::fs::write(dir.join("c.yaml"), "{ not yaml").unwrap();
        let (objects, errors) = load_dir(&dir);
        let kinds: Vec<Kind> = objects.iter().map(Object::kind).collect();
        assert_eq!(kinds, vec![Kind::IngressClass, Kind::Ingress, Kind::Secret]);
        assert_eq!(objects[1].key().namespace, "default");
        assert_eq!(objects[2].key().namespace, "x");
        assert_eq!(objects[0].key().namespace, "");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(replace_events(objects).len(), 5);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
