//! Request-path hygiene: the one function the gateway calls on the raw
//! request target before any routing decision.
//!
//! hyper does no normalization, and every known path-confusion bypass of
//! L7 proxies (Envoy CVE-2019-9901 and CVE-2021-29492, Traefik
//! CVE-2025-32431 and CVE-2025-66490, ...) comes from the proxy routing on
//! one spelling of a path while the backend resolves another. So the path
//! is brought into one canonical form, and whatever cannot be made
//! canonical without guessing is rejected:
//!
//! * Percent-encoded *unreserved* characters (`A-Z a-z 0-9 - . _ ~`) are
//!   decoded (`%7E` → `~`, `%2e` → `.`); every other escape is kept, with
//!   its hex digits upper-cased (`%3a` → `%3A`), as RFC 3986 §6.2.2 says.
//! * Repeated slashes are merged (`//admin` → `/admin`).
//! * Dot-segments are resolved after decoding (`/public/../admin` and
//!   `/public/%2e%2e/admin` → `/admin`); `..` above the root stays at the
//!   root (RFC 3986 §5.2.4).
//! * Rejected ([`Reject`], answered 400): an encoded slash `%2F`, an encoded
//!   or raw backslash, NUL (raw or `%00`), other raw control characters,
//!   raw space, `#` or non-ASCII bytes, malformed escapes (`%zz`, `%4`),
//!   a target not starting with `/` (asterisk or authority form), and
//!   dot-segments carrying path parameters (`..;x`, `.;x`, and the same
//!   with the `;` encoded, `..%3B`), which Java servlet containers resolve
//!   as `..` (the Tomcat `..;` bypass).
//! * A trailing slash is kept: it is meaningful for `Exact` paths.
//!
//! The query string is split off at the first `?` and returned untouched.
//! The gateway should forward the *normalized* path upstream, so that the
//! backend sees exactly what was routed.

use std::fmt;

/// Why a request path was refused. The gateway answers 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// The target does not start with `/` (empty, `*`, or authority form).
    #[error("request path must start with '/'")]
    NotAbsolute,
    /// `%2F` or `%2f`: an encoded slash would route differently from how
    /// backends that decode it resolve it.
    #[error("encoded slash (%2F) in request path")]
    EncodedSlash,
    /// `%5C` or `%5c`.
    #[error("encoded backslash (%5C) in request path")]
    EncodedBackslash,
    /// A raw `\`.
    #[error("backslash in request path")]
    Backslash,
    /// NUL, raw or `%00`.
    #[error("NUL byte in request path")]
    Nul,
    /// A `%` not followed by two hex digits.
    #[error("invalid percent-encoding in request path")]
    InvalidPercentEncoding,
    /// A raw byte that has no place in a request path: a control
    /// character, space, `#`, `?` (in a bare path) or a non-ASCII byte.
    #[error("invalid character 0x{0:02x} in request path")]
    InvalidCharacter(u8),
    /// A dot-segment with path parameters (`..;jsessionid=x`), which some
    /// servers resolve as a plain dot-segment.
    #[error("dot-segment with parameters in request path")]
    DotSegmentParameter,
}

/// A request path in canonical form: starts with `/`, no empty segments
/// except a trailing slash, no `.`/`..` segments, only non-unreserved
/// characters percent-encoded (upper-case hex). The only way to get one is
/// [`normalize`] or [`NormalizedPath::new`], so a route lookup can never see
/// a raw path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NormalizedPath(String);

impl NormalizedPath {
    /// Normalizes a bare path (no query string: a `?` is rejected).
    pub fn new(path: &str) -> Result<Self, Reject> {
        normalize_path(path).map(NormalizedPath)
    }

    /// The canonical path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The canonical path, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl AsRef<str> for NormalizedPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NormalizedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A normalized request target: the canonical path and the query string
/// (without the `?`), kept exactly as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedRequest {
    /// The canonical path, to route on and to forward.
    pub path: NormalizedPath,
    /// The query string as received, `None` when there was no `?`.
    pub query: Option<String>,
}

/// Normalizes a raw request target in origin form (`/path?query`), as
/// `http::Uri::path_and_query()` gives it. See the module docs.
pub fn normalize(raw: &str) -> Result<NormalizedRequest, Reject> {
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (raw, None),
    };
    Ok(NormalizedRequest {
        path: NormalizedPath(normalize_path(path)?),
        query,
    })
}

/// Normalizes a bare path (a `?` is an invalid character here): one pass,
/// decoding into the output and resolving each segment as it completes.
pub(crate) fn normalize_path(path: &str) -> Result<String, Reject> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(Reject::NotAbsolute);
    }
    let mut out = String::with_capacity(bytes.len());
    out.push('/');
    // Start of the segment being decoded; `out[..seg_start]` ends with '/'.
    let mut seg_start = 1;
    let mut i = 1;
    loop {
        let last = i == bytes.len();
        if last || bytes[i] == b'/' {
            match &out[seg_start..] {
                // Merged slash, or the trailing slash (already there).
                "" => {}
                "." => out.truncate(seg_start),
                ".." => {
                    out.truncate(seg_start);
                    if seg_start > 1 {
                        let parent = out[..seg_start - 1].rfind('/').unwrap_or(0);
                        out.truncate(parent + 1);
                    }
                }
                seg if is_dot_segment_parameter(seg) => {
                    return Err(Reject::DotSegmentParameter);
                }
                _ if !last => out.push('/'),
                _ => {}
            }
            if last {
                return Ok(out);
            }
            seg_start = out.len();
            i += 1;
        } else {
            i = decode_one(bytes, i, &mut out)?;
        }
    }
}

/// Whether a decoded segment is a dot-segment with path parameters: `.`
/// or `..` followed by `;`, raw or as `%3B` (one rule for both: servers
/// that honour path parameters decode the escape first).
fn is_dot_segment_parameter(seg: &str) -> bool {
    seg.strip_prefix("..")
        .or_else(|| seg.strip_prefix('.'))
        .is_some_and(|rest| rest.starts_with(';') || rest.starts_with("%3B"))
}

/// Whether a byte is an RFC 3986 unreserved character.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Decodes the byte (or escape) at `bytes[i]` (not a `/`) into `out`,
/// canonicalizing escapes and refusing dangerous bytes; returns the index
/// of the next byte.
fn decode_one(bytes: &[u8], i: usize, out: &mut String) -> Result<usize, Reject> {
    match bytes[i] {
        b'%' => {
            let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex_value),
                bytes.get(i + 2).copied().and_then(hex_value),
            ) else {
                return Err(Reject::InvalidPercentEncoding);
            };
            match hi << 4 | lo {
                b'/' => return Err(Reject::EncodedSlash),
                b'\\' => return Err(Reject::EncodedBackslash),
                0 => return Err(Reject::Nul),
                v if is_unreserved(v) => out.push(char::from(v)),
                v => {
                    out.push('%');
                    out.push(char::from(HEX_UPPER[usize::from(v >> 4)]));
                    out.push(char::from(HEX_UPPER[usize::from(v & 0xf)]));
                }
            }
            Ok(i + 3)
        }
        b'\\' => Err(Reject::Backslash),
        0 => Err(Reject::Nul),
        b @ (b'#' | b'?' | b' ' | 0x7f | 0x01..=0x1f | 0x80..=0xff) => {
            Err(Reject::InvalidCharacter(b))
        }
        b => {
            out.push(char::from(b));
            Ok(i + 1)
        }
    }
}

/// Canonicalizes the escapes of a rule path and refuses what
/// [`normalize_path`] refuses, without resolving anything: the result still
/// has its `//` and dot-segments for the caller to judge.
pub(crate) fn decode(path: &str) -> Result<String, Reject> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(Reject::NotAbsolute);
    }
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'/' {
            out.push('/');
            i += 1;
        } else {
            i = decode_one(bytes, i, &mut out)?;
        }
    }
    if out.split('/').any(is_dot_segment_parameter) {
        return Err(Reject::DotSegmentParameter);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, Reject> {
        normalize_path(p)
    }

    #[test]
    fn canonical_paths_are_unchanged() {
        for p in [
            "/",
            "/a",
            "/a/",
            "/a/b/c",
            "/a.b/c..d/.e",
            "/~u/%3A%20x",
            "/%25",
        ] {
            assert_eq!(n(p).as_deref(), Ok(p), "{p}");
        }
    }

    #[test]
    fn dot_segments_and_slashes() {
        let cases = [
            ("/public/../admin", "/admin"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E%2E/admin", "/admin"),
            ("/public/.%2e/admin", "/admin"),
            ("//admin", "/admin"),
            ("///", "/"),
            ("/a//b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/.", "/a/"),
            ("/a/..", "/"),
            ("/a/b/..", "/a/"),
            ("/..", "/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a//../b", "/b"),
            ("/a/b//", "/a/b/"),
            ("/%7Euser", "/~user"),
            ("/%41%62c", "/Abc"),
            ("/x%3ay", "/x%3Ay"),
        ];
        for (input, want) in cases {
            assert_eq!(n(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn rejects() {
        let cases = [
            ("", Reject::NotAbsolute),
            ("*", Reject::NotAbsolute),
            ("admin", Reject::NotAbsolute),
            ("/admin%2F..", Reject::EncodedSlash),
            ("/admin%2f..", Reject::EncodedSlash),
            ("/a%5Cb", Reject::EncodedBackslash),
            ("/a%5cb", Reject::EncodedBackslash),
            ("/a\\b", Reject::Backslash),
            ("/a%00", Reject::Nul),
            ("/a\0", Reject::Nul),
            ("/a%zz", Reject::InvalidPercentEncoding),
            ("/a%4", Reject::InvalidPercentEncoding),
            ("/a%", Reject::InvalidPercentEncoding),
            ("/a b", Reject::InvalidCharacter(b' ')),
            ("/a#b", Reject::InvalidCharacter(b'#')),
            ("/a?b", Reject::InvalidCharacter(b'?')),
            ("/a\nb", Reject::InvalidCharacter(b'\n')),
            ("/é", Reject::InvalidCharacter(0xc3)),
            ("/public/..;/admin", Reject::DotSegmentParameter),
            ("/public/%2e%2e;x/admin", Reject::DotSegmentParameter),
            ("/.;/admin", Reject::DotSegmentParameter),
            ("/public/..%3B/admin", Reject::DotSegmentParameter),
            ("/public/..%3bx/admin", Reject::DotSegmentParameter),
            ("/public/%2e%2e%3b/admin", Reject::DotSegmentParameter),
            ("/.%3B/admin", Reject::DotSegmentParameter),
        ];
        for (input, want) in cases {
            assert_eq!(n(input), Err(want), "{input:?}");
        }
    }

    #[test]
    fn query_is_split_and_kept() {
        let r = normalize("/a/../b?x=%2F&y=..//").unwrap();
        assert_eq!(r.path.as_str(), "/b");
        assert_eq!(r.query.as_deref(), Some("x=%2F&y=..//"));
        let r = normalize("/b?").unwrap();
        assert_eq!(r.query.as_deref(), Some(""));
        assert_eq!(normalize("/b").unwrap().query, None);
        assert_eq!(normalize("?x"), Err(Reject::NotAbsolute));
    }
}
