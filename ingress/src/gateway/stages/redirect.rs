//! Stage 2, redirect: HTTPS for hosts with TLS.
//!
//! A plain-HTTP request to a host with a `spec.tls` entry gets a 308 to
//! the same path and query over HTTPS, unless the Ingress opted out
//! (`sluice.dev/ssl-redirect: "false"`) or redirects are off
//! ([`GatewayConfig::ssl_redirect`]). The `Location` names the normalized
//! host, the configured HTTPS port when it is not 443, and the normalized
//! path. HTTPS responses for such hosts carry HSTS ([`hsts`], applied by
//! [`super::finish`]).

use http::Response;

use crate::gateway::body::GatewayBody;
use crate::gateway::config::GatewayConfig;
use crate::gateway::errors::redirect;
use crate::gateway::service::ConnCtx;
use crate::routes::NormalizedRequest;
use crate::routes::host::normalize_request_host;

use super::Resolved;

/// The 308 to HTTPS, when this request gets one.
pub(crate) fn to_https(
    config: &GatewayConfig,
    conn: &ConnCtx,
    route: &Resolved<'_>,
) -> Option<Response<GatewayBody>> {
    if conn.tls || !route.wants_https || !config.ssl_redirect {
        return None;
    }
    let loc = location(&route.host, config.https_redirect_port, &route.target)?;
    Some(redirect(&loc))
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

/// `https://host[:port]/path[?query]`; `None` when the host is not a
/// valid host name (then no redirect is made).
fn location(host: &str, port: Option<u16>, target: &NormalizedRequest) -> Option<String> {
    let host = normalize_request_host(host)?;
    let mut loc = format!("https://{host}");
    if let Some(p) = port.filter(|p| *p != 443) {
        loc.push_str(&format!(":{p}"));
    }
    loc.push_str(target.path.as_str());
    if let Some(q) = &target.query {
        loc.push('?');
        loc.push_str(q);
    }
    Some(loc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::normalize;

    #[test]
    fn locations() {
        let t = normalize("/a/../b?x=1").unwrap();
        assert_eq!(
            location("App.Test.:80", None, &t).as_deref(),
            Some("https://app.test/b?x=1")
        );
        assert_eq!(
            location("app.test", Some(8443), &t).as_deref(),
            Some("https://app.test:8443/b?x=1")
        );
        assert_eq!(
            location("app.test", Some(443), &normalize("/").unwrap()).as_deref(),
            Some("https://app.test/")
        );
        assert_eq!(location("bad host", None, &t), None);
    }
}
