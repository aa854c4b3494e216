//! Kubernetes objects → [`RouteTable`], with conflict and problem reports.
//!
//! [`build`] takes the Ingresses that are ours (see
//! [`crate::routes::class`]) and never fails or panics: whatever is invalid
//! is skipped and reported as a [`Problem`], everything else keeps working.
//!
//! **Order.** Ingresses are processed oldest first: by
//! `metadata.creationTimestamp` (objects without one, e.g. from manifests,
//! come after all that have one), then by namespace, then name. Input order
//! never matters.
//!
//! **Merging and conflicts.** Rules for one host from several Ingresses
//! merge. The same host + path + effective match kind (`Exact`, or
//! `Prefix` = `Prefix`/`ImplementationSpecific`) defined twice: the oldest
//! Ingress wins, the other gets a [`Conflict`] (also when both are in the
//! same Ingress; then the first in document order wins). The same holds for
//! a host's TLS entry and for `spec.defaultBackend` (one default backend for
//! the whole table: the oldest Ingress's).
//!
//! **Skipped with a [`Problem`]:** an Ingress without `metadata.name`; a
//! rule with an invalid host (bare `*`, misplaced `*`, an IP, a port,
//! non-DNS-1123 labels; see [`crate::routes::host`]); a path with a
//! missing or unknown `pathType` or an invalid path (see
//! [`crate::routes::path`]); a backend with both or neither of
//! `service`/`resource`, a service without port or with both or neither of
//! port `name`/`number` (empty name and 0 count as unset, as in the API),
//! a port number outside 1–65535, an empty service name, resource kind or
//! name; an invalid TLS host; an annotation with a value Sluice does not
//! understand (the default then applies). A missing namespace is taken as
//! `default`, as kubectl does.
//!
//! **TLS.** `spec.tls[].hosts` entries (precise or wildcard) map to the
//! entry's `secretName` in the Ingress's namespace; an entry without
//! `hosts` covers every valid host of the same Ingress's rules; an empty or
//! missing `secretName` means "TLS with the gateway's default certificate".
//!
//! **Annotations** (all prefixed `sluice.dev/`):
//!
//! * [`SSL_REDIRECT_ANNOTATION`] `sluice.dev/ssl-redirect`: `"true"`
//!   (default) or `"false"`. When the request host has TLS, plain-HTTP
//!   requests routed to this Ingress's rules get a 308 to HTTPS unless it
//!   is `"false"`.
//!
//! **ingress-nginx mode** ([`build_with`] with
//! [`BuildOptions::ingress_nginx`]): each Ingress's ingress-nginx
//! annotations are parsed once into its [`IngressPolicy`] (problems become
//! [`ProblemKind::Annotation`]; a refused Ingress gets one
//! [`ProblemKind::Refused`]), and paths follow ingress-nginx's locations
//! instead of the Ingress specification: see [`crate::routes::nginx`] and
//! `nginx_build.rs` (conflicts there are host + path as written + path
//! type, as in ingress-nginx; canary Ingresses add no route of their own).

use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use k8s_openapi::jiff::Timestamp;

use crate::annotations::{
    self, AnnotationConfig, AnnotationProblem, AnnotationProblemKind, IngressPolicy, Refusal,
};

use super::host::{HostError, HostPattern};
use super::nginx_build::NginxBuild;
use super::path::{self, MatchKind, PathError, PathType};
use super::table::{
    Backend, CanaryRoute, DefaultRoute, HostRoutes, IngressRef, Map, NginxTable, PortRef, Route,
    RouteTable, SecretRef, TlsHost,
};

/// How [`build_with`] reads Ingresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildOptions {
    /// ingress-nginx mode: read its annotations (with this prefix and these
    /// ConfigMap settings) and match paths as its nginx locations do.
    /// `None` (the default): the Ingress specification's semantics, and
    /// only `sluice.dev/` annotations.
    pub ingress_nginx: Option<AnnotationConfig>,
}

/// Per-Ingress opt-out of the HTTP → HTTPS redirect: `"false"` disables it.
pub const SSL_REDIRECT_ANNOTATION: &str = "sluice.dev/ssl-redirect";

/// What [`build`] produces.
#[derive(Debug, Clone, Default)]
pub struct BuildOutput {
    /// The route table.
    pub table: RouteTable,
    /// Rules that lost to an older Ingress (one Warning Event each).
    pub conflicts: Vec<Conflict>,
    /// Parts of Ingresses that were skipped as invalid.
    pub problems: Vec<Problem>,
}

/// Something two Ingresses both claimed; the older one won.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The Ingress whose definition is used.
    pub winner: IngressRef,
    /// The Ingress whose definition was ignored.
    pub loser: IngressRef,
    /// What was claimed twice.
    pub kind: ConflictKind,
}

/// What was claimed twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConflictKind {
    /// A host + path + path type.
    Path {
        /// The rule host; `None` for host-less rules.
        host: Option<HostPattern>,
        /// The canonical rule path.
        path: String,
        /// The loser's declared path type.
        path_type: PathType,
    },
    /// The TLS entry of a host.
    Tls {
        /// The TLS host.
        host: HostPattern,
    },
    /// `spec.defaultBackend`.
    DefaultBackend,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (winner, loser) = (&self.winner, &self.loser);
        match &self.kind {
            ConflictKind::Path {
                host,
                path,
                path_type,
            } => {
                let host = host
                    .as_ref()
                    .map_or_else(|| "*".to_owned(), |h| h.to_string());
                write!(
                    f,
                    "host {host:?} path {path:?} ({path_type}) is already defined in ingress \
                     {winner}; the rule in {loser} is ignored"
                )
            }
            ConflictKind::Tls { host } => write!(
                f,
                "TLS for host \"{host}\" is already defined in ingress {winner}; the entry in \
                 {loser} is ignored"
            ),
            ConflictKind::DefaultBackend => write!(
                f,
                "the default backend is already defined by ingress {winner}; the one in {loser} \
                 is ignored"
            ),
        }
    }
}

/// A part of an Ingress that was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The Ingress.
    pub ingress: IngressRef,
    /// The field, e.g. `spec.rules[0].http.paths[2]`.
    pub field: String,
    /// What is wrong.
    pub kind: ProblemKind,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ingress {}: {}: {}", self.ingress, self.field, self.kind)
    }
}

/// What is wrong with a part of an Ingress.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProblemKind {
    /// The object has no `metadata.name`; it is ignored entirely.
    #[error("ingress has no name")]
    MissingName,
    /// An invalid rule host; the rule is skipped.
    #[error("invalid host {host:?}: {error}")]
    InvalidHost {
        /// The host as written.
        host: String,
        /// Why.
        error: HostError,
    },
    /// A missing or unknown `pathType`; the path is skipped.
    #[error("invalid pathType {0:?} (want Exact, Prefix or ImplementationSpecific)")]
    InvalidPathType(String),
    /// An invalid path; the path is skipped.
    #[error("invalid path {path:?}: {error}")]
    InvalidPath {
        /// The path as written (empty when missing).
        path: String,
        /// Why.
        error: PathError,
    },
    /// An invalid backend; the path (or default backend) is skipped.
    #[error("invalid backend: {0}")]
    InvalidBackend(BackendError),
    /// An invalid `spec.tls[].hosts` entry; that host gets no TLS from it.
    #[error("invalid TLS host {host:?}: {error}")]
    InvalidTlsHost {
        /// The host as written.
        host: String,
        /// Why.
        error: HostError,
    },
    /// An annotation value Sluice does not understand; its default applies.
    #[error("invalid value {value:?} for annotation {key} (want \"true\" or \"false\")")]
    InvalidAnnotation {
        /// Annotation key.
        key: String,
        /// Its value.
        value: String,
    },
    /// An ingress-nginx annotation problem (invalid value, snippet,
    /// unsupported, ignored, unknown).
    #[error("{0}")]
    Annotation(AnnotationProblem),
    /// The Ingress is refused (fail closed): its routes answer 503.
    #[error("{0}")]
    Refused(Refusal),
    /// A regex path the `regex` crate cannot run (look-around,
    /// back-references, too large); the path is skipped.
    #[error(
        "path {path:?} is a regular expression sluice-ingress cannot run ({error}); the path is skipped"
    )]
    UnsupportedRegex {
        /// The path.
        path: String,
        /// The regex crate's error.
        error: String,
    },
    /// Something valid that has no effect (a canary without a primary, an
    /// alias that is taken).
    #[error("{0}")]
    Ignored(String),
}

/// Why a backend was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// Both `service` and `resource`.
    #[error("both service and resource are set")]
    BothServiceAndResource,
    /// Neither `service` nor `resource`.
    #[error("neither service nor resource is set")]
    NeitherServiceNorResource,
    /// `service.name` is empty.
    #[error("service name is empty")]
    EmptyServiceName,
    /// `service.port` is missing.
    #[error("service port is missing")]
    MissingPort,
    /// Both `port.name` and `port.number`.
    #[error("service port has both name and number")]
    BothPortNameAndNumber,
    /// Neither `port.name` nor `port.number`.
    #[error("service port has neither name nor number")]
    NeitherPortNameNorNumber,
    /// `port.number` outside 1–65535.
    #[error("service port number {0} is out of range 1-65535")]
    PortOutOfRange(i32),
    /// `resource.kind` or `resource.name` is empty.
    #[error("resource kind and name must be set")]
    IncompleteResource,
}

/// Builds the route table from the Ingresses that are ours. See the module
/// docs for the rules.
pub fn build<'a>(ingresses: impl IntoIterator<Item = &'a Ingress>) -> BuildOutput {
    build_with(ingresses, &BuildOptions::default())
}

/// [`build`] with options (ingress-nginx mode).
pub fn build_with<'a>(
    ingresses: impl IntoIterator<Item = &'a Ingress>,
    options: &BuildOptions,
) -> BuildOutput {
    let mut b = Builder {
        nginx: options.ingress_nginx.clone().map(NginxBuild::new),
        ..Builder::default()
    };
    let mut ordered: Vec<(AgeKey, &Ingress)> = Vec::new();
    for ing in ingresses {
        let namespace = ing.metadata.namespace.as_deref().unwrap_or("default");
        match ing.metadata.name.as_deref() {
            Some(name) if !name.is_empty() => {
                let created = ing.metadata.creation_timestamp.as_ref().map(|t| t.0);
                let key = AgeKey {
                    no_timestamp: created.is_none(),
                    created,
                    ingress: IngressRef::new(namespace, name),
                };
                ordered.push((key, ing));
            }
            _ => b.problem(
                &IngressRef::new(namespace, ""),
                "metadata.name".into(),
                ProblemKind::MissingName,
            ),
        }
    }
    ordered.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, ing) in &ordered {
        b.add(&key.ingress, ing);
    }
    b.finish()
}

/// Sort key: oldest first, no timestamp last, then namespace/name.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct AgeKey {
    no_timestamp: bool,
    created: Option<Timestamp>,
    ingress: IngressRef,
}

#[derive(Default)]
struct HostBuild {
    /// Exact rules by canonical path.
    exact: Map<String, Route>,
    /// Prefix rules by canonical path (trailing slash kept).
    prefix: Map<String, Route>,
}

#[derive(Default)]
struct Builder {
    /// Set in ingress-nginx mode (then `hosts` stays empty).
    nginx: Option<NginxBuild>,
    hosts: Map<Option<HostPattern>, HostBuild>,
    tls: Map<HostPattern, TlsHost>,
    default: Option<DefaultRoute>,
    conflicts: Vec<Conflict>,
    problems: Vec<Problem>,
}

impl Builder {
    fn problem(&mut self, ingress: &IngressRef, field: String, kind: ProblemKind) {
        self.problems.push(Problem {
            ingress: ingress.clone(),
            field,
            kind,
        });
    }

    /// In ingress-nginx mode, parses the Ingress's annotations (recording
    /// their problems); otherwise the shared default policy.
    fn policy(&mut self, me: &IngressRef, ing: &Ingress) -> Arc<IngressPolicy> {
        let Some(nginx) = &self.nginx else {
            return IngressPolicy::shared_default();
        };
        let empty = Default::default();
        let map = ing.metadata.annotations.as_ref().unwrap_or(&empty);
        let parsed = annotations::parse(map, &me.namespace, &nginx.config);
        for p in parsed.problems {
            // Refusals are reported once, below, with every cause.
            if p.kind != AnnotationProblemKind::NotEnforced {
                let field = format!("metadata.annotations[{:?}]", p.annotation);
                self.problem(me, field, ProblemKind::Annotation(p));
            }
        }
        if let Some(r) = parsed.refusal {
            self.problem(me, "metadata.annotations".into(), ProblemKind::Refused(r));
        }
        Arc::new(parsed.policy)
    }

    fn add(&mut self, me: &IngressRef, ing: &Ingress) {
        let policy = self.policy(me, ing);
        let ssl_redirect = if self.nginx.is_some() {
            policy.redirects.ssl_redirect
        } else {
            self.bool_annotation(me, ing, SSL_REDIRECT_ANNOTATION, true)
        };
        // A canary Ingress only lends its backends to other routes.
        let canary = self.nginx.is_some() && policy.canary.is_some();
        let Some(spec) = &ing.spec else { return };

        if let Some(db) = spec.default_backend.as_ref().filter(|_| !canary) {
            match parse_backend(&me.namespace, db) {
                Ok(backend) => match &self.default {
                    Some(d) => {
                        let winner = d.ingress.clone();
                        self.conflicts.push(Conflict {
                            winner,
                            loser: me.clone(),
                            kind: ConflictKind::DefaultBackend,
                        });
                    }
                    None => {
                        self.default = Some(DefaultRoute {
                            backend,
                            ingress: me.clone(),
                        });
                    }
                },
                Err(e) => self.problem(
                    me,
                    "spec.defaultBackend".into(),
                    ProblemKind::InvalidBackend(e),
                ),
            }
        }

        let mut my_hosts: Vec<HostPattern> = Vec::new();
        for (ri, rule) in spec.rules.iter().flatten().enumerate() {
            let host = match rule.host.as_deref() {
                None | Some("") => None,
                Some(h) => match HostPattern::parse(h) {
                    Ok(p) => Some(p),
                    Err(error) => {
                        self.problem(
                            me,
                            format!("spec.rules[{ri}].host"),
                            ProblemKind::InvalidHost {
                                host: h.to_owned(),
                                error,
                            },
                        );
                        continue;
                    }
                },
            };
            if let Some(h) = &host
                && !my_hosts.contains(h)
            {
                my_hosts.push(h.clone());
            }
            let Some(http) = &rule.http else { continue };
            for (pi, p) in http.paths.iter().enumerate() {
                let field = format!("spec.rules[{ri}].http.paths[{pi}]");
                let Some(path_type) = PathType::parse(&p.path_type) else {
                    self.problem(me, field, ProblemKind::InvalidPathType(p.path_type.clone()));
                    continue;
                };
                if self.nginx.is_some() {
                    let backend = match parse_backend(&me.namespace, &p.backend) {
                        Ok(b) => b,
                        Err(e) => {
                            self.problem(me, field, ProblemKind::InvalidBackend(e));
                            continue;
                        }
                    };
                    let raw = p.path.clone().unwrap_or_default();
                    let plain = path::validate_rule_path(path_type, p.path.as_deref());
                    let nginx = self.nginx.as_mut().expect("nginx mode");
                    if canary {
                        let c = CanaryRoute {
                            backend,
                            ingress: me.clone(),
                            policy: policy.clone(),
                        };
                        nginx.add_canary(host.clone(), raw, path_type, c, field);
                    } else {
                        let route = Route {
                            backend,
                            ingress: me.clone(),
                            host: host.clone(),
                            path: String::new(),
                            path_type,
                            ssl_redirect,
                            policy: policy.clone(),
                            canary: None,
                        };
                        nginx.add_rule(route, raw, plain, field, &mut self.conflicts);
                    }
                    continue;
                }
                let path = match path::validate_rule_path(path_type, p.path.as_deref()) {
                    Ok(path) => path,
                    Err(error) => {
                        let path = p.path.clone().unwrap_or_default();
                        self.problem(me, field, ProblemKind::InvalidPath { path, error });
                        continue;
                    }
                };
                let backend = match parse_backend(&me.namespace, &p.backend) {
                    Ok(b) => b,
                    Err(e) => {
                        self.problem(me, field, ProblemKind::InvalidBackend(e));
                        continue;
                    }
                };
                self.insert_route(Route {
                    backend,
                    ingress: me.clone(),
                    host: host.clone(),
                    path,
                    path_type,
                    ssl_redirect,
                    policy: policy.clone(),
                    canary: None,
                });
            }
        }

        if canary {
            return;
        }
        for (ti, tls) in spec.tls.iter().flatten().enumerate() {
            let secret = tls
                .secret_name
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(|name| SecretRef {
                    namespace: me.namespace.clone(),
                    name: name.to_owned(),
                });
            let hosts: Vec<HostPattern> = match tls.hosts.as_deref() {
                Some(hosts) if !hosts.is_empty() => {
                    let mut parsed = Vec::new();
                    for (hi, h) in hosts.iter().enumerate() {
                        match HostPattern::parse(h) {
                            Ok(p) => parsed.push(p),
                            Err(error) => self.problem(
                                me,
                                format!("spec.tls[{ti}].hosts[{hi}]"),
                                ProblemKind::InvalidTlsHost {
                                    host: h.clone(),
                                    error,
                                },
                            ),
                        }
                    }
                    parsed
                }
                _ => my_hosts.clone(),
            };
            for host in hosts {
                self.insert_tls(TlsHost {
                    host,
                    secret: secret.clone(),
                    ingress: me.clone(),
                });
            }
        }
    }

    fn bool_annotation(
        &mut self,
        me: &IngressRef,
        ing: &Ingress,
        key: &str,
        default: bool,
    ) -> bool {
        let Some(value) = ing.metadata.annotations.as_ref().and_then(|a| a.get(key)) else {
            return default;
        };
        match value.trim() {
            v if v.eq_ignore_ascii_case("true") => true,
            v if v.eq_ignore_ascii_case("false") => false,
            _ => {
                self.problem(
                    me,
                    format!("metadata.annotations[{key:?}]"),
                    ProblemKind::InvalidAnnotation {
                        key: key.to_owned(),
                        value: value.clone(),
                    },
                );
                default
            }
        }
    }

    fn insert_route(&mut self, route: Route) {
        let bucket = self.hosts.entry(route.host.clone()).or_default();
        let map = match route.path_type.match_kind() {
            MatchKind::Exact => &mut bucket.exact,
            MatchKind::Prefix => &mut bucket.prefix,
        };
        match map.get(&route.path) {
            Some(existing) => self.conflicts.push(Conflict {
                winner: existing.ingress.clone(),
                loser: route.ingress.clone(),
                kind: ConflictKind::Path {
                    host: route.host,
                    path: route.path,
                    path_type: route.path_type,
                },
            }),
            None => {
                map.insert(route.path.clone(), route);
            }
        }
    }

    fn insert_tls(&mut self, entry: TlsHost) {
        match self.tls.get(&entry.host) {
            Some(existing) => {
                // The same Ingress listing a host twice with the same secret
                // is harmless; anything else is reported.
                if existing.ingress != entry.ingress || existing.secret != entry.secret {
                    self.conflicts.push(Conflict {
                        winner: existing.ingress.clone(),
                        loser: entry.ingress,
                        kind: ConflictKind::Tls { host: entry.host },
                    });
                }
            }
            None => {
                self.tls.insert(entry.host.clone(), entry);
            }
        }
    }

    fn finish(mut self) -> BuildOutput {
        let mut table = RouteTable {
            default: self.default,
            ..RouteTable::default()
        };
        if let Some(nginx) = self.nginx.take() {
            table.nginx = Some(NginxTable {
                http_redirect_code: nginx.config.settings.http_redirect_code,
            });
            nginx.finish(&mut table, &mut self.problems);
        }
        for (host, hb) in self.hosts {
            let mut routes = HostRoutes {
                exact: hb.exact,
                ..HostRoutes::default()
            };
            for (path, route) in hb.prefix {
                let key = path::prefix_key(&path);
                routes.max_depth = routes.max_depth.max(path::depth(key));
                // `/foo/` and `/foo` share a key and match the same requests;
                // the longer spelling wins.
                match routes.prefix.get(key) {
                    Some(existing) if existing.path.len() >= path.len() => {}
                    _ => {
                        routes.prefix.insert(key.to_owned(), route);
                    }
                }
            }
            match host {
                None => table.any_host = routes,
                Some(HostPattern::Exact(h)) => {
                    table.exact_hosts.insert(h, routes);
                }
                Some(HostPattern::Wildcard(parent)) => {
                    table.wildcard_hosts.insert(parent, routes);
                }
            }
        }
        for (host, entry) in self.tls {
            match host {
                HostPattern::Exact(h) => table.tls_exact.insert(h, entry),
                HostPattern::Wildcard(p) => table.tls_wildcard.insert(p, entry),
            };
        }
        BuildOutput {
            table,
            conflicts: self.conflicts,
            problems: self.problems,
        }
    }
}

/// Parses an `IngressBackend` of an Ingress in `namespace`.
pub fn parse_backend(namespace: &str, b: &IngressBackend) -> Result<Backend, BackendError> {
    match (&b.service, &b.resource) {
        (Some(_), Some(_)) => Err(BackendError::BothServiceAndResource),
        (None, None) => Err(BackendError::NeitherServiceNorResource),
        (Some(svc), None) => {
            if svc.name.is_empty() {
                return Err(BackendError::EmptyServiceName);
            }
            let port = svc.port.as_ref().ok_or(BackendError::MissingPort)?;
            let name = port.name.as_deref().filter(|n| !n.is_empty());
            let number = port.number.filter(|&n| n != 0);
            let port = match (name, number) {
                (Some(_), Some(_)) => return Err(BackendError::BothPortNameAndNumber),
                (None, None) => return Err(BackendError::NeitherPortNameNorNumber),
                (Some(n), None) => PortRef::Name(n.to_owned()),
                (None, Some(n)) => {
                    PortRef::Number(u16::try_from(n).map_err(|_| BackendError::PortOutOfRange(n))?)
                }
            };
            Ok(Backend::Service {
                namespace: namespace.to_owned(),
                name: svc.name.clone(),
                port,
            })
        }
        (None, Some(r)) => {
            if r.kind.is_empty() || r.name.is_empty() {
                return Err(BackendError::IncompleteResource);
            }
            Ok(Backend::Resource {
                namespace: namespace.to_owned(),
                api_group: r.api_group.clone().filter(|g| !g.is_empty()),
                kind: r.kind.clone(),
                name: r.name.clone(),
            })
        }
    }
}
