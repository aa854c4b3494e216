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
    /// The route is denied (503): an access-control annotation that is
    /// not enforced, or whose value or Secret cannot be used (fail
    /// closed).
    #[error("service unavailable: {0}")]
    Denied(String),
    /// The client address is outside the allow-list or inside the
    /// deny-list (403).
    #[error("forbidden")]
    Forbidden,
    /// Basic auth: no or wrong credentials (401 with `WWW-Authenticate`).
    #[error("authorization required")]
    Unauthorized {
        /// `auth-realm`.
        realm: String,
    },
    /// External auth answered 401 or 403 (that status; its
    /// `WWW-Authenticate` passed on).
    #[error("authorization denied by the auth service")]
    AuthDenied {
        /// 401 or 403.
        status: u16,
        /// The auth service's `WWW-Authenticate`.
        www_authenticate: Option<String>,
    },
    /// External auth failed: the auth service could not be reached or
    /// answered something else than 2xx, 401 or 403 (500, as nginx's
    /// `auth_request`).
    #[error("the auth service failed")]
    AuthFailed,
    /// A client certificate is required and none was sent (400, nginx's
    /// "No required SSL certificate was sent").
    #[error("bad request: no required SSL certificate was sent")]
    NoClientCertificate,
    /// The client certificate did not verify (400, nginx's "The SSL
    /// certificate error").
    #[error("bad request: the SSL certificate error")]
    BadClientCertificate,
}

impl LocalError {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadPath(_) | Self::BadHost | Self::BadBody => StatusCode::BAD_REQUEST,
            Self::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::ResourceBackend(_)
            | Self::NoEndpoints(_)
            | Self::UpstreamBusy(_)
            | Self::Denied(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::AuthDenied { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::FORBIDDEN)
            }
            Self::AuthFailed => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NoClientCertificate | Self::BadClientCertificate => StatusCode::BAD_REQUEST,
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
        let challenge = match self {
            Self::Unauthorized { realm } => Some(basic_challenge(realm)),
            Self::AuthDenied {
                www_authenticate, ..
            } => www_authenticate.clone(),
            _ => None,
        };
        if let Some(v) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
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

/// `Basic realm="<realm>"`, as nginx's `auth_basic` sends it (quotes and
/// backslashes, which would end the quoted string, left out).
fn basic_challenge(realm: &str) -> String {
    let realm: String = realm
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect();
    format!("Basic realm=\"{realm}\"")
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
        assert_eq!(LocalError::Denied("x".into()).status(), 503);
        assert_eq!(LocalError::Forbidden.status(), 403);
        let r = LocalError::Unauthorized {
            realm: "a \"b\"".into(),
        }
        .response();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Basic realm=\"a b\"");
        let r = redirect("https://a.test/x?y");
        assert_eq!(r.status(), 308);
        assert_eq!(r.headers()[header::LOCATION], "https://a.test/x?y");
    }
}
