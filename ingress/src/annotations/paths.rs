//! Paths and rewrites: `use-regex`, `rewrite-target`, `app-root`,
//! `x-forwarded-prefix`, `upstream-vhost`, `preserve-trailing-slash`.
//!
//! Templates (`rewrite-target`, `x-forwarded-prefix`, `upstream-vhost`) are
//! parsed into parts once; the route table expands them per request from
//! the regex captures and the request's host, never by evaluating text.

use std::fmt;

use super::configmap::ControllerSettings;
use super::reader::Reader;
use super::values::{ValueError, parse_bool};

/// One part of a capture template.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CapturePart {
    /// Text copied as is.
    Literal(String),
    /// `$1`–`$9`: a capture group of the path regex (empty when the group
    /// did not take part in the match, as in nginx).
    Capture(u8),
}

/// Text with `$1`–`$9` capture references, the only nginx variables
/// Sluice expands in `rewrite-target` and `x-forwarded-prefix`. The
/// characters allowed are ingress-nginx's (`[-._~a-zA-Z0-9/:$]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CaptureTemplate {
    source: String,
    parts: Vec<CapturePart>,
}

impl CaptureTemplate {
    /// Parses a template. A `$` must be followed by a digit 1–9 (nginx
    /// reads `$10` as `$1` then `0`); `$0`, `$name` and a trailing `$` are
    /// refused.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ValueError::Empty);
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-._~/:$".contains(*c)))
        {
            return Err(ValueError::Invalid(format!(
                "character {c:?} is not allowed (want letters, digits, -._~/: and $1-$9)"
            )));
        }
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '$' {
                lit.push(c);
                continue;
            }
            match chars.next() {
                Some(d @ '1'..='9') => {
                    if !lit.is_empty() {
                        parts.push(CapturePart::Literal(std::mem::take(&mut lit)));
                    }
                    parts.push(CapturePart::Capture(d as u8 - b'0'));
                }
                Some(other) => {
                    let mut name = String::from(other);
                    while let Some(&n) = chars.peek().filter(|n| n.is_ascii_alphanumeric()) {
                        name.push(n);
                        chars.next();
                    }
                    return Err(ValueError::Invalid(format!(
                        "nginx variable ${name} is not supported (only $1-$9)"
                    )));
                }
                None => return Err(ValueError::Invalid("a trailing '$'".into())),
            }
        }
        if !lit.is_empty() {
            parts.push(CapturePart::Literal(lit));
        }
        Ok(Self {
            source: s.to_owned(),
            parts,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The parts.
    pub fn parts(&self) -> &[CapturePart] {
        &self.parts
    }

    /// Expands the template; `capture(n)` gives group `n` (or `None`).
    pub fn expand<'c>(&self, capture: impl Fn(u8) -> Option<&'c str>) -> String {
        let mut out = String::with_capacity(self.source.len() + 16);
        for p in &self.parts {
            match p {
                CapturePart::Literal(l) => out.push_str(l),
                CapturePart::Capture(n) => out.push_str(capture(*n).unwrap_or("")),
            }
        }
        out
    }
}

impl fmt::Display for CaptureTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// `rewrite-target`: the upstream path (or, starting with `http://` or
/// `https://`, a redirect) built from the path regex's captures. nginx's
/// `rewrite "(?i)<path>" <target> break;` replaces the whole path; the
/// query string is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RewriteTarget {
    template: CaptureTemplate,
}

impl RewriteTarget {
    /// Parses the annotation value.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        CaptureTemplate::parse(s).map(|template| Self { template })
    }

    /// The template.
    pub fn template(&self) -> &CaptureTemplate {
        &self.template
    }

    /// Whether the target is an absolute URL, which makes nginx answer a
    /// 302 redirect instead of proxying.
    pub fn is_redirect(&self) -> bool {
        let s = self.template.as_str();
        s.starts_with("http://") || s.starts_with("https://")
    }

    /// Whether the rewrite applies to a rule `path`: ingress-nginx skips it
    /// (and does not force regex matching for it) when the target equals
    /// the path.
    pub fn applies_to(&self, path: &str) -> bool {
        self.template.as_str() != path
    }
}

/// `app-root`: where `/` redirects (302) on the Ingress's host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AppRoot(String);

impl AppRoot {
    /// Parses the annotation: an absolute path of the characters
    /// ingress-nginx allows (`[-._~a-zA-Z0-9/:]`); a URL with a scheme is
    /// refused, as ingress-nginx refuses it.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ValueError::Empty);
        }
        if !s.starts_with('/') {
            return Err(ValueError::Invalid(
                "want an absolute path such as /app".into(),
            ));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~/:".contains(c))
        {
            return Err(ValueError::Invalid(
                "want letters, digits and -._~/: only".into(),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A part of an `upstream-vhost` value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VhostPart {
    /// Text copied as is.
    Literal(String),
    /// `$host`: the request's host, lower-case, without port.
    Host,
    /// `$http_host`: the Host header as sent.
    HttpHost,
    /// `$best_http_host`: X-Forwarded-Host when forwarded headers are
    /// trusted, else the Host header.
    BestHttpHost,
    /// `$namespace`: the Ingress's namespace.
    Namespace,
    /// `$service_name`: the backend Service's name.
    ServiceName,
    /// `$service_port`: the backend Service port as the Ingress names it.
    ServicePort,
}

/// `upstream-vhost`: the Host header sent upstream instead of the
/// request's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamVhost {
    source: String,
    parts: Vec<VhostPart>,
}

impl UpstreamVhost {
    /// Parses the annotation: host-name characters (`[A-Za-z0-9.-:[]]`) and
    /// the variables of [`VhostPart`] (`$name` or `${name}`).
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ValueError::Empty);
        }
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = s;
        while let Some(c) = rest.chars().next() {
            if c != '$' {
                if !(c.is_ascii_alphanumeric() || "-.:[]".contains(c)) {
                    return Err(ValueError::Invalid(format!(
                        "character {c:?} is not allowed in a host"
                    )));
                }
                lit.push(c);
                rest = &rest[1..];
                continue;
            }
            let (name, after) = match rest[1..].strip_prefix('{') {
                Some(braced) => match braced.split_once('}') {
                    Some((n, a)) => (n, a),
                    None => return Err(ValueError::Invalid("unclosed ${".into())),
                },
                None => {
                    let body = &rest[1..];
                    let end = body
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(body.len());
                    (&body[..end], &body[end..])
                }
            };
            let part = match name {
                "host" => VhostPart::Host,
                "http_host" => VhostPart::HttpHost,
                "best_http_host" => VhostPart::BestHttpHost,
                "namespace" => VhostPart::Namespace,
                "service_name" => VhostPart::ServiceName,
                "service_port" => VhostPart::ServicePort,
                other => {
                    return Err(ValueError::Invalid(format!(
                        "nginx variable ${other} is not supported"
                    )));
                }
            };
            if !lit.is_empty() {
                parts.push(VhostPart::Literal(std::mem::take(&mut lit)));
            }
            parts.push(part);
            rest = after;
        }
        if !lit.is_empty() {
            parts.push(VhostPart::Literal(lit));
        }
        Ok(Self {
            source: s.to_owned(),
            parts,
        })
    }

    /// The value as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The parts.
    pub fn parts(&self) -> &[VhostPart] {
        &self.parts
    }
}

/// The paths-and-rewrites policy of an Ingress.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PathPolicy {
    /// `use-regex`: the Ingress's paths are regexes (and, in ingress-nginx,
    /// every path of its hosts).
    pub use_regex: bool,
    /// `rewrite-target`.
    pub rewrite: Option<RewriteTarget>,
    /// `app-root`.
    pub app_root: Option<AppRoot>,
    /// `x-forwarded-prefix` (sent only with a rewrite).
    pub x_forwarded_prefix: Option<CaptureTemplate>,
    /// `upstream-vhost`.
    pub upstream_vhost: Option<UpstreamVhost>,
    /// `preserve-trailing-slash`: keep a trailing `/` in the HTTPS redirect.
    pub preserve_trailing_slash: bool,
}

impl PathPolicy {
    /// Whether the rule `path` is matched as a regex because of this
    /// Ingress (use-regex, or a rewrite that applies to it). One such path
    /// makes every path of the host a regex.
    pub fn forces_regex(&self, path: &str) -> bool {
        self.use_regex || self.rewrite.as_ref().is_some_and(|r| r.applies_to(path))
    }

    pub(crate) fn parse(r: &mut Reader<'_>, settings: &ControllerSettings) -> Self {
        let rewrite = r.get("rewrite-target", RewriteTarget::parse);
        let x_forwarded_prefix = r.get("x-forwarded-prefix", CaptureTemplate::parse);
        if x_forwarded_prefix.is_some() && rewrite.is_none() {
            r.problem(
                "x-forwarded-prefix",
                super::AnnotationProblemKind::Ignored {
                    reason:
                        "ingress-nginx sends X-Forwarded-Prefix only together with rewrite-target"
                            .into(),
                },
            );
        }
        Self {
            use_regex: r.get_or("use-regex", false, parse_bool),
            rewrite,
            app_root: r.get("app-root", AppRoot::parse),
            x_forwarded_prefix,
            upstream_vhost: r.get("upstream-vhost", UpstreamVhost::parse),
            preserve_trailing_slash: r.get_or(
                "preserve-trailing-slash",
                settings.preserve_trailing_slash,
                parse_bool,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_templates() {
        let t = CaptureTemplate::parse("/api/$2/x$10").unwrap();
        assert_eq!(
            t.parts(),
            &[
                CapturePart::Literal("/api/".into()),
                CapturePart::Capture(2),
                CapturePart::Literal("/x".into()),
                CapturePart::Capture(1),
                CapturePart::Literal("0".into()),
            ]
        );
        let caps = ["whole", "a", "b"];
        let got = t.expand(|n| caps.get(usize::from(n)).copied());
        assert_eq!(got, "/api/b/xa0");
        assert_eq!(CaptureTemplate::parse("/$3").unwrap().expand(|_| None), "/");
        for bad in ["/$host", "/$0", "/a$", "/a?b=1", "/a b", ""] {
            assert!(CaptureTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rewrite_targets() {
        let r = RewriteTarget::parse("/$2").unwrap();
        assert!(!r.is_redirect() && r.applies_to("/foo(/|$)(.*)") && !r.applies_to("/$2"));
        assert!(
            RewriteTarget::parse("https://example.com/$1")
                .unwrap()
                .is_redirect()
        );
    }

    #[test]
    fn app_roots() {
        assert_eq!(AppRoot::parse("/app1").unwrap().as_str(), "/app1");
        for bad in ["app1", "http://x/app", "/a?b", "/a b", ""] {
            assert!(AppRoot::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn upstream_vhosts() {
        let v = UpstreamVhost::parse("$service_name.${namespace}.svc:8080").unwrap();
        assert_eq!(
            v.parts(),
            &[
                VhostPart::ServiceName,
                VhostPart::Literal(".".into()),
                VhostPart::Namespace,
                VhostPart::Literal(".svc:8080".into()),
            ]
        );
        assert_eq!(
            UpstreamVhost::parse("api.internal").unwrap().parts(),
            &[VhostPart::Literal("api.internal".into())]
        );
        for bad in ["$request_uri", "a b", "a/b", "${host", ""] {
            assert!(UpstreamVhost::parse(bad).is_err(), "{bad}");
        }
    }
}
