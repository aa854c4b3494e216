//! The request path as stages, one module each, run in this order by
//! [`run`]:
//!
//! | stage | does | answers itself |
//! | --- | --- | --- |
//! | [`resolve`] (host) | Host or `:authority` | 400 |
//! | [`misdirected`] | HTTPS: the SNI certificate covers the host | 421 |
//! | [`resolve`] (route) | `#` in the target, path hygiene, route resolution | 400, 404, 503 (denied) |
//! | [`redirect`], [`cors`] | the redirect or CORS preflight resolution decided; HSTS value | 301–308, 204 |
//! | [`access`], [`external_auth`] | source ranges, basic auth, external auth | 401, 403, 302, 500, 503 |
//! | [`backend`] | the route's Service port and its endpoints | 503 |
//! | [`limits`] | `chunked` twice; declared body size; the body is cut at the limit | 400, 413 |
//! | [`commit`] | HTTP/1.1 upstream: wait for the first body frame | 400, 413 |
//! | [`forward`] | upstream request (headers, target), send, upgrade | 400, 413, 502, 503, 504 |
//! | [`finish`] | response headers, read timeout, access log and metrics | |
//!
//! A stage is a plain function of the request (its head, or its body) and
//! of what earlier stages found out (a [`Resolved`] route, a
//! [`backend::Upstream`]). It refuses a request by returning a typed
//! [`LocalError`], which becomes the gateway's own response; it answers a
//! request itself by returning a response (the redirect); or it hands a
//! value to the stages after it. Nothing is shared between stages on the
//! side: what a later stage needs is in a return value.
//!
//! # Adding a stage
//!
//! A per-route policy (authentication, CORS, a rate limit, a rewrite, a
//! canary split) is one more module here:
//!
//! 1. `stages/NAME.rs`: a function taking the [`Resolved`] route (the
//!    matched rule is in [`Resolved::rule`], with everything the route
//!    table parsed for it) and the request head, returning
//!    `Result<(), LocalError>` to refuse, `Option<Response>` to answer
//!    instead of the upstream, or changing the head in place (a rewrite);
//!    a response-side part (CORS headers) is a function [`finish`] calls;
//! 2. one line in [`run`], at its place in the order;
//! 3. unit tests in its module (a stage needs no sockets), and a test
//!    over real sockets in `ingress/tests/`.
//!
//! [`Exchange`] carries what is per request but belongs to no stage: the
//! connection, the snapshot, the access log record and the guards that
//! live as long as the response.

pub(crate) mod access;
pub(crate) mod backend;
pub(crate) mod commit;
pub(crate) mod cors;
pub(crate) mod external_auth;
pub(crate) mod finish;
pub(crate) mod forward;
pub(crate) mod limits;
pub(crate) mod misdirected;
pub(crate) mod redirect;
pub(crate) mod resolve;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;

use super::access_log::AccessRecord;
use super::body::{BoxError, GatewayBody};
use super::errors::LocalError;
use super::server::RequestGuard;
use super::service::ConnCtx;
use super::{Shared, Snapshot};

use access::Access;
use resolve::Routed;

pub(crate) use resolve::Resolved;

/// One request on its way through the stages.
pub(crate) struct Exchange<'a> {
    /// Configuration, clients, metrics.
    pub(crate) shared: &'a Shared,
    /// The client connection.
    pub(crate) conn: &'a ConnCtx,
    /// The routing snapshot loaded when the request arrived; the request
    /// ends with it whatever the controller swaps in meanwhile.
    pub(crate) snapshot: &'a Snapshot,
    /// The access log line, filled in as the stages learn things.
    pub(crate) record: AccessRecord,
    /// The request on its connection (activity, HTTP/2 reset budget).
    pub(crate) request: RequestGuard,
    /// Dropped when the response body ends (endpoint in-flight count,
    /// upstream connection slots).
    pub(crate) guards: Vec<Box<dyn Send>>,
    /// Whether the request is logged (`enable-access-log`).
    pub(crate) access_log: bool,
}

/// Runs the stages on `req`; an `Err` is answered by the gateway itself
/// ([`LocalError::response`]). The access log and metrics are written by
/// [`finish::complete`] around whatever comes out. Once a route is known,
/// its CORS headers go on every answer, the gateway's own included (as
/// ingress-nginx's `more_set_headers` puts them on every status).
pub(crate) async fn run<B>(
    ex: &mut Exchange<'_>,
    req: Request<B>,
) -> Result<Response<GatewayBody>, LocalError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (head, body) = req.into_parts();
    let config = &ex.shared.config;
    let host = resolve::host(&head, &mut ex.record)?;
    misdirected::check(config, ex.conn, ex.snapshot, &host)?;
    let target = resolve::target(ex.conn, &head, &mut ex.record)?;
    let snapshot = ex.snapshot;
    let route = match resolve::route(
        snapshot,
        config,
        ex.conn,
        &head,
        host,
        &target,
        &mut ex.record,
    )? {
        Routed::Route(r) => r,
        Routed::Answer(a) => return Ok(a),
    };
    if let Some(p) = route.policy {
        ex.access_log = p.logs.access_log;
    }
    let mut resp = match routed(ex, &route, head, body).await {
        Ok(r) => r,
        Err(e) => e.response(),
    };
    if let Some(f) = &route.forward {
        cors::add(resp.headers_mut(), &f.cors_headers);
    }
    Ok(resp)
}

/// The stages after a route is known.
async fn routed<B>(
    ex: &mut Exchange<'_>,
    route: &Resolved<'_>,
    head: http::request::Parts,
    body: B,
) -> Result<Response<GatewayBody>, LocalError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let config = &ex.shared.config;
    let granted = match access::check(ex.snapshot, config, ex.conn, route, &head).await? {
        Access::Allowed(g) => g,
        Access::Answer(a) => return Ok(a),
    };
    let hsts = redirect::hsts(config, ex.conn, route);
    let upstream = backend::select(ex.snapshot, route, &mut ex.record)?;
    let body_limit = limits::body_limit(config, route);
    limits::check_framing(&head.headers)?;
    limits::check_declared_length(body_limit, &head.headers)?;
    let body = limits::limit_body(body, body_limit);
    let body = commit::committed(body, &upstream).await?;
    let forwarded = forward::forward(ex, route, &upstream, head, body, &granted).await?;
    Ok(finish::response(config, hsts, forwarded))
}
