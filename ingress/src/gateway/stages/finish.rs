//! Stage 6, finish: the response the client gets, and its record.
//!
//! [`response`] turns an upstream response into the client's: hop-by-hop
//! headers out (`Upgrade` kept on a `101`), HSTS added when the
//! [`super::redirect`] stage asked for it and the upstream did not set
//! its own, and the body bounded by the route's read timeout between
//! chunks ([`ReadTimeoutBody`]).
//!
//! [`complete`] runs on every response, the gateway's own included: it
//! fixes the response version to the request's and attaches the access
//! log record and the request guards to the body, so the log line, the
//! `sluice_ingress_requests` count and the end of the endpoint's
//! in-flight count all happen when the response body ends
//! ([`crate::gateway::access_log`]).

use std::time::Instant;

use http::{HeaderValue, Response, Version, header};
use http_body_util::BodyExt;

use crate::gateway::access_log::{Completion, LoggedBody};
use crate::gateway::body::GatewayBody;
use crate::gateway::limits::ReadTimeoutBody;
use crate::gateway::proxy::strip_hop_by_hop;

use super::Exchange;
use super::forward::Forwarded;

/// The client's response to an upstream response.
pub(crate) fn response(hsts: Option<&str>, forwarded: Forwarded) -> Response<GatewayBody> {
    let (mut parts, body) = forwarded.response.into_parts();
    strip_hop_by_hop(&mut parts.headers, forwarded.switching);
    if let Some(v) = hsts
        && !parts
            .headers
            .contains_key(header::STRICT_TRANSPORT_SECURITY)
        && let Ok(v) = HeaderValue::from_str(v)
    {
        parts.headers.insert(header::STRICT_TRANSPORT_SECURITY, v);
    }
    let body = ReadTimeoutBody::new(body, forwarded.read_timeout).boxed_unsync();
    Response::from_parts(parts, body)
}

/// Attaches the access log record and the guards of `ex` to `resp`.
pub(crate) fn complete(
    ex: Exchange<'_>,
    start: Instant,
    version: Version,
    mut resp: Response<GatewayBody>,
) -> Response<GatewayBody> {
    *resp.version_mut() = version;
    let mut record = ex.record;
    record.status = resp.status().as_u16();
    let completion = Completion {
        record,
        start,
        log: if ex.access_log {
            ex.shared.config.access_log.clone()
        } else {
            None
        },
        metrics: ex.shared.metrics.clone(),
        request: Some(ex.request),
        failed: false,
        _guards: ex.guards,
    };
    resp.map(|b| LoggedBody::new(b, completion).boxed_unsync())
}

/// How the access log names a protocol version.
pub(crate) fn protocol_name(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}
