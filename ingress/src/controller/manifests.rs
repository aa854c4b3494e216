//! `--manifests DIR`: IngressClasses, Ingresses, Services, EndpointSlices,
//! Secrets (of every type: annotations may name any of them) and
//! ConfigMaps from YAML (or JSON) files instead of an API server, through
//! `sluice_kube`'s manifest directory source (documents, `List`s, polling;
//! other kinds are skipped with a log line; namespaced objects without a
//! namespace are in `default`). Each reload replaces every kind.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use sluice_kube::manifests::{self, DecodeError, Decoder, decode};
use tokio::sync::mpsc;

use super::snapshot::{Kind, Object, SourceEvent};

/// The controller's kinds.
#[derive(Debug, Clone, Copy, Default)]
pub struct IngressManifests;

impl Decoder for IngressManifests {
    type Object = Object;

    fn kinds(&self) -> Vec<Kind> {
        Kind::ALL.to_vec()
    }

    fn decode(&self, kind: &str, doc: Value) -> Option<Result<Object, DecodeError>> {
        Some(match kind {
            "IngressClass" => decode(doc).map(Object::IngressClass),
            "Ingress" => decode(doc).map(Object::Ingress),
            "Service" => decode(doc).map(Object::Service),
            "EndpointSlice" => decode(doc).map(Object::EndpointSlice),
            "Secret" => decode(doc).map(Object::Secret),
            "ConfigMap" => decode(doc).map(Object::ConfigMap),
            _ => return None,
        })
    }
}

/// Sends the directory's contents now and again whenever a file changes,
/// checking every `interval`, until the receiver is dropped.
pub async fn watch(dir: PathBuf, tx: mpsc::Sender<SourceEvent>, interval: Duration) {
    manifests::watch(dir, IngressManifests, tx, interval).await;
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::networking::v1::Ingress;
    use sluice_kube::ObjectKey;
    use sluice_kube::manifests::{load_dir, replace_events};

    use super::*;

    #[test]
    fn loads_all_kinds_and_lists_and_skips_the_others() {
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
        let loaded = load_dir(&dir, &IngressManifests);
        let kinds: Vec<Kind> = loaded.objects.iter().map(Object::kind).collect();
        assert_eq!(kinds, vec![Kind::IngressClass, Kind::Ingress, Kind::Secret]);
        let key = |o: &Object| o.key::<Ingress>();
        assert_eq!(key(&loaded.objects[1]), ObjectKey::new("default", "web"));
        assert_eq!(key(&loaded.objects[2]).namespace, "x");
        assert_eq!(key(&loaded.objects[0]).namespace, "", "cluster-scoped");
        assert_eq!(loaded.skipped.len(), 1);
        assert_eq!(replace_events(&IngressManifests, loaded.objects).len(), 7);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
