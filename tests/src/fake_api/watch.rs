//! WATCH: newline-delimited JSON watch events, replayed from history and
//! then streamed live, with bookmarks, timeouts and 410 Expired.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::Stream;
use hyper::body::Bytes;
use serde_json::{Value, json};
use tokio::time::{Instant, Interval};

use super::meta::set_meta;
use super::resources::{RESOURCES, ResourceId};
use super::selectors::{FieldSelector, LabelSelector};
use super::server::Shared;
use super::status::ApiError;
use super::store::{EventType, HistoryEntry, Store};

/// Which objects a list or watch selects.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    /// Resource type.
    pub rt: ResourceId,
    /// Namespace, or all namespaces.
    pub ns: Option<String>,
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
}

impl Filter {
    /// Whether an object of this filter's type is selected.
    pub fn matches(&self, obj: &Value) -> bool {
        let ns_ok = self.ns.as_deref().is_none_or(|ns| {
            obj.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns)
        });
        ns_ok && self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// The event a watcher with this filter sees for a change, if any.
    /// Objects moving into the selection arrive as ADDED and objects moving
    /// out as DELETED (carrying their previous state), as the real watch
    /// cache does.
    fn event_for(&self, e: &HistoryEntry) -> Option<(EventType, Value)> {
        if e.rt != self.rt {
            return None;
        }
        let now = self.matches(&e.object);
        match e.kind {
            EventType::Added => now.then(|| (EventType::Added, e.object.clone())),
            EventType::Deleted => now.then(|| (EventType::Deleted, e.object.clone())),
            EventType::Modified => {
                let before = e.prev.as_ref().is_some_and(|p| self.matches(p));
                match (before, now) {
                    (true, true) => Some((EventType::Modified, e.object.clone())),
                    (false, true) => Some((EventType::Added, e.object.clone())),
                    (true, false) => {
                        let mut old = e.prev.clone().unwrap_or_default();
                        set_meta(&mut old, "resourceVersion", e.rv.to_string());
                        Some((EventType::Deleted, old))
                    }
                    (false, false) => None,
                }
            }
        }
    }
}

/// Parsed watch query parameters.
#[derive(Debug, Clone)]
pub(crate) struct WatchParams {
    /// `resourceVersion`; `None` for unset or "0" (start with the current
    /// state as ADDED events).
    pub rv: Option<u64>,
    /// `sendInitialEvents=true`.
    pub send_initial_events: bool,
    /// `allowWatchBookmarks=true`.
    pub bookmarks: bool,
    /// `timeoutSeconds`.
    pub timeout: Option<Duration>,
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({ "type": kind, "object": object }))
        .unwrap_or_else(|_| b"{}".to_vec());
    v.push(b'\n');
    Bytes::from(v)
}

fn bookmark(rt: ResourceId, rv: u64, initial_end: bool) -> Bytes {
    let r = &RESOURCES[rt];
    let mut meta = json!({ "resourceVersion": rv.to_string() });
    if initial_end {
        meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    line(
        "BOOKMARK",
        &json!({ "kind": r.kind, "apiVersion": r.api_version(), "metadata": meta }),
    )
}

fn expired(rv: u64, floor: u64) -> Bytes {
    line(
        "ERROR",
        &ApiError::expired(format!("too old resource version: {rv} ({floor})")).to_status(),
    )
}

/// Decrements the open-watch gauge when a watch ends (or its connection
/// is dropped).
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open_watches.fetch_sub(1, Ordering::SeqCst);
    }
}

struct State {
    shared: Arc<Shared>,
    filter: Filter,
    last_rv: u64,
    pending: VecDeque<Bytes>,
    done: bool,
    rv_rx: tokio::sync::watch::Receiver<u64>,
    expire_rx: tokio::sync::watch::Receiver<u64>,
    deadline: Option<Instant>,
    bookmarks: Option<Interval>,
    _guard: OpenGuard,
}

impl State {
    /// Queues every change since `last_rv` that the filter selects.
    fn collect(&mut self, store: &Store) {
        // Expiry and compaction signal under the store lock: once they
        // happened, nothing newer may go out on this stream.
        if self.expire_rx.has_changed().unwrap_or(true) {
            self.done = true;
            return;
        }
        if store.missed(self.last_rv) {
            self.pending.push_back(expired(self.last_rv, store.floor()));
            self.done = true;
            return;
        }
        for e in store.history_since(self.last_rv) {
            if let Some((kind, obj)) = self.filter.event_for(e) {
                self.pending.push_back(line(kind.as_str(), &obj));
            }
        }
        self.last_rv = store.rv();
    }

    fn collect_locked(&mut self) {
        let shared = self.shared.clone();
        let store = shared.store();
        self.collect(&store);
    }
}

/// Starts a watch. The returned stream ends at the timeout, on
/// `expire_watches`, or after an ERROR event; dropping it (the connection
/// closing) stops it.
pub(crate) fn start(
    shared: Arc<Shared>,
    filter: Filter,
    params: WatchParams,
) -> impl Stream<Item = Bytes> + Send + 'static {
    // Subscribe before reading the store so no change can slip between the
    // snapshot and the first wake-up.
    let rv_rx = shared.rv_tx.subscribe();
    let expire_rx = shared.expire_tx.subscribe();
    shared.open_watches.fetch_add(1, Ordering::SeqCst);
    let guard = OpenGuard(shared.clone());
    let interval = shared
        .config
        .bookmark_interval
        .max(Duration::from_millis(10));
    let mut st = State {
        shared: shared.clone(),
        filter,
        last_rv: 0,
        pending: VecDeque::new(),
        done: false,
        rv_rx,
        expire_rx,
        deadline: params.timeout.and_then(|t| Instant::now().checked_add(t)),
        bookmarks: params.bookmarks.then(|| {
            let mut i = tokio::time::interval_at(Instant::now() + interval, interval);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        }),
        _guard: guard,
    };
    {
        let store = shared.store();
        match params.rv {
            Some(rv) if !params.send_initial_events => {
                if rv < store.floor() {
                    st.pending.push_back(expired(rv, store.floor()));
                    st.done = true;
                } else {
                    st.last_rv = rv;
                    st.collect(&store);
                }
            }
            _ => {
                let rt = st.filter.rt;
                for (_, obj) in store.list(rt, None, |o| st.filter.matches(o)) {
                    st.pending.push_back(line("ADDED", obj));
                }
                st.last_rv = store.rv();
                if params.send_initial_events && params.bookmarks {
                    st.pending.push_back(bookmark(rt, st.last_rv, true));
                }
            }
        }
    }
    futures::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(b) = st.pending.pop_front() {
                return Some((b, st));
            }
            if st.done {
                return None;
            }
            let deadline = st.deadline;
            let ticker = &mut st.bookmarks;
            tokio::select! {
                changed = st.rv_rx.changed() => match changed {
                    Ok(()) => st.collect_locked(),
                    Err(_) => st.done = true,
                },
                _ = st.expire_rx.changed() => st.done = true,
                _ = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => st.done = true,
                _ = async {
                    match ticker {
                        Some(i) => { i.tick().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => {
                    st.collect_locked();
                    if !st.done {
                        st.pending.push_back(bookmark(st.filter.rt, st.last_rv, false));
                        st.shared.bookmarks_sent.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }
    })
}
