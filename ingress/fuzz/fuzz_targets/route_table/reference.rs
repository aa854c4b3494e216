//! The slow reference: the semantics documented in `routes::{class, build,
//! host, path, table}`, with no indexes, written independently of them.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};
use sluice_ingress::annotations::IngressPolicy;
use sluice_ingress::routes::build::SSL_REDIRECT_ANNOTATION;
use sluice_ingress::routes::class::{
    DEFAULT_CLASS_ANNOTATION, DEFAULT_CONTROLLER, LEGACY_CLASS_ANNOTATION,
};
use sluice_ingress::routes::{
    Backend, DefaultRoute, HostPattern, IngressRef, PathType, PortRef, Route, SecretRef, TlsHost,
};

use super::generate::Input;

/// What a lookup answers, in owned form.
#[derive(Debug, PartialEq, Eq)]
pub enum Expected {
    Route(Route, Option<TlsHost>),
    Default(DefaultRoute),
    NoRoute,
}

pub struct Reference {
    /// Accepted rules in the order they were claimed; a later rule with the
    /// same host, path and match kind lost and is not here.
    routes: Vec<Route>,
    /// TLS entries, first claim per host wins.
    tls: Vec<TlsHost>,
    default: Option<DefaultRoute>,
}

fn is_exact(t: PathType) -> bool {
    t == PathType::Exact
}

impl Reference {
    pub fn new(input: &Input) -> Self {
        let classes = input.classes();
        let ingresses = input.ingresses();
        let mut ours: Vec<(bool, i64, String, String, &Ingress)> = ingresses
            .iter()
            .filter(|i| is_ours(i, &classes, input.watch_without_class))
            .filter_map(|i| {
                let name = i.metadata.name.clone().filter(|n| !n.is_empty())?;
                let ns = i
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into());
                let created = i.metadata.creation_timestamp.as_ref();
                let secs = created.map_or(0, |t| t.0.as_second());
                Some((created.is_none(), secs, ns, name, i))
            })
            .collect();
        // Oldest first; no timestamp after all that have one; then
        // namespace, then name.
        ours.sort_by(|a, b| (a.0, a.1, &a.2, &a.3).cmp(&(b.0, b.1, &b.2, &b.3)));

        let mut r = Reference {
            routes: Vec::new(),
            tls: Vec::new(),
            default: None,
        };
        for (_, _, ns, name, ing) in ours {
            r.add(IngressRef::new(ns, name), ing);
        }
        r
    }

    fn add(&mut self, me: IngressRef, ing: &Ingress) {
        let ssl_redirect = match ing
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SSL_REDIRECT_ANNOTATION))
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            Some("false") => false,
            _ => true,
        };
        let Some(spec) = &ing.spec else { return };
        if let Some(b) = spec.default_backend.as_ref().and_then(|b| backend(&me, b))
            && self.default.is_none()
        {
            self.default = Some(DefaultRoute {
                backend: b,
                ingress: me.clone(),
            });
        }
        let mut my_hosts: Vec<HostPattern> = Vec::new();
        for rule in spec.rules.iter().flatten() {
            let host = match rule.host.as_deref() {
                None | Some("") => None,
                Some(h) => match host_pattern(h) {
                    Some(p) => Some(p),
                    None => continue,
                },
            };
            if let Some(h) = &host
                && !my_hosts.contains(h)
            {
                my_hosts.push(h.clone());
            }
            for p in rule.http.iter().flat_map(|h| &h.paths) {
                let path_type = match p.path_type.as_str() {
                    "Exact" => PathType::Exact,
                    "Prefix" => PathType::Prefix,
                    "ImplementationSpecific" => PathType::ImplementationSpecific,
                    _ => continue,
                };
                let Some(path) = rule_path(path_type, p.path.as_deref()) else {
                    continue;
                };
                let Some(backend) = backend(&me, &p.backend) else {
                    continue;
                };
                let taken = self.routes.iter().any(|r| {
                    r.host == host && r.path == path && is_exact(r.path_type) == is_exact(path_type)
                });
                if !taken {
                    self.routes.push(Route {
                        backend,
                        ingress: me.clone(),
                        host: host.clone(),
                        path,
                        path_type,
                        ssl_redirect,
                        // Annotations are read in ingress-nginx mode only.
                        policy: IngressPolicy::shared_default(),
                        canary: None,
                    });
                }
            }
        }
        for entry in spec.tls.iter().flatten() {
            let secret = entry
                .secret_name
                .clone()
                .filter(|s| !s.is_empty())
                .map(|name| SecretRef {
                    namespace: me.namespace.clone(),
                    name,
                });
            let hosts: Vec<HostPattern> = match &entry.hosts {
                Some(hs) if !hs.is_empty() => hs.iter().filter_map(|h| host_pattern(h)).collect(),
                _ => my_hosts.clone(),
            };
            for host in hosts {
                if !self.tls.iter().any(|t| t.host == host) {
                    self.tls.push(TlsHost {
                        host,
                        secret: secret.clone(),
                        ingress: me.clone(),
                    });
                }
            }
        }
    }

    pub fn lookup(&self, raw_host: &str, path: &str) -> Expected {
        let host = request_host(raw_host);
        let of = |want: &Option<HostPattern>| -> Vec<&Route> {
            self.routes.iter().filter(|r| &r.host == want).collect()
        };
        let mut bucket = Vec::new();
        if let Some(h) = &host {
            bucket = of(&Some(HostPattern::Exact(h.clone())));
            if bucket.is_empty()
                && let Some(parent) = parent(h)
            {
                bucket = of(&Some(HostPattern::Wildcard(parent.to_owned())));
            }
        }
        if bucket.is_empty() {
            bucket = of(&None);
        }
        let best = bucket
            .into_iter()
            .filter(|r| path_matches(r.path_type, &r.path, path))
            .max_by_key(|r| (is_exact(r.path_type), r.path.len()));
        match (best, &self.default) {
            (Some(route), _) => {
                let tls = match (&route.host, &host) {
                    (Some(_), Some(h)) => self.tls_for_host(h),
                    _ => None,
                };
                Expected::Route(route.clone(), tls)
            }
            (None, Some(d)) => Expected::Default(d.clone()),
            (None, None) => Expected::NoRoute,
        }
    }

    pub fn tls_for(&self, raw_host: &str) -> Option<TlsHost> {
        self.tls_for_host(&request_host(raw_host)?)
    }

    fn tls_for_host(&self, h: &str) -> Option<TlsHost> {
        let find = |p: HostPattern| self.tls.iter().find(|t| t.host == p).cloned();
        find(HostPattern::Exact(h.to_owned()))
            .or_else(|| parent(h).and_then(|p| find(HostPattern::Wildcard(p.to_owned()))))
    }

    pub fn default_route(&self) -> Option<&DefaultRoute> {
        self.default.as_ref()
    }

    /// What `RouteTable::routes` lists: every accepted rule except a prefix
    /// shadowed by its trailing-slash twin (`/a` by `/a/`), as sorted
    /// `Debug` strings.
    pub fn listed_routes(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .routes
            .iter()
            .filter(|r| {
                is_exact(r.path_type)
                    || !self.routes.iter().any(|o| {
                        !is_exact(o.path_type)
                            && o.host == r.host
                            && o.path.len() > r.path.len()
                            && o.path.strip_suffix('/') == Some(r.path.as_str())
                    })
            })
            .map(|r| format!("{r:?}"))
            .collect();
        out.sort();
        out
    }
}

fn is_ours(ing: &Ingress, classes: &[IngressClass], watch_without_class: bool) -> bool {
    let ours: HashSet<&str> = classes
        .iter()
        .filter(|c| {
            c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(DEFAULT_CONTROLLER)
        })
        .filter_map(|c| c.metadata.name.as_deref().filter(|n| !n.is_empty()))
        .collect();
    let have_default = classes.iter().any(|c| {
        c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(DEFAULT_CONTROLLER)
            && c.metadata.name.as_deref().is_some_and(|n| !n.is_empty())
            && c.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true")
    });
    let legacy = ing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
        .map(|v| v.trim())
        .filter(|v| !v.is_empty());
    let by_name = ing
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
        .filter(|v| !v.is_empty());
    match legacy.or(by_name) {
        Some(class) => ours.contains(class),
        None => have_default || watch_without_class,
    }
}

/// A rule host as the API server validates it (DNS-1123 subdomain, an
/// optional `*.` label, not an IP, no port), case folded, one trailing dot
/// tolerated.
fn host_pattern(raw: &str) -> Option<HostPattern> {
    let lower = raw.to_ascii_lowercase();
    let h = lower.strip_suffix('.').unwrap_or(&lower);
    if h.is_empty() || h.len() > 253 {
        return None;
    }
    let (wildcard, name) = match h.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, h),
    };
    if name.parse::<Ipv4Addr>().is_ok() {
        return None;
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !name.split('.').all(label_ok) {
        return None;
    }
    Some(if wildcard {
        HostPattern::Wildcard(name.to_owned())
    } else {
        HostPattern::Exact(name.to_owned())
    })
}

/// A Host header or `:authority`: the port and one trailing dot removed,
/// case folded; `None` when it is not a host name or bracketed address.
fn request_host(raw: &str) -> Option<String> {
    let (host, port) = if raw.starts_with('[') {
        let end = raw.find(']')?;
        raw.split_at(end + 1)
    } else {
        raw.split_at(raw.find(':').unwrap_or(raw.len()))
    };
    if !port.is_empty() {
        let digits = port.strip_prefix(':')?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let bracketed = host.starts_with('[');
    let ok = |b: u8| {
        b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_')
            || (bracketed && matches!(b, b'[' | b']' | b':'))
    };
    if host.is_empty() || host.len() > 256 || !host.bytes().all(ok) {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

/// The domain a one-label wildcard covering `host` has as its parent.
fn parent(host: &str) -> Option<&str> {
    let (first, rest) = host.split_once('.')?;
    (!first.is_empty() && !rest.is_empty()).then_some(rest)
}

/// A rule path: absolute; escapes of unreserved characters decoded and the
/// others upper-cased; no `%2F`, `%5C`, backslash, NUL, control characters,
/// space, `#`, `?` or non-ASCII; no empty segment but the last; no `.` or
/// `..` segment, with or without parameters. `None` when invalid.
fn rule_path(t: PathType, raw: Option<&str>) -> Option<String> {
    let raw = match raw {
        Some(p) if !p.is_empty() => p,
        _ if t == PathType::ImplementationSpecific => "/",
        _ => return None,
    };
    let rest = raw.strip_prefix('/')?;
    let segs: Vec<&str> = rest.split('/').collect();
    let mut out = String::new();
    for (i, seg) in segs.iter().enumerate() {
        let seg = decode(seg)?;
        let last = i + 1 == segs.len();
        let dot = seg == "." || seg == ".." || seg.starts_with(".;") || seg.starts_with("..;");
        if dot || (seg.is_empty() && !last) {
            return None;
        }
        out.push('/');
        out.push_str(&seg);
    }
    Some(out)
}

fn decode(seg: &str) -> Option<String> {
    let b = seg.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            let v = u8::from_str_radix(hex, 16).ok()?;
            if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(v));
            } else if matches!(v, b'/' | b'\\' | 0) {
                return None;
            } else {
                out.push_str(&format!("%{v:02X}"));
            }
            i += 3;
        } else {
            let c = b[i];
            if !c.is_ascii_graphic() || matches!(c, b'\\' | b'#' | b'?') {
                return None;
            }
            out.push(char::from(c));
            i += 1;
        }
    }
    Some(out)
}

/// Exact: the whole path; Prefix and ImplementationSpecific: element-wise,
/// trailing slash ignored on both sides.
fn path_matches(t: PathType, rule: &str, request: &str) -> bool {
    if is_exact(t) {
        return rule == request;
    }
    let rule: Vec<&str> = rule.split('/').filter(|s| !s.is_empty()).collect();
    let req: Vec<&str> = request.split('/').filter(|s| !s.is_empty()).collect();
    req.starts_with(&rule)
}

fn backend(me: &IngressRef, b: &IngressBackend) -> Option<Backend> {
    match (&b.service, &b.resource) {
        (Some(s), None) if !s.name.is_empty() => {
            let port = s.port.as_ref()?;
            let name = port.name.clone().filter(|n| !n.is_empty());
            let number = port.number.filter(|&n| n != 0);
            let port = match (name, number) {
                (Some(n), None) => PortRef::Name(n),
                (None, Some(n)) => PortRef::Number(u16::try_from(n).ok()?),
                _ => return None,
            };
            Some(Backend::Service {
                namespace: me.namespace.clone(),
                name: s.name.clone(),
                port,
            })
        }
        (None, Some(r)) if !r.kind.is_empty() && !r.name.is_empty() => Some(Backend::Resource {
            namespace: me.namespace.clone(),
            api_group: r.api_group.clone().filter(|g| !g.is_empty()),
            kind: r.kind.clone(),
            name: r.name.clone(),
        }),
        _ => None,
    }
}
