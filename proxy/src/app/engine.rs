//! The kernel side of a sync, run on a blocking thread: addresses, IPVS,
//! netfilter, conntrack, in the order that never leaves traffic stranded —
//! bind new addresses, reconcile IPVS (stale addresses still mark stale
//! services as ours), rules and sets, then unbind stale addresses.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use ipvs_sys::{AddressFamily, Protocol, ServiceKey, Timeouts};

use super::errors::{CleanupError, OpenError, PrepareProblem, SyncError};
use crate::config::{DetectLocal, ProxyConfig};
use crate::netfilter::conntrack::{UdpFlows, delete_udp_flows};
use crate::netfilter::iptables::InterfaceName;
use crate::netfilter::sysctl::{KernelVersion, SysctlWriter, ipvs_sysctls};
use crate::netfilter::{
    LocalDetector, Netfilter, NetfilterConfig, SystemRunner, probe_random_fully,
};
use crate::plan::DesiredState;
use crate::reconcile::addresses::AddressReconciler;
use crate::reconcile::ipvs::{IpvsReconciler, Scope};

/// What one kernel sync did.
#[derive(Debug, Default)]
pub struct KernelSync {
    /// IPVS changes sent.
    pub ipvs_ops: usize,
    /// Addresses bound or unbound.
    pub address_changes: usize,
    /// iptables-restore failures during this sync.
    pub iptables_restore_failures: u64,
    /// The steps that failed; the sync went on past each.
    pub errors: Vec<SyncError>,
    /// Time spent bringing IPVS (and the bound addresses) to the desired
    /// state: when it ends, a changed endpoint is in the kernel.
    pub ipvs_time: Duration,
    /// Time spent on ipset and iptables afterwards.
    pub netfilter_time: Duration,
    /// Real servers draining afterwards.
    pub draining: usize,
    /// What a full sync found differing from the plan and fixed, before
    /// telling drift from planned changes (the caller knows which parts
    /// the plan changed).
    pub repairs: Repairs,
}

/// Kernel objects a full sync added, changed or removed, by kind
/// (`kubeproxy_sluice_drift_repairs_total{object}` when the plan did not
/// change that part).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Repairs {
    /// IPVS virtual servers.
    pub virtual_servers: u64,
    /// IPVS real servers.
    pub real_servers: u64,
    /// Addresses on kube-ipvs0.
    pub addresses: u64,
    /// ipsets recreated.
    pub sets: u64,
    /// ipset members added or deleted.
    pub set_members: u64,
    /// iptables rules of our chains and jumps to them.
    pub rules: u64,
}

/// Owns every kernel handle of the proxy.
pub struct Engine {
    /// Addresses on kube-ipvs0 as last read: they mark stale virtual
    /// servers as ours without an address dump per incremental sync.
    dummy: Option<BTreeSet<IpAddr>>,
    ipvs: IpvsReconciler,
    addrs: AddressReconciler,
    netfilter: Netfilter,
    runner: SystemRunner,
}

fn detector(cfg: &ProxyConfig) -> Result<LocalDetector, OpenError> {
    Ok(match &cfg.detect_local {
        DetectLocal::None => LocalDetector::None,
        DetectLocal::ClusterCidr => LocalDetector::ClusterCidrs(cfg.cluster_cidrs.clone()),
        // The node's pod CIDRs come from the Node object: the loop sets
        // them (set_local_detector) before the first sync.
        DetectLocal::NodeCidr => LocalDetector::NodeCidrs(Vec::new()),
        DetectLocal::BridgeInterface(b) => {
            LocalDetector::BridgeInterface(InterfaceName::new(b).map_err(OpenError::Interface)?)
        }
        DetectLocal::InterfaceNamePrefix(p) => {
            LocalDetector::InterfaceNamePrefix(InterfaceName::new(p).map_err(OpenError::Interface)?)
        }
    })
}

impl Engine {
    /// Opens IPVS, rtnetlink and netfilter for `families`.
    pub fn open(cfg: &ProxyConfig, families: &[AddressFamily]) -> Result<Self, OpenError> {
        let runner = SystemRunner::new();
        let random_fully = families.iter().all(|f| probe_random_fully(&runner, *f));
        let nf_cfg = NetfilterConfig {
            families: families.to_vec(),
            masquerade_all: cfg.masquerade_all,
            masquerade_bit: cfg.masquerade_bit,
            local_detector: detector(cfg)?,
            random_fully,
        };
        Ok(Self {
            dummy: None,
            ipvs: IpvsReconciler::open(cfg.graceful_termination_period, cfg.exclude_cidrs.clone())
                .map_err(OpenError::Ipvs)?,
            addrs: AddressReconciler::open().map_err(OpenError::Rtnl)?,
            netfilter: Netfilter::new(runner.clone(), nf_cfg).map_err(OpenError::Netfilter)?,
            runner,
        })
    }

    /// Sets kube-proxy's sysctls and the IPVS timeouts; returns problems.
    pub fn prepare_kernel(&mut self, cfg: &ProxyConfig) -> Vec<PrepareProblem> {
        let mut problems = Vec::new();
        match KernelVersion::read(Path::new("/proc/sys")) {
            Ok(kernel) => {
                let plan = ipvs_sysctls(kernel, cfg.strict_arp);
                for (sysctl, r) in SysctlWriter::default().ensure_all(&plan.sysctls) {
                    if let Err(source) = r {
                        problems.push(PrepareProblem::Sysctl { sysctl, source });
                    }
                }
            }
            Err(e) => problems.push(PrepareProblem::KernelVersion(e)),
        }
        let t = Timeouts {
            tcp: cfg.timeouts.tcp.as_secs() as u32,
            tcp_fin: cfg.timeouts.tcp_fin.as_secs() as u32,
            udp: cfg.timeouts.udp.as_secs() as u32,
        };
        if t != Timeouts::default()
            && let Err(e) = self.ipvs.client().set_timeouts(&t)
        {
            problems.push(PrepareProblem::Timeouts(e));
        }
        problems
    }

    /// Replaces the local-traffic detector (NodeCIDR mode); returns whether
    /// it changed. The next sync with netfilter renders it.
    pub fn set_local_detector(&mut self, d: LocalDetector) -> Result<bool, SyncError> {
        self.netfilter
            .set_local_detector(d)
            .map_err(SyncError::LocalDetector)
    }

    /// Local addresses of the node, except kube-ipvs0's.
    pub fn node_addresses(&mut self) -> Result<BTreeSet<IpAddr>, SyncError> {
        self.addrs
            .node_addresses()
            .map_err(SyncError::NodeAddresses)
    }

    /// Real servers currently draining.
    pub fn draining(&self) -> usize {
        self.ipvs.draining().len()
    }

    /// Brings the kernel to `desired`. `scope` limits the IPVS diff;
    /// `netfilter` and `addresses` say whether those parts can have changed.
    pub fn sync(
        &mut self,
        desired: &DesiredState,
        scope: Scope<'_>,
        netfilter: bool,
        addresses: bool,
        node_addrs: &BTreeSet<IpAddr>,
    ) -> KernelSync {
        let mut out = KernelSync::default();
        let started = Instant::now();
        if addresses {
            match self.addrs.bind_missing(&desired.bound_addresses) {
                Ok(r) => {
                    out.address_changes += r.added;
                    out.repairs.addresses += r.added as u64;
                    out.errors
                        .extend(r.failed.into_iter().map(SyncError::BindAddresses));
                }
                Err(e) => out.errors.push(SyncError::BindAddresses(e)),
            }
        }
        if addresses || self.dummy.is_none() || matches!(scope, Scope::Full) {
            self.dummy = self.addrs.current().map(|(_, a)| a).ok();
        }
        // Borrowed, not cloned: 10,000 addresses per incremental sync add up.
        let empty = BTreeSet::new();
        let dummy = self.dummy.as_ref().unwrap_or(&empty);
        match self.ipvs.sync(
            &desired.virtual_servers,
            scope,
            dummy,
            node_addrs,
            Instant::now(),
        ) {
            Ok(r) => {
                out.ipvs_ops += r.ops;
                if matches!(scope, Scope::Full) {
                    out.repairs.virtual_servers = r.virtual_servers_changed as u64;
                    out.repairs.real_servers = r.real_servers_changed as u64;
                }
                out.errors.extend(r.failed.into_iter().map(SyncError::Ipvs));
                self.clear_udp(&r.removed_udp, desired, &mut out);
            }
            Err(e) => out.errors.push(SyncError::Ipvs(e)),
        }
        out.ipvs_time = started.elapsed();
        let netfilter_started = Instant::now();
        if netfilter {
            let before = self.netfilter.iptables_restore_failures();
            // Full syncs read the kernel and repair drift; incremental ones
            // only write what changed since the last sync.
            let result = match scope {
                Scope::Full => self.netfilter.sync(desired),
                Scope::Keys(_) => self.netfilter.sync_changes(desired),
            };
            match result {
                Ok(r) => {
                    if matches!(scope, Scope::Full) {
                        out.repairs.sets = r.sets_created as u64;
                        out.repairs.set_members = (r.entries_added + r.entries_deleted) as u64;
                        out.repairs.rules =
                            (r.jumps_inserted + r.jumps_deleted + r.rules_restored) as u64;
                    }
                    out.errors
                        .extend(r.rejected.into_iter().map(SyncError::IpsetEntry));
                }
                Err(e) => out.errors.push(SyncError::Netfilter(Box::new(e))),
            }
            out.iptables_restore_failures = self.netfilter.iptables_restore_failures() - before;
        }
        out.netfilter_time = netfilter_started.elapsed();
        if addresses {
            match self.addrs.unbind_stale(&desired.bound_addresses) {
                Ok(r) => {
                    // Re-read on the next sync if this one removed some; a
                    // dump of 10,000 addresses per sync is not free.
                    if r.removed > 0 || !r.failed.is_empty() {
                        self.dummy = None;
                    }
                    out.address_changes += r.removed;
                    out.repairs.addresses += r.removed as u64;
                    out.errors
                        .extend(r.failed.into_iter().map(SyncError::UnbindAddresses));
                }
                Err(e) => out.errors.push(SyncError::UnbindAddresses(e)),
            }
        }
        out.draining = self.draining();
        out
    }

    /// Deletes stale conntrack entries of removed UDP real servers.
    fn clear_udp(
        &self,
        removed: &[(ServiceKey, std::net::SocketAddr)],
        desired: &DesiredState,
        out: &mut KernelSync,
    ) {
        for (key, ep) in removed {
            let ServiceKey::Inet {
                protocol: Protocol::Udp,
                addr,
            } = key
            else {
                continue;
            };
            // A node address means a NodePort: clear flows to that port on
            // any node address.
            let flows = if desired.bound_addresses.contains(&addr.ip()) {
                UdpFlows::ToServiceIp {
                    vip: addr.ip(),
                    port: addr.port(),
                    endpoint: ep.ip(),
                }
            } else {
                UdpFlows::ToNodePort {
                    port: addr.port(),
                    endpoint: ep.ip(),
                }
            };
            if let Err(source) = delete_udp_flows(&self.runner, &flows) {
                out.errors.push(SyncError::Conntrack {
                    service: *key,
                    endpoint: *ep,
                    source: Box::new(source),
                });
            }
        }
    }

    /// Deletes drained real servers that are done or past their bound.
    /// Runs every second while anything drains, so it reuses the address
    /// sets the last sync read instead of dumping them again.
    pub fn drain_tick(
        &mut self,
        desired: &DesiredState,
        node_addrs: &BTreeSet<IpAddr>,
    ) -> KernelSync {
        let mut out = KernelSync::default();
        if self.dummy.is_none() {
            self.dummy = self.addrs.current().map(|(_, a)| a).ok();
        }
        let empty = BTreeSet::new();
        let dummy = self.dummy.as_ref().unwrap_or(&empty);
        match self
            .ipvs
            .process_drains(&desired.virtual_servers, dummy, node_addrs, Instant::now())
        {
            Ok(r) => {
                out.ipvs_ops = r.ops;
                out.errors
                    .extend(r.failed.into_iter().map(SyncError::Drain));
            }
            Err(e) => out.errors.push(SyncError::Drain(e)),
        }
        out.draining = self.draining();
        out
    }

    /// `--cleanup`: removes every virtual server of ours, our chains and
    /// sets, and kube-ipvs0. Returns what failed.
    pub fn cleanup(&mut self) -> Vec<CleanupError> {
        let mut errors = Vec::new();
        let dummy = self.addrs.current().map(|(_, a)| a).unwrap_or_default();
        let node = self.addrs.node_addresses().unwrap_or_default();
        if let Err(e) = self.ipvs.remove_all_ours(&dummy, &node) {
            errors.push(CleanupError::Ipvs(e));
        }
        for e in self.netfilter.cleanup().errors {
            errors.push(CleanupError::Netfilter(e));
        }
        if let Err(e) = self.addrs.remove_link() {
            errors.push(CleanupError::Link(e));
        }
        errors
    }
}
