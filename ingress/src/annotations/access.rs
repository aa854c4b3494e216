//! Access control: source ranges, basic auth, external auth, client
//! certificates, `satisfy`, `enable-global-auth`, and the ConfigMap's
//! block lists (`block-cidrs`, `block-user-agents`, `block-referers`).
//!
//! ingress-nginx answers 503 for a location whose access-control value it
//! cannot use (a bad CIDR, a missing Secret name, a Secret in another
//! namespace); every such case here is a denial ([`super::Denial`]), so a
//! typo never opens an Ingress.

use std::str::FromStr;
use std::sync::Arc;

use super::canary::HeaderPattern;
use super::configmap::ControllerSettings;
use super::reader::Reader;
use super::values::{CidrList, ObjectName, ValueError, parse_bool, parse_header_list, parse_u32};

/// Where the htpasswd lines of basic auth come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AuthSecretType {
    /// `auth-file`: an htpasswd file in the Secret's key `auth` (default).
    #[default]
    AuthFile,
    /// `auth-map`: each key is a user, its value the password hash.
    AuthMap,
}

/// `auth-type: basic` with `auth-secret`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BasicAuth {
    /// `auth-secret`, in the Ingress's namespace.
    pub secret: ObjectName,
    /// `auth-secret-type`.
    pub secret_type: AuthSecretType,
    /// `auth-realm` (in `WWW-Authenticate`).
    pub realm: String,
}

/// The HTTP method of the auth request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AuthMethod(pub http::Method);

impl FromStr for AuthMethod {
    type Err = ValueError;

    /// One of ingress-nginx's list, upper case.
    fn from_str(s: &str) -> Result<Self, ValueError> {
        const LIST: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, CONNECT, OPTIONS, TRACE";
        let m = match s.trim() {
            "GET" => http::Method::GET,
            "HEAD" => http::Method::HEAD,
            "POST" => http::Method::POST,
            "PUT" => http::Method::PUT,
            "PATCH" => http::Method::PATCH,
            "DELETE" => http::Method::DELETE,
            "CONNECT" => http::Method::CONNECT,
            "OPTIONS" => http::Method::OPTIONS,
            "TRACE" => http::Method::TRACE,
            _ => return Err(ValueError::NotOneOf(LIST)),
        };
        Ok(Self(m))
    }
}

/// An absolute `http`/`https` URL without nginx variables.
fn parse_http_url(s: &str) -> Result<http::Uri, ValueError> {
    let s = s.trim();
    if s.contains('$') {
        return Err(ValueError::Invalid(
            "nginx variables in URLs are not supported".into(),
        ));
    }
    let uri: http::Uri = s
        .parse()
        .map_err(|e| ValueError::Invalid(format!("not a URL: {e}")))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(h)) if !h.is_empty() && !h.contains("..") => Ok(uri),
        _ => Err(ValueError::Invalid(
            "want an http:// or https:// URL with a host".into(),
        )),
    }
}

/// A part of an `auth-signin` URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SigninPart {
    /// Text.
    Literal(String),
    /// `$request_uri`: the path and query as received.
    RequestUri,
    /// `$escaped_request_uri`: the same, percent-encoded for a query value.
    EscapedRequestUri,
    /// `$scheme` / `$pass_access_scheme`.
    Scheme,
    /// `$host`.
    Host,
    /// `$http_host` / `$best_http_host`: the Host header as sent.
    HttpHost,
}

/// `auth-signin`: where a 401 from the auth service redirects (302). As in
/// ingress-nginx, without a redirect parameter in the URL one is added:
/// `<param>=$pass_access_scheme://$http_host$escaped_request_uri`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SigninUrl {
    /// The parts, redirect parameter included.
    pub parts: Vec<SigninPart>,
}

impl SigninUrl {
    /// Parses the annotation with the redirect parameter `param`.
    pub fn parse(s: &str, param: &str) -> Result<Self, ValueError> {
        let s = s.trim();
        let mut parts = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            let end = rest.find('$').unwrap_or(rest.len());
            if end > 0 {
                parts.push(SigninPart::Literal(rest[..end].to_owned()));
            }
            rest = &rest[end..];
            let Some(var) = rest.strip_prefix('$') else {
                break;
            };
            let len = var
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(var.len());
            parts.push(match &var[..len] {
                "request_uri" => SigninPart::RequestUri,
                "escaped_request_uri" => SigninPart::EscapedRequestUri,
                "scheme" | "pass_access_scheme" => SigninPart::Scheme,
                "host" => SigninPart::Host,
                "http_host" | "best_http_host" => SigninPart::HttpHost,
                other => {
                    return Err(ValueError::Invalid(format!(
                        "nginx variable ${other} is not supported"
                    )));
                }
            });
            rest = &var[len..];
        }
        // The URL must hold with the variables filled in.
        let sample: String = parts
            .iter()
            .map(|p| match p {
                SigninPart::Literal(l) => l.as_str(),
                SigninPart::Scheme => "https",
                _ => "x",
            })
            .collect();
        let uri = parse_http_url(&sample)?;
        let query = uri.query().unwrap_or("");
        let has_param = query
            .split('&')
            .any(|kv| kv.split('=').next() == Some(param));
        if !has_param {
            let sep = if query.is_empty() && !sample.ends_with('?') {
                "?"
            } else {
                "&"
            };
            parts.push(SigninPart::Literal(format!("{sep}{param}=")));
            parts.push(SigninPart::Scheme);
            parts.push(SigninPart::Literal("://".into()));
            parts.push(SigninPart::HttpHost);
            parts.push(SigninPart::EscapedRequestUri);
        }
        Ok(Self { parts })
    }
}

/// `auth-url` and its companions: an auth request per request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExternalAuth {
    /// `auth-url`.
    pub url: http::Uri,
    /// `auth-method` (default GET, nginx's subrequest method).
    pub method: http::Method,
    /// `auth-signin`: where a 401 redirects (302).
    pub signin: Option<SigninUrl>,
    /// `auth-signin-redirect-param` (default `rd`).
    pub signin_redirect_param: String,
    /// `auth-response-headers`: copied from the auth answer upstream.
    pub response_headers: Vec<http::HeaderName>,
    /// `auth-request-redirect`: the `X-Auth-Request-Redirect` header
    /// (default: the request URI).
    pub request_redirect: Option<String>,
    /// `auth-always-set-cookie`.
    pub always_set_cookie: bool,
}

/// `auth-tls-verify-client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum VerifyClient {
    /// A valid certificate is required (400 otherwise). Default.
    #[default]
    On,
    /// No certificate is asked for.
    Off,
    /// Asked for; an invalid one fails, none passes.
    Optional,
    /// Asked for; never fails, the result is passed upstream.
    OptionalNoCa,
}

impl FromStr for VerifyClient {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        match s.trim() {
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            "optional" => Ok(Self::Optional),
            "optional_no_ca" => Ok(Self::OptionalNoCa),
            _ => Err(ValueError::NotOneOf("on, off, optional, optional_no_ca")),
        }
    }
}

/// `auth-tls-*`: client certificates, for the whole host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientCertAuth {
    /// `auth-tls-secret` (`ca.crt`).
    pub secret: ObjectName,
    /// `auth-tls-verify-client`.
    pub verify: VerifyClient,
    /// `auth-tls-verify-depth` (default 1).
    pub depth: u32,
    /// `auth-tls-pass-certificate-to-upstream` (header `ssl-client-cert`).
    pub pass_certificate: bool,
    /// `auth-tls-error-page`: redirect on failure instead of 400.
    pub error_page: Option<String>,
    /// `auth-tls-match-cn`: the subject must match (`CN=` + regex); 403
    /// otherwise.
    pub match_cn: Option<HeaderPattern>,
}

/// One entry of `block-user-agents` or `block-referers`, as an entry of
/// nginx's `map`: a string matches the whole header value ignoring case;
/// `~regex` matches anywhere in it, `~*regex` ignoring case (Rust `regex`
/// syntax: linear time, no look-around or back-references).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BlockPattern {
    /// The whole value, lower case.
    Exact(String),
    /// A regular expression.
    Regex(HeaderPattern),
}

impl BlockPattern {
    /// Whether `value` is blocked by this entry.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Self::Exact(s) => value.eq_ignore_ascii_case(s),
            Self::Regex(r) => r.is_match(value),
        }
    }
}

impl FromStr for BlockPattern {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        let s = s.trim();
        if let Some(re) = s.strip_prefix("~*") {
            Ok(Self::Regex(HeaderPattern::new(&format!("(?i){re}"))?))
        } else if let Some(re) = s.strip_prefix('~') {
            Ok(Self::Regex(HeaderPattern::new(re)?))
        } else if s.is_empty() {
            Err(ValueError::Empty)
        } else {
            Ok(Self::Exact(s.to_ascii_lowercase()))
        }
    }
}

/// A comma-separated list of [`BlockPattern`]s (ingress-nginx splits the
/// ConfigMap value on commas).
pub fn parse_block_patterns(s: &str) -> Result<Vec<BlockPattern>, ValueError> {
    let v = s
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(str::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if v.is_empty() {
        return Err(ValueError::Empty);
    }
    Ok(v)
}

/// The ConfigMap's block lists: refused (403) on every Ingress, before
/// any other access check.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct BlockLists {
    /// `block-cidrs`: client addresses.
    pub cidrs: Option<CidrList>,
    /// `block-user-agents`.
    pub user_agents: Vec<BlockPattern>,
    /// `block-referers`.
    pub referers: Vec<BlockPattern>,
}

impl BlockLists {
    /// Whether nothing is blocked.
    pub fn is_empty(&self) -> bool {
        self.cidrs.is_none() && self.user_agents.is_empty() && self.referers.is_empty()
    }
}

/// The ConfigMap's real-IP settings (`use-forwarded-headers` or
/// `enable-real-ip`, `forwarded-for-header`, `proxy-real-ip-cidr`):
/// nginx's `real_ip_header`, `set_real_ip_from`, `real_ip_recursive on`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RealIp {
    /// The header holding the client chain.
    pub header: http::HeaderName,
    /// The peers (and chain entries) trusted to report it.
    pub from: CidrList,
}

impl RealIp {
    /// From the settings, when either switch is on.
    pub fn from_settings(s: &ControllerSettings) -> Option<Self> {
        (s.use_forwarded_headers || s.enable_real_ip).then(|| Self {
            header: s.forwarded_for_header.clone(),
            from: s.proxy_real_ip_cidr.clone(),
        })
    }

    /// nginx's realip module with `real_ip_recursive on`: when `peer` is
    /// trusted, the rightmost address of the header that is not trusted,
    /// or the leftmost when all are; otherwise `peer`.
    pub fn client(&self, headers: &http::HeaderMap, peer: std::net::IpAddr) -> std::net::IpAddr {
        if !self.from.contains(peer) {
            return peer;
        }
        let chain: Vec<std::net::IpAddr> = headers
            .get_all(&self.header)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("").split(','))
            .filter_map(|a| a.trim().parse().ok())
            .collect();
        chain
            .iter()
            .rev()
            .find(|a| !self.from.contains(**a))
            .or_else(|| chain.first())
            .copied()
            .unwrap_or(peer)
    }
}

/// `satisfy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Satisfy {
    /// Every check must pass (default).
    #[default]
    All,
    /// One check suffices (source range or auth).
    Any,
}

/// The access policy of an Ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    /// Allowed client ranges (annotation, else the ConfigMap's
    /// `whitelist-source-range`); others get 403.
    pub allow: Option<CidrList>,
    /// Denied client ranges (annotation, else the ConfigMap's
    /// `denylist-source-range`): 403.
    pub deny: Option<CidrList>,
    /// Basic auth.
    pub basic: Option<BasicAuth>,
    /// External auth.
    pub external: Option<ExternalAuth>,
    /// Client certificates (host-wide).
    pub client_cert: Option<ClientCertAuth>,
    /// `satisfy`.
    pub satisfy: Satisfy,
    /// `enable-global-auth` (default true): whether the ConfigMap's
    /// `global-auth-url` applies.
    pub global_auth: bool,
    /// The ConfigMap's block lists (shared by every Ingress).
    pub block: Option<Arc<BlockLists>>,
    /// The ConfigMap's real-IP settings: who the client is.
    pub real_ip: Option<RealIp>,
}

impl Default for AccessPolicy {
    fn default() -> Self {
        Self {
            allow: None,
            deny: None,
            basic: None,
            external: None,
            client_cert: None,
            satisfy: Satisfy::All,
            global_auth: true,
            block: None,
            real_ip: None,
        }
    }
}

/// A Secret named `name` or `ns/name`, which must be in the Ingress's
/// namespace (ingress-nginx's default `allow-cross-namespace-resources:
/// false`).
fn same_namespace_secret(v: &str, namespace: &str) -> Result<ObjectName, ValueError> {
    let s = ObjectName::parse(v, namespace)?;
    if s.is_in(namespace) {
        Ok(s)
    } else {
        Err(ValueError::Invalid(format!(
            "secret {s} is in another namespace"
        )))
    }
}

fn text(s: &str) -> Result<String, ValueError> {
    let s = s.trim();
    if s.is_empty() {
        Err(ValueError::Empty)
    } else {
        Ok(s.to_owned())
    }
}

impl AccessPolicy {
    pub(crate) fn parse(
        r: &mut Reader<'_>,
        settings: &ControllerSettings,
        namespace: &str,
    ) -> Self {
        let global_auth = r.get_or("enable-global-auth", true, parse_bool);
        Self {
            allow: r
                .get_guarded("allowlist-source-range", str::parse)
                .or_else(|| settings.whitelist_source_range.clone()),
            deny: r
                .get_guarded("denylist-source-range", str::parse)
                .or_else(|| settings.denylist_source_range.clone()),
            basic: parse_basic(r, namespace),
            // The Ingress's own auth-url wins over the ConfigMap's
            // global-auth-url, which applies unless enable-global-auth is
            // "false" (ingress-nginx's template).
            external: parse_external(r)
                .or_else(|| settings.global_auth.clone().filter(|_| global_auth)),
            client_cert: parse_client_cert(r, namespace),
            satisfy: r.get_or("satisfy", Satisfy::All, |v| match v.trim() {
                "all" => Ok(Satisfy::All),
                "any" => Ok(Satisfy::Any),
                _ => Err(ValueError::NotOneOf("all, any")),
            }),
            global_auth,
            block: settings.block.clone(),
            real_ip: RealIp::from_settings(settings),
        }
    }
}

fn parse_basic(r: &mut Reader<'_>, namespace: &str) -> Option<BasicAuth> {
    r.get_guarded("auth-type", |v| match v.trim() {
        "basic" => Ok(()),
        "digest" => Err(ValueError::Invalid(
            "digest auth is not supported by sluice-ingress".into(),
        )),
        _ => Err(ValueError::NotOneOf("basic, digest")),
    })?;
    if !r.has("auth-secret") {
        r.deny("auth-type", "auth-type needs auth-secret".into());
        return None;
    }
    let secret = r.get_guarded("auth-secret", |v| same_namespace_secret(v, namespace))?;
    let secret_type = r.get_guarded("auth-secret-type", |v| match v.trim() {
        "auth-file" => Ok(AuthSecretType::AuthFile),
        "auth-map" => Ok(AuthSecretType::AuthMap),
        _ => Err(ValueError::NotOneOf("auth-file, auth-map")),
    });
    if r.has("auth-secret-type") && secret_type.is_none() {
        return None;
    }
    Some(BasicAuth {
        secret,
        secret_type: secret_type.unwrap_or_default(),
        realm: r.get("auth-realm", text).unwrap_or_default(),
    })
}

fn parse_external(r: &mut Reader<'_>) -> Option<ExternalAuth> {
    let url = r.get_guarded("auth-url", parse_http_url)?;
    let method = if r.has("auth-method") {
        r.get_guarded("auth-method", str::parse::<AuthMethod>)?.0
    } else {
        http::Method::GET
    };
    let response_headers = if r.has("auth-response-headers") {
        r.get_guarded("auth-response-headers", parse_header_list)?
    } else {
        Vec::new()
    };
    let signin_redirect_param = r.get_or(
        "auth-signin-redirect-param",
        "rd".to_owned(),
        redirect_param,
    );
    Some(ExternalAuth {
        url,
        method,
        signin: r.get("auth-signin", |v| {
            SigninUrl::parse(v, &signin_redirect_param)
        }),
        signin_redirect_param,
        response_headers,
        request_redirect: r.get("auth-request-redirect", text),
        always_set_cookie: r.get_or("auth-always-set-cookie", false, parse_bool),
    })
}

impl ExternalAuth {
    /// The ConfigMap's global external auth (`global-auth-url`,
    /// `global-auth-method`, `global-auth-signin`,
    /// `global-auth-signin-redirect-param`, `global-auth-response-headers`,
    /// `global-auth-request-redirect`), read with `get(key, parse)`, which
    /// reports an invalid value and answers `None` for it. `None` when no
    /// usable `global-auth-url` is set.
    pub(crate) fn from_settings(
        mut get: impl FnMut(&'static str, &dyn Fn(&str) -> Result<Value, ValueError>) -> Option<Value>,
    ) -> Option<Self> {
        let url = match get("global-auth-url", &|v| parse_http_url(v).map(Value::Url))? {
            Value::Url(u) => u,
            _ => return None,
        };
        let method = match get("global-auth-method", &|v| {
            str::parse::<AuthMethod>(v).map(|m| Value::Method(m.0))
        }) {
            Some(Value::Method(m)) => m,
            _ => http::Method::GET,
        };
        let param = match get("global-auth-signin-redirect-param", &|v| {
            redirect_param(v).map(Value::Text)
        }) {
            Some(Value::Text(p)) => p,
            _ => "rd".to_owned(),
        };
        let signin = match get("global-auth-signin", &|v| {
            SigninUrl::parse(v, &param).map(Value::Signin)
        }) {
            Some(Value::Signin(s)) => Some(s),
            _ => None,
        };
        let response_headers = match get("global-auth-response-headers", &|v| {
            parse_header_list(v).map(Value::Headers)
        }) {
            Some(Value::Headers(h)) => h,
            _ => Vec::new(),
        };
        let request_redirect = match get("global-auth-request-redirect", &|v| {
            text(v).map(Value::Text)
        }) {
            Some(Value::Text(t)) => Some(t),
            _ => None,
        };
        Some(Self {
            url,
            method,
            signin,
            signin_redirect_param: param,
            response_headers,
            request_redirect,
            always_set_cookie: false,
        })
    }
}

/// One parsed value of the global auth keys ([`ExternalAuth::from_settings`]).
#[derive(Debug)]
pub(crate) enum Value {
    Url(http::Uri),
    Method(http::Method),
    Text(String),
    Signin(SigninUrl),
    Headers(Vec<http::HeaderName>),
}

fn redirect_param(v: &str) -> Result<String, ValueError> {
    let v = v.trim();
    if !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(v.to_owned())
    } else {
        Err(ValueError::Invalid("want a query parameter name".into()))
    }
}

fn parse_client_cert(r: &mut Reader<'_>, namespace: &str) -> Option<ClientCertAuth> {
    let secret = r.get_guarded("auth-tls-secret", |v| {
        if !v.contains('/') {
            return Err(ValueError::Invalid("want NAMESPACE/NAME".into()));
        }
        same_namespace_secret(v, namespace)
    })?;
    Some(ClientCertAuth {
        secret,
        verify: r.get_or("auth-tls-verify-client", VerifyClient::On, str::parse),
        depth: r
            .get("auth-tls-verify-depth", parse_u32)
            .filter(|&d| d > 0)
            .unwrap_or(1),
        pass_certificate: r
            .get_guarded("auth-tls-pass-certificate-to-upstream", parse_bool)
            .unwrap_or(false),
        error_page: r.get_guarded("auth-tls-error-page", text),
        match_cn: r.get_guarded("auth-tls-match-cn", |v| match v.strip_prefix("CN=") {
            Some(re) => HeaderPattern::new(re),
            None => Err(ValueError::Invalid("want CN=<regular expression>".into())),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_ip_is_nginx_recursive_realip() {
        let r = RealIp {
            header: http::HeaderName::from_static("x-forwarded-for"),
            from: "10.0.0.0/8".parse().unwrap(),
        };
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let mut h = http::HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "1.1.1.1, 2.2.2.2, 10.0.0.9".parse().unwrap(),
        );
        assert_eq!(r.client(&h, ip("10.0.0.1")), ip("2.2.2.2"));
        assert_eq!(
            r.client(&h, ip("192.0.2.1")),
            ip("192.0.2.1"),
            "untrusted peer"
        );
        h.insert("x-forwarded-for", "10.0.0.7, 10.0.0.8".parse().unwrap());
        assert_eq!(r.client(&h, ip("10.0.0.1")), ip("10.0.0.7"), "all trusted");
        h.remove("x-forwarded-for");
        assert_eq!(r.client(&h, ip("10.0.0.1")), ip("10.0.0.1"));
    }

    #[test]
    fn block_patterns_as_nginx_map_entries() {
        let p = parse_block_patterns("~*bot, curl/Evil,~^Spam").unwrap();
        assert!(p[0].matches("GoogleBOT/2.1"));
        assert!(p[1].matches("CURL/EVIL") && !p[1].matches("curl/evil2"));
        assert!(p[2].matches("Spam x") && !p[2].matches("spam x"));
        assert!(parse_block_patterns(" , ").is_err());
        assert!(parse_block_patterns("~(?=x)").is_err(), "look-around");
    }

    #[test]
    fn urls_and_methods() {
        assert!(parse_http_url("http://auth.svc.cluster.local:8080/verify").is_ok());
        for bad in ["/verify", "ftp://x/y", "http://$host/auth", "http://a..b/"] {
            assert!(parse_http_url(bad).is_err(), "{bad}");
        }
        assert_eq!("POST".parse::<AuthMethod>().unwrap().0, http::Method::POST);
        assert!("post".parse::<AuthMethod>().is_err());
        assert_eq!("optional_no_ca".parse(), Ok(VerifyClient::OptionalNoCa));
    }

    #[test]
    fn signin_urls() {
        let s = SigninUrl::parse(
            "https://auth.example.com/start?rd=$escaped_request_uri",
            "rd",
        )
        .unwrap();
        assert_eq!(
            s.parts.last(),
            Some(&SigninPart::EscapedRequestUri),
            "rd kept as written"
        );
        let s = SigninUrl::parse("https://auth.example.com/start", "rd").unwrap();
        assert_eq!(s.parts[1], SigninPart::Literal("?rd=".into()), "rd added");
        let s = SigninUrl::parse("https://a.com/s?x=1", "next").unwrap();
        assert_eq!(s.parts[1], SigninPart::Literal("&next=".into()));
        assert!(SigninUrl::parse("https://a.com/s?rd=$arg_x", "rd").is_err());
        assert!(SigninUrl::parse("/relative", "rd").is_err());
    }

    #[test]
    fn secrets_stay_in_namespace() {
        assert!(same_namespace_secret("s", "ns").is_ok());
        assert!(same_namespace_secret("ns/s", "ns").is_ok());
        assert!(same_namespace_secret("other/s", "ns").is_err());
    }
}
