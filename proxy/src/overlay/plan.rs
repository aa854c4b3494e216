//! The overlay's planner (pure): this node, every Node, the configuration
//! and the node's underlay facts in; per family the [`DesiredOverlay`] for
//! the kernel, this node's annotations, `subnet.env` and the masquerade
//! inputs out, plus the remote nodes skipped and why.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use k8s_openapi::api::core::v1::Node;

use super::annotations::{self as ann, BackendData};
use super::config::NetConf;
use super::model::{DesiredOverlay, DeviceSpec, MacAddr, RemoteNode, RemotePath};
use super::subnet_env::SubnetEnv;

/// VXLAN's encapsulation overhead over IPv4, flannel's `encapOverhead`.
pub const ENCAP_OVERHEAD: u32 = 50;
/// The overhead over an IPv6 underlay (40-byte outer header instead of
/// 20): the kernel refuses a VXLAN-over-IPv6 MTU above lower MTU − 70.
pub const ENCAP_OVERHEAD_V6: u32 = 70;

/// What the node knows about its underlay (found by the shell).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnderlayFacts {
    /// Index of the underlay (external) interface.
    pub index: u32,
    /// Its MTU.
    pub mtu: u32,
    /// Its IPv4 address: the tunnel's local end.
    pub local_v4: Option<Ipv4Addr>,
    /// Its IPv6 address.
    pub local_v6: Option<Ipv6Addr>,
    /// `--overlay-public-ip` (IPv4) if given: published instead of
    /// `local_v4`.
    pub public_ip: Option<Ipv4Addr>,
    /// `--overlay-public-ip` (IPv6) if given.
    pub public_ipv6: Option<Ipv6Addr>,
    /// Directly connected underlay subnets (for DirectRouting): a remote
    /// whose public address lies in one is on the same L2 segment.
    pub connected: Vec<IpNet>,
}

/// Random VTEP MACs for devices whose MAC is not yet recorded in this
/// node's backend-data annotations (made by the shell with
/// [`random_mac`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreshMacs {
    /// For `flannel.<VNI>`.
    pub v4: MacAddr,
    /// For `flannel-v6.<VNI>`.
    pub v6: MacAddr,
}

/// A remote node left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Skipped {
    /// The Node's name.
    pub node: String,
    /// Why (one line).
    pub reason: String,
}

/// This node's subnet for one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalSubnet<N> {
    /// The cluster network.
    pub network: N,
    /// This node's pod subnet.
    pub subnet: N,
}

/// Everything the overlay must make true on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayPlan {
    /// IPv4: device and remotes (when IPv4 is enabled).
    pub v4: Option<DesiredOverlay>,
    /// IPv6: device and remotes (when IPv6 is enabled).
    pub v6: Option<DesiredOverlay>,
    /// IPv4 network and subnet (for masquerading).
    pub local_v4: Option<LocalSubnet<Ipv4Net>>,
    /// IPv6 network and subnet.
    pub local_v6: Option<LocalSubnet<Ipv6Net>>,
    /// This node's flannel annotations, in flannel's text forms.
    pub annotations: BTreeMap<String, String>,
    /// `/run/flannel/subnet.env`.
    pub subnet_env: SubnetEnv,
    /// Remote nodes left out.
    pub skipped: Vec<Skipped>,
}

/// Why this node cannot take part at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Our Node object is not (yet) known.
    #[error("node {0:?} not found")]
    NoNode(String),
    /// Neither `spec.podCIDRs` nor `spec.podCIDR` has a subnet of a family.
    #[error("node {node:?}: pod cidr not assigned ({family})")]
    NoPodCidr {
        /// Node name.
        node: String,
        /// `IPv4` or `IPv6`.
        family: &'static str,
    },
    /// A podCIDR is not a CIDR.
    #[error("node {node:?}: podCIDR {cidr:?} is not a CIDR")]
    BadPodCidr {
        /// Node name.
        node: String,
        /// The text.
        cidr: String,
    },
    /// The podCIDR is not inside the configured network.
    #[error("node {node:?}: podCIDR {subnet} is outside the overlay network {network}")]
    OutsideNetwork {
        /// Node name.
        node: String,
        /// Its podCIDR.
        subnet: IpNet,
        /// `Network` or `IPv6Network`.
        network: IpNet,
    },
    /// The underlay has no address of an enabled family.
    #[error("the underlay interface has no {0} address")]
    NoUnderlayAddress(&'static str),
}

/// A random, unicast, locally administered MAC, as flannel makes one
/// (`b[0] = (b[0] & 0xfe) | 0x02`).
pub fn random_mac() -> MacAddr {
    let mut b = [0u8; 6];
    if getrandom::fill(&mut b).is_err() {
        // No entropy source: fall back to the clock (the MAC only needs to
        // be unique in the cluster, not secret).
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        b.copy_from_slice(&t.to_le_bytes()[..6]);
    }
    b[0] = (b[0] & 0xfe) | 0x02;
    MacAddr(b)
}

fn annotation<'a>(node: &'a Node, name: &str) -> Option<&'a str> {
    node.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(name))
        .map(String::as_str)
}

fn node_name(node: &Node) -> &str {
    node.metadata.name.as_deref().unwrap_or_default()
}

/// The node's pod subnets as flannel's kube subnet manager reads them:
/// `spec.podCIDRs` (one or two entries), else `spec.podCIDR`.
fn pod_cidrs(node: &Node) -> Result<(Option<Ipv4Net>, Option<Ipv6Net>), String> {
    let spec = node.spec.as_ref();
    let list: Vec<&str> = match spec.and_then(|s| s.pod_cidrs.as_ref()) {
        Some(l) if !l.is_empty() => l.iter().map(String::as_str).collect(),
        _ => spec
            .and_then(|s| s.pod_cidr.as_deref())
            .filter(|s| !s.is_empty())
            .into_iter()
            .collect(),
    };
    if list.len() > 2 {
        return Err("pod cidrs should be IPv4/IPv6 only or dualstack".into());
    }
    let (mut v4, mut v6) = (None, None);
    for c in list {
        match c.parse::<IpNet>() {
            Ok(IpNet::V4(n)) => v4 = v4.or(Some(n.trunc())),
            Ok(IpNet::V6(n)) => v6 = v6.or(Some(n.trunc())),
            Err(_) => return Err(format!("podCIDR {c:?} is not a CIDR")),
        }
    }
    Ok((v4, v6))
}

fn own_mac(node: &Node, name: &'static str) -> Option<MacAddr> {
    annotation(node, name)
        .and_then(|t| ann::parse_backend_data(name, t).ok())
        .map(|d| d.vtep_mac)
        .filter(MacAddr::is_local_unicast)
}

/// The device MTU: the backend's `MTU` or the underlay's, minus the
/// encapsulation for the tunnel's (underlay) family.
fn device_mtu(conf: &NetConf, facts: &UnderlayFacts, local: IpAddr) -> u32 {
    let base = if conf.backend.mtu != 0 {
        conf.backend.mtu
    } else {
        facts.mtu
    };
    let overhead = if local.is_ipv6() {
        ENCAP_OVERHEAD_V6
    } else {
        ENCAP_OVERHEAD
    };
    base.saturating_sub(overhead)
}

/// What differs between this node's IPv4 and IPv6 device: flannel's
/// names for it and its annotations.
struct FamilyNames {
    /// `IPv4` / `IPv6`, for errors.
    label: &'static str,
    /// The device name before the VNI.
    device_prefix: &'static str,
    /// The annotation carrying the VNI and VTEP MAC.
    backend_data: &'static str,
    /// The annotation carrying the public (underlay) address.
    public_ip: &'static str,
    /// The annotation that overrides the public address.
    public_ip_overwrite: &'static str,
}

const V4: FamilyNames = FamilyNames {
    label: "IPv4",
    device_prefix: "flannel.",
    backend_data: ann::BACKEND_DATA,
    public_ip: ann::PUBLIC_IP,
    public_ip_overwrite: ann::PUBLIC_IP_OVERWRITE,
};

const V6: FamilyNames = FamilyNames {
    label: "IPv6",
    device_prefix: "flannel-v6.",
    backend_data: ann::BACKEND_V6_DATA,
    public_ip: ann::PUBLIC_IPV6,
    public_ip_overwrite: ann::PUBLIC_IPV6_OVERWRITE,
};

/// This node, planning its own device for one family at a time and
/// collecting the annotations it will publish.
struct Ours<'a> {
    me: &'a str,
    own: &'a Node,
    conf: &'a NetConf,
    facts: &'a UnderlayFacts,
    annotations: BTreeMap<String, String>,
}

impl Ours<'_> {
    /// The device of one family for `subnet` inside `network`, tunnelling
    /// from `local` (the family's underlay address); records the family's
    /// annotations. The public address is the overwrite annotation (if it
    /// parses as an address of the family), else `public`, else `local`;
    /// the MAC the one already announced, else `fresh`.
    fn device(
        &mut self,
        names: &FamilyNames,
        network: IpNet,
        subnet: IpNet,
        local: Option<IpAddr>,
        public: Option<IpAddr>,
        fresh: MacAddr,
    ) -> Result<DeviceSpec, PlanError> {
        if !network.contains(&subnet) {
            return Err(PlanError::OutsideNetwork {
                node: self.me.to_owned(),
                subnet,
                network,
            });
        }
        let local = local.ok_or(PlanError::NoUnderlayAddress(names.label))?;
        let public = annotation(self.own, names.public_ip_overwrite)
            .and_then(|s| s.parse::<IpAddr>().ok())
            .filter(|a| a.is_ipv4() == local.is_ipv4())
            .or(public)
            .unwrap_or(local);
        let mac = own_mac(self.own, names.backend_data).unwrap_or(fresh);
        let vni = self.conf.backend.vni;
        self.annotations.insert(
            names.backend_data.to_owned(),
            ann::format_backend_data(vni, mac),
        );
        self.annotations
            .insert(names.public_ip.to_owned(), public.to_string());
        Ok(DeviceSpec {
            name: format!("{}{vni}", names.device_prefix),
            vni,
            port: (self.conf.backend.port != 0).then_some(self.conf.backend.port),
            underlay_index: self.facts.index,
            local,
            mtu: device_mtu(self.conf, self.facts, local),
            learning: self.conf.backend.learning,
            gbp: self.conf.backend.gbp,
            mac,
            // The device holds the subnet's network address as a host route.
            address: IpNet::new(subnet.network(), subnet.max_prefix_len()).unwrap_or(subnet),
            network,
        })
    }
}

/// Plans the overlay. `nodes` is every Node (ours included).
pub fn plan(
    me: &str,
    nodes: &[Node],
    conf: &NetConf,
    facts: &UnderlayFacts,
    fresh: FreshMacs,
) -> Result<OverlayPlan, PlanError> {
    let own = nodes
        .iter()
        .find(|n| node_name(n) == me)
        .ok_or_else(|| PlanError::NoNode(me.to_owned()))?;
    let (sub4, sub6) = pod_cidrs(own).map_err(|cidr| PlanError::BadPodCidr {
        node: me.to_owned(),
        cidr,
    })?;
    let mut ours = Ours {
        me,
        own,
        conf,
        facts,
        annotations: BTreeMap::new(),
    };
    let mut local_v4 = None;
    let mut local_v6 = None;
    let mut dev4 = None;
    let mut dev6 = None;
    if let Some(network) = conf.network.filter(|_| conf.enable_ipv4) {
        let subnet = sub4.ok_or_else(|| PlanError::NoPodCidr {
            node: me.to_owned(),
            family: V4.label,
        })?;
        let local = facts.local_v4.map(IpAddr::V4);
        let public = facts.public_ip.map(IpAddr::V4);
        dev4 = Some(ours.device(&V4, network.into(), subnet.into(), local, public, fresh.v4)?);
        local_v4 = Some(LocalSubnet { network, subnet });
    }
    if let Some(network) = conf.ipv6_network.filter(|_| conf.enable_ipv6) {
        let subnet = sub6.ok_or_else(|| PlanError::NoPodCidr {
            node: me.to_owned(),
            family: V6.label,
        })?;
        let local = facts.local_v6.map(IpAddr::V6);
        let public = facts.public_ipv6.map(IpAddr::V6);
        dev6 = Some(ours.device(&V6, network.into(), subnet.into(), local, public, fresh.v6)?);
        local_v6 = Some(LocalSubnet { network, subnet });
    }
    let mut annotations = ours.annotations;
    annotations.insert(ann::BACKEND_TYPE.to_owned(), ann::VXLAN.to_owned());
    annotations.insert(ann::KUBE_SUBNET_MANAGER.to_owned(), "true".to_owned());

    // Pods get the smallest device MTU, so neither family fragments.
    let mtu = [&dev4, &dev6]
        .into_iter()
        .flatten()
        .map(|d| d.mtu)
        .min()
        .unwrap_or_default();
    let (remotes4, remotes6, skipped) = remotes(me, nodes, conf, facts, local_v4, local_v6);
    Ok(OverlayPlan {
        v4: dev4.map(|device| DesiredOverlay {
            device,
            remotes: remotes4,
        }),
        v6: dev6.map(|device| DesiredOverlay {
            device,
            remotes: remotes6,
        }),
        local_v4,
        local_v6,
        annotations,
        subnet_env: SubnetEnv {
            network: local_v4.map(|l| l.network),
            subnet: local_v4.map(|l| l.subnet),
            ipv6_network: local_v6.map(|l| l.network),
            ipv6_subnet: local_v6.map(|l| l.subnet),
            mtu,
            ip_masq: true,
        },
        skipped,
    })
}

type Remotes = (Vec<RemoteNode>, Vec<RemoteNode>, Vec<Skipped>);

/// Every other node that takes part, per family; a node with any bad
/// annotation or podCIDR is skipped whole (as flannel does).
fn remotes(
    me: &str,
    nodes: &[Node],
    conf: &NetConf,
    facts: &UnderlayFacts,
    local_v4: Option<LocalSubnet<Ipv4Net>>,
    local_v6: Option<LocalSubnet<Ipv6Net>>,
) -> Remotes {
    let mut v4: Vec<RemoteNode> = Vec::new();
    let mut v6: Vec<RemoteNode> = Vec::new();
    let mut skipped = Vec::new();
    let mut sorted: Vec<&Node> = nodes.iter().filter(|n| node_name(n) != me).collect();
    sorted.sort_by(|a, b| node_name(a).cmp(node_name(b)));
    for node in sorted {
        let name = node_name(node).to_owned();
        // Only nodes run by a kube subnet manager take part; others are
        // not ours to judge (flannel ignores them silently too).
        if annotation(node, ann::KUBE_SUBNET_MANAGER) != Some("true") {
            continue;
        }
        match remote(node, conf, facts, local_v4, local_v6, &v4, &v6) {
            Ok((r4, r6)) => {
                v4.extend(r4);
                v6.extend(r6);
            }
            Err(reason) => skipped.push(Skipped { node: name, reason }),
        }
    }
    v4.sort_by_key(|r| r.subnet);
    v6.sort_by_key(|r| r.subnet);
    (v4, v6, skipped)
}

fn path(
    direct: bool,
    facts: &UnderlayFacts,
    public: IpAddr,
    vtep: IpAddr,
    data: BackendData,
) -> RemotePath {
    if direct && facts.connected.iter().any(|n| n.contains(&public)) {
        RemotePath::Direct
    } else {
        RemotePath::Vxlan {
            vtep,
            mac: data.vtep_mac,
        }
    }
}

fn check_mac(data: BackendData) -> Result<BackendData, String> {
    let m = data.vtep_mac.0;
    if m == [0; 6] || m[0] & 1 == 1 {
        return Err(format!(
            "VtepMAC {} is not a unicast address",
            data.vtep_mac
        ));
    }
    Ok(data)
}

#[allow(clippy::too_many_arguments)]
fn remote(
    node: &Node,
    conf: &NetConf,
    facts: &UnderlayFacts,
    local_v4: Option<LocalSubnet<Ipv4Net>>,
    local_v6: Option<LocalSubnet<Ipv6Net>>,
    taken4: &[RemoteNode],
    taken6: &[RemoteNode],
) -> Result<(Option<RemoteNode>, Option<RemoteNode>), String> {
    let name = node_name(node).to_owned();
    let ty = annotation(node, ann::BACKEND_TYPE).unwrap_or_default();
    if ty != ann::VXLAN {
        return Err(format!("backend-type {ty:?} is not vxlan"));
    }
    let (sub4, sub6) = pod_cidrs(node)?;
    let direct = conf.backend.direct_routing;
    let mut r4 = None;
    let mut r6 = None;
    if let Some(local) = local_v4 {
        let public = ann::parse_public_ip(annotation(node, ann::PUBLIC_IP).unwrap_or_default())
            .map_err(|e| e.to_string())?;
        let data = ann::parse_backend_data(
            ann::BACKEND_DATA,
            annotation(node, ann::BACKEND_DATA).unwrap_or_default(),
        )
        .map_err(|e| e.to_string())
        .and_then(check_mac)?;
        let subnet = sub4.ok_or("missing IPv4 address on spec.podCIDRs")?;
        check_subnet(
            subnet.into(),
            local.network.into(),
            local.subnet.into(),
            taken4,
        )?;
        let public = IpAddr::V4(public);
        r4 = Some(RemoteNode {
            node: name.clone(),
            subnet: subnet.into(),
            public_ip: public,
            path: path(direct, facts, public, IpAddr::V4(subnet.network()), data),
        });
    }
    if let Some(local) = local_v6 {
        let public = ann::parse_public_ipv6(annotation(node, ann::PUBLIC_IPV6).unwrap_or_default())
            .map_err(|e| e.to_string())?;
        let data = ann::parse_backend_data(
            ann::BACKEND_V6_DATA,
            annotation(node, ann::BACKEND_V6_DATA).unwrap_or_default(),
        )
        .map_err(|e| e.to_string())
        .and_then(check_mac)?;
        let subnet = sub6.ok_or("missing IPv6 address on spec.podCIDRs")?;
        check_subnet(
            subnet.into(),
            local.network.into(),
            local.subnet.into(),
            taken6,
        )?;
        let public = IpAddr::V6(public);
        r6 = Some(RemoteNode {
            node: name,
            subnet: subnet.into(),
            public_ip: public,
            path: path(direct, facts, public, IpAddr::V6(subnet.network()), data),
        });
    }
    Ok((r4, r6))
}

/// A remote subnet must lie inside the cluster network (a route for
/// anything else, e.g. `0.0.0.0/0`, would hijack the node's traffic) and
/// must not overlap ours or an earlier node's.
fn check_subnet(
    subnet: IpNet,
    network: IpNet,
    own: IpNet,
    taken: &[RemoteNode],
) -> Result<(), String> {
    if !network.contains(&subnet) {
        return Err(format!(
            "podCIDR {subnet} is outside the overlay network {network}"
        ));
    }
    let overlaps = |a: &IpNet, b: &IpNet| a.contains(&b.network()) || b.contains(&a.network());
    if overlaps(&subnet, &own) {
        return Err(format!("podCIDR {subnet} overlaps this node's {own}"));
    }
    if let Some(other) = taken.iter().find(|r| overlaps(&r.subnet, &subnet)) {
        return Err(format!(
            "podCIDR {subnet} overlaps node {:?}'s {}",
            other.node, other.subnet
        ));
    }
    Ok(())
}

/// The incremental change from `old` to `new` remotes: entries to remove
/// (gone or changed) and to add (new or changed). A changed node is in
/// both, so its old neighbour, FDB entry and route go before the new ones
/// are written.
pub fn diff_remotes(old: &[RemoteNode], new: &[RemoteNode]) -> (Vec<RemoteNode>, Vec<RemoteNode>) {
    let removed = old.iter().filter(|r| !new.contains(r)).cloned().collect();
    let added = new.iter().filter(|r| !old.contains(r)).cloned().collect();
    (removed, added)
}
