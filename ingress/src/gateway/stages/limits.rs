//! Stage 4, limits: the request body limit
//! ([`Limits::max_request_body`]), and framing hyper lets through that a
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
use crate::gateway::config::Limits;
use crate::gateway::errors::LocalError;
use crate::gateway::limits::{LimitedBody, check_content_length};

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

/// 413 when the declared length is over the limit.
pub(crate) fn check_declared_length(
    limits: &Limits,
    headers: &HeaderMap,
) -> Result<(), LocalError> {
    check_content_length(headers, limits.max_request_body).map_err(|_| LocalError::BodyTooLarge)
}

/// The request body, cut with [`crate::gateway::limits::BodyTooLarge`]
/// past the limit.
pub(crate) fn limit_body<B>(body: B, limits: &Limits) -> GatewayBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    LimitedBody::new(body, limits.max_request_body).boxed_unsync()
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
