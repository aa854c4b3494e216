//! Stage 4, limits: the request body limit
//! ([`crate::gateway::config::Limits::max_request_body`], or per route ingress-nginx's
//! `proxy-body-size`: [`body_limit`]), and framing hyper lets through that a
//! peer could read differently (`chunked` applied twice: 400).
//!
//! A declared `Content-Length` over the limit is refused (413) before any
//! upstream is contacted; a streamed body is cut when it grows past the
//! limit, and [`super::forward`] answers 413 when that is why the upstream
//! exchange failed. The body wrappers themselves are in
//! [`crate::gateway::limits`]; header limits and the request-head timeout
//! are the listener's ([`crate::gateway::server`]).

use bytes::Bytes;
use http::HeaderMap;
use http_body::Body;
use http_body_util::BodyExt;

use crate::gateway::body::{BoxError, GatewayBody};
use crate::gateway::config::GatewayConfig;
use crate::gateway::errors::LocalError;
use crate::gateway::limits::{LimitedBody, check_content_length};

use super::Resolved;

/// 400 for a `Transfer-Encoding` naming `chunked` more than once: RFC 9112
/// §6.1 forbids applying it twice, hyper decodes such a body once, and a
/// peer that decodes twice would read another body out of it.
pub(crate) fn check_framing(headers: &HeaderMap) -> Result<(), LocalError> {
    let chunked = headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .filter(|c| c.trim().eq_ignore_ascii_case("chunked"))
        .count();
    if chunked > 1 {
        return Err(LocalError::BadBody);
    }
    Ok(())
}

/// The request body limit of a route in bytes, 0 for none: in
/// ingress-nginx mode its `proxy-body-size` (default the ConfigMap's,
/// 1m; `0` unlimited, as nginx's `client_max_body_size 0`), else
/// [`crate::gateway::config::Limits::max_request_body`].
pub(crate) fn body_limit(config: &GatewayConfig, route: &Resolved<'_>) -> u64 {
    match route.policy {
        Some(p) => p.limits.body_size.as_bytes(),
        None => config.limits.max_request_body,
    }
}

/// 413 when the declared length is over `limit` (0: none).
pub(crate) fn check_declared_length(limit: u64, headers: &HeaderMap) -> Result<(), LocalError> {
    check_content_length(headers, limit).map_err(|_| LocalError::BodyTooLarge)
}

/// The request body, cut with [`crate::gateway::limits::BodyTooLarge`]
/// past `limit` (0: none).
pub(crate) fn limit_body<B>(body: B, limit: u64) -> GatewayBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    LimitedBody::new(body, limit).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_twice_is_refused() {
        let te = |vals: &[&str]| {
            let mut h = HeaderMap::new();
            for v in vals {
                h.append(http::header::TRANSFER_ENCODING, v.parse().unwrap());
            }
            check_framing(&h)
        };
        assert!(te(&[]).is_ok());
        assert!(te(&["chunked"]).is_ok());
        assert!(te(&["gzip, chunked"]).is_ok());
        assert_eq!(te(&["chunked", "chunked"]), Err(LocalError::BadBody));
        assert_eq!(te(&["chunked, Chunked"]), Err(LocalError::BadBody));
    }
}
