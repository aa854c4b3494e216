//! The running proxy: sources → snapshot → incremental planning → kernel,
//! rate-limited by `minSyncPeriod`, with a full resync (drift repair) every
//! `syncPeriod`, health and metrics servers, and problem reporting.

mod engine;
mod errors;
pub mod events;
mod planning;
pub mod schedule;
mod worker;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ipvs_sys::AddressFamily;
use sluice_kube::events::EventPublisher;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub use engine::{Engine, KernelSync, Repairs};
pub use errors::{CleanupError, OpenError, PrepareProblem, RunError, SyncError, SyncStep};
pub use planning::{Planning, Replanned};
pub use schedule::{Decision, Inputs, Schedule};
pub use worker::EngineWorker;

use crate::config::{DetectLocal, ProxyConfig};
use crate::health::{HealthCheckServers, ProxyHealth, health_handler, metrics_handler, serve};
use crate::metrics::{DriftParts, Metrics};
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
        node_port_addresses: cfg.node_port_addresses.clone(),
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

/// `--cleanup`: removes everything Sluice created and returns.
pub async fn cleanup(cfg: &ProxyConfig) -> Result<(), RunError> {
    let cfg = cfg.clone();
    let errors = tokio::task::spawn_blocking(move || {
        let mut errors: Vec<CleanupError> = match &cfg.overlay {
            Some(ov) => crate::overlay::dataplane::cleanup(&ov.conf)
                .into_iter()
                .map(CleanupError::Overlay)
                .collect(),
            None => Vec::new(),
        };
        match Engine::open(&cfg, &[AddressFamily::Ipv4, AddressFamily::Ipv6]) {
            Ok(mut engine) => errors.extend(engine.cleanup()),
            Err(e) => errors.push(e.into()),
        }
        errors
    })
    .await
    .map_err(|_| RunError::WorkerGone)?;
    if errors.is_empty() {
        Ok(())
    } else {
        Err(RunError::Cleanup(errors))
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Listen { what, addr, source })
}

/// `/healthz` (and `/livez`) and `/metrics`, on one server when they share
/// an address.
async fn start_servers(
    cfg: &ProxyConfig,
    health: Arc<ProxyHealth>,
    metrics: Arc<Metrics>,
) -> Result<(), RunError> {
    let same =
        cfg.healthz_bind_address.is_some() && cfg.healthz_bind_address == cfg.metrics_bind_address;
    if let Some(addr) = cfg.healthz_bind_address {
        let l = bind("healthz", addr).await?;
        let m = same.then(|| metrics.clone());
        tokio::spawn(serve(l, health_handler(health, m)));
    }
    if let Some(addr) = cfg.metrics_bind_address.filter(|_| !same) {
        let l = bind("metrics", addr).await?;
        tokio::spawn(serve(l, metrics_handler(metrics)));
    }
    Ok(())
}

/// Starts the sources (the manifest directory, or watchers and an Event
/// publisher on the API server) feeding `tx`. Returns the API client, if
/// any.
async fn start_sources(
    cfg: &ProxyConfig,
    node: &str,
    tx: mpsc::Sender<SourceEvent>,
) -> Result<Option<kube::Client>, RunError> {
    if let Some(dir) = &cfg.manifests {
        tokio::spawn(crate::source::manifests::watch(
            dir.clone(),
            cfg.service_proxy_name.clone(),
            tx,
            Duration::from_secs(1),
        ));
        return Ok(None);
    }
    let client = sluice_kube::client::client(&cfg.api).await?;
    tokio::spawn(crate::source::kube::run(
        client.clone(),
        node.to_owned(),
        cfg.service_proxy_name.clone(),
        tx,
    ));
    Ok(Some(client))
}

/// Opens the kernel on its worker thread and prepares it (sysctls, IPVS
/// timeouts; problems are logged, not fatal).
async fn open_kernel(cfg: &ProxyConfig) -> Result<EngineWorker, RunError> {
    let open_cfg = cfg.clone();
    let worker = EngineWorker::start(move || {
        Engine::open(&open_cfg, &[AddressFamily::Ipv4, AddressFamily::Ipv6]).map_err(RunError::from)
    })
    .await?;
    let prep_cfg = cfg.clone();
    for p in worker.call(move |e| e.prepare_kernel(&prep_cfg)).await? {
        tracing::warn!(problem = %p, "kernel preparation");
    }
    Ok(worker)
}

/// Runs the proxy until the sources end (or forever).
pub async fn run(cfg: ProxyConfig) -> Result<(), RunError> {
    let node = node_name(&cfg);
    let (tx, mut rx) = mpsc::channel::<SourceEvent>(4096);
    let api_client = start_sources(&cfg, &node, tx).await?;
    // The overlay is additive: its own task beside the proxy loop.
    if let Some(ov) = &cfg.overlay {
        let opts = overlay_options(&cfg, ov, &node);
        crate::overlay::dataplane::spawn_system(opts, api_client.clone(), cfg.manifests.clone())
            .await
            .map_err(RunError::Overlay)?;
    }
    let health = Arc::new(ProxyHealth::new(cfg.sync_period * 2));
    let metrics = Arc::new(Metrics::new());
    start_servers(&cfg, health.clone(), metrics.clone()).await?;
    let hc_bind = if cfg.healthz_bind_address.is_some_and(|a| a.is_ipv6()) {
        IpAddr::from([0u16; 8])
    } else {
        IpAddr::from([0u8; 4])
    };
    let worker = open_kernel(&cfg).await?;
    tracing::info!(node = %node, "sluice-proxy started (ipvs mode)");
    let mut proxy = SyncLoop {
        schedule: Schedule::new(cfg.sync_period, cfg.min_sync_period),
        planner_cfg: planner_config(&cfg),
        hc_servers: HealthCheckServers::new(hc_bind, health.clone()),
        publisher: api_client.map(|c| events::publisher(c, &node)),
        node,
        cfg,
        health,
        metrics,
        worker,
        snap: Snapshot::default(),
        planning: Planning::default(),
        pending: Dirty::default(),
        first_pending: None,
        node_addrs: None,
        problem_log: events::ProblemLog::default(),
        orphans: events::OrphanSlices::default(),
        pod_cidrs: None,
        detector_changed: false,
        draining: false,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                proxy.absorb(ev, &mut rx);
            }
            _ = tick.tick() => {}
        }
        proxy.step().await?;
    }
    Ok(())
}

/// The loop's state: the snapshot and what changed since the last sync,
/// incremental planning, the schedule, and the kernel worker.
struct SyncLoop {
    cfg: ProxyConfig,
    node: String,
    schedule: Schedule,
    planner_cfg: PlannerConfig,
    health: Arc<ProxyHealth>,
    metrics: Arc<Metrics>,
    hc_servers: HealthCheckServers,
    publisher: Option<EventPublisher>,
    worker: EngineWorker,
    snap: Snapshot,
    planning: Planning,
    pending: Dirty,
    /// When the oldest change not yet synced arrived: the start of the
    /// latency a change sees inside the proxy.
    first_pending: Option<Instant>,
    /// Local addresses, re-read on full syncs (a dump per incremental sync
    /// would cost more than the sync).
    node_addrs: Option<BTreeSet<IpAddr>>,
    problem_log: events::ProblemLog,
    orphans: events::OrphanSlices,
    /// NodeCIDR detection: the pod CIDRs the rules were last rendered with.
    pod_cidrs: Option<Vec<ipnet::IpNet>>,
    detector_changed: bool,
    /// Whether real servers were draining after the last kernel step.
    draining: bool,
}

impl SyncLoop {
    /// Applies `ev` and everything already queued behind it, so one sync
    /// (within minSyncPeriod) takes them all, rather than the next tick.
    fn absorb(&mut self, ev: SourceEvent, rx: &mut mpsc::Receiver<SourceEvent>) {
        let mut next = Some(ev);
        while let Some(ev) = next {
            let node_replace = matches!(ev, SourceEvent::Replace(Kind::Node, _));
            let d = self.snap.apply(ev);
            if !d.is_empty() || node_replace {
                self.metrics.service_changes.inc_by(d.service_changes);
                self.metrics.endpoint_changes.inc_by(d.endpoint_changes);
                self.metrics.last_queued.set(unix_now());
                self.health.queued();
            }
            self.pending.absorb(d);
            if !self.pending.is_empty() {
                self.first_pending.get_or_insert_with(Instant::now);
            }
            next = rx.try_recv().ok();
        }
        self.metrics
            .service_changes_pending
            .set(self.pending.services.len() as i64);
    }

    /// Decides, and does what the schedule says.
    async fn step(&mut self) -> Result<(), RunError> {
        let ready = self.snap.synced() && self.local_detection_ready().await?;
        let decision = self.schedule.decide(Inputs {
            now: Instant::now(),
            ready,
            pending: !self.pending.is_empty() || self.detector_changed,
            draining: self.draining,
        });
        match decision {
            Decision::Wait => Ok(()),
            Decision::Drain => self.drain().await,
            Decision::Full => self.sync(true).await,
            Decision::Incremental => self.sync(false).await,
        }
    }

    /// NodeCIDR: like kube-proxy, program nothing until the Node has a pod
    /// CIDR (what exists stays untouched); a later change re-renders the
    /// rules (kube-proxy restarts for it). Other modes are always ready.
    async fn local_detection_ready(&mut self) -> Result<bool, RunError> {
        if self.cfg.detect_local != DetectLocal::NodeCidr {
            return Ok(true);
        }
        let cidrs = self
            .snap
            .nodes
            .get(&self.node)
            .map(|n| plan::node_pod_cidrs(n))
            .unwrap_or_default();
        let known = self.pod_cidrs.as_ref().is_some_and(|c| !c.is_empty());
        if cidrs.is_empty() && !known {
            if self.pod_cidrs.is_none() {
                tracing::warn!(node = %self.node, "detect-local-mode NodeCIDR: waiting for the Node's podCIDRs before programming anything");
                self.pod_cidrs = Some(Vec::new());
            }
            return Ok(false);
        }
        // A Node that loses its pod CIDRs (or goes away) keeps the last
        // ones: dropping detection would masquerade pod traffic.
        if !cidrs.is_empty() && self.pod_cidrs.as_ref() != Some(&cidrs) {
            let d = LocalDetector::NodeCidrs(cidrs.clone());
            match self.worker.call(move |e| e.set_local_detector(d)).await? {
                Ok(changed) => self.detector_changed |= changed,
                Err(e) => self.metrics.sync_failed(&[e]),
            }
            tracing::info!(pod_cidrs = ?cidrs, "detect-local-mode NodeCIDR");
            self.pod_cidrs = Some(cidrs);
        }
        Ok(true)
    }

    /// Removes drained real servers that are done.
    async fn drain(&mut self) -> Result<(), RunError> {
        let desired = self.planning.desired();
        let node = self.node_addrs.clone().unwrap_or_default();
        let r = self
            .worker
            .call(move |e| e.drain_tick(&desired, &node))
            .await?;
        self.schedule.drained(Instant::now());
        self.draining = r.draining > 0;
        self.metrics.sync_failed(&r.errors);
        Ok(())
    }

    /// Node facts: the Node object (if any) plus the local addresses,
    /// re-read on full syncs (startup and every syncPeriod).
    async fn node_facts(&mut self, full: bool) -> Result<NodeFacts, RunError> {
        if full || self.node_addrs.is_none() {
            let addrs = match self.worker.call(|e| e.node_addresses()).await? {
                Ok(a) => a,
                Err(e) => {
                    self.metrics.sync_failed(&[e]);
                    BTreeSet::new()
                }
            };
            self.node_addrs = Some(addrs);
        }
        let addrs = self.node_addrs.clone().unwrap_or_default();
        Ok(match self.snap.nodes.get(&self.node) {
            Some(n) => {
                self.health.set_node_eligible(node_eligible(n));
                NodeFacts::from_node(n, addrs)
            }
            None => NodeFacts {
                name: self.node.clone(),
                addresses: addrs,
                ..NodeFacts::default()
            },
        })
    }

    /// Plans what changed (everything on a full sync, or when the node's
    /// facts changed) and brings the kernel to it.
    async fn sync(&mut self, full_due: bool) -> Result<(), RunError> {
        let started = Instant::now();
        let facts = self.node_facts(full_due).await?;
        let dirty = std::mem::take(&mut self.pending);
        let queued = self.first_pending.take().map(|t| started.duration_since(t));
        self.orphans.update(&self.snap, &dirty.services, started);
        let changed = self
            .planning
            .update(&self.snap, &dirty, facts, &self.planner_cfg);
        let planned = started.elapsed();
        let desired = self.planning.desired();
        let full = full_due || changed.everything;
        let keys = changed.virtual_servers.clone();
        let netfilter = full || changed.netfilter || std::mem::take(&mut self.detector_changed);
        let addresses = full || changed.addresses;
        let hc = desired.health_checks.clone();
        let node = self.node_addrs.clone().unwrap_or_default();
        let r = self
            .worker
            .call(move |e| {
                let scope = if full {
                    Scope::Full
                } else {
                    Scope::Keys(&keys)
                };
                e.sync(&desired, scope, netfilter, addresses, &node)
            })
            .await?;
        self.draining = r.draining > 0;
        let hc_errors = self.hc_servers.sync(&hc).await;
        self.metrics.sync_failed(&hc_errors);
        self.metrics.sync_failed(&r.errors);
        if full_due && !changed.everything {
            let parts = DriftParts {
                ipvs: changed.virtual_servers.is_empty(),
                addresses: !changed.addresses,
                netfilter: !changed.netfilter && !self.detector_changed,
            };
            self.metrics.drift_repaired(&r.repairs, parts);
        }
        self.record_sync(&r, started);
        // Periods count from the end of a sync.
        self.schedule.synced(full, Instant::now());
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
        self.report_problems().await;
        Ok(())
    }

    fn record_sync(&self, r: &KernelSync, started: Instant) {
        let m = &self.metrics;
        m.netlink_operations
            .inc_by((r.ipvs_ops + r.address_changes) as u64);
        m.iptables_restore_failures
            .inc_by(r.iptables_restore_failures);
        m.sync_duration.observe(started.elapsed().as_secs_f64());
        m.last_sync.set(unix_now());
        m.service_changes_pending.set(0);
        self.health.updated();
    }

    /// Problems are reported once each, as a log line and an Event.
    async fn report_problems(&mut self) {
        let mut problems = self.planning.problems();
        problems.extend(
            self.orphans
                .problems(Instant::now(), events::ORPHAN_GRACE)
                .cloned(),
        );
        self.problem_log
            .publish(problems, self.publisher.as_ref())
            .await;
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
