//! IngressClass selection: which Ingresses Sluice handles.
//!
//! Our classes are the IngressClasses whose `spec.controller` equals the
//! configured controller name ([`DEFAULT_CONTROLLER`] unless configured).
//! An Ingress is ours when, in this order:
//!
//! 1. its legacy [`LEGACY_CLASS_ANNOTATION`] is set (non-empty): ours iff it
//!    names one of our classes; it takes precedence over
//!    `spec.ingressClassName`, as the API requires;
//! 2. else `spec.ingressClassName` is set (non-empty): ours iff it names one
//!    of our classes;
//! 3. else (no class at all): ours iff one of our classes is marked
//!    [`DEFAULT_CLASS_ANNOTATION`]` = "true"` or `watch_ingress_without_class`
//!    is on.
//!
//! Ingresses of other classes are ignored entirely (no routes, no events).
//! An IngressClass being deleted (`deletionTimestamp` set) still counts
//! until it is gone: removing it must not flap routes before the Ingresses
//! are updated.

use std::collections::HashSet;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

/// The controller name Sluice answers to by default.
pub const DEFAULT_CONTROLLER: &str = "sluice.dev/ingress-controller";

/// The legacy class annotation on Ingresses.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// The annotation marking an IngressClass as the cluster default.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// Whether an Ingress is ours, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// The legacy annotation names one of our classes.
    OursByAnnotation,
    /// `spec.ingressClassName` names one of our classes.
    OursByClassName,
    /// No class; one of our classes is the default.
    OursByDefaultClass,
    /// No class; `watch_ingress_without_class` is on.
    OursWithoutClass,
    /// The legacy annotation names a class that is not ours.
    OtherByAnnotation,
    /// `spec.ingressClassName` names a class that is not ours.
    OtherByClassName,
    /// No class, no default class of ours, and the flag is off.
    NoClass,
}

impl Selection {
    /// Whether Sluice handles the Ingress.
    pub fn is_ours(self) -> bool {
        matches!(
            self,
            Self::OursByAnnotation
                | Self::OursByClassName
                | Self::OursByDefaultClass
                | Self::OursWithoutClass
        )
    }
}

/// Decides which Ingresses are ours, from a snapshot of IngressClasses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassSelector {
    our_classes: HashSet<String>,
    have_default: bool,
    watch_ingress_without_class: bool,
}

impl ClassSelector {
    /// Builds a selector for `controller` (e.g. [`DEFAULT_CONTROLLER`]) from
    /// the current IngressClasses.
    pub fn new<'a>(
        controller: &str,
        watch_ingress_without_class: bool,
        classes: impl IntoIterator<Item = &'a IngressClass>,
    ) -> Self {
        let mut our_classes = HashSet::new();
        let mut have_default = false;
        for class in classes {
            let ours = class
                .spec
                .as_ref()
                .and_then(|s| s.controller.as_deref())
                .is_some_and(|c| c == controller);
            let Some(name) = class.metadata.name.as_deref().filter(|n| !n.is_empty()) else {
                continue;
            };
            if !ours {
                continue;
            }
            our_classes.insert(name.to_owned());
            have_default |= class
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true");
        }
        Self {
            our_classes,
            have_default,
            watch_ingress_without_class,
        }
    }

    /// Whether `name` is one of our IngressClasses.
    pub fn is_our_class(&self, name: &str) -> bool {
        self.our_classes.contains(name)
    }

    /// Whether one of our classes is the cluster default.
    pub fn has_default_class(&self) -> bool {
        self.have_default
    }

    /// Classifies an Ingress.
    pub fn select(&self, ingress: &Ingress) -> Selection {
        let legacy = ingress
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty());
        if let Some(class) = legacy {
            return if self.is_our_class(class) {
                Selection::OursByAnnotation
            } else {
                Selection::OtherByAnnotation
            };
        }
        let by_name = ingress
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref())
            .filter(|v| !v.is_empty());
        if let Some(class) = by_name {
            return if self.is_our_class(class) {
                Selection::OursByClassName
            } else {
                Selection::OtherByClassName
            };
        }
        if self.have_default {
            Selection::OursByDefaultClass
        } else if self.watch_ingress_without_class {
            Selection::OursWithoutClass
        } else {
            Selection::NoClass
        }
    }

    /// Whether Sluice handles the Ingress.
    pub fn is_ours(&self, ingress: &Ingress) -> bool {
        self.select(ingress).is_ours()
    }

    /// The Ingresses that are ours, in input order (feed to
    /// [`crate::routes::build::build`]).
    pub fn filter<'a>(
        &'a self,
        ingresses: impl IntoIterator<Item = &'a Ingress> + 'a,
    ) -> impl Iterator<Item = &'a Ingress> + 'a {
        ingresses.into_iter().filter(|i| self.is_ours(i))
    }
}
