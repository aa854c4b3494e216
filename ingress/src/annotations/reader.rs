//! Reading an Ingress's annotations under the configured prefix: one
//! lookup per annotation (aliases included), values parsed by typed
//! parsers, every refusal recorded as an [`AnnotationProblem`].

use std::collections::BTreeMap;
use std::fmt;

use super::Denial;
use super::catalog::{self, CATALOG, Support};
use super::problem::{AnnotationProblem, AnnotationProblemKind};
use super::values::ValueError;

/// The annotation prefix, `nginx.ingress.kubernetes.io` unless configured
/// (ingress-nginx's `--annotations-prefix`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AnnotationPrefix(String);

/// ingress-nginx's default annotation prefix.
pub const DEFAULT_PREFIX: &str = "nginx.ingress.kubernetes.io";

impl AnnotationPrefix {
    /// A prefix: a DNS subdomain (what may precede `/` in an annotation
    /// key). A trailing `/` is tolerated.
    pub fn new(prefix: &str) -> Result<Self, ValueError> {
        let p = prefix.strip_suffix('/').unwrap_or(prefix);
        if super::values::is_dns_subdomain(p) {
            Ok(Self(p.to_owned()))
        } else {
            Err(ValueError::Invalid(format!(
                "{prefix:?} is not a valid annotation prefix (a DNS subdomain)"
            )))
        }
    }

    /// The prefix, without the `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `prefix/name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.0)
    }

    /// The name part of `key` if `key` is under this prefix.
    pub fn strip<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.0.as_str())?.strip_prefix('/')
    }
}

impl Default for AnnotationPrefix {
    fn default() -> Self {
        Self(DEFAULT_PREFIX.to_owned())
    }
}

impl fmt::Display for AnnotationPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads one Ingress's annotations.
pub(crate) struct Reader<'a> {
    annotations: &'a BTreeMap<String, String>,
    prefix: &'a AnnotationPrefix,
    /// Problems found so far.
    pub(crate) problems: Vec<AnnotationProblem>,
    /// Values that make ingress-nginx deny the Ingress's locations (503).
    pub(crate) denials: Vec<Denial>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(
        annotations: &'a BTreeMap<String, String>,
        prefix: &'a AnnotationPrefix,
    ) -> Self {
        Self {
            annotations,
            prefix,
            problems: Vec::new(),
            denials: Vec::new(),
        }
    }

    /// The full key and value of `name`, or of an alias of it when `name`
    /// has no (non-empty) value: ingress-nginx's alias rule.
    pub(crate) fn raw(&self, name: &str) -> Option<(String, &'a str)> {
        let own = self
            .annotations
            .get(&self.prefix.key(name))
            .map(String::as_str);
        if let Some(v) = own.filter(|v| !v.is_empty()) {
            return Some((self.prefix.key(name), v));
        }
        for alias in CATALOG.iter().filter(|s| s.alias_of == Some(name)) {
            let key = self.prefix.key(alias.name);
            if let Some(v) = self.annotations.get(&key).filter(|v| !v.is_empty()) {
                return Some((key, v.as_str()));
            }
        }
        own.map(|v| (self.prefix.key(name), v))
    }

    /// Whether `name` (or an alias) is set at all.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.raw(name).is_some()
    }

    /// The parsed value of `name`; `None` when it is absent or invalid (an
    /// invalid value is recorded as a problem and the caller keeps its
    /// default).
    pub(crate) fn get<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, ValueError>,
    ) -> Option<T> {
        let (key, value) = self.raw(name)?;
        match parse(value) {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(key, value, AnnotationProblemKind::InvalidValue(e));
                None
            }
        }
    }

    /// [`Self::get`] for an access-control value: an invalid value also
    /// denies the Ingress (503), as ingress-nginx denies the location rather
    /// than serve it unguarded.
    pub(crate) fn get_guarded<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, ValueError>,
    ) -> Option<T> {
        let (_, value) = self.raw(name)?;
        match parse(value) {
            Ok(v) => Some(v),
            Err(e) => {
                self.deny(name, format!("invalid value {value:?}: {e}"));
                let (key, value) = self.raw(name)?;
                self.push(key, value, AnnotationProblemKind::InvalidValue(e));
                None
            }
        }
    }

    /// [`Self::get`] with a default.
    pub(crate) fn get_or<T>(
        &mut self,
        name: &str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, ValueError>,
    ) -> T {
        self.get(name, parse).unwrap_or(default)
    }

    /// Records a problem against `name` (its value as set, if any).
    pub(crate) fn problem(&mut self, name: &str, kind: AnnotationProblemKind) {
        let (key, value) = self
            .raw(name)
            .map(|(k, v)| (k, v.to_owned()))
            .unwrap_or_else(|| (self.prefix.key(name), String::new()));
        self.problems.push(AnnotationProblem {
            annotation: key,
            value,
            kind,
        });
    }

    /// Records each of `names` that is set as ignored, for `reason`.
    pub(crate) fn ignore_all(&mut self, names: &[&str], reason: &str) {
        for name in names {
            if self.has(name) {
                self.problem(
                    name,
                    AnnotationProblemKind::Ignored {
                        reason: reason.to_owned(),
                    },
                );
            }
        }
    }

    /// Records that ingress-nginx would deny the Ingress's locations (503)
    /// because of `name`'s value.
    pub(crate) fn deny(&mut self, name: &str, reason: String) {
        let annotation = self
            .raw(name)
            .map_or_else(|| self.prefix.key(name), |(k, _)| k);
        self.denials.push(Denial { annotation, reason });
    }

    fn push(&mut self, annotation: String, value: &str, kind: AnnotationProblemKind) {
        self.problems.push(AnnotationProblem {
            annotation,
            value: value.to_owned(),
            kind,
        });
    }

    /// Reports every key under the prefix that is a snippet, unsupported or
    /// unknown (once each, in key order).
    pub(crate) fn report_unusable(&mut self) {
        for (key, value) in self.annotations {
            let Some(name) = self.prefix.strip(key) else {
                continue;
            };
            let kind = match catalog::lookup(name) {
                _ if catalog::is_snippet(name) => AnnotationProblemKind::Snippet,
                Some(s) if s.support == Support::Unsupported => {
                    AnnotationProblemKind::Unsupported { reason: s.note }
                }
                Some(_) => continue,
                None => AnnotationProblemKind::Unknown,
            };
            self.push(key.clone(), value, kind);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn prefix_rules() {
        let p = AnnotationPrefix::new("example.com/").unwrap();
        assert_eq!(p.key("use-regex"), "example.com/use-regex");
        assert_eq!(p.strip("example.com/use-regex"), Some("use-regex"));
        assert_eq!(p.strip("example.community/use-regex"), None);
        assert!(AnnotationPrefix::new("Not A Prefix").is_err());
        assert_eq!(AnnotationPrefix::default().as_str(), DEFAULT_PREFIX);
    }

    #[test]
    fn aliases_fill_in_for_a_missing_or_empty_main_key() {
        let p = AnnotationPrefix::default();
        let a = map(&[(
            "nginx.ingress.kubernetes.io/whitelist-source-range",
            "10.0.0.0/8",
        )]);
        let r = Reader::new(&a, &p);
        let (k, v) = r.raw("allowlist-source-range").unwrap();
        assert_eq!(
            (k.as_str(), v),
            (
                "nginx.ingress.kubernetes.io/whitelist-source-range",
                "10.0.0.0/8"
            )
        );
        let a = map(&[
            (
                "nginx.ingress.kubernetes.io/allowlist-source-range",
                "1.1.1.1",
            ),
            (
                "nginx.ingress.kubernetes.io/whitelist-source-range",
                "10.0.0.0/8",
            ),
        ]);
        assert_eq!(
            Reader::new(&a, &p).raw("allowlist-source-range").unwrap().1,
            "1.1.1.1"
        );
    }

    #[test]
    fn unusable_keys_are_reported() {
        let p = AnnotationPrefix::default();
        let a = map(&[
            (
                "nginx.ingress.kubernetes.io/configuration-snippet",
                "more_set_headers x;",
            ),
            ("nginx.ingress.kubernetes.io/my-own-snippet", "x"),
            ("nginx.ingress.kubernetes.io/ssl-passthrough", "true"),
            ("nginx.ingress.kubernetes.io/no-such-thing", "1"),
            ("nginx.ingress.kubernetes.io/use-regex", "true"),
            ("other.io/whatever", "1"),
        ]);
        let mut r = Reader::new(&a, &p);
        r.report_unusable();
        let kinds: Vec<_> = r
            .problems
            .iter()
            .map(|p| (p.annotation.as_str(), &p.kind))
            .collect();
        assert_eq!(kinds.len(), 4, "{kinds:?}");
        assert_eq!(kinds[0].1, &AnnotationProblemKind::Snippet);
        assert_eq!(kinds[1].1, &AnnotationProblemKind::Snippet);
        assert_eq!(kinds[2].1, &AnnotationProblemKind::Unknown);
        assert!(matches!(
            kinds[3].1,
            AnnotationProblemKind::Unsupported { .. }
        ));
    }
}
