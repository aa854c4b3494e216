//! `--manifests DIR`: Services, EndpointSlices and Nodes from YAML (or JSON)
//! files instead of an API server, through `sluice_kube`'s manifest
//! directory source (documents, `List`s, polling; other kinds are skipped
//! with a log line). Each reload replaces every kind.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use sluice_kube::manifests::{self, DecodeError, Decoder, decode};
use tokio::sync::mpsc;

use super::{Kind, Object, SourceEvent};

/// The proxy's kinds, normalized for a proxy named `service_proxy_name`.
#[derive(Debug, Clone, Default)]
pub struct ProxyManifests {
    /// `--service-proxy-name`.
    pub service_proxy_name: Option<String>,
}

impl Decoder for ProxyManifests {
    type Object = Object;

    fn kinds(&self) -> Vec<Kind> {
        Kind::ALL.to_vec()
    }

    fn decode(&self, kind: &str, doc: Value) -> Option<Result<Object, DecodeError>> {
        let name = self.service_proxy_name.as_deref();
        Some(match kind {
            "Service" => decode(doc).map(|s| Object::service(&s, name)),
            "EndpointSlice" => decode(doc).map(|s| Object::endpoint_slice(&s, name)),
            "Node" => decode(doc).map(Object::node),
            _ => return None,
        })
    }
}

/// Sends the directory's contents now and again whenever a file changes,
/// checking every `interval`, until the receiver is dropped.
pub async fn watch(
    dir: PathBuf,
    service_proxy_name: Option<String>,
    tx: mpsc::Sender<SourceEvent>,
    interval: Duration,
) {
    let decoder = ProxyManifests { service_proxy_name };
    manifests::watch(dir, decoder, tx, interval).await;
}

#[cfg(test)]
mod tests {
    use sluice_kube::manifests::{load_dir, replace_events};

    use super::*;

    #[test]
    fn loads_the_proxy_kinds_and_skips_the_others() {
        let dir = std::env::temp_dir().join(format!("sluice-manifests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("a.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n\
             spec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}\n---\n\
             apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ignored}\n---\n\
             apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Node\n  metadata: {name: node-1}\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("b.yml"),
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {name: web-1, labels: {kubernetes.io/service-name: web}}\n\
             addressType: IPv4\nendpoints: [{addresses: [10.244.1.2]}]\n",
        )
        .unwrap();
        let decoder = ProxyManifests::default();
        let loaded = load_dir(&dir, &decoder);
        let kinds: Vec<Kind> = loaded.objects.iter().map(Object::kind).collect();
        assert_eq!(kinds, [Kind::Service, Kind::Node, Kind::EndpointSlice]);
        assert_eq!(loaded.skipped.len(), 1);
        // Without a namespace, the Service and its slice are in `default`
        // (kubectl apply's), so the slice finds its Service.
        let Object::EndpointSlice(slice) = &loaded.objects[2] else {
            unreachable!()
        };
        assert_eq!(slice.key.to_string(), "default/web-1");
        assert_eq!(slice.service.as_ref().unwrap().to_string(), "default/web");
        // One Replace per kind, none filed under another kind.
        let events = replace_events(&decoder, loaded.objects);
        for ev in &events {
            let SourceEvent::Replace(kind, objs) = ev else {
                unreachable!()
            };
            assert_eq!(objs.len(), 1);
            assert!(objs.iter().all(|o| o.kind() == *kind));
        }
        assert_eq!(events.len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
