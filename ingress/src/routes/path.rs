//! Ingress v1 path types, path matching and precedence.
//!
//! * `Exact`: the whole (normalized) request path equals the rule path,
//!   case-sensitively; a trailing slash counts (`/foo` ≠ `/foo/`).
//! * `Prefix`: element-wise on `/`-split elements, case-sensitive, trailing
//!   slash ignored on both sides: `/foo/bar` matches `/foo/bar`,
//!   `/foo/bar/` and `/foo/bar/baz` but not `/foo/barbaz`; `/` matches
//!   every path.
//! * `ImplementationSpecific`: Sluice matches it exactly like `Prefix`
//!   (no regular expressions, no case folding). An empty path is `/`.
//!
//! Precedence when several rules of the selected host match:
//!
//! 1. An `Exact` match wins over every `Prefix` match. (It matched the
//!    whole request path, so it is the longest matching path; this only
//!    differs from comparing raw rule lengths in one corner: `Exact /foo`
//!    against `Prefix /foo/` for the request `/foo`, where the Exact rule
//!    wins.)
//! 2. Among prefixes, the one with the most elements wins; `/foo/` wins
//!    over `/foo` (both match the same requests; the longer spelling wins).
//! 3. The same path with the same effective type in two Ingresses is a
//!    conflict, resolved at build time (oldest wins; see
//!    [`mod@crate::routes::build`]). YAML order never matters.
//!
//! Rule paths are validated like the API server does for `Exact`/`Prefix`
//! (and, since Sluice matches it as `Prefix`, for `ImplementationSpecific`
//! too): absolute, no `//`, no `.`/`..` segments, no `%2F`; in addition a
//! rule path must pass [`crate::routes::hygiene`]'s checks (no backslash,
//! NUL, `?`, `#`, control characters), since a path that no normalized
//! request can equal could only ever be dead or a mistake. Escapes are
//! canonicalized the same way request paths are (`/%7Efoo` is `/~foo`).

use std::fmt;

use super::hygiene::{self, Reject};

/// The `pathType` of an `HTTPIngressPath`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathType {
    /// Whole-path, case-sensitive match.
    Exact,
    /// Element-wise prefix match.
    Prefix,
    /// Matched as [`PathType::Prefix`] by Sluice.
    ImplementationSpecific,
}

impl PathType {
    /// Parses the API spelling; `None` for anything else (a missing or
    /// unknown `pathType` is a build problem).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Exact" => Some(Self::Exact),
            "Prefix" => Some(Self::Prefix),
            "ImplementationSpecific" => Some(Self::ImplementationSpecific),
            _ => None,
        }
    }

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "Exact",
            Self::Prefix => "Prefix",
            Self::ImplementationSpecific => "ImplementationSpecific",
        }
    }

    /// How Sluice matches this path type.
    pub fn match_kind(self) -> MatchKind {
        match self {
            Self::Exact => MatchKind::Exact,
            Self::Prefix | Self::ImplementationSpecific => MatchKind::Prefix,
        }
    }
}

impl fmt::Display for PathType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The effective matching of a path type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MatchKind {
    /// Whole-path match.
    Exact,
    /// Element-wise prefix match.
    Prefix,
}

/// Why a rule path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// `Exact` and `Prefix` need a path.
    #[error("path is required for pathType {0}")]
    Missing(PathType),
    /// The path does not start with `/`.
    #[error("path must start with '/'")]
    NotAbsolute,
    /// The path contains `//`.
    #[error("path must not contain '//'")]
    DoubleSlash,
    /// The path contains a `.` or `..` segment (also when escaped).
    #[error("path must not contain '.' or '..' segments")]
    DotSegment,
    /// The path fails request-path hygiene (encoded slash, backslash, ...).
    #[error("{0}")]
    Hygiene(Reject),
}

/// Validates a rule path and returns its canonical spelling (escapes
/// canonicalized as for request paths). An empty or missing path is `/`
/// for `ImplementationSpecific` and an error otherwise.
pub fn validate_rule_path(path_type: PathType, path: Option<&str>) -> Result<String, PathError> {
    let path = match path {
        Some(p) if !p.is_empty() => p,
        _ if path_type == PathType::ImplementationSpecific => "/",
        _ => return Err(PathError::Missing(path_type)),
    };
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = hygiene::decode(path).map_err(|r| match r {
        Reject::DotSegmentParameter => PathError::DotSegment,
        r => PathError::Hygiene(r),
    })?;
    let segments: Vec<&str> = decoded.split('/').skip(1).collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "" if i != last => return Err(PathError::DoubleSlash),
            "." | ".." => return Err(PathError::DotSegment),
            _ => {}
        }
    }
    Ok(decoded)
}

/// Whether `rule` (of `path_type`) matches the normalized request path.
pub fn matches(path_type: PathType, rule: &str, request: &str) -> bool {
    match path_type.match_kind() {
        MatchKind::Exact => rule == request,
        MatchKind::Prefix => prefix_matches(rule, request),
    }
}

/// Element-wise prefix match, trailing slash ignored on both sides.
pub fn prefix_matches(rule: &str, request: &str) -> bool {
    let rule = trim_trailing_slash(rule);
    let request = trim_trailing_slash(request);
    if rule.is_empty() {
        return true;
    }
    request.starts_with(rule)
        && (request.len() == rule.len() || request.as_bytes()[rule.len()] == b'/')
}

/// The path without one trailing slash; `/` becomes the empty string.
fn trim_trailing_slash(p: &str) -> &str {
    p.strip_suffix('/').unwrap_or(p)
}

/// The key a prefix rule is stored under in the table: the path without
/// its trailing slash, `/` for the root.
pub(crate) fn prefix_key(rule: &str) -> &str {
    match trim_trailing_slash(rule) {
        "" => "/",
        k => k,
    }
}

/// Number of elements of a prefix key (`/` is 0, `/a/b` is 2).
pub(crate) fn depth(key: &str) -> usize {
    if key == "/" {
        0
    } else {
        key.bytes().filter(|&b| b == b'/').count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_element_wise() {
        assert!(prefix_matches("/foo/bar", "/foo/bar"));
        assert!(prefix_matches("/foo/bar", "/foo/bar/"));
        assert!(prefix_matches("/foo/bar", "/foo/bar/baz"));
        assert!(prefix_matches("/foo/bar/", "/foo/bar"));
        assert!(!prefix_matches("/foo/bar", "/foo/barbaz"));
        assert!(!prefix_matches("/foo/bar", "/foo"));
        assert!(prefix_matches("/", "/"));
        assert!(prefix_matches("/", "/anything/at/all"));
        assert!(!prefix_matches("/Foo", "/foo"));
    }

    #[test]
    fn exact_is_whole_path() {
        assert!(matches(PathType::Exact, "/foo", "/foo"));
        assert!(!matches(PathType::Exact, "/foo", "/foo/"));
        assert!(!matches(PathType::Exact, "/foo/", "/foo"));
        assert!(!matches(PathType::Exact, "/foo", "/FOO"));
        assert!(matches(PathType::ImplementationSpecific, "/foo", "/foo/x"));
    }

    #[test]
    fn keys_and_depth() {
        assert_eq!(prefix_key("/"), "/");
        assert_eq!(prefix_key("/a/"), "/a");
        assert_eq!(prefix_key("/a/b"), "/a/b");
        assert_eq!(depth("/"), 0);
        assert_eq!(depth("/a"), 1);
        assert_eq!(depth("/a/b"), 2);
    }

    #[test]
    fn rule_path_validation() {
        use PathType::*;
        assert_eq!(
            validate_rule_path(Prefix, Some("/a/b/")),
            Ok("/a/b/".into())
        );
        assert_eq!(validate_rule_path(Exact, Some("/%7ea")), Ok("/~a".into()));
        assert_eq!(
            validate_rule_path(ImplementationSpecific, None),
            Ok("/".into())
        );
        assert_eq!(
            validate_rule_path(ImplementationSpecific, Some("")),
            Ok("/".into())
        );
        assert_eq!(
            validate_rule_path(Prefix, None),
            Err(PathError::Missing(Prefix))
        );
        assert_eq!(
            validate_rule_path(Exact, Some("")),
            Err(PathError::Missing(Exact))
        );
        assert_eq!(
            validate_rule_path(Prefix, Some("a")),
            Err(PathError::NotAbsolute)
        );
        assert_eq!(
            validate_rule_path(Prefix, Some("/a//b")),
            Err(PathError::DoubleSlash)
        );
        assert_eq!(
            validate_rule_path(Prefix, Some("//")),
            Err(PathError::DoubleSlash)
        );
        for p in ["/a/./b", "/a/../b", "/a/..", "/a/.", "/%2e%2e/x", "/..;/x"] {
            assert_eq!(
                validate_rule_path(Prefix, Some(p)),
                Err(PathError::DotSegment),
                "{p}"
            );
        }
        assert_eq!(
            validate_rule_path(Exact, Some("/a%2fb")),
            Err(PathError::Hygiene(Reject::EncodedSlash))
        );
        assert_eq!(
            validate_rule_path(ImplementationSpecific, Some("/a?b")),
            Err(PathError::Hygiene(Reject::InvalidCharacter(b'?')))
        );
    }
}
