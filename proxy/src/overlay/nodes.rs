//! Where the overlay's Nodes come from: a kube-rs watcher on every Node, or
//! the proxy's `--manifests` directory.

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::mpsc;

/// A change to the set of Nodes.
#[derive(Debug, Clone)]
pub enum NodeEvent {
    /// The complete set (initial list, re-list, manifest re-read).
    Replace(Vec<Node>),
    /// A Node added or changed.
    Apply(Node),
    /// A Node deleted.
    Delete(Node),
}

/// Watches every Node through the API server until `tx` closes.
pub async fn watch_nodes(client: Client, tx: mpsc::Sender<NodeEvent>) {
    let stream = watcher(Api::<Node>::all(client), watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut listing = Vec::new();
    while let Some(item) = stream.next().await {
        let ev = match item {
            Ok(watcher::Event::Init) => {
                listing.clear();
                continue;
            }
            Ok(watcher::Event::InitApply(n)) => {
                listing.push(n);
                continue;
            }
            Ok(watcher::Event::InitDone) => NodeEvent::Replace(std::mem::take(&mut listing)),
            Ok(watcher::Event::Apply(n)) => NodeEvent::Apply(n),
            Ok(watcher::Event::Delete(n)) => NodeEvent::Delete(n),
            Err(e) => {
                tracing::warn!(error = %e, "overlay: node watch failed; retrying with backoff");
                continue;
            }
        };
        if tx.send(ev).await.is_err() {
            return;
        }
    }
}

/// Nodes from a `--manifests` directory (re-read on change).
pub async fn watch_manifest_nodes(dir: PathBuf, tx: mpsc::Sender<NodeEvent>) {
    use crate::source::{Kind, Object, SourceEvent};
    let (stx, mut srx) = mpsc::channel(64);
    tokio::spawn(crate::source::manifests::watch(
        dir,
        None,
        stx,
        Duration::from_secs(1),
    ));
    while let Some(ev) = srx.recv().await {
        if let SourceEvent::Replace(Kind::Node, objects) = ev {
            let nodes = objects
                .into_iter()
                .filter_map(|o| match o {
                    Object::Node(n) => Some(*n),
                    _ => None,
                })
                .collect();
            if tx.send(NodeEvent::Replace(nodes)).await.is_err() {
                return;
            }
        }
    }
}
