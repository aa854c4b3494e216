//! External auth (`auth-url`): a subrequest to an auth service per
//! request, as ingress-nginx's `auth_request` location makes it.
//!
//! The subrequest goes to `auth-url` with `auth-method` (GET by default),
//! no body, the client's request headers (hop-by-hop and framing ones
//! out), and the headers ingress-nginx sets: `X-Original-URI`,
//! `X-Original-URL`, `X-Original-Method`, `X-Scheme`, `X-Real-IP`,
//! `X-Forwarded-For`, `X-Auth-Request-Redirect` (`auth-request-redirect`,
//! else the request URI), `X-Sent-From: nginx-ingress-controller`, and the
//! auth service's own Host. Its answer decides:
//!
//! * **2xx**: allowed. Each `auth-response-headers` header is taken from
//!   the answer and replaces the client's header of that name upstream;
//!   one the answer lacks is removed, so a client can never supply it
//!   itself (nginx sets it to the empty value, which sends nothing).
//! * **401**: with `auth-signin`, a 302 there (with the `rd` parameter,
//!   see [`crate::annotations::access::SigninUrl`]); else 401, with the
//!   auth service's `WWW-Authenticate`.
//! * **403**: 403.
//! * anything else, or no answer within the route's connect and read
//!   timeouts: 500.
//!
//! Only `http://` auth services are reached; an `https://` `auth-url`
//! answers 500 (never open) until the gateway has a TLS client for it.

use std::net::IpAddr;
use std::sync::OnceLock;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::annotations::IngressPolicy;
use crate::annotations::access::{ExternalAuth, SigninPart};
use crate::gateway::body::{GatewayBody, full};
use crate::gateway::errors::LocalError;
use crate::gateway::proxy::strip_hop_by_hop;
use crate::gateway::service::ConnCtx;

use super::Resolved;

/// Headers the auth service granted, for the upstream request.
#[derive(Debug, Default)]
pub(crate) struct Granted {
    /// Each `auth-response-headers` name, with the auth answer's value
    /// (`None`: the answer had none, the client's is removed).
    pub(crate) headers: Vec<(HeaderName, Option<HeaderValue>)>,
}

impl Granted {
    /// Applies the grant to the upstream request's headers.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.headers {
            headers.remove(name);
            if let Some(v) = value {
                headers.insert(name.clone(), v.clone());
            }
        }
    }
}

/// What the auth service decided.
pub(crate) enum AuthOutcome {
    /// Allowed.
    Granted(Granted),
    /// Redirect to `auth-signin`.
    Redirect(Response<GatewayBody>),
}

type AuthClient = Client<HttpConnector, Empty<Bytes>>;

/// One client for every auth subrequest (its pool keyed by the auth
/// service's authority).
fn client() -> &'static AuthClient {
    static CLIENT: OnceLock<AuthClient> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let mut c = HttpConnector::new();
        c.set_nodelay(true);
        Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .build(c)
    })
}

/// The request URI as the client sent it (`$request_uri`).
fn request_uri(head: &Parts) -> &str {
    head.uri
        .path_and_query()
        .map_or_else(|| head.uri.path(), |pq| pq.as_str())
}

/// Percent-encodes all but RFC 3986's unreserved characters (nginx's
/// `set_escape_uri`, which ingress-nginx's `$escaped_request_uri` is).
fn escape_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `auth-signin` URL for this request.
fn signin_location(
    parts: &[SigninPart],
    scheme: &str,
    route: &Resolved<'_>,
    head: &Parts,
) -> String {
    let host = crate::routes::host::normalize_request_host(&route.host).unwrap_or_default();
    let mut out = String::new();
    for p in parts {
        match p {
            SigninPart::Literal(l) => out.push_str(l),
            SigninPart::RequestUri => out.push_str(request_uri(head)),
            SigninPart::EscapedRequestUri => out.push_str(&escape_component(request_uri(head))),
            SigninPart::Scheme => out.push_str(scheme),
            SigninPart::Host => out.push_str(&host),
            SigninPart::HttpHost => out.push_str(&route.host),
        }
    }
    out
}

/// The subrequest (see the module docs).
fn subrequest(
    ext: &ExternalAuth,
    scheme: &str,
    route: &Resolved<'_>,
    head: &Parts,
    client: IpAddr,
) -> Result<Request<Empty<Bytes>>, LocalError> {
    let mut headers = head.headers.clone();
    strip_hop_by_hop(&mut headers, false);
    for h in [header::CONTENT_LENGTH, header::EXPECT, header::HOST] {
        headers.remove(h);
    }
    let uri = request_uri(head);
    let set = |headers: &mut HeaderMap, name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    set(&mut headers, "x-original-uri", uri);
    set(
        &mut headers,
        "x-original-url",
        &format!("{scheme}://{}{uri}", route.host),
    );
    set(&mut headers, "x-original-method", head.method.as_str());
    set(&mut headers, "x-scheme", scheme);
    set(&mut headers, "x-real-ip", &client.to_string());
    set(&mut headers, "x-forwarded-for", &client.to_string());
    set(&mut headers, "x-forwarded-host", &route.host);
    headers.remove("x-forwarded-proto");
    set(
        &mut headers,
        "x-auth-request-redirect",
        ext.request_redirect.as_deref().unwrap_or(uri),
    );
    set(&mut headers, "x-sent-from", "nginx-ingress-controller");
    if let Some(a) = ext.url.authority() {
        set(&mut headers, "host", a.as_str());
    }
    let mut req = Request::new(Empty::new());
    *req.method_mut() = if ext.method == Method::CONNECT {
        Method::GET
    } else {
        ext.method.clone()
    };
    *req.uri_mut() = ext.url.clone();
    *req.headers_mut() = headers;
    Ok(req)
}

/// Asks the auth service (see the module docs).
pub(crate) async fn ask(
    ext: &ExternalAuth,
    policy: &IngressPolicy,
    conn: &ConnCtx,
    route: &Resolved<'_>,
    head: &Parts,
    client_addr: IpAddr,
) -> Result<AuthOutcome, LocalError> {
    if ext.url.scheme_str() != Some("http") {
        tracing::warn!(url = %ext.url, "https auth-url is not supported yet; answering 500");
        return Err(LocalError::AuthFailed);
    }
    let scheme = if conn.tls { "https" } else { "http" };
    let req = subrequest(ext, scheme, route, head, client_addr)?;
    let limit =
        policy.limits.connect_timeout.as_duration() + policy.limits.read_timeout.as_duration();
    let answer = match tokio::time::timeout(limit, client().request(req)).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            tracing::debug!(url = %ext.url, error = %e, "auth subrequest failed");
            return Err(LocalError::AuthFailed);
        }
        Err(_) => {
            tracing::debug!(url = %ext.url, "auth subrequest timed out");
            return Err(LocalError::AuthFailed);
        }
    };
    let (parts, body) = answer.into_parts();
    // The body is not used; read it so the connection can be reused.
    tokio::spawn(async move {
        let _ = body.collect().await;
    });
    match parts.status {
        s if s.is_success() => Ok(AuthOutcome::Granted(Granted {
            headers: ext
                .response_headers
                .iter()
                .map(|n| (n.clone(), parts.headers.get(n).cloned()))
                .collect(),
        })),
        StatusCode::UNAUTHORIZED => match &ext.signin {
            Some(signin) => {
                let location = signin_location(&signin.parts, scheme, route, head);
                let mut r = Response::new(full(""));
                *r.status_mut() = StatusCode::FOUND;
                if let Ok(v) = HeaderValue::from_str(&location) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                Ok(AuthOutcome::Redirect(r))
            }
            None => Err(LocalError::AuthDenied {
                status: 401,
                www_authenticate: parts
                    .headers
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            }),
        },
        StatusCode::FORBIDDEN => Err(LocalError::AuthDenied {
            status: 403,
            www_authenticate: None,
        }),
        s => {
            tracing::debug!(url = %ext.url, status = %s, "auth service answered neither 2xx, 401 nor 403");
            Err(LocalError::AuthFailed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(escape_component("/a b?x=1&y"), "%2Fa%20b%3Fx%3D1%26y");
        assert_eq!(escape_component("AZaz09-._~"), "AZaz09-._~");
    }

    #[test]
    fn grants_replace_and_remove() {
        let g = Granted {
            headers: vec![
                (
                    HeaderName::from_static("x-user"),
                    Some(HeaderValue::from_static("alice")),
                ),
                (HeaderName::from_static("x-groups"), None),
            ],
        };
        let mut h = HeaderMap::new();
        h.insert("x-user", HeaderValue::from_static("mallory"));
        h.insert("x-groups", HeaderValue::from_static("admin"));
        g.apply(&mut h);
        assert_eq!(h["x-user"], "alice");
        assert!(!h.contains_key("x-groups"));
    }
}
