//! Responses the gateway makes itself: status, a short plain-text body,
//! and nothing from the request echoed back.

use http::{HeaderValue, Response, StatusCode, header};

use crate::routes::Reject;

use super::upstream::SlotLimit;

use super::body::{GatewayBody, full};

/// Why the gateway answered a request itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalError {
    /// The request path failed hygiene (400).
    #[error("bad request: {0}")]
    BadPath(Reject),
    /// An HTTP/1.1 request without Host, or with several (400).
    #[error("bad request: missing or repeated Host header")]
    BadHost,
    /// The client's request body broke its framing (an overflowing or
    /// malformed chunk size, oversized chunk extensions or trailers, bare
    /// LF line ends) or ended early (400): the client's fault, not the
    /// upstream's.
    #[error("bad request: malformed or incomplete request body")]
    BadBody,
    /// Over HTTPS, the certificate the client's SNI chose does not cover
    /// the request's host (421): the client should use a connection of
    /// its own for that host.
    #[error("misdirected request: this connection's certificate does not cover the requested host")]
    Misdirected,
    /// No rule matched and there is no default backend (404).
    #[error("no route for this host and path")]
    NoRoute,
    /// The route's backend is a resource, which the gateway cannot
    /// serve (503).
    #[error("backend is a resource ({0}), which sluice cannot serve")]
    ResourceBackend(String),
    /// The Service port has no ready endpoints (503).
    #[error("no ready endpoints for service {0}")]
    NoEndpoints(String),
    /// The request body is over the limit (413).
    #[error("request body too large")]
    BodyTooLarge,
    /// No endpoint accepted a connection (502).
    #[error("upstream connection failed")]
    UpstreamConnect,
    /// The upstream did not answer in time (504).
    #[error("upstream timed out")]
    UpstreamTimeout,
    /// The upstream broke the exchange (502).
    #[error("upstream error")]
    UpstreamError,
    /// No upstream connection slot under a cap within the queue timeout
    /// (503).
    #[error("upstream connection limit reached ({0})")]
    UpstreamBusy(SlotLimit),
}

impl LocalError {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadPath(_) | Self::BadHost | Self::BadBody => StatusCode::BAD_REQUEST,
            Self::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::ResourceBackend(_) | Self::NoEndpoints(_) | Self::UpstreamBusy(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UpstreamConnect | Self::UpstreamError => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The response: status and `"<reason>\n"` as text/plain.
    pub fn response(&self) -> Response<GatewayBody> {
        let mut r = Response::new(full(format!("{self}\n")));
        *r.status_mut() = self.status();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if matches!(
            self,
            Self::BodyTooLarge | Self::BadPath(_) | Self::BadHost | Self::BadBody
        ) {
            // The unread request body makes the connection unusable.
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }
}

/// A 308 to `location`.
pub fn redirect(location: &str) -> Response<GatewayBody> {
    let mut r = Response::new(full("redirecting to HTTPS\n"));
    *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(LocalError::NoRoute.status(), 404);
        assert_eq!(LocalError::BadPath(Reject::Nul).status(), 400);
        assert_eq!(LocalError::NoEndpoints("a/b:80".into()).status(), 503);
        assert_eq!(LocalError::BodyTooLarge.status(), 413);
        assert_eq!(LocalError::UpstreamTimeout.status(), 504);
        assert_eq!(LocalError::BadBody.status(), 400);
        assert_eq!(LocalError::Misdirected.status(), 421);
        assert_eq!(LocalError::UpstreamBusy(SlotLimit::Total).status(), 503);
        let r = redirect("https://a.test/x?y");
        assert_eq!(r.status(), 308);
        assert_eq!(r.headers()[header::LOCATION], "https://a.test/x?y");
    }
}
