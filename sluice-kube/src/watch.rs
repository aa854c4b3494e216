//! kube-runtime watcher events → [`SourceEvent`]s, as an extension trait in
//! the style of kube-runtime's `WatchStreamExt`:
//!
//! ```no_run
//! # use k8s_openapi::api::core::v1::Node;
//! # use kube::runtime::{WatchStreamExt, watcher};
//! # use sluice_kube::SourceStreamExt;
//! # async fn demo(client: kube::Client, tx: tokio::sync::mpsc::Sender<sluice_kube::SourceEvent<Node>>) {
//! let nodes = watcher(kube::Api::<Node>::all(client), watcher::Config::default())
//!     .default_backoff()
//!     .source_events((), |n: Node| n);
//! sluice_kube::source::send_all(nodes, &tx).await;
//! # }
//! ```
//!
//! A watcher's initial list, and every re-list after an error or 410 Gone
//! (`Init`, `InitApply`…, `InitDone`), becomes one
//! [`SourceEvent::Replace`]: the snapshot learns the complete set at once,
//! and objects deleted while the watch was down disappear. Later changes
//! are [`SourceEvent::Apply`] and [`SourceEvent::Delete`]. Errors are
//! logged and dropped: the watcher (with its backoff) retries by itself, and
//! the consumer keeps what it has meanwhile.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::Stream;
use kube::runtime::watcher;
use pin_project_lite::pin_project;

use crate::source::{SourceEvent, Watched};

/// A kube-runtime watcher on `api` with `config` and the default backoff,
/// as source events of `kind` (each object converted by `wrap`).
pub fn watch<K, T, F>(
    api: kube::Api<K>,
    config: watcher::Config,
    kind: T::Kind,
    wrap: F,
) -> SourceEvents<impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send, T, F>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    T: Watched,
    F: FnMut(K) -> T,
{
    use kube::runtime::WatchStreamExt;
    watcher(api, config)
        .default_backoff()
        .source_events(kind, wrap)
}

/// Adapts a watcher stream (`Result<watcher::Event<K>, watcher::Error>`).
pub trait SourceStreamExt<K>: Stream<Item = Result<watcher::Event<K>, watcher::Error>> {
    /// Source events of `kind`, each object converted by `wrap` as it
    /// arrives (so a binary keeps only what it needs of each object, not
    /// the whole API object).
    fn source_events<T, F>(self, kind: T::Kind, wrap: F) -> SourceEvents<Self, T, F>
    where
        Self: Sized,
        T: Watched,
        F: FnMut(K) -> T,
    {
        SourceEvents {
            stream: self,
            kind,
            wrap,
            listing: Vec::new(),
        }
    }
}

impl<K, S> SourceStreamExt<K> for S where S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>
{}

pin_project! {
    /// The stream [`SourceStreamExt::source_events`] returns.
    #[must_use = "streams do nothing unless polled"]
    pub struct SourceEvents<S, T: Watched, F> {
        #[pin]
        stream: S,
        kind: T::Kind,
        wrap: F,
        // The objects of a list in progress.
        listing: Vec<T>,
    }
}

impl<S, K, T, F> Stream for SourceEvents<S, T, F>
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    T: Watched,
    F: FnMut(K) -> T,
{
    type Item = SourceEvent<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            let event = match ready!(this.stream.as_mut().poll_next(cx)) {
                None => return Poll::Ready(None),
                Some(Ok(watcher::Event::Init)) => {
                    // A (re-)list starts: whatever a broken one had is stale.
                    this.listing.clear();
                    continue;
                }
                Some(Ok(watcher::Event::InitApply(o))) => {
                    this.listing.push((this.wrap)(o));
                    continue;
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    SourceEvent::Replace(*this.kind, std::mem::take(this.listing))
                }
                Some(Ok(watcher::Event::Apply(o))) => SourceEvent::Apply((this.wrap)(o)),
                Some(Ok(watcher::Event::Delete(o))) => SourceEvent::Delete((this.wrap)(o)),
                Some(Err(e)) => {
                    tracing::warn!(kind = ?this.kind, error = %e, "watch failed; retrying with backoff");
                    continue;
                }
            };
            return Poll::Ready(Some(event));
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use watcher::Event::{Apply, Delete, Init, InitApply, InitDone};

    use super::*;

    /// A test object: a name and the kind it was wrapped as.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Obj(&'static str, u8);

    impl Watched for Obj {
        type Kind = u8;
        fn kind(&self) -> u8 {
            self.1
        }
    }

    type Item = Result<watcher::Event<&'static str>, watcher::Error>;

    fn run(items: Vec<Item>) -> Vec<String> {
        let events = futures::stream::iter(items).source_events(7, |n| Obj(n, 7));
        futures::executor::block_on(events.collect::<Vec<_>>())
            .into_iter()
            .map(|e| match e {
                SourceEvent::Replace(k, objs) => {
                    let names: Vec<&str> = objs.iter().map(|o| o.0).collect();
                    format!("replace {k} {names:?}")
                }
                SourceEvent::Apply(o) => format!("apply {}", o.0),
                SourceEvent::Delete(o) => format!("delete {}", o.0),
            })
            .collect()
    }

    fn err() -> Item {
        Err(watcher::Error::NoResourceVersion)
    }

    #[test]
    fn initial_list_is_one_replace_then_applies_and_deletes() {
        assert_eq!(
            run(vec![
                Ok(Init),
                Ok(InitApply("a")),
                Ok(InitApply("b")),
                Ok(InitDone),
                Ok(Apply("c")),
                Ok(Delete("a")),
            ]),
            ["replace 7 [\"a\", \"b\"]", "apply c", "delete a"]
        );
    }

    #[test]
    fn an_empty_list_still_replaces_so_the_kind_is_synced() {
        assert_eq!(run(vec![Ok(Init), Ok(InitDone)]), ["replace 7 []"]);
    }

    #[test]
    fn nothing_is_sent_before_the_list_is_complete() {
        assert!(run(vec![Ok(Init), Ok(InitApply("a"))]).is_empty());
    }

    #[test]
    fn errors_are_dropped_and_a_relist_after_them_starts_afresh() {
        assert_eq!(
            run(vec![
                err(),
                Ok(Init),
                Ok(InitApply("a")),
                err(),
                // The watcher re-lists after the error: "a" of the broken
                // list must not survive into the new one.
                Ok(Init),
                Ok(InitApply("b")),
                Ok(InitDone),
                Ok(Apply("c")),
                err(),
                // A re-list after a later error (410 Gone) replaces again;
                // "c", deleted while the watch was down, is gone.
                Ok(Init),
                Ok(InitApply("b")),
                Ok(InitDone),
            ]),
            ["replace 7 [\"b\"]", "apply c", "replace 7 [\"b\"]"]
        );
    }

    #[test]
    fn send_all_stops_when_the_receiver_goes() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        drop(rx);
        let events = futures::stream::iter(vec![SourceEvent::Apply(Obj("a", 1))]);
        assert!(!futures::executor::block_on(crate::source::send_all(
            events, &tx
        )));
    }
}
