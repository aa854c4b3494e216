//! Prometheus metrics of the data plane (prometheus-client appends
//! `_total` to counters on exposition).
//!
//! | name | type | labels |
//! |---|---|---|
//! | `sluice_ingress_requests` | counter | `ingress`, `service`, `code` |
//! | `sluice_ingress_upstream_latency_seconds` | histogram | `service` |
//! | `sluice_ingress_open_connections` | gauge | `listener` (`http`, `https`) |
//! | `sluice_ingress_tls_handshakes` | counter | `result` (`ok`, `error`) |
//! | `sluice_ingress_config_reloads` | counter | |
//! | `sluice_ingress_upstream_connect_failures` | counter | `service` |
//! | `sluice_ingress_upstream_ejections` | counter | `service` |
//! | `sluice_ingress_upstream_connects` | counter | `service` (new HTTP/1.1 connections) |
//! | `sluice_ingress_upstream_queue_timeouts` | counter | `service`, `limit` (`total`, `endpoint`, `client connection`): requests answered 503 for want of a connection slot |
//! | `sluice_ingress_http2_stream_resets` | counter | | streams that ended without their response (reset by the client after they were accepted, or by the gateway for a protocol error) |
//! | `sluice_ingress_http2_calm_goaways` | counter | | connections closed with GOAWAY ENHANCE_YOUR_CALM for too many such resets |
//!
//! Requests answered by the gateway itself have `ingress` and `service`
//! set to `""` when no route applied.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    ingress: String,
    service: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BusyLabels {
    service: String,
    limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// `sluice_ingress_http2_stream_resets` and `_calm_goaways`, held by each
/// client connection.
#[derive(Clone, Debug)]
pub(crate) struct ResetCounters {
    pub(crate) resets: Counter,
    pub(crate) calm_goaways: Counter,
}

/// The gateway's metrics. Cheap to clone (shared handles).
#[derive(Clone, Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    upstream_latency: Family<ServiceLabels, Histogram, fn() -> Histogram>,
    open_connections: Family<ListenerLabels, Gauge>,
    tls_handshakes: Family<ResultLabels, Counter>,
    config_reloads: Counter,
    connect_failures: Family<ServiceLabels, Counter>,
    ejections: Family<ServiceLabels, Counter>,
    connects: Family<ServiceLabels, Counter>,
    queue_timeouts: Family<BusyLabels, Counter>,
    stream_resets: Counter,
    calm_goaways: Counter,
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::unregistered();
        let r = registry.sub_registry_with_prefix("sluice_ingress");
        r.register(
            "requests",
            "Requests by ingress, service and status code",
            m.requests.clone(),
        );
        r.register(
            "upstream_latency_seconds",
            "Time from sending a request upstream to its response head",
            m.upstream_latency.clone(),
        );
        r.register(
            "open_connections",
            "Open client connections by listener",
            m.open_connections.clone(),
        );
        r.register(
            "tls_handshakes",
            "TLS handshakes by result",
            m.tls_handshakes.clone(),
        );
        r.register(
            "config_reloads",
            "Routing snapshots swapped in",
            m.config_reloads.clone(),
        );
        r.register(
            "upstream_connect_failures",
            "Failed connection attempts to endpoints",
            m.connect_failures.clone(),
        );
        r.register(
            "upstream_ejections",
            "Endpoints ejected after consecutive connect failures",
            m.ejections.clone(),
        );
        r.register(
            "upstream_connects",
            "New HTTP/1.1 connections to endpoints",
            m.connects.clone(),
        );
        r.register(
            "upstream_queue_timeouts",
            "Requests answered 503 for want of an upstream connection slot, by cap",
            m.queue_timeouts.clone(),
        );
        r.register(
            "http2_stream_resets",
            "HTTP/2 streams that ended without their response",
            m.stream_resets.clone(),
        );
        r.register(
            "http2_calm_goaways",
            "HTTP/2 connections closed with GOAWAY ENHANCE_YOUR_CALM for too many stream resets",
            m.calm_goaways.clone(),
        );
        m
    }

    /// Metrics that are counted but not exposed anywhere.
    pub fn unregistered() -> Self {
        Self {
            requests: Family::default(),
            upstream_latency: Family::new_with_constructor(latency_histogram),
            open_connections: Family::default(),
            tls_handshakes: Family::default(),
            config_reloads: Counter::default(),
            connect_failures: Family::default(),
            ejections: Family::default(),
            connects: Family::default(),
            queue_timeouts: Family::default(),
            stream_resets: Counter::default(),
            calm_goaways: Counter::default(),
        }
    }

    pub(crate) fn request(&self, ingress: &str, service: &str, code: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                ingress: ingress.to_owned(),
                service: service.to_owned(),
                code,
            })
            .inc();
    }

    pub(crate) fn upstream_latency(&self, service: &str, seconds: f64) {
        self.upstream_latency
            .get_or_create(&ServiceLabels {
                service: service.to_owned(),
            })
            .observe(seconds);
    }

    pub(crate) fn connection_opened(&self, listener: &'static str) {
        self.open_connections
            .get_or_create(&ListenerLabels { listener })
            .inc();
    }

    pub(crate) fn connection_closed(&self, listener: &'static str) {
        self.open_connections
            .get_or_create(&ListenerLabels { listener })
            .dec();
    }

    pub(crate) fn tls_handshake(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.tls_handshakes
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub(crate) fn config_reload(&self) {
        self.config_reloads.inc();
    }

    pub(crate) fn connect_failure(&self, service: &str, ejected: bool) {
        let l = ServiceLabels {
            service: service.to_owned(),
        };
        self.connect_failures.get_or_create(&l).inc();
        if ejected {
            self.ejections.get_or_create(&l).inc();
        }
    }

    pub(crate) fn upstream_connected(&self, service: &str) {
        self.connects
            .get_or_create(&ServiceLabels {
                service: service.to_owned(),
            })
            .inc();
    }

    pub(crate) fn upstream_queue_timeout(&self, service: &str, limit: &str) {
        self.queue_timeouts
            .get_or_create(&BusyLabels {
                service: service.to_owned(),
                limit: limit.to_owned(),
            })
            .inc();
    }

    /// The counters a connection bumps itself, for as long as it lives.
    pub(crate) fn reset_counters(&self) -> ResetCounters {
        ResetCounters {
            resets: self.stream_resets.clone(),
            calm_goaways: self.calm_goaways.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names() {
        let mut reg = Registry::default();
        let m = Metrics::new(&mut reg);
        m.request("ns/web", "ns/web:80", 200);
        m.upstream_latency("ns/web:80", 0.01);
        m.connection_opened("http");
        m.tls_handshake(true);
        m.config_reload();
        m.connect_failure("ns/web:80", true);
        m.upstream_connected("ns/web:80");
        m.upstream_queue_timeout("ns/web:80", "total");
        let c = m.reset_counters();
        c.resets.inc_by(3);
        c.calm_goaways.inc();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        for want in [
            "sluice_ingress_requests_total{ingress=\"ns/web\",service=\"ns/web:80\",code=\"200\"} 1",
            "sluice_ingress_upstream_latency_seconds_count{service=\"ns/web:80\"} 1",
            "sluice_ingress_open_connections{listener=\"http\"} 1",
            "sluice_ingress_tls_handshakes_total{result=\"ok\"} 1",
            "sluice_ingress_config_reloads_total 1",
            "sluice_ingress_upstream_ejections_total{service=\"ns/web:80\"} 1",
            "sluice_ingress_upstream_connects_total{service=\"ns/web:80\"} 1",
            "sluice_ingress_upstream_queue_timeouts_total{service=\"ns/web:80\",limit=\"total\"} 1",
            "sluice_ingress_http2_stream_resets_total 3",
            "sluice_ingress_http2_calm_goaways_total 1",
        ] {
            assert!(out.contains(want), "{want} not in\n{out}");
        }
    }
}
