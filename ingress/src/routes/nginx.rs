//! ingress-nginx's location semantics for one host, as data: the
//! locations ingress-nginx generates from the host's rules and nginx's
//! choice among them, without nginx.
//!
//! **Locations** (ingress-nginx's `getBackendServers`,
//! `updateServerLocations` and `buildLocation`):
//!
//! * A host is a *regex host* when one of its rules belongs to an Ingress
//!   with `use-regex: "true"` or a `rewrite-target` different from the rule
//!   path. Then every rule of the host, from every Ingress, is the
//!   location `~* "^<path>"`: a case-insensitive regex anchored only at the
//!   start (so a prefix; `Exact` paths too). Regex locations are ordered
//!   by path length, longest first, then by path, descending (ingress-nginx
//!   sorts them so), ties in Ingress order; the first that matches wins.
//! * Otherwise: `Exact /p` is `= /p`; `Prefix /` is `/`; `Prefix /p` is the
//!   prefix `/p/` plus the exact twin `= /p` (unless an `Exact /p` exists);
//!   `ImplementationSpecific /p` is the plain string prefix `/p`.
//!
//! **Choice** (nginx's `ngx_http_core_find_location`), over the path after
//! [`crate::routes::hygiene`] (`.`, `..` and `//` resolved, as nginx's
//! `merge_slashes` and dot handling do):
//!
//! 1. an exact location equal to the path;
//! 2. else, when a location is named `<path>/` and no location is named
//!    `<path>`, nginx's 301 to `<path>/` (locations ending in `/` that
//!    proxy get `auto_redirect`);
//! 3. else the longest prefix location is remembered, regex locations are
//!    tried in order and the first match wins; without one, the prefix.
//!
//! **Cost**: an exact probe, one probe per distinct prefix length of the
//! host (longest first, stopping at the first hit) and one probe for the
//! 301; for regex hosts one pass of a `RegexSet` over the path (linear in
//! the path, never backtracking) plus, for a rewrite, one capture pass of
//! the chosen regex. Regexes are compiled when the table is built.

use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use super::path::PathType;
use super::table::{Map, Route};

/// Size limit of one compiled path regex (and of a host's set), so a
/// pathological expression is refused at build time rather than using
/// memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A rule of a host in nginx mode, before it becomes locations.
#[derive(Debug, Clone)]
pub(crate) struct NginxRule {
    /// The rule; `route.path` is what the locations are built from (the
    /// canonical path, or for a regex `ImplementationSpecific` rule the
    /// path as written).
    pub(crate) route: Route,
    /// The path as written (ingress-nginx sorts on it).
    pub(crate) raw_path: String,
}

/// The match of a request path among a host's locations.
#[derive(Debug, Clone, Copy)]
pub(crate) enum NginxMatch<'a> {
    /// An exact (`=`) location.
    Exact(&'a Route),
    /// A prefix location.
    Prefix(&'a Route),
    /// A regex location, with the rewrite regex when the rule's Ingress
    /// rewrites this path.
    Regex(&'a Route, Option<&'a Regex>),
    /// nginx's 301 to `<path>/`: `route` is the location named so.
    SlashRedirect(&'a Route),
}

impl<'a> NginxMatch<'a> {
    /// The location's rule.
    pub(crate) fn route(self) -> &'a Route {
        match self {
            Self::Exact(r) | Self::Prefix(r) | Self::Regex(r, _) | Self::SlashRedirect(r) => r,
        }
    }
}

#[derive(Debug, Clone)]
struct RegexLocation {
    route: usize,
    rewrite: Option<Regex>,
}

#[derive(Debug, Clone)]
struct RegexLocations {
    set: RegexSet,
    locations: Vec<RegexLocation>,
}

/// One host's locations in nginx mode.
#[derive(Debug, Clone, Default)]
pub(crate) struct NginxHost {
    routes: Vec<Route>,
    exact: Map<String, usize>,
    /// Prefix locations grouped by name length, longest first.
    prefixes: Vec<(usize, Map<String, usize>)>,
    /// Names ending in `/` (not `/`), without it: their 301.
    slash_redirect: Map<String, usize>,
    regex: Option<RegexLocations>,
    /// The rule whose Ingress's `app-root` applies to the host (the first
    /// location, in nginx order, that has one).
    app_root: Option<usize>,
    /// The host's first rule (oldest Ingress): ingress-nginx's root
    /// location to the default backend carries that Ingress's annotations.
    catch_all: Option<Route>,
}

/// A regex path nginx would run but the `regex` crate cannot (look-around,
/// back-references, ...), or one over the size limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RegexError {
    pub(crate) rule: usize,
    pub(crate) error: String,
}

fn builder(pattern: &str) -> RegexBuilder {
    let mut b = RegexBuilder::new(pattern);
    // nginx compiles `~*` with PCRE caseless, without UTF mode: ASCII case
    // folding, `.` is one byte. Paths here are ASCII (hygiene escapes the
    // rest).
    b.case_insensitive(true)
        .unicode(false)
        .size_limit(REGEX_SIZE_LIMIT);
    b
}

/// The location regex of a path: `^<path>`, exactly as ingress-nginx
/// writes `~* "^<path>"` (not wrapped: a top-level `|` is nginx's too).
pub(crate) fn location_regex(path: &str) -> String {
    format!("^{path}")
}

/// nginx's location order for regex locations: longer paths first, then
/// the path descending, then input order.
fn regex_order(rules: &[NginxRule]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..rules.len()).collect();
    idx.sort_by(|&a, &b| {
        let (pa, pb) = (rules[a].raw_path.as_bytes(), rules[b].raw_path.as_bytes());
        pb.len().cmp(&pa.len()).then(pb.cmp(pa))
    });
    idx
}

impl NginxHost {
    /// Builds the locations of a host from its rules (in Ingress order,
    /// conflicts already resolved). Rules whose regex cannot be compiled
    /// are left out and returned as errors (by index into `rules`).
    pub(crate) fn build(rules: Vec<NginxRule>, regex_host: bool) -> (Self, Vec<RegexError>) {
        let catch_all = rules.first().map(|r| r.route.clone());
        let (mut host, errors) = if regex_host {
            Self::build_regex(rules)
        } else {
            (Self::build_static(rules), Vec::new())
        };
        host.catch_all = catch_all;
        (host, errors)
    }

    fn build_regex(rules: Vec<NginxRule>) -> (Self, Vec<RegexError>) {
        let order = regex_order(&rules);
        let set_of = |idx: &[usize]| {
            let patterns = idx.iter().map(|&i| location_regex(&rules[i].route.path));
            RegexSetBuilder::new(patterns)
                .case_insensitive(true)
                .unicode(false)
                .size_limit(REGEX_SIZE_LIMIT * idx.len().max(1))
                .build()
        };
        let mut errors = Vec::new();
        // One compile of the whole set; only when it fails are the
        // patterns compiled one by one to name the culprits.
        let (good, set) = match set_of(&order) {
            Ok(set) => (order, set),
            Err(_) => {
                let mut good = Vec::new();
                for i in order {
                    match builder(&location_regex(&rules[i].route.path)).build() {
                        Ok(_) => good.push(i),
                        Err(e) => errors.push(RegexError {
                            rule: i,
                            error: e.to_string(),
                        }),
                    }
                }
                match set_of(&good) {
                    Ok(set) => (good, set),
                    Err(e) => {
                        // Each alone is fine; together they are too large.
                        errors.extend(good.iter().map(|&i| RegexError {
                            rule: i,
                            error: e.to_string(),
                        }));
                        return (Self::default(), errors);
                    }
                }
            }
        };
        let mut host = Self::default();
        let mut locations = Vec::new();
        for i in good {
            let route = &rules[i].route;
            let rewrites = route
                .policy
                .paths
                .rewrite
                .as_ref()
                .is_some_and(|r| r.applies_to(&rules[i].raw_path));
            // The rewrite is nginx's `rewrite "(?i)<path>" ...`:
            // unanchored. It compiles when `^<path>` did.
            let rewrite = rewrites
                .then(|| builder(&route.path).build().ok())
                .flatten();
            locations.push(RegexLocation {
                route: host.routes.len(),
                rewrite,
            });
            host.routes.push(route.clone());
        }
        if !locations.is_empty() {
            host.regex = Some(RegexLocations { set, locations });
        }
        host.app_root = host.first_app_root();
        (host, errors)
    }

    fn build_static(rules: Vec<NginxRule>) -> Self {
        let mut host = Self::default();
        let exact_paths: Vec<&str> = rules
            .iter()
            .filter(|r| r.route.path_type == PathType::Exact)
            .map(|r| r.route.path.as_str())
            .collect();
        let mut exact: Vec<(String, usize)> = Vec::new();
        let mut prefix: Vec<(String, usize)> = Vec::new();
        for i in regex_order(&rules) {
            let route = &rules[i].route;
            let idx = host.routes.len();
            let p = route.path.as_str();
            match route.path_type {
                PathType::Exact => exact.push((p.to_owned(), idx)),
                PathType::ImplementationSpecific => prefix.push((p.to_owned(), idx)),
                PathType::Prefix if p == "/" => prefix.push(("/".to_owned(), idx)),
                PathType::Prefix => {
                    let norm = if p.ends_with('/') {
                        p.to_owned()
                    } else {
                        format!("{p}/")
                    };
                    prefix.push((norm, idx));
                    if !exact_paths.contains(&p) {
                        exact.push((p.to_owned(), idx));
                    }
                }
            }
            host.routes.push(route.clone());
        }
        for (name, idx) in exact.iter().chain(prefix.iter()) {
            if name.len() > 1
                && let Some(bare) = name.strip_suffix('/')
            {
                host.slash_redirect.entry(bare.to_owned()).or_insert(*idx);
            }
        }
        for (name, idx) in exact {
            host.exact.entry(name).or_insert(idx);
        }
        for (name, idx) in prefix {
            let len = name.len();
            let group = match host.prefixes.iter_mut().find(|(l, _)| *l == len) {
                Some((_, m)) => m,
                None => {
                    host.prefixes.push((len, Map::default()));
                    &mut host.prefixes.last_mut().expect("just pushed").1
                }
            };
            group.entry(name).or_insert(idx);
        }
        host.prefixes.sort_by_key(|p| std::cmp::Reverse(p.0));
        host.app_root = host.first_app_root();
        host
    }

    /// `routes` are in nginx location order, so the first with `app-root`
    /// is the one whose server-level `if` nginx runs first.
    fn first_app_root(&self) -> Option<usize> {
        self.routes
            .iter()
            .position(|r| r.policy.paths.app_root.is_some())
    }

    fn longest_prefix(&self, path: &str) -> Option<(usize, usize)> {
        self.prefixes.iter().find_map(|(len, names)| {
            let head = path.get(..*len)?;
            names.get(head).map(|&i| (*len, i))
        })
    }

    /// nginx's location choice for a normalized path.
    pub(crate) fn find(&self, path: &str) -> Option<NginxMatch<'_>> {
        if let Some(&i) = self.exact.get(path) {
            return Some(NginxMatch::Exact(&self.routes[i]));
        }
        let prefix = self.longest_prefix(path);
        if prefix.is_none_or(|(len, _)| len != path.len())
            && let Some(&i) = self.slash_redirect.get(path)
        {
            return Some(NginxMatch::SlashRedirect(&self.routes[i]));
        }
        if let Some(re) = &self.regex
            && let Some(first) = re.set.matches(path.as_bytes()).iter().next()
        {
            let loc = &re.locations[first];
            return Some(NginxMatch::Regex(
                &self.routes[loc.route],
                loc.rewrite.as_ref(),
            ));
        }
        prefix.map(|(_, i)| NginxMatch::Prefix(&self.routes[i]))
    }

    /// The rule whose `app-root` applies to the host.
    pub(crate) fn app_root(&self) -> Option<&Route> {
        self.app_root.map(|i| &self.routes[i])
    }

    /// The rule whose policy the host's catch-all location carries.
    pub(crate) fn catch_all(&self) -> Option<&Route> {
        self.catch_all.as_ref()
    }

    /// Every rule.
    pub(crate) fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Whether the host's locations are regexes.
    pub(crate) fn is_regex(&self) -> bool {
        self.regex.is_some()
    }
}
