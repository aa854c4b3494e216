//! Rule hosts, wildcards and request hosts.
//!
//! * A precise rule host (`foo.com`) matches a request host equal to it,
//!   compared case-insensitively after the port and one trailing dot are
//!   removed from the request's Host header or `:authority`.
//! * A wildcard rule host (`*.foo.com`) matches exactly one extra leftmost
//!   label: `bar.foo.com` yes; `baz.bar.foo.com` and `foo.com` no.
//! * A rule without a host matches any host, including requests without a
//!   usable Host header and requests to an IP address.
//!
//! Host selection happens before path matching and does not fall through:
//! if the request host has precise rules, only those are considered; else
//! if a wildcard covers it, only the wildcard's rules; else the host-less
//! rules. This is how ingress-nginx (one nginx `server` per host, exact
//! `server_name` before wildcard before the catch-all) and Envoy-based
//! controllers (virtual hosts) behave. A path that misses inside the
//! selected host goes to the default backend.
//!
//! Rule hosts are validated as the API server does (DNS-1123 subdomain, an
//! optional leading `*.` label, not an IP, no port, bare `*` invalid),
//! except that upper case is folded and one trailing dot is tolerated.

use std::fmt;
use std::net::Ipv4Addr;

/// Longest host name accepted (DNS limit).
const MAX_HOST_LEN: usize = 253;

/// Size of the stack buffer a request host is normalized into.
pub(crate) const HOST_BUF: usize = MAX_HOST_LEN + 3;

/// A validated rule host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// A precise host, lower-case, without trailing dot.
    Exact(String),
    /// `*.{parent}`: the parent domain, lower-case, without trailing dot.
    Wildcard(String),
}

/// Why a rule host was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Empty host string (a missing host is fine: it means "any host").
    #[error("host is empty")]
    Empty,
    /// A bare `*`.
    #[error("a bare '*' is not a valid host; omit the host to match all hosts")]
    BareWildcard,
    /// A `*` anywhere but as the whole leftmost label.
    #[error("'*' is only allowed as the whole leftmost label ('*.example.com')")]
    MisplacedWildcard,
    /// An IP address.
    #[error("host must be a DNS name, not an IP address")]
    IpAddress,
    /// Longer than 253 characters.
    #[error("host is longer than 253 characters")]
    TooLong,
    /// A label that is not DNS-1123 (`[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?`).
    #[error("invalid DNS label {0:?}")]
    InvalidLabel(String),
}

impl HostPattern {
    /// Parses and validates a rule host (`spec.rules[].host` or a
    /// `spec.tls[].hosts[]` entry).
    pub fn parse(host: &str) -> Result<Self, HostError> {
        let lower = host.to_ascii_lowercase();
        let h = lower.strip_suffix('.').unwrap_or(&lower);
        if h.is_empty() {
            return Err(HostError::Empty);
        }
        if h == "*" {
            return Err(HostError::BareWildcard);
        }
        if h.len() > MAX_HOST_LEN {
            return Err(HostError::TooLong);
        }
        let (wildcard, name) = match h.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, h),
        };
        if name.contains('*') {
            return Err(HostError::MisplacedWildcard);
        }
        if name.contains(':') || name.parse::<Ipv4Addr>().is_ok() {
            return Err(HostError::IpAddress);
        }
        for label in name.split('.') {
            if !valid_label(label) {
                return Err(HostError::InvalidLabel(label.to_owned()));
            }
        }
        Ok(if wildcard {
            Self::Wildcard(name.to_owned())
        } else {
            Self::Exact(name.to_owned())
        })
    }

    /// Whether this pattern matches a request host as returned by
    /// [`normalize_request_host`].
    pub fn matches(&self, request_host: &str) -> bool {
        match self {
            Self::Exact(h) => h == request_host,
            Self::Wildcard(parent) => wildcard_parent(request_host) == Some(parent.as_str()),
        }
    }

    /// Whether this is a wildcard pattern.
    pub fn is_wildcard(&self) -> bool {
        matches!(self, Self::Wildcard(_))
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(h) => f.write_str(h),
            Self::Wildcard(p) => write!(f, "*.{p}"),
        }
    }
}

fn valid_label(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// The domain a wildcard covering `host` would have as parent: everything
/// after the first label (`a.b.c` → `b.c`). `None` without a dot or with
/// an empty first label or parent.
pub(crate) fn wildcard_parent(host: &str) -> Option<&str> {
    match host.split_once('.') {
        Some((first, parent)) if !first.is_empty() && !parent.is_empty() => Some(parent),
        _ => None,
    }
}

/// Normalizes a request's Host header or `:authority` (or a TLS SNI name):
/// strips the port (`foo.com:8080`, `[::1]:443`), one trailing dot, and
/// folds case. Returns `None` for something that is not a host at all
/// (empty, user-info, stray characters, a bad port); such a request only
/// matches host-less rules.
pub fn normalize_request_host(raw: &str) -> Option<String> {
    let mut buf = [0u8; HOST_BUF];
    normalize_into(raw, &mut buf).map(str::to_owned)
}

/// [`normalize_request_host`] into a stack buffer, for the lookup hot path.
pub(crate) fn normalize_into<'b>(raw: &str, buf: &'b mut [u8; HOST_BUF]) -> Option<&'b str> {
    let (host, port) = if raw.starts_with('[') {
        let end = raw.find(']')?;
        (&raw[..=end], &raw[end + 1..])
    } else {
        let colon = raw.find(':').unwrap_or(raw.len());
        raw.split_at(colon)
    };
    if !port.is_empty() {
        let digits = port.strip_prefix(':')?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > buf.len() {
        return None;
    }
    let bracketed = host.starts_with('[');
    for (dst, &b) in buf.iter_mut().zip(host.as_bytes()) {
        let ok = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_')
            || (bracketed && matches!(b, b'[' | b']' | b':'));
        if !ok {
            return None;
        }
        *dst = b.to_ascii_lowercase();
    }
    std::str::from_utf8(&buf[..host.len()]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rule_hosts() {
        assert_eq!(
            HostPattern::parse("foo.com"),
            Ok(HostPattern::Exact("foo.com".into()))
        );
        assert_eq!(
            HostPattern::parse("Foo.COM."),
            Ok(HostPattern::Exact("foo.com".into()))
        );
        assert_eq!(
            HostPattern::parse("*.foo.com"),
            Ok(HostPattern::Wildcard("foo.com".into()))
        );
        assert_eq!(HostPattern::parse(""), Err(HostError::Empty));
        assert_eq!(HostPattern::parse("*"), Err(HostError::BareWildcard));
        assert_eq!(
            HostPattern::parse("a.*.com"),
            Err(HostError::MisplacedWildcard)
        );
        assert_eq!(
            HostPattern::parse("*a.com"),
            Err(HostError::MisplacedWildcard)
        );
        assert_eq!(
            HostPattern::parse("**.com"),
            Err(HostError::MisplacedWildcard)
        );
        assert_eq!(HostPattern::parse("10.0.0.1"), Err(HostError::IpAddress));
        assert_eq!(HostPattern::parse("::1"), Err(HostError::IpAddress));
        assert_eq!(HostPattern::parse("foo.com:80"), Err(HostError::IpAddress));
        assert_eq!(
            HostPattern::parse("-a.com"),
            Err(HostError::InvalidLabel("-a".into()))
        );
        assert_eq!(
            HostPattern::parse("a..com"),
            Err(HostError::InvalidLabel("".into()))
        );
        assert_eq!(
            HostPattern::parse("a_b.com"),
            Err(HostError::InvalidLabel("a_b".into()))
        );
        assert!(HostPattern::parse(&"a.".repeat(130)).is_err());
    }

    #[test]
    fn wildcard_matches_one_label() {
        let w = HostPattern::parse("*.foo.com").unwrap();
        assert!(w.matches("bar.foo.com"));
        assert!(!w.matches("baz.bar.foo.com"));
        assert!(!w.matches("foo.com"));
        assert!(!w.matches(".foo.com"));
        assert_eq!(w.to_string(), "*.foo.com");
    }

    #[test]
    fn request_hosts() {
        let n = normalize_request_host;
        assert_eq!(n("Foo.COM").as_deref(), Some("foo.com"));
        assert_eq!(n("foo.com:8080").as_deref(), Some("foo.com"));
        assert_eq!(n("foo.com.").as_deref(), Some("foo.com"));
        assert_eq!(n("foo.com.:443").as_deref(), Some("foo.com"));
        assert_eq!(n("foo.com:").as_deref(), Some("foo.com"));
        assert_eq!(n("[::1]:80").as_deref(), Some("[::1]"));
        assert_eq!(n("10.0.0.1:80").as_deref(), Some("10.0.0.1"));
        assert_eq!(n(""), None);
        assert_eq!(n(":80"), None);
        assert_eq!(n("foo.com:x"), None);
        assert_eq!(n("a:b:c"), None);
        assert_eq!(n("user@foo.com"), None);
        assert_eq!(n("foo com"), None);
        assert_eq!(n(&"a".repeat(300)), None);
    }
}
