//! The L7 gateway data plane: everything between a client socket and a
//! pod socket.
//!
//! One small module per concern, each testable alone:
//!
//! * [`config`]: [`GatewayConfig`] (listen addresses, limits, timeouts,
//!   trusted proxies, HSTS, redirects) with safe defaults;
//! * [`routing`]: the [`Routing`] snapshot (route table, endpoints per
//!   Service port, certificates), swapped atomically by
//!   [`Gateway::update`];
//! * [`server`]: listeners, HTTP/1.1 + HTTP/2 connections, head and idle
//!   timeouts, graceful shutdown;
//! * [`tls`]: certificate store, SNI selection, rustls configuration;
//! * [`service`]: the request handler per connection, which runs the
//!   request path's [`stages`] (resolve → redirect → backend → limits →
//!   forward → finish; new per-route policies are new stages there);
//! * [`proxy`]: hop-by-hop and `X-Forwarded-*` header rewriting;
//! * [`limits`]: body limit and upstream read timeout;
//! * [`upstream`]: endpoint balancing, ejection, pooled clients, retries;
//! * [`errors`]: the gateway's own responses;
//! * [`wire`]: what is read from the raw bytes beside hyper (a `#` in an
//!   HTTP/1 target; HTTP/2 frame boundaries for the gateway's own GOAWAY);
//! * [`flags`]: the gateway's command-line flags;
//! * [`access_log`] and [`metrics`].
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use sluice_ingress::gateway::{Gateway, GatewayConfig, Metrics, Routing};
//! let mut registry = prometheus_client::registry::Registry::default();
//! let gateway = Gateway::new(GatewayConfig::default(), Metrics::new(&mut registry))
//!     .expect("default certificate");
//! gateway.update(Routing::default()); // on every controller change
//! let server = gateway.bind().await?;
//! server.serve(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```

pub mod access_log;
pub mod body;
pub mod client_cert;
pub mod config;
pub mod errors;
pub mod flags;
pub mod htpasswd;
pub mod limits;
pub mod metrics;
pub mod proxy;
pub mod routing;
pub mod secrets;
pub mod server;
pub mod service;
pub(crate) mod stages;
pub mod tls;
pub mod upstream;
pub(crate) mod wire;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

pub use body::{BoxError, GatewayBody};
pub use config::{
    AccessLogFormat, GatewayConfig, Limits, Timeouts, TrustedProxies, UpstreamConfig,
};
pub use errors::LocalError;
pub use flags::GatewayFlags;
pub use metrics::Metrics;
pub use routing::{AppProtocol, EndpointSet, Endpoints, Routing, ServiceKey};
pub use secrets::AccessSecrets;
pub use server::Server;
pub use service::GatewayService;
pub use tls::{
    CertError, CertStore, certified_key_from_pem, select_certificate, self_signed_certificate,
};

use upstream::{Clients, Pool, Registry};

/// A routing snapshot bound to the endpoint registry: one per
/// [`Gateway::update`], shared by every request that started under it.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) routing: Routing,
    pub(crate) pools: HashMap<ServiceKey, Arc<Pool>>,
}

impl Snapshot {
    fn bind(routing: Routing, registry: &Registry) -> Self {
        let pools = routing
            .endpoints
            .iter()
            .map(|(k, set)| (k.clone(), Arc::new(registry.pool(set))))
            .collect();
        Self { routing, pools }
    }
}

/// State shared by listeners, connections and requests.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: GatewayConfig,
    pub(crate) snapshot: Arc<ArcSwap<Snapshot>>,
    pub(crate) registry: Registry,
    pub(crate) clients: Clients,
    pub(crate) metrics: Metrics,
    pub(crate) tls: Arc<rustls::ServerConfig>,
}

/// The gateway: configuration, the live routing snapshot, upstream
/// clients and metrics. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Gateway {
    shared: Arc<Shared>,
}

impl Gateway {
    /// Builds a gateway with an empty routing snapshot (every request is
    /// 404 until [`Gateway::update`]). Fails only when no default
    /// certificate is configured and generating one fails.
    pub fn new(config: GatewayConfig, metrics: Metrics) -> Result<Self, CertError> {
        let default = match &config.default_certificate {
            Some(c) => c.clone(),
            None => Arc::new(self_signed_certificate(&["sluice-ingress.invalid"])?),
        };
        let registry = Registry::new(config.upstream.max_connections_per_endpoint);
        let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::bind(
            Routing::default(),
            &registry,
        )));
        let resolver = Arc::new(tls::SniResolver {
            snapshot: snapshot.clone(),
            default,
        });
        let clients = Clients::new(
            config.upstream,
            config.timeouts.upstream_connect,
            config.timeouts.upstream_read,
        );
        Ok(Self {
            shared: Arc::new(Shared {
                tls: tls::server_config(resolver),
                config,
                snapshot,
                registry,
                clients,
                metrics,
            }),
        })
    }

    /// Swaps in a new routing snapshot. Requests already running finish
    /// with the snapshot they started with; no connection is touched.
    /// Endpoint health carries over by address.
    pub fn update(&self, routing: Routing) {
        let snap = Snapshot::bind(routing, &self.shared.registry);
        self.shared.snapshot.store(Arc::new(snap));
        self.shared.metrics.config_reload();
    }

    /// The current routing snapshot.
    pub fn routing(&self) -> Routing {
        self.shared.snapshot.load().routing.clone()
    }

    /// The configuration.
    pub fn config(&self) -> &GatewayConfig {
        &self.shared.config
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The rustls server configuration (SNI resolver over the live
    /// snapshot, TLS 1.2/1.3, ALPN h2 + http/1.1).
    pub fn tls_config(&self) -> Arc<rustls::ServerConfig> {
        self.shared.tls.clone()
    }

    /// Binds the configured listeners.
    pub async fn bind(&self) -> io::Result<Server> {
        Server::bind(self.shared.clone()).await
    }

    /// The request handler for a connection from `peer` to `local`, for
    /// driving the gateway without its listeners (e.g. in tests or behind
    /// another accept loop).
    pub fn service(&self, peer: SocketAddr, local: SocketAddr, tls: bool) -> GatewayService {
        GatewayService::new(
            self.shared.clone(),
            Arc::new(service::ConnCtx {
                peer,
                local,
                tls,
                sni: None,
                state: Arc::new(server::ConnState::for_client(
                    &self.shared.config,
                    &self.shared.metrics,
                )),
            }),
        )
    }
}
