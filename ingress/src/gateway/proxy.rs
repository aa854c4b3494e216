//! Header rewriting between client and upstream.
//!
//! * Hop-by-hop headers are removed in both directions: `Connection` and
//!   every header it names, `Keep-Alive`, `Proxy-*`, `TE` (except
//!   `TE: trailers`, which gRPC needs end to end), `Trailer`,
//!   `Transfer-Encoding`, and `Upgrade` unless the exchange is an upgrade.
//!   `Content-Length` is dropped from requests: hyper re-frames the body
//!   from its real length, so no framing header from the client reaches
//!   the upstream. `Expect` is dropped too (hyper already answered it).
//! * `X-Forwarded-For`, `-Proto`, `-Host`, `-Port` and `X-Real-IP`: from a
//!   trusted peer (see [`TrustedProxies`]) the incoming values are kept
//!   and the peer is appended to `X-Forwarded-For`; `X-Real-IP` is then
//!   the right-most untrusted address of that chain. From anyone else they
//!   are replaced, and `Forwarded` is removed.
//! * Header names with `_` are dropped unless allowed (nginx's
//!   `underscores_in_headers off`): a CGI/WSGI backend would read
//!   `X_Forwarded_For` as `X-Forwarded-For`.
//! * `Host` and `X-Forwarded-Host` carry the normalized host ([`upstream_host`]).
//! * Only `websocket` and configured `Upgrade` protocols make an upgrade
//!   ([`is_upgrade`]); anything else goes as a plain request without its
//!   `Upgrade` header (no `h2c` smuggling).

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::config::{TrustedProxies, canonical_ip};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Whether a request asks for a protocol upgrade the gateway tunnels:
/// `Connection: upgrade`, and an `Upgrade` header every offered protocol
/// of which is `websocket` or one of `allowed` (lower case). Offering one
/// other protocol is enough to refuse the upgrade: the backend might
/// pick it.
pub fn is_upgrade(headers: &HeaderMap, allowed: &[String]) -> bool {
    let mut offered = headers
        .get_all(header::UPGRADE)
        .iter()
        .flat_map(tokens)
        .peekable();
    offered.peek().is_some()
        && offered.all(|t| {
            t.eq_ignore_ascii_case("websocket") || allowed.iter().any(|a| t.eq_ignore_ascii_case(a))
        })
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case("upgrade")))
}

/// Removes the headers whose names contain `_`.
pub fn drop_underscored(headers: &mut HeaderMap) {
    if !headers.keys().any(|k| k.as_str().contains('_')) {
        return;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().contains('_'))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}

/// The host sent upstream, as ingress-nginx's `$host` spells it: lower
/// case, no trailing dot, no port when it is the scheme's default (80 for
/// plain HTTP, 443 for HTTPS). `None` when `raw` is no valid host (the
/// header then goes as received).
pub fn upstream_host(raw: &str, tls: bool) -> Option<String> {
    let host = crate::routes::host::normalize_request_host(raw)?;
    let port = match raw.rfind(']') {
        Some(end) => raw[end + 1..].strip_prefix(':'),
        None => raw.rsplit_once(':').map(|(_, p)| p),
    };
    let default = if tls { 443 } else { 80 };
    Some(match port.and_then(|p| p.parse::<u16>().ok()) {
        Some(p) if p != default => format!("{host}:{p}"),
        _ => host,
    })
}

fn tokens(v: &HeaderValue) -> impl Iterator<Item = &str> {
    v.to_str()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop headers. With `upgrade`, `Upgrade` is kept and
/// `Connection: upgrade` is (re)set.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(tokens)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for n in named {
        if upgrade && n == header::UPGRADE {
            continue;
        }
        // `TE: trailers` is handled below, whatever Connection says.
        if n != header::TE {
            headers.remove(n);
        }
    }
    let te_trailers = headers.get_all(header::TE).iter().count() == 1
        && headers
            .get(header::TE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if !te_trailers {
        headers.remove(header::TE);
    }
    for n in [
        header::CONNECTION,
        KEEP_ALIVE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
    ] {
        headers.remove(n);
    }
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for n in proxy {
        headers.remove(n);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// What the gateway knows about the client side of a request.
#[derive(Debug, Clone, Copy)]
pub struct ClientSide<'a> {
    /// The TCP peer.
    pub peer: IpAddr,
    /// `"http"` or `"https"`.
    pub scheme: &'static str,
    /// The request's Host / `:authority`, as received.
    pub host: &'a str,
    /// The listener port the client connected to.
    pub port: u16,
}

/// Sets `X-Forwarded-*` and `X-Real-IP` (see the module docs).
pub fn set_forwarded(headers: &mut HeaderMap, client: &ClientSide<'_>, trusted: &TrustedProxies) {
    let peer = canonical_ip(client.peer);
    let peer_s = peer.to_string();
    if !trusted.is_empty() && trusted.contains(peer) {
        let mut chain: Vec<String> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .flat_map(tokens)
            .map(str::to_owned)
            .collect();
        chain.push(peer_s);
        let real = chain
            .iter()
            .rev()
            .find(|a| !a.parse::<IpAddr>().is_ok_and(|ip| trusted.contains(ip)))
            .unwrap_or(&chain[0])
            .clone();
        set(headers, X_FORWARDED_FOR, &chain.join(", "));
        set(headers, X_REAL_IP, &real);
        set_if_absent(headers, X_FORWARDED_PROTO, client.scheme);
        set_if_absent(headers, X_FORWARDED_HOST, client.host);
        set_if_absent(headers, X_FORWARDED_PORT, &client.port.to_string());
    } else {
        headers.remove(FORWARDED);
        set(headers, X_FORWARDED_FOR, &peer_s);
        set(headers, X_REAL_IP, &peer_s);
        set(headers, X_FORWARDED_PROTO, client.scheme);
        set(headers, X_FORWARDED_HOST, client.host);
        set(headers, X_FORWARDED_PORT, &client.port.to_string());
    }
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(v) => {
            headers.insert(name, v);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

fn set_if_absent(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if !headers.contains_key(&name) {
        set(headers, name, value);
    }
}

/// Prepares request headers for the upstream: names with `_` dropped
/// unless `allow_underscores`, hop-by-hop and framing headers removed,
/// `Host` set to `client.host`, forwarding headers set.
pub fn rewrite_request_headers(
    headers: &mut HeaderMap,
    client: &ClientSide<'_>,
    trusted: &TrustedProxies,
    upgrade: bool,
    allow_underscores: bool,
) {
    if !allow_underscores {
        drop_underscored(headers);
    }
    strip_hop_by_hop(headers, upgrade);
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::EXPECT);
    if !client.host.is_empty() {
        set(headers, header::HOST, client.host);
    }
    set_forwarded(headers, client, trusted);
}

/// The value of the request cookie `name` (the first one, across every
/// `Cookie` header), as nginx's `$cookie_NAME` reads it.
pub fn request_cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn hop_by_hop_removed() {
        let mut m = h(&[
            ("connection", "keep-alive, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-keep", "1"),
        ]);
        strip_hop_by_hop(&mut m, false);
        let names: Vec<&str> = m.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-keep"]);
    }

    #[test]
    fn te_trailers_and_upgrade_kept() {
        let mut m = h(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
        ]);
        assert!(is_upgrade(&m, &[]));
        strip_hop_by_hop(&mut m, true);
        assert_eq!(m["upgrade"], "websocket");
        assert_eq!(m["connection"], "upgrade");
        assert_eq!(m["te"], "trailers");
        assert!(!is_upgrade(&h(&[("upgrade", "websocket")]), &[]));
    }

    #[test]
    fn only_allowed_upgrade_protocols() {
        let up = |p: &str| h(&[("connection", "keep-alive, Upgrade"), ("upgrade", p)]);
        let extra = ["foo/2".to_owned()];
        assert!(is_upgrade(&up("WebSocket"), &[]));
        assert!(!is_upgrade(&up("h2c"), &[]));
        assert!(!is_upgrade(&up("websocket, h2c"), &[]));
        assert!(!is_upgrade(&up("foo/2"), &[]));
        assert!(is_upgrade(&up("foo/2, websocket"), &extra));
        assert!(!is_upgrade(&up(""), &extra));
    }

    #[test]
    fn underscored_names_dropped() {
        let mut m = h(&[("x_real_ip", "6.6.6.6"), ("x-real-ip", "1"), ("a_b", "2")]);
        drop_underscored(&mut m);
        let names: Vec<&str> = m.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-real-ip"]);
    }

    #[test]
    fn upstream_hosts() {
        for (raw, tls, want) in [
            ("ApP.tEsT.:80", false, Some("app.test")),
            ("app.test:443", true, Some("app.test")),
            ("app.test:443", false, Some("app.test:443")),
            ("APP.test:8080", false, Some("app.test:8080")),
            ("app.test.", true, Some("app.test")),
            ("[::1]:80", false, Some("[::1]")),
            ("[::1]:81", false, Some("[::1]:81")),
            ("bad host", false, None),
        ] {
            assert_eq!(upstream_host(raw, tls).as_deref(), want, "{raw}");
        }
    }

    fn client(peer: &str) -> ClientSide<'static> {
        ClientSide {
            peer: peer.parse().unwrap(),
            scheme: "https",
            host: "a.test",
            port: 443,
        }
    }

    #[test]
    fn forwarded_replaced_for_untrusted_peers() {
        let mut m = h(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "http"),
            ("x-real-ip", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4"),
        ]);
        set_forwarded(&mut m, &client("203.0.113.9"), &TrustedProxies::default());
        assert_eq!(m["x-forwarded-for"], "203.0.113.9");
        assert_eq!(m["x-real-ip"], "203.0.113.9");
        assert_eq!(m["x-forwarded-proto"], "https");
        assert_eq!(m["x-forwarded-host"], "a.test");
        assert_eq!(m["x-forwarded-port"], "443");
        assert!(!m.contains_key("forwarded"));
    }

    #[test]
    fn forwarded_appended_for_trusted_peers() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let mut m = h(&[
            ("x-forwarded-for", "198.51.100.7, 10.1.1.1"),
            ("x-forwarded-proto", "https"),
        ]);
        set_forwarded(&mut m, &client("::ffff:10.0.0.2"), &trusted);
        assert_eq!(m["x-forwarded-for"], "198.51.100.7, 10.1.1.1, 10.0.0.2");
        assert_eq!(m["x-real-ip"], "198.51.100.7");
        assert_eq!(m["x-forwarded-proto"], "https");
        // Trusted peer without incoming headers.
        let mut m = HeaderMap::new();
        set_forwarded(&mut m, &client("10.0.0.2"), &trusted);
        assert_eq!(m["x-forwarded-for"], "10.0.0.2");
        assert_eq!(m["x-real-ip"], "10.0.0.2");
    }

    #[test]
    fn request_rewrite_sets_host_and_drops_framing() {
        let mut m = h(&[
            ("host", "evil.test"),
            ("content-length", "5"),
            ("expect", "100-continue"),
        ]);
        rewrite_request_headers(
            &mut m,
            &client("192.0.2.1"),
            &TrustedProxies::default(),
            false,
            false,
        );
        assert_eq!(m["host"], "a.test");
        assert!(!m.contains_key("content-length"));
        assert!(!m.contains_key("expect"));
    }

    #[test]
    fn request_cookies() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; canary=always"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2;canary=never"));
        assert_eq!(request_cookie(&h, "canary"), Some("always"));
        assert_eq!(request_cookie(&h, "b"), Some("2"));
        assert_eq!(request_cookie(&h, "c"), None);
    }
}
