//! The running proxy: sources → snapshot → incremental planning → kernel,
//! rate-limited by `minSyncPeriod`, with a full resync (drift repair) every
//! `syncPeriod`, health and metrics servers, and problem reporting.

mod engine;
pub mod events;
mod planning;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ipvs_sys::AddressFamily;
use tokio::sync::mpsc;

pub use engine::{Engine, KernelSync};
pub use planning::{Planning, Replanned};

use crate::config::{DetectLocal, NodePortAddresses, ProxyConfig};
use crate::health::{HealthCheckServers, ProxyHealth, health_handler, metrics_handler, serve};
use crate::metrics::Metrics;
use crate::netfilter::LocalDetector;
use crate::plan::{self, NodeFacts, PlannerConfig};
use crate::reconcile::ipvs::Scope;
use crate::source::{Dirty, Kind, Snapshot, SourceEvent};

/// This node's name: `--hostname-override`, else the kernel's hostname.
pub fn node_name(cfg: &ProxyConfig) -> String {
    sluice_kube::client::node_name(cfg.hostname_override.as_deref())
}

fn planner_config(cfg: &ProxyConfig) -> PlannerConfig {
    PlannerConfig {
        scheduler: cfg.scheduler.clone(),
        masquerade_all: cfg.masquerade_all,
        cluster_cidrs: cfg.cluster_cidrs.clone(),
        node_port_addresses: match &cfg.node_port_addresses {
            NodePortAddresses::All => plan::NodePortAddresses::All,
            NodePortAddresses::Primary => plan::NodePortAddresses::Primary,
            NodePortAddresses::Cidrs(c) => plan::NodePortAddresses::Cidrs(c.clone()),
        },
        service_proxy_name: cfg.service_proxy_name.clone(),
        ..PlannerConfig::default()
    }
}

fn overlay_options(
    cfg: &ProxyConfig,
    ov: &crate::config::OverlayConfig,
    node: &str,
) -> crate::overlay::run::OverlayOptions {
    crate::overlay::run::OverlayOptions {
        conf: ov.conf.clone(),
        node_name: node.to_owned(),
        iface: ov.iface.clone(),
        public_ip: ov.public_ip,
        subnet_file: ov.subnet_file.clone(),
        cni_conflist: ov.cni_conflist.clone(),
        ip_masq: ov.ip_masq,
        masquerade_mark: 1u32 << (cfg.masquerade_bit & 31),
        resync_period: cfg.sync_period,
    }
}

/// Runs `f` on a blocking thread with the engine, and gives it back.
async fn blocking<T: Send + 'static>(
    engine: Engine,
    f: impl FnOnce(&mut Engine) -> T + Send + 'static,
) -> Result<(Engine, T), String> {
    tokio::task::spawn_blocking(move || {
        let mut engine = engine;
        let out = f(&mut engine);
        (engine, out)
    })
    .await
    .map_err(|e| format!("kernel task failed: {e}"))
}

/// `--cleanup`: removes everything Sluice created and returns.
pub async fn cleanup(cfg: &ProxyConfig) -> Result<(), String> {
    let cfg = cfg.clone();
    let errors = tokio::task::spawn_blocking(move || {
        let mut errors = match &cfg.overlay {
            Some(ov) => crate::overlay::dataplane::cleanup(&ov.conf),
            None => Vec::new(),
        };
        let mut engine = Engine::open(&cfg, &[AddressFamily::Ipv4, AddressFamily::Ipv6])?;
        errors.extend(engine.cleanup());
        Ok::<_, String>(errors)
    })
    .await
    .map_err(|e| e.to_string())??;
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

async fn start_servers(
    cfg: &ProxyConfig,
    health: Arc<ProxyHealth>,
    metrics: Arc<Metrics>,
) -> Result<(), String> {
    let same =
        cfg.healthz_bind_address.is_some() && cfg.healthz_bind_address == cfg.metrics_bind_address;
    if let Some(addr) = cfg.healthz_bind_address {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("healthz {addr}: {e}"))?;
        let m = same.then(|| metrics.clone());
        tokio::spawn(serve(l, health_handler(health, m)));
    }
    if let Some(addr) = cfg.metrics_bind_address.filter(|_| !same) {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("metrics {addr}: {e}"))?;
        tokio::spawn(serve(l, metrics_handler(metrics)));
    }
    Ok(())
}

/// Runs the proxy until the sources end (or forever).
pub async fn run(cfg: ProxyConfig) -> Result<(), String> {
    let node = node_name(&cfg);
    let (tx, mut rx) = mpsc::channel::<SourceEvent>(4096);
    let mut api_client = None;
    let reporter = match &cfg.manifests {
        Some(dir) => {
            tokio::spawn(crate::source::manifests::watch(
                dir.clone(),
                cfg.service_proxy_name.clone(),
                tx,
                Duration::from_secs(1),
            ));
            None
        }
        None => {
            let client = sluice_kube::client::client(&cfg.api)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(crate::source::kube::run(
                client.clone(),
                node.clone(),
                cfg.service_proxy_name.clone(),
                tx,
            ));
            api_client = Some(client.clone());
            Some(events::publisher(client, &node))
        }
    };
    // The overlay is additive: its own task beside the proxy loop.
    if let Some(ov) = &cfg.overlay {
        let opts = overlay_options(&cfg, ov, &node);
        crate::overlay::dataplane::spawn_system(opts, api_client, cfg.manifests.clone()).await?;
    }
    let health = Arc::new(ProxyHealth::new(cfg.sync_period * 2));
    let metrics = Arc::new(Metrics::new());
    start_servers(&cfg, health.clone(), metrics.clone()).await?;
    let hc_bind = if cfg.healthz_bind_address.is_some_and(|a| a.is_ipv6()) {
        std::net::IpAddr::from([0u16; 8])
    } else {
        std::net::IpAddr::from([0u8; 4])
    };
    let mut hc_servers = HealthCheckServers::new(hc_bind, health.clone());

    let families = vec![AddressFamily::Ipv4, AddressFamily::Ipv6];
    let open_cfg = cfg.clone();
    let (mut engine, problems) = tokio::task::spawn_blocking(move || {
        let mut e = Engine::open(&open_cfg, &families)?;
        let p = e.prepare_kernel(&open_cfg);
        Ok::<_, String>((e, p))
    })
    .await
    .map_err(|e| e.to_string())??;
    for p in problems {
        tracing::warn!(problem = %p, "kernel preparation");
    }

    let planner_cfg = planner_config(&cfg);
    let mut snap = Snapshot::default();
    let mut planning = Planning::default();
    let mut pending = Dirty::default();
    let mut last_sync: Option<Instant> = None;
    let mut last_full: Option<Instant> = None;
    let mut last_drain = Instant::now();
    // When the oldest change not yet synced arrived: the start of the
    // latency a change sees inside the proxy.
    let mut first_pending: Option<Instant> = None;
    let mut node_addrs: Option<BTreeSet<std::net::IpAddr>> = None;
    let mut problem_log = events::ProblemLog::default();
    let mut orphans = events::OrphanSlices::default();
    // NodeCIDR detection: the pod CIDRs the rules were last rendered with.
    let mut pod_cidrs: Option<Vec<ipnet::IpNet>> = None;
    let mut detector_changed = false;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(node = %node, "sluice-proxy started (ipvs mode)");

    loop {
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                // Take everything already queued, then sync at once (within
                // minSyncPeriod) rather than at the next tick.
                let mut next = Some(ev);
                while let Some(ev) = next {
                    let kind_replace = matches!(ev, SourceEvent::Replace(Kind::Node, _));
                    let d = snap.apply(ev);
                    if !d.is_empty() || kind_replace {
                        metrics.service_changes.inc_by(d.service_changes);
                        metrics.endpoint_changes.inc_by(d.endpoint_changes);
                        metrics.last_queued.set(unix_now());
                        health.queued();
                    }
                    pending.absorb(d);
                    if !pending.is_empty() {
                        first_pending.get_or_insert_with(Instant::now);
                    }
                    next = rx.try_recv().ok();
                }
                metrics.service_changes_pending.set(pending.services.len() as i64);
            }
            _ = tick.tick() => {}
        }
        if !snap.synced() {
            continue;
        }
        // NodeCIDR: like kube-proxy, program nothing until the Node has a pod
        // CIDR (what exists stays untouched); a later change re-renders the
        // rules (kube-proxy restarts for it).
        if cfg.detect_local == DetectLocal::NodeCidr {
            let cidrs = snap
                .nodes
                .get(&node)
                .map(|n| plan::node_pod_cidrs(n))
                .unwrap_or_default();
            let known = pod_cidrs.as_ref().is_some_and(|c| !c.is_empty());
            if cidrs.is_empty() && !known {
                if pod_cidrs.is_none() {
                    tracing::warn!(node = %node, "detect-local-mode NodeCIDR: waiting for the Node's podCIDRs before programming anything");
                    pod_cidrs = Some(Vec::new());
                }
                continue;
            }
            // A Node that loses its pod CIDRs (or goes away) keeps the last
            // ones: dropping detection would masquerade pod traffic.
            if !cidrs.is_empty() && pod_cidrs.as_ref() != Some(&cidrs) {
                let d = LocalDetector::NodeCidrs(cidrs.clone());
                match engine.set_local_detector(d) {
                    Ok(changed) => detector_changed |= changed,
                    Err(e) => tracing::error!(error = %e, "NodeCIDR local detection"),
                }
                tracing::info!(pod_cidrs = ?cidrs, "detect-local-mode NodeCIDR");
                pod_cidrs = Some(cidrs);
            }
        }
        let now = Instant::now();
        let full_due = last_full.is_none_or(|t| now.duration_since(t) >= cfg.sync_period);
        let inc_due = (!pending.is_empty() || detector_changed)
            && last_sync.is_none_or(|t| now.duration_since(t) >= cfg.min_sync_period);
        if !full_due && !inc_due {
            if engine.draining() > 0 && now.duration_since(last_drain) >= Duration::from_secs(1) {
                last_drain = now;
                let desired = planning.desired();
                let node = node_addrs.clone().unwrap_or_default();
                let (e, r) = blocking(engine, move |e| e.drain_tick(&desired, &node)).await?;
                engine = e;
                log_errors(&r.errors);
            }
            continue;
        }
        let started = Instant::now();
        // Node facts: the Node object (if any) plus the local addresses,
        // re-read on full syncs (startup and every syncPeriod); a dump of
        // every address per incremental sync would cost more than the sync.
        if full_due || node_addrs.is_none() {
            let (e, addrs) = blocking(engine, |e| e.node_addresses()).await?;
            engine = e;
            node_addrs = Some(addrs.unwrap_or_default());
        }
        let addrs = node_addrs.clone().unwrap_or_default();
        let facts = match snap.nodes.get(&node) {
            Some(n) => NodeFacts::from_node(n, addrs),
            None => NodeFacts {
                name: node.clone(),
                addresses: addrs,
                ..NodeFacts::default()
            },
        };
        if let Some(n) = snap.nodes.get(&node) {
            health.set_node_eligible(node_eligible(n));
        }
        let dirty = std::mem::take(&mut pending);
        let queued = first_pending.take().map(|t| started.duration_since(t));
        orphans.update(&snap, &dirty.services, started);
        let changed = planning.update(&snap, &dirty, facts, &planner_cfg);
        let planned = started.elapsed();
        let desired = planning.desired();
        let full = full_due || changed.everything;
        let keys = changed.virtual_servers.clone();
        let (netfilter, addresses) = (
            full || changed.netfilter || std::mem::take(&mut detector_changed),
            full || changed.addresses,
        );
        let hc = desired.health_checks.clone();
        let node = node_addrs.clone().unwrap_or_default();
        let (e, r) = blocking(engine, move |e| {
            let scope = if full {
                Scope::Full
            } else {
                Scope::Keys(&keys)
            };
            e.sync(&desired, scope, netfilter, addresses, &node)
        })
        .await?;
        engine = e;
        for p in hc_servers.sync(&hc).await {
            tracing::warn!(problem = %p, "health check server");
        }
        log_errors(&r.errors);
        metrics
            .netlink_operations
            .inc_by((r.ipvs_ops + r.address_changes) as u64);
        metrics
            .iptables_restore_failures
            .inc_by(r.iptables_restore_failures);
        metrics
            .sync_duration
            .observe(started.elapsed().as_secs_f64());
        metrics.last_sync.set(unix_now());
        metrics.service_changes_pending.set(0);
        health.updated();
        // Periods count from the end of a sync: a full sync longer than
        // syncPeriod must not make every following change a full sync.
        let done = Instant::now();
        last_sync = Some(done);
        if full {
            last_full = Some(done);
        }
        tracing::debug!(
            full,
            virtual_servers = changed.virtual_servers.len(),
            ipvs_ops = r.ipvs_ops,
            address_changes = r.address_changes,
            took_ms = started.elapsed().as_millis() as u64,
            queued_ms = queued.map(|d| d.as_secs_f64() * 1e3),
            plan_ms = planned.as_secs_f64() * 1e3,
            ipvs_ms = r.ipvs_time.as_secs_f64() * 1e3,
            netfilter_ms = r.netfilter_time.as_secs_f64() * 1e3,
            "synced"
        );
        // Problems are reported once each, as a log line and an Event.
        let mut problems = planning.problems();
        problems.extend(
            orphans
                .problems(Instant::now(), events::ORPHAN_GRACE)
                .cloned(),
        );
        problem_log.publish(problems, reporter.as_ref()).await;
    }
    Ok(())
}

fn log_errors(errors: &[String]) {
    for e in errors {
        tracing::warn!(error = %e, "sync step failed; will retry");
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// Whether load balancers should send traffic here: not while the Node is
/// being deleted or tainted for deletion by the cluster autoscaler.
fn node_eligible(node: &k8s_openapi::api::core::v1::Node) -> bool {
    if node.metadata.deletion_timestamp.is_some() {
        return false;
    }
    !node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| t.iter().any(|t| t.key == "ToBeDeletedByClusterAutoscaler"))
}
