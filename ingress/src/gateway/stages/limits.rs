//! Stage 4, limits: the request body limit
//! ([`Limits::max_request_body`]).
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
