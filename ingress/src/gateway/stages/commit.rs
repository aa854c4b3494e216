//! Stage, commit: an HTTP/1.1 upstream exchange starts when the request
//! is committed, not at its head.
//!
//! Each HTTP/1.1 request in flight holds an upstream connection of its
//! own. A client that sends the head of a request with a body and resets
//! it (an HTTP/2 stream reset 5 ms after HEADERS, a body the h2 layer
//! refuses) would cost a connection and a half request at the backend
//! per stream: 37,300 such streams gave a backend ~4,900 connections.
//! So a request with a body waits for its first body frame (or its end)
//! before any upstream is contacted: one reset before that costs nothing
//! upstream. The frame is handed on in front of the rest of the body, the
//! length hint kept (so a `Content-Length` request stays one upstream).
//! A body that fails at once is the client's fault: 400, or 413 over the
//! body limit.
//!
//! Requests to HTTP/2 (h2c, gRPC) upstreams are not held back: they share
//! one connection per endpoint, a reset costs one stream there, and a gRPC
//! bidirectional stream may rightly wait for the server to speak first.

use std::error::Error as StdError;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::gateway::body::{BoxError, GatewayBody};
use crate::gateway::errors::LocalError;
use crate::gateway::limits::BodyTooLarge;
use crate::gateway::routing::AppProtocol;

use super::backend::Upstream;
use super::forward::caused_by;

/// The request body, once the request is committed (see the module docs).
pub(crate) async fn committed(
    mut body: GatewayBody,
    upstream: &Upstream,
) -> Result<GatewayBody, LocalError> {
    if upstream.pool.protocol() != AppProtocol::Http1 || body.is_end_stream() {
        return Ok(body);
    }
    match body.frame().await {
        None => Ok(http_body_util::Empty::new()
            .map_err(|e| match e {})
            .boxed_unsync()),
        Some(Ok(first)) => Ok(Prepended {
            first: Some(first),
            rest: body,
        }
        .boxed_unsync()),
        Some(Err(e)) => Err(client_body_error(&*e)),
    }
}

/// What a failed request body is answered with.
pub(crate) fn client_body_error(e: &(dyn StdError + 'static)) -> LocalError {
    if caused_by::<BodyTooLarge>(e) {
        LocalError::BodyTooLarge
    } else {
        LocalError::BadBody
    }
}

/// A body whose first frame was already read.
struct Prepended {
    first: Option<Frame<Bytes>>,
    rest: GatewayBody,
}

impl Body for Prepended {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(f) = self.first.take() {
            return Poll::Ready(Some(Ok(f)));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let first = self
            .first
            .as_ref()
            .and_then(Frame::data_ref)
            .map_or(0, |d| d.remaining() as u64);
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + first);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + first);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::limits::ClientBodyError;
    use http_body_util::Full;

    #[tokio::test]
    async fn the_first_frame_is_handed_on_with_the_length_hint() {
        let body = Full::new(Bytes::from_static(b"hello"))
            .map_err(|e| match e {})
            .boxed_unsync();
        let mut b = body;
        let first = b.frame().await.unwrap().unwrap();
        let p = Prepended {
            first: Some(first),
            rest: b,
        };
        assert_eq!(p.size_hint().exact(), Some(5));
        assert!(!p.is_end_stream());
        assert_eq!(p.collect().await.unwrap().to_bytes(), "hello");
    }

    #[test]
    fn body_errors_are_the_clients() {
        let framing: BoxError = Box::new(ClientBodyError("bad chunk".into()));
        assert_eq!(client_body_error(&*framing), LocalError::BadBody);
        let big: BoxError = Box::new(BodyTooLarge(10));
        assert_eq!(client_body_error(&*big), LocalError::BodyTooLarge);
    }
}
