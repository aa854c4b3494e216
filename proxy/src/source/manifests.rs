//! `--manifests DIR`: Services, EndpointSlices and Nodes from YAML (or JSON)
//! files instead of an API server. Files may hold several documents and
//! `kind: List` objects. The directory is polled; when any file changes, the
//! whole set is re-read and sent as a [`SourceEvent::Replace`] per kind, so
//! edits, additions and deletions all take effect.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use super::{Kind, Object, SourceEvent};

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

fn object(
    doc: serde_json::Value,
    proxy_name: Option<&str>,
    out: &mut Vec<Object>,
) -> Result<(), String> {
    let kind = doc
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or_default()
        .to_owned();
    match kind.as_str() {
        "Service" => out.push(Object::service(
            &serde_json::from_value(doc).map_err(|e| format!("Service: {e}"))?,
            proxy_name,
        )),
        "EndpointSlice" => out.push(Object::endpoint_slice(
            &serde_json::from_value(doc).map_err(|e| format!("EndpointSlice: {e}"))?,
            proxy_name,
        )),
        "Node" => out.push(Object::node(
            serde_json::from_value(doc).map_err(|e| format!("Node: {e}"))?,
        )),
        "List" | "ServiceList" | "EndpointSliceList" | "NodeList" => {
            let items = match doc {
                serde_json::Value::Object(mut m) => m.remove("items"),
                _ => None,
            };
            for item in items
                .and_then(|i| i.as_array().cloned())
                .unwrap_or_default()
            {
                object(item, proxy_name, out)?;
            }
        }
        // Other kinds (Deployments, Ingresses, ...) may share the directory.
        _ => {}
    }
    Ok(())
}

/// Reads every manifest in `dir`, normalized for a proxy named
/// `proxy_name`. Bad documents are reported and skipped; the rest are used.
pub fn load_dir(dir: &Path, proxy_name: Option<&str>) -> (Vec<Object>, Vec<ManifestError>) {
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
        let docs: Vec<serde_json::Value> = match serde_saphyr::from_multiple(&text) {
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
            if let Err(reason) = object(doc, proxy_name, &mut objects) {
                errors.push(ManifestError {
                    file: file.clone(),
                    reason,
                });
            }
        }
    }
    (objects, errors)
}

/// The events that replace every kind with the directory's contents.
pub fn replace_events(objects: Vec<Object>) -> Vec<SourceEvent> {
    let mut by_kind: [(Kind, Vec<Object>); 3] = [
        (Kind::Service, Vec::new()),
        (Kind::EndpointSlice, Vec::new()),
        (Kind::Node, Vec::new()),
    ];
    for o in objects {
        let i = by_kind
            .iter()
            .position(|(k, _)| *k == o.kind())
            .unwrap_or(0);
        by_kind[i].1.push(o);
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
pub async fn watch(
    dir: PathBuf,
    proxy_name: Option<String>,
    tx: mpsc::Sender<SourceEvent>,
    interval: Duration,
) {
    let mut last = None;
    loop {
        let now = fingerprint(&dir);
        if last.as_ref() != Some(&now) {
            let (objects, errors) = load_dir(&dir, proxy_name.as_deref());
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
    fn loads_multi_document_files_and_lists_and_reports_bad_ones() {
        let dir = std::env::temp_dir().join(format!("sluice-manifests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("a.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n\
             spec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}\n---\n\
             apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ignored}\n---\n\
             apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Node\n  metadata: {name: node-1}\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("b.yml"),
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}\n\
             addressType: IPv4\nendpoints: [{addresses: [10.244.1.2]}]\n",
        )
        .unwrap();
        std::fs::write(dir.join("c.yaml"), "kind: Service\nspec: {ports: nope}\n").unwrap();
        std::fs::write(dir.join("d.yaml"), "{ not yaml").unwrap();
        std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
        let (objects, errors) = load_dir(&dir, None);
        let kinds: Vec<Kind> = objects.iter().map(Object::kind).collect();
        assert_eq!(kinds, vec![Kind::Service, Kind::Node, Kind::EndpointSlice]);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().any(|e| e.file.ends_with("c.yaml")));
        assert!(errors.iter().any(|e| e.file.ends_with("d.yaml")));
        let events = replace_events(objects);
        assert_eq!(events.len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
