//! Fail closed: never serve openly what ingress-nginx served closed.
//!
//! An Ingress carrying an access-control annotation (`auth-*`,
//! `*-source-range`, `auth-tls-*`, `limit-*`) that the gateway does not
//! enforce, or covered by such a ConfigMap key (global allow or deny list,
//! `global-auth-url`, block lists), is refused: its routes stay in the
//! table and answer **503** with the reason, and a Warning Event says why.
//! 503 rather than leaving the routes out, because a left-out path would
//! fall through to another rule of the host (often `/`) and be served by
//! the wrong backend without the guard; 503 is also what ingress-nginx
//! answers for a location whose access-control value it cannot use.
//!
//! Which annotations are enforced comes from [`super::catalog`] alone
//! ([`AnnotationSpec::refuses`]); flipping an entry to enforced is what
//! lets such Ingresses through. The annotation's value does not matter:
//! present is enough (ingress-nginx denies empty and invalid values too).
//! Client-certificate annotations (`auth-tls-*`) apply to the whole host in
//! ingress-nginx, so they refuse every route of the host.

use std::collections::BTreeMap;
use std::fmt;

use super::catalog::{self, AnnotationSpec, Scope};
use super::configmap::ControllerSettings;
use super::reader::AnnotationPrefix;

/// One reason an Ingress is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusalCause {
    /// An annotation of the Ingress (full key).
    Annotation {
        /// The full key.
        key: String,
        /// Its catalog entry.
        spec: &'static AnnotationSpec,
    },
    /// A ConfigMap key covering the Ingress.
    Setting(&'static str),
}

impl RefusalCause {
    /// Whether the refusal covers every route of the Ingress's hosts
    /// (ingress-nginx applies it per server).
    pub fn host_wide(&self) -> bool {
        matches!(self, Self::Annotation { spec, .. } if spec.scope == Scope::Host)
    }
}

impl fmt::Display for RefusalCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Annotation { key, .. } => write!(f, "annotation {key}"),
            Self::Setting(k) => write!(f, "ConfigMap key {k}"),
        }
    }
}

/// Why an Ingress is refused: every unenforced access control that covers
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The causes, annotations first (in key order), then ConfigMap keys.
    pub causes: Vec<RefusalCause>,
}

impl Refusal {
    /// Whether some cause covers every route of the Ingress's hosts.
    pub fn host_wide(&self) -> bool {
        self.causes.iter().any(RefusalCause::host_wide)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "refused (routes answer 503): access control not enforced by sluice-ingress yet: ",
        )?;
        for (i, c) in self.causes.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// Whether an Ingress with these annotations must be refused, and why.
/// `None`: nothing unenforced guards it.
pub fn check(
    annotations: &BTreeMap<String, String>,
    prefix: &AnnotationPrefix,
    settings: &ControllerSettings,
) -> Option<Refusal> {
    let mut causes: Vec<RefusalCause> = annotations
        .keys()
        .filter_map(|key| {
            let spec = catalog::lookup(prefix.strip(key)?)?;
            spec.refuses().then(|| RefusalCause::Annotation {
                key: key.clone(),
                spec,
            })
        })
        .collect();
    let global_auth_off = annotations
        .get(&prefix.key("enable-global-auth"))
        .is_some_and(|v| super::values::parse_bool(v) == Ok(false));
    for key in &settings.guards_set {
        if *key == "global-auth-url" && global_auth_off {
            continue;
        }
        causes.push(RefusalCause::Setting(key));
    }
    (!causes.is_empty()).then_some(Refusal { causes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), v.to_string()))
            .collect()
    }

    fn refused(kv: &[(&str, &str)], settings: &ControllerSettings) -> Option<Refusal> {
        check(&ann(kv), &AnnotationPrefix::default(), settings)
    }

    #[test]
    fn every_guard_refuses_whatever_its_value() {
        let s = ControllerSettings::default();
        for spec in catalog::CATALOG.iter().filter(|s| s.refuses()) {
            for value in ["", "garbage", "10.0.0.0/8"] {
                let r = refused(&[(spec.name, value)], &s)
                    .unwrap_or_else(|| panic!("{} = {value:?} must refuse", spec.name));
                assert_eq!(
                    r.host_wide(),
                    spec.name.starts_with("auth-tls-"),
                    "{}",
                    spec.name
                );
            }
        }
    }

    #[test]
    fn other_annotations_and_prefixes_do_not_refuse() {
        let s = ControllerSettings::default();
        assert_eq!(
            refused(
                &[
                    ("rewrite-target", "/"),
                    ("auth-snippet", "x"),
                    ("enable-global-auth", "false")
                ],
                &s
            ),
            None
        );
        let other_prefix = [("example.com/limit-rps".to_owned(), "5".to_owned())].into();
        assert_eq!(check(&other_prefix, &AnnotationPrefix::default(), &s), None);
        let custom = AnnotationPrefix::new("example.com").unwrap();
        assert!(check(&other_prefix, &custom, &s).is_some());
    }

    #[test]
    fn configmap_guards_refuse_every_ingress() {
        let (s, _) = ControllerSettings::from_configmap(
            &[("global-auth-url".to_owned(), "http://auth/".to_owned())].into(),
        );
        let r = refused(&[], &s).expect("global auth refuses");
        assert_eq!(r.causes, vec![RefusalCause::Setting("global-auth-url")]);
        assert!(r.to_string().contains("ConfigMap key global-auth-url"));
        assert_eq!(refused(&[("enable-global-auth", "false")], &s), None);
        let (s, _) = ControllerSettings::from_configmap(
            &[("block-cidrs".to_owned(), "1.2.3.4".to_owned())].into(),
        );
        assert!(refused(&[("enable-global-auth", "false")], &s).is_some());
    }
}
