//! Stage 1, resolve: which route a request takes, and what to do with it.
//!
//! The host is `:authority` (HTTP/2, or an HTTP/1.1 absolute-form target,
//! which overrides Host as RFC 9112 §3.2.2 says), else the single Host
//! header; an HTTP/1.1 request with none or several, or an HTTP/2 request
//! whose Host names another host than `:authority` (RFC 9113 §8.3.1), is
//! 400. An HTTP/1 target that carried a `#` is 400 ([`crate::gateway::wire`]
//! finds it: hyper cuts fragments off silently). The path goes through
//! [`crate::routes::normalize`] (refused → 400) and the snapshot's route
//! table resolves the request ([`crate::routes::RouteTable::resolve`]): a
//! redirect or a CORS preflight is answered here ([`super::redirect`]), a
//! denied route is 503 (fail closed), no rule and no default backend is
//! 404, and a forward carries the upstream path, Host, `X-Forwarded-Prefix`
//! and CORS headers the later stages apply. With the gateway's HTTPS
//! redirect off ([`GatewayConfig::ssl_redirect`]), a request the table
//! would send to HTTPS is resolved as if it had come over HTTPS.

use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Response, Version, header};

use crate::annotations::IngressPolicy;
use crate::routes::{
    Backend, Forward, NormalizedRequest, RedirectReason, Reject, RequestFacts, Resolution, Scheme,
    normalize,
};

use crate::gateway::Snapshot;
use crate::gateway::access_log::AccessRecord;
use crate::gateway::body::GatewayBody;
use crate::gateway::config::GatewayConfig;
use crate::gateway::errors::LocalError;
use crate::gateway::service::ConnCtx;
use crate::gateway::wire::Fingerprint;

use super::redirect;

/// A request's route: what the stages after [`route`] decide on.
#[derive(Debug)]
pub(crate) struct Resolved<'a> {
    /// The request's host as received (`:authority` or Host).
    pub(crate) host: String,
    /// The normalized path and the query as received.
    pub(crate) target: &'a NormalizedRequest,
    /// The rule's ingress-nginx policy, in ingress-nginx mode (the
    /// per-route stages read their settings from it); `None` for the
    /// default backend and in the Ingress specification's mode.
    pub(crate) policy: Option<&'a IngressPolicy>,
    /// Where the request goes.
    pub(crate) backend: &'a Backend,
    /// Whether the request host has a `spec.tls` entry.
    pub(crate) host_has_tls: bool,
    /// What resolution decided for the upstream request (path, Host,
    /// `X-Forwarded-Prefix`, CORS headers); `None` for the default backend.
    pub(crate) forward: Option<Forward<'a>>,
}

/// What [`route`] found: a route, or the answer itself.
pub(crate) enum Routed<'a> {
    /// Go on with the stages.
    Route(Resolved<'a>),
    /// A redirect or a CORS preflight answer.
    Answer(Response<GatewayBody>),
}

/// The request's host (see [`request_host`]), recorded in `record`.
pub(crate) fn host(head: &Parts, record: &mut AccessRecord) -> Result<String, LocalError> {
    let host = request_host(head)?;
    record.host.clone_from(&host);
    Ok(host)
}

/// The normalized target of `head`, recorded in `record` (a refused one
/// is logged as sent).
pub(crate) fn target(
    conn: &ConnCtx,
    head: &Parts,
    record: &mut AccessRecord,
) -> Result<NormalizedRequest, LocalError> {
    let raw = head
        .uri
        .path_and_query()
        .map_or_else(|| head.uri.path(), PathAndQuery::as_str);
    record.path = raw.to_owned();
    if let Some(f) = conn.state.take_fragment()
        && f == fragment_fingerprint(head)
    {
        return Err(LocalError::BadPath(Reject::InvalidCharacter(b'#')));
    }
    let target = normalize(raw).map_err(LocalError::BadPath)?;
    record.path = target.path.as_str().to_owned();
    Ok(target)
}

/// Resolves `head` (whose host is `host`, whose target is `target`) in
/// `snapshot`, writing the Ingress into `record`.
pub(crate) fn route<'a>(
    snapshot: &'a Snapshot,
    config: &GatewayConfig,
    conn: &ConnCtx,
    head: &Parts,
    host: String,
    target: &'a NormalizedRequest,
    record: &mut AccessRecord,
) -> Result<Routed<'a>, LocalError> {
    let table = &snapshot.routing.table;
    let origin = head
        .headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    let mut facts = RequestFacts {
        scheme: if conn.tls {
            Scheme::Https
        } else {
            Scheme::Http
        },
        host: &host,
        server_port: conn.local.port(),
        https_port: config.https_redirect_port.unwrap_or(443),
        method: &head.method,
        origin,
    };
    let mut resolution = table.resolve(&facts, target);
    if let Resolution::Redirect(r) = &resolution
        && r.reason == RedirectReason::Https
        && !config.ssl_redirect
    {
        facts.scheme = Scheme::Https;
        resolution = table.resolve(&facts, target);
    }
    let (rule, backend, ingress, host_has_tls, forward) = match resolution {
        Resolution::Redirect(r) => {
            if let Some(route) = r.route {
                record.ingress = route.ingress.to_string();
            }
            return Ok(Routed::Answer(redirect::answer(&r)));
        }
        Resolution::Preflight { route, headers } => {
            record.ingress = route.ingress.to_string();
            return Ok(Routed::Answer(super::cors::preflight(&headers)));
        }
        Resolution::Deny { route, denials } => {
            record.ingress = route.ingress.to_string();
            let why = denials
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            return Err(LocalError::Denied(why));
        }
        Resolution::Forward(f) => (
            Some(f.route),
            &f.route.backend,
            &f.route.ingress,
            f.tls.is_some(),
            Some(f),
        ),
        Resolution::Default(d) => (None, &d.backend, &d.ingress, false, None),
        Resolution::NoRoute => return Err(LocalError::NoRoute),
    };
    record.ingress = ingress.to_string();
    let policy = rule
        .filter(|_| table.is_ingress_nginx())
        .map(|r| r.policy.as_ref());
    Ok(Routed::Route(Resolved {
        host,
        target,
        policy,
        backend,
        host_has_tls,
        forward,
    }))
}

/// The fingerprint [`crate::gateway::wire::RequestLineScan`] takes of a
/// request line whose target carried a `#` after what hyper kept of it.
fn fragment_fingerprint(head: &Parts) -> u64 {
    let method = head.method.as_str().as_bytes();
    match (head.uri.scheme(), head.uri.path_and_query()) {
        (None, Some(pq)) => Fingerprint::of(method, pq.as_str().as_bytes()),
        _ => Fingerprint::of(method, head.uri.to_string().as_bytes()),
    }
}

/// The request's host (see the module docs).
pub(crate) fn request_host(head: &Parts) -> Result<String, LocalError> {
    if let Some(a) = head.uri.authority() {
        if head.version == Version::HTTP_2
            && let Some(h) = head.headers.get(header::HOST)
            && !h.as_bytes().eq_ignore_ascii_case(a.as_str().as_bytes())
        {
            return Err(LocalError::BadHost);
        }
        return Ok(a.as_str().to_owned());
    }
    let mut hosts = head.headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(h), None) => h
            .to_str()
            .map(str::to_owned)
            .map_err(|_| LocalError::BadHost),
        (None, _) if head.version != Version::HTTP_11 => Ok(String::new()),
        _ => Err(LocalError::BadHost),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn head(version: Version, uri: &str, hosts: &[&str]) -> Parts {
        let mut b = Request::get(uri).version(version);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn host_sources() {
        let h11 = Version::HTTP_11;
        assert_eq!(
            request_host(&head(h11, "/", &["a.test"])).unwrap(),
            "a.test"
        );
        assert_eq!(request_host(&head(h11, "/", &[])), Err(LocalError::BadHost));
        assert_eq!(
            request_host(&head(h11, "/", &["a.test", "b.test"])),
            Err(LocalError::BadHost)
        );
        // Absolute form overrides Host.
        assert_eq!(
            request_host(&head(h11, "http://b.test/x", &["a.test"])).unwrap(),
            "b.test"
        );
        // HTTP/1.0 may omit Host.
        assert_eq!(request_host(&head(Version::HTTP_10, "/", &[])).unwrap(), "");
        // HTTP/2: Host must agree with :authority.
        let h2 = Version::HTTP_2;
        assert_eq!(
            request_host(&head(h2, "http://a.test/", &["A.TEST"])).unwrap(),
            "a.test"
        );
        assert_eq!(
            request_host(&head(h2, "http://a.test/", &["b.test"])),
            Err(LocalError::BadHost)
        );
    }

    #[test]
    fn resolves_routes_and_refuses_what_it_cannot_route() {
        let ing: k8s_openapi::api::networking::v1::Ingress =
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": "ns", "name": "app",
                             "creationTimestamp": "2024-01-01T00:00:00Z"},
                "spec": {"rules": [{"host": "a.test", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}
            }))
            .unwrap();
        let routing = crate::gateway::Routing {
            table: std::sync::Arc::new(crate::routes::build(&[ing]).table),
            ..Default::default()
        };
        let snap = crate::gateway::Snapshot::bind(routing, &Default::default());
        let conn = ConnCtx {
            peer: "127.0.0.1:1".parse().unwrap(),
            local: "127.0.0.1:80".parse().unwrap(),
            tls: false,
            sni: None,
            state: std::sync::Arc::new(crate::gateway::server::ConnState::new()),
        };
        let config = GatewayConfig::default();
        // (path, query, ingress, has a forward, host has TLS).
        type Summary = (String, Option<String>, String, bool, bool);
        let resolve = |h: &Parts, rec: &mut AccessRecord| -> Result<Summary, LocalError> {
            let host = host(h, rec)?;
            let t = target(&conn, h, rec)?;
            match route(&snap, &config, &conn, h, host, &t, rec)? {
                Routed::Route(r) => Ok((
                    r.target.path.as_str().to_owned(),
                    r.target.query.clone(),
                    rec.ingress.clone(),
                    r.forward.is_some(),
                    r.host_has_tls,
                )),
                Routed::Answer(a) => panic!("answered {}", a.status()),
            }
        };
        let mut rec = AccessRecord::default();
        let r = resolve(&head(Version::HTTP_11, "/x/../y?q", &["a.test"]), &mut rec).unwrap();
        assert_eq!(
            r,
            ("/y".into(), Some("q".into()), "ns/app".into(), true, false)
        );
        assert_eq!((rec.host.as_str(), rec.path.as_str()), ("a.test", "/y"));

        let mut rec = AccessRecord::default();
        let e = resolve(&head(Version::HTTP_11, "/a%2Fb", &["a.test"]), &mut rec);
        assert!(matches!(e, Err(LocalError::BadPath(_))));
        assert_eq!(rec.path, "/a%2Fb", "a refused path is logged as sent");
        let e = resolve(&head(Version::HTTP_11, "/", &["b.test"]), &mut rec);
        assert!(matches!(e, Err(LocalError::NoRoute)));

        // The request whose line had a `#` (as the IO scanner saw it) is
        // refused; another one is not.
        conn.state.set_fragment(Fingerprint::of(b"GET", b"/a?q"));
        let e = resolve(&head(Version::HTTP_11, "/b", &["a.test"]), &mut rec);
        assert!(e.is_ok(), "{e:?}");
        conn.state.set_fragment(Fingerprint::of(b"GET", b"/a?q"));
        let e = resolve(&head(Version::HTTP_11, "/a?q", &["a.test"]), &mut rec);
        assert_eq!(
            e.err(),
            Some(LocalError::BadPath(Reject::InvalidCharacter(b'#')))
        );
    }
}
