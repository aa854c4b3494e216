//! The one table of every ingress-nginx annotation: what it is, what
//! ingress-nginx defaults it to, and what Sluice does with it.
//!
//! Three things read this table and nothing else, so they cannot drift:
//! the fail-closed check ([`super::fail_closed`]: an access-control
//! annotation that is not [`Support::is_enforced`] refuses the Ingress),
//! `sluice-ingress migrate-check` (per annotation status), and
//! `docs/migrating-from-ingress-nginx.md` (its table is [`markdown_table`],
//! checked by a test). When the gateway starts enforcing an annotation, the
//! change is flipping its [`Support`] here.

use std::fmt;

/// What Sluice does with an annotation today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Support {
    /// Enforced as ingress-nginx does.
    Honoured,
    /// Enforced, with the difference stated in [`AnnotationSpec::note`].
    HonouredWithDifference,
    /// Parsed and validated into the typed policy (invalid values are
    /// reported), but the gateway does not act on it yet. An access-control
    /// annotation in this state refuses the Ingress (fail closed).
    NotYetEnforced,
    /// Recognised, not supported: a Warning, and the annotation is ignored.
    Unsupported,
    /// Never supported, by design (raw nginx configuration text).
    Never,
}

impl Support {
    /// Whether the gateway acts on the annotation.
    pub const fn is_enforced(self) -> bool {
        matches!(self, Self::Honoured | Self::HonouredWithDifference)
    }

    /// The label used in reports and in the docs.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Honoured => "honoured",
            Self::HonouredWithDifference => "honoured, with a difference",
            Self::NotYetEnforced => "parsed, not yet enforced",
            Self::Unsupported => "unsupported",
            Self::Never => "never",
        }
    }
}

impl fmt::Display for Support {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The groups of the issue and of the docs table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// use-regex, rewrite-target, app-root, ...
    PathsAndRewrites,
    /// ssl-redirect, permanent-redirect, server-alias, ...
    Redirects,
    /// Body size, timeouts, retries, rate limits.
    LimitsAndTimeouts,
    /// Protocol, upstream TLS, balancing.
    Backends,
    /// Cookie affinity and canaries.
    AffinityAndCanaries,
    /// Source ranges, basic, external and client-certificate auth.
    AccessControl,
    /// Cross-origin resource sharing.
    Cors,
    /// Custom error pages and logs.
    ErrorsAndLogs,
    /// Raw nginx configuration.
    Snippets,
    /// Everything else ingress-nginx defines.
    Other,
}

impl Group {
    /// Every group, in docs order.
    pub const ALL: [Group; 10] = [
        Self::PathsAndRewrites,
        Self::Redirects,
        Self::LimitsAndTimeouts,
        Self::Backends,
        Self::AffinityAndCanaries,
        Self::AccessControl,
        Self::Cors,
        Self::ErrorsAndLogs,
        Self::Snippets,
        Self::Other,
    ];

    /// A heading.
    pub const fn title(self) -> &'static str {
        match self {
            Self::PathsAndRewrites => "Paths and rewrites",
            Self::Redirects => "Redirects",
            Self::LimitsAndTimeouts => "Limits and timeouts",
            Self::Backends => "Backends",
            Self::AffinityAndCanaries => "Affinity and canaries",
            Self::AccessControl => "Access control",
            Self::Cors => "CORS",
            Self::ErrorsAndLogs => "Errors and logs",
            Self::Snippets => "Snippets",
            Self::Other => "Other",
        }
    }
}

/// Where an annotation applies in ingress-nginx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The Ingress's own paths (nginx locations).
    Ingress,
    /// The whole host, every Ingress of it (nginx `server` settings such as
    /// client certificates, aliases, app-root).
    Host,
}

/// The part of Sluice that enforces (or will enforce) an annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// `routes::RouteTable::resolve`: location choice, redirects, rewrites,
    /// upstream Host; the gateway only executes the outcome.
    RouteResolution,
    /// The TLS listener (client certificates).
    Listener,
    /// The gateway's access stage: source ranges, basic and external auth.
    Access,
    /// The gateway's limit stage: rate and connection limits, body size.
    Limits,
    /// The gateway's upstream stage: protocol, TLS to the backend,
    /// balancing, affinity, canaries, timeouts, retries.
    Upstream,
    /// The gateway's response stage: CORS headers, custom errors, logs.
    Response,
    /// Nothing (unsupported or never).
    Nowhere,
}

impl Stage {
    /// A short name for reports.
    pub const fn label(self) -> &'static str {
        match self {
            Self::RouteResolution => "route resolution",
            Self::Listener => "TLS listener",
            Self::Access => "access stage",
            Self::Limits => "limit stage",
            Self::Upstream => "upstream stage",
            Self::Response => "response stage",
            Self::Nowhere => "-",
        }
    }
}

/// One annotation (name without prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnotationSpec {
    /// The name after `<prefix>/`.
    pub name: &'static str,
    /// For an alternative spelling: the name it stands for (a value under
    /// the main name wins).
    pub alias_of: Option<&'static str>,
    /// Docs group.
    pub group: Group,
    /// Where it applies in ingress-nginx.
    pub scope: Scope,
    /// Whether it restricts who may reach the backend. Such an annotation
    /// that Sluice does not enforce refuses the Ingress (fail closed).
    pub guards_access: bool,
    /// What Sluice does with it.
    pub support: Support,
    /// What enforces it.
    pub stage: Stage,
    /// ingress-nginx's default, as its docs state it.
    pub default: &'static str,
    /// The difference from ingress-nginx once enforced, or why it is
    /// unsupported or never supported. Empty when there is none.
    pub note: &'static str,
}

impl AnnotationSpec {
    /// Whether this annotation makes Sluice refuse the Ingress today: it
    /// guards access and is not enforced.
    pub const fn refuses(&self) -> bool {
        self.guards_access && !self.support.is_enforced()
    }
}

use Group as G;
use Scope::{Host, Ingress as Ing};
use Stage as St;
use Support::{Never, NotYetEnforced as Todo, Unsupported};

#[allow(clippy::too_many_arguments)]
const fn spec(
    name: &'static str,
    group: Group,
    scope: Scope,
    guards_access: bool,
    support: Support,
    stage: Stage,
    default: &'static str,
    note: &'static str,
) -> AnnotationSpec {
    AnnotationSpec {
        name,
        alias_of: None,
        group,
        scope,
        guards_access,
        support,
        stage,
        default,
        note,
    }
}

/// `s`, enforced as ingress-nginx does.
const fn honoured(s: AnnotationSpec) -> AnnotationSpec {
    AnnotationSpec {
        support: Support::Honoured,
        ..s
    }
}

/// `s`, enforced with the difference its note states.
const fn differs(s: AnnotationSpec) -> AnnotationSpec {
    AnnotationSpec {
        support: Support::HonouredWithDifference,
        ..s
    }
}

const fn alias(of: AnnotationSpec, name: &'static str) -> AnnotationSpec {
    AnnotationSpec {
        name,
        alias_of: Some(of.name),
        ..of
    }
}

const fn todo(
    name: &'static str,
    group: Group,
    stage: Stage,
    default: &'static str,
    note: &'static str,
) -> AnnotationSpec {
    spec(name, group, Ing, false, Todo, stage, default, note)
}

const fn guard(
    name: &'static str,
    scope: Scope,
    default: &'static str,
    note: &'static str,
) -> AnnotationSpec {
    let stage = match scope {
        Host => St::Listener,
        Ing => St::Access,
    };
    spec(
        name,
        G::AccessControl,
        scope,
        true,
        Todo,
        stage,
        default,
        note,
    )
}

const fn limit(name: &'static str, default: &'static str, note: &'static str) -> AnnotationSpec {
    spec(
        name,
        G::LimitsAndTimeouts,
        Ing,
        true,
        Todo,
        St::Limits,
        default,
        note,
    )
}

const fn unsupported(
    name: &'static str,
    group: Group,
    default: &'static str,
    why: &'static str,
) -> AnnotationSpec {
    spec(
        name,
        group,
        Ing,
        false,
        Unsupported,
        St::Nowhere,
        default,
        why,
    )
}

const fn snippet(name: &'static str, scope: Scope) -> AnnotationSpec {
    spec(
        name,
        G::Snippets,
        scope,
        false,
        Never,
        St::Nowhere,
        "",
        SNIPPET_REASON,
    )
}

/// Why snippets are never supported.
pub const SNIPPET_REASON: &str = "raw nginx configuration text; Sluice never renders object fields into \
     configuration, the cause of ingress-nginx's snippet and IngressNightmare CVEs";

const ALLOWLIST: AnnotationSpec = differs(guard(
    "allowlist-source-range",
    Ing,
    "",
    "the client address is the connection's peer (X-Forwarded-For counts only from the \
     gateway's trusted proxies; the ConfigMap's use-forwarded-headers and enable-real-ip are \
     not read yet); denied: 403",
));
const LIMIT_ALLOWLIST: AnnotationSpec = limit(
    "limit-allowlist",
    "",
    "addresses exempt from the rate and connection limits",
);

const NO_AUTH_CACHE: &str = "auth answers are not cached: every request asks the auth service";
const AUTH_POOL: &str = "connections to the auth service are always kept alive and pooled";

const BUFFERS: &str = "nginx buffering knob; Sluice streams request and response bodies";

/// Every annotation ingress-nginx defines (v1.15), in docs order.
pub const CATALOG: &[AnnotationSpec] = &[
    // Paths and rewrites.
    differs(spec(
        "use-regex",
        G::PathsAndRewrites,
        Host,
        false,
        Todo,
        St::RouteResolution,
        "false",
        "makes every path of the host a case-insensitive regex (`~* ^path`), as nginx's per-server \
         locations do; Rust `regex` syntax, linear time: a path using look-around or \
         back-references is skipped with a Warning",
    )),
    differs(spec(
        "rewrite-target",
        G::PathsAndRewrites,
        Host,
        false,
        Todo,
        St::RouteResolution,
        "",
        "implies use-regex for the host; `$1`-`$9` captures and literal text (another nginx \
         variable is refused); a target starting with http:// or https:// redirects (302), as \
         nginx's rewrite does",
    )),
    honoured(spec(
        "app-root",
        G::PathsAndRewrites,
        Host,
        false,
        Todo,
        St::RouteResolution,
        "",
        "302 from `/` to `$scheme://$http_host<app-root>`, for the whole host",
    )),
    honoured(todo(
        "x-forwarded-prefix",
        G::PathsAndRewrites,
        St::RouteResolution,
        "",
        "sent only together with rewrite-target, as in ingress-nginx; `$1`-`$9` from the rewrite",
    )),
    differs(todo(
        "upstream-vhost",
        G::PathsAndRewrites,
        St::RouteResolution,
        "the request's Host",
        "a host name, optionally using $host, $http_host, $best_http_host, $namespace, \
         $service_name or $service_port; other nginx variables are refused",
    )),
    honoured(todo(
        "preserve-trailing-slash",
        G::PathsAndRewrites,
        St::RouteResolution,
        "false",
        "",
    )),
    // Redirects.
    honoured(todo(
        "ssl-redirect",
        G::Redirects,
        St::RouteResolution,
        "true",
        "308 (ConfigMap http-redirect-code) to https for hosts with TLS",
    )),
    honoured(todo(
        "force-ssl-redirect",
        G::Redirects,
        St::RouteResolution,
        "false",
        "",
    )),
    differs(todo(
        "permanent-redirect",
        G::Redirects,
        St::RouteResolution,
        "",
        "codes 300, 304, 305 and 306 also carry the URL as Location (nginx sends it as the body)",
    )),
    honoured(todo(
        "permanent-redirect-code",
        G::Redirects,
        St::RouteResolution,
        "301",
        "300-308",
    )),
    honoured(todo(
        "temporal-redirect",
        G::Redirects,
        St::RouteResolution,
        "",
        "wins over permanent-redirect, as in ingress-nginx",
    )),
    honoured(todo(
        "temporal-redirect-code",
        G::Redirects,
        St::RouteResolution,
        "302",
        "300-307",
    )),
    honoured(spec(
        "from-to-www-redirect",
        G::Redirects,
        Host,
        false,
        Todo,
        St::RouteResolution,
        "false",
        "",
    )),
    differs(spec(
        "server-alias",
        G::Redirects,
        Host,
        false,
        Todo,
        St::RouteResolution,
        "",
        "DNS names and `*.` wildcards; nginx regular-expression server names (`~^...`) are refused",
    )),
    honoured(todo(
        "relative-redirects",
        G::Redirects,
        St::RouteResolution,
        "false",
        "",
    )),
    honoured(todo(
        "use-port-in-redirects",
        G::Redirects,
        St::RouteResolution,
        "false",
        "",
    )),
    // Limits and timeouts.
    honoured(todo(
        "proxy-body-size",
        G::LimitsAndTimeouts,
        St::Limits,
        "1m",
        "over the limit: 413",
    )),
    todo(
        "proxy-connect-timeout",
        G::LimitsAndTimeouts,
        St::Upstream,
        "5",
        "whole seconds",
    ),
    todo(
        "proxy-read-timeout",
        G::LimitsAndTimeouts,
        St::Upstream,
        "60",
        "whole seconds; expiry: 504",
    ),
    todo(
        "proxy-send-timeout",
        G::LimitsAndTimeouts,
        St::Upstream,
        "60",
        "whole seconds",
    ),
    todo(
        "proxy-next-upstream",
        G::LimitsAndTimeouts,
        St::Upstream,
        "error timeout",
        "",
    ),
    todo(
        "proxy-next-upstream-tries",
        G::LimitsAndTimeouts,
        St::Upstream,
        "3",
        "",
    ),
    todo(
        "proxy-next-upstream-timeout",
        G::LimitsAndTimeouts,
        St::Upstream,
        "0",
        "0 = no limit",
    ),
    limit(
        "limit-rps",
        "",
        "per client address; burst = rps x limit-burst-multiplier; over: 503 \
        (ConfigMap limit-req-status-code)",
    ),
    limit("limit-rpm", "", "as limit-rps, per minute"),
    limit(
        "limit-connections",
        "",
        "concurrent connections per client address; over: 503 \
        (ConfigMap limit-conn-status-code)",
    ),
    limit("limit-burst-multiplier", "5", ""),
    LIMIT_ALLOWLIST,
    alias(LIMIT_ALLOWLIST, "limit-whitelist"),
    limit(
        "limit-rate",
        "0",
        "response bandwidth per connection, KiB/s",
    ),
    limit(
        "limit-rate-after",
        "0",
        "KiB sent before limit-rate applies",
    ),
    unsupported("proxy-buffering", G::LimitsAndTimeouts, "off", BUFFERS),
    unsupported("proxy-buffer-size", G::LimitsAndTimeouts, "4k", BUFFERS),
    unsupported("proxy-buffers-number", G::LimitsAndTimeouts, "4", BUFFERS),
    unsupported("proxy-busy-buffers-size", G::LimitsAndTimeouts, "", BUFFERS),
    unsupported(
        "proxy-max-temp-file-size",
        G::LimitsAndTimeouts,
        "1024m",
        BUFFERS,
    ),
    unsupported(
        "proxy-request-buffering",
        G::LimitsAndTimeouts,
        "on",
        BUFFERS,
    ),
    unsupported("client-body-buffer-size", G::LimitsAndTimeouts, "", BUFFERS),
    // Backends.
    todo(
        "backend-protocol",
        G::Backends,
        St::Upstream,
        "HTTP",
        "HTTP, HTTPS, GRPC, GRPCS, AUTO_HTTP; FCGI is refused (HTTP is used)",
    ),
    todo(
        "proxy-ssl-secret",
        G::Backends,
        St::Upstream,
        "",
        "ca.crt verifies the backend, tls.crt/tls.key is the client certificate",
    ),
    todo(
        "proxy-ssl-verify",
        G::Backends,
        St::Upstream,
        "off",
        "off: the backend's certificate is not checked, as in ingress-nginx",
    ),
    todo(
        "proxy-ssl-name",
        G::Backends,
        St::Upstream,
        "the upstream host",
        "",
    ),
    todo(
        "proxy-ssl-server-name",
        G::Backends,
        St::Upstream,
        "off",
        "",
    ),
    todo("proxy-ssl-verify-depth", G::Backends, St::Upstream, "1", ""),
    unsupported(
        "proxy-ssl-ciphers",
        G::Backends,
        "DEFAULT",
        "rustls offers its own fixed set of modern cipher suites",
    ),
    unsupported(
        "proxy-ssl-protocols",
        G::Backends,
        "TLSv1.2",
        "rustls negotiates TLS 1.2 or 1.3",
    ),
    todo(
        "service-upstream",
        G::Backends,
        St::Upstream,
        "false",
        "the Service's ClusterIP instead of its endpoints",
    ),
    todo(
        "load-balance",
        G::Backends,
        St::Upstream,
        "round_robin",
        "round_robin and ewma; chash, chashsubset and sticky_* are refused (round_robin is used)",
    ),
    todo(
        "upstream-hash-by",
        G::Backends,
        St::Upstream,
        "",
        "consistent hash of text and $request_uri, $uri, $host, $remote_addr, $scheme, \
         $http_NAME, $cookie_NAME, $arg_NAME; other nginx variables are refused",
    ),
    unsupported(
        "upstream-hash-by-subset",
        G::Backends,
        "false",
        "subset hashing is not implemented",
    ),
    unsupported(
        "upstream-hash-by-subset-size",
        G::Backends,
        "3",
        "subset hashing is not implemented",
    ),
    // Affinity and canaries.
    todo(
        "affinity",
        G::AffinityAndCanaries,
        St::Upstream,
        "",
        "cookie (the only type)",
    ),
    todo(
        "affinity-mode",
        G::AffinityAndCanaries,
        St::Upstream,
        "balanced",
        "balanced or persistent",
    ),
    todo(
        "affinity-canary-behavior",
        G::AffinityAndCanaries,
        St::Upstream,
        "sticky",
        "sticky or legacy",
    ),
    todo(
        "session-cookie-name",
        G::AffinityAndCanaries,
        St::Upstream,
        "INGRESSCOOKIE",
        "",
    ),
    todo(
        "session-cookie-path",
        G::AffinityAndCanaries,
        St::Upstream,
        "the rule path",
        "",
    ),
    todo(
        "session-cookie-domain",
        G::AffinityAndCanaries,
        St::Upstream,
        "",
        "",
    ),
    todo(
        "session-cookie-expires",
        G::AffinityAndCanaries,
        St::Upstream,
        "",
        "seconds",
    ),
    todo(
        "session-cookie-max-age",
        G::AffinityAndCanaries,
        St::Upstream,
        "",
        "seconds",
    ),
    todo(
        "session-cookie-samesite",
        G::AffinityAndCanaries,
        St::Upstream,
        "",
        "None, Lax or Strict",
    ),
    todo(
        "session-cookie-conditional-samesite-none",
        G::AffinityAndCanaries,
        St::Upstream,
        "false",
        "",
    ),
    todo(
        "session-cookie-secure",
        G::AffinityAndCanaries,
        St::Upstream,
        "false",
        "",
    ),
    todo(
        "session-cookie-change-on-failure",
        G::AffinityAndCanaries,
        St::Upstream,
        "false",
        "",
    ),
    todo(
        "canary",
        G::AffinityAndCanaries,
        St::Upstream,
        "false",
        "the canary joins the route with the same host, path and pathType and, as in ingress-nginx, \
         every route to that route's Service port",
    ),
    todo(
        "canary-weight",
        G::AffinityAndCanaries,
        St::Upstream,
        "0",
        "0 to canary-weight-total",
    ),
    todo(
        "canary-weight-total",
        G::AffinityAndCanaries,
        St::Upstream,
        "100",
        "",
    ),
    todo(
        "canary-by-header",
        G::AffinityAndCanaries,
        St::Upstream,
        "",
        "`always` / `never`; precedence header, then cookie, then weight",
    ),
    todo(
        "canary-by-header-value",
        G::AffinityAndCanaries,
        St::Upstream,
        "",
        "",
    ),
    todo(
        "canary-by-header-pattern",
        G::AffinityAndCanaries,
        St::Upstream,
        "",
        "Rust `regex` syntax (no look-around or back-references)",
    ),
    todo(
        "canary-by-cookie",
        G::AffinityAndCanaries,
        St::Upstream,
        "",
        "`always` / `never`",
    ),
    // Access control.
    ALLOWLIST,
    alias(ALLOWLIST, "whitelist-source-range"),
    honoured(guard("denylist-source-range", Ing, "", "denied: 403")),
    differs(guard(
        "auth-type",
        Ing,
        "",
        "basic; digest is refused (the Ingress is refused)",
    )),
    honoured(guard(
        "auth-secret",
        Ing,
        "",
        "NAME or NAMESPACE/NAME; another namespace is refused, as \
        ingress-nginx refuses it by default",
    )),
    honoured(guard(
        "auth-secret-type",
        Ing,
        "auth-file",
        "auth-file (htpasswd in key `auth`) or auth-map",
    )),
    honoured(guard("auth-realm", Ing, "", "")),
    differs(guard(
        "auth-url",
        Ing,
        "",
        "a 2xx answer allows, 401/403 deny, anything else 500; http:// only (an https:// \
         auth service answers 500, never open)",
    )),
    honoured(guard("auth-method", Ing, "GET", "")),
    honoured(guard(
        "auth-signin",
        Ing,
        "",
        "401 from the auth service redirects here, with `rd`",
    )),
    honoured(guard("auth-signin-redirect-param", Ing, "rd", "")),
    honoured(guard(
        "auth-response-headers",
        Ing,
        "",
        "copied from the auth answer to the upstream request",
    )),
    honoured(guard(
        "auth-request-redirect",
        Ing,
        "",
        "X-Auth-Request-Redirect sent to the auth service",
    )),
    differs(guard("auth-cache-key", Ing, "", NO_AUTH_CACHE)),
    differs(guard(
        "auth-cache-duration",
        Ing,
        "200 202 401 5m",
        NO_AUTH_CACHE,
    )),
    differs(guard("auth-keepalive", Ing, "0", AUTH_POOL)),
    differs(guard("auth-keepalive-share-vars", Ing, "false", AUTH_POOL)),
    differs(guard("auth-keepalive-requests", Ing, "1000", AUTH_POOL)),
    differs(guard("auth-keepalive-timeout", Ing, "60", AUTH_POOL)),
    guard(
        "auth-proxy-set-headers",
        Ing,
        "",
        "a ConfigMap of headers for the auth request",
    ),
    guard("auth-always-set-cookie", Ing, "false", ""),
    spec(
        "enable-global-auth",
        G::AccessControl,
        Ing,
        false,
        Todo,
        St::Access,
        "true",
        "only with the ConfigMap's global-auth-url",
    ),
    honoured(spec(
        "satisfy",
        G::AccessControl,
        Ing,
        false,
        Todo,
        St::Access,
        "all",
        "any: the source range or the auth suffices",
    )),
    guard(
        "auth-tls-secret",
        Host,
        "",
        "applies to the whole host, as in ingress-nginx",
    ),
    guard(
        "auth-tls-verify-client",
        Host,
        "on",
        "on, off, optional, optional_no_ca",
    ),
    guard("auth-tls-verify-depth", Host, "1", ""),
    guard(
        "auth-tls-pass-certificate-to-upstream",
        Host,
        "false",
        "header ssl-client-cert",
    ),
    guard("auth-tls-error-page", Host, "", ""),
    guard("auth-tls-match-cn", Host, "", "Rust `regex` syntax"),
    // CORS.
    honoured(todo(
        "enable-cors",
        G::Cors,
        St::Response,
        "false",
        "preflight (OPTIONS) answered 204 by the gateway",
    )),
    differs(todo(
        "cors-allow-origin",
        G::Cors,
        St::Response,
        "*",
        "a list; `https://*.example.com` matches one label",
    )),
    honoured(todo(
        "cors-allow-methods",
        G::Cors,
        St::Response,
        "GET, PUT, POST, DELETE, PATCH, OPTIONS",
        "",
    )),
    honoured(todo(
        "cors-allow-headers",
        G::Cors,
        St::Response,
        "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization",
        "",
    )),
    honoured(todo(
        "cors-allow-credentials",
        G::Cors,
        St::Response,
        "true",
        "",
    )),
    honoured(todo("cors-expose-headers", G::Cors, St::Response, "", "")),
    honoured(todo(
        "cors-max-age",
        G::Cors,
        St::Response,
        "1728000",
        "seconds",
    )),
    // Errors and logs.
    todo(
        "custom-http-errors",
        G::ErrorsAndLogs,
        St::Response,
        "",
        "codes 400-599 served by default-backend with X-Code, X-Format, X-Original-URI, X-Namespace, \
         X-Ingress-Name, X-Service-Name, X-Service-Port, X-Request-ID",
    ),
    todo(
        "default-backend",
        G::ErrorsAndLogs,
        St::Response,
        "",
        "a Service of the Ingress's namespace (its first port)",
    ),
    todo(
        "disable-proxy-intercept-errors",
        G::ErrorsAndLogs,
        St::Response,
        "false",
        "",
    ),
    honoured(todo(
        "enable-access-log",
        G::ErrorsAndLogs,
        St::Response,
        "true",
        "",
    )),
    unsupported(
        "enable-rewrite-log",
        G::ErrorsAndLogs,
        "false",
        "there is no nginx rewrite log; route decisions are logged at debug level",
    ),
    // Snippets: never.
    snippet("configuration-snippet", Ing),
    snippet("server-snippet", Host),
    snippet("auth-snippet", Ing),
    snippet("stream-snippet", Host),
    snippet("modsecurity-snippet", Ing),
    // Other.
    unsupported(
        "ssl-passthrough",
        G::Other,
        "false",
        "TLS is terminated by the gateway",
    ),
    unsupported(
        "ssl-ciphers",
        G::Other,
        "",
        "rustls offers its own fixed set of modern cipher suites",
    ),
    unsupported(
        "ssl-prefer-server-ciphers",
        G::Other,
        "",
        "rustls chooses the cipher suite",
    ),
    unsupported(
        "http2-push-preload",
        G::Other,
        "false",
        "HTTP/2 server push is deprecated by browsers",
    ),
    unsupported("custom-headers", G::Other, "", "not implemented"),
    unsupported(
        "proxy-http-version",
        G::Other,
        "1.1",
        "the gateway speaks HTTP/1.1 or HTTP/2 to backends by appProtocol",
    ),
    unsupported("proxy-cookie-domain", G::Other, "off", "not implemented"),
    unsupported("proxy-cookie-path", G::Other, "off", "not implemented"),
    unsupported("proxy-redirect-from", G::Other, "off", "not implemented"),
    unsupported("proxy-redirect-to", G::Other, "off", "not implemented"),
    unsupported(
        "connection-proxy-header",
        G::Other,
        "",
        "hop-by-hop headers are managed by the gateway",
    ),
    unsupported("mirror-target", G::Other, "", "not implemented"),
    unsupported("mirror-host", G::Other, "", "not implemented"),
    unsupported("mirror-request-body", G::Other, "on", "not implemented"),
    unsupported(
        "enable-modsecurity",
        G::Other,
        "false",
        "no web application firewall",
    ),
    unsupported(
        "enable-owasp-core-rules",
        G::Other,
        "false",
        "no web application firewall",
    ),
    unsupported(
        "modsecurity-transaction-id",
        G::Other,
        "",
        "no web application firewall",
    ),
    unsupported("enable-opentelemetry", G::Other, "false", "not implemented"),
    unsupported(
        "opentelemetry-trust-incoming-span",
        G::Other,
        "true",
        "not implemented",
    ),
    unsupported(
        "opentelemetry-operation-name",
        G::Other,
        "",
        "not implemented",
    ),
    unsupported(
        "fastcgi-index",
        G::Other,
        "",
        "FastCGI backends are not supported",
    ),
    unsupported(
        "fastcgi-params-configmap",
        G::Other,
        "",
        "FastCGI backends are not supported",
    ),
];

/// The entry for a name (without prefix), aliases included.
pub fn lookup(name: &str) -> Option<&'static AnnotationSpec> {
    CATALOG.iter().find(|s| s.name == name)
}

/// Whether `name` (without prefix) is a snippet: raw nginx text, never
/// supported. Any `*-snippet` counts, known or not.
pub fn is_snippet(name: &str) -> bool {
    name.ends_with("-snippet")
}

/// The catalog as the Markdown table of `docs/migrating-from-ingress-nginx.md`
/// (one section per group), generated so the docs cannot drift.
pub fn markdown_table(prefix: &str) -> String {
    let mut out = String::new();
    for group in Group::ALL {
        out.push_str(&format!("\n### {}\n\n", group.title()));
        out.push_str("| annotation | ingress-nginx default | sluice-ingress | enforced by | difference or reason |\n");
        out.push_str("| --- | --- | --- | --- | --- |\n");
        for s in CATALOG.iter().filter(|s| s.group == group) {
            let name = match s.alias_of {
                Some(of) => format!("`{prefix}/{}` (alias of `{of}`)", s.name),
                None => format!("`{prefix}/{}`", s.name),
            };
            let mut status = s.support.label().to_owned();
            if s.refuses() {
                status.push_str("; **the Ingress is refused (503)**");
            }
            let default = match s.default {
                "" => String::new(),
                d if d.contains(' ') && !d.contains(',') => d.to_owned(),
                d => format!("`{d}`"),
            };
            out.push_str(&format!(
                "| {name} | {default} | {status} | {} | {} |\n",
                s.stage.label(),
                s.note
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_aliases_resolve() {
        for (i, s) in CATALOG.iter().enumerate() {
            assert!(
                !CATALOG[..i].iter().any(|o| o.name == s.name),
                "duplicate {}",
                s.name
            );
            if let Some(of) = s.alias_of {
                let main = lookup(of).expect("alias target");
                assert_eq!(main.alias_of, None);
                assert_eq!(main.support, s.support);
                assert_eq!(main.guards_access, s.guards_access);
            }
        }
    }

    #[test]
    fn snippets_are_never_and_never_guard() {
        for s in CATALOG {
            assert_eq!(
                is_snippet(s.name),
                s.support == Support::Never,
                "{}",
                s.name
            );
            if s.support == Support::Never {
                assert!(!s.guards_access);
            }
        }
        assert!(is_snippet("some-future-snippet"));
    }

    #[test]
    fn access_control_names_all_guard() {
        // The issue's rule: auth-*, *-source-range, auth-tls-*, limit-*.
        for s in CATALOG {
            let by_name = (s.name.starts_with("auth-") && !is_snippet(s.name))
                || s.name.ends_with("-source-range")
                || s.name.starts_with("limit-");
            assert_eq!(s.guards_access, by_name, "{}", s.name);
        }
        // What the gateway does not enforce yet refuses the Ingress.
        for name in [
            "limit-rps",
            "limit-connections",
            "auth-proxy-set-headers",
            "auth-always-set-cookie",
        ] {
            assert!(lookup(name).unwrap().refuses(), "{name}");
        }
        for name in [
            "whitelist-source-range",
            "denylist-source-range",
            "auth-type",
            "auth-url",
        ] {
            assert!(!lookup(name).unwrap().refuses(), "{name}");
        }
    }

    #[test]
    fn every_issue_annotation_is_listed() {
        let issue = [
            "use-regex",
            "rewrite-target",
            "app-root",
            "x-forwarded-prefix",
            "upstream-vhost",
            "preserve-trailing-slash",
            "ssl-redirect",
            "force-ssl-redirect",
            "permanent-redirect",
            "permanent-redirect-code",
            "temporal-redirect",
            "temporal-redirect-code",
            "from-to-www-redirect",
            "server-alias",
            "proxy-body-size",
            "proxy-connect-timeout",
            "proxy-read-timeout",
            "proxy-send-timeout",
            "proxy-next-upstream",
            "proxy-next-upstream-tries",
            "proxy-next-upstream-timeout",
            "limit-rps",
            "limit-rpm",
            "limit-connections",
            "limit-burst-multiplier",
            "limit-whitelist",
            "backend-protocol",
            "proxy-ssl-verify",
            "proxy-ssl-secret",
            "proxy-ssl-name",
            "proxy-ssl-server-name",
            "service-upstream",
            "load-balance",
            "upstream-hash-by",
            "affinity",
            "affinity-mode",
            "session-cookie-name",
            "session-cookie-path",
            "session-cookie-expires",
            "session-cookie-max-age",
            "session-cookie-samesite",
            "session-cookie-secure",
            "session-cookie-change-on-failure",
            "canary",
            "canary-weight",
            "canary-weight-total",
            "canary-by-header",
            "canary-by-header-value",
            "canary-by-header-pattern",
            "canary-by-cookie",
            "whitelist-source-range",
            "allowlist-source-range",
            "denylist-source-range",
            "auth-type",
            "auth-secret",
            "auth-secret-type",
            "auth-realm",
            "auth-url",
            "auth-method",
            "auth-signin",
            "auth-response-headers",
            "auth-request-redirect",
            "auth-tls-secret",
            "auth-tls-verify-client",
            "auth-tls-verify-depth",
            "auth-tls-pass-certificate-to-upstream",
            "enable-cors",
            "cors-allow-origin",
            "cors-allow-methods",
            "cors-allow-headers",
            "cors-allow-credentials",
            "cors-expose-headers",
            "cors-max-age",
            "custom-http-errors",
            "default-backend",
            "enable-access-log",
            "configuration-snippet",
            "server-snippet",
            "auth-snippet",
            "stream-snippet",
        ];
        for name in issue {
            assert!(lookup(name).is_some(), "{name} missing");
        }
    }
}
