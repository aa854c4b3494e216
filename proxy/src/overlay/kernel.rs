//! The overlay's kernel side: the VXLAN device and, per remote node, the
//! neighbour, forwarding entry and route flannel's vxlan backend writes.
//!
//! What is **ours** (and so may be removed when no remote node wants it):
//! * permanent neighbour entries (ARP/NDP, of the overlay's family) on our
//!   VXLAN device;
//! * permanent forwarding-database entries on our VXLAN device (this covers
//!   the stale old-MAC entries flannel leaves behind);
//! * routes in the main table whose output link is our VXLAN device, except
//!   the ones the kernel derives from addresses (`proto kernel`);
//! * DirectRouting routes: main-table routes with a gateway and not on our
//!   device, whose destination lies strictly inside the cluster network and
//!   does not cover this node's own subnet (its `.0` address).
//!
//! Everything else (non-permanent neighbours, entries on other links, routes
//! outside the cluster network, other tables) is never touched. Entries that
//! are already right are not rewritten, so a restart costs three dumps and no
//! changes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use ipvs_sys::ErrorKind;
use ipvs_sys::rtnl::{
    AddrOp, Address, Change, FdbEntry, FdbRecord, Neighbour, NeighbourRecord, RTPROT_KERNEL, Route,
    RouteRecord, RtnlClient, VxlanConfig, VxlanLink, VxlanSpec,
};

use super::model::{DeviceSpec, DeviceState, MacAddr, RemoteNode, RemotePath};

/// The kernel's VXLAN port when none is configured (Linux's historical
/// default, which flannel relies on).
const KERNEL_DEFAULT_PORT: u16 = 8472;

/// Why the overlay device could not be put in shape.
#[derive(Debug, thiserror::Error)]
pub enum OverlayKernelError {
    /// A netlink request failed.
    #[error("{context}: {source}")]
    Netlink {
        /// What was being done.
        context: String,
        /// The kernel's answer.
        #[source]
        source: ipvs_sys::Error,
    },
    /// The device does not carry the wanted MAC after link-up (as flannel,
    /// this is fatal: remote nodes would send to the advertised MAC).
    #[error(
        "overlay device {device} carries MAC {actual} after link-up, want {wanted} \
         (something rewrote it, e.g. systemd-networkd's MACAddressPolicy; \
         exempt flannel.* links from it)"
    )]
    MacMismatch {
        /// Device name.
        device: String,
        /// The MAC the spec asks for.
        wanted: MacAddr,
        /// The MAC the kernel reports.
        actual: MacAddr,
    },
    /// The device spec contradicts itself.
    #[error("overlay device {device}: {reason}")]
    InvalidSpec {
        /// Device name.
        device: String,
        /// What is wrong.
        reason: String,
    },
}

fn netlink(context: impl Into<String>) -> impl FnOnce(ipvs_sys::Error) -> OverlayKernelError {
    let context = context.into();
    move |source| OverlayKernelError::Netlink { context, source }
}

/// What a [`OverlayKernel::sync`] or [`OverlayKernel::apply_changes`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Netlink changes sent (dumps not counted).
    pub ops: usize,
    /// Per node (or `stale <entry>` for an entry no node wants): what failed.
    /// A failing node does not stop the others.
    pub failures: Vec<(String, String)>,
}

/// The kernel entries one remote node needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeEntries {
    node: String,
    neighbour: Option<Neighbour>,
    fdb: Option<FdbEntry>,
    route: Route,
}

/// A remote node's entries on device `index`, or why it cannot have any.
fn entries_for(index: u32, spec: &DeviceSpec, r: &RemoteNode) -> Result<NodeEntries, String> {
    let subnet = r.subnet.trunc();
    if subnet.prefix_len() <= spec.network.prefix_len() || !spec.network.contains(&subnet) {
        return Err(format!(
            "pod subnet {} is not inside the cluster network {}",
            r.subnet, spec.network
        ));
    }
    if subnet.contains(&spec.address.addr()) {
        return Err(format!("pod subnet {} is this node's own subnet", r.subnet));
    }
    let route = |gateway, oif, onlink| Route {
        dst: subnet.network(),
        prefix_len: subnet.prefix_len(),
        gateway: Some(gateway),
        oif,
        onlink,
        metric: None,
    };
    match r.path {
        RemotePath::Vxlan { vtep, mac } => {
            if vtep.is_ipv4() != subnet.addr().is_ipv4() {
                return Err(format!("VTEP {vtep} is not of the subnet's family"));
            }
            if r.public_ip.is_ipv4() != spec.local.is_ipv4() {
                return Err(format!(
                    "public IP {} is not of the underlay's family",
                    r.public_ip
                ));
            }
            Ok(NodeEntries {
                node: r.node.clone(),
                neighbour: Some(Neighbour {
                    index,
                    ip: vtep,
                    mac: mac.0,
                }),
                fdb: Some(FdbEntry {
                    index,
                    mac: mac.0,
                    dst: r.public_ip,
                }),
                route: route(vtep, Some(index), true),
            })
        }
        RemotePath::Direct => {
            if r.public_ip.is_ipv4() != subnet.addr().is_ipv4() {
                return Err(format!(
                    "DirectRouting needs a public IP of the subnet's family, got {}",
                    r.public_ip
                ));
            }
            Ok(NodeEntries {
                node: r.node.clone(),
                neighbour: None,
                fdb: None,
                route: route(r.public_ip, None, false),
            })
        }
    }
}

/// Whether a dumped route does what `want` asks (metric aside: the kernel
/// fills in its default).
fn route_matches(have: &Route, want: &Route, device: u32) -> bool {
    have.dst == want.dst
        && have.prefix_len == want.prefix_len
        && have.gateway == want.gateway
        && have.onlink == want.onlink
        && match want.oif {
            Some(oif) => have.oif == Some(oif),
            None => have.oif != Some(device),
        }
}

/// The kernel's current entries that are ours (see the module comment).
#[derive(Debug, Default)]
struct Current {
    neighbours: BTreeMap<IpAddr, Option<[u8; 6]>>,
    fdb: BTreeSet<([u8; 6], IpAddr)>,
    routes: Vec<Route>,
}

impl Current {
    fn from_dumps(
        device: u32,
        spec: &DeviceSpec,
        neighbours: &[NeighbourRecord],
        fdb: &[FdbRecord],
        routes: &[RouteRecord],
    ) -> Self {
        let v4 = spec.network.addr().is_ipv4();
        let net_len = spec.network.prefix_len();
        let local = spec.address.addr();
        Self {
            neighbours: neighbours
                .iter()
                .filter(|n| n.index == device && n.permanent() && n.ip.is_ipv4() == v4)
                .map(|n| (n.ip, n.mac))
                .collect(),
            fdb: fdb
                .iter()
                .filter(|f| f.index == device && f.permanent())
                .filter_map(|f| Some((f.mac, f.dst?)))
                .collect(),
            routes: routes
                .iter()
                .filter(|r| {
                    let route = &r.route;
                    if route.oif == Some(device) {
                        return r.protocol != RTPROT_KERNEL;
                    }
                    let Ok(dst) = IpNet::new(route.dst, route.prefix_len) else {
                        return false;
                    };
                    route.gateway.is_some()
                        && route.prefix_len > net_len
                        && spec.network.contains(&dst)
                        && !dst.contains(&local)
                })
                .map(|r| r.route)
                .collect(),
        }
    }
}

/// Changes in the order they must reach the kernel. Flannel's order per
/// node is ARP → FDB → route, so the kernel never resolves the gateway by
/// itself; removal goes the other way.
#[derive(Debug, Default)]
struct Plan {
    /// Per node: the neighbour and forwarding entries to write.
    l2: Vec<(String, Vec<Change>)>,
    /// Per node: the route to write once its L2 entries are in.
    routes: Vec<(String, Change)>,
    /// Route removals (first).
    del_routes: Vec<(String, Change)>,
    /// Forwarding-entry, then neighbour removals (after the routes).
    del_l2: Vec<(String, Change)>,
}

/// The full reconcile: desired node entries against what the kernel has.
fn plan_sync(device: u32, wanted: &[NodeEntries], current: &Current) -> Plan {
    let mut plan = Plan::default();
    let mut keep_routes = vec![false; current.routes.len()];
    for n in wanted {
        let mut l2 = Vec::new();
        if let Some(nb) = n.neighbour
            && current.neighbours.get(&nb.ip) != Some(&Some(nb.mac))
        {
            l2.push(Change::ReplaceNeighbour(nb));
        }
        if let Some(f) = n.fdb
            && !current.fdb.contains(&(f.mac, f.dst))
        {
            l2.push(Change::ReplaceFdb(f));
        }
        let have = current
            .routes
            .iter()
            .enumerate()
            .find(|(i, r)| !keep_routes[*i] && route_matches(r, &n.route, device));
        match have {
            Some((i, _)) => keep_routes[i] = true,
            None => plan
                .routes
                .push((n.node.clone(), Change::ReplaceRoute(n.route))),
        }
        if !l2.is_empty() {
            plan.l2.push((n.node.clone(), l2));
        }
    }
    let stale = |what: String| format!("stale {what}");
    let replaced: BTreeSet<_> = plan
        .routes
        .iter()
        .filter_map(|(_, c)| match c {
            Change::ReplaceRoute(r) => Some((r.dst, r.prefix_len)),
            _ => None,
        })
        .collect();
    for (route, keep) in current.routes.iter().zip(keep_routes) {
        // A replace with the kernel's default metric overwrites the route of
        // the same destination and metric in place: no delete needed.
        let default_metric = if route.dst.is_ipv6() { 1024 } else { 0 };
        let overwritten = replaced.contains(&(route.dst, route.prefix_len))
            && route.metric.unwrap_or(default_metric) == default_metric;
        if !keep && !overwritten {
            let c = Change::DeleteRoute(*route);
            plan.del_routes.push((
                stale(format!("route {}/{}", route.dst, route.prefix_len)),
                c,
            ));
        }
    }
    let wanted_fdb: BTreeSet<_> = wanted
        .iter()
        .filter_map(|n| n.fdb.map(|f| (f.mac, f.dst)))
        .collect();
    for &(mac, dst) in current.fdb.difference(&wanted_fdb) {
        let c = Change::DeleteFdb(FdbEntry {
            index: device,
            mac,
            dst,
        });
        plan.del_l2
            .push((stale(format!("fdb {} dst {dst}", MacAddr(mac))), c));
    }
    let wanted_ips: BTreeSet<_> = wanted
        .iter()
        .filter_map(|n| n.neighbour.map(|nb| nb.ip))
        .collect();
    for (&ip, &mac) in &current.neighbours {
        if !wanted_ips.contains(&ip) {
            let c = Change::DeleteNeighbour(Neighbour {
                index: device,
                ip,
                mac: mac.unwrap_or_default(),
            });
            plan.del_l2.push((stale(format!("neighbour {ip}")), c));
        }
    }
    plan
}

/// The incremental update: `removed` nodes' entries were programmed,
/// `added` nodes' entries must be. Entries equal on both sides are left
/// alone; what `added` overwrites in place is not deleted first.
fn plan_changes(removed: &[NodeEntries], added: &[NodeEntries]) -> Plan {
    let mut plan = Plan::default();
    let old_neigh: BTreeSet<_> = removed.iter().filter_map(|n| n.neighbour).collect();
    let old_fdb: BTreeSet<_> = removed.iter().filter_map(|n| n.fdb).collect();
    let old_routes: BTreeSet<_> = removed.iter().map(|n| n.route).collect();
    for n in added {
        let mut l2 = Vec::new();
        if let Some(nb) = n.neighbour
            && !old_neigh.contains(&nb)
        {
            l2.push(Change::ReplaceNeighbour(nb));
        }
        if let Some(f) = n.fdb
            && !old_fdb.contains(&f)
        {
            l2.push(Change::ReplaceFdb(f));
        }
        if !l2.is_empty() {
            plan.l2.push((n.node.clone(), l2));
        }
        if !old_routes.contains(&n.route) {
            plan.routes
                .push((n.node.clone(), Change::ReplaceRoute(n.route)));
        }
    }
    let new_neigh_ips: BTreeSet<_> = added
        .iter()
        .filter_map(|n| n.neighbour.map(|nb| nb.ip))
        .collect();
    let new_fdb: BTreeSet<_> = added.iter().filter_map(|n| n.fdb).collect();
    let new_routes: BTreeSet<_> = added
        .iter()
        .map(|n| (n.route.dst, n.route.prefix_len))
        .collect();
    for n in removed {
        if !new_routes.contains(&(n.route.dst, n.route.prefix_len)) {
            plan.del_routes
                .push((n.node.clone(), Change::DeleteRoute(n.route)));
        }
    }
    for n in removed {
        if let Some(f) = n.fdb
            && !new_fdb.contains(&f)
        {
            plan.del_l2.push((n.node.clone(), Change::DeleteFdb(f)));
        }
    }
    for n in removed {
        if let Some(nb) = n.neighbour
            && !new_neigh_ips.contains(&nb.ip)
        {
            plan.del_l2
                .push((n.node.clone(), Change::DeleteNeighbour(nb)));
        }
    }
    plan
}

/// Whether a device found in the kernel can be kept for `spec` (flannel's
/// compatibility test: VNI, underlay link, local address, port if one is
/// configured, GBP).
fn compatible(found: &VxlanConfig, spec: &DeviceSpec) -> bool {
    found.vni == spec.vni
        && found.link == Some(spec.underlay_index)
        && found.local == Some(spec.local)
        && spec
            .port
            .is_none_or(|p| found.port.unwrap_or(KERNEL_DEFAULT_PORT) == p)
        && found.gbp == spec.gbp
}

/// Programs the overlay into the kernel of the network namespace it was
/// opened in.
pub struct OverlayKernel {
    rtnl: RtnlClient,
    /// The last spec seen per device name (from `ensure_device` or `sync`),
    /// which `apply_changes` validates remote nodes against.
    specs: BTreeMap<String, DeviceSpec>,
}

impl OverlayKernel {
    /// Opens the rtnetlink socket (in the calling thread's namespace).
    pub fn open() -> Result<Self, OverlayKernelError> {
        Ok(Self {
            rtnl: RtnlClient::open().map_err(netlink("open rtnetlink socket"))?,
            specs: BTreeMap::new(),
        })
    }

    /// How many netlink requests and `sendmsg` calls this instance made.
    pub fn counters(&self) -> ipvs_sys::rtnl::Counters {
        self.rtnl.counters()
    }

    /// Makes the VXLAN device match `spec`: keeps a compatible existing
    /// device (fixing MAC and MTU in place), recreates an incompatible one,
    /// brings it up with `accept_ra=0`, and leaves exactly one address inside
    /// the cluster network on it: the spec's.
    pub fn ensure_device(&mut self, spec: &DeviceSpec) -> Result<DeviceState, OverlayKernelError> {
        let invalid = |reason: String| OverlayKernelError::InvalidSpec {
            device: spec.name.clone(),
            reason,
        };
        if !spec.network.contains(&spec.address.addr()) {
            return Err(invalid(format!(
                "address {} is not inside the cluster network {}",
                spec.address, spec.network
            )));
        }
        let name = &spec.name;
        let found = self
            .rtnl
            .vxlan_link(name)
            .map_err(netlink(format!("look up overlay device {name}")))?;
        let link = match found {
            Some(link) if link.vxlan.as_ref().is_some_and(|c| compatible(c, spec)) => link,
            Some(link) => {
                tracing::warn!(
                    device = %name,
                    found = ?link.vxlan,
                    kind = ?link.kind,
                    "overlay device is incompatible with the configuration; recreating it"
                );
                self.rtnl
                    .delete_link(link.index)
                    .map_err(netlink(format!("delete incompatible device {name}")))?;
                self.create(spec)?
            }
            None => self.create(spec)?,
        };
        let index = link.index;
        if link.mac != Some(spec.mac.0) {
            self.rtnl
                .set_link_mac(index, spec.mac.0)
                .map_err(netlink(format!("set MAC of {name} to {}", spec.mac)))?;
        }
        if link.mtu != Some(spec.mtu) {
            match self.rtnl.set_link_mtu(index, spec.mtu) {
                Ok(()) => {}
                // The kernel caps a VXLAN device's MTU at the underlay's
                // minus the encapsulation (50 bytes over IPv4, 70 over
                // IPv6) and clamps it on creation; a working device with
                // the kernel's MTU beats no overlay. The state reports it.
                Err(e) if e.kind() == ErrorKind::InvalidArgument => tracing::warn!(
                    device = %name,
                    wanted = spec.mtu,
                    actual = ?link.mtu,
                    "the kernel refuses this MTU for the overlay device (more than the underlay \
                     allows after encapsulation: 50 bytes over IPv4, 70 over IPv6); keeping its MTU"
                ),
                Err(e) => return Err(netlink(format!("set MTU of {name} to {}", spec.mtu))(e)),
            }
        }
        disable_accept_ra(name);
        self.ensure_address(index, spec)?;
        if !link.up {
            self.rtnl
                .set_link_up(index, true)
                .map_err(netlink(format!("set {name} up")))?;
        }
        let now = self
            .rtnl
            .vxlan_link(name)
            .map_err(netlink(format!("read back {name}")))?
            .ok_or_else(|| invalid("vanished right after it was set up".into()))?;
        let actual = MacAddr(now.mac.unwrap_or_default());
        if actual != spec.mac {
            return Err(OverlayKernelError::MacMismatch {
                device: name.clone(),
                wanted: spec.mac,
                actual,
            });
        }
        self.specs.insert(name.clone(), spec.clone());
        Ok(DeviceState {
            name: name.clone(),
            index,
            mac: actual,
            mtu: now.mtu.unwrap_or(spec.mtu),
        })
    }

    fn create(&mut self, spec: &DeviceSpec) -> Result<VxlanLink, OverlayKernelError> {
        tracing::info!(device = %spec.name, vni = spec.vni, mac = %spec.mac, "creating overlay device");
        self.rtnl
            .create_vxlan(&VxlanSpec {
                name: spec.name.clone(),
                config: VxlanConfig {
                    vni: spec.vni,
                    link: Some(spec.underlay_index),
                    local: Some(spec.local),
                    port: spec.port,
                    learning: spec.learning,
                    gbp: spec.gbp,
                },
                mac: Some(spec.mac.0),
                mtu: Some(spec.mtu),
            })
            .map_err(netlink(format!("create overlay device {}", spec.name)))
    }

    /// Exactly one address inside the cluster network: the spec's. Other
    /// addresses (outside the network) are left alone.
    fn ensure_address(&mut self, index: u32, spec: &DeviceSpec) -> Result<(), OverlayKernelError> {
        let want = Address {
            index,
            addr: spec.address.addr(),
            prefix_len: spec.address.prefix_len(),
        };
        let have = self
            .rtnl
            .link_addresses(index)
            .map_err(netlink(format!("list addresses of {}", spec.name)))?;
        let mut ops: Vec<AddrOp> = have
            .iter()
            .filter(|a| spec.network.contains(&a.addr) && **a != want)
            .map(|a| AddrOp::Delete(*a))
            .collect();
        if !have.contains(&want) {
            ops.push(AddrOp::Add(want));
        }
        for (op, result) in ops.iter().zip(
            self.rtnl
                .apply_addresses(&ops)
                .map_err(netlink(format!("set addresses of {}", spec.name)))?,
        ) {
            match (op, result) {
                (_, Ok(())) => {}
                (AddrOp::Delete(_), Err(e)) if e.kind() == ErrorKind::NoSuchAddress => {}
                (AddrOp::Add(_), Err(e)) if e.kind() == ErrorKind::Exists => {}
                (_, Err(e)) => return Err(netlink(format!("on {}", spec.name))(e)),
            }
        }
        Ok(())
    }

    /// Full reconcile of every remote node's entries against the kernel's
    /// (three dumps): adds what is missing, rewrites what is wrong, removes
    /// what is ours and wanted by no node, leaves correct entries untouched.
    pub fn sync(
        &mut self,
        device: &DeviceState,
        spec: &DeviceSpec,
        remotes: &[RemoteNode],
    ) -> Result<SyncReport, OverlayKernelError> {
        self.specs.insert(device.name.clone(), spec.clone());
        let mut report = SyncReport::default();
        let wanted = self.entries(device.index, spec, remotes, &mut report);
        let dump = |what: &str| netlink(format!("list {what} of {}", device.name));
        let neighbours = self
            .rtnl
            .neighbours(device.index)
            .map_err(dump("neighbours"))?;
        let fdb = self
            .rtnl
            .fdb(device.index)
            .map_err(dump("forwarding entries"))?;
        let routes = self
            .rtnl
            .routes(spec.network.addr().is_ipv6())
            .map_err(dump("routes"))?;
        let current = Current::from_dumps(device.index, spec, &neighbours, &fdb, &routes);
        let plan = plan_sync(device.index, &wanted, &current);
        self.execute(plan, &mut report)?;
        Ok(report)
    }

    /// Incremental update without dumps: `removed` nodes' entries go,
    /// `added` nodes' entries are written (a changed node is in both, with
    /// its old and new values); only their entries are touched. Needs an
    /// earlier [`OverlayKernel::ensure_device`] or [`OverlayKernel::sync`]
    /// of this device on this instance (for its cluster network).
    pub fn apply_changes(
        &mut self,
        device: &DeviceState,
        removed: &[RemoteNode],
        added: &[RemoteNode],
    ) -> Result<SyncReport, OverlayKernelError> {
        let spec = self.specs.get(&device.name).cloned().ok_or_else(|| {
            OverlayKernelError::InvalidSpec {
                device: device.name.clone(),
                reason: "apply_changes before ensure_device or sync".into(),
            }
        })?;
        let spec = &spec;
        let mut report = SyncReport::default();
        // A removed node that cannot have had entries has nothing to remove.
        let removed = self.entries(device.index, spec, removed, &mut SyncReport::default());
        let added = self.entries(device.index, spec, added, &mut report);
        self.execute(plan_changes(&removed, &added), &mut report)?;
        Ok(report)
    }

    /// Deletes the overlay device `name` if it exists (with it go its
    /// neighbours, forwarding entries, addresses and the routes through it).
    pub fn remove_device(&mut self, name: &str) -> Result<(), OverlayKernelError> {
        let found = self
            .rtnl
            .link(name)
            .map_err(netlink(format!("look up {name}")))?;
        if let Some(link) = found {
            match self.rtnl.delete_link(link.index) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NoSuchLink => {}
                Err(e) => return Err(netlink(format!("delete {name}"))(e)),
            }
        }
        Ok(())
    }

    fn entries(
        &self,
        index: u32,
        spec: &DeviceSpec,
        remotes: &[RemoteNode],
        report: &mut SyncReport,
    ) -> Vec<NodeEntries> {
        remotes
            .iter()
            .filter_map(|r| match entries_for(index, spec, r) {
                Ok(e) => Some(e),
                Err(why) => {
                    tracing::warn!(node = %r.node, "skipping remote node: {why}");
                    report.failures.push((r.node.clone(), why));
                    None
                }
            })
            .collect()
    }

    /// Sends a plan in two batches: route removals and every node's L2
    /// entries first; then the routes of the nodes whose L2 entries landed,
    /// and the L2 removals.
    fn execute(&mut self, plan: Plan, report: &mut SyncReport) -> Result<(), OverlayKernelError> {
        let mut first: Vec<(String, Change)> = plan.del_routes;
        for (node, changes) in plan.l2 {
            first.extend(changes.into_iter().map(|c| (node.clone(), c)));
        }
        let failed = self.send(&first, report)?;
        let mut second: Vec<(String, Change)> = Vec::new();
        for (node, change) in plan.routes {
            if failed.contains(&node) {
                report.failures.push((
                    node,
                    format!(
                        "{} skipped: its neighbour or forwarding entry failed",
                        change.describe()
                    ),
                ));
            } else {
                second.push((node, change));
            }
        }
        second.extend(plan.del_l2);
        self.send(&second, report)?;
        Ok(())
    }

    /// Applies changes in one pipelined batch; returns the nodes with a
    /// failed change. Deleting what is already gone is success.
    fn send(
        &mut self,
        changes: &[(String, Change)],
        report: &mut SyncReport,
    ) -> Result<BTreeSet<String>, OverlayKernelError> {
        let mut failed = BTreeSet::new();
        if changes.is_empty() {
            return Ok(failed);
        }
        let batch: Vec<Change> = changes.iter().map(|(_, c)| *c).collect();
        let results = self
            .rtnl
            .apply(&batch)
            .map_err(netlink("apply overlay changes"))?;
        report.ops += batch.len();
        for ((node, change), result) in changes.iter().zip(results) {
            let Err(e) = result else { continue };
            let deleting = matches!(
                change,
                Change::DeleteNeighbour(_) | Change::DeleteFdb(_) | Change::DeleteRoute(_)
            );
            if deleting && e.kind() == ErrorKind::NoSuchEntry {
                continue;
            }
            tracing::warn!(node = %node, "overlay change failed: {e}");
            report.failures.push((node.clone(), e.to_string()));
            failed.insert(node.clone());
        }
        Ok(failed)
    }
}

/// Router advertisements on the overlay device would add routes nobody
/// asked for (flannel sets `accept_ra=0` too). An absent file (IPv6 off) is
/// fine.
fn disable_accept_ra(device: &str) {
    let path = format!("/proc/sys/net/ipv6/conf/{device}/accept_ra");
    match std::fs::write(&path, "0") {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(%path, "cannot disable router advertisements: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: u32 = 7;

    fn spec() -> DeviceSpec {
        DeviceSpec {
            name: "flannel.1".into(),
            vni: 1,
            port: None,
            underlay_index: 2,
            local: "192.168.1.1".parse().unwrap(),
            mtu: 1450,
            learning: false,
            gbp: false,
            mac: "0e:00:00:00:01:01".parse().unwrap(),
            address: "10.244.1.0/32".parse().unwrap(),
            network: "10.244.0.0/16".parse().unwrap(),
        }
    }

    fn vxlan_node(n: u8, mac: &str) -> RemoteNode {
        RemoteNode {
            node: format!("n{n}"),
            subnet: format!("10.244.{n}.0/24").parse().unwrap(),
            public_ip: format!("192.168.1.{n}").parse().unwrap(),
            path: RemotePath::Vxlan {
                vtep: format!("10.244.{n}.0").parse().unwrap(),
                mac: mac.parse().unwrap(),
            },
        }
    }

    fn entries(nodes: &[RemoteNode]) -> Vec<NodeEntries> {
        nodes
            .iter()
            .map(|r| entries_for(DEV, &spec(), r).unwrap())
            .collect()
    }

    fn all(plan: &Plan) -> Vec<Change> {
        let mut out: Vec<Change> = plan.del_routes.iter().map(|(_, c)| *c).collect();
        out.extend(plan.l2.iter().flat_map(|(_, cs)| cs.iter().copied()));
        out.extend(plan.routes.iter().map(|(_, c)| *c));
        out.extend(plan.del_l2.iter().map(|(_, c)| *c));
        out
    }

    #[test]
    fn subnets_outside_the_network_or_our_own_are_refused() {
        let mut r = vxlan_node(2, "0e:00:00:00:02:01");
        r.subnet = "10.99.2.0/24".parse().unwrap();
        assert!(entries_for(DEV, &spec(), &r).is_err());
        let mut r = vxlan_node(1, "0e:00:00:00:02:01");
        r.subnet = "10.244.1.0/24".parse().unwrap();
        assert!(entries_for(DEV, &spec(), &r).is_err());
    }

    #[test]
    fn a_changed_mac_costs_three_changes_incrementally() {
        let old = entries(&[vxlan_node(2, "0e:00:00:00:02:01")]);
        let new = entries(&[vxlan_node(2, "0e:00:00:00:02:02")]);
        let plan = plan_changes(&old, &new);
        let changes = all(&plan);
        assert_eq!(changes.len(), 3, "{changes:?}");
        assert!(matches!(changes[0], Change::ReplaceNeighbour(n) if n.mac[5] == 2));
        assert!(matches!(changes[1], Change::ReplaceFdb(f) if f.mac[5] == 2));
        assert!(matches!(changes[2], Change::DeleteFdb(f) if f.mac[5] == 1));
    }

    #[test]
    fn sync_keeps_right_entries_and_removes_only_ours() {
        let wanted = entries(&[vxlan_node(2, "0e:00:00:00:02:01")]);
        let e = &wanted[0];
        let mut current = Current::default();
        current
            .neighbours
            .insert(e.neighbour.unwrap().ip, Some(e.neighbour.unwrap().mac));
        current.fdb.insert((e.fdb.unwrap().mac, e.fdb.unwrap().dst));
        current
            .fdb
            .insert(([0x0e, 0, 0, 0, 2, 9], e.fdb.unwrap().dst));
        current.routes.push(Route {
            metric: Some(0),
            ..e.route
        });
        let plan = plan_sync(DEV, &wanted, &current);
        let changes = all(&plan);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert!(matches!(changes[0], Change::DeleteFdb(f) if f.mac[5] == 9));
    }
}
