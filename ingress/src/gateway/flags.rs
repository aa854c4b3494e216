//! The gateway's command-line flags, flattened into `sluice-ingress`'s
//! own (`#[command(flatten)]`), so a gateway setting is declared, parsed
//! and applied here, beside [`GatewayConfig`]. Each is in the README's
//! flag table.

use super::config::GatewayConfig;

/// Gateway settings from the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayFlags {
    /// Forward request headers whose names contain underscores (dropped by
    /// default, as nginx's `underscores_in_headers off`; ingress-nginx's
    /// `enable-underscores-in-headers`).
    #[arg(long)]
    pub enable_underscores_in_headers: bool,
    /// An `Upgrade` protocol tunnelled besides `websocket` (repeat or
    /// comma-separate for several). Any other upgrade request is forwarded
    /// as a plain request without its `Upgrade` header.
    #[arg(long = "allow-upgrade", value_name = "PROTOCOL", value_delimiter = ',')]
    pub allow_upgrade: Vec<String>,
    /// Answer 421 Misdirected Request over HTTPS when the certificate the
    /// client's SNI selected does not cover the request's Host.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub strict_sni_host: bool,
    /// HTTP/2 streams of one client connection that may end without their
    /// response (reset by the client, or by the gateway for the client's
    /// protocol errors) before the connection is closed with GOAWAY
    /// ENHANCE_YOUR_CALM (counted while resets outnumber completed
    /// requests). 0 = no limit.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub max_stream_resets: u32,
    /// Upstream HTTP/1.1 connections in use, in total (0 = no cap); a
    /// request over a cap waits up to the upstream connect timeout, then
    /// gets 503.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub max_upstream_connections: usize,
    /// Upstream HTTP/1.1 connections in use per endpoint (0 = no cap).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_upstream_connections_per_endpoint: usize,
    /// Upstream HTTP/1.1 connections in use per client connection (an
    /// HTTP/2 client's concurrent streams; 0 = no cap).
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub max_upstream_connections_per_client: usize,
    /// Seconds the listeners keep accepting after SIGTERM, while /readyz
    /// already fails, before they drain (ingress-nginx's
    /// `--shutdown-grace-period`).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub shutdown_grace_period: u64,
}

impl GatewayFlags {
    /// Writes the flags into `config`.
    pub fn apply(&self, config: &mut GatewayConfig) {
        config.allow_underscores_in_headers = self.enable_underscores_in_headers;
        config.upgrade_protocols = self
            .allow_upgrade
            .iter()
            .map(|p| p.trim().to_ascii_lowercase())
            .filter(|p| !p.is_empty())
            .collect();
        config.strict_sni_host = self.strict_sni_host;
        config.limits.max_stream_resets = self.max_stream_resets;
        config.upstream.max_connections = self.max_upstream_connections;
        config.upstream.max_connections_per_endpoint = self.max_upstream_connections_per_endpoint;
        config.upstream.max_connections_per_client = self.max_upstream_connections_per_client;
        config.timeouts.shutdown_grace = std::time::Duration::from_secs(self.shutdown_grace_period);
    }
}
