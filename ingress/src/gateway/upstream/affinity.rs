//! Cookie session affinity (`affinity: cookie`): which endpoint a
//! request's session cookie names, and the cookie a response sets.
//!
//! The cookie's value is the MD5 (hex) of the endpoint's `ip:port`, so any
//! gateway replica reads it the same way and nothing is stored. A request
//! whose cookie names an endpoint of the pool goes there first; one without
//! (no cookie, or its endpoint is gone) is balanced as usual and its
//! response sets the cookie for the endpoint that answered. When the
//! session's endpoint failed and another answered, the cookie moves to the
//! new endpoint only with `session-cookie-change-on-failure` (otherwise
//! the next request tries the session's endpoint again, as in
//! ingress-nginx).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue};
use md5::{Digest as _, Md5};

use super::Pool;
use crate::annotations::affinity::{CookieAffinity, SameSite};
use crate::gateway::proxy::request_cookie;

/// What a request's session cookie says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// The endpoint the cookie names, when it is one of the pool's.
    pub prefer: Option<SocketAddr>,
}

impl Session {
    /// Reads the session cookie of `headers` against `pool`.
    pub fn read(affinity: &CookieAffinity, headers: &HeaderMap, pool: &Pool) -> Self {
        let prefer = request_cookie(headers, affinity.name.as_str()).and_then(|v| {
            pool.endpoints()
                .iter()
                .map(|e| e.addr())
                .find(|a| cookie_value(*a) == v)
        });
        Self { prefer }
    }

    /// The `Set-Cookie` of a response from `endpoint`, when one is due (no
    /// valid session yet, or it moved under `change_on_failure`).
    /// `rule_path` is the cookie's path unless `session-cookie-path` is set.
    pub fn set_cookie(
        &self,
        affinity: &CookieAffinity,
        endpoint: SocketAddr,
        rule_path: &str,
    ) -> Option<HeaderValue> {
        let due = match self.prefer {
            None => true,
            Some(p) => p != endpoint && affinity.change_on_failure,
        };
        due.then(|| set_cookie(affinity, endpoint, rule_path, SystemTime::now()))
            .flatten()
    }
}

/// The cookie value naming `addr`.
pub fn cookie_value(addr: SocketAddr) -> String {
    let digest = Md5::digest(addr.to_string().as_bytes());
    let mut hex = String::with_capacity(32);
    for b in digest {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// The `Set-Cookie` value: name, value, `Path`, `Domain`, `Expires`,
/// `Max-Age`, `Secure`, `HttpOnly` (always, as ingress-nginx), `SameSite`.
fn set_cookie(
    a: &CookieAffinity,
    endpoint: SocketAddr,
    rule_path: &str,
    now: SystemTime,
) -> Option<HeaderValue> {
    let path = match &a.path {
        Some(p) => p.as_str(),
        None if cookie_safe(rule_path) => rule_path,
        None => "/",
    };
    let mut v = format!("{}={}; Path={path}", a.name, cookie_value(endpoint));
    if let Some(d) = &a.domain {
        let _ = write!(v, "; Domain={d}");
    }
    if let Some(secs) = a.expires_secs.and_then(|s| u64::try_from(s).ok()) {
        let at = now + Duration::from_secs(secs);
        let _ = write!(v, "; Expires={}", httpdate::fmt_http_date(at));
    }
    if let Some(secs) = a.max_age_secs {
        let _ = write!(v, "; Max-Age={secs}");
    }
    if a.secure {
        v.push_str("; Secure");
    }
    v.push_str("; HttpOnly");
    match a.same_site {
        Some(SameSite::None) => v.push_str("; SameSite=None"),
        Some(SameSite::Lax) => v.push_str("; SameSite=Lax"),
        Some(SameSite::Strict) => v.push_str("; SameSite=Strict"),
        None => {}
    }
    HeaderValue::from_str(&v).ok()
}

/// Whether a rule path can be a cookie path as it is (a regex path
/// cannot: the cookie then covers `/`).
fn cookie_safe(p: &str) -> bool {
    p.starts_with('/')
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~/".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn affinity() -> CookieAffinity {
        CookieAffinity {
            mode: Default::default(),
            canary_behavior: Default::default(),
            name: "sticky".parse().unwrap(),
            path: None,
            domain: None,
            expires_secs: Some(60),
            max_age_secs: Some(120),
            same_site: Some(SameSite::Lax),
            conditional_same_site_none: false,
            secure: true,
            change_on_failure: false,
        }
    }

    #[test]
    fn cookie_attributes() {
        let ep: SocketAddr = "10.0.0.1:8080".parse().unwrap();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let v = set_cookie(&affinity(), ep, "/app", at).unwrap();
        assert_eq!(
            v.to_str().unwrap(),
            format!(
                "sticky={}; Path=/app; Expires=Sun, 09 Sep 2001 01:47:40 GMT; Max-Age=120; \
                 Secure; HttpOnly; SameSite=Lax",
                cookie_value(ep)
            )
        );
        let v = set_cookie(&affinity(), ep, "/api/(.*)", at).unwrap();
        assert!(v.to_str().unwrap().contains("; Path=/;"));
        assert_eq!(cookie_value(ep).len(), 32);
    }

    #[test]
    fn due_only_without_a_session_or_when_it_moved_under_change_on_failure() {
        let (a, b): (SocketAddr, SocketAddr) = (
            "10.0.0.1:80".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap(),
        );
        let mut aff = affinity();
        let none = Session { prefer: None };
        let on_a = Session { prefer: Some(a) };
        assert!(none.set_cookie(&aff, a, "/").is_some());
        assert!(on_a.set_cookie(&aff, a, "/").is_none());
        assert!(on_a.set_cookie(&aff, b, "/").is_none());
        aff.change_on_failure = true;
        assert!(on_a.set_cookie(&aff, b, "/").is_some());
        assert!(on_a.set_cookie(&aff, a, "/").is_none());
    }
}
