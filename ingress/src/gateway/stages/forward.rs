//! Stage 5, forward: the upstream exchange.
//!
//! The request head is rewritten for the upstream ([`crate::gateway::proxy`]:
//! underscored names, hop-by-hop and framing headers out, the normalized
//! Host and `X-Forwarded-*` set), its target becomes the normalized path
//! plus the query as received, and it goes to an endpoint of the
//! [`Upstream`] through the pooled clients ([`crate::gateway::upstream`]:
//! balancing, connection caps, connect retries). A `101` to an upgrade
//! request (WebSocket, or a configured protocol) turns both connections
//! into a tunnel, which keeps the exchange's connection slots.
//!
//! Failures are typed ([`UpstreamError`]) and become the gateway's answer
//! here: connect failure 502, no response in time 504, no connection slot
//! in time 503, an exchange broken by the request body 413 (over its
//! limit, [`BodyTooLarge`]) or 400 (the client's framing,
//! [`ClientBodyError`]) — the client's fault, known from the error's
//! cause — and anything else 502.

use std::error::Error as StdError;
use std::net::SocketAddr;

use http::request::Parts;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::gateway::body::GatewayBody;
use crate::gateway::errors::LocalError;
use crate::gateway::limits::{BodyTooLarge, ClientBodyError};
use crate::gateway::proxy::{ClientSide, is_upgrade, rewrite_request_headers, upstream_host};
use crate::gateway::routing::AppProtocol;
use crate::gateway::server::tunnel;
use crate::gateway::upstream::{UpstreamBody, UpstreamError, UpstreamEvent};
use crate::routes::Reject;

use super::backend::Upstream;
use super::external_auth::Granted;
use super::{Exchange, Resolved};

/// An upstream response head, body still streaming.
pub(crate) struct Forwarded {
    /// The response.
    pub(crate) response: Response<UpstreamBody>,
    /// Whether it is a `101` whose connection became a tunnel.
    pub(crate) switching: bool,
}

/// Sends the request upstream (see the module docs).
pub(crate) async fn forward(
    ex: &mut Exchange<'_>,
    route: &Resolved<'_>,
    upstream: &Upstream,
    mut head: Parts,
    body: GatewayBody,
    granted: &Granted,
) -> Result<Forwarded, LocalError> {
    let config = &ex.shared.config;
    let upgrade = head.version == Version::HTTP_11
        && upstream.pool.protocol() == AppProtocol::Http1
        && is_upgrade(&head.headers, &config.upgrade_protocols);
    let client_upgrade = upgrade
        .then(|| head.extensions.remove::<OnUpgrade>())
        .flatten();
    let host = upstream_host(&route.host, ex.conn.tls);
    let client = ClientSide {
        peer: ex.conn.peer.ip(),
        scheme: if ex.conn.tls { "https" } else { "http" },
        host: host.as_deref().unwrap_or(&route.host),
        port: ex.conn.local.port(),
    };
    rewrite_request_headers(
        &mut head.headers,
        &client,
        &config.trusted_proxies,
        upgrade,
        config.allow_underscores_in_headers,
    );
    granted.apply(&mut head.headers);
    if let Some(f) = &route.forward {
        set_header(&mut head.headers, header::HOST, f.upstream_host.as_deref());
        set_header(
            &mut head.headers,
            HeaderName::from_static("x-forwarded-prefix"),
            f.x_forwarded_prefix.as_deref(),
        );
    }
    head.uri = upstream_target(route)?;
    head.extensions = http::Extensions::new();
    let request = Request::from_parts(head, body);

    let metrics = &ex.shared.metrics;
    let service = &upstream.service;
    let observe = |event| match event {
        UpstreamEvent::Connected(_) => metrics.upstream_connected(service),
        UpstreamEvent::ConnectFailed { ejected, .. } => metrics.connect_failure(service, ejected),
    };
    let result = ex
        .shared
        .clients
        .forward(
            &upstream.pool,
            request,
            ex.conn.state.upstream_slots(),
            &observe,
        )
        .await;
    let fwd = match result {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!(service = %service, error = %e, "upstream request failed");
            if let UpstreamError::Busy(limit) = &e {
                metrics.upstream_queue_timeout(service, &limit.to_string());
            }
            let (err, addr, attempts) = classify(e, service);
            ex.record.upstream = addr.or(ex.record.upstream);
            if let Some(n) = attempts {
                ex.record.attempts = n;
            }
            return Err(err);
        }
    };
    ex.record.upstream = Some(fwd.endpoint);
    ex.record.attempts = fwd.attempts;
    metrics.upstream_latency(service, fwd.latency.as_secs_f64());
    ex.guards.push(Box::new(fwd.in_flight));

    let mut slots = Some(fwd.slots);
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
        let slots = slots.take();
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, upstream_upgrade) {
                Ok((c, u)) => tunnel(TokioIo::new(c), TokioIo::new(u), idle).await,
                Err(e) => tracing::debug!(error = %e, "upgrade failed"),
            }
            drop(slots);
        });
    }
    if let Some(s) = slots {
        ex.guards.push(Box::new(s));
    }
    Ok(Forwarded {
        response,
        switching,
    })
}

/// Sets `name` to `value` when there is one (a value that is no valid
/// header value is left out).
fn set_header(headers: &mut http::HeaderMap, name: HeaderName, value: Option<&str>) {
    if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert(name, v);
    }
}

/// The origin-form target sent upstream: the path resolution chose (the
/// normalized path that was routed, or the `rewrite-target` result) and
/// the query as received.
fn upstream_target(route: &Resolved<'_>) -> Result<Uri, LocalError> {
    let (path, query) = match &route.forward {
        Some(f) => (f.path.as_ref(), f.query),
        None => (route.target.path.as_str(), route.target.query.as_deref()),
    };
    let pq = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    Uri::try_from(pq).map_err(|_| LocalError::BadPath(Reject::NotAbsolute))
}

/// The gateway's answer to a failed upstream exchange, with the endpoint
/// and attempt count to log when known.
fn classify(e: UpstreamError, service: &str) -> (LocalError, Option<SocketAddr>, Option<u32>) {
    match e {
        UpstreamError::NoEndpoints => (LocalError::NoEndpoints(service.to_owned()), None, None),
        UpstreamError::Connect { attempts, addr, .. } => {
            (LocalError::UpstreamConnect, Some(addr), Some(attempts))
        }
        UpstreamError::Timeout { addr, .. } => (LocalError::UpstreamTimeout, Some(addr), None),
        UpstreamError::Request { addr, source } => {
            let err = if caused_by::<BodyTooLarge>(&*source) {
                LocalError::BodyTooLarge
            } else if caused_by::<ClientBodyError>(&*source) {
                LocalError::BadBody
            } else {
                LocalError::UpstreamError
            };
            (err, Some(addr), None)
        }
        UpstreamError::Busy(limit) => (LocalError::UpstreamBusy(limit), None, None),
    }
}

/// Whether `E` is in the cause chain of `e` (the error itself included).
pub(crate) fn caused_by<E: StdError + 'static>(e: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if err.is::<E>() {
            return true;
        }
        next = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Box<dyn StdError + Send + Sync>);

    #[test]
    fn body_limit_found_in_the_cause_chain() {
        let deep = Outer(Box::new(Outer(Box::new(BodyTooLarge(10)))));
        assert!(caused_by::<BodyTooLarge>(&deep));
        assert!(!caused_by::<BodyTooLarge>(&Outer(Box::new(
            std::fmt::Error
        ))));
        let addr: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let (e, a, _) = classify(
            UpstreamError::Request {
                addr,
                source: Box::new(deep),
            },
            "ns/web:80",
        );
        assert_eq!((e, a), (LocalError::BodyTooLarge, Some(addr)));
        let (e, _, _) = classify(
            UpstreamError::Request {
                addr,
                source: Box::new(std::fmt::Error),
            },
            "ns/web:80",
        );
        assert_eq!(e, LocalError::UpstreamError);
        let (e, _, _) = classify(
            UpstreamError::Request {
                addr,
                source: Box::new(Outer(Box::new(ClientBodyError("bad chunk".into())))),
            },
            "ns/web:80",
        );
        assert_eq!(e, LocalError::BadBody);
    }
}
