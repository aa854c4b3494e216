//! Pooled upstream clients and the forwarding loop with connect retries.
//!
//! HTTP/1.1 by default, over the keep-alive connections of
//! [`super::h1_pool`], kept per endpoint. HTTP/2 with prior knowledge for
//! `h2c`/gRPC ports through hyper-util's client, one multiplexed
//! connection per endpoint (its pool is keyed by the request authority,
//! which is the endpoint address).
//!
//! **Retries** follow an [`AttemptPolicy`]: in ingress-nginx mode the
//! route's `proxy-next-upstream` conditions (connect error or timeout,
//! response head late or unparsable, listed statuses), with nginx's
//! method rule, its tries and time limit; a request body of known length
//! up to [`REPLAY_MAX`] is held so that it can be sent again. Without a
//! route policy ([`Clients::default_policy`]), the gateway's own rule:
//!
//! A request whose connection attempt failed is sent again
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
use http_body_util::BodyExt;
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
    /// The request body failed while it was read to be held for a retry.
    #[error("request body: {0}")]
    Body(#[source] BoxError),
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

/// How one request is sent upstream: its timeouts and when it goes to
/// another endpoint. In ingress-nginx mode it is the route's
/// `proxy-{connect,read}-timeout` and `proxy-next-upstream*`
/// ([`crate::annotations::limits::LimitPolicy`]); otherwise
/// [`Clients::default_policy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptPolicy {
    /// TCP connect to an endpoint (HTTP/1.1; the HTTP/2 client keeps the
    /// gateway-wide one).
    pub connect_timeout: Duration,
    /// From sending the request to the response head, and between two
    /// reads of the response body; expiry is 504.
    pub read_timeout: Duration,
    /// When to try another endpoint.
    pub retry: RetryPolicy,
    /// `load-balance: ewma` ([`Pool::pick_ewma`]) instead of the default
    /// choice ([`Pool::pick`]).
    pub ewma: bool,
}

/// When a request goes to another endpoint (nginx's `proxy_next_upstream`
/// conditions). Whatever the conditions, a request is sent again only
/// when none of its body has left the gateway (the body is streamed, not
/// buffered), and only to an endpoint not yet tried.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetryPolicy {
    /// `error`: connecting failed, or the connection failed before a
    /// response head arrived.
    pub on_error: bool,
    /// `timeout`: connecting or waiting for the response head timed out.
    pub on_timeout: bool,
    /// `invalid_header`: the response head could not be parsed.
    pub on_invalid_header: bool,
    /// `http_NNN`: the endpoint answered one of these statuses (the last
    /// endpoint's answer is passed on when no try is left).
    pub on_status: Statuses,
    /// Which requests may be sent again once they reached an endpoint.
    pub resend: Resend,
    /// nginx: a connect timeout is the `timeout` condition and answered
    /// 504. Otherwise it is a connect failure like a refusal (`error`,
    /// 502), the gateway's own rule.
    pub connect_timeout_is_timeout: bool,
    /// Most attempts in all (0: one per endpoint).
    pub tries: u32,
    /// No new attempt after this long since the first (`None`: no limit).
    pub within: Option<Duration>,
}

/// A set of error statuses (400–527), without allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Statuses(u128);

impl Statuses {
    /// Adds `code` (codes outside 400–527 are not errors nginx retries on,
    /// and are left out).
    pub fn insert(&mut self, code: u16) {
        if let Some(bit) = code.checked_sub(400).filter(|b| *b < 128) {
            self.0 |= 1 << bit;
        }
    }

    /// Whether `code` is in the set.
    pub fn contains(self, code: u16) -> bool {
        code.checked_sub(400)
            .filter(|b| *b < 128)
            .is_some_and(|bit| self.0 & (1 << bit) != 0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Which methods a [`RetryPolicy`] sends again after the request reached
/// an endpoint. A connect failure is retried for every method under
/// [`Resend::NginxIdempotent`] (nothing was sent), and only for
/// idempotent methods under [`Resend::Idempotent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resend {
    /// GET, HEAD, OPTIONS, PUT, DELETE, TRACE (RFC 9110 §9.2.2): the
    /// gateway's own conservative rule.
    #[default]
    Idempotent,
    /// Every method but POST, LOCK and PATCH (nginx's rule).
    NginxIdempotent,
    /// Every method (`non_idempotent`).
    Any,
}

impl RetryPolicy {
    fn any(&self) -> bool {
        self.on_error || self.on_timeout || self.on_invalid_header || !self.on_status.is_empty()
    }

    /// Whether `method` may go to another endpoint after reaching one.
    fn resends(&self, method: &Method) -> bool {
        match self.resend {
            Resend::Idempotent => is_idempotent(method),
            Resend::NginxIdempotent => {
                !(*method == Method::POST || *method == Method::PATCH || method.as_str() == "LOCK")
            }
            Resend::Any => true,
        }
    }

    /// Whether `method` may go to another endpoint after a failed
    /// connect (nothing reached an endpoint).
    fn reconnects(&self, method: &Method) -> bool {
        self.resend != Resend::Idempotent || is_idempotent(method)
    }
}

impl Clients {
    /// The policy of a request without a route policy: connect failures
    /// (and pooled connections closed before a response) retried
    /// `connect_retries` times for idempotent methods.
    pub fn default_policy(&self) -> AttemptPolicy {
        AttemptPolicy {
            connect_timeout: self.connect_timeout,
            read_timeout: self.read_timeout,
            retry: RetryPolicy {
                on_error: self.cfg.connect_retries > 0,
                resend: Resend::Idempotent,
                tries: self.cfg.connect_retries.saturating_add(1),
                ..RetryPolicy::default()
            },
            ewma: false,
        }
    }

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
        connect_timeout: Duration,
        observe: &(dyn Fn(UpstreamEvent) + Sync),
    ) -> Result<Response<UpstreamBody>, AttemptError> {
        let idle = ep.idle_connections();
        let mut sender = match idle.checkout(self.cfg.pool_idle_timeout).await {
            Some(s) => s,
            None => {
                let s = h1_pool::connect(ep.addr(), connect_timeout)
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
        prefer: Option<Arc<EndpointState>>,
        ewma: bool,
        deadline: tokio::time::Instant,
    ) -> Result<(Arc<EndpointState>, OwnedSemaphorePermit), UpstreamError> {
        let pick = |exclude: &[SocketAddr]| {
            if ewma {
                pool.pick_ewma(exclude)
            } else {
                pool.pick(exclude)
            }
        };
        if let Some(ep) = prefer {
            // A session's endpoint: wait for its slot rather than move.
            let p = slots::acquire(ep.slots(), deadline, SlotLimit::Endpoint)
                .await
                .map_err(UpstreamError::Busy)?;
            return Ok((ep, p));
        }
        let Some(first) = pick(tried) else {
            return Err(UpstreamError::NoEndpoints);
        };
        if let Ok(p) = first.slots().clone().try_acquire_owned() {
            return Ok((first, p));
        }
        let mut full = tried.to_vec();
        full.push(first.addr());
        while let Some(ep) = pick(&full) {
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
    /// endpoint of `pool` under `policy` (see [`RetryPolicy`] and the
    /// module docs); the first attempt goes to `prefer` when it is one of
    /// the pool's endpoints (a session's, cookie affinity).
    /// `client_slots` caps the client connection's HTTP/1.1 exchanges;
    /// `observe` hears of every connection made or failed.
    pub async fn forward(
        &self,
        pool: &Pool,
        req: Request<GatewayBody>,
        policy: &AttemptPolicy,
        prefer: Option<SocketAddr>,
        client_slots: Option<&Arc<Semaphore>>,
        observe: &(dyn Fn(UpstreamEvent) + Sync),
    ) -> Result<Forwarded, UpstreamError> {
        let (parts, body) = req.into_parts();
        let retry = &policy.retry;
        let resends = retry.any() && retry.resends(&parts.method);
        let reconnects = retry.any() && retry.reconnects(&parts.method);
        let mut parts = Some(parts);
        let hint = body.size_hint();
        let end = body.is_end_stream();
        // A small body of known length is held so that it can go to
        // another endpoint after reaching one (nginx buffers every body).
        let (body, replay) = if resends && !end && hint.exact().is_some_and(|n| n <= REPLAY_MAX) {
            let bytes = body
                .collect()
                .await
                .map_err(UpstreamError::Body)?
                .to_bytes();
            (crate::gateway::body::full(bytes.clone()), Some(bytes))
        } else {
            (body, None)
        };
        let slot = Arc::new(Mutex::new(Some(body)));
        let body_unsent = || slot.lock().unwrap_or_else(|e| e.into_inner()).is_some();
        let h2 = pool.protocol() == AppProtocol::H2c;
        let deadline = slots::deadline(self.connect_timeout);
        let mut held = if h2 {
            Slots::default()
        } else {
            self.request_slots(client_slots, deadline).await?
        };
        let first_start = Instant::now();
        let max_tries = if retry.tries == 0 {
            u32::MAX
        } else {
            retry.tries
        };
        let mut tried: Vec<SocketAddr> = Vec::new();
        loop {
            let preferred = prefer
                .filter(|_| tried.is_empty())
                .and_then(|a| pool.endpoints().iter().find(|e| e.addr() == a).cloned());
            let (ep, ep_slot) = if h2 {
                let picked = || {
                    if policy.ewma {
                        pool.pick_ewma(&tried)
                    } else {
                        pool.pick(&tried)
                    }
                };
                match preferred.or_else(picked) {
                    Some(ep) => (ep, None),
                    None => return Err(UpstreamError::NoEndpoints),
                }
            } else {
                let (ep, slot) = self
                    .pick_with_slot(pool, &tried, preferred, policy.ewma, deadline)
                    .await?;
                (ep, Some(slot))
            };
            let addr = ep.addr();
            tried.push(addr);
            let attempts = u32::try_from(tried.len()).unwrap_or(u32::MAX);
            let another = (resends || reconnects)
                && attempts < max_tries
                && pool.endpoints().len() > tried.len()
                && retry.within.is_none_or(|w| first_start.elapsed() < w);
            let head = if another {
                clone_parts(parts.as_ref().expect("parts kept while retrying"))
            } else {
                parts.take().expect("parts used once")
            };
            if let Some(b) = &replay {
                *slot.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(crate::gateway::body::full(b.clone()));
            }
            let body = ReclaimBody::new(&slot, hint, end);
            let in_flight = ep.start();
            let start = Instant::now();
            let result = if h2 {
                let req = build_h2_request(head, ep.authority(), body);
                tokio::time::timeout(policy.read_timeout, self.send_h2(req)).await
            } else {
                let req = build_h1_request(head, ep.authority(), body);
                let send = self.send_h1(&ep, req, policy.connect_timeout, observe);
                tokio::time::timeout(policy.read_timeout, send).await
            };
            let resend = another && resends && (replay.is_some() || body_unsent());
            match result {
                Ok(Ok(response)) => {
                    ep.record_success();
                    ep.record_latency(start.elapsed());
                    if resend && retry.on_status.contains(response.status().as_u16()) {
                        tracing::debug!(%addr, status = %response.status(), "retrying on another endpoint");
                        drop(response);
                        continue;
                    }
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
                    let timed_out = retry.connect_timeout_is_timeout && connect_timed_out(&*e);
                    let wanted = if timed_out {
                        retry.on_timeout
                    } else {
                        retry.on_error
                    };
                    if !(another && reconnects && wanted && body_unsent()) {
                        if timed_out {
                            return Err(UpstreamError::Timeout {
                                addr,
                                timeout: policy.connect_timeout,
                            });
                        }
                        return Err(UpstreamError::Connect {
                            addr,
                            attempts,
                            source: e,
                        });
                    }
                    tracing::debug!(%addr, "connect failed, retrying on another endpoint");
                }
                Ok(Err(AttemptError::Request(source))) => {
                    let wanted = if closed_before_response(&*source) {
                        retry.on_error
                    } else {
                        retry.on_invalid_header && invalid_header(&*source)
                    };
                    if !(resend && wanted) {
                        return Err(UpstreamError::Request { addr, source });
                    }
                    tracing::debug!(%addr, error = %source, "exchange failed before a response, retrying on another endpoint");
                }
                Err(_) => {
                    if !(resend && retry.on_timeout) {
                        return Err(UpstreamError::Timeout {
                            addr,
                            timeout: policy.read_timeout,
                        });
                    }
                    tracing::debug!(%addr, "no response in time, retrying on another endpoint");
                }
            }
        }
    }
}

/// The largest request body (with a declared length) held so that it can
/// be sent to another endpoint under `proxy-next-upstream`; a larger or
/// chunked one streams, and goes to another endpoint only while none of
/// it has been sent.
const REPLAY_MAX: u64 = 64 * 1024;

/// Whether a failed connect timed out (nginx's `timeout` condition, and
/// 504) rather than failed (`error`, 502).
fn connect_timed_out(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if matches!(
            s.downcast_ref::<h1_pool::ConnectError>(),
            Some(h1_pool::ConnectError::Timeout(_))
        ) {
            return true;
        }
        source = s.source();
    }
    false
}

/// Whether the response head could not be parsed (nginx's
/// `invalid_header`).
fn invalid_header(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_parse)
        {
            return true;
        }
        source = s.source();
    }
    false
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
