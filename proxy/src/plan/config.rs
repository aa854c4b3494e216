//! The planner's configuration and the facts about this node it needs.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use ipvs_sys::{AddressFamily, Scheduler};
use k8s_openapi::api::core::v1::Node;

use crate::model::{LABEL_TOPOLOGY_ZONE, parse_cidr, parse_ip};

/// Which node addresses NodePorts listen on (`--nodeport-addresses`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NodePortAddresses {
    /// Every node address (the flag unset): all of [`NodeFacts::addresses`]
    /// except loopback and IPv6 link-local.
    #[default]
    All,
    /// Only the node's primary IP of each family (`primary`). A family
    /// without a primary IP falls back to all addresses, as kube-proxy does.
    Primary,
    /// Node addresses inside these CIDRs. As in kube-proxy, the list is
    /// split by family, and a family with no CIDR in the list (or with a
    /// `/0`) uses all its addresses. Loopback is never used.
    Cidrs(Vec<IpNet>),
}

/// Guards against huge objects: a Service whose plan would exceed these is
/// not planned (and is reported), so it cannot starve the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most virtual servers one Service may produce (ports × addresses).
    pub max_virtual_servers_per_service: usize,
    /// Most real servers one Service may produce, summed over its virtual
    /// servers.
    pub max_real_servers_per_service: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_virtual_servers_per_service: 65_536,
            max_real_servers_per_service: 1_000_000,
        }
    }
}

/// Configuration the planner depends on. A change to any of it means every
/// Service must be re-planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannerConfig {
    /// Default IPVS scheduler (`--ipvs-scheduler`; kube-proxy's default is
    /// `rr`). Services may override it by annotation.
    pub scheduler: Scheduler,
    /// `--masquerade-all`. Does not change the planner's output (it selects
    /// the `KUBE-CLUSTER-IP` match in the iptables rules); carried here so
    /// the rule renderer reads the same configuration.
    pub masquerade_all: bool,
    /// `--cluster-cidrs` for local-traffic detection. Like `masquerade_all`
    /// it shapes iptables rules, not sets or virtual servers.
    pub cluster_cidrs: Vec<IpNet>,
    /// `--nodeport-addresses`.
    pub node_port_addresses: NodePortAddresses,
    /// This proxy's `service.kubernetes.io/service-proxy-name`. `None` (the
    /// kube-proxy default) handles only objects without the label; `Some(n)`
    /// handles unlabelled objects and those labelled `n`.
    pub service_proxy_name: Option<String>,
    /// Plan IPv4.
    pub ipv4: bool,
    /// Plan IPv6.
    pub ipv6: bool,
    /// The `PreferSameTrafficDistribution` feature gate (GA and on in 1.35):
    /// honour node hints (`hints.forNodes`).
    pub prefer_same_traffic_distribution: bool,
    /// Size limits per Service.
    pub limits: Limits,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        Self {
            scheduler: Scheduler::RoundRobin,
            masquerade_all: false,
            cluster_cidrs: Vec::new(),
            node_port_addresses: NodePortAddresses::All,
            service_proxy_name: None,
            ipv4: true,
            ipv6: true,
            prefer_same_traffic_distribution: true,
            limits: Limits::default(),
        }
    }
}

impl PlannerConfig {
    /// Whether `family` is planned.
    pub fn family_enabled(&self, family: AddressFamily) -> bool {
        match family {
            AddressFamily::Ipv4 => self.ipv4,
            AddressFamily::Ipv6 => self.ipv6,
        }
    }
}

/// What the planner knows about this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFacts {
    /// The node's name; an endpoint is local when its `nodeName` equals it
    /// (never when it is empty).
    pub name: String,
    /// The node's `topology.kubernetes.io/zone` label.
    pub zone: Option<String>,
    /// The node's primary IPs, at most one per family (kube-proxy's
    /// `nodeIP`s: the first InternalIP, else ExternalIP, of each family).
    /// Used for `--nodeport-addresses primary` and to decide whether a
    /// `loadBalancerSourceRanges` entry admits this node.
    pub primary_ips: Vec<IpAddr>,
    /// Every local address except those on `kube-ipvs0`, as the reconciler
    /// discovers them. NodePort virtual servers go on these (filtered, see
    /// [`NodePortAddresses`]); an externalIP or LoadBalancer IP found here
    /// is already on another interface and is not bound on `kube-ipvs0`.
    pub addresses: BTreeSet<IpAddr>,
}

impl NodeFacts {
    /// Facts from the Node object (name, zone label, primary IPs from
    /// `status.addresses`) plus the addresses the reconciler found.
    pub fn from_node(node: &Node, addresses: impl IntoIterator<Item = IpAddr>) -> Self {
        let zone = node
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_TOPOLOGY_ZONE))
            .cloned();
        let listed = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .map(Vec::as_slice)
            .unwrap_or_default();
        // kube-proxy's GetNodeHostIPs: InternalIPs first, then ExternalIPs;
        // the first one, plus the first of the other family.
        let mut all = Vec::new();
        for kind in ["InternalIP", "ExternalIP"] {
            all.extend(
                listed
                    .iter()
                    .filter(|a| a.type_ == kind)
                    .filter_map(|a| parse_ip(&a.address)),
            );
        }
        let mut primary_ips: Vec<IpAddr> = Vec::new();
        if let Some(first) = all.first() {
            primary_ips.push(*first);
            if let Some(other) = all.iter().find(|ip| ip.is_ipv4() != first.is_ipv4()) {
                primary_ips.push(*other);
            }
        }
        Self {
            name: node.metadata.name.clone().unwrap_or_default(),
            zone,
            primary_ips,
            addresses: addresses.into_iter().collect(),
        }
    }

    /// The primary IP of `family`, if known.
    pub fn primary_ip(&self, family: AddressFamily) -> Option<IpAddr> {
        self.primary_ips
            .iter()
            .copied()
            .find(|ip| AddressFamily::of(ip) == family)
    }

    /// Whether an endpoint on `node_name` is on this node.
    pub fn is_local(&self, node_name: Option<&str>) -> bool {
        !self.name.is_empty() && node_name == Some(self.name.as_str())
    }

    /// The addresses NodePort virtual servers of `family` listen on, in
    /// address order: [`NodeFacts::addresses`] of that family without
    /// loopback, unspecified or IPv6 link-local addresses, filtered by
    /// `node_port_addresses`.
    pub fn node_port_ips(&self, family: AddressFamily, npa: &NodePortAddresses) -> Vec<IpAddr> {
        let candidates = self.addresses.iter().copied().filter(|ip| {
            AddressFamily::of(ip) == family
                && !ip.is_loopback()
                && !ip.is_unspecified()
                && !matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local())
        });
        match npa {
            NodePortAddresses::All => candidates.collect(),
            NodePortAddresses::Primary => match self.primary_ip(family) {
                Some(p) => candidates.filter(|ip| *ip == p).collect(),
                None => candidates.collect(),
            },
            NodePortAddresses::Cidrs(cidrs) => {
                let mine: Vec<&IpNet> = cidrs
                    .iter()
                    .filter(|c| AddressFamily::of(&c.addr()) == family)
                    .collect();
                if mine.is_empty() || mine.iter().any(|c| c.prefix_len() == 0) {
                    candidates.collect()
                } else {
                    candidates
                        .filter(|ip| mine.iter().any(|c| c.contains(ip)))
                        .collect()
                }
            }
        }
    }

    /// The addresses that decide whether a `loadBalancerSourceRanges` entry
    /// admits this node: the primary IP of `family` (kube-proxy's rule);
    /// without one, every non-loopback node address of that family.
    pub fn source_range_ips(&self, family: AddressFamily) -> Vec<IpAddr> {
        match self.primary_ip(family) {
            Some(p) => vec![p],
            None => self
                .addresses
                .iter()
                .copied()
                .filter(|ip| AddressFamily::of(ip) == family && !ip.is_loopback())
                .collect(),
        }
    }
}

/// The node's pod CIDRs for `--detect-local-mode NodeCIDR`: the first valid
/// CIDR of each family in `spec.podCIDRs` (or the older single
/// `spec.podCIDR`), IPv4 first, as kube-proxy's `getLocalDetectors` picks
/// them. Unparsable entries are skipped. Empty while the node has no pod
/// CIDR allocated (kube-proxy then waits before programming anything).
pub fn node_pod_cidrs(node: &Node) -> Vec<IpNet> {
    let Some(spec) = node.spec.as_ref() else {
        return Vec::new();
    };
    let listed: Vec<&str> = match spec.pod_cidrs.as_deref() {
        Some(l) if !l.is_empty() => l.iter().map(String::as_str).collect(),
        _ => spec.pod_cidr.as_deref().into_iter().collect(),
    };
    let parsed: Vec<IpNet> = listed.into_iter().filter_map(parse_cidr).collect();
    [AddressFamily::Ipv4, AddressFamily::Ipv6]
        .into_iter()
        .filter_map(|f| {
            parsed
                .iter()
                .find(|n| AddressFamily::of(&n.addr()) == f)
                .copied()
        })
        .collect()
}
