//! ingress-nginx's annotations and ConfigMap, typed.
//!
//! Every `nginx.ingress.kubernetes.io/*` annotation (the prefix is
//! configurable, as ingress-nginx's `--annotations-prefix`) is parsed once,
//! when the route table is built, into an [`IngressPolicy`]: typed values
//! with ingress-nginx's defaults, units, status codes and header names.
//! Nothing is parsed per request and nothing is ever rendered into text
//! that another program reads.
//!
//! Outcome per annotation: its parsed value, or an [`AnnotationProblem`]
//! (one Warning Event each):
//!
//! * an invalid value is ignored and the default kept, as ingress-nginx
//!   does; an invalid *access-control* value instead denies the Ingress
//!   ([`Denial`], 503), as ingress-nginx denies the location;
//! * any `*-snippet` is refused ("never"); the rest of the Ingress is
//!   served;
//! * an access-control annotation the gateway does not enforce refuses the
//!   Ingress ([`fail_closed`]);
//! * unsupported and unknown annotations are reported and ignored.
//!
//! The groups: [`paths`], [`redirects`], [`limits`], [`backend`],
//! [`affinity`], [`canary`], [`access`], [`cors`], [`errors`]; the
//! controller-wide settings in [`configmap`]; what Sluice does with each
//! annotation in [`catalog`], the single table the fail-closed check,
//! `migrate-check` and the migration docs read.

pub mod access;
pub mod affinity;
pub mod backend;
pub mod canary;
pub mod catalog;
pub mod configmap;
pub mod cors;
pub mod errors;
pub mod fail_closed;
pub mod limits;
pub mod paths;
pub mod problem;
mod reader;
pub mod redirects;
pub mod values;

use std::collections::BTreeMap;
use std::fmt;

pub use catalog::{AnnotationSpec, CATALOG, Support};
pub use configmap::{ControllerSettings, SettingProblem};
pub use fail_closed::{Refusal, RefusalCause};
pub use problem::{AnnotationProblem, AnnotationProblemKind};
pub use reader::{AnnotationPrefix, DEFAULT_PREFIX};
pub use values::ValueError;

use reader::Reader;

/// A value that makes ingress-nginx deny an Ingress's locations (503),
/// kept as such: an access-control value that cannot be used, or an
/// access-control annotation Sluice does not enforce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The annotation (full key) or ConfigMap key responsible.
    pub annotation: String,
    /// Why.
    pub reason: String,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.annotation, self.reason)
    }
}

/// Everything the annotations of one Ingress say, typed. The default is an
/// Ingress without annotations under default settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IngressPolicy {
    /// Paths and rewrites.
    pub paths: paths::PathPolicy,
    /// Redirects.
    pub redirects: redirects::RedirectPolicy,
    /// Body size, timeouts, retries, rate limits.
    pub limits: limits::LimitPolicy,
    /// Protocol, upstream TLS, balancing.
    pub backend: backend::BackendPolicy,
    /// Cookie affinity (`affinity: cookie`).
    pub affinity: Option<affinity::CookieAffinity>,
    /// The canary policy, when this is a canary Ingress.
    pub canary: Option<canary::CanaryPolicy>,
    /// Source ranges and authentication.
    pub access: access::AccessPolicy,
    /// CORS (`enable-cors`).
    pub cors: Option<cors::Cors>,
    /// Custom errors.
    pub errors: errors::ErrorPolicy,
    /// Logging.
    pub logs: errors::LogPolicy,
    /// Why the Ingress's routes answer 503 instead of proxying; empty when
    /// they proxy.
    pub denials: Vec<Denial>,
    /// Whether a denial covers every route of the Ingress's hosts
    /// (client-certificate annotations apply per host).
    pub denied_host_wide: bool,
}

impl IngressPolicy {
    /// The default policy, shared (what routes carry when annotations are
    /// not read).
    pub fn shared_default() -> std::sync::Arc<Self> {
        static DEFAULT: std::sync::OnceLock<std::sync::Arc<IngressPolicy>> =
            std::sync::OnceLock::new();
        DEFAULT
            .get_or_init(|| std::sync::Arc::new(Self::default()))
            .clone()
    }

    /// Whether the Ingress's routes answer 503.
    pub fn is_denied(&self) -> bool {
        !self.denials.is_empty()
    }
}

/// How annotations are read: the prefix and the controller-wide settings
/// that give the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AnnotationConfig {
    /// The annotation prefix.
    pub prefix: AnnotationPrefix,
    /// The ConfigMap settings.
    pub settings: ControllerSettings,
}

/// An Ingress's policy and the problems found reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedIngress {
    /// The policy.
    pub policy: IngressPolicy,
    /// One Warning each.
    pub problems: Vec<AnnotationProblem>,
    /// Set when the Ingress is refused (fail closed).
    pub refusal: Option<Refusal>,
}

/// Parses an Ingress's annotations (`metadata.annotations`) for an Ingress
/// in `namespace`.
pub fn parse(
    annotations: &BTreeMap<String, String>,
    namespace: &str,
    config: &AnnotationConfig,
) -> ParsedIngress {
    let settings = &config.settings;
    let mut r = Reader::new(annotations, &config.prefix);
    r.report_unusable();
    let mut policy = IngressPolicy {
        paths: paths::PathPolicy::parse(&mut r, settings),
        redirects: redirects::RedirectPolicy::parse(&mut r, settings),
        limits: limits::LimitPolicy::parse(&mut r, settings),
        backend: backend::BackendPolicy::parse(&mut r, settings, namespace),
        affinity: affinity::CookieAffinity::parse(&mut r),
        canary: canary::CanaryPolicy::parse(&mut r),
        access: access::AccessPolicy::parse(&mut r, settings, namespace),
        cors: cors::Cors::parse(&mut r),
        errors: errors::ErrorPolicy::parse(&mut r, settings),
        logs: errors::LogPolicy::parse(&mut r, settings),
        denials: Vec::new(),
        denied_host_wide: false,
    };
    let refusal = fail_closed::check(annotations, &config.prefix, settings);
    if let Some(refusal) = &refusal {
        for cause in &refusal.causes {
            if let RefusalCause::Annotation { key, .. } = cause {
                r.problems.push(AnnotationProblem {
                    annotation: key.clone(),
                    value: annotations.get(key).cloned().unwrap_or_default(),
                    kind: AnnotationProblemKind::NotEnforced,
                });
            }
            r.denials.push(Denial {
                annotation: cause.to_string(),
                reason: "access control not enforced by sluice-ingress yet".into(),
            });
        }
        policy.denied_host_wide = refusal.host_wide();
    }
    policy.denials = r.denials;
    ParsedIngress {
        policy,
        problems: r.problems,
        refusal,
    }
}

#[cfg(test)]
mod tests;
