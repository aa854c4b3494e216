//! Gateway configuration as plain values, with safe defaults.
//!
//! Nothing here is read from files or flags: the binary (or a test) builds
//! a [`GatewayConfig`] and hands it to [`crate::gateway::Gateway::new`].
//! The defaults follow ingress-nginx and Envoy's edge guidance (see
//! `shared/reference/ingress.md` §6): 10 s to read a request head, 32 KiB
//! of request head, 75 s keep-alive idle, 5 s upstream connect, 60 s
//! upstream read, 1 MiB request bodies, HSTS and the HTTP → HTTPS redirect
//! on, and incoming `X-Forwarded-*` headers trusted from nobody.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::access_log::AccessLogWriter;
use rustls::sign::CertifiedKey;

/// Everything the gateway needs besides the routing snapshot.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where plain HTTP (HTTP/1.1 and h2c prior knowledge) is served;
    /// `None` disables the listener.
    pub http_addr: Option<SocketAddr>,
    /// Where HTTPS (ALPN `h2`, `http/1.1`) is served; `None` disables it.
    pub https_addr: Option<SocketAddr>,
    /// Client-side limits.
    pub limits: Limits,
    /// Client- and upstream-side timeouts.
    pub timeouts: Timeouts,
    /// Peers whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: TrustedProxies,
    /// The `Strict-Transport-Security` value sent on HTTPS responses for
    /// hosts with TLS; `None` disables HSTS.
    pub hsts: Option<String>,
    /// Whether plain-HTTP requests for hosts with TLS get a 308 to HTTPS
    /// (per Ingress opt-out: `sluice.dev/ssl-redirect: "false"`).
    pub ssl_redirect: bool,
    /// The port written into redirect `Location`s; `None` or 443 writes no
    /// port. Set it when the HTTPS listener is reached on another port.
    pub https_redirect_port: Option<u16>,
    /// Certificate served when SNI matches no loaded Secret. `None`: a
    /// self-signed one is generated at start.
    pub default_certificate: Option<Arc<CertifiedKey>>,
    /// Upstream behaviour: retries and passive ejection.
    pub upstream: UpstreamConfig,
    /// Where and how access log lines are written; `None` (the default
    /// here; the binary writes to stderr) logs nothing.
    pub access_log: Option<AccessLogWriter>,
    /// Whether request headers whose names contain `_` are forwarded.
    /// `false` (the default) drops them, as nginx does
    /// (`underscores_in_headers off`; ingress-nginx's
    /// `enable-underscores-in-headers: false`): CGI and WSGI backends turn
    /// `-` and `_` into the same variable, so `X_Forwarded_For` would
    /// stand beside the gateway's own `X-Forwarded-For`.
    pub allow_underscores_in_headers: bool,
    /// `Upgrade` protocols tunnelled besides `websocket` (lower case). An
    /// upgrade request offering anything else is forwarded as a plain
    /// request without its `Upgrade`: an `h2c` upgrade would give the
    /// client an HTTP/2 connection to the backend on which it reaches
    /// paths the route table never saw (h2c smuggling).
    pub upgrade_protocols: Vec<String>,
    /// Whether an HTTPS request whose Host the certificate chosen by the
    /// client's SNI does not cover is answered 421 Misdirected Request
    /// (RFC 9110 §15.5.20), so that a client retries on a connection of
    /// its own for that host. Only when SNI chose a certificate of an
    /// Ingress; the default certificate claims no host.
    pub strict_sni_host: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            http_addr: Some(SocketAddr::from(([0, 0, 0, 0], 80))),
            https_addr: Some(SocketAddr::from(([0, 0, 0, 0], 443))),
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            trusted_proxies: TrustedProxies::default(),
            hsts: Some(DEFAULT_HSTS.to_owned()),
            ssl_redirect: true,
            https_redirect_port: None,
            default_certificate: None,
            upstream: UpstreamConfig::default(),
            access_log: None,
            allow_underscores_in_headers: false,
            upgrade_protocols: Vec::new(),
            strict_sni_host: true,
        }
    }
}

/// The default `Strict-Transport-Security` value (ingress-nginx's: one
/// year, subdomains, no preload).
pub const DEFAULT_HSTS: &str = "max-age=31536000; includeSubDomains";

/// Client-side size limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest HTTP/1 request head (request line + headers) and HTTP/2
    /// header list, in bytes; more is answered 431. Minimum 8192.
    pub max_header_bytes: usize,
    /// Most headers in an HTTP/1 request; more is answered 431.
    pub max_headers: usize,
    /// Largest request body in bytes, 0 = unlimited. A larger
    /// `Content-Length` is answered 413 before any upstream is contacted;
    /// a chunked body that grows past it is cut and answered 413.
    pub max_request_body: u64,
    /// Concurrent HTTP/2 streams per client connection.
    pub max_concurrent_streams: u32,
    /// HTTP/2 streams of one client connection that may end without their
    /// response — reset by the client after the gateway accepted them, or
    /// reset by the gateway for the client's protocol errors — while such
    /// streams outnumber the completed ones; one more and the connection
    /// gets GOAWAY ENHANCE_YOUR_CALM. 0 = no limit. (Streams reset before
    /// they were accepted, the textbook rapid reset, are the h2 layer's
    /// own limit.)
    pub max_stream_resets: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            max_request_body: 1024 * 1024,
            max_concurrent_streams: 128,
            max_stream_resets: 100,
        }
    }
}

/// Timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Time from the first byte of an HTTP/1 request head to its end (and
    /// for the TLS handshake); a slower client is disconnected
    /// (slowloris).
    pub header_read: Duration,
    /// A client connection with no request in flight and no bytes moving
    /// for this long is closed (keep-alive idle). Also the idle limit of
    /// upgraded (WebSocket) tunnels.
    pub idle: Duration,
    /// TCP connect to an upstream endpoint.
    pub upstream_connect: Duration,
    /// Upstream response head, and each gap between response body chunks.
    pub upstream_read: Duration,
    /// How long graceful shutdown waits for in-flight requests.
    pub drain: Duration,
    /// How long the listeners keep accepting after the shutdown signal
    /// (while readiness already fails, so load balancers and Endpoints
    /// controllers have time to stop sending), before draining starts.
    pub shutdown_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(75),
            upstream_connect: Duration::from_secs(5),
            upstream_read: Duration::from_secs(60),
            drain: Duration::from_secs(30),
            shutdown_grace: Duration::ZERO,
        }
    }
}

/// Upstream retries and passive health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// Consecutive connect failures that eject an endpoint.
    pub eject_after_failures: u32,
    /// How long an ejected endpoint is skipped.
    pub ejection_cooldown: Duration,
    /// Extra attempts on other endpoints after a connect failure
    /// (idempotent methods, no body bytes sent).
    pub connect_retries: u32,
    /// How long an idle pooled upstream connection is kept.
    pub pool_idle_timeout: Duration,
    /// Idle pooled connections kept per endpoint.
    pub pool_max_idle_per_endpoint: usize,
    /// Upstream HTTP/1.1 connections in use, in total (0 = no cap). A
    /// request over this or the next two caps waits for a slot at most the
    /// upstream connect timeout, then gets 503
    /// ([`crate::gateway::upstream::slots`]).
    pub max_connections: usize,
    /// Upstream HTTP/1.1 connections in use per endpoint (0 = no cap).
    pub max_connections_per_endpoint: usize,
    /// Upstream HTTP/1.1 connections in use per client connection: how
    /// many of an HTTP/2 client's concurrent streams are forwarded at
    /// once (0 = no cap).
    pub max_connections_per_client: usize,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            eject_after_failures: 5,
            ejection_cooldown: Duration::from_secs(10),
            connect_retries: 2,
            pool_idle_timeout: Duration::from_secs(60),
            pool_max_idle_per_endpoint: 64,
            max_connections: 4096,
            max_connections_per_endpoint: 1024,
            max_connections_per_client: 32,
        }
    }
}

/// What an access log line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessLogFormat {
    /// No access log.
    Off,
    /// `key=value` fields after the log's usual timestamp, level and
    /// target `sluice_ingress::access` (JSON fields in a JSON envelope
    /// with `--log-format json`).
    #[default]
    Fields,
    /// One JSON object per request where the message goes.
    Json,
}

/// CIDRs of proxies in front of the gateway whose `X-Forwarded-For`,
/// `X-Forwarded-Proto` and `X-Forwarded-Host` are kept. Empty by default:
/// incoming forwarding headers are replaced (ingress-nginx's
/// `use-forwarded-headers: false`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Trusts the given networks.
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        Self(nets.into_iter().collect())
    }

    /// Parses comma- or whitespace-separated CIDRs (a bare address is a
    /// /32 or /128).
    pub fn parse(list: &str) -> Result<Self, ipnet::AddrParseError> {
        let mut nets = Vec::new();
        for item in list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
        {
            match item.parse::<IpNet>() {
                Ok(n) => nets.push(n),
                Err(e) => match item.parse::<IpAddr>() {
                    Ok(a) => nets.push(IpNet::from(a)),
                    Err(_) => return Err(e),
                },
            }
        }
        Ok(Self(nets))
    }

    /// Whether `addr` is trusted. IPv4-mapped IPv6 addresses are checked
    /// as IPv4.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = canonical_ip(addr);
        self.0.iter().any(|n| n.contains(&addr))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `::ffff:a.b.c.d` → `a.b.c.d`.
pub(crate) fn canonical_ip(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_parse_and_match() {
        let t = TrustedProxies::parse("10.0.0.0/8, 192.168.1.1 fd00::/8").unwrap();
        assert!(t.contains("10.1.2.3".parse().unwrap()));
        assert!(t.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(t.contains("192.168.1.1".parse().unwrap()));
        assert!(!t.contains("192.168.1.2".parse().unwrap()));
        assert!(t.contains("fd00::1".parse().unwrap()));
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("nope").is_err());
        assert!(TrustedProxies::default().is_empty());
    }
}
