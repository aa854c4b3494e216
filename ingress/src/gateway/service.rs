//! The request path, as a `tower::Service` per client connection:
//!
//! 1. Host (`:authority` or `Host`; an HTTP/1.1 request without exactly
//!    one Host is 400) and path hygiene ([`crate::routes::normalize`];
//!    refused → 400).
//! 2. Route lookup on the snapshot loaded at the start of the request;
//!    no route and no default backend → 404.
//! 3. Plain HTTP to a host with TLS → 308 to HTTPS (unless the Ingress
//!    opted out); HTTPS responses for such hosts carry HSTS.
//! 4. Resource backend → 503; no endpoints → 503; declared body over the
//!    limit → 413.
//! 5. Headers rewritten ([`super::proxy`]), the normalized path plus the
//!    original query forwarded, bodies streamed both ways
//!    ([`super::limits`]), upgrades tunnelled.
//! 6. Access log and request metrics when the response body ends
//!    ([`super::access_log`]).
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use http_body::Body;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;

use crate::routes::host::normalize_request_host;
use crate::routes::{Backend, Lookup, NormalizedRequest, normalize};

use super::access_log::{AccessRecord, Completion, LoggedBody};
use super::body::{BoxError, GatewayBody};
use super::errors::{LocalError, redirect};
use super::limits::{LimitedBody, ReadTimeoutBody, check_content_length};
use super::proxy::{ClientSide, is_upgrade, rewrite_request_headers, strip_hop_by_hop};
use super::routing::{AppProtocol, ServiceKey};
use super::server::{ConnState, tunnel};
use super::upstream::UpstreamError;
use super::{Shared, Snapshot};

/// What the service knows about its client connection.
#[derive(Debug)]
pub(crate) struct ConnCtx {
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) tls: bool,
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

fn protocol_name(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
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
    let conn_guard = conn.state.request_started(version == Version::HTTP_2);
    let snapshot = shared.snapshot.load_full();
    let mut ctx = RequestCtx {
        record: AccessRecord {
            client: Some(conn.peer.ip()),
            method: req.method().to_string(),
            protocol: protocol_name(version),
            tls: conn.tls,
            attempts: 0,
            ..AccessRecord::default()
        },
        guards: vec![Box::new(conn_guard)],
    };
    let mut resp = match route(&shared, &conn, &snapshot, req, &mut ctx).await {
        Ok(r) => r,
        Err(e) => e.response(),
    };
    *resp.version_mut() = version;
    ctx.record.status = resp.status().as_u16();
    let completion = Completion {
        record: ctx.record,
        start,
        format: shared.config.access_log,
        metrics: shared.metrics.clone(),
        _guards: ctx.guards,
    };
    resp.map(|b| LoggedBody::new(b, completion).boxed_unsync())
}

struct RequestCtx {
    record: AccessRecord,
    guards: Vec<Box<dyn Send>>,
}

/// The request's host: `:authority` / absolute-form authority, else the
/// single Host header. An HTTP/2 request whose Host header names another
/// host than `:authority` is malformed (RFC 9113 §8.3.1); an HTTP/1.1
/// absolute-form target overrides Host (RFC 9112 §3.2.2).
fn request_host<B>(req: &Request<B>) -> Result<String, LocalError> {
    if let Some(a) = req.uri().authority() {
        if req.version() == Version::HTTP_2
            && let Some(h) = req.headers().get(header::HOST)
            && !h.as_bytes().eq_ignore_ascii_case(a.as_str().as_bytes())
        {
            return Err(LocalError::BadHost);
        }
        return Ok(a.as_str().to_owned());
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(h), None) => h
            .to_str()
            .map(str::to_owned)
            .map_err(|_| LocalError::BadHost),
        (None, _) if req.version() != Version::HTTP_11 => Ok(String::new()),
        _ => Err(LocalError::BadHost),
    }
}

fn redirect_location(host: &str, port: Option<u16>, target: &NormalizedRequest) -> Option<String> {
    let host = normalize_request_host(host)?;
    let mut loc = format!("https://{host}");
    if let Some(p) = port.filter(|p| *p != 443) {
        loc.push_str(&format!(":{p}"));
    }
    loc.push_str(target.path.as_str());
    if let Some(q) = &target.query {
        loc.push('?');
        loc.push_str(q);
    }
    Some(loc)
}

async fn route<B>(
    shared: &Shared,
    conn: &ConnCtx,
    snapshot: &Snapshot,
    mut req: Request<B>,
    ctx: &mut RequestCtx,
) -> Result<Response<GatewayBody>, LocalError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let config = &shared.config;
    let host = request_host(&req)?;
    ctx.record.host.clone_from(&host);
    let raw = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path(), PathAndQuery::as_str);
    ctx.record.path = raw.to_owned();
    let target = normalize(raw).map_err(LocalError::BadPath)?;
    ctx.record.path = target.path.as_str().to_owned();

    let (backend, ingress, host_has_tls, wants_redirect) =
        match snapshot.routing.table.lookup(&host, &target.path) {
            Lookup::Route(m) => (
                &m.route.backend,
                &m.route.ingress,
                m.tls.is_some(),
                m.redirect_to_https(),
            ),
            Lookup::Default(d) => (&d.backend, &d.ingress, false, false),
            Lookup::NoRoute => return Err(LocalError::NoRoute),
        };
    ctx.record.ingress = ingress.to_string();

    if !conn.tls
        && wants_redirect
        && config.ssl_redirect
        && let Some(loc) = redirect_location(&host, config.https_redirect_port, &target)
    {
        return Ok(redirect(&loc));
    }
    let hsts = config.hsts.as_deref().filter(|_| conn.tls && host_has_tls);

    let key = match backend {
        Backend::Resource { .. } => return Err(LocalError::ResourceBackend(backend.to_string())),
        Backend::Service { .. } => ServiceKey::of(backend).expect("service backend"),
    };
    let service = key.to_string();
    ctx.record.service.clone_from(&service);
    let pool = match snapshot.pools.get(&key) {
        Some(p) if !p.is_empty() => p.clone(),
        _ => return Err(LocalError::NoEndpoints(service)),
    };
    let limit = config.limits.max_request_body;
    check_content_length(req.headers(), limit).map_err(|_| LocalError::BodyTooLarge)?;

    let upgrade = version_allows_upgrade(req.version())
        && pool.protocol() == AppProtocol::Http1
        && is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

    let (mut parts, body) = req.into_parts();
    let client = ClientSide {
        peer: conn.peer.ip(),
        scheme: if conn.tls { "https" } else { "http" },
        host: &host,
        port: conn.local.port(),
    };
    rewrite_request_headers(
        &mut parts.headers,
        &client,
        &config.trusted_proxies,
        upgrade,
    );
    let pq = match &target.query {
        Some(q) => format!("{}?{q}", target.path),
        None => target.path.as_str().to_owned(),
    };
    parts.uri =
        Uri::try_from(pq).map_err(|_| LocalError::BadPath(crate::routes::Reject::NotAbsolute))?;
    parts.extensions = http::Extensions::new();
    let exceeded = Arc::new(AtomicBool::new(false));
    let body = LimitedBody::new(body, limit, exceeded.clone()).boxed_unsync();
    let upstream_req = Request::from_parts(parts, body);

    let metrics = &shared.metrics;
    let result = shared
        .clients
        .forward(&pool, upstream_req, |_, ejected| {
            metrics.connect_failure(&service, ejected);
        })
        .await;
    let fwd = match result {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!(service = %service, error = %e, "upstream request failed");
            return Err(match e {
                UpstreamError::NoEndpoints => LocalError::NoEndpoints(service),
                UpstreamError::Connect { attempts, addr, .. } => {
                    ctx.record.attempts = attempts;
                    ctx.record.upstream = Some(addr);
                    LocalError::UpstreamConnect
                }
                UpstreamError::Timeout { addr, .. } => {
                    ctx.record.upstream = Some(addr);
                    LocalError::UpstreamTimeout
                }
                UpstreamError::Request { addr, .. } => {
                    ctx.record.upstream = Some(addr);
                    if exceeded.load(Ordering::Acquire) {
                        LocalError::BodyTooLarge
                    } else {
                        LocalError::UpstreamError
                    }
                }
            });
        }
    };
    ctx.record.upstream = Some(fwd.endpoint);
    ctx.record.attempts = fwd.attempts;
    metrics.upstream_latency(&service, fwd.latency.as_secs_f64());
    ctx.guards.push(Box::new(fwd.in_flight));

    let mut response = fwd.response;
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        let Some(client_upgrade) = client_upgrade else {
            // 101 to a request that did not ask for it.
            return Err(LocalError::UpstreamError);
        };
        // The connection becomes the tunnel: never back to the pool.
        response.body_mut().detach();
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        let idle = config.timeouts.idle;
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, upstream_upgrade) {
                Ok((c, u)) => tunnel(TokioIo::new(c), TokioIo::new(u), idle).await,
                Err(e) => tracing::debug!(error = %e, "upgrade failed"),
            }
        });
    }
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers, switching);
    if let Some(v) = hsts
        && !parts
            .headers
            .contains_key(header::STRICT_TRANSPORT_SECURITY)
        && let Ok(v) = HeaderValue::from_str(v)
    {
        parts.headers.insert(header::STRICT_TRANSPORT_SECURITY, v);
    }
    let body = ReadTimeoutBody::new(body, config.timeouts.upstream_read).boxed_unsync();
    Ok(Response::from_parts(parts, body))
}

fn version_allows_upgrade(v: Version) -> bool {
    v == Version::HTTP_11
}
