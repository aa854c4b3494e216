//! Controller-wide settings from an ingress-nginx ConfigMap, with its key
//! names and defaults ([`ControllerSettings`]). Annotations override the
//! per-location ones per Ingress, as in ingress-nginx: the annotation
//! parsers take their defaults from here.
//!
//! Like annotations, keys are listed in one table ([`SETTINGS`]) that says
//! what Sluice does with each; a key that guards access (a global allow or
//! deny list, global auth, block lists) and is not enforced refuses every
//! Ingress it applies to ([`super::fail_closed`]).

use std::collections::BTreeMap;
use std::fmt;

use super::backend::LoadBalance;
use super::catalog::{Stage, Support};
use super::errors::parse_codes;
use super::limits::NextUpstream;
use super::values::{
    CidrList, NginxDuration, NginxSize, Seconds, ValueError, parse_bool, parse_header_name,
    parse_int_in, parse_u32,
};

/// One ConfigMap key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingSpec {
    /// The key.
    pub key: &'static str,
    /// ingress-nginx's default.
    pub default: &'static str,
    /// What Sluice does with it.
    pub support: Support,
    /// What enforces it.
    pub stage: Stage,
    /// Whether it restricts who may reach backends.
    pub guards_access: bool,
    /// Difference or reason.
    pub note: &'static str,
}

impl SettingSpec {
    /// Whether it refuses the Ingresses it applies to today.
    pub const fn refuses(&self) -> bool {
        self.guards_access && !self.support.is_enforced()
    }
}

const fn setting(
    key: &'static str,
    stage: Stage,
    default: &'static str,
    note: &'static str,
) -> SettingSpec {
    SettingSpec {
        key,
        default,
        support: Support::NotYetEnforced,
        stage,
        guards_access: false,
        note,
    }
}

/// `s`, enforced (as the default of the per-Ingress annotation).
const fn enforced(s: SettingSpec) -> SettingSpec {
    SettingSpec {
        support: Support::Honoured,
        ..s
    }
}

const fn guard(key: &'static str, note: &'static str) -> SettingSpec {
    SettingSpec {
        key,
        default: "",
        support: Support::NotYetEnforced,
        stage: Stage::Access,
        guards_access: true,
        note,
    }
}

/// The ConfigMap keys Sluice reads. Others are reported as not read.
pub const SETTINGS: &[SettingSpec] = &[
    enforced(setting("proxy-body-size", Stage::Limits, "1m", "")),
    setting(
        "proxy-connect-timeout",
        Stage::Upstream,
        "5",
        "whole seconds",
    ),
    setting("proxy-read-timeout", Stage::Upstream, "60", "whole seconds"),
    setting("proxy-send-timeout", Stage::Upstream, "60", "whole seconds"),
    setting("proxy-next-upstream", Stage::Upstream, "error timeout", ""),
    setting("proxy-next-upstream-tries", Stage::Upstream, "3", ""),
    setting("proxy-next-upstream-timeout", Stage::Upstream, "0", ""),
    enforced(setting("ssl-redirect", Stage::RouteResolution, "true", "")),
    enforced(setting(
        "force-ssl-redirect",
        Stage::RouteResolution,
        "false",
        "",
    )),
    enforced(setting(
        "preserve-trailing-slash",
        Stage::RouteResolution,
        "false",
        "",
    )),
    enforced(setting(
        "http-redirect-code",
        Stage::RouteResolution,
        "308",
        "301, 302, 307 or 308",
    )),
    enforced(setting(
        "relative-redirects",
        Stage::RouteResolution,
        "false",
        "",
    )),
    enforced(setting(
        "use-port-in-redirects",
        Stage::RouteResolution,
        "false",
        "",
    )),
    setting("hsts", Stage::Response, "true", ""),
    setting("hsts-max-age", Stage::Response, "31536000", ""),
    setting("hsts-include-subdomains", Stage::Response, "true", ""),
    setting("hsts-preload", Stage::Response, "false", ""),
    setting(
        "use-forwarded-headers",
        Stage::Access,
        "false",
        "trust X-Forwarded-* from proxy-real-ip-cidr",
    ),
    setting("forwarded-for-header", Stage::Access, "X-Forwarded-For", ""),
    setting("compute-full-forwarded-for", Stage::Upstream, "false", ""),
    setting("enable-real-ip", Stage::Access, "false", ""),
    setting("proxy-real-ip-cidr", Stage::Access, "0.0.0.0/0", ""),
    setting(
        "use-proxy-protocol",
        Stage::Listener,
        "false",
        "PROXY protocol v1 and v2 on the listeners",
    ),
    setting("proxy-protocol-header-timeout", Stage::Listener, "5s", ""),
    setting("limit-req-status-code", Stage::Limits, "503", ""),
    setting("limit-conn-status-code", Stage::Limits, "503", ""),
    SettingSpec {
        key: "allow-snippet-annotations",
        default: "false",
        support: Support::Never,
        stage: Stage::Nowhere,
        guards_access: false,
        note: "accepted; snippets are refused whatever it says",
    },
    SettingSpec {
        key: "annotations-risk-level",
        default: "High",
        support: Support::Unsupported,
        stage: Stage::Nowhere,
        guards_access: false,
        note: "accepted; Sluice renders no annotation into configuration text, so there is no risk level",
    },
    setting(
        "enable-underscores-in-headers",
        Stage::Access,
        "false",
        "off: request headers with `_` in their name are dropped, as nginx drops them",
    ),
    setting(
        "load-balance",
        Stage::Upstream,
        "round_robin",
        "round_robin or ewma",
    ),
    setting("custom-http-errors", Stage::Response, "", ""),
    enforced(setting("disable-access-log", Stage::Response, "false", "")),
    setting("service-upstream", Stage::Upstream, "false", ""),
    enforced(guard(
        "whitelist-source-range",
        "allow-list for every Ingress without its own",
    )),
    enforced(guard(
        "denylist-source-range",
        "deny-list for every Ingress without its own",
    )),
    guard(
        "global-auth-url",
        "external auth for every Ingress without enable-global-auth: \"false\"",
    ),
    guard("block-cidrs", "client addresses refused everywhere"),
    guard("block-user-agents", "user agents refused everywhere"),
    guard("block-referers", "referers refused everywhere"),
];

/// [`SETTINGS`] as the Markdown table of
/// `docs/migrating-from-ingress-nginx.md`, generated so it cannot drift.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| ConfigMap key | ingress-nginx default | sluice-ingress | enforced by | difference or reason |\n\
         | --- | --- | --- | --- | --- |\n",
    );
    for s in SETTINGS {
        let mut status = s.support.label().to_owned();
        if s.refuses() {
            status.push_str("; **the Ingresses it covers are refused (503)**");
        }
        let default = if s.default.is_empty() {
            String::new()
        } else {
            format!("`{}`", s.default)
        };
        out.push_str(&format!(
            "| `{}` | {default} | {status} | {} | {} |\n",
            s.key,
            s.stage.label(),
            s.note
        ));
    }
    out
}

/// `hsts*`: the Strict-Transport-Security header on HTTPS answers of hosts
/// with TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hsts {
    /// `hsts` (default on).
    pub enabled: bool,
    /// `hsts-max-age`, seconds (default one year).
    pub max_age: u64,
    /// `hsts-include-subdomains` (default on).
    pub include_subdomains: bool,
    /// `hsts-preload` (default off).
    pub preload: bool,
}

impl Hsts {
    /// The header value, `None` when disabled.
    pub fn header_value(&self) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let mut v = format!("max-age={}", self.max_age);
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        Some(v)
    }
}

/// Controller-wide settings, with ingress-nginx's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerSettings {
    /// `proxy-body-size`.
    pub proxy_body_size: NginxSize,
    /// `proxy-connect-timeout`.
    pub proxy_connect_timeout: Seconds,
    /// `proxy-read-timeout`.
    pub proxy_read_timeout: Seconds,
    /// `proxy-send-timeout`.
    pub proxy_send_timeout: Seconds,
    /// `proxy-next-upstream`.
    pub proxy_next_upstream: NextUpstream,
    /// `proxy-next-upstream-tries`.
    pub proxy_next_upstream_tries: u32,
    /// `proxy-next-upstream-timeout`.
    pub proxy_next_upstream_timeout: Seconds,
    /// `ssl-redirect`.
    pub ssl_redirect: bool,
    /// `force-ssl-redirect`.
    pub force_ssl_redirect: bool,
    /// `preserve-trailing-slash`.
    pub preserve_trailing_slash: bool,
    /// `http-redirect-code`: the code of the HTTPS and www redirects.
    pub http_redirect_code: u16,
    /// `relative-redirects`.
    pub relative_redirects: bool,
    /// `use-port-in-redirects`.
    pub use_port_in_redirects: bool,
    /// `hsts*`.
    pub hsts: Hsts,
    /// `use-forwarded-headers`.
    pub use_forwarded_headers: bool,
    /// `forwarded-for-header`.
    pub forwarded_for_header: http::HeaderName,
    /// `compute-full-forwarded-for`.
    pub compute_full_forwarded_for: bool,
    /// `enable-real-ip`.
    pub enable_real_ip: bool,
    /// `proxy-real-ip-cidr`: the proxies whose forwarded address is
    /// trusted.
    pub proxy_real_ip_cidr: CidrList,
    /// `use-proxy-protocol`.
    pub use_proxy_protocol: bool,
    /// `proxy-protocol-header-timeout`.
    pub proxy_protocol_header_timeout: NginxDuration,
    /// `limit-req-status-code`.
    pub limit_req_status_code: u16,
    /// `limit-conn-status-code`.
    pub limit_conn_status_code: u16,
    /// `allow-snippet-annotations`: read and reported, never acted on.
    pub allow_snippet_annotations: bool,
    /// `enable-underscores-in-headers`.
    pub enable_underscores_in_headers: bool,
    /// `load-balance`.
    pub load_balance: LoadBalance,
    /// `custom-http-errors`.
    pub custom_http_errors: Vec<u16>,
    /// Not `disable-access-log`.
    pub access_log: bool,
    /// `service-upstream`.
    pub service_upstream: bool,
    /// `whitelist-source-range`: the default allow-list of every location.
    pub whitelist_source_range: Option<CidrList>,
    /// `denylist-source-range`: the default deny-list of every location.
    pub denylist_source_range: Option<CidrList>,
    /// Access-guarding keys that are set (non-empty), valid or not; while
    /// not enforced they refuse the Ingresses they apply to.
    pub guards_set: Vec<&'static str>,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        Self {
            proxy_body_size: NginxSize::bytes(1 << 20),
            proxy_connect_timeout: Seconds(5),
            proxy_read_timeout: Seconds(60),
            proxy_send_timeout: Seconds(60),
            proxy_next_upstream: NextUpstream::default(),
            proxy_next_upstream_tries: 3,
            proxy_next_upstream_timeout: Seconds(0),
            ssl_redirect: true,
            force_ssl_redirect: false,
            preserve_trailing_slash: false,
            http_redirect_code: 308,
            relative_redirects: false,
            use_port_in_redirects: false,
            hsts: Hsts {
                enabled: true,
                max_age: 31_536_000,
                include_subdomains: true,
                preload: false,
            },
            use_forwarded_headers: false,
            forwarded_for_header: http::HeaderName::from_static("x-forwarded-for"),
            compute_full_forwarded_for: false,
            enable_real_ip: false,
            proxy_real_ip_cidr: CidrList::new(["0.0.0.0/0".parse().expect("valid CIDR")]),
            use_proxy_protocol: false,
            proxy_protocol_header_timeout: NginxDuration::from_secs(5),
            limit_req_status_code: 503,
            limit_conn_status_code: 503,
            allow_snippet_annotations: false,
            enable_underscores_in_headers: false,
            load_balance: LoadBalance::RoundRobin,
            custom_http_errors: Vec::new(),
            access_log: true,
            service_upstream: false,
            whitelist_source_range: None,
            denylist_source_range: None,
            guards_set: Vec::new(),
        }
    }
}

/// A problem with one ConfigMap key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingProblem {
    /// The key.
    pub key: String,
    /// Its value.
    pub value: String,
    /// What is wrong.
    pub kind: SettingProblemKind,
}

/// What is wrong with a ConfigMap key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingProblemKind {
    /// Invalid: ignored, the default kept.
    InvalidValue(ValueError),
    /// A key Sluice does not read (unknown to it, or unsupported).
    NotRead,
    /// Access control not enforced yet: the Ingresses it applies to are
    /// refused (503).
    NotEnforced,
    /// `allow-snippet-annotations: true`: accepted, snippets still refused.
    SnippetsStillRefused,
}

impl fmt::Display for SettingProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (k, v) = (&self.key, &self.value);
        match &self.kind {
            SettingProblemKind::InvalidValue(e) => {
                write!(
                    f,
                    "ConfigMap key {k}: invalid value {v:?} ({e}); the default applies"
                )
            }
            SettingProblemKind::NotRead => {
                write!(f, "ConfigMap key {k}: not read by sluice-ingress")
            }
            SettingProblemKind::NotEnforced => write!(
                f,
                "ConfigMap key {k}: access control that sluice-ingress does not enforce yet; the \
                 Ingresses it applies to answer 503"
            ),
            SettingProblemKind::SnippetsStillRefused => write!(
                f,
                "ConfigMap key {k}: accepted, but sluice-ingress never accepts snippet annotations"
            ),
        }
    }
}

struct Keys<'a> {
    data: &'a BTreeMap<String, String>,
    problems: Vec<SettingProblem>,
}

impl Keys<'_> {
    fn get<T>(
        &mut self,
        key: &str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, ValueError>,
    ) -> T {
        let Some(v) = self.data.get(key) else {
            return default;
        };
        match parse(v) {
            Ok(x) => x,
            Err(e) => {
                self.problems.push(SettingProblem {
                    key: key.to_owned(),
                    value: v.clone(),
                    kind: SettingProblemKind::InvalidValue(e),
                });
                default
            }
        }
    }
}

fn redirect_code(s: &str) -> Result<u16, ValueError> {
    match parse_int_in(s, 301, 308)? {
        c @ (301 | 302 | 307 | 308) => Ok(c as u16),
        _ => Err(ValueError::NotOneOf("301, 302, 307, 308")),
    }
}

fn status_code(s: &str) -> Result<u16, ValueError> {
    parse_int_in(s, 400, 599).map(|c| c as u16)
}

impl ControllerSettings {
    /// Reads a ConfigMap's `data`. Invalid values keep their default and
    /// are reported, as are keys Sluice does not read.
    pub fn from_configmap(data: &BTreeMap<String, String>) -> (Self, Vec<SettingProblem>) {
        let d = Self::default();
        let mut k = Keys {
            data,
            problems: Vec::new(),
        };
        let s = Self {
            proxy_body_size: k.get("proxy-body-size", d.proxy_body_size, str::parse),
            proxy_connect_timeout: k.get(
                "proxy-connect-timeout",
                d.proxy_connect_timeout,
                str::parse,
            ),
            proxy_read_timeout: k.get("proxy-read-timeout", d.proxy_read_timeout, str::parse),
            proxy_send_timeout: k.get("proxy-send-timeout", d.proxy_send_timeout, str::parse),
            proxy_next_upstream: k.get("proxy-next-upstream", d.proxy_next_upstream, str::parse),
            proxy_next_upstream_tries: k.get("proxy-next-upstream-tries", 3, parse_u32),
            proxy_next_upstream_timeout: k.get(
                "proxy-next-upstream-timeout",
                Seconds(0),
                str::parse,
            ),
            ssl_redirect: k.get("ssl-redirect", true, parse_bool),
            force_ssl_redirect: k.get("force-ssl-redirect", false, parse_bool),
            preserve_trailing_slash: k.get("preserve-trailing-slash", false, parse_bool),
            http_redirect_code: k.get("http-redirect-code", 308, redirect_code),
            relative_redirects: k.get("relative-redirects", false, parse_bool),
            use_port_in_redirects: k.get("use-port-in-redirects", false, parse_bool),
            hsts: Hsts {
                enabled: k.get("hsts", true, parse_bool),
                max_age: k.get("hsts-max-age", d.hsts.max_age, |v| {
                    parse_int_in(v, 0, i64::MAX).map(|n| n as u64)
                }),
                include_subdomains: k.get("hsts-include-subdomains", true, parse_bool),
                preload: k.get("hsts-preload", false, parse_bool),
            },
            use_forwarded_headers: k.get("use-forwarded-headers", false, parse_bool),
            forwarded_for_header: k.get(
                "forwarded-for-header",
                d.forwarded_for_header,
                parse_header_name,
            ),
            compute_full_forwarded_for: k.get("compute-full-forwarded-for", false, parse_bool),
            enable_real_ip: k.get("enable-real-ip", false, parse_bool),
            proxy_real_ip_cidr: k.get("proxy-real-ip-cidr", d.proxy_real_ip_cidr, str::parse),
            use_proxy_protocol: k.get("use-proxy-protocol", false, parse_bool),
            proxy_protocol_header_timeout: k.get(
                "proxy-protocol-header-timeout",
                d.proxy_protocol_header_timeout,
                str::parse,
            ),
            limit_req_status_code: k.get("limit-req-status-code", 503, status_code),
            limit_conn_status_code: k.get("limit-conn-status-code", 503, status_code),
            allow_snippet_annotations: k.get("allow-snippet-annotations", false, parse_bool),
            enable_underscores_in_headers: k.get(
                "enable-underscores-in-headers",
                false,
                parse_bool,
            ),
            load_balance: k.get("load-balance", LoadBalance::RoundRobin, str::parse),
            custom_http_errors: k.get("custom-http-errors", Vec::new(), parse_codes),
            access_log: !k.get("disable-access-log", false, parse_bool),
            service_upstream: k.get("service-upstream", false, parse_bool),
            whitelist_source_range: k.get("whitelist-source-range", None, |v| v.parse().map(Some)),
            denylist_source_range: k.get("denylist-source-range", None, |v| v.parse().map(Some)),
            guards_set: SETTINGS
                .iter()
                .filter(|s| s.refuses() && data.get(s.key).is_some_and(|v| !v.trim().is_empty()))
                .map(|s| s.key)
                .collect(),
        };
        let mut problems = k.problems;
        for (key, value) in data {
            let kind = match SETTINGS.iter().find(|s| s.key == key) {
                None => SettingProblemKind::NotRead,
                Some(spec) if s.guards_set.contains(&spec.key) => SettingProblemKind::NotEnforced,
                Some(_) if key == "allow-snippet-annotations" && s.allow_snippet_annotations => {
                    SettingProblemKind::SnippetsStillRefused
                }
                Some(_) => continue,
            };
            problems.push(SettingProblem {
                key: key.clone(),
                value: value.clone(),
                kind,
            });
        }
        (s, problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_ingress_nginx_defaults() {
        let (s, p) = ControllerSettings::from_configmap(&BTreeMap::new());
        assert!(p.is_empty());
        assert_eq!(s, ControllerSettings::default());
        assert_eq!(s.proxy_body_size.as_bytes(), 1 << 20);
        assert_eq!(
            s.hsts.header_value().as_deref(),
            Some("max-age=31536000; includeSubDomains")
        );
        assert_eq!(s.forwarded_for_header.as_str(), "x-forwarded-for");
        assert!(
            s.proxy_real_ip_cidr
                .contains("203.0.113.9".parse().unwrap())
        );
        assert_eq!((s.limit_req_status_code, s.http_redirect_code), (503, 308));
        for spec in SETTINGS {
            assert!(!spec.key.is_empty());
        }
    }

    #[test]
    fn values_invalid_values_and_unknown_keys() {
        let (s, p) = ControllerSettings::from_configmap(&cm(&[
            ("proxy-body-size", "8m"),
            ("proxy-read-timeout", "120s"),
            ("hsts-preload", "true"),
            ("hsts-include-subdomains", "false"),
            ("limit-req-status-code", "429"),
            ("http-redirect-code", "303"),
            ("use-forwarded-headers", "true"),
            ("forwarded-for-header", "X-Real-Client"),
            ("allow-snippet-annotations", "true"),
            ("worker-processes", "4"),
            ("whitelist-source-range", "10.0.0.0/8"),
            ("global-auth-url", "http://auth.example.com/"),
        ]));
        assert_eq!(s.proxy_body_size.as_bytes(), 8 << 20);
        assert_eq!(
            s.proxy_read_timeout,
            Seconds(60),
            "120s is invalid, as in ingress-nginx"
        );
        assert_eq!(
            s.hsts.header_value().as_deref(),
            Some("max-age=31536000; preload")
        );
        assert_eq!(s.limit_req_status_code, 429);
        assert_eq!(s.http_redirect_code, 308);
        assert!(s.use_forwarded_headers && s.allow_snippet_annotations);
        assert_eq!(s.forwarded_for_header.as_str(), "x-real-client");
        assert_eq!(
            s.guards_set,
            vec!["global-auth-url"],
            "enforced guards refuse nothing"
        );
        assert!(s.whitelist_source_range.is_some());
        let kinds: Vec<(&str, &SettingProblemKind)> =
            p.iter().map(|p| (p.key.as_str(), &p.kind)).collect();
        assert!(kinds.contains(&(
            "proxy-read-timeout",
            &SettingProblemKind::InvalidValue(ValueError::NotInteger)
        )));
        assert!(kinds.iter().any(|(k, _)| *k == "http-redirect-code"));
        assert!(kinds.contains(&("worker-processes", &SettingProblemKind::NotRead)));
        assert!(kinds.contains(&("global-auth-url", &SettingProblemKind::NotEnforced)));
        assert!(!kinds.iter().any(|(k, _)| *k == "whitelist-source-range"));
        assert!(kinds.contains(&(
            "allow-snippet-annotations",
            &SettingProblemKind::SnippetsStillRefused
        )));
    }
}
