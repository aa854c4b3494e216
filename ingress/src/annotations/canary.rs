//! Canaries: `canary`, `canary-weight`, `canary-weight-total`,
//! `canary-by-header` (+`-value`, `-pattern`), `canary-by-cookie`.
//!
//! [`CanaryPolicy::routes_to_canary`] is ingress-nginx's
//! `route_to_alternative_balancer` (balancer.lua) as a pure function:
//! header, then cookie, then weight.

use std::fmt;

use super::reader::Reader;
use super::values::{CookieName, ValueError, parse_bool, parse_header_name, parse_u32};

/// A regular expression kept with its source (compared by source).
#[derive(Clone)]
pub struct HeaderPattern {
    source: String,
    regex: regex::Regex,
}

impl HeaderPattern {
    /// Compiles `source` with the `regex` crate (linear time; look-around
    /// and back-references are refused).
    pub fn new(source: &str) -> Result<Self, ValueError> {
        let regex = regex::Regex::new(source).map_err(|e| {
            ValueError::Invalid(format!("not a regular expression Sluice can run: {e}"))
        })?;
        Ok(Self {
            source: source.to_owned(),
            regex,
        })
    }

    /// Whether the pattern matches anywhere in `value` (PCRE's unanchored
    /// `ngx.re.match`).
    pub fn is_match(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }

    /// The source.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl PartialEq for HeaderPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for HeaderPattern {}

impl std::hash::Hash for HeaderPattern {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.source.hash(state);
    }
}

impl fmt::Debug for HeaderPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HeaderPattern({:?})", self.source)
    }
}

/// How the canary header is read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HeaderMatch {
    /// `always` → canary, `never` → primary, anything else → next rule.
    AlwaysNever,
    /// `canary-by-header-value`: this exact value → canary.
    Value(String),
    /// `canary-by-header-pattern`: a match → canary.
    Pattern(HeaderPattern),
}

/// `canary-by-header`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CanaryHeader {
    /// The header.
    pub name: http::HeaderName,
    /// How its value decides.
    pub matcher: HeaderMatch,
}

/// The canary policy of a canary Ingress (`canary: "true"`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CanaryPolicy {
    /// `canary-by-header`.
    pub by_header: Option<CanaryHeader>,
    /// `canary-by-cookie`.
    pub by_cookie: Option<CookieName>,
    /// `canary-weight`.
    pub weight: u32,
    /// `canary-weight-total`; ingress-nginx uses it only above 100.
    pub weight_total: u32,
}

/// What [`CanaryPolicy::routes_to_canary`] needs from a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct CanaryInput<'a> {
    /// The value of the `canary-by-header` header, if present.
    pub header: Option<&'a str>,
    /// The value of the `canary-by-cookie` cookie, if present.
    pub cookie: Option<&'a str>,
}

impl CanaryPolicy {
    /// The total the weight is out of (100 unless `canary-weight-total` is
    /// larger).
    pub fn effective_total(&self) -> u32 {
        self.weight_total.max(100)
    }

    /// Whether the request goes to the canary. `roll` is a uniform random
    /// number in `1..=`[`Self::effective_total`] (Lua's `math.random(n)`);
    /// it is only drawn when the header and cookie do not decide.
    pub fn routes_to_canary(&self, input: CanaryInput<'_>, roll: impl FnOnce(u32) -> u32) -> bool {
        if let (Some(h), Some(v)) = (&self.by_header, input.header) {
            match &h.matcher {
                HeaderMatch::Value(want) => {
                    if v == want {
                        return true;
                    }
                }
                HeaderMatch::Pattern(p) => {
                    if p.is_match(v) {
                        return true;
                    }
                }
                HeaderMatch::AlwaysNever => match v {
                    "always" => return true,
                    "never" => return false,
                    _ => {}
                },
            }
        }
        if self.by_cookie.is_some() {
            match input.cookie {
                Some("always") => return true,
                Some("never") => return false,
                _ => {}
            }
        }
        roll(self.effective_total()) <= self.weight
    }

    /// Parses the canary annotations; `None` unless `canary: "true"`.
    pub(crate) fn parse(r: &mut Reader<'_>) -> Option<Self> {
        const KEYS: [&str; 6] = [
            "canary-weight",
            "canary-weight-total",
            "canary-by-header",
            "canary-by-header-value",
            "canary-by-header-pattern",
            "canary-by-cookie",
        ];
        if !r.get_or("canary", false, parse_bool) {
            r.ignore_all(&KEYS, "canary annotations need canary: \"true\"");
            return None;
        }
        let value = r.get("canary-by-header-value", |v| {
            let v = v.trim();
            if v.is_empty() {
                Err(ValueError::Empty)
            } else {
                Ok(v.to_owned())
            }
        });
        let pattern = r.get("canary-by-header-pattern", HeaderPattern::new);
        let by_header = r
            .get("canary-by-header", parse_header_name)
            .map(|name| CanaryHeader {
                name,
                matcher: match (value, pattern) {
                    (Some(v), _) => HeaderMatch::Value(v),
                    (None, Some(p)) => HeaderMatch::Pattern(p),
                    (None, None) => HeaderMatch::AlwaysNever,
                },
            });
        Some(Self {
            by_header,
            by_cookie: r.get("canary-by-cookie", str::parse),
            weight: r.get_or("canary-weight", 0, parse_u32),
            weight_total: r.get_or("canary-weight-total", 100, parse_u32),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(matcher: Option<HeaderMatch>, cookie: bool, weight: u32) -> CanaryPolicy {
        CanaryPolicy {
            by_header: matcher.map(|m| CanaryHeader {
                name: http::HeaderName::from_static("x-canary"),
                matcher: m,
            }),
            by_cookie: cookie.then(|| "canary".parse().unwrap()),
            weight,
            weight_total: 100,
        }
    }

    fn decide(p: &CanaryPolicy, header: Option<&str>, cookie: Option<&str>, roll: u32) -> bool {
        p.routes_to_canary(CanaryInput { header, cookie }, |_| roll)
    }

    #[test]
    fn precedence_header_cookie_weight() {
        let p = policy(Some(HeaderMatch::AlwaysNever), true, 0);
        assert!(decide(&p, Some("always"), Some("never"), 100));
        assert!(!decide(&p, Some("never"), Some("always"), 1));
        assert!(decide(&p, Some("other"), Some("always"), 100));
        assert!(!decide(&p, None, Some("never"), 1));
        assert!(!decide(&p, None, None, 1), "weight 0 never");
        let w = policy(None, false, 30);
        assert!(
            decide(&w, Some("always"), Some("always"), 30),
            "roll <= weight"
        );
        assert!(
            !decide(&w, Some("always"), Some("always"), 31),
            "no header/cookie rule"
        );
    }

    #[test]
    fn header_value_and_pattern() {
        let p = policy(Some(HeaderMatch::Value("v2".into())), false, 0);
        assert!(decide(&p, Some("v2"), None, 100));
        assert!(
            !decide(&p, Some("always"), None, 100),
            "always is not special with a value"
        );
        let p = policy(
            Some(HeaderMatch::Pattern(
                HeaderPattern::new("^user-(1|2)$").unwrap(),
            )),
            false,
            0,
        );
        assert!(decide(&p, Some("user-2"), None, 100));
        assert!(!decide(&p, Some("user-3"), None, 100));
        assert!(HeaderPattern::new("(?=x)").is_err(), "look-around refused");
    }

    #[test]
    fn weight_total_only_above_100() {
        let mut p = policy(None, false, 1);
        p.weight_total = 50;
        assert_eq!(p.effective_total(), 100);
        p.weight_total = 1000;
        assert_eq!(p.effective_total(), 1000);
    }
}
