//! Responses the gateway makes itself: status, a short plain-text body,
//! and nothing from the request echoed back.

use http::{HeaderValue, Response, StatusCode, header};

use crate::routes::Reject;

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
}

impl LocalError {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadPath(_) | Self::BadHost => StatusCode::BAD_REQUEST,
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::ResourceBackend(_) | Self::NoEndpoints(_) => StatusCode::SERVICE_UNAVAILABLE,
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
        if matches!(self, Self::BodyTooLarge | Self::BadPath(_) | Self::BadHost) {
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
        let r = redirect("https://a.test/x?y");
        assert_eq!(r.status(), 308);
        assert_eq!(r.headers()[header::LOCATION], "https://a.test/x?y");
    }
}
