//! The immutable route table and request → route lookup.
//!
//! A [`RouteTable`] is built once by [`crate::routes::build::build`] and
//! never mutated; the gateway keeps it in an `Arc` and swaps whole tables
//! (arc-swap). Lookup cost does not grow with the number of rules:
//!
//! * hosts: a `HashMap` from precise host to its rules, a `HashMap` from a
//!   wildcard's parent domain (`foo.com` for `*.foo.com`) to its rules, and
//!   the host-less rules; selection order precise → wildcard → host-less,
//!   without fall-through (see [`crate::routes::host`]);
//! * paths within a host: a `HashMap` of `Exact` paths, and a `HashMap` of
//!   prefixes keyed by their path without trailing slash; the request path
//!   is probed from its longest element-prefix down to `/`, skipping
//!   prefixes deeper than the deepest rule of that host. So a lookup is at
//!   most a handful of hash probes.
//! * in ingress-nginx mode a host holds its nginx locations instead
//!   ([`crate::routes::nginx`]): an exact probe, one probe per distinct
//!   prefix length, one for the trailing-slash 301, or for a regex host one
//!   linear `RegexSet` pass over the path (regexes compiled at build time,
//!   never per request). Aliases and www redirects are one more probe each,
//!   only when the table has any.
//!
//! TLS: the table maps hosts (precise or wildcard, from `spec.tls`) to a
//! [`TlsHost`]: the Secret to serve (SNI picks the certificate, via
//! [`RouteTable::tls_for`]) and whether HTTP requests get a 308 to HTTPS
//! (see [`RouteMatch::redirect_to_https`]). TLS never applies to rules
//! without a host.

use std::fmt;
use std::sync::Arc;

use crate::annotations::IngressPolicy;

use super::host::{self, HOST_BUF, HostPattern};
use super::hygiene::NormalizedPath;
use super::nginx::{NginxHost, NginxMatch};
use super::path::PathType;

/// The table's hash map: hashbrown with foldhash, seeded per process.
/// Lookup keys come from requests but only stored keys (from Ingresses)
/// shape the table, so a fast hash is safe; the random seed is a bonus.
pub(crate) type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// An Ingress, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IngressRef {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl IngressRef {
    /// Builds a reference.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for IngressRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A Service port, by number or by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortRef {
    /// `port.number`, 1–65535.
    Number(u16),
    /// `port.name`.
    Name(String),
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Name(n) => f.write_str(n),
        }
    }
}

/// Where a matched request goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Backend {
    /// A Service port in the Ingress's namespace.
    Service {
        /// The Ingress's namespace.
        namespace: String,
        /// Service name.
        name: String,
        /// Service port.
        port: PortRef,
    },
    /// A `TypedLocalObjectReference` in the Ingress's namespace (e.g. a
    /// storage bucket). Sluice cannot serve these: the gateway answers 503
    /// with a clear reason.
    Resource {
        /// The Ingress's namespace.
        namespace: String,
        /// `apiGroup`; `None` for the core group (empty string is `None`).
        api_group: Option<String>,
        /// `kind`.
        kind: String,
        /// `name`.
        name: String,
    },
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Service {
                namespace,
                name,
                port,
            } => write!(f, "service {namespace}/{name}:{port}"),
            Self::Resource {
                namespace,
                api_group,
                kind,
                name,
            } => match api_group {
                Some(g) => write!(f, "resource {kind}.{g} {namespace}/{name}"),
                None => write!(f, "resource {kind} {namespace}/{name}"),
            },
        }
    }
}

/// A Secret, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretRef {
    /// The Ingress's namespace.
    pub namespace: String,
    /// `spec.tls[].secretName`.
    pub name: String,
}

/// TLS settings of one host (precise or wildcard) from `spec.tls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsHost {
    /// The host as listed in `spec.tls[].hosts` (validated, lower-case).
    pub host: HostPattern,
    /// The certificate Secret; `None` when `secretName` was omitted (SNI
    /// routing with the gateway's default certificate).
    pub secret: Option<SecretRef>,
    /// The Ingress the entry came from (the oldest one listing the host).
    pub ingress: IngressRef,
}

/// One routing rule: a path of a host of an Ingress, and its backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Where requests go.
    pub backend: Backend,
    /// The Ingress that defined the rule.
    pub ingress: IngressRef,
    /// The rule's host; `None` for a host-less rule.
    pub host: Option<HostPattern>,
    /// The rule path in canonical form (what was matched).
    pub path: String,
    /// The declared path type.
    pub path_type: PathType,
    /// The Ingress's `sluice.dev/ssl-redirect` setting (default `true`);
    /// in ingress-nginx mode its `ssl-redirect` annotation.
    pub ssl_redirect: bool,
    /// The Ingress's ingress-nginx annotations, typed (shared by its
    /// routes; the default policy when annotations are not read).
    pub policy: Arc<IngressPolicy>,
    /// The canary that shares this route's traffic (ingress-nginx mode).
    pub canary: Option<Arc<CanaryRoute>>,
}

/// A canary Ingress's backend attached to a route (`canary: "true"`): it
/// takes the requests its [`crate::annotations::canary::CanaryPolicy`]
/// picks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryRoute {
    /// The canary's backend.
    pub backend: Backend,
    /// The canary Ingress.
    pub ingress: IngressRef,
    /// The canary Ingress's policy (its `canary` is set).
    pub policy: Arc<IngressPolicy>,
}

/// The Ingress default backend that applies to the whole table
/// (`spec.defaultBackend` of the oldest Ingress defining one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRoute {
    /// Where unmatched requests go.
    pub backend: Backend,
    /// The Ingress it came from.
    pub ingress: IngressRef,
}

/// A rule that matched a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch<'a> {
    /// The matched rule.
    pub route: &'a Route,
    /// TLS of the request host, if the matched rule has a host and the
    /// request host has a `spec.tls` entry (precise, else wildcard).
    pub tls: Option<&'a TlsHost>,
}

impl RouteMatch<'_> {
    /// Whether a plain-HTTP request should get a 308 to HTTPS: the host has
    /// TLS and the rule's Ingress did not opt out with
    /// `sluice.dev/ssl-redirect: "false"`.
    pub fn redirect_to_https(&self) -> bool {
        self.tls.is_some() && self.route.ssl_redirect
    }
}

/// The result of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// A rule matched.
    Route(RouteMatch<'a>),
    /// No rule matched; the Ingress default backend applies.
    Default(&'a DefaultRoute),
    /// No rule matched and there is no default backend: the gateway answers
    /// 404 with a short body.
    NoRoute,
}

/// The rules of one host key (precise host, wildcard parent, or any).
#[derive(Debug, Clone, Default)]
pub(crate) struct HostRoutes {
    /// `Exact` rules by canonical path.
    pub(crate) exact: Map<String, Route>,
    /// Prefix rules by [`path::prefix_key`].
    pub(crate) prefix: Map<String, Route>,
    /// Deepest prefix key, in elements.
    pub(crate) max_depth: usize,
    /// In ingress-nginx mode, the host's locations (`exact` and `prefix`
    /// are then empty).
    pub(crate) nginx: Option<Box<NginxHost>>,
}

impl HostRoutes {
    pub(crate) fn find(&self, path: &str) -> Option<&Route> {
        if let Some(n) = &self.nginx {
            return n.find(path).map(NginxMatch::route);
        }
        if let Some(r) = self.exact.get(path) {
            return Some(r);
        }
        if self.prefix.is_empty() {
            return None;
        }
        let trimmed = path.strip_suffix('/').unwrap_or(path);
        // Only prefixes up to the deepest rule can match: cut the request
        // path to `max_depth` elements first, so long paths cost nothing.
        let mut cur = match trimmed.match_indices('/').nth(self.max_depth) {
            Some((cut, _)) => &trimmed[..cut],
            None => trimmed,
        };
        loop {
            // `cur` is "" for the root.
            let key = if cur.is_empty() { "/" } else { cur };
            if let Some(r) = self.prefix.get(key) {
                return Some(r);
            }
            if cur.is_empty() {
                return None;
            }
            cur = &cur[..cur.rfind('/').unwrap_or(0)];
        }
    }

    fn len(&self) -> usize {
        self.exact.len() + self.prefix.len() + self.nginx.as_ref().map_or(0, |n| n.routes().len())
    }

    fn all(&self) -> impl Iterator<Item = &Route> {
        self.exact
            .values()
            .chain(self.prefix.values())
            .chain(self.nginx.iter().flat_map(|n| n.routes()))
    }
}

/// The immutable route table. Cheap to share behind an `Arc`.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    pub(crate) exact_hosts: Map<String, HostRoutes>,
    pub(crate) wildcard_hosts: Map<String, HostRoutes>,
    pub(crate) any_host: HostRoutes,
    pub(crate) default: Option<DefaultRoute>,
    pub(crate) tls_exact: Map<String, TlsHost>,
    pub(crate) tls_wildcard: Map<String, TlsHost>,
    /// `server-alias` names → the precise host they stand for.
    pub(crate) aliases: Map<String, String>,
    /// `*.parent` aliases by parent → the precise host they stand for.
    pub(crate) wildcard_aliases: Map<String, String>,
    /// `from-to-www-redirect`: the other name → the rule host.
    pub(crate) www_redirects: Map<String, String>,
    /// Set in ingress-nginx mode.
    pub(crate) nginx: Option<NginxTable>,
}

/// Table-wide ingress-nginx settings route resolution needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NginxTable {
    /// ConfigMap `http-redirect-code`: HTTPS and www redirects.
    pub(crate) http_redirect_code: u16,
}

impl RouteTable {
    /// Routes a request. `host` is the raw Host header or `:authority`
    /// (port, case and a trailing dot are tolerated; pass `""` when there
    /// is none); `path` comes from [`crate::routes::hygiene::normalize`].
    /// In ingress-nginx mode it answers which rule's location matches (for
    /// nginx's trailing-slash 301, the `<path>/` rule); what to do with the
    /// request — redirects, rewrites, denial — is [`RouteTable::resolve`].
    pub fn lookup(&self, host: &str, path: &NormalizedPath) -> Lookup<'_> {
        let mut buf = [0u8; HOST_BUF];
        let host = host::normalize_into(host, &mut buf);
        let routes = self.host_routes(host);
        match routes.find(path.as_str()) {
            Some(route) => {
                let tls = match (&route.host, host) {
                    (Some(_), Some(h)) => self.tls_for_normalized(h),
                    _ => None,
                };
                Lookup::Route(RouteMatch { route, tls })
            }
            None => match &self.default {
                Some(d) => Lookup::Default(d),
                None => Lookup::NoRoute,
            },
        }
    }

    /// The rules of a normalized request host: precise, then (ingress-nginx
    /// mode) aliases, then wildcard, then wildcard aliases, then host-less.
    pub(crate) fn host_routes(&self, host: Option<&str>) -> &HostRoutes {
        let Some(h) = host else {
            return &self.any_host;
        };
        if let Some(r) = self.exact_hosts.get(h) {
            return r;
        }
        if !self.aliases.is_empty()
            && let Some(r) = self.aliases.get(h).and_then(|c| self.exact_hosts.get(c))
        {
            return r;
        }
        let parent = host::wildcard_parent(h);
        if let Some(r) = parent.and_then(|p| self.wildcard_hosts.get(p)) {
            return r;
        }
        if !self.wildcard_aliases.is_empty()
            && let Some(r) = parent
                .and_then(|p| self.wildcard_aliases.get(p))
                .and_then(|c| self.exact_hosts.get(c))
        {
            return r;
        }
        &self.any_host
    }

    pub(crate) fn tls_for_normalized_host(&self, host: &str) -> Option<&TlsHost> {
        self.tls_for_normalized(host)
    }

    /// TLS settings for a host (an SNI name or a Host header): the precise
    /// `spec.tls` entry, else the wildcard one covering it.
    pub fn tls_for(&self, host: &str) -> Option<&TlsHost> {
        let mut buf = [0u8; HOST_BUF];
        host::normalize_into(host, &mut buf).and_then(|h| self.tls_for_normalized(h))
    }

    fn tls_for_normalized(&self, host: &str) -> Option<&TlsHost> {
        self.tls_exact
            .get(host)
            .or_else(|| host::wildcard_parent(host).and_then(|p| self.tls_wildcard.get(p)))
    }

    /// The default backend, if any Ingress defines one.
    pub fn default_backend(&self) -> Option<&DefaultRoute> {
        self.default.as_ref()
    }

    /// Number of rules in the table.
    pub fn len(&self) -> usize {
        self.exact_hosts
            .values()
            .map(HostRoutes::len)
            .sum::<usize>()
            + self
                .wildcard_hosts
                .values()
                .map(HostRoutes::len)
                .sum::<usize>()
            + self.any_host.len()
    }

    /// Whether the table has no rules (it may still have a default backend).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every rule, in no particular order (e.g. to know which Services to
    /// watch). A prefix shadowed by its trailing-slash twin is not listed.
    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.exact_hosts
            .values()
            .chain(self.wildcard_hosts.values())
            .chain(std::iter::once(&self.any_host))
            .flat_map(HostRoutes::all)
    }

    /// Whether a request host's rules are matched as regexes (an
    /// ingress-nginx regex host: `use-regex` or `rewrite-target` on one of
    /// its Ingresses).
    pub fn is_regex_host(&self, host: &str) -> bool {
        let mut buf = [0u8; HOST_BUF];
        let h = host::normalize_into(host, &mut buf);
        self.host_routes(h)
            .nginx
            .as_ref()
            .is_some_and(|n| n.is_regex())
    }

    /// Whether the table was built in ingress-nginx mode.
    pub fn is_ingress_nginx(&self) -> bool {
        self.nginx.is_some()
    }

    /// Every TLS host entry, in no particular order (e.g. to know which
    /// Secrets to load).
    pub fn tls_hosts(&self) -> impl Iterator<Item = &TlsHost> {
        self.tls_exact.values().chain(self.tls_wildcard.values())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::path;

    fn route(p: &str) -> Route {
        Route {
            backend: Backend::Service {
                namespace: "ns".into(),
                name: p.into(),
                port: PortRef::Number(80),
            },
            ingress: IngressRef::new("ns", "i"),
            host: None,
            path: p.into(),
            path_type: PathType::Prefix,
            ssl_redirect: true,
            policy: IngressPolicy::shared_default(),
            canary: None,
        }
    }

    #[test]
    fn prefix_probing_respects_depth_and_root() {
        let mut h = HostRoutes::default();
        for p in ["/", "/a/b"] {
            h.prefix.insert(path::prefix_key(p).into(), route(p));
        }
        h.max_depth = 2;
        fn find<'a>(h: &'a HostRoutes, p: &str) -> Option<&'a str> {
            h.find(p).map(|r| r.path.as_str())
        }
        assert_eq!(find(&h, "/"), Some("/"));
        assert_eq!(find(&h, "/a"), Some("/"));
        assert_eq!(find(&h, "/a/b"), Some("/a/b"));
        assert_eq!(find(&h, "/a/b/"), Some("/a/b"));
        assert_eq!(find(&h, "/a/b/c/d/e/f"), Some("/a/b"));
        assert_eq!(find(&h, "/a/bc"), Some("/"));
        h.prefix.remove("/");
        assert_eq!(find(&h, "/x/y/z"), None);
        assert_eq!(find(&h, "/"), None);
    }
}
