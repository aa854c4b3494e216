//! Server-side apply of arbitrary manifests (what `kubectl apply
//! --server-side` does): each document's kind is resolved through the API
//! server's discovery, so schema, defaulting and admission are the
//! server's own.

use std::path::Path;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Discovery, Scope};

/// Why a manifest was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// No client could be made.
    #[error(transparent)]
    Client(#[from] super::ClusterError),
    /// The text is not YAML, or a document is not an object with
    /// apiVersion, kind and metadata.name.
    #[error("manifest: {0}")]
    Manifest(String),
    /// Discovery failed.
    #[error("discovery: {0}")]
    Discovery(kube::Error),
    /// The API server serves no such kind.
    #[error("{0}: the API server serves no such kind")]
    UnknownKind(String),
    /// The API server refused the object.
    #[error("applying {object}: {source}")]
    Refused {
        /// `Kind namespace/name`.
        object: String,
        /// The server's answer.
        source: kube::Error,
    },
}

/// Applies every document of `yaml` (a `List` is applied item by item);
/// returns `Kind namespace/name` of each object applied, in order.
pub async fn apply_all(kubeconfig: &Path, yaml: &str) -> Result<Vec<String>, ApplyError> {
    let client = super::client_from(kubeconfig).await?;
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(yaml).map_err(|e| ApplyError::Manifest(e.to_string()))?;
    let mut objects = Vec::new();
    for doc in docs {
        match doc.get("kind").and_then(|k| k.as_str()) {
            None if doc.is_null() => {}
            Some(k) if k.ends_with("List") => {
                if let Some(items) = doc.get("items").and_then(|i| i.as_array()) {
                    objects.extend(items.iter().cloned());
                }
            }
            _ => objects.push(doc),
        }
    }
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(ApplyError::Discovery)?;
    let mut applied = Vec::new();
    for value in objects {
        let obj: DynamicObject =
            serde_json::from_value(value).map_err(|e| ApplyError::Manifest(e.to_string()))?;
        let types = obj
            .types
            .clone()
            .ok_or_else(|| ApplyError::Manifest("a document without apiVersion/kind".into()))?;
        let gvk = GroupVersionKind::try_from(&types)
            .map_err(|e| ApplyError::Manifest(format!("{types:?}: {e}")))?;
        let (resource, caps) = discovery.resolve_gvk(&gvk).ok_or_else(|| {
            ApplyError::UnknownKind(format!("{}/{}", types.api_version, types.kind))
        })?;
        let name = obj
            .metadata
            .name
            .clone()
            .ok_or_else(|| ApplyError::Manifest(format!("a {} without a name", types.kind)))?;
        let (api, label): (Api<DynamicObject>, String) = match caps.scope {
            Scope::Namespaced => {
                let ns = obj.metadata.namespace.as_deref().unwrap_or("default");
                (
                    Api::namespaced_with(client.clone(), ns, &resource),
                    format!("{} {ns}/{name}", types.kind),
                )
            }
            Scope::Cluster => (
                Api::all_with(client.clone(), &resource),
                format!("{} {name}", types.kind),
            ),
        };
        // Strict: an unknown or duplicate field is an error, not a warning.
        let params = PatchParams::apply("sluice-tests")
            .force()
            .validation_strict();
        api.patch(&name, &params, &Patch::Apply(&obj))
            .await
            .map_err(|source| ApplyError::Refused {
                object: label.clone(),
                source,
            })?;
        applied.push(label);
    }
    Ok(applied)
}
