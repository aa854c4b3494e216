//! The ingress-nginx half of [`crate::routes::build`]: rules collected per
//! host, then turned into [`NginxHost`] locations once every Ingress is
//! known (a host becomes a regex host because of *any* of its Ingresses),
//! plus what ingress-nginx does per host: `server-alias`,
//! `from-to-www-redirect`, canaries and host-wide denials.
//!
//! * **Conflicts**: the same host, path (as written) and `pathType` twice;
//!   the oldest Ingress wins (ingress-nginx keeps the first location;
//!   different path types of one path coexist, as there).
//! * **Paths**: in a regex host an `ImplementationSpecific` path is the
//!   regex as written (it needs only a leading `/`); other paths are
//!   validated as plain paths (see [`crate::routes::path`]) and then used
//!   as regexes. A regex the `regex` crate cannot compile (look-around,
//!   back-references) is a problem and that path is skipped.
//! * **Aliases**: the first Ingress (oldest) with `server-alias` for a
//!   precise host gives its aliases; an alias that is a rule host, or taken
//!   already, is dropped (reported).
//! * **www**: a precise host one of whose rules has `from-to-www-redirect`
//!   gets the redirect from `www.<host>` (or from `<host>` without `www.`),
//!   unless that name is a rule host.
//! * **Canaries**: a canary Ingress adds no route; each of its rules finds
//!   the route with the same host, path and `pathType`, and the canary is
//!   attached to every route using that route's backend (ingress-nginx
//!   attaches alternative backends to the primary upstream). The first
//!   canary of a backend wins.
//! * **Host-wide denial**: an Ingress refused for client-certificate
//!   annotations (`auth-tls-*`, which ingress-nginx applies per server)
//!   denies every route of its hosts.

use std::sync::Arc;

use crate::annotations::{AnnotationConfig, Denial, IngressPolicy};

use super::build::{Conflict, ConflictKind, Problem, ProblemKind};
use super::host::HostPattern;
use super::nginx::{NginxHost, NginxRule};
use super::path::{PathError, PathType};
use super::table::{Backend, CanaryRoute, HostRoutes, IngressRef, Map, Route, RouteTable};

/// A rule waiting for its host to be complete.
struct Pending {
    route: Route,
    raw_path: String,
    /// The plain-path validation of the rule path.
    plain: Result<String, PathError>,
    field: String,
}

/// A canary Ingress's rule.
struct CanaryRule {
    host: Option<HostPattern>,
    raw_path: String,
    path_type: PathType,
    canary: Arc<CanaryRoute>,
    field: String,
}

/// Collects rules in ingress-nginx mode.
pub(crate) struct NginxBuild {
    pub(crate) config: AnnotationConfig,
    hosts: Map<Option<HostPattern>, Vec<Pending>>,
    /// Hosts in first-seen order (deterministic output).
    host_order: Vec<Option<HostPattern>>,
    canaries: Vec<CanaryRule>,
    aliases: Vec<(String, IngressRef, Vec<HostPattern>)>,
}

impl NginxBuild {
    pub(crate) fn new(config: AnnotationConfig) -> Self {
        Self {
            config,
            hosts: Map::default(),
            host_order: Vec::new(),
            canaries: Vec::new(),
            aliases: Vec::new(),
        }
    }

    /// Adds a rule; a duplicate host + path + type loses to the first.
    pub(crate) fn add_rule(
        &mut self,
        route: Route,
        raw_path: String,
        plain: Result<String, PathError>,
        field: String,
        conflicts: &mut Vec<Conflict>,
    ) {
        let host = route.host.clone();
        if !self.hosts.contains_key(&host) {
            self.host_order.push(host.clone());
        }
        let rules = self.hosts.entry(host).or_default();
        if let Some(first) = rules
            .iter()
            .find(|p| p.raw_path == raw_path && p.route.path_type == route.path_type)
        {
            conflicts.push(Conflict {
                winner: first.route.ingress.clone(),
                loser: route.ingress.clone(),
                kind: ConflictKind::Path {
                    host: route.host,
                    path: raw_path,
                    path_type: route.path_type,
                },
            });
            return;
        }
        if let Some(HostPattern::Exact(h)) = &route.host
            && !route.policy.redirects.server_aliases.is_empty()
            && !self.aliases.iter().any(|(host, _, _)| host == h)
        {
            self.aliases.push((
                h.clone(),
                route.ingress.clone(),
                route.policy.redirects.server_aliases.clone(),
            ));
        }
        rules.push(Pending {
            route,
            raw_path,
            plain,
            field,
        });
    }

    /// Adds a rule of a canary Ingress.
    pub(crate) fn add_canary(
        &mut self,
        host: Option<HostPattern>,
        raw_path: String,
        path_type: PathType,
        canary: CanaryRoute,
        field: String,
    ) {
        self.canaries.push(CanaryRule {
            host,
            raw_path,
            path_type,
            canary: Arc::new(canary),
            field,
        });
    }

    /// Builds every host into `table`.
    pub(crate) fn finish(mut self, table: &mut RouteTable, problems: &mut Vec<Problem>) {
        self.attach_canaries(problems);
        for host in std::mem::take(&mut self.host_order) {
            let pending = self.hosts.remove(&host).unwrap_or_default();
            let nginx = build_host(pending, problems);
            let routes = HostRoutes {
                nginx: Some(Box::new(nginx)),
                ..HostRoutes::default()
            };
            match host {
                None => table.any_host = routes,
                Some(HostPattern::Exact(h)) => {
                    table.exact_hosts.insert(h, routes);
                }
                Some(HostPattern::Wildcard(p)) => {
                    table.wildcard_hosts.insert(p, routes);
                }
            }
        }
        self.finish_aliases(table, problems);
        finish_www(table);
    }

    fn attach_canaries(&mut self, problems: &mut Vec<Problem>) {
        let mut by_backend: Vec<(Backend, Arc<CanaryRoute>)> = Vec::new();
        for c in &self.canaries {
            let primary = self.hosts.get(&c.host).and_then(|rules| {
                rules
                    .iter()
                    .find(|p| p.raw_path == c.raw_path && p.route.path_type == c.path_type)
            });
            match primary {
                Some(p) if p.route.backend == c.canary.backend => problems.push(Problem {
                    ingress: c.canary.ingress.clone(),
                    field: c.field.clone(),
                    kind: ProblemKind::Ignored(format!(
                        "the canary's backend is the primary backend of ingress {}",
                        p.route.ingress
                    )),
                }),
                Some(p) => {
                    if !by_backend.iter().any(|(b, _)| *b == p.route.backend) {
                        by_backend.push((p.route.backend.clone(), c.canary.clone()));
                    }
                }
                None => problems.push(Problem {
                    ingress: c.canary.ingress.clone(),
                    field: c.field.clone(),
                    kind: ProblemKind::Ignored(
                        "no non-canary Ingress has this host, path and pathType; the canary rule is \
                         ignored"
                            .into(),
                    ),
                }),
            }
        }
        for rules in self.hosts.values_mut() {
            for p in rules.iter_mut() {
                if let Some((_, c)) = by_backend.iter().find(|(b, _)| *b == p.route.backend) {
                    p.route.canary = Some(c.clone());
                }
            }
        }
    }

    fn finish_aliases(&self, table: &mut RouteTable, problems: &mut Vec<Problem>) {
        for (host, ingress, aliases) in &self.aliases {
            for alias in aliases {
                let taken = match alias {
                    HostPattern::Exact(a) => {
                        a == host
                            || table.exact_hosts.contains_key(a)
                            || table.aliases.contains_key(a)
                    }
                    HostPattern::Wildcard(p) => {
                        table.wildcard_hosts.contains_key(p)
                            || table.wildcard_aliases.contains_key(p)
                    }
                };
                if taken {
                    problems.push(Problem {
                        ingress: ingress.clone(),
                        field: format!(
                            "metadata.annotations[\"{}\"]",
                            self.config.prefix.key("server-alias")
                        ),
                        kind: ProblemKind::Ignored(format!(
                            "alias {alias} is a host of another rule or an alias already; ignored"
                        )),
                    });
                    continue;
                }
                match alias {
                    HostPattern::Exact(a) => table.aliases.insert(a.clone(), host.clone()),
                    HostPattern::Wildcard(p) => {
                        table.wildcard_aliases.insert(p.clone(), host.clone())
                    }
                };
            }
        }
    }
}

fn finish_www(table: &mut RouteTable) {
    let mut www = Vec::new();
    for (host, routes) in &table.exact_hosts {
        let wants = routes
            .nginx
            .as_ref()
            .is_some_and(|n| n.routes().iter().any(|r| r.policy.redirects.from_to_www));
        if !wants {
            continue;
        }
        let from = match host.strip_prefix("www.") {
            Some(apex) => apex.to_owned(),
            None => format!("www.{host}"),
        };
        if !table.exact_hosts.contains_key(&from) {
            www.push((from, host.clone()));
        }
    }
    table.www_redirects.extend(www);
}

/// Decides the paths of a host's rules and builds its locations.
fn build_host(pending: Vec<Pending>, problems: &mut Vec<Problem>) -> NginxHost {
    let regex_host = pending
        .iter()
        .any(|p| p.route.policy.paths.forces_regex(&p.raw_path));
    let host_denials: Vec<Denial> = pending
        .iter()
        .filter(|p| p.route.policy.denied_host_wide)
        .flat_map(|p| p.route.policy.denials.iter().cloned())
        .collect();
    let mut rules = Vec::new();
    let mut fields = Vec::new();
    for p in pending {
        let mut route = p.route;
        let path = if regex_host && route.path_type == PathType::ImplementationSpecific {
            match p.raw_path.as_str() {
                "" => Ok("/".to_owned()),
                r if r.starts_with('/') => Ok(r.to_owned()),
                _ => Err(PathError::NotAbsolute),
            }
        } else {
            p.plain
        };
        route.path = match path {
            Ok(path) => path,
            Err(error) => {
                problems.push(Problem {
                    ingress: route.ingress.clone(),
                    field: p.field,
                    kind: ProblemKind::InvalidPath {
                        path: p.raw_path,
                        error,
                    },
                });
                continue;
            }
        };
        if !host_denials.is_empty() && !route.policy.denied_host_wide {
            let mut policy = IngressPolicy::clone(&route.policy);
            policy.denials.extend(host_denials.iter().cloned());
            route.policy = Arc::new(policy);
        }
        fields.push((route.ingress.clone(), p.field, route.path.clone()));
        rules.push(NginxRule {
            route,
            raw_path: p.raw_path,
        });
    }
    let (host, errors) = NginxHost::build(rules, regex_host);
    for e in errors {
        let (ingress, field, path) = fields[e.rule].clone();
        problems.push(Problem {
            ingress,
            field,
            kind: ProblemKind::UnsupportedRegex {
                path,
                error: e.error,
            },
        });
    }
    host
}
