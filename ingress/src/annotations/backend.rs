//! Backends: `backend-protocol`, `proxy-ssl-*`, `service-upstream`,
//! `load-balance`, `upstream-hash-by`.

use std::str::FromStr;

use super::configmap::ControllerSettings;
use super::reader::Reader;
use super::values::{ObjectName, ValueError, parse_bool, parse_u32};

/// `backend-protocol`: how the gateway speaks to the endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BackendProtocol {
    /// HTTP/1.1 in clear text (the default).
    #[default]
    Http,
    /// HTTP over TLS (the certificate is checked only with
    /// `proxy-ssl-verify: on`).
    Https,
    /// gRPC: HTTP/2 in clear text.
    Grpc,
    /// gRPC over TLS.
    Grpcs,
    /// The client's scheme: HTTPS for HTTPS requests, else HTTP.
    AutoHttp,
}

impl FromStr for BackendProtocol {
    type Err = ValueError;

    /// Case-insensitive, trimmed, as ingress-nginx compares. `FCGI` is
    /// refused: Sluice has no FastCGI client.
    fn from_str(s: &str) -> Result<Self, ValueError> {
        match s.trim().to_ascii_uppercase().as_str() {
            "HTTP" => Ok(Self::Http),
            "HTTPS" => Ok(Self::Https),
            "GRPC" => Ok(Self::Grpc),
            "GRPCS" => Ok(Self::Grpcs),
            "AUTO_HTTP" => Ok(Self::AutoHttp),
            "FCGI" => Err(ValueError::Invalid(
                "FCGI is not supported by sluice-ingress".into(),
            )),
            "" => Err(ValueError::Empty),
            _ => Err(ValueError::NotOneOf("HTTP, HTTPS, GRPC, GRPCS, AUTO_HTTP")),
        }
    }
}

/// `proxy-ssl-*`: TLS to the backend with a CA and client certificate from
/// a Secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProxySsl {
    /// `proxy-ssl-secret` (`ca.crt`, `tls.crt`, `tls.key`), in the Ingress's
    /// namespace.
    pub secret: ObjectName,
    /// `proxy-ssl-verify` (default off).
    pub verify: bool,
    /// `proxy-ssl-verify-depth` (default 1).
    pub verify_depth: u32,
    /// `proxy-ssl-name`: the name checked and sent as SNI (default: the
    /// upstream host).
    pub name: Option<String>,
    /// `proxy-ssl-server-name`: send SNI (default off).
    pub server_name: bool,
}

/// `load-balance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LoadBalance {
    /// Round robin (the default).
    #[default]
    RoundRobin,
    /// Peak exponentially weighted moving average of response times.
    Ewma,
}

impl FromStr for LoadBalance {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "round_robin" => Ok(Self::RoundRobin),
            "ewma" => Ok(Self::Ewma),
            "chash" | "chashsubset" | "sticky_balanced" | "sticky_persistent" => Err(
                ValueError::Invalid(format!("{} is not supported (round_robin, ewma)", s.trim())),
            ),
            "" => Err(ValueError::Empty),
            _ => Err(ValueError::NotOneOf("round_robin, ewma")),
        }
    }
}

/// A part of an `upstream-hash-by` key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HashPart {
    /// Text.
    Literal(String),
    /// `$request_uri`: the path and query as received.
    RequestUri,
    /// `$uri`: the normalized path.
    Uri,
    /// `$host`.
    Host,
    /// `$remote_addr` (or `$binary_remote_addr`): the client address.
    RemoteAddr,
    /// `$scheme`.
    Scheme,
    /// `$http_NAME`: a request header (`_` stands for `-`).
    Header(http::HeaderName),
    /// `$cookie_NAME`.
    Cookie(String),
    /// `$arg_NAME`: a query parameter.
    Arg(String),
}

/// `upstream-hash-by`: the key of consistent hashing over the endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HashKey {
    source: String,
    parts: Vec<HashPart>,
}

impl HashKey {
    /// The parts.
    pub fn parts(&self) -> &[HashPart] {
        &self.parts
    }

    /// The value as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

fn hash_var(name: &str) -> Result<HashPart, ValueError> {
    let part = match name {
        "request_uri" => HashPart::RequestUri,
        "uri" | "document_uri" => HashPart::Uri,
        "host" => HashPart::Host,
        "remote_addr" | "binary_remote_addr" => HashPart::RemoteAddr,
        "scheme" => HashPart::Scheme,
        n => {
            let bad = || ValueError::Invalid(format!("nginx variable ${n} is not supported"));
            if let Some(h) = n.strip_prefix("http_").filter(|h| !h.is_empty()) {
                let h = h.replace('_', "-");
                HashPart::Header(http::HeaderName::from_bytes(h.as_bytes()).map_err(|_| bad())?)
            } else if let Some(c) = n.strip_prefix("cookie_").filter(|c| !c.is_empty()) {
                HashPart::Cookie(c.to_owned())
            } else if let Some(a) = n.strip_prefix("arg_").filter(|a| !a.is_empty()) {
                HashPart::Arg(a.to_owned())
            } else {
                return Err(bad());
            }
        }
    };
    Ok(part)
}

impl FromStr for HashKey {
    type Err = ValueError;

    /// Text of `[A-Za-z0-9_-]` and variables `$name` / `${name}`.
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ValueError::Empty);
        }
        let mut parts = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            if let Some(var) = rest.strip_prefix('$') {
                let (name, after) = match var.strip_prefix('{') {
                    Some(b) => b
                        .split_once('}')
                        .ok_or_else(|| ValueError::Invalid("unclosed ${".into()))?,
                    None => {
                        let end = var
                            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                            .unwrap_or(var.len());
                        (&var[..end], &var[end..])
                    }
                };
                parts.push(hash_var(name)?);
                rest = after;
            } else {
                let end = rest.find('$').unwrap_or(rest.len());
                let lit = &rest[..end];
                if !lit
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(ValueError::Invalid(
                        "want letters, digits, -, _ and $variables only".into(),
                    ));
                }
                parts.push(HashPart::Literal(lit.to_owned()));
                rest = &rest[end..];
            }
        }
        Ok(Self {
            source: s.to_owned(),
            parts,
        })
    }
}

/// The backend policy of an Ingress.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BackendPolicy {
    /// `backend-protocol`.
    pub protocol: BackendProtocol,
    /// `proxy-ssl-*` (only with `proxy-ssl-secret`, as in ingress-nginx).
    pub proxy_ssl: Option<ProxySsl>,
    /// `service-upstream`: the Service's ClusterIP instead of endpoints.
    pub service_upstream: bool,
    /// `load-balance`.
    pub load_balance: LoadBalance,
    /// `upstream-hash-by` (wins over `load-balance`).
    pub hash_by: Option<HashKey>,
}

impl BackendPolicy {
    pub(crate) fn parse(
        r: &mut Reader<'_>,
        settings: &ControllerSettings,
        namespace: &str,
    ) -> Self {
        Self {
            protocol: r.get_or("backend-protocol", BackendProtocol::Http, str::parse),
            proxy_ssl: parse_proxy_ssl(r, namespace),
            service_upstream: r.get_or("service-upstream", settings.service_upstream, parse_bool),
            load_balance: r.get_or("load-balance", settings.load_balance, str::parse),
            hash_by: r.get("upstream-hash-by", str::parse),
        }
    }
}

/// ingress-nginx reads the other `proxy-ssl-*` annotations only with a
/// `proxy-ssl-secret`, which must be `namespace/name` in the Ingress's own
/// namespace; otherwise its locations answer 503 (a denial here too).
fn parse_proxy_ssl(r: &mut Reader<'_>, namespace: &str) -> Option<ProxySsl> {
    let others = [
        "proxy-ssl-verify",
        "proxy-ssl-verify-depth",
        "proxy-ssl-name",
        "proxy-ssl-server-name",
    ];
    let Some((_, raw)) = r.raw("proxy-ssl-secret") else {
        r.ignore_all(&others, "it takes effect only with proxy-ssl-secret");
        return None;
    };
    let secret = match raw.trim().split_once('/') {
        Some(_) => match ObjectName::parse(raw, namespace) {
            Ok(s) if s.is_in(namespace) => s,
            Ok(s) => {
                r.deny(
                    "proxy-ssl-secret",
                    format!("secret {s} is in another namespace"),
                );
                return None;
            }
            Err(e) => {
                r.deny("proxy-ssl-secret", e.to_string());
                return None;
            }
        },
        None => {
            r.deny("proxy-ssl-secret", "want NAMESPACE/NAME".into());
            return None;
        }
    };
    let on_off = |v: &str| match v.trim() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(ValueError::NotOneOf("on, off")),
    };
    Some(ProxySsl {
        secret,
        verify: r.get_or("proxy-ssl-verify", false, on_off),
        verify_depth: r
            .get("proxy-ssl-verify-depth", parse_u32)
            .filter(|&d| d > 0)
            .unwrap_or(1),
        name: r.get("proxy-ssl-name", |v| {
            crate::routes::HostPattern::parse(v.trim())
                .map(|_| v.trim().to_ascii_lowercase())
                .map_err(|e| ValueError::Invalid(e.to_string()))
        }),
        server_name: r.get_or("proxy-ssl-server-name", false, on_off),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols() {
        assert_eq!(" grpcs ".parse(), Ok(BackendProtocol::Grpcs));
        assert_eq!("AUTO_HTTP".parse(), Ok(BackendProtocol::AutoHttp));
        assert!("FCGI".parse::<BackendProtocol>().is_err());
        assert!("h2c".parse::<BackendProtocol>().is_err());
    }

    #[test]
    fn balancing() {
        assert_eq!("EWMA".parse(), Ok(LoadBalance::Ewma));
        assert!("chash".parse::<LoadBalance>().is_err());
    }

    #[test]
    fn hash_keys() {
        let k: HashKey = "$request_uri-${host}x$http_x_user$cookie_sid$arg_id"
            .parse()
            .unwrap();
        assert_eq!(
            k.parts(),
            &[
                HashPart::RequestUri,
                HashPart::Literal("-".into()),
                HashPart::Host,
                HashPart::Literal("x".into()),
                HashPart::Header(http::HeaderName::from_static("x-user")),
                HashPart::Cookie("sid".into()),
                HashPart::Arg("id".into()),
            ]
        );
        for bad in ["$ssl_client_s_dn", "a b", "${host", "$", ""] {
            assert!(bad.parse::<HashKey>().is_err(), "{bad}");
        }
    }
}
