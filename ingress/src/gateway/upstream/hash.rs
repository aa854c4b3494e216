//! `upstream-hash-by`: consistent hashing of a request value over a pool's
//! endpoints.
//!
//! Rendezvous (highest random weight) hashing: each endpoint scores
//! `hash(key, endpoint)` and the highest wins, so a key keeps its endpoint
//! while that endpoint exists, and removing an endpoint moves only the keys
//! it had (adding one takes about 1/n of the keys). The hash has a fixed
//! seed: every replica maps a key the same way. Cost: one hash per
//! endpoint per request.

use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};

use foldhash::fast::FixedState;
use http::HeaderMap;

use super::Pool;
use crate::annotations::backend::{HashKey, HashPart};
use crate::gateway::proxy::request_cookie;

/// What a key is built from.
#[derive(Debug, Clone, Copy)]
pub struct KeySource<'a> {
    /// The request target as received (`$request_uri`).
    pub request_uri: &'a str,
    /// The normalized path (`$uri`).
    pub path: &'a str,
    /// The query string as received.
    pub query: Option<&'a str>,
    /// `$host`.
    pub host: &'a str,
    /// `$remote_addr`.
    pub remote: IpAddr,
    /// `$scheme`.
    pub scheme: &'a str,
    /// The request headers (`$http_*`, `$cookie_*`).
    pub headers: &'a HeaderMap,
}

/// The value of `key` for a request (a missing variable is empty, as in
/// nginx).
pub fn key_value(key: &HashKey, src: &KeySource<'_>) -> String {
    let mut out = String::new();
    for part in key.parts() {
        match part {
            HashPart::Literal(s) => out.push_str(s),
            HashPart::RequestUri => out.push_str(src.request_uri),
            HashPart::Uri => out.push_str(src.path),
            HashPart::Host => out.push_str(src.host),
            HashPart::RemoteAddr => out.push_str(&src.remote.to_string()),
            HashPart::Scheme => out.push_str(src.scheme),
            HashPart::Header(h) => {
                if let Some(v) = src.headers.get(h).and_then(|v| v.to_str().ok()) {
                    out.push_str(v);
                }
            }
            HashPart::Cookie(c) => {
                if let Some(v) = request_cookie(src.headers, c) {
                    out.push_str(v);
                }
            }
            HashPart::Arg(a) => {
                if let Some(v) = query_arg(src.query, a) {
                    out.push_str(v);
                }
            }
        }
    }
    out
}

/// The raw value of query parameter `name` (nginx's `$arg_NAME`: the first,
/// not decoded).
fn query_arg<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The endpoint of `pool` that `value` hashes to.
pub fn endpoint_for(pool: &Pool, value: &str) -> Option<SocketAddr> {
    let state = FixedState::with_seed(0x736c_7569_6365);
    pool.endpoints()
        .iter()
        .map(|e| e.addr())
        .max_by_key(|a| state.hash_one((value, a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values() {
        let mut headers = HeaderMap::new();
        headers.insert("x-user", "ann".parse().unwrap());
        headers.insert("cookie", "sid=42; a=1".parse().unwrap());
        let src = KeySource {
            request_uri: "/a/../b?id=7&x",
            path: "/b",
            query: Some("id=7&x"),
            host: "web.test",
            remote: "10.0.0.9".parse().unwrap(),
            scheme: "http",
            headers: &headers,
        };
        let k: HashKey = "$request_uri|$uri|$host|$remote_addr|$scheme|$http_x_user|$cookie_sid|$arg_id|$arg_x|$arg_none"
            .replace('|', "-")
            .parse()
            .unwrap();
        assert_eq!(
            key_value(&k, &src),
            "/a/../b?id=7&x-/b-web.test-10.0.0.9-http-ann-42-7--"
        );
    }
}
