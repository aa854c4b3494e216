//! CORS: `enable-cors` and `cors-*`, with ingress-nginx's semantics
//! (its `CORS` template) as a pure function of the request method and
//! `Origin` header: [`Cors::evaluate`].

use std::str::FromStr;

use super::reader::Reader;
use super::values::{ValueError, parse_bool, parse_int_in};

const DEFAULT_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
const DEFAULT_HEADERS: &str = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";
const DEFAULT_MAX_AGE: i64 = 1_728_000;

/// One allowed origin.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OriginPattern {
    /// The literal origin `null`.
    Null,
    /// `scheme://host[:port]`, the host possibly starting with `*.` (one
    /// label).
    Origin {
        /// Lower-case scheme.
        scheme: String,
        /// Whether the host starts with `*.`.
        wildcard: bool,
        /// The host (after `*.`), lower-case.
        host: String,
        /// The port, if given.
        port: Option<u16>,
    },
}

impl OriginPattern {
    /// Whether a request `Origin` value matches (case-insensitively, the
    /// whole value: ingress-nginx anchors only the end, Sluice both ends).
    pub fn matches(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        match self {
            Self::Null => origin == "null",
            Self::Origin {
                scheme,
                wildcard,
                host,
                port,
            } => {
                let Some(rest) = origin
                    .strip_prefix(scheme.as_str())
                    .and_then(|r| r.strip_prefix("://"))
                else {
                    return false;
                };
                let (h, p) = match rest.rsplit_once(':') {
                    Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
                    _ => (rest, None),
                };
                if p.map(|p| p.parse::<u16>().ok()) != port.map(Some) {
                    return false;
                }
                if *wildcard {
                    h.split_once('.').is_some_and(|(label, parent)| {
                        !label.is_empty()
                            && label
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                            && parent == host
                    })
                } else {
                    h == host
                }
            }
        }
    }
}

impl FromStr for OriginPattern {
    type Err = ValueError;

    /// ingress-nginx's `[a-z]+://(\*\.)?[A-Za-z0-9.-]*(:\d+)?` or `null`.
    fn from_str(s: &str) -> Result<Self, ValueError> {
        if s == "null" {
            return Ok(Self::Null);
        }
        let bad = || ValueError::Invalid(format!("{s:?} is not scheme://host[:port]"));
        let (scheme, rest) = s.split_once("://").ok_or_else(bad)?;
        if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(bad());
        }
        let (wildcard, rest) = match rest.strip_prefix("*.") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let (host, port) = match rest.split_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().map_err(|_| bad())?)),
            None => (rest, None),
        };
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(bad());
        }
        Ok(Self::Origin {
            scheme: scheme.to_owned(),
            wildcard,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// `cors-allow-origin`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AllowedOrigins {
    /// `*` (the default): every request gets `Access-Control-Allow-Origin: *`.
    Any,
    /// These origins; the request's `Origin` is echoed when it matches.
    List(Vec<OriginPattern>),
}

/// The CORS policy of an Ingress (`enable-cors: "true"`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cors {
    /// `cors-allow-origin`.
    pub origins: AllowedOrigins,
    /// `cors-allow-methods`, as written.
    pub allow_methods: String,
    /// `cors-allow-headers`, as written.
    pub allow_headers: String,
    /// `cors-allow-credentials`.
    pub allow_credentials: bool,
    /// `cors-expose-headers` (empty: not sent).
    pub expose_headers: String,
    /// `cors-max-age`, seconds.
    pub max_age: i64,
}

/// What CORS does to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsDecision {
    /// Not a CORS request this policy answers: nothing added.
    None,
    /// Add these headers to the response.
    Headers(Vec<(http::HeaderName, String)>),
    /// A preflight: answer 204 with these headers, without proxying.
    Preflight(Vec<(http::HeaderName, String)>),
}

impl Cors {
    /// Decides for a request. `origin` is its `Origin` header.
    pub fn evaluate(&self, method: &http::Method, origin: Option<&str>) -> CorsDecision {
        let allow_origin = match &self.origins {
            AllowedOrigins::Any => "*".to_owned(),
            AllowedOrigins::List(list) => match origin {
                Some(o) if list.iter().any(|p| p.matches(o)) => o.to_owned(),
                _ => return CorsDecision::None,
            },
        };
        use http::header as h;
        let mut headers = vec![(h::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin)];
        if self.allow_credentials {
            headers.push((h::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true".into()));
        }
        headers.push((h::ACCESS_CONTROL_ALLOW_METHODS, self.allow_methods.clone()));
        headers.push((h::ACCESS_CONTROL_ALLOW_HEADERS, self.allow_headers.clone()));
        if !self.expose_headers.is_empty() {
            headers.push((
                h::ACCESS_CONTROL_EXPOSE_HEADERS,
                self.expose_headers.clone(),
            ));
        }
        headers.push((h::ACCESS_CONTROL_MAX_AGE, self.max_age.to_string()));
        if method == http::Method::OPTIONS {
            headers.push((h::CONTENT_TYPE, "text/plain charset=UTF-8".into()));
            headers.push((h::CONTENT_LENGTH, "0".into()));
            CorsDecision::Preflight(headers)
        } else {
            CorsDecision::Headers(headers)
        }
    }

    pub(crate) fn parse(r: &mut Reader<'_>) -> Option<Self> {
        if !r.get_or("enable-cors", false, parse_bool) {
            return None;
        }
        let list_of = |re: fn(u8) -> bool, what: &'static str| {
            move |v: &str| {
                let v = v.trim();
                let ok = !v.is_empty()
                    && v.split(',').all(|p| {
                        let p = p.trim();
                        !p.is_empty() && p.bytes().all(re)
                    });
                if ok {
                    Ok(v.to_owned())
                } else {
                    Err(ValueError::Invalid(format!(
                        "want a comma-separated list of {what}"
                    )))
                }
            }
        };
        Some(Self {
            origins: r.get_or("cors-allow-origin", AllowedOrigins::Any, parse_origins),
            allow_methods: r.get_or(
                "cors-allow-methods",
                DEFAULT_METHODS.to_owned(),
                list_of(|b| b.is_ascii_alphabetic(), "methods"),
            ),
            allow_headers: r.get_or(
                "cors-allow-headers",
                DEFAULT_HEADERS.to_owned(),
                list_of(
                    |b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_',
                    "header names",
                ),
            ),
            allow_credentials: r.get_or("cors-allow-credentials", true, parse_bool),
            expose_headers: r.get_or(
                "cors-expose-headers",
                String::new(),
                list_of(
                    |b| b.is_ascii_alphanumeric() || b"-_*".contains(&b),
                    "header names",
                ),
            ),
            max_age: r.get_or("cors-max-age", DEFAULT_MAX_AGE, |v| {
                parse_int_in(v, 0, i64::MAX)
            }),
        })
    }
}

/// A comma-separated origin list; `*` anywhere means any.
fn parse_origins(s: &str) -> Result<AllowedOrigins, ValueError> {
    let mut list = Vec::new();
    for o in s.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        if o == "*" {
            return Ok(AllowedOrigins::Any);
        }
        list.push(o.parse()?);
    }
    if list.is_empty() {
        return Err(ValueError::Empty);
    }
    Ok(AllowedOrigins::List(list))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &str) -> Cors {
        Cors {
            origins: parse_origins(origins).unwrap(),
            allow_methods: DEFAULT_METHODS.into(),
            allow_headers: DEFAULT_HEADERS.into(),
            allow_credentials: true,
            expose_headers: String::new(),
            max_age: DEFAULT_MAX_AGE,
        }
    }

    #[test]
    fn origins_lists_and_wildcards() {
        let c = cors("https://a.com:4443, http://*.b.com, null");
        let AllowedOrigins::List(l) = &c.origins else {
            panic!()
        };
        assert_eq!(l.len(), 3);
        let m = |o| l.iter().any(|p| p.matches(o));
        assert!(m("https://a.com:4443") && m("HTTPS://A.COM:4443"));
        assert!(!m("https://a.com") && !m("https://a.com:4444"));
        assert!(m("http://x.b.com") && !m("http://x.y.b.com") && !m("http://b.com"));
        assert!(m("null"));
        assert!(!m("http://evilhttps://a.com:4443"), "anchored at both ends");
        assert!(parse_origins("a.com").is_err());
        assert_eq!(parse_origins("https://a.com,*"), Ok(AllowedOrigins::Any));
    }

    #[test]
    fn preflight_and_headers() {
        let any = cors("*");
        match any.evaluate(&http::Method::OPTIONS, None) {
            CorsDecision::Preflight(h) => {
                assert_eq!(
                    h[0],
                    (http::header::ACCESS_CONTROL_ALLOW_ORIGIN, "*".into())
                );
                assert!(
                    h.iter()
                        .any(|(n, v)| n == http::header::ACCESS_CONTROL_MAX_AGE && v == "1728000")
                );
            }
            d => panic!("{d:?}"),
        }
        let list = cors("https://a.com");
        assert_eq!(
            list.evaluate(&http::Method::OPTIONS, Some("https://c.com")),
            CorsDecision::None
        );
        match list.evaluate(&http::Method::GET, Some("https://a.com")) {
            CorsDecision::Headers(h) => assert_eq!(h[0].1, "https://a.com"),
            d => panic!("{d:?}"),
        }
    }
}
