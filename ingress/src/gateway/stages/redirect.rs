//! Stage 2, redirect: the redirects route resolution decided, and HSTS.
//!
//! [`crate::routes::RouteTable::resolve`] decides every redirect — HTTP to
//! HTTPS for hosts with TLS (308; per Ingress `sluice.dev/ssl-redirect`, or
//! in ingress-nginx mode `ssl-redirect`/`force-ssl-redirect` and the
//! ConfigMap's `http-redirect-code`), `permanent-redirect` and
//! `temporal-redirect` with their codes, `app-root` (302),
//! `from-to-www-redirect`, a `rewrite-target` that is a URL (302) and
//! nginx's trailing-slash 301 — with its status and `Location`; this
//! stage answers it. The `Location` names the HTTPS port
//! ([`GatewayConfig::https_redirect_port`]) when it is not 443. HTTPS
//! responses for hosts with TLS carry HSTS ([`hsts`], applied by
//! [`super::finish`]).

use http::{HeaderValue, Response, StatusCode, header};

use crate::gateway::body::{GatewayBody, full};
use crate::gateway::config::GatewayConfig;
use crate::gateway::service::ConnCtx;
use crate::routes::Redirect;

use super::Resolved;

/// The answer to a redirect.
pub(crate) fn answer(r: &Redirect<'_>) -> Response<GatewayBody> {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::PERMANENT_REDIRECT);
    let mut resp = Response::new(full(format!("redirecting to {}\n", r.location)));
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(&r.location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The `Strict-Transport-Security` value for this request's response:
/// HTTPS, a host with TLS, and HSTS configured.
pub(crate) fn hsts<'c>(
    config: &'c GatewayConfig,
    conn: &ConnCtx,
    route: &Resolved<'_>,
) -> Option<&'c str> {
    config
        .hsts
        .as_deref()
        .filter(|_| conn.tls && route.host_has_tls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::RedirectReason;

    #[test]
    fn answers_carry_status_and_location() {
        let r = answer(&Redirect {
            status: 301,
            location: "https://a.test/x/?q".into(),
            reason: RedirectReason::TrailingSlash,
            route: None,
        });
        assert_eq!(r.status(), 301);
        assert_eq!(r.headers()[header::LOCATION], "https://a.test/x/?q");
        let r = answer(&Redirect {
            status: 308,
            location: "bad\nvalue".into(),
            reason: RedirectReason::Https,
            route: None,
        });
        assert_eq!(r.status(), 308);
        assert!(!r.headers().contains_key(header::LOCATION));
    }
}
