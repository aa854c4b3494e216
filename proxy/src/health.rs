//! kube-proxy's health endpoints: `/healthz` and `/livez` on the healthz
//! address (`/metrics` on the metrics address), and one server per
//! `healthCheckNodePort` answering load balancers for
//! `externalTrafficPolicy: Local` Services.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
pub use sluice_kube::admin::serve;
use sluice_kube::admin::{AdminResponse, METRICS_CONTENT_TYPE, not_found, response};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::app::SyncError;
use crate::metrics::Metrics;
use crate::plan::HealthCheck;

#[derive(Debug)]
struct State {
    last_updated: Option<SystemTime>,
    oldest_pending: Option<Instant>,
    node_eligible: bool,
}

/// Whether the proxy keeps the node's rules current (kube-proxy's
/// `ProxierHealthServer`): unhealthy when an update has been queued for
/// longer than `2 × syncPeriod` without a sync.
#[derive(Debug)]
pub struct ProxyHealth {
    state: Mutex<State>,
    timeout: Duration,
}

fn rfc3339(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t)
        .map(|ts| ts.round(jiff::Unit::Second).unwrap_or(ts).to_string())
        .unwrap_or_default()
}

impl ProxyHealth {
    /// Health that turns bad after `timeout` (2 × syncPeriod) of pending work.
    pub fn new(timeout: Duration) -> Self {
        Self {
            state: Mutex::new(State {
                last_updated: None,
                oldest_pending: None,
                node_eligible: true,
            }),
            timeout,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that an update is waiting for a sync.
    pub fn queued(&self) {
        let mut s = self.lock();
        s.oldest_pending.get_or_insert_with(Instant::now);
    }

    /// Records a completed sync.
    pub fn updated(&self) {
        let mut s = self.lock();
        s.oldest_pending = None;
        s.last_updated = Some(SystemTime::now());
    }

    /// Whether this node may receive load-balancer traffic (false while the
    /// Node is being deleted or tainted `ToBeDeletedByClusterAutoscaler`).
    pub fn set_node_eligible(&self, eligible: bool) {
        self.lock().node_eligible = eligible;
    }

    /// Whether syncing keeps up (what `/livez` reports).
    pub fn healthy(&self) -> bool {
        self.lock()
            .oldest_pending
            .is_none_or(|t| t.elapsed() < self.timeout)
    }

    fn answer(&self, path: &str) -> (StatusCode, String) {
        let s = self.lock();
        let healthy = s.oldest_pending.is_none_or(|t| t.elapsed() < self.timeout);
        let now = rfc3339(SystemTime::now());
        let last = s.last_updated.map(rfc3339).unwrap_or_default();
        match path {
            "/livez" => (
                if healthy {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                },
                format!(r#"{{"lastUpdated": "{last}","currentTime": "{now}"}}"#),
            ),
            "/healthz" => (
                if healthy && s.node_eligible {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                },
                format!(
                    r#"{{"lastUpdated": "{last}","currentTime": "{now}", "nodeEligible": {}}}"#,
                    s.node_eligible
                ),
            ),
            _ => (StatusCode::NOT_FOUND, "404 page not found\n".into()),
        }
    }
}

/// The `/healthz` + `/livez` handler (and `/metrics` when the metrics and
/// health addresses are the same).
pub fn health_handler(
    health: Arc<ProxyHealth>,
    metrics: Option<Arc<Metrics>>,
) -> impl Fn(&Request<Incoming>) -> AdminResponse + Send + Sync + 'static {
    move |req| {
        if req.uri().path() == "/metrics"
            && let Some(m) = &metrics
        {
            return response(StatusCode::OK, METRICS_CONTENT_TYPE, m.render(), &[]);
        }
        let (status, body) = health.answer(req.uri().path());
        response(status, "application/json", body, &[])
    }
}

/// The `/metrics` handler.
pub fn metrics_handler(
    metrics: Arc<Metrics>,
) -> impl Fn(&Request<Incoming>) -> AdminResponse + Send + Sync + 'static {
    move |req| match req.uri().path() {
        "/metrics" => response(StatusCode::OK, METRICS_CONTENT_TYPE, metrics.render(), &[]),
        _ => not_found(),
    }
}

struct HcServer {
    task: JoinHandle<()>,
    local: Arc<AtomicUsize>,
    service: (String, String),
}

/// The `healthCheckNodePort` servers, kept in line with the plan.
pub struct HealthCheckServers {
    bind_ip: std::net::IpAddr,
    health: Arc<ProxyHealth>,
    servers: BTreeMap<u16, HcServer>,
}

impl HealthCheckServers {
    /// Servers bound on `bind_ip` (0.0.0.0 serves every node address).
    pub fn new(bind_ip: std::net::IpAddr, health: Arc<ProxyHealth>) -> Self {
        Self {
            bind_ip,
            health,
            servers: BTreeMap::new(),
        }
    }

    /// Ports currently served.
    pub fn ports(&self) -> Vec<u16> {
        self.servers.keys().copied().collect()
    }

    /// Starts, updates and stops servers to match `desired`. A port that
    /// cannot be bound is reported and retried on the next sync.
    pub async fn sync(&mut self, desired: &BTreeMap<u16, HealthCheck>) -> Vec<SyncError> {
        let mut problems = Vec::new();
        self.servers.retain(|port, s| {
            let keep = desired
                .get(port)
                .is_some_and(|hc| (hc.namespace.clone(), hc.name.clone()) == s.service);
            if !keep {
                s.task.abort();
            }
            keep
        });
        for (port, hc) in desired {
            if let Some(s) = self.servers.get(port) {
                s.local.store(hc.local_endpoints, Ordering::Relaxed);
                continue;
            }
            let listener = match TcpListener::bind(SocketAddr::new(self.bind_ip, *port)).await {
                Ok(l) => l,
                Err(source) => {
                    problems.push(SyncError::HealthCheck {
                        port: *port,
                        namespace: hc.namespace.clone(),
                        name: hc.name.clone(),
                        source,
                    });
                    continue;
                }
            };
            let local = Arc::new(AtomicUsize::new(hc.local_endpoints));
            let (ns, name) = (hc.namespace.clone(), hc.name.clone());
            let (counter, health) = (local.clone(), self.health.clone());
            let task = tokio::spawn(serve(listener, move |_req| {
                let n = counter.load(Ordering::Relaxed);
                let healthy = health.healthy();
                let body = format!(
                    r#"{{"service":{{"namespace":"{}","name":"{}"}},"localEndpoints":{n},"serviceProxyHealthy":{healthy}}}"#,
                    json_escape(&ns),
                    json_escape(&name)
                );
                let status = if n > 0 && healthy {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                response(
                    status,
                    "application/json",
                    body,
                    &[("X-Load-Balancing-Endpoint-Weight", n.to_string())],
                )
            }));
            self.servers.insert(
                *port,
                HcServer {
                    task,
                    local,
                    service: (hc.namespace.clone(), hc.name.clone()),
                },
            );
        }
        problems
    }
}

/// Namespaces and names are DNS labels, but escape anyway: nothing from an
/// object goes into text unescaped.
fn json_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            c if c.is_control() => format!("\\u{:04x}", c as u32).chars().collect(),
            c => vec![c],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(port: u16, path: &str) -> (u16, String, String) {
        let out = sluice_tests::fixtures::http_get_async(("127.0.0.1", port), path)
            .await
            .unwrap();
        let status: u16 = out[9..12].parse().unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        (status, head.to_owned(), body.to_owned())
    }

    #[tokio::test]
    async fn healthz_and_livez_follow_pending_updates() {
        let health = Arc::new(ProxyHealth::new(Duration::from_millis(300)));
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let task = tokio::spawn(serve(
            l,
            health_handler(health.clone(), Some(Arc::new(Metrics::new()))),
        ));
        health.updated();
        let (status, head, body) = get(port, "/healthz").await;
        assert_eq!(status, 200);
        assert!(head.contains("application/json"), "{head}");
        assert!(
            body.contains("\"nodeEligible\": true") && body.contains("lastUpdated"),
            "{body}"
        );
        health.queued();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(get(port, "/healthz").await.0, 503, "stale pending update");
        assert_eq!(get(port, "/livez").await.0, 503);
        health.updated();
        health.set_node_eligible(false);
        assert_eq!(get(port, "/healthz").await.0, 503, "node being deleted");
        assert_eq!(get(port, "/livez").await.0, 200, "livez ignores the node");
        assert!(
            get(port, "/metrics")
                .await
                .2
                .contains("kubeproxy_sync_proxy_rules_duration_seconds")
        );
        assert_eq!(get(port, "/nope").await.0, 404);
        task.abort();
    }

    /// A sync step that fails is counted by step in
    /// `kubeproxy_sluice_sync_failures_total`, read back from `/metrics`:
    /// here a healthCheckNodePort that another socket already holds.
    #[tokio::test]
    async fn failed_sync_steps_are_counted_by_step() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let health = Arc::new(ProxyHealth::new(Duration::from_secs(60)));
        let mut hcs = HealthCheckServers::new("127.0.0.1".parse().unwrap(), health.clone());
        let desired = BTreeMap::from([(
            port,
            HealthCheck {
                namespace: "shop".into(),
                name: "web".into(),
                local_endpoints: 1,
            },
        )]);
        let metrics = Arc::new(Metrics::new());
        for _ in 0..2 {
            let errors = hcs.sync(&desired).await;
            assert_eq!(errors.len(), 1);
            assert!(
                errors[0]
                    .to_string()
                    .starts_with(&format!("health check port {port} for shop/web: ")),
                "{}",
                errors[0]
            );
            metrics.sync_failed(&errors);
        }
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics_port = l.local_addr().unwrap().port();
        let task = tokio::spawn(serve(l, metrics_handler(metrics)));
        let (status, _, body) = get(metrics_port, "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            body.contains("kubeproxy_sluice_sync_failures_total{step=\"health_check\"} 2"),
            "{body}"
        );
        task.abort();
    }

    #[tokio::test]
    async fn health_check_node_ports_answer_like_kube_proxy() {
        let health = Arc::new(ProxyHealth::new(Duration::from_secs(60)));
        let mut hcs = HealthCheckServers::new("127.0.0.1".parse().unwrap(), health.clone());
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut desired = BTreeMap::new();
        desired.insert(
            port,
            HealthCheck {
                namespace: "shop".into(),
                name: "web".into(),
                local_endpoints: 2,
            },
        );
        assert!(hcs.sync(&desired).await.is_empty());
        let (status, head, body) = get(port, "/").await;
        assert_eq!(status, 200);
        assert!(
            head.contains("X-Load-Balancing-Endpoint-Weight: 2"),
            "{head}"
        );
        assert_eq!(
            body,
            r#"{"service":{"namespace":"shop","name":"web"},"localEndpoints":2,"serviceProxyHealthy":true}"#
        );
        desired.get_mut(&port).unwrap().local_endpoints = 0;
        hcs.sync(&desired).await;
        let (status, head, _) = get(port, "/").await;
        assert_eq!(status, 503);
        assert!(head.contains("X-Load-Balancing-Endpoint-Weight: 0"));
        hcs.sync(&BTreeMap::new()).await;
        assert!(hcs.ports().is_empty());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err(),
            "server stopped"
        );
    }
}
