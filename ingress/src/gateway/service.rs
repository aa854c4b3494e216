//! The request handler, as a `tower::Service` per client connection: it
//! runs the request path's stages ([`super::stages`]: resolve → redirect →
//! backend → limits → forward → finish) and answers what they refuse with
//! the gateway's own response ([`LocalError::response`]).
//!
//! ## Request framing and smuggling
//!
//! hyper parses HTTP/1 framing before a request reaches this service and
//! answers 400 itself for conflicting `Content-Length`s, a
//! `Transfer-Encoding` whose last coding is not `chunked`,
//! `Transfer-Encoding` on HTTP/1.0 and whitespace before a header colon.
//! A request carrying **both** `Content-Length` and `Transfer-Encoding:
//! chunked` is not refused: hyper 1.12 follows RFC 9112 §6.1 (the chunked
//! coding frames the body), removes `Content-Length` from the header map
//! (or never adds it when it follows `Transfer-Encoding`) and turns
//! keep-alive off, so the connection closes after the response and no
//! byte after the chunked body is ever parsed as a request. Refusing it
//! here is impossible: the parsed request is indistinguishable from a
//! plain chunked one, and hyper's record of the raw header names
//! (`HeaderCaseMap`) is crate-private; it would take a fork of hyper or a
//! second HTTP/1 parser in front of it. Upstream the body is re-framed by
//! the gateway's own client ([`super::proxy`] drops both framing headers),
//! so a backend never sees both. `gateway_http::smuggling_attempts_are_refused`
//! shows the one response, the closed connection and that the smuggled
//! request reaches no backend, in both header orders.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body::Body;

use super::Shared;
use super::access_log::AccessRecord;
use super::body::{BoxError, GatewayBody};
use super::errors::LocalError;
use super::server::ConnState;
use super::stages::{self, Exchange, finish};

/// What the service knows about its client connection.
#[derive(Debug)]
pub(crate) struct ConnCtx {
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) tls: bool,
    /// The TLS server name the client sent (lower case), if any.
    pub(crate) sni: Option<Box<str>>,
    pub(crate) state: Arc<ConnState>,
}

/// The gateway's request handler for one client connection.
#[derive(Clone, Debug)]
pub struct GatewayService {
    shared: Arc<Shared>,
    conn: Arc<ConnCtx>,
}

impl GatewayService {
    pub(crate) fn new(shared: Arc<Shared>, conn: Arc<ConnCtx>) -> Self {
        Self { shared, conn }
    }
}

impl<B> tower::Service<Request<B>> for GatewayService
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<GatewayBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let shared = self.shared.clone();
        let conn = self.conn.clone();
        Box::pin(async move { Ok(handle(shared, conn, req).await) })
    }
}

async fn handle<B>(
    shared: Arc<Shared>,
    conn: Arc<ConnCtx>,
    req: Request<B>,
) -> Response<GatewayBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let start = Instant::now();
    let version = req.version();
    let request = conn.state.request_started(version == Version::HTTP_2);
    let snapshot = shared.snapshot.load_full();
    let mut ex = Exchange {
        shared: &shared,
        conn: &conn,
        snapshot: &snapshot,
        record: AccessRecord {
            client: Some(conn.peer.ip()),
            method: req.method().to_string(),
            protocol: finish::protocol_name(version),
            tls: conn.tls,
            attempts: 0,
            ..AccessRecord::default()
        },
        request,
        guards: Vec::new(),
        access_log: true,
    };
    let resp = match stages::run(&mut ex, req).await {
        Ok(r) => r,
        Err(e) => LocalError::response(&e),
    };
    finish::complete(ex, start, version, resp)
}
