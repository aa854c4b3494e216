//! Session affinity: `affinity: cookie` with `affinity-mode`,
//! `affinity-canary-behavior` and the `session-cookie-*` annotations.

use std::str::FromStr;

use super::reader::Reader;
use super::values::{CookieName, ValueError, parse_bool, parse_int};

/// `affinity-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AffinityMode {
    /// Sessions may move to new endpoints when the set grows (default).
    #[default]
    Balanced,
    /// Sessions stay on their endpoint while it exists.
    Persistent,
}

/// `affinity-canary-behavior`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CanaryBehavior {
    /// A client served by the canary stays on it (default).
    #[default]
    Sticky,
    /// Affinity ignores canaries.
    Legacy,
}

/// `session-cookie-samesite`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SameSite {
    /// `SameSite=None`.
    None,
    /// `SameSite=Lax`.
    Lax,
    /// `SameSite=Strict`.
    Strict,
}

impl FromStr for SameSite {
    type Err = ValueError;

    /// Case-insensitive, as ingress-nginx.
    fn from_str(s: &str) -> Result<Self, ValueError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Self::None),
            "lax" => Ok(Self::Lax),
            "strict" => Ok(Self::Strict),
            "" => Err(ValueError::Empty),
            _ => Err(ValueError::NotOneOf("None, Lax, Strict")),
        }
    }
}

/// Cookie-based session affinity (`affinity: cookie`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CookieAffinity {
    /// `affinity-mode`.
    pub mode: AffinityMode,
    /// `affinity-canary-behavior`.
    pub canary_behavior: CanaryBehavior,
    /// `session-cookie-name` (default `INGRESSCOOKIE`).
    pub name: CookieName,
    /// `session-cookie-path` (default: the rule path).
    pub path: Option<String>,
    /// `session-cookie-domain`.
    pub domain: Option<String>,
    /// `session-cookie-expires`, seconds from now.
    pub expires_secs: Option<i64>,
    /// `session-cookie-max-age`, seconds.
    pub max_age_secs: Option<i64>,
    /// `session-cookie-samesite`.
    pub same_site: Option<SameSite>,
    /// `session-cookie-conditional-samesite-none`: omit `SameSite=None`
    /// for browsers that mishandle it.
    pub conditional_same_site_none: bool,
    /// `session-cookie-secure`.
    pub secure: bool,
    /// `session-cookie-change-on-failure`: pick a new endpoint (and cookie)
    /// when the sticky one failed.
    pub change_on_failure: bool,
}

fn word<T: Copy>(
    options: &'static [(&'static str, T)],
    list: &'static str,
) -> impl Fn(&str) -> Result<T, ValueError> {
    move |s| {
        let s = s.trim();
        options
            .iter()
            .find(|(w, _)| *w == s)
            .map(|(_, v)| *v)
            .ok_or(ValueError::NotOneOf(list))
    }
}

fn cookie_path(s: &str) -> Result<String, ValueError> {
    let s = s.trim();
    if s.starts_with('/')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~/:".contains(c))
    {
        Ok(s.to_owned())
    } else {
        Err(ValueError::Invalid(
            "want an absolute path of letters, digits and -._~/:".into(),
        ))
    }
}

fn cookie_domain(s: &str) -> Result<String, ValueError> {
    let s = s.trim();
    let d = s.strip_prefix('.').unwrap_or(s);
    crate::routes::HostPattern::parse(d)
        .map(|_| s.to_ascii_lowercase())
        .map_err(|e| ValueError::Invalid(e.to_string()))
}

/// The `session-cookie-*` names, reported as ignored without `affinity`.
const COOKIE_KEYS: [&str; 10] = [
    "affinity-mode",
    "session-cookie-name",
    "session-cookie-path",
    "session-cookie-domain",
    "session-cookie-expires",
    "session-cookie-max-age",
    "session-cookie-samesite",
    "session-cookie-conditional-samesite-none",
    "session-cookie-secure",
    "session-cookie-change-on-failure",
];

impl CookieAffinity {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Option<Self> {
        let enabled = r
            .get("affinity", word(&[("cookie", true)], "cookie"))
            .is_some();
        if !enabled {
            r.ignore_all(&COOKIE_KEYS, "it takes effect only with affinity: cookie");
            return None;
        }
        let default_name: CookieName = "INGRESSCOOKIE".parse().ok()?;
        Some(Self {
            mode: r.get_or(
                "affinity-mode",
                AffinityMode::Balanced,
                word(
                    &[
                        ("balanced", AffinityMode::Balanced),
                        ("persistent", AffinityMode::Persistent),
                    ],
                    "balanced, persistent",
                ),
            ),
            canary_behavior: r.get_or(
                "affinity-canary-behavior",
                CanaryBehavior::Sticky,
                word(
                    &[
                        ("sticky", CanaryBehavior::Sticky),
                        ("legacy", CanaryBehavior::Legacy),
                    ],
                    "sticky, legacy",
                ),
            ),
            name: r.get_or("session-cookie-name", default_name, str::parse),
            path: r.get("session-cookie-path", cookie_path),
            domain: r.get("session-cookie-domain", cookie_domain),
            expires_secs: r.get("session-cookie-expires", parse_int),
            max_age_secs: r.get("session-cookie-max-age", parse_int),
            same_site: r.get("session-cookie-samesite", str::parse),
            conditional_same_site_none: r.get_or(
                "session-cookie-conditional-samesite-none",
                false,
                parse_bool,
            ),
            secure: r.get_or("session-cookie-secure", false, parse_bool),
            change_on_failure: r.get_or("session-cookie-change-on-failure", false, parse_bool),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        assert_eq!("LAX".parse(), Ok(SameSite::Lax));
        assert!("sometimes".parse::<SameSite>().is_err());
        assert!(cookie_path("/app").is_ok() && cookie_path("app").is_err());
        assert_eq!(cookie_domain(".Example.com").unwrap(), ".example.com");
        assert!(cookie_domain("a b").is_err());
    }
}
