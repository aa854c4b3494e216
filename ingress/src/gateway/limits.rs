//! Request body limits and upstream read timeouts, as body wrappers.
//!
//! * [`check_content_length`]: a declared `Content-Length` above the limit
//!   is refused (413) before any upstream is contacted.
//! * [`LimitedBody`]: a streamed (chunked or h2) body that grows past the
//!   limit ends with [`BodyTooLarge`], and an error of the client's body
//!   becomes a [`ClientBodyError`]; the upstream client fails with that
//!   error as its cause, which is how the gateway knows to answer 413
//!   rather than 502 ([`crate::gateway::stages::forward`]).
//! * [`ReadTimeoutBody`]: an upstream response body that stalls longer
//!   than the read timeout between two frames ends with
//!   [`UpstreamReadTimeout`] (nginx's `proxy_read_timeout` semantics).
//!
//! Header-size limits and the request-head (slowloris) timeout live in the
//! listener ([`crate::gateway::server`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::body::BoxError;

/// The request body exceeded the configured limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request body larger than {0} bytes")]
pub struct BodyTooLarge(pub u64);

/// The client's request body failed: broken framing (hyper's HTTP/1
/// decoder or the h2 layer refused it) or the client went away in the
/// middle. Distinguishes the client's fault (400) from the upstream's
/// (502) when the upstream exchange fails with it as its cause.
#[derive(Debug, thiserror::Error)]
#[error("request body: {0}")]
pub struct ClientBodyError(#[source] pub BoxError);

/// An upstream response body stalled longer than the read timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("upstream read timed out after {0:?}")]
pub struct UpstreamReadTimeout(pub Duration);

/// Whether a request's declared length fits `limit` (0 = unlimited). An
/// unparsable `Content-Length` never reaches here: hyper refuses it.
pub fn check_content_length(headers: &HeaderMap, limit: u64) -> Result<(), BodyTooLarge> {
    if limit == 0 {
        return Ok(());
    }
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > limit => Err(BodyTooLarge(limit)),
        _ => Ok(()),
    }
}

pin_project_lite::pin_project! {
    /// A body cut off with [`BodyTooLarge`] once more than `limit` bytes
    /// went through (0 = unlimited).
    pub struct LimitedBody<B> {
        #[pin]
        inner: B,
        remaining: u64,
        limit: u64,
    }
}

impl<B> LimitedBody<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, limit: u64) -> Self {
        Self {
            inner,
            remaining: if limit == 0 { u64::MAX } else { limit },
            limit,
        }
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > *this.remaining {
                        *this.remaining = 0;
                        return Poll::Ready(Some(Err(BodyTooLarge(*this.limit).into())));
                    }
                    *this.remaining -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(Box::new(ClientBodyError(e.into()))))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A body that fails with [`UpstreamReadTimeout`] when no frame arrives
    /// for `timeout`.
    pub struct ReadTimeoutBody<B> {
        #[pin]
        inner: B,
        #[pin]
        sleep: Sleep,
        timeout: Duration,
        waiting: bool,
    }
}

impl<B> ReadTimeoutBody<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            sleep: tokio::time::sleep(timeout),
            timeout,
            waiting: false,
        }
    }
}

impl<B> Body for ReadTimeoutBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(r) => {
                *this.waiting = false;
                Poll::Ready(r.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                // The clock runs only while the gateway waits on the
                // upstream, not while a slow client keeps the gateway from
                // asking; it is armed at the first wait, so a frame that is
                // already there (most small responses) costs no timer.
                if !*this.waiting {
                    *this.waiting = true;
                    this.sleep.as_mut().reset(Instant::now() + *this.timeout);
                }
                ready!(this.sleep.poll(cx));
                Poll::Ready(Some(Err(UpstreamReadTimeout(*this.timeout).into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    #[test]
    fn content_length_check() {
        let mut h = HeaderMap::new();
        assert!(check_content_length(&h, 10).is_ok());
        h.insert(http::header::CONTENT_LENGTH, "10".parse().unwrap());
        assert!(check_content_length(&h, 10).is_ok());
        h.insert(http::header::CONTENT_LENGTH, "11".parse().unwrap());
        assert_eq!(check_content_length(&h, 10), Err(BodyTooLarge(10)));
        assert!(check_content_length(&h, 0).is_ok());
    }

    #[tokio::test]
    async fn limited_body_cuts_streams() {
        let chunks = (0..4).map(|_| Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"abcd"))));
        let body = LimitedBody::new(StreamBody::new(futures_lite_iter(chunks)), 10);
        let err = body.collect().await.unwrap_err();
        assert!(err.downcast_ref::<BodyTooLarge>().is_some());

        let ok = LimitedBody::new(Full::new(Bytes::from_static(b"0123456789")), 10);
        assert_eq!(ok.collect().await.unwrap().to_bytes().len(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn read_timeout_fires_between_frames() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let stream = tokio_stream_from(rx);
        let mut body = std::pin::pin!(ReadTimeoutBody::new(
            StreamBody::new(stream),
            Duration::from_secs(5)
        ));
        tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
            .await
            .unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.downcast_ref::<UpstreamReadTimeout>().is_some());
        drop(tx);
    }

    /// A `Stream` over an iterator (no futures dependency).
    fn futures_lite_iter<I: Iterator + Unpin>(it: I) -> impl futures_core::Stream<Item = I::Item> {
        struct S<I>(I);
        impl<I: Iterator + Unpin> futures_core::Stream for S<I> {
            type Item = I::Item;
            fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<I::Item>> {
                Poll::Ready(self.0.next())
            }
        }
        S(it)
    }

    fn tokio_stream_from<T>(
        rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_core::Stream<Item = T> {
        struct S<T>(tokio::sync::mpsc::Receiver<T>);
        impl<T> futures_core::Stream for S<T> {
            type Item = T;
            fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
                self.0.poll_recv(cx)
            }
        }
        S(rx)
    }
}
