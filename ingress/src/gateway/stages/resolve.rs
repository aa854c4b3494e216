//! Stage 1, resolve: which route a request takes.
//!
//! The host is `:authority` (HTTP/2, or an HTTP/1.1 absolute-form target,
//! which overrides Host as RFC 9112 §3.2.2 says), else the single Host
//! header; an HTTP/1.1 request with none or several, or an HTTP/2 request
//! whose Host names another host than `:authority` (RFC 9113 §8.3.1), is
//! 400. An HTTP/1 target that carried a `#` is 400 ([`crate::gateway::wire`]
//! finds it: hyper cuts fragments off silently). The path goes through
//! [`crate::routes::normalize`] (refused → 400) and the normalized path is
//! looked up in the snapshot's route table: no rule and no default backend
//! → 404.

use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Version, header};

use crate::routes::{Backend, IngressRef, Lookup, NormalizedRequest, Reject, Route, normalize};

use crate::gateway::Snapshot;
use crate::gateway::access_log::AccessRecord;
use crate::gateway::errors::LocalError;
use crate::gateway::service::ConnCtx;
use crate::gateway::wire::Fingerprint;

/// A request's route: what the stages after [`resolve`] decide on.
#[derive(Debug)]
pub(crate) struct Resolved<'s> {
    /// The request's host as received (`:authority` or Host).
    pub(crate) host: String,
    /// The normalized path and the query as received.
    pub(crate) target: NormalizedRequest,
    /// The matched rule; `None` when the default backend applies. The
    /// per-route policy stages (ingress-nginx annotations) read their
    /// settings from it.
    #[allow(dead_code, reason = "read by the per-route policy stages")]
    pub(crate) rule: Option<&'s Route>,
    /// Where the request goes.
    pub(crate) backend: &'s Backend,
    /// The Ingress that routed it.
    pub(crate) ingress: &'s IngressRef,
    /// Whether the request host has a `spec.tls` entry.
    pub(crate) host_has_tls: bool,
    /// Whether a plain-HTTP request should be redirected to HTTPS (TLS
    /// host, and the Ingress did not opt out).
    pub(crate) wants_https: bool,
}

/// The request's host (see [`request_host`]), recorded in `record`.
pub(crate) fn host(head: &Parts, record: &mut AccessRecord) -> Result<String, LocalError> {
    let host = request_host(head)?;
    record.host.clone_from(&host);
    Ok(host)
}

/// Resolves the route of `head` (whose host is `host`) in `snapshot`,
/// writing path and Ingress into `record` as they become known (a refused
/// request is logged with what it sent).
pub(crate) fn route<'s>(
    snapshot: &'s Snapshot,
    conn: &ConnCtx,
    head: &Parts,
    host: String,
    record: &mut AccessRecord,
) -> Result<Resolved<'s>, LocalError> {
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
    let resolved = match snapshot.routing.table.lookup(&host, &target.path) {
        Lookup::Route(m) => Resolved {
            rule: Some(m.route),
            backend: &m.route.backend,
            ingress: &m.route.ingress,
            host_has_tls: m.tls.is_some(),
            wants_https: m.redirect_to_https(),
            host,
            target,
        },
        Lookup::Default(d) => Resolved {
            rule: None,
            backend: &d.backend,
            ingress: &d.ingress,
            host_has_tls: false,
            wants_https: false,
            host,
            target,
        },
        Lookup::NoRoute => return Err(LocalError::NoRoute),
    };
    record.ingress = resolved.ingress.to_string();
    Ok(resolved)
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
        let resolve = |h: &Parts, rec: &mut AccessRecord| {
            let host = host(h, rec)?;
            route(&snap, &conn, h, host, rec)
        };
        let mut rec = AccessRecord::default();
        let r = resolve(&head(Version::HTTP_11, "/x/../y?q", &["a.test"]), &mut rec).unwrap();
        assert_eq!(r.target.path.as_str(), "/y");
        assert_eq!(r.target.query.as_deref(), Some("q"));
        assert_eq!(r.ingress.to_string(), "ns/app");
        assert!(r.rule.is_some() && !r.host_has_tls && !r.wants_https);
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
