//! Planning one Service: its contribution to the [`DesiredState`].

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use ipvs_sys::{
    AddressFamily, Destination, Protocol, Scheduler, Service, ServiceFlags, ServiceKey,
};

use super::sets::{SetEntry, SetKind, SetName};
use super::topology::{categorize, gather};
use super::{
    DesiredState, HealthCheck, LbOutFilter, NodeFacts, PlannerConfig, ServicePortRef, VirtualServer,
};
use crate::model::{EndpointSliceView, Problem, ServicePortView, ServiceView};

/// One Service's contribution to the node's desired state.
///
/// The full [`DesiredState`] is the union of every Service's `state`
/// ([`DesiredState::from_plans`]), so a shell can keep one `ServicePlan` per
/// Service, re-plan only the Services whose objects changed, and diff old
/// against new plan to touch only what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePlan {
    /// Namespace of the Service.
    pub namespace: String,
    /// Name of the Service.
    pub name: String,
    /// Its virtual servers, addresses, set entries, out-filters and health
    /// check.
    pub state: DesiredState,
    /// What each of its virtual servers is for (same keys as
    /// `state.virtual_servers`); decides conflicts between Services.
    pub frontends: BTreeMap<ServiceKey, Frontend>,
    /// Problems with the Service and its EndpointSlices.
    pub problems: Vec<Problem>,
}

/// What a virtual server is for. When two Services claim the same virtual
/// server, the smaller kind wins (then the Service first in namespace/name
/// order): addresses the cluster allocates beat addresses users write, so
/// an `externalIPs` entry cannot take over another Service's ClusterIP,
/// LoadBalancer IP or NodePort (CVE-2020-8554).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Frontend {
    /// A ClusterIP:port.
    ClusterIp,
    /// A LoadBalancer ingress IP:port.
    LoadBalancer,
    /// A node address:NodePort.
    NodePort,
    /// An externalIP:port.
    ExternalIp,
}

impl std::fmt::Display for Frontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ClusterIp => "ClusterIP",
            Self::LoadBalancer => "LoadBalancer IP",
            Self::NodePort => "NodePort",
            Self::ExternalIp => "externalIP",
        })
    }
}

impl ServicePlan {
    fn empty(svc: &ServiceView) -> Self {
        Self {
            namespace: svc.namespace.clone(),
            name: svc.name.clone(),
            state: DesiredState::default(),
            frontends: BTreeMap::new(),
            problems: Vec::new(),
        }
    }
}

/// Plans one Service from its view and its EndpointSlices (slices of other
/// Services are skipped, so passing a superset is harmless).
///
/// Pure and infallible: what cannot be planned is reported in
/// [`ServicePlan::problems`]. The result depends only on the arguments, and
/// not on the order of `slices`.
pub fn plan_service<'a, I>(
    svc: &ServiceView,
    slices: I,
    node: &NodeFacts,
    config: &PlannerConfig,
) -> ServicePlan
where
    I: IntoIterator<Item = &'a EndpointSliceView>,
{
    let mut plan = ServicePlan::empty(svc);
    plan.problems.extend(svc.problems.iter().cloned());
    let mut slices: Vec<&EndpointSliceView> = slices
        .into_iter()
        .filter(|s| s.namespace == svc.namespace && s.service_name == svc.name)
        .collect();
    slices.sort_by(|a, b| a.name.cmp(&b.name));
    slices.dedup_by(|a, b| a.name == b.name);
    for s in &slices {
        plan.problems.extend(s.problems.iter().cloned());
    }

    let scheduler = svc
        .scheduler
        .clone()
        .unwrap_or_else(|| config.scheduler.clone());
    let flags = svc.sched_flags.unwrap_or(match scheduler {
        // kube-proxy sets FlagSourceHash (0x10, mh-port) for mh.
        Scheduler::MaglevHashing => ServiceFlags::MH_PORT,
        _ => ServiceFlags::EMPTY,
    });
    let template = Template {
        scheduler,
        flags,
        affinity_timeout: svc.affinity_timeout,
    };

    // Per family: what the Service has there.
    let families: Vec<FamilyInputs> = svc
        .cluster_ips
        .iter()
        .filter(|ip| config.family_enabled(AddressFamily::of(ip)))
        .map(|&cluster_ip| FamilyInputs::new(svc, cluster_ip, node, config))
        .collect();

    // Join endpoints first, so that size limits are checked before building.
    let mut joined = Vec::with_capacity(families.len() * svc.ports.len());
    let (mut vs_total, mut rs_total) = (0usize, 0usize);
    for (fi, f) in families.iter().enumerate() {
        for (pi, port) in svc.ports.iter().enumerate() {
            let eps = gather(&slices, f.family, &port.name, port.protocol, node);
            let vs = f.virtual_servers_per_port(port);
            vs_total = vs_total.saturating_add(vs);
            rs_total = rs_total.saturating_add(vs.saturating_mul(eps.len()));
            joined.push((fi, pi, eps));
        }
    }
    let limits = config.limits;
    if vs_total > limits.max_virtual_servers_per_service
        || rs_total > limits.max_real_servers_per_service
    {
        plan.problems.push(Problem::service(
            &svc.namespace,
            &svc.name,
            format!(
                "too large to plan: {vs_total} virtual servers and {rs_total} real servers \
                 (limits {} and {}); the Service is not proxied",
                limits.max_virtual_servers_per_service, limits.max_real_servers_per_service
            ),
        ));
        return plan;
    }

    let mut b = Builder {
        svc,
        plan: &mut plan,
    };
    let mut local_ready: Vec<HashSet<IpAddr>> = vec![HashSet::new(); families.len()];
    for (fi, pi, eps) in &joined {
        let f = &families[*fi];
        let port = &svc.ports[*pi];
        let externally_accessible =
            port.node_port.is_some() || !f.external_ips.is_empty() || !f.lb_ips.is_empty();
        let uses_cluster = !svc.internal_policy_local || externally_accessible;
        let uses_local =
            svc.internal_policy_local || (svc.external_policy_local && externally_accessible);
        let cat = categorize(
            eps,
            uses_cluster,
            uses_local,
            node,
            config.prefer_same_traffic_distribution,
        );
        let internal = destinations(cat.pick(svc.internal_policy_local));
        let external_own;
        let external =
            if externally_accessible && svc.external_policy_local != svc.internal_policy_local {
                external_own = destinations(cat.pick(svc.external_policy_local));
                &external_own
            } else {
                &internal
            };
        for ep in eps.iter().filter(|e| e.local) {
            if ep.ready && svc.health_check_node_port.is_some() {
                local_ready[*fi].insert(ep.addr.ip());
            }
            // KUBE-LOOP-BACK: every local endpoint, ready or not.
            b.set(
                SetKind::LoopBack,
                f.family,
                SetEntry::IpPortIp {
                    ip: ep.addr.ip(),
                    protocol: port.protocol,
                    port: ep.addr.port(),
                    ip2: ep.addr.ip(),
                },
            );
        }
        b.port(f, port, &template, node, &internal, external);
    }

    // healthCheckNodePort: one server, registered in each planned family's
    // set; its count is the local ready endpoints (distinct IPs over all
    // ports, the larger family's count for dual-stack: one pod has one IP of
    // each family).
    if let Some(hc) = svc.health_check_node_port
        && !families.is_empty()
    {
        for f in &families {
            b.set(SetKind::HealthCheckNodePort, f.family, SetEntry::Port(hc));
        }
        let local_endpoints = local_ready.iter().map(HashSet::len).max().unwrap_or(0);
        b.plan.state.health_checks.insert(
            hc,
            HealthCheck {
                namespace: svc.namespace.clone(),
                name: svc.name.clone(),
                local_endpoints,
            },
        );
    }
    plan
}

/// The settings every virtual server of a Service shares.
struct Template {
    scheduler: Scheduler,
    flags: ServiceFlags,
    affinity_timeout: Option<u32>,
}

impl Template {
    fn service(&self, key: ServiceKey) -> Service {
        let mut s = Service::new(key, self.scheduler.clone());
        s.flags = self.flags;
        match self.affinity_timeout {
            Some(t) => s.persistent(t),
            None => s,
        }
    }
}

/// A Service's addresses in one family.
struct FamilyInputs {
    family: AddressFamily,
    cluster_ip: IpAddr,
    external_ips: Vec<IpAddr>,
    lb_ips: Vec<IpAddr>,
    source_ranges: Vec<IpNet>,
    /// Whether a source range admits this node (kube-proxy's
    /// `allowFromNode`).
    node_allowed: bool,
    node_port_ips: Vec<IpAddr>,
}

impl FamilyInputs {
    fn new(
        svc: &ServiceView,
        cluster_ip: IpAddr,
        node: &NodeFacts,
        config: &PlannerConfig,
    ) -> Self {
        let family = AddressFamily::of(&cluster_ip);
        let of_family = |ip: &&IpAddr| AddressFamily::of(ip) == family;
        let source_ranges: Vec<IpNet> = svc
            .source_ranges
            .iter()
            .filter(|n| AddressFamily::of(&n.addr()) == family)
            .copied()
            .collect();
        let node_allowed = !source_ranges.is_empty() && {
            let node_ips = node.source_range_ips(family);
            source_ranges
                .iter()
                .any(|n| node_ips.iter().any(|ip| n.contains(ip)))
        };
        let node_port_ips = if svc.ports.iter().any(|p| p.node_port.is_some()) {
            node.node_port_ips(family, &config.node_port_addresses)
        } else {
            Vec::new()
        };
        Self {
            family,
            cluster_ip,
            external_ips: svc.external_ips.iter().filter(of_family).copied().collect(),
            lb_ips: svc
                .load_balancer_ips
                .iter()
                .filter(of_family)
                .copied()
                .collect(),
            source_ranges,
            node_allowed,
            node_port_ips,
        }
    }

    fn virtual_servers_per_port(&self, port: &ServicePortView) -> usize {
        let node_ports = if port.node_port.is_some() {
            self.node_port_ips.len()
        } else {
            0
        };
        1 + self.external_ips.len() + self.lb_ips.len() + node_ports
    }
}

fn destinations(addrs: &[SocketAddr]) -> BTreeMap<SocketAddr, Destination> {
    addrs.iter().map(|&a| (a, Destination::masq(a))).collect()
}

/// Splits a `/0` into two `/1`s: `hash:ip,port,net` sets cannot store a
/// zero prefix, and the two halves admit the same sources.
fn storable(net: IpNet) -> Vec<IpNet> {
    if net.prefix_len() != 0 {
        return vec![net];
    }
    match net {
        IpNet::V4(_) => vec![
            IpNet::V4(Ipv4Net::new([0, 0, 0, 0].into(), 1).expect("valid prefix")),
            IpNet::V4(Ipv4Net::new([128, 0, 0, 0].into(), 1).expect("valid prefix")),
        ],
        IpNet::V6(_) => vec![
            IpNet::V6(Ipv6Net::new(0u128.into(), 1).expect("valid prefix")),
            IpNet::V6(Ipv6Net::new((1u128 << 127).into(), 1).expect("valid prefix")),
        ],
    }
}

struct Builder<'p> {
    svc: &'p ServiceView,
    plan: &'p mut ServicePlan,
}

impl Builder<'_> {
    fn set(&mut self, kind: SetKind, family: AddressFamily, entry: SetEntry) {
        self.plan
            .state
            .sets
            .entry(SetName { kind, family })
            .or_default()
            .insert(entry);
    }

    fn bind(&mut self, ip: IpAddr) {
        self.plan.state.bound_addresses.insert(ip);
        self.set(SetKind::IpvsIps, AddressFamily::of(&ip), SetEntry::Ip(ip));
    }

    fn virtual_server(
        &mut self,
        frontend: Frontend,
        port: &ServicePortView,
        service: Service,
        destinations: &BTreeMap<SocketAddr, Destination>,
    ) {
        let key = service.key;
        let vs = VirtualServer {
            service,
            destinations: destinations.clone(),
            owner: ServicePortRef {
                namespace: self.svc.namespace.clone(),
                name: self.svc.name.clone(),
                port_name: port.name.clone(),
            },
        };
        match self.plan.state.virtual_servers.get(&key) {
            None => {
                self.plan.state.virtual_servers.insert(key, vs);
                self.plan.frontends.insert(key, frontend);
            }
            Some(existing) if *existing == vs => {}
            Some(existing) => {
                let first = existing.owner.port_name.clone();
                self.plan.problems.push(Problem::service(
                    &self.svc.namespace,
                    &self.svc.name,
                    format!(
                        "virtual server {key} (port {:?}) collides with the one already \
                         planned for port {first:?} of this Service; the first is kept",
                        port.name
                    ),
                ));
            }
        }
    }

    fn port(
        &mut self,
        f: &FamilyInputs,
        port: &ServicePortView,
        template: &Template,
        node: &NodeFacts,
        internal: &BTreeMap<SocketAddr, Destination>,
        external: &BTreeMap<SocketAddr, Destination>,
    ) {
        let (family, protocol) = (f.family, port.protocol);
        let ip_port = |ip: IpAddr| SetEntry::IpPort {
            ip,
            protocol,
            port: port.port,
        };
        let inet = |ip: IpAddr, p: u16| ServiceKey::Inet {
            protocol,
            addr: SocketAddr::new(ip, p),
        };
        let etp_local = self.svc.external_policy_local;

        // ClusterIP: always bound on kube-ipvs0.
        self.set(SetKind::ClusterIp, family, ip_port(f.cluster_ip));
        self.virtual_server(
            Frontend::ClusterIp,
            port,
            template.service(inet(f.cluster_ip, port.port)),
            internal,
        );
        self.bind(f.cluster_ip);

        // externalIPs.
        for &ip in &f.external_ips {
            let kind = if etp_local {
                SetKind::ExternalIpLocal
            } else {
                SetKind::ExternalIp
            };
            self.set(kind, family, ip_port(ip));
            self.virtual_server(
                Frontend::ExternalIp,
                port,
                template.service(inet(ip, port.port)),
                external,
            );
            if !node.addresses.contains(&ip) {
                self.bind(ip);
            }
        }

        // LoadBalancer IPs.
        for &ip in &f.lb_ips {
            self.set(SetKind::LoadBalancer, family, ip_port(ip));
            if etp_local {
                self.set(SetKind::LoadBalancerLocal, family, ip_port(ip));
            }
            if !f.source_ranges.is_empty() {
                self.set(SetKind::LoadBalancerFw, family, ip_port(ip));
                for net in f.source_ranges.iter().flat_map(|n| storable(*n)) {
                    self.set(
                        SetKind::LoadBalancerSourceCidr,
                        family,
                        SetEntry::IpPortNet {
                            ip,
                            protocol,
                            port: port.port,
                            net,
                        },
                    );
                }
                if f.node_allowed {
                    // Traffic from this node to a local VIP has the VIP as
                    // its source.
                    self.set(
                        SetKind::LoadBalancerSourceIp,
                        family,
                        SetEntry::IpPortIp {
                            ip,
                            protocol,
                            port: port.port,
                            ip2: ip,
                        },
                    );
                } else {
                    self.plan.state.lb_out_filters.insert(LbOutFilter {
                        vip: ip,
                        protocol,
                        port: port.port,
                    });
                }
            }
            self.virtual_server(
                Frontend::LoadBalancer,
                port,
                template.service(inet(ip, port.port)),
                external,
            );
            if !node.addresses.contains(&ip) {
                self.bind(ip);
            }
        }

        // NodePort: one virtual server per node address, never bound.
        if let Some(np) = port.node_port
            && !f.node_port_ips.is_empty()
        {
            let entries: Vec<(SetKind, SetKind, SetEntry)> = match protocol {
                Protocol::Tcp => vec![(
                    SetKind::NodePortTcp,
                    SetKind::NodePortLocalTcp,
                    SetEntry::Port(np),
                )],
                Protocol::Udp => vec![(
                    SetKind::NodePortUdp,
                    SetKind::NodePortLocalUdp,
                    SetEntry::Port(np),
                )],
                Protocol::Sctp => f
                    .node_port_ips
                    .iter()
                    .map(|&ip| {
                        (
                            SetKind::NodePortSctpHash,
                            SetKind::NodePortLocalSctpHash,
                            SetEntry::IpPort {
                                ip,
                                protocol,
                                port: np,
                            },
                        )
                    })
                    .collect(),
            };
            for (all, local, entry) in entries {
                self.set(all, family, entry);
                if etp_local {
                    self.set(local, family, entry);
                }
            }
            for &ip in &f.node_port_ips {
                self.virtual_server(
                    Frontend::NodePort,
                    port,
                    template.service(inet(ip, np)),
                    external,
                );
            }
        }
    }
}
