//! What the node should look like: the planner's output and the
//! reconcilers' input.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use ipvs_sys::{Destination, Protocol, Service, ServiceKey};

use super::sets::IpSets;

/// Which Service (and which of its ports) a virtual server implements.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServicePortRef {
    /// Namespace of the Service.
    pub namespace: String,
    /// Name of the Service.
    pub name: String,
    /// Name of the port within the Service (may be empty).
    pub port_name: String,
}

/// One IPVS virtual server and the real servers it should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualServer {
    /// The IPVS service: key, scheduler, persistence.
    pub service: Service,
    /// Real servers by address.
    pub destinations: BTreeMap<SocketAddr, Destination>,
    /// The Service port it comes from.
    pub owner: ServicePortRef,
}

/// A `healthCheckNodePort` server (externalTrafficPolicy: Local).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Namespace of the Service.
    pub namespace: String,
    /// Name of the Service.
    pub name: String,
    /// Ready endpoints of the Service on this node.
    pub local_endpoints: usize,
}

/// A `KUBE-IPVS-OUT-FILTER` entry: drop traffic this node sends to a
/// LoadBalancer IP through IPVS when no source range admits the node
/// (kubernetes#119656).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LbOutFilter {
    /// The LoadBalancer IP.
    pub vip: IpAddr,
    /// Its protocol.
    pub protocol: Protocol,
    /// Its port.
    pub port: u16,
}

/// Everything the planner wants on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredState {
    /// IPVS virtual servers by key.
    pub virtual_servers: BTreeMap<ServiceKey, VirtualServer>,
    /// Addresses to bind on `kube-ipvs0` (ClusterIPs, and externalIPs and
    /// LoadBalancer IPs that are not on another local interface).
    pub bound_addresses: BTreeSet<IpAddr>,
    /// ipset contents, both families.
    pub sets: IpSets,
    /// `KUBE-IPVS-OUT-FILTER` entries.
    pub lb_out_filters: BTreeSet<LbOutFilter>,
    /// Health-check servers by port.
    pub health_checks: BTreeMap<u16, HealthCheck>,
}
