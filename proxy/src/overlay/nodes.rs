//! Where the overlay's Nodes come from: a kube-rs watcher on every Node, or
//! the proxy's `--manifests` directory (its Nodes only).

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::Value;
use sluice_kube::SourceEvent;
use sluice_kube::manifests::{DecodeError, Decoder, decode};
use sluice_kube::watch::watch;
use tokio::sync::mpsc;

/// A change to the set of Nodes (Replace: initial list, re-list, manifest
/// re-read).
pub type NodeEvent = SourceEvent<Node>;

/// Watches every Node through the API server until `tx` closes.
pub async fn watch_nodes(client: Client, tx: mpsc::Sender<NodeEvent>) {
    let nodes = watch(
        Api::all(client),
        watcher::Config::default(),
        (),
        |n: Node| n,
    );
    sluice_kube::source::send_all(nodes, &tx).await;
}

/// The overlay reads only Nodes from a manifest directory.
struct NodeManifests;

impl Decoder for NodeManifests {
    type Object = Node;

    fn kinds(&self) -> Vec<()> {
        vec![()]
    }

    fn decode(&self, kind: &str, doc: Value) -> Option<Result<Node, DecodeError>> {
        (kind == "Node").then(|| decode(doc))
    }
}

/// Nodes from a `--manifests` directory (re-read on change).
pub async fn watch_manifest_nodes(dir: PathBuf, tx: mpsc::Sender<NodeEvent>) {
    sluice_kube::manifests::watch(dir, NodeManifests, tx, Duration::from_secs(1)).await;
}
