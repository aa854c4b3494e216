//! Pooled upstream clients and the forwarding loop with connect retries.
//!
//! HTTP/1.1 by default, over the keep-alive connections of
//! [`super::h1_pool`], kept per endpoint. HTTP/2 with prior knowledge for
//! `h2c`/gRPC ports through hyper-util's client, one multiplexed
//! connection per endpoint (its pool is keyed by the request authority,
//! which is the endpoint address).
//!
//! **Retries.** A request whose connection attempt failed is sent again
//! to another endpoint when its method is idempotent (GET, HEAD, OPTIONS,
//! PUT, DELETE, TRACE) and no body byte left the gateway. The same holds
//! when a pooled connection was closed or reset by the endpoint before
//! any response arrived (the keep-alive race with a pod that is going
//! away): safe for idempotent requests (RFC 9110 §9.2.2), and only a
//! connect failure counts towards ejection. The body is
//! handed to the client through [`ReclaimBody`], which only takes the real
//! body on first poll: if the client never polled it (the connection was
//! never made), it is taken back and reused. Nothing else is retried: a
//! request that reached an endpoint may have had effects.
//!
//! **Caps.** An HTTP/1.1 request takes its slots ([`super::slots`]) before
//! it gets a connection: the client connection's and the gateway's total
//! once, an endpoint's on each attempt (an endpoint without a free slot is
//! passed over for one that has one; when all are full, the request waits
//! for its first choice). Over a cap for the whole queue timeout (the
//! connect timeout) it fails with [`UpstreamError::Busy`].

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::balance::{EndpointState, InFlight, Pool};
use super::h1_pool::{self, UpstreamBody};
use super::slots::{self, SlotLimit, Slots};
use crate::gateway::body::{BoxError, GatewayBody};
use crate::gateway::config::UpstreamConfig;
use crate::gateway::routing::AppProtocol;

/// Why forwarding failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The pool had no endpoint to try.
    #[error("no endpoint available")]
    NoEndpoints,
    /// The last endpoint tried refused or timed out the connection.
    #[error("connecting to {addr} failed after {attempts} attempt(s): {source}")]
    Connect {
        /// The endpoint.
        addr: SocketAddr,
        /// Endpoints tried.
        attempts: u32,
        /// The client error.
        source: BoxError,
    },
    /// No response head within the read timeout.
    #[error("{addr} sent no response within {timeout:?}")]
    Timeout {
        /// The endpoint.
        addr: SocketAddr,
        /// The read timeout.
        timeout: Duration,
    },
    /// The exchange failed after the connection was made.
    #[error("request to {addr} failed: {source}")]
    Request {
        /// The endpoint.
        addr: SocketAddr,
        /// The client error.
        source: BoxError,
    },
    /// No connection slot under a cap within the queue timeout.
    #[error("upstream connection limit reached ({0})")]
    Busy(SlotLimit),
}

/// What happened on the way to a response, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamEvent {
    /// A new HTTP/1.1 connection to the endpoint was made.
    Connected(SocketAddr),
    /// Connecting failed; `ejected` when that ejected the endpoint.
    ConnectFailed {
        /// The endpoint.
        addr: SocketAddr,
        /// Whether the endpoint is now ejected.
        ejected: bool,
    },
}

/// A response head from an endpoint.
#[derive(Debug)]
pub struct Forwarded {
    /// The response (body still streaming).
    pub response: Response<UpstreamBody>,
    /// The endpoint that answered.
    pub endpoint: SocketAddr,
    /// Keeps the endpoint's in-flight count until dropped.
    pub in_flight: InFlight,
    /// Time from sending to the response head (last attempt).
    pub latency: Duration,
    /// Endpoints tried.
    pub attempts: u32,
    /// The connection slots the exchange holds, until the response ends
    /// (or the tunnel of an upgrade closes).
    pub slots: Slots,
}

/// The upstream clients: HTTP/1.1 and HTTP/2 prior knowledge.
#[derive(Clone, Debug)]
pub struct Clients {
    h2: Client<HttpConnector, ReclaimBody>,
    cfg: UpstreamConfig,
    /// Slots for HTTP/1.1 connections in use, gateway-wide.
    total: Arc<Semaphore>,
    connect_timeout: Duration,
    read_timeout: Duration,
}

/// How one attempt failed.
enum AttemptError {
    /// No connection could be made: safe to retry anywhere.
    Connect(BoxError),
    /// The connection was made; the exchange failed.
    Request(BoxError),
}

impl From<hyper_util::client::legacy::Error> for AttemptError {
    fn from(e: hyper_util::client::legacy::Error) -> Self {
        if e.is_connect() {
            Self::Connect(Box::new(e))
        } else {
            Self::Request(Box::new(e))
        }
    }
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

impl Clients {
    /// Builds both clients.
    pub fn new(cfg: UpstreamConfig, connect_timeout: Duration, read_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let h2 = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle_per_endpoint)
            .http2_only(true)
            .build(connector);
        Self {
            h2,
            total: slots::semaphore(cfg.max_connections),
            cfg,
            connect_timeout,
            read_timeout,
        }
    }

    /// One HTTP/1.1 exchange on a pooled (or new) connection to `ep`.
    async fn send_h1(
        &self,
        ep: &Arc<EndpointState>,
        req: Request<ReclaimBody>,
        observe: &(dyn Fn(UpstreamEvent) + Sync),
    ) -> Result<Response<UpstreamBody>, AttemptError> {
        let idle = ep.idle_connections();
        let mut sender = match idle.checkout(self.cfg.pool_idle_timeout).await {
            Some(s) => s,
            None => {
                let s = h1_pool::connect(ep.addr(), self.connect_timeout)
                    .await
                    .map_err(|e| AttemptError::Connect(Box::new(e)))?;
                observe(UpstreamEvent::Connected(ep.addr()));
                s
            }
        };
        let response = sender
            .send_request(req)
            .await
            .map_err(|e| AttemptError::Request(Box::new(e)))?;
        let ret = h1_pool::Return {
            sender,
            endpoint: ep.clone(),
            max_idle: self.cfg.pool_max_idle_per_endpoint,
            idle_timeout: self.cfg.pool_idle_timeout,
        };
        Ok(response.map(|b| UpstreamBody::pooled(b, ret)))
    }

    /// One HTTP/2 exchange through the multiplexing client.
    async fn send_h2(
        &self,
        req: Request<ReclaimBody>,
    ) -> Result<Response<UpstreamBody>, AttemptError> {
        let response = self.h2.request(req).await?;
        Ok(response.map(UpstreamBody::unpooled))
    }

    /// An endpoint of `pool` not in `tried` with a free connection slot
    /// (see the module docs), waiting until `deadline` at most.
    async fn pick_with_slot(
        &self,
        pool: &Pool,
        tried: &[SocketAddr],
        deadline: tokio::time::Instant,
    ) -> Result<(Arc<EndpointState>, OwnedSemaphorePermit), UpstreamError> {
        let Some(first) = pool.pick(tried) else {
            return Err(UpstreamError::NoEndpoints);
        };
        if let Ok(p) = first.slots().clone().try_acquire_owned() {
            return Ok((first, p));
        }
        let mut full = tried.to_vec();
        full.push(first.addr());
        while let Some(ep) = pool.pick(&full) {
            if let Ok(p) = ep.slots().clone().try_acquire_owned() {
                return Ok((ep, p));
            }
            full.push(ep.addr());
        }
        let p = slots::acquire(first.slots(), deadline, SlotLimit::Endpoint)
            .await
            .map_err(UpstreamError::Busy)?;
        Ok((first, p))
    }

    /// The client connection's and the gateway-wide slots of an HTTP/1.1
    /// request.
    async fn request_slots(
        &self,
        client: Option<&Arc<Semaphore>>,
        deadline: tokio::time::Instant,
    ) -> Result<Slots, UpstreamError> {
        let mut held = Slots::default();
        if let Some(c) = client {
            held.push(
                slots::acquire(c, deadline, SlotLimit::ClientConnection)
                    .await
                    .map_err(UpstreamError::Busy)?,
            );
        }
        held.push(
            slots::acquire(&self.total, deadline, SlotLimit::Total)
                .await
                .map_err(UpstreamError::Busy)?,
        );
        Ok(held)
    }

    /// Sends `req` (origin-form target, headers already rewritten) to an
    /// endpoint of `pool`, retrying connect failures as the module docs
    /// say. `client_slots` caps the client connection's HTTP/1.1
    /// exchanges; `observe` hears of every connection made or failed.
    pub async fn forward(
        &self,
        pool: &Pool,
        req: Request<GatewayBody>,
        client_slots: Option<&Arc<Semaphore>>,
        observe: &(dyn Fn(UpstreamEvent) + Sync),
    ) -> Result<Forwarded, UpstreamError> {
        let (parts, body) = req.into_parts();
        let mut parts = Some(parts);
        let retryable = self.cfg.connect_retries > 0
            && parts.as_ref().is_some_and(|p| is_idempotent(&p.method));
        let hint = body.size_hint();
        let end = body.is_end_stream();
        let slot = Arc::new(Mutex::new(Some(body)));
        let h2 = pool.protocol() == AppProtocol::H2c;
        let deadline = slots::deadline(self.connect_timeout);
        let mut held = if h2 {
            Slots::default()
        } else {
            self.request_slots(client_slots, deadline).await?
        };
        let mut tried: Vec<SocketAddr> = Vec::new();
        loop {
            let (ep, ep_slot) = if h2 {
                match pool.pick(&tried) {
                    Some(ep) => (ep, None),
                    None => return Err(UpstreamError::NoEndpoints),
                }
            } else {
                let (ep, slot) = self.pick_with_slot(pool, &tried, deadline).await?;
                (ep, Some(slot))
            };
            let addr = ep.addr();
            tried.push(addr);
            let attempts = u32::try_from(tried.len()).unwrap_or(u32::MAX);
            let may_retry = retryable
                && attempts <= self.cfg.connect_retries
                && pool.endpoints().len() > tried.len();
            let head = if may_retry {
                clone_parts(parts.as_ref().expect("parts kept while retrying"))
            } else {
                parts.take().expect("parts used once")
            };
            let body = ReclaimBody::new(&slot, hint, end);
            let in_flight = ep.start();
            let start = Instant::now();
            let result = if h2 {
                let req = build_h2_request(head, ep.authority(), body);
                tokio::time::timeout(self.read_timeout, self.send_h2(req)).await
            } else {
                let req = build_h1_request(head, ep.authority(), body);
                tokio::time::timeout(self.read_timeout, self.send_h1(&ep, req, observe)).await
            };
            match result {
                Ok(Ok(response)) => {
                    ep.record_success();
                    if let Some(s) = ep_slot {
                        held.push(s);
                    }
                    return Ok(Forwarded {
                        response,
                        endpoint: addr,
                        in_flight,
                        latency: start.elapsed(),
                        attempts,
                        slots: held,
                    });
                }
                Ok(Err(AttemptError::Connect(e))) => {
                    drop(in_flight);
                    let ejected = ep.record_connect_failure(
                        self.cfg.eject_after_failures,
                        self.cfg.ejection_cooldown,
                    );
                    observe(UpstreamEvent::ConnectFailed { addr, ejected });
                    let body_unsent = slot.lock().unwrap_or_else(|e| e.into_inner()).is_some();
                    if !(may_retry && body_unsent) {
                        return Err(UpstreamError::Connect {
                            addr,
                            attempts,
                            source: e,
                        });
                    }
                    tracing::debug!(%addr, "connect failed, retrying on another endpoint");
                }
                Ok(Err(AttemptError::Request(source))) => {
                    let body_unsent = slot.lock().unwrap_or_else(|e| e.into_inner()).is_some();
                    if !(may_retry && body_unsent && closed_before_response(&*source)) {
                        return Err(UpstreamError::Request { addr, source });
                    }
                    tracing::debug!(%addr, error = %source, "pooled connection closed, retrying on another endpoint");
                }
                Err(_) => {
                    return Err(UpstreamError::Timeout {
                        addr,
                        timeout: self.read_timeout,
                    });
                }
            }
        }
    }
}

/// Whether a send failed because the (pooled) connection closed or reset
/// before any response arrived: the keep-alive race with an endpoint that
/// is going away.
fn closed_before_response(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>()
            && (h.is_incomplete_message() || h.is_canceled())
        {
            return true;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
            )
        {
            return true;
        }
        source = s.source();
    }
    false
}

fn clone_parts(p: &Parts) -> Parts {
    let mut b = Request::builder()
        .method(p.method.clone())
        .uri(p.uri.clone())
        .version(p.version);
    if let Some(h) = b.headers_mut() {
        *h = p.headers.clone();
    }
    b.body(())
        .expect("cloned request parts are valid")
        .into_parts()
        .0
}

/// The request for the HTTP/1.1 connection: origin-form target as the
/// gateway built it, version 1.1. A request without Host (HTTP/1.0
/// clients may omit it) gets the endpoint's address, as HTTP/1.1 requires
/// one.
fn build_h1_request(
    mut head: Parts,
    authority: &Authority,
    body: ReclaimBody,
) -> Request<ReclaimBody> {
    if head.uri.path_and_query().is_none() {
        head.uri = Uri::from_static("/");
    }
    head.version = Version::HTTP_11;
    if !head.headers.contains_key(http::header::HOST)
        && let Ok(v) = http::HeaderValue::from_str(authority.as_str())
    {
        head.headers.insert(http::header::HOST, v);
    }
    Request::from_parts(head, body)
}

/// The request for the HTTP/2 client: absolute URI (the client's pool key
/// and `:authority`), version 2.
fn build_h2_request(
    mut head: Parts,
    authority: &Authority,
    body: ReclaimBody,
) -> Request<ReclaimBody> {
    // Typed parts, no formatting or parsing: the path is the already
    // validated one (shared bytes), the authority was formatted once per
    // endpoint.
    let mut uri = std::mem::take(&mut head.uri).into_parts();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(authority.clone());
    if uri.path_and_query.is_none() {
        uri.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    head.uri = Uri::from_parts(uri).unwrap_or_else(|_| Uri::from_static("/"));
    head.version = Version::HTTP_2;
    Request::from_parts(head, body)
}

/// A request body the client takes only when it first polls it; until
/// then it stays in a slot the gateway can take it back from.
pub struct ReclaimBody {
    slot: Arc<Mutex<Option<GatewayBody>>>,
    active: Option<GatewayBody>,
    hint: SizeHint,
    end: bool,
}

impl ReclaimBody {
    fn new(slot: &Arc<Mutex<Option<GatewayBody>>>, hint: SizeHint, end: bool) -> Self {
        Self {
            slot: slot.clone(),
            active: None,
            hint,
            end,
        }
    }
}

impl std::fmt::Debug for ReclaimBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReclaimBody").finish_non_exhaustive()
    }
}

impl Body for ReclaimBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.active.is_none() {
            let taken = self.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            match taken {
                Some(b) => self.active = Some(b),
                None => return Poll::Ready(None),
            }
        }
        let body = self.active.as_mut().expect("active body");
        Pin::new(body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        match &self.active {
            Some(b) => b.is_end_stream(),
            None => self.end,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.active {
            Some(b) => b.size_hint(),
            None => self.hint,
        }
    }
}
