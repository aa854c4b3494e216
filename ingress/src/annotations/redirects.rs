//! Redirects: `ssl-redirect`, `force-ssl-redirect`, `permanent-redirect`
//! (+`-code`), `temporal-redirect` (+`-code`), `from-to-www-redirect`,
//! `server-alias`, `relative-redirects`, `use-port-in-redirects`.

use crate::routes::HostPattern;

use super::configmap::ControllerSettings;
use super::reader::Reader;
use super::values::{ValueError, parse_bool, parse_int_in};

/// A fixed redirect for every path of the Ingress (`return <code> <url>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FixedRedirect {
    /// The target: `http(s)://...` or an absolute path on the request's
    /// host.
    pub url: String,
    /// The status code (300–308).
    pub code: u16,
}

/// The redirect policy of an Ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectPolicy {
    /// `ssl-redirect`: HTTP → HTTPS when the host has TLS.
    pub ssl_redirect: bool,
    /// `force-ssl-redirect`: HTTP → HTTPS even without TLS.
    pub force_ssl_redirect: bool,
    /// `temporal-redirect` or `permanent-redirect` (temporal wins).
    pub fixed: Option<FixedRedirect>,
    /// `from-to-www-redirect`: `www.host` ↔ `host`.
    pub from_to_www: bool,
    /// `server-alias`: more names for the Ingress's hosts.
    pub server_aliases: Vec<HostPattern>,
    /// `relative-redirects`: Location headers of nginx's own redirects
    /// without scheme and host.
    pub relative: bool,
    /// `use-port-in-redirects`.
    pub use_port_in_redirects: bool,
    /// The `Strict-Transport-Security` value of the ConfigMap's `hsts*`
    /// (`None`: `hsts: "false"`), on HTTPS answers of hosts with TLS.
    pub hsts: Option<String>,
}

impl Default for RedirectPolicy {
    fn default() -> Self {
        Self::defaults(&ControllerSettings::default())
    }
}

/// Parses a redirect URL: `http(s)://...` or an absolute path, of the
/// characters ingress-nginx allows (`[-._~a-zA-Z0-9/:,?&=]`).
fn parse_url(s: &str) -> Result<String, ValueError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(ValueError::Empty);
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~/:,?&=".contains(c))
    {
        return Err(ValueError::Invalid(
            "want letters, digits and -._~/:,?&= only".into(),
        ));
    }
    let ok = s.starts_with('/')
        || s.strip_prefix("http://")
            .or_else(|| s.strip_prefix("https://"))
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(ValueError::Invalid(
            "want an http:// or https:// URL, or an absolute path".into(),
        ))
    }
}

/// Parses `server-alias`: comma-separated host names (trimmed, duplicates
/// dropped).
fn parse_aliases(s: &str) -> Result<Vec<HostPattern>, ValueError> {
    let mut out: Vec<HostPattern> = Vec::new();
    for a in s.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let h =
            HostPattern::parse(a).map_err(|e| ValueError::Invalid(format!("alias {a:?}: {e}")))?;
        if !out.contains(&h) {
            out.push(h);
        }
    }
    if out.is_empty() {
        return Err(ValueError::Empty);
    }
    Ok(out)
}

impl RedirectPolicy {
    fn defaults(settings: &ControllerSettings) -> Self {
        Self {
            ssl_redirect: settings.ssl_redirect,
            force_ssl_redirect: settings.force_ssl_redirect,
            fixed: None,
            from_to_www: false,
            server_aliases: Vec::new(),
            relative: settings.relative_redirects,
            use_port_in_redirects: settings.use_port_in_redirects,
            hsts: settings.hsts.header_value(),
        }
    }

    pub(crate) fn parse(r: &mut Reader<'_>, settings: &ControllerSettings) -> Self {
        let d = Self::defaults(settings);
        let code = |r: &mut Reader<'_>, name, max, default| {
            r.get(name, |v| parse_int_in(v, 300, max))
                .map_or(default, |c| c as u16)
        };
        let fixed = match r.get("temporal-redirect", parse_url) {
            Some(url) if url.starts_with("http") => Some(FixedRedirect {
                url,
                code: code(r, "temporal-redirect-code", 307, 302),
            }),
            Some(_) => {
                r.problem(
                    "temporal-redirect",
                    super::AnnotationProblemKind::InvalidValue(ValueError::Invalid(
                        "ingress-nginx accepts only http:// and https:// URLs here".into(),
                    )),
                );
                None
            }
            None => None,
        };
        let fixed = fixed.or_else(|| {
            let url = r.get("permanent-redirect", parse_url)?;
            Some(FixedRedirect {
                url,
                code: code(r, "permanent-redirect-code", 308, 301),
            })
        });
        Self {
            ssl_redirect: r.get_or("ssl-redirect", d.ssl_redirect, parse_bool),
            force_ssl_redirect: r.get_or("force-ssl-redirect", d.force_ssl_redirect, parse_bool),
            fixed,
            from_to_www: r.get_or("from-to-www-redirect", false, parse_bool),
            server_aliases: r.get("server-alias", parse_aliases).unwrap_or_default(),
            relative: r.get_or("relative-redirects", d.relative, parse_bool),
            use_port_in_redirects: r.get_or(
                "use-port-in-redirects",
                d.use_port_in_redirects,
                parse_bool,
            ),
            hsts: d.hsts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(parse_url("https://example.com/a?b=1&c=2").is_ok());
        assert!(parse_url("/elsewhere").is_ok());
        for bad in [
            "",
            "example.com",
            "ftp://x",
            "https://",
            "https:///x",
            "https://a b",
            "https://x/$1",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn aliases() {
        let a = parse_aliases("a.com, *.b.com,a.com,").unwrap();
        assert_eq!(a.len(), 2);
        assert!(parse_aliases("~^www\\d+\\.x\\.com$").is_err());
        assert!(parse_aliases(" , ").is_err());
    }
}
