//! State shared by all connections, and the listener lifecycle (accept
//! loop, per-connection tasks, stop and restart).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::FakeApiConfig;
use super::http;
use super::log::RequestRecord;
use super::status::ApiError;
use super::store::Store;

/// Everything the request handlers and watch streams share.
#[derive(Debug)]
pub(crate) struct Shared {
    store: Mutex<Store>,
    /// The latest resourceVersion; watch streams wake up on changes.
    pub rv_tx: watch::Sender<u64>,
    /// Bumped by `expire_watches`; every open watch ends.
    pub expire_tx: watch::Sender<u64>,
    log: Mutex<Vec<RequestRecord>>,
    /// Server settings.
    pub config: FakeApiConfig,
    unavailable: AtomicBool,
    /// Number of watch streams currently open.
    pub open_watches: AtomicUsize,
    /// Number of BOOKMARK events sent so far.
    pub bookmarks_sent: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the whole server down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Fresh state.
    pub fn new(config: FakeApiConfig) -> Arc<Self> {
        Arc::new(Shared {
            store: Mutex::new(Store::new(config.history_limit)),
            rv_tx: watch::channel(0).0,
            expire_tx: watch::channel(0).0,
            log: Mutex::new(Vec::new()),
            config,
            unavailable: AtomicBool::new(false),
            open_watches: AtomicUsize::new(0),
            bookmarks_sent: AtomicU64::new(0),
        })
    }

    /// Locks the store (for reads; use [`Shared::write`] for writes).
    pub fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    /// Runs a write and wakes watch streams if the resourceVersion moved.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let (res, before, after) = {
            let mut s = self.store();
            let before = s.rv();
            let res = f(&mut s);
            (res, before, s.rv())
        };
        if after != before {
            self.rv_tx.send_replace(after);
        }
        res
    }

    /// Appends to the request log.
    pub fn record(&self, rec: RequestRecord) {
        lock(&self.log).push(rec);
    }

    /// A copy of the request log.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.log).clone()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        lock(&self.log).clear();
    }

    /// Whether every request is answered 503.
    pub fn is_unavailable(&self) -> bool {
        self.unavailable.load(Ordering::SeqCst)
    }

    /// Sets the 503 switch.
    pub fn set_unavailable(&self, on: bool) {
        self.unavailable.store(on, Ordering::SeqCst);
    }

    /// Ends every open watch stream. Done under the store lock, so a stream
    /// delivers nothing written after this call (see `watch::State::collect`).
    pub fn expire_watches(&self) {
        let _store = self.store();
        self.expire_tx.send_modify(|e| *e += 1);
    }

    /// Compacts history and ends every open watch, atomically: no stream
    /// delivers anything (not even a bookmark) from after the compaction, so
    /// every watcher reconnects from an expired resourceVersion.
    pub fn compact(&self) {
        let rv = {
            let mut store = self.store();
            store.compact();
            self.expire_tx.send_modify(|e| *e += 1);
            store.rv()
        };
        self.rv_tx.send_replace(rv);
    }
}

/// Binds a listening socket with SO_REUSEADDR, so a restart can take the
/// same port again at once.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(1024)
}

/// A running accept loop. Dropping it stops the loop and drops every
/// connection (watch streams included).
#[derive(Debug)]
pub(crate) struct Listener {
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Listener {
    /// Stops accepting, closes the listening socket and every connection,
    /// and waits until all of that is done.
    pub async fn stop(mut self) {
        self.shutdown.take();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Serves HTTP/1.1 on `listener` until the returned handle is stopped or
/// dropped.
pub(crate) fn serve(shared: Arc<Shared>, listener: TcpListener) -> Listener {
    let (tx, mut rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut rx => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let shared = shared.clone();
                        conns.spawn(async move {
                            let svc = service_fn(move |req| http::handle(shared.clone(), req));
                            if let Err(e) = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), svc)
                                .await
                            {
                                tracing::debug!("fake API server connection ended: {e}");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::debug!("fake API server accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        drop(listener);
        conns.shutdown().await;
    });
    Listener {
        shutdown: Some(tx),
        task: Some(task),
    }
}
