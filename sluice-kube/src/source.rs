//! What a source (a watcher, a manifest directory) tells a snapshot.

use std::fmt::Debug;
use std::hash::Hash;

use tokio::sync::mpsc;

/// An object a binary watches: one of its closed set of kinds. The proxy,
/// the overlay and the ingress controller each have their own enum of the
/// objects they keep; the events carrying them are shared.
pub trait Watched {
    /// The binary's kinds (an enum, or `()` for a single kind).
    type Kind: Copy + Eq + Ord + Hash + Debug + Send + Sync + 'static;

    /// The kind of this object.
    fn kind(&self) -> Self::Kind;
}

/// A single Kubernetes kind is its own closed set (the overlay watches
/// Nodes only).
impl<K: k8s_openapi::Resource> Watched for K {
    type Kind = ();

    fn kind(&self) -> Self::Kind {}
}

/// A change from a source.
#[derive(Debug, Clone)]
pub enum SourceEvent<T: Watched> {
    /// An object was created or updated.
    Apply(T),
    /// An object was deleted.
    Delete(T),
    /// The complete current set of one kind: an initial list, a re-list
    /// (after 410 Gone or any watch error), or a reloaded manifest
    /// directory. The snapshot drops what is not in it and marks the kind
    /// synced.
    Replace(T::Kind, Vec<T>),
}

impl<T: Watched> SourceEvent<T> {
    /// The kind the event is about.
    pub fn kind(&self) -> T::Kind {
        match self {
            Self::Apply(o) | Self::Delete(o) => o.kind(),
            Self::Replace(k, _) => *k,
        }
    }
}

/// Sends every event of `events` to `tx`, until either ends. Returns false
/// if the receiver went away.
pub async fn send_all<T: Watched>(
    events: impl futures::Stream<Item = SourceEvent<T>>,
    tx: &mpsc::Sender<SourceEvent<T>>,
) -> bool {
    use futures::StreamExt;
    let mut events = std::pin::pin!(events);
    while let Some(ev) = events.next().await {
        if tx.send(ev).await.is_err() {
            return false;
        }
    }
    true
}
