//! Route resolution: what to do with a request, as a typed outcome the
//! gateway only executes ([`RouteTable::resolve`] → [`Resolution`]).
//!
//! Order, as nginx's phases order the directives ingress-nginx generates:
//!
//! 1. `from-to-www-redirect`: the request host is the other name of a
//!    host that asked for it → redirect (ConfigMap `http-redirect-code`,
//!    308) to `scheme://<host>:<port><uri>` (trailing `/` dropped), as
//!    ingress-nginx's redirect server does.
//! 2. `app-root` (server level): the path is `/` → 302 to
//!    `scheme://<Host header><app-root>`.
//! 3. Location choice ([`crate::routes::nginx`]): nginx's trailing-slash
//!    case → 301 to `<path>/` (plus the query); no rule → the host's root
//!    location, which in ingress-nginx carries the annotations of the
//!    host's first Ingress: steps 4–8 apply with them, then the default
//!    backend or 404.
//! 4. A denied route (fail closed, or an access-control value
//!    ingress-nginx could not use) → 503.
//! 5. CORS preflight (`enable-cors`, `OPTIONS`, allowed origin) → 204.
//! 6. `temporal-redirect` / `permanent-redirect` → its code and URL.
//! 7. `rewrite-target`: the upstream path from the path regex's captures;
//!    a target that is an absolute URL → 302 there (plus the query).
//! 8. HTTP → HTTPS (`ssl-redirect` for hosts with TLS, `force-ssl-redirect`
//!    always) → `http-redirect-code` to `https://<host><uri>` (a trailing
//!    `/` dropped unless `preserve-trailing-slash`).
//! 9. Forward: the upstream path, Host (`upstream-vhost`),
//!    `X-Forwarded-Prefix`, CORS response headers.
//!
//! After resolution the gateway runs its stages for the route's policy
//! (limits, access control, upstream). Differences from nginx: the URI in
//! redirects and the forwarded path is the normalized one (nginx forwards
//! the raw request URI when it does not rewrite; Sluice forwards what it
//! routed on), and escapes other than of unreserved characters stay
//! escaped (nginx decodes them before matching and re-escapes fewer).
//!
//! A table built without ingress-nginx mode resolves as the Ingress
//! specification says: the rule, and a 308 to HTTPS per
//! `sluice.dev/ssl-redirect`.

use std::borrow::Cow;

use http::HeaderName;

use crate::annotations::Denial;
use crate::annotations::cors::CorsDecision;
use crate::annotations::paths::VhostPart;

use super::host::{self, HOST_BUF};
use super::hygiene::NormalizedRequest;
use super::nginx::NginxMatch;
use super::table::{Backend, DefaultRoute, Route, RouteTable, TlsHost};

/// The scheme a request came in with (after trusted forwarded headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTPS.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

/// What resolution needs from a request besides its target.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The request's scheme.
    pub scheme: Scheme,
    /// The Host header (or `:authority`) as sent, `""` when none.
    pub host: &'a str,
    /// The port the request arrived on (ingress-nginx's www redirect puts
    /// it into the Location).
    pub server_port: u16,
    /// The HTTPS port redirects to HTTPS name when not 443 (and with
    /// `use-port-in-redirects`).
    pub https_port: u16,
    /// The method (CORS preflight).
    pub method: &'a http::Method,
    /// The `Origin` header (CORS).
    pub origin: Option<&'a str>,
}

impl<'a> RequestFacts<'a> {
    /// Facts for a request with the usual ports (80 for HTTP, 443 for
    /// HTTPS), no `Origin`.
    pub fn new(scheme: Scheme, host: &'a str, method: &'a http::Method) -> Self {
        Self {
            scheme,
            host,
            server_port: match scheme {
                Scheme::Http => 80,
                Scheme::Https => 443,
            },
            https_port: 443,
            method,
            origin: None,
        }
    }
}

/// Why a request is redirected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectReason {
    /// `from-to-www-redirect`.
    FromToWww,
    /// `app-root`.
    AppRoot,
    /// nginx's 301 from `<path>` to `<path>/`.
    TrailingSlash,
    /// `permanent-redirect` or `temporal-redirect`.
    Fixed,
    /// A `rewrite-target` that is an absolute URL.
    Rewrite,
    /// HTTP → HTTPS.
    Https,
}

/// A redirect answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect<'t> {
    /// The status code.
    pub status: u16,
    /// The Location header.
    pub location: String,
    /// Why.
    pub reason: RedirectReason,
    /// The rule, when a rule matched.
    pub route: Option<&'t Route>,
}

/// A request to proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward<'t> {
    /// The rule (its backend, Ingress and policy; its canary).
    pub route: &'t Route,
    /// TLS of the request host, when it has a `spec.tls` entry.
    pub tls: Option<&'t TlsHost>,
    /// The path to send upstream.
    pub path: Cow<'t, str>,
    /// The query string to send upstream, as received.
    pub query: Option<&'t str>,
    /// The Host header to send upstream instead of the request's
    /// (`upstream-vhost`).
    pub upstream_host: Option<String>,
    /// `X-Forwarded-Prefix` to send upstream.
    pub x_forwarded_prefix: Option<String>,
    /// CORS headers to add to the answer.
    pub cors_headers: Vec<(HeaderName, String)>,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution<'t> {
    /// Answer a redirect.
    Redirect(Redirect<'t>),
    /// Answer a CORS preflight: 204 with these headers.
    Preflight {
        /// The rule.
        route: &'t Route,
        /// The headers.
        headers: Vec<(HeaderName, String)>,
    },
    /// Answer 503: the route is denied.
    Deny {
        /// The rule.
        route: &'t Route,
        /// Why.
        denials: &'t [Denial],
    },
    /// Proxy to the rule's backend.
    Forward(Forward<'t>),
    /// No rule matched: the Ingress default backend.
    Default(&'t DefaultRoute),
    /// No rule and no default backend: 404.
    NoRoute,
}

/// `path?query`, and with nginx's trailing-slash trim for the HTTPS and
/// www redirects (`request_uri` minus one final `/` when it ends with one).
fn request_uri(target: &NormalizedRequest, trim_slash: bool) -> String {
    let mut uri = target.path.as_str().to_owned();
    if let Some(q) = &target.query {
        uri.push('?');
        uri.push_str(q);
    }
    if trim_slash && uri.ends_with('/') {
        uri.pop();
    }
    uri
}

/// The host part of a Host header, as sent (port removed).
fn host_part(raw: &str) -> &str {
    if raw.starts_with('[') {
        return raw.find(']').map_or(raw, |e| &raw[..=e]);
    }
    raw.split(':').next().unwrap_or(raw)
}

fn with_query(mut s: String, query: Option<&str>) -> String {
    if let Some(q) = query {
        s.push('?');
        s.push_str(q);
    }
    s
}

impl RouteTable {
    /// Resolves a request. `target` comes from
    /// [`crate::routes::hygiene::normalize`].
    pub fn resolve<'t>(
        &'t self,
        req: &RequestFacts<'_>,
        target: &'t NormalizedRequest,
    ) -> Resolution<'t> {
        let mut buf = [0u8; HOST_BUF];
        let host = host::normalize_into(req.host, &mut buf);
        match self.nginx {
            None => self.resolve_spec(req, host, target),
            Some(_) => self.resolve_nginx(req, host, target),
        }
    }

    fn resolve_spec<'t>(
        &'t self,
        req: &RequestFacts<'_>,
        host: Option<&str>,
        target: &'t NormalizedRequest,
    ) -> Resolution<'t> {
        let route = match self.host_routes(host).find(target.path.as_str()) {
            Some(r) => r,
            None => return self.unmatched(),
        };
        let tls = match (&route.host, host) {
            (Some(_), Some(h)) => self.tls_for_normalized_host(h),
            _ => None,
        };
        if req.scheme == Scheme::Http
            && tls.is_some()
            && route.ssl_redirect
            && let Some(h) = host
        {
            let port = match req.https_port {
                443 => String::new(),
                p => format!(":{p}"),
            };
            return Resolution::Redirect(Redirect {
                status: 308,
                location: format!("https://{h}{port}{}", request_uri(target, false)),
                reason: RedirectReason::Https,
                route: Some(route),
            });
        }
        Resolution::Forward(Forward {
            route,
            tls,
            path: Cow::Borrowed(target.path.as_str()),
            query: target.query.as_deref(),
            upstream_host: None,
            x_forwarded_prefix: None,
            cors_headers: Vec::new(),
        })
    }

    fn unmatched(&self) -> Resolution<'_> {
        match &self.default {
            Some(d) => Resolution::Default(d),
            None => Resolution::NoRoute,
        }
    }

    fn resolve_nginx<'t>(
        &'t self,
        req: &RequestFacts<'_>,
        host: Option<&str>,
        target: &'t NormalizedRequest,
    ) -> Resolution<'t> {
        let code = self.nginx.map_or(308, |n| n.http_redirect_code);
        let scheme = req.scheme.as_str();
        let path = target.path.as_str();
        let query = target.query.as_deref();
        // 1. from-to-www.
        if let Some(to) = host.and_then(|h| self.www_redirects.get(h)) {
            return Resolution::Redirect(Redirect {
                status: code,
                location: format!(
                    "{scheme}://{to}:{}{}",
                    req.server_port,
                    request_uri(target, true)
                ),
                reason: RedirectReason::FromToWww,
                route: None,
            });
        }
        let routes = self.host_routes(host);
        let Some(locations) = routes.nginx.as_deref() else {
            return self.unmatched();
        };
        // 2. app-root.
        if path == "/"
            && let Some(route) = locations.app_root()
            && let Some(root) = &route.policy.paths.app_root
        {
            return Resolution::Redirect(Redirect {
                status: 302,
                location: format!("{scheme}://{}{}", req.host, root.as_str()),
                reason: RedirectReason::AppRoot,
                route: Some(route),
            });
        }
        // 3. Location. Without one, the host's root location to the default
        // backend, which carries its first Ingress's annotations (denial,
        // redirects) in ingress-nginx.
        let mut catch_all = false;
        let (route, rewrite) = match locations.find(path) {
            None => match locations.catch_all() {
                Some(route) => {
                    catch_all = true;
                    (route, None)
                }
                None => return self.unmatched(),
            },
            Some(NginxMatch::SlashRedirect(route)) => {
                let own = with_query(format!("{path}/"), query);
                let location = match host {
                    Some(h) if !route.policy.redirects.relative => format!("{scheme}://{h}{own}"),
                    _ => own,
                };
                return Resolution::Redirect(Redirect {
                    status: 301,
                    location,
                    reason: RedirectReason::TrailingSlash,
                    route: Some(route),
                });
            }
            Some(NginxMatch::Regex(route, rewrite)) => (route, rewrite),
            Some(m) => (m.route(), None),
        };
        let policy = &route.policy;
        // 4. Denied.
        if policy.is_denied() {
            return Resolution::Deny {
                route,
                denials: &policy.denials,
            };
        }
        // 5. CORS.
        let cors_headers = match policy
            .cors
            .as_ref()
            .map(|c| c.evaluate(req.method, req.origin))
        {
            Some(CorsDecision::Preflight(headers)) => {
                return Resolution::Preflight { route, headers };
            }
            Some(CorsDecision::Headers(h)) => h,
            Some(CorsDecision::None) | None => Vec::new(),
        };
        // 6. Fixed redirect.
        if let Some(f) = &policy.redirects.fixed {
            let location = match host {
                Some(h) if f.url.starts_with('/') && !policy.redirects.relative => {
                    format!("{scheme}://{h}{}", f.url)
                }
                _ => f.url.clone(),
            };
            return Resolution::Redirect(Redirect {
                status: f.code,
                location,
                reason: RedirectReason::Fixed,
                route: Some(route),
            });
        }
        // 7. Rewrite.
        let mut upstream_path = Cow::Borrowed(path);
        let mut x_forwarded_prefix = None;
        if let (Some(re), Some(target_tpl)) = (rewrite, &policy.paths.rewrite)
            && let Some(caps) = re.captures(path.as_bytes())
        {
            let group = |n: u8| {
                caps.get(usize::from(n))
                    .and_then(|m| std::str::from_utf8(m.as_bytes()).ok())
            };
            let new = target_tpl.template().expand(group);
            if target_tpl.is_redirect() {
                return Resolution::Redirect(Redirect {
                    status: 302,
                    location: with_query(new, query),
                    reason: RedirectReason::Rewrite,
                    route: Some(route),
                });
            }
            upstream_path = Cow::Owned(new);
            x_forwarded_prefix = policy
                .paths
                .x_forwarded_prefix
                .as_ref()
                .map(|t| t.expand(group));
        }
        // 8. HTTPS.
        let tls = host.and_then(|h| self.tls_for_normalized_host(h));
        let redirects = &policy.redirects;
        if req.scheme == Scheme::Http
            && (redirects.force_ssl_redirect || (redirects.ssl_redirect && tls.is_some()))
        {
            let port = if redirects.use_port_in_redirects {
                format!(":{}", req.https_port)
            } else {
                String::new()
            };
            let uri = request_uri(target, !policy.paths.preserve_trailing_slash);
            return Resolution::Redirect(Redirect {
                status: code,
                location: format!("https://{}{port}{uri}", host_part(req.host)),
                reason: RedirectReason::Https,
                route: Some(route),
            });
        }
        // 9. Forward (to the default backend for the catch-all).
        if catch_all {
            return self.unmatched();
        }
        Resolution::Forward(Forward {
            route,
            tls,
            path: upstream_path,
            query,
            upstream_host: policy
                .paths
                .upstream_vhost
                .as_ref()
                .map(|v| render_vhost(v.parts(), req.host, host, &route.backend)),
            x_forwarded_prefix,
            cors_headers,
        })
    }
}

fn render_vhost(
    parts: &[VhostPart],
    raw_host: &str,
    host: Option<&str>,
    backend: &Backend,
) -> String {
    let mut out = String::new();
    for p in parts {
        match (p, backend) {
            (VhostPart::Literal(l), _) => out.push_str(l),
            (VhostPart::Host, _) => out.push_str(host.unwrap_or_default()),
            (VhostPart::HttpHost | VhostPart::BestHttpHost, _) => out.push_str(raw_host),
            (
                VhostPart::Namespace,
                Backend::Service { namespace, .. } | Backend::Resource { namespace, .. },
            ) => {
                out.push_str(namespace);
            }
            (VhostPart::ServiceName, Backend::Service { name, .. }) => out.push_str(name),
            (VhostPart::ServicePort, Backend::Service { port, .. }) => {
                out.push_str(&port.to_string())
            }
            (VhostPart::ServiceName | VhostPart::ServicePort, Backend::Resource { .. }) => {}
        }
    }
    out
}
