//! Readiness probes as the kubelet runs them: httpGet (any status from 200
//! to 399 passes) and tcpSocket (a connection passes), from the agent's
//! namespace to the pod's address, with the probe's period, timeout and
//! thresholds. Exec probes are treated as passing (there is no container to
//! exec in); a named port is looked up among the container's ports.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How to check a container, and how often.
#[derive(Debug, Clone)]
pub struct Readiness {
    check: Check,
    period: Duration,
    timeout: Duration,
    initial_delay: Duration,
    success_threshold: u32,
    failure_threshold: u32,
    /// Consecutive results so far (positive: successes, negative: failures).
    streak: i64,
    next: Option<Instant>,
}

#[derive(Debug, Clone)]
enum Check {
    Http { port: u16, path: String },
    Tcp { port: u16 },
    Pass,
}

impl Readiness {
    /// The container's readiness probe, or `None` without one (ready once
    /// running, as the kubelet has it).
    pub fn of(c: &Container) -> Option<Readiness> {
        let p: &Probe = c.readiness_probe.as_ref()?;
        let port = |v: &IntOrString| -> u16 {
            match v {
                IntOrString::Int(i) => u16::try_from(*i).unwrap_or(0),
                IntOrString::String(name) => c
                    .ports
                    .iter()
                    .flatten()
                    .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                    .and_then(|cp| u16::try_from(cp.container_port).ok())
                    .unwrap_or(0),
            }
        };
        let check = if let Some(h) = &p.http_get {
            Check::Http {
                port: port(&h.port),
                path: h.path.clone().unwrap_or_else(|| "/".into()),
            }
        } else if let Some(t) = &p.tcp_socket {
            Check::Tcp {
                port: port(&t.port),
            }
        } else {
            Check::Pass
        };
        let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
        Some(Readiness {
            check,
            period: secs(p.period_seconds, 10).max(Duration::from_millis(100)),
            timeout: secs(p.timeout_seconds, 1).max(Duration::from_millis(100)),
            initial_delay: secs(p.initial_delay_seconds, 0),
            success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
            streak: 0,
            next: None,
        })
    }

    /// Restarts the probe's clock (the container was (re)started).
    pub fn reset(&mut self, now: Instant) {
        self.streak = 0;
        self.next = Some(now + self.initial_delay);
    }

    /// Probes if due; returns the new readiness (`None`: nothing changed
    /// yet, keep the old one).
    pub async fn tick(&mut self, ip: IpAddr, now: Instant, was_ready: bool) -> Option<bool> {
        let due = *self.next.get_or_insert(now + self.initial_delay);
        if now < due {
            return None;
        }
        self.next = Some(now + self.period);
        let ok = self.probe(ip).await;
        self.streak = match (ok, self.streak) {
            (true, s) if s > 0 => s + 1,
            (true, _) => 1,
            (false, s) if s < 0 => s - 1,
            (false, _) => -1,
        };
        if self.streak >= i64::from(self.success_threshold) {
            Some(true)
        } else if -self.streak >= i64::from(self.failure_threshold) {
            Some(false)
        } else {
            Some(was_ready)
        }
    }

    async fn probe(&self, ip: IpAddr) -> bool {
        let attempt = async {
            match &self.check {
                Check::Pass => true,
                Check::Tcp { port } => tokio::net::TcpStream::connect(SocketAddr::new(ip, *port))
                    .await
                    .is_ok(),
                Check::Http { port, path } => http_get(SocketAddr::new(ip, *port), path).await,
            }
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or(false)
    }
}

async fn http_get(addr: SocketAddr, path: &str) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.37\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    if s.read_exact(&mut head).await.is_err() {
        return false;
    }
    // "HTTP/1.1 200"
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|c| c.parse::<u16>().ok())
        .is_some_and(|c| (200..400).contains(&c))
}
