//! IPVS virtual and real servers: a pure diff, and a reconciler that reads
//! the kernel (a full dump, or just the changed services), applies the diff
//! in one pipelined batch, and drains removed TCP real servers.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use ipvs_sys::{
    DestinationState, Error, ErrorKind, IpvsClient, Op, Protocol, ServiceKey, ServiceState,
};

use super::graceful::DrainQueue;
use crate::plan::VirtualServer;

/// A virtual server as the kernel holds it.
pub type Actual = BTreeMap<ServiceKey, (ServiceState, Vec<DestinationState>)>;

/// Which virtual servers a sync looks at.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// All of them (startup, periodic resync).
    Full,
    /// Only these (an incremental sync of the Services that changed).
    Keys(&'a BTreeSet<ServiceKey>),
}

impl Scope<'_> {
    fn includes(&self, key: &ServiceKey) -> bool {
        match self {
            Self::Full => true,
            Self::Keys(keys) => keys.contains(key),
        }
    }
}

/// Which kernel virtual servers are ours to delete when stale: those on an
/// address of kube-ipvs0 or of this node (NodePorts), outside excludeCIDRs.
/// Anything else (another tool's services, fwmark services) is left alone.
#[derive(Debug, Clone, Copy)]
pub struct Ownership<'a> {
    /// Addresses on kube-ipvs0.
    pub dummy_addrs: &'a BTreeSet<IpAddr>,
    /// Other local addresses of the node.
    pub node_addrs: &'a BTreeSet<IpAddr>,
    /// `ipvs.excludeCIDRs`.
    pub exclude: &'a [IpNet],
}

impl Ownership<'_> {
    /// Whether a kernel virtual server is ours.
    pub fn owns(&self, key: &ServiceKey) -> bool {
        let ServiceKey::Inet { addr, .. } = key else {
            return false;
        };
        let ip = addr.ip();
        !self.exclude.iter().any(|n| n.contains(&ip))
            && (self.dummy_addrs.contains(&ip) || self.node_addrs.contains(&ip))
    }
}

/// The operations a sync needs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diff {
    /// Changes to apply, in order.
    pub ops: Vec<Op>,
    /// Real servers to start draining (already set to weight 0 by `ops`).
    pub start_draining: Vec<(ServiceKey, SocketAddr)>,
    /// Real servers that stop draining (deleted, or desired again).
    pub stop_draining: Vec<(ServiceKey, SocketAddr)>,
    /// UDP real servers deleted (their conntrack entries are stale).
    pub removed_udp: Vec<(ServiceKey, SocketAddr)>,
    /// Virtual servers deleted.
    pub removed_services: Vec<ServiceKey>,
}

fn drains(key: &ServiceKey) -> bool {
    // UDP and SCTP real servers go at once (kube-proxy relies on
    // expire_nodest_conn for them); TCP ones drain.
    matches!(
        key,
        ServiceKey::Inet {
            protocol: Protocol::Tcp,
            ..
        }
    )
}

/// Computes the operations that take `actual` to `desired` within `scope`.
pub fn diff(
    desired: &BTreeMap<ServiceKey, VirtualServer>,
    actual: &Actual,
    scope: Scope<'_>,
    ownership: Ownership<'_>,
    drain: &DrainQueue,
    now: Instant,
    grace: Duration,
) -> Diff {
    let mut d = Diff::default();
    // An incremental sync looks up its few keys instead of walking the
    // whole desired table.
    let wanted: Box<dyn Iterator<Item = (&ServiceKey, &VirtualServer)>> = match scope {
        Scope::Full => Box::new(desired.iter()),
        Scope::Keys(keys) => Box::new(keys.iter().filter_map(|k| desired.get_key_value(k))),
    };
    for (key, want) in wanted {
        let Some((have, have_dests)) = actual.get(key) else {
            d.ops.push(Op::AddService(want.service.clone()));
            d.ops.extend(
                want.destinations
                    .values()
                    .map(|dest| Op::AddDestination(*key, *dest)),
            );
            continue;
        };
        if have.service != want.service {
            d.ops.push(Op::UpdateService(want.service.clone()));
        }
        let have_by_addr: BTreeMap<SocketAddr, &DestinationState> =
            have_dests.iter().map(|s| (s.destination.addr, s)).collect();
        for (addr, dest) in &want.destinations {
            match have_by_addr.get(addr) {
                None => d.ops.push(Op::AddDestination(*key, *dest)),
                Some(h) => {
                    if h.destination != *dest {
                        d.ops.push(Op::UpdateDestination(*key, *dest));
                    }
                    if drain.contains(key, addr) {
                        d.stop_draining.push((*key, *addr));
                    }
                }
            }
        }
        for (addr, h) in have_by_addr {
            if want.destinations.contains_key(&addr) {
                continue;
            }
            let conns = u64::from(h.active_conns) + u64::from(h.inactive_conns);
            let may_drain = drains(key) && !grace.is_zero();
            if drain.contains(key, &addr) {
                if conns == 0 || drain.expired(key, &addr, now) {
                    d.ops.push(Op::DeleteDestination(*key, addr));
                    d.stop_draining.push((*key, addr));
                }
            } else if may_drain && conns > 0 {
                if h.destination.weight != 0 {
                    d.ops
                        .push(Op::UpdateDestination(*key, h.destination.with_weight(0)));
                }
                d.start_draining.push((*key, addr));
            } else {
                d.ops.push(Op::DeleteDestination(*key, addr));
                if matches!(
                    key,
                    ServiceKey::Inet {
                        protocol: Protocol::Udp,
                        ..
                    }
                ) {
                    d.removed_udp.push((*key, addr));
                }
            }
        }
    }
    for key in actual.keys().filter(|k| scope.includes(k)) {
        if !desired.contains_key(key) && ownership.owns(key) {
            d.ops.push(Op::DeleteService(*key));
            d.removed_services.push(*key);
        }
    }
    d
}

/// What one IPVS sync did.
#[derive(Debug, Default)]
pub struct IpvsReport {
    /// Netlink operations sent (reads excluded).
    pub ops: usize,
    /// Virtual servers added, changed or removed (successful operations).
    pub virtual_servers_changed: usize,
    /// Real servers added, changed or removed (successful operations).
    pub real_servers_changed: usize,
    /// Operations that failed.
    pub failed: Vec<Error>,
    /// UDP real servers removed (for conntrack cleanup).
    pub removed_udp: Vec<(ServiceKey, SocketAddr)>,
    /// Real servers draining after this sync.
    pub draining: usize,
}

/// Keeps the kernel's IPVS table equal to the plan.
pub struct IpvsReconciler {
    client: IpvsClient,
    drain: DrainQueue,
    grace: Duration,
    exclude: Vec<IpNet>,
}

impl IpvsReconciler {
    /// Connects to IPVS. `grace` bounds draining; `exclude` is excludeCIDRs.
    pub fn open(grace: Duration, exclude: Vec<IpNet>) -> Result<Self, Error> {
        Ok(Self {
            client: IpvsClient::open()?,
            drain: DrainQueue::default(),
            grace,
            exclude,
        })
    }

    /// The IPVS client, for reads (info, timeouts).
    pub fn client(&mut self) -> &mut IpvsClient {
        &mut self.client
    }

    /// Real servers currently draining.
    pub fn draining(&self) -> &DrainQueue {
        &self.drain
    }

    fn read(&mut self, scope: Scope<'_>) -> Result<Actual, Error> {
        match scope {
            Scope::Full => Ok(self
                .client
                .dump()?
                .into_iter()
                .map(|(s, d)| (s.service.key, (s, d)))
                .collect()),
            Scope::Keys(keys) => {
                let mut out = Actual::new();
                for key in keys {
                    match self.client.service(key) {
                        Ok(s) => {
                            let dests = self.client.destinations(key)?;
                            out.insert(*key, (s, dests));
                        }
                        Err(e) if e.kind() == ErrorKind::NoSuchService => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(out)
            }
        }
    }

    /// Reads the kernel within `scope`, applies the diff to `desired`, and
    /// updates the drain queue.
    pub fn sync(
        &mut self,
        desired: &BTreeMap<ServiceKey, VirtualServer>,
        scope: Scope<'_>,
        dummy_addrs: &BTreeSet<IpAddr>,
        node_addrs: &BTreeSet<IpAddr>,
        now: Instant,
    ) -> Result<IpvsReport, Error> {
        let actual = self.read(scope)?;
        let ownership = Ownership {
            dummy_addrs,
            node_addrs,
            exclude: &self.exclude,
        };
        let d = diff(
            desired,
            &actual,
            scope,
            ownership,
            &self.drain,
            now,
            self.grace,
        );
        self.apply(d, now)
    }

    fn apply(&mut self, d: Diff, now: Instant) -> Result<IpvsReport, Error> {
        let results = self.client.apply(&d.ops)?;
        let mut report = IpvsReport {
            ops: d.ops.len(),
            removed_udp: d.removed_udp,
            ..IpvsReport::default()
        };
        for (op, r) in d.ops.iter().zip(results) {
            if r.is_ok() {
                match op {
                    Op::AddService(_) | Op::UpdateService(_) | Op::DeleteService(_) => {
                        report.virtual_servers_changed += 1
                    }
                    Op::AddDestination(..)
                    | Op::UpdateDestination(..)
                    | Op::DeleteDestination(..) => report.real_servers_changed += 1,
                    Op::Flush | Op::Zero(_) => {}
                }
            }
            if let Err(e) = r {
                // Deleting what is already gone is the outcome we wanted.
                let gone = matches!(op, Op::DeleteDestination(..) | Op::DeleteService(_))
                    && matches!(
                        e.kind(),
                        ErrorKind::NoSuchDestination | ErrorKind::NoSuchService
                    );
                if !gone {
                    report.failed.push(e);
                }
            }
        }
        for (k, a) in d.stop_draining {
            self.drain.cancel(&k, &a);
        }
        for (k, a) in d.start_draining {
            self.drain.start(k, a, now, self.grace);
        }
        for k in d.removed_services {
            self.drain.forget_service(&k);
        }
        report.draining = self.drain.len();
        Ok(report)
    }

    /// Re-checks draining real servers: deletes those with no connections
    /// left or past their bound. Cheap when nothing drains.
    pub fn process_drains(
        &mut self,
        desired: &BTreeMap<ServiceKey, VirtualServer>,
        dummy_addrs: &BTreeSet<IpAddr>,
        node_addrs: &BTreeSet<IpAddr>,
        now: Instant,
    ) -> Result<IpvsReport, Error> {
        if self.drain.is_empty() {
            return Ok(IpvsReport::default());
        }
        let keys: BTreeSet<ServiceKey> = self.drain.entries().map(|(k, _)| k).collect();
        self.sync(desired, Scope::Keys(&keys), dummy_addrs, node_addrs, now)
    }

    /// Deletes every virtual server of ours (for `--cleanup`).
    pub fn remove_all_ours(
        &mut self,
        dummy_addrs: &BTreeSet<IpAddr>,
        node_addrs: &BTreeSet<IpAddr>,
    ) -> Result<usize, Error> {
        let ownership = Ownership {
            dummy_addrs,
            node_addrs,
            exclude: &self.exclude,
        };
        let ops: Vec<Op> = self
            .client
            .services()?
            .into_iter()
            .map(|s| s.service.key)
            .filter(|k| ownership.owns(k))
            .map(Op::DeleteService)
            .collect();
        let n = ops.len();
        for r in self.client.apply(&ops)? {
            match r {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NoSuchService => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
