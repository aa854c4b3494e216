//! What can be wrong with an annotation (or a ConfigMap key). Every
//! [`AnnotationProblem`] becomes one log line and one Warning Event on the
//! Ingress; none stops the rest of the Ingress from being served, except
//! [`AnnotationProblemKind::NotEnforced`], which refuses it (fail closed).

use std::fmt;

use super::values::ValueError;

/// A problem with one annotation of one Ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationProblem {
    /// The full annotation key (with its prefix).
    pub annotation: String,
    /// The value as written.
    pub value: String,
    /// What is wrong, and what happens because of it.
    pub kind: AnnotationProblemKind,
}

/// What is wrong with an annotation, and what Sluice does about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnnotationProblemKind {
    /// The value is invalid: the annotation is ignored and its default kept,
    /// as ingress-nginx does (an invalid access-control value still refuses
    /// the Ingress, see [`Self::NotEnforced`]).
    InvalidValue(ValueError),
    /// A `*-snippet`: raw nginx configuration, never accepted. The rest of
    /// the Ingress is served.
    Snippet,
    /// Recognised but not supported (the annotation, or this value of it):
    /// ignored.
    Unsupported {
        /// Why, for the operator.
        reason: &'static str,
    },
    /// An access-control annotation the gateway does not enforce yet: the
    /// Ingress's routes answer 503 rather than serve openly what
    /// ingress-nginx served closed.
    NotEnforced,
    /// Valid, but without effect here (it depends on another annotation
    /// that is missing, or conflicts with one).
    Ignored {
        /// Why.
        reason: String,
    },
    /// A key under the annotation prefix that ingress-nginx does not define.
    Unknown,
}

impl fmt::Display for AnnotationProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, v) = (&self.annotation, &self.value);
        match &self.kind {
            AnnotationProblemKind::InvalidValue(e) => write!(
                f,
                "annotation {a}: invalid value {v:?} ({e}); ignored, the default applies"
            ),
            AnnotationProblemKind::Snippet => write!(
                f,
                "annotation {a}: snippets (raw nginx configuration) are never supported; \
                 ignored, the rest of the Ingress is served"
            ),
            AnnotationProblemKind::Unsupported { reason } => {
                write!(f, "annotation {a}: not supported ({reason}); ignored")
            }
            AnnotationProblemKind::NotEnforced => write!(
                f,
                "annotation {a}: access control that sluice-ingress does not enforce yet; \
                 the Ingress's routes answer 503 instead of serving without it"
            ),
            AnnotationProblemKind::Ignored { reason } => {
                write!(f, "annotation {a}: {reason}; ignored")
            }
            AnnotationProblemKind::Unknown => {
                write!(f, "annotation {a}: unknown to ingress-nginx; ignored")
            }
        }
    }
}
