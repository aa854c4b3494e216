//! Keep-alive HTTP/1.1 connections to endpoints, driven by hyper's
//! low-level `client::conn::http1` API.
//!
//! Why not hyper-util's legacy client for HTTP/1.1: per request it takes
//! a pool lock keyed by scheme and authority, checks a connection out
//! through a future, and spawns one extra task that waits for the
//! connection to become idle again before it goes back to the pool. Here
//! the idle connections of an endpoint are a stack on its
//! [`EndpointState`](super::balance::EndpointState); a connection goes
//! back the moment its response body has been read to the end (the
//! readiness of its dispatcher is awaited by the next request, not by a
//! task of its own), and the most recently used one is taken first, so a
//! lightly loaded endpoint keeps few warm connections.
//!
//! A connection whose response did not end cleanly (client gone, body
//! error, upgrade) is never reused: dropping its sender closes it once
//! the connection task has finished with it.
//!
//! Idle connections older than the pool's idle timeout are closed when
//! they are reached (checkout) or sink to the bottom of a busy endpoint's
//! stack (return). An endpoint that gets no traffic at all keeps at most
//! `max_idle` of them until the endpoint closes them or leaves every
//! routing snapshot (its state, and with it the stack, is then dropped).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::client::ReclaimBody;

/// One idle connection.
struct Idle {
    sender: SendRequest<ReclaimBody>,
    since: Instant,
}

/// The idle HTTP/1.1 connections of one endpoint, most recent last.
#[derive(Default)]
pub struct IdleConnections {
    stack: Mutex<Vec<Idle>>,
}

impl std::fmt::Debug for IdleConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleConnections")
            .field("len", &self.len())
            .finish()
    }
}

impl IdleConnections {
    /// Idle connections held.
    pub fn len(&self) -> usize {
        self.stack.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn pop(&self) -> Option<Idle> {
        self.stack.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn push(&self, sender: SendRequest<ReclaimBody>, max: usize, idle_timeout: Duration) {
        let mut stack = self.stack.lock().unwrap_or_else(|e| e.into_inner());
        // The oldest are at the bottom: a busy endpoint takes from the top,
        // so what sinks there past the idle timeout is closed here.
        let stale = stack
            .iter()
            .take_while(|i| i.since.elapsed() > idle_timeout)
            .count();
        stack.drain(..stale);
        if stack.len() < max {
            stack.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// A connection ready for a request: the most recently used idle one
    /// that is still open and younger than `idle_timeout`.
    pub(crate) async fn checkout(
        &self,
        idle_timeout: Duration,
    ) -> Option<SendRequest<ReclaimBody>> {
        while let Some(Idle { mut sender, since }) = self.pop() {
            if since.elapsed() > idle_timeout || sender.is_closed() {
                continue;
            }
            // Normally ready at once; right after the previous response's
            // last byte the connection task may not have run yet.
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
        None
    }
}

/// Why a new connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// TCP connect failed.
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    /// TCP connect took longer than the connect timeout.
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    /// hyper refused the connection.
    #[error("HTTP/1.1 handshake: {0}")]
    Handshake(#[from] hyper::Error),
}

/// Opens a new HTTP/1.1 connection to `addr` and spawns its task.
pub(crate) async fn connect(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<SendRequest<ReclaimBody>, ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(s) => s?,
        Err(_) => return Err(ConnectError::Timeout(timeout)),
    };
    // Small requests and responses must not wait for Nagle.
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        // Upgrades (WebSocket) take the connection over after a 101.
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(%addr, error = %e, "upstream connection ended");
        }
    });
    Ok(sender)
}

/// Where a connection goes back when its response has been read.
pub(crate) struct Return {
    pub(crate) sender: SendRequest<ReclaimBody>,
    pub(crate) endpoint: Arc<super::balance::EndpointState>,
    pub(crate) max_idle: usize,
    pub(crate) idle_timeout: Duration,
}

impl Return {
    fn release(self) {
        self.endpoint
            .idle_connections()
            .push(self.sender, self.max_idle, self.idle_timeout);
    }
}

pin_project_lite::pin_project! {
    /// An upstream response body. With an HTTP/1.1 connection attached,
    /// the connection returns to its endpoint's idle stack when the body
    /// has been read to its end.
    pub struct UpstreamBody {
        #[pin]
        inner: Incoming,
        ret: Option<Return>,
    }

    impl PinnedDrop for UpstreamBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // A body that was complete before anyone polled it (HEAD, 204,
            // 304, Content-Length: 0) still leaves a reusable connection.
            if this.inner.is_end_stream()
                && let Some(r) = this.ret.take()
            {
                r.release();
            }
        }
    }
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("pooled", &self.ret.is_some())
            .finish_non_exhaustive()
    }
}

impl UpstreamBody {
    /// A body whose connection is not pooled here (HTTP/2, upgrades).
    pub(crate) fn unpooled(inner: Incoming) -> Self {
        Self { inner, ret: None }
    }

    /// A body whose connection goes back to `ret` at its end.
    pub(crate) fn pooled(inner: Incoming, ret: Return) -> Self {
        Self {
            inner,
            ret: Some(ret),
        }
    }

    /// Detaches the connection (the response switched protocols).
    pub(crate) fn detach(&mut self) {
        self.ret = None;
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.project();
        let r = std::task::ready!(this.inner.poll_frame(cx));
        match &r {
            None => {
                if let Some(ret) = this.ret.take() {
                    ret.release();
                }
            }
            Some(Err(_)) => {
                this.ret.take();
            }
            Some(Ok(_)) => {}
        }
        Poll::Ready(r)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_stack_is_bounded_and_sheds_stale_connections() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accept and hold every connection open.
        let held = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                conns.push(s);
            }
        });
        let timeout = Duration::from_secs(5);
        let idle = IdleConnections::default();
        for _ in 0..3 {
            let c = connect(addr, timeout).await.unwrap();
            idle.push(c, 2, timeout);
        }
        assert_eq!(idle.len(), 2, "bounded by max_idle");
        // Age both, then return a fresh one: the stale ones go.
        for i in idle.stack.lock().unwrap().iter_mut() {
            i.since -= Duration::from_secs(10);
        }
        let c = connect(addr, timeout).await.unwrap();
        idle.push(c, 2, timeout);
        assert_eq!(idle.len(), 1);
        // A stale one is never checked out.
        idle.stack.lock().unwrap()[0].since -= Duration::from_secs(10);
        assert!(idle.checkout(timeout).await.is_none());
        assert!(idle.is_empty());
        // A fresh one is, ready for a request.
        let c = connect(addr, timeout).await.unwrap();
        idle.push(c, 2, timeout);
        let mut c = idle.checkout(timeout).await.expect("fresh connection");
        assert!(c.ready().await.is_ok());
        held.abort();
    }
}
