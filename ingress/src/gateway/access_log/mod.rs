//! Access log: one line per request, written when the response body ends
//! (or the client goes away), so it carries the bytes sent and the full
//! duration.
//!
//! * [`line`]: how a line looks (the lines `tracing` printed before).
//! * [`writer`]: where it goes, in batches, off the request path; when
//!   the output stalls, lines are dropped and counted, requests never
//!   wait.
//!
//! The same place counts `sluice_ingress_requests` and releases the
//! per-request guards (endpoint in-flight count, connection activity), so
//! they all end exactly when the response does.

pub mod line;
pub mod writer;

pub use line::{LineStyle, TARGET};
pub use writer::{AccessLogWriter, WriterOptions};

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::body::BoxError;
use super::metrics::Metrics;
use super::server::RequestGuard;

/// Everything one access log line says.
#[derive(Debug, Clone, Default)]
pub struct AccessRecord {
    /// Client address.
    pub client: Option<IpAddr>,
    /// Method.
    pub method: String,
    /// Host / `:authority`.
    pub host: String,
    /// Normalized path (the raw target when it was refused).
    pub path: String,
    /// `HTTP/1.1`, `HTTP/2.0`, ...
    pub protocol: &'static str,
    /// Whether the client connection was TLS.
    pub tls: bool,
    /// Status code sent.
    pub status: u16,
    /// Response body bytes sent.
    pub bytes: u64,
    /// Matched Ingress (`namespace/name`), empty when none.
    pub ingress: String,
    /// Service port (`namespace/name:port`), empty when none.
    pub service: String,
    /// The endpoint that answered.
    pub upstream: Option<SocketAddr>,
    /// Upstream attempts made (more than one after connect failures).
    pub attempts: u32,
    /// Whether the response body ended normally.
    pub complete: bool,
}

/// Emits the line and counts the request when dropped.
pub(crate) struct Completion {
    pub(crate) record: AccessRecord,
    pub(crate) start: Instant,
    /// Where the line goes; `None`: not logged.
    pub(crate) log: Option<AccessLogWriter>,
    pub(crate) metrics: Metrics,
    /// The request on its connection; told whether the response went out.
    pub(crate) request: Option<RequestGuard>,
    /// Whether the response body failed (the upstream broke it).
    pub(crate) failed: bool,
    /// Dropped with the record: endpoint in-flight count, connection
    /// slots.
    pub(crate) _guards: Vec<Box<dyn Send>>,
}

impl Drop for Completion {
    fn drop(&mut self) {
        if let Some(g) = self.request.as_mut()
            && (self.record.complete || self.failed)
        {
            g.answered();
        }
        let r = &self.record;
        self.metrics.request(&r.ingress, &r.service, r.status);
        if let Some(log) = &self.log {
            log.log(r, self.start.elapsed().as_secs_f64() * 1000.0);
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that counts bytes into the access record and
    /// completes it at end of stream or on drop.
    pub(crate) struct LoggedBody<B> {
        #[pin]
        inner: B,
        completion: Option<Completion>,
    }
}

impl<B: Body> LoggedBody<B> {
    pub(crate) fn new(inner: B, mut completion: Completion) -> Self {
        // An empty body may never be polled.
        completion.record.complete = inner.is_end_stream();
        Self {
            inner,
            completion: Some(completion),
        }
    }
}

impl<B> Body for LoggedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let r = ready!(this.inner.as_mut().poll_frame(cx));
        match &r {
            Some(Ok(f)) => {
                if let Some(c) = this.completion.as_mut() {
                    if let Some(d) = f.data_ref() {
                        c.record.bytes += d.len() as u64;
                    }
                    // hyper stops polling a body that says it has ended
                    // (HTTP/2 sends END_STREAM with its last frame).
                    if this.inner.is_end_stream() {
                        c.record.complete = true;
                    }
                }
            }
            Some(Err(_)) => {
                if let Some(mut c) = this.completion.take() {
                    c.failed = true;
                }
            }
            None => {
                if let Some(mut c) = this.completion.take() {
                    c.record.complete = true;
                }
            }
        }
        Poll::Ready(r.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
