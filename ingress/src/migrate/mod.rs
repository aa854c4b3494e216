//! `sluice-ingress migrate-check`: what changes when ingress-nginx's
//! Ingresses move to sluice-ingress (in its ingress-nginx mode).
//!
//! Per Ingress and per annotation, a [`Status`] taken from the same
//! [`crate::annotations::catalog`] that drives the fail-closed refusal, so
//! the report cannot say "honoured" about what the gateway refuses; per
//! rule, the ingress-nginx path behaviours that make it match differently
//! from what the Ingress specification says (a regex host, an `Exact` path
//! that became a prefix regex, the trailing-slash 301, nginx's string
//! prefixes). Sluice reproduces those behaviours in ingress-nginx mode, so
//! they are reported for information (they do change the match compared
//! with the specification, Sluice's default mode and the Gateway API);
//! everything else that is not [`Status::Honoured`] is a change, and
//! [`Report::changes`] drives the command's exit code.
//!
//! [`check`] is pure: Ingresses (and a ConfigMap's data) in, a [`Report`]
//! out; [`cli`] reads them from the API or a manifest directory.

pub mod cli;
mod render;

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::Ingress;

use crate::annotations::catalog::{self, Support};
use crate::annotations::configmap::SettingProblemKind;
use crate::annotations::{
    self, AnnotationConfig, AnnotationPrefix, AnnotationProblemKind, ControllerSettings,
};
use crate::routes::{BuildOptions, HostPattern, IngressRef, PathType, ProblemKind, build_with};

/// What Sluice does with one annotation or setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Enforced as ingress-nginx does.
    Honoured,
    /// Enforced, with a stated difference.
    HonouredWithDifference,
    /// Parsed, not yet enforced by the gateway.
    NotYetEnforced,
    /// Not supported: ignored.
    Unsupported,
    /// Never supported (snippets).
    Never,
    /// The value is invalid: ignored (access control: refused).
    Invalid,
    /// Valid but without effect here.
    Ignored,
    /// Not an ingress-nginx annotation or key.
    Unknown,
}

impl Status {
    fn of(support: Support) -> Self {
        match support {
            Support::Honoured => Self::Honoured,
            Support::HonouredWithDifference => Self::HonouredWithDifference,
            Support::NotYetEnforced => Self::NotYetEnforced,
            Support::Unsupported => Self::Unsupported,
            Support::Never => Self::Never,
        }
    }

    /// The label in reports.
    pub fn label(self) -> &'static str {
        match self {
            Self::Honoured => "honoured",
            Self::HonouredWithDifference => "honoured, with a difference",
            Self::NotYetEnforced => "parsed, not yet enforced",
            Self::Unsupported => "unsupported",
            Self::Never => "never",
            Self::Invalid => "invalid value",
            Self::Ignored => "ignored",
            Self::Unknown => "unknown",
        }
    }
}

/// One annotation of an Ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationFinding {
    /// The full key.
    pub key: String,
    /// Its value.
    pub value: String,
    /// What Sluice does with it.
    pub status: Status,
    /// Whether it makes Sluice refuse the Ingress (503).
    pub refuses: bool,
    /// The difference, the reason, or the problem.
    pub note: String,
}

/// The ingress-nginx path behaviours that make a rule match differently
/// from the Ingress specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Behaviour {
    /// The rule's host is a regex host: the path is the case-insensitive
    /// regex `^path`, a prefix.
    RegexPath,
    /// As [`Self::RegexPath`], for an `Exact` path: it is no longer exact.
    ExactBecomesRegex,
    /// A `Prefix` path written with a trailing slash: a request without it
    /// gets a 301 to it.
    TrailingSlashRedirect,
    /// `ImplementationSpecific`: nginx's string prefix (`/app` matches
    /// `/apple`).
    StringPrefix,
    /// The path is a regex the `regex` crate cannot run: skipped.
    UnsupportedRegex,
    /// The rule was skipped or ignored (invalid, or a canary without a
    /// primary).
    Skipped,
}

impl Behaviour {
    /// Whether Sluice's ingress-nginx mode does something different from
    /// ingress-nginx for this rule (the others are reproduced).
    pub fn differs_from_ingress_nginx(self) -> bool {
        matches!(self, Self::UnsupportedRegex | Self::Skipped)
    }

    /// A short name.
    pub fn label(self) -> &'static str {
        match self {
            Self::RegexPath => "regex path",
            Self::ExactBecomesRegex => "Exact path becomes a regex",
            Self::TrailingSlashRedirect => "trailing-slash 301",
            Self::StringPrefix => "string prefix",
            Self::UnsupportedRegex => "unsupported regex",
            Self::Skipped => "skipped",
        }
    }
}

/// A rule whose match changes compared with the Ingress specification, or
/// that Sluice cannot serve as ingress-nginx did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BehaviourFinding {
    /// The rule host (`*` for none).
    pub host: String,
    /// The rule path as written.
    pub path: String,
    /// What happens.
    pub behaviour: Behaviour,
    /// Explanation.
    pub note: String,
}

/// Everything about one Ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressReport {
    /// The Ingress.
    pub ingress: IngressRef,
    /// Set when Sluice refuses it (its routes answer 503), with why.
    pub refused: Option<String>,
    /// Its ingress-nginx annotations.
    pub annotations: Vec<AnnotationFinding>,
    /// Its rules whose match changes.
    pub behaviours: Vec<BehaviourFinding>,
}

impl IngressReport {
    /// Whether anything about this Ingress changes with the move.
    pub fn changes(&self) -> bool {
        self.refused.is_some()
            || self
                .annotations
                .iter()
                .any(|a| a.status != Status::Honoured)
            || self
                .behaviours
                .iter()
                .any(|b| b.behaviour.differs_from_ingress_nginx())
    }
}

/// A ConfigMap key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingFinding {
    /// The key.
    pub key: String,
    /// Its value.
    pub value: String,
    /// What Sluice does with it.
    pub status: Status,
    /// The difference, the reason, or the problem.
    pub note: String,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// The annotation prefix read.
    pub prefix: String,
    /// One entry per Ingress checked, sorted.
    pub ingresses: Vec<IngressReport>,
    /// The ConfigMap's keys, when one was given.
    pub settings: Vec<SettingFinding>,
}

impl Report {
    /// Whether anything would change: the exit code of `migrate-check`.
    pub fn changes(&self) -> bool {
        self.ingresses.iter().any(IngressReport::changes)
            || self.settings.iter().any(|s| s.status != Status::Honoured)
    }
}

/// Checks `ingresses` (with the ingress-nginx ConfigMap's `data`, if any)
/// under annotation `prefix`.
pub fn check(
    ingresses: &[Ingress],
    configmap: Option<&BTreeMap<String, String>>,
    prefix: &AnnotationPrefix,
) -> Report {
    let (settings, setting_findings) = match configmap {
        Some(data) => {
            let (s, problems) = ControllerSettings::from_configmap(data);
            (s, setting_report(data, &problems))
        }
        None => (ControllerSettings::default(), Vec::new()),
    };
    let config = AnnotationConfig {
        prefix: prefix.clone(),
        settings,
    };
    let out = build_with(
        ingresses,
        &BuildOptions {
            ingress_nginx: Some(config.clone()),
        },
    );
    let mut reports: Vec<IngressReport> = ingresses
        .iter()
        .filter_map(|ing| {
            let name = ing.metadata.name.clone()?;
            let ns = ing.metadata.namespace.as_deref().unwrap_or("default");
            Some(ingress_report(
                IngressRef::new(ns, name),
                ing,
                &config,
                &out.table,
            ))
        })
        .collect();
    for p in &out.problems {
        let behaviour = match &p.kind {
            ProblemKind::UnsupportedRegex { .. } => Behaviour::UnsupportedRegex,
            ProblemKind::Annotation(_) | ProblemKind::Refused(_) => continue,
            _ => Behaviour::Skipped,
        };
        if let Some(r) = reports.iter_mut().find(|r| r.ingress == p.ingress) {
            r.behaviours.push(BehaviourFinding {
                host: String::new(),
                path: p.field.clone(),
                behaviour,
                note: p.kind.to_string(),
            });
        }
    }
    reports.sort_by(|a, b| a.ingress.cmp(&b.ingress));
    Report {
        prefix: prefix.to_string(),
        ingresses: reports,
        settings: setting_findings,
    }
}

fn ingress_report(
    me: IngressRef,
    ing: &Ingress,
    config: &AnnotationConfig,
    table: &crate::routes::RouteTable,
) -> IngressReport {
    let empty = BTreeMap::new();
    let map = ing.metadata.annotations.as_ref().unwrap_or(&empty);
    let parsed = annotations::parse(map, &me.namespace, config);
    let annotations = map
        .iter()
        .filter_map(|(key, value)| {
            let name = config.prefix.strip(key)?;
            let problem = parsed
                .problems
                .iter()
                .find(|p| &p.annotation == key && p.kind != AnnotationProblemKind::NotEnforced);
            let spec = catalog::lookup(name);
            let (status, note) = match (problem.map(|p| &p.kind), spec) {
                (Some(AnnotationProblemKind::InvalidValue(e)), _) => {
                    (Status::Invalid, e.to_string())
                }
                (Some(AnnotationProblemKind::Ignored { reason }), _) => {
                    (Status::Ignored, reason.clone())
                }
                (Some(AnnotationProblemKind::Snippet), _) => {
                    (Status::Never, catalog::SNIPPET_REASON.to_owned())
                }
                (Some(AnnotationProblemKind::Unknown), _) | (_, None) => (
                    Status::Unknown,
                    "not an ingress-nginx annotation".to_owned(),
                ),
                (_, Some(s)) => (Status::of(s.support), s.note.to_owned()),
            };
            Some(AnnotationFinding {
                key: key.clone(),
                value: value.clone(),
                status,
                refuses: spec.is_some_and(|s| s.refuses()),
                note,
            })
        })
        .collect();
    IngressReport {
        refused: parsed.refusal.as_ref().map(ToString::to_string),
        behaviours: behaviours(ing, &parsed.policy, table),
        annotations,
        ingress: me,
    }
}

fn behaviours(
    ing: &Ingress,
    policy: &annotations::IngressPolicy,
    table: &crate::routes::RouteTable,
) -> Vec<BehaviourFinding> {
    let mut out = Vec::new();
    if policy.canary.is_some() {
        return out;
    }
    for rule in ing.spec.iter().flat_map(|s| s.rules.iter().flatten()) {
        let host = rule.host.clone().filter(|h| !h.is_empty());
        // A host that does not parse is reported by the build.
        if host
            .as_deref()
            .is_some_and(|h| HostPattern::parse(h).is_err())
        {
            continue;
        }
        let host_label = host.clone().unwrap_or_else(|| "*".to_owned());
        let probe = match host.as_deref() {
            Some(h) => h
                .strip_prefix("*.")
                .map_or_else(|| h.to_owned(), |p| format!("x.{p}")),
            None => String::new(),
        };
        let regex_host = table.is_regex_host(&probe);
        for p in rule.http.iter().flat_map(|h| h.paths.iter()) {
            let path = p.path.clone().unwrap_or_default();
            let Some(ty) = PathType::parse(&p.path_type) else {
                continue;
            };
            let (behaviour, note) = if regex_host {
                let cause = if policy.paths.forces_regex(&path) {
                    "this Ingress has use-regex or rewrite-target"
                } else {
                    "another Ingress of the host has use-regex or rewrite-target"
                };
                let b = if ty == PathType::Exact {
                    Behaviour::ExactBecomesRegex
                } else {
                    Behaviour::RegexPath
                };
                (
                    b,
                    format!("matched as the case-insensitive prefix regex ^{path} ({cause})"),
                )
            } else if ty == PathType::Prefix && path.len() > 1 && path.ends_with('/') {
                let bare = &path[..path.len() - 1];
                (
                    Behaviour::TrailingSlashRedirect,
                    format!("a request for {bare} gets a 301 to {path}"),
                )
            } else if ty == PathType::ImplementationSpecific
                && path.len() > 1
                && !path.ends_with('/')
            {
                (
                    Behaviour::StringPrefix,
                    format!(
                        "nginx string prefix: {path} also matches {path}x, not only {path}/..."
                    ),
                )
            } else {
                continue;
            };
            out.push(BehaviourFinding {
                host: host_label.clone(),
                path,
                behaviour,
                note,
            });
        }
    }
    out
}

fn setting_report(
    data: &BTreeMap<String, String>,
    problems: &[crate::annotations::SettingProblem],
) -> Vec<SettingFinding> {
    use crate::annotations::configmap::SETTINGS;
    data.iter()
        .map(|(key, value)| {
            let problem = problems.iter().find(|p| &p.key == key);
            let spec = SETTINGS.iter().find(|s| s.key == key);
            let (status, note) = match (problem.map(|p| &p.kind), spec) {
                (Some(SettingProblemKind::InvalidValue(e)), _) => (Status::Invalid, e.to_string()),
                (Some(SettingProblemKind::NotRead), _) | (_, None) => {
                    (Status::Unsupported, "not read by sluice-ingress".to_owned())
                }
                (_, Some(s)) => {
                    let mut note = s.note.to_owned();
                    if s.refuses() {
                        note.push_str("; the Ingresses it applies to are refused (503)");
                    }
                    (Status::of(s.support), note)
                }
            };
            SettingFinding {
                key: key.clone(),
                value: value.clone(),
                status,
                note,
            }
        })
        .collect()
}
