//! The ipsets kube-proxy's IPVS mode uses, as the desired state names
//! them: which sets, their members, which member fits which set. The
//! planner fills them ([`IpSets`] in [`super::DesiredState`]); `netfilter`
//! renders and reads them in ipset's text forms.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use ipvs_sys::{AddressFamily, Protocol};

/// The 17 ipsets of kube-proxy's IPVS mode (`pkg/proxy/ipvs/ipset.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SetKind {
    /// `KUBE-LOOP-BACK` (hash:ip,port,ip): endpoint IP,port,endpoint IP, for
    /// hairpin masquerade.
    LoopBack,
    /// `KUBE-CLUSTER-IP` (hash:ip,port): ClusterIP,port.
    ClusterIp,
    /// `KUBE-EXTERNAL-IP` (hash:ip,port).
    ExternalIp,
    /// `KUBE-EXTERNAL-IP-LOCAL` (hash:ip,port): externalTrafficPolicy Local.
    ExternalIpLocal,
    /// `KUBE-LOAD-BALANCER` (hash:ip,port).
    LoadBalancer,
    /// `KUBE-LOAD-BALANCER-LOCAL` (hash:ip,port).
    LoadBalancerLocal,
    /// `KUBE-LOAD-BALANCER-FW` (hash:ip,port): LB entries with source ranges.
    LoadBalancerFw,
    /// `KUBE-LOAD-BALANCER-SOURCE-IP` (hash:ip,port,ip).
    LoadBalancerSourceIp,
    /// `KUBE-LOAD-BALANCER-SOURCE-CIDR` (hash:ip,port,net).
    LoadBalancerSourceCidr,
    /// `KUBE-NODE-PORT-TCP` (bitmap:port).
    NodePortTcp,
    /// `KUBE-NODE-PORT-LOCAL-TCP` (bitmap:port).
    NodePortLocalTcp,
    /// `KUBE-NODE-PORT-UDP` (bitmap:port).
    NodePortUdp,
    /// `KUBE-NODE-PORT-LOCAL-UDP` (bitmap:port).
    NodePortLocalUdp,
    /// `KUBE-NODE-PORT-SCTP-HASH` (hash:ip,port): nodeIP,port.
    NodePortSctpHash,
    /// `KUBE-NODE-PORT-LOCAL-SCTP-HASH` (hash:ip,port).
    NodePortLocalSctpHash,
    /// `KUBE-HEALTH-CHECK-NODE-PORT` (bitmap:port).
    HealthCheckNodePort,
    /// `KUBE-IPVS-IPS` (hash:ip): every address on kube-ipvs0.
    IpvsIps,
}

impl SetKind {
    /// Every set, in kube-proxy's order.
    pub const ALL: [SetKind; 17] = [
        Self::LoopBack,
        Self::ClusterIp,
        Self::ExternalIp,
        Self::ExternalIpLocal,
        Self::LoadBalancer,
        Self::LoadBalancerLocal,
        Self::LoadBalancerFw,
        Self::LoadBalancerSourceIp,
        Self::LoadBalancerSourceCidr,
        Self::NodePortTcp,
        Self::NodePortLocalTcp,
        Self::NodePortUdp,
        Self::NodePortLocalUdp,
        Self::NodePortSctpHash,
        Self::NodePortLocalSctpHash,
        Self::HealthCheckNodePort,
        Self::IpvsIps,
    ];

    /// The name without family prefix, e.g. `CLUSTER-IP`.
    pub fn stem(self) -> &'static str {
        match self {
            Self::LoopBack => "LOOP-BACK",
            Self::ClusterIp => "CLUSTER-IP",
            Self::ExternalIp => "EXTERNAL-IP",
            Self::ExternalIpLocal => "EXTERNAL-IP-LOCAL",
            Self::LoadBalancer => "LOAD-BALANCER",
            Self::LoadBalancerLocal => "LOAD-BALANCER-LOCAL",
            Self::LoadBalancerFw => "LOAD-BALANCER-FW",
            Self::LoadBalancerSourceIp => "LOAD-BALANCER-SOURCE-IP",
            Self::LoadBalancerSourceCidr => "LOAD-BALANCER-SOURCE-CIDR",
            Self::NodePortTcp => "NODE-PORT-TCP",
            Self::NodePortLocalTcp => "NODE-PORT-LOCAL-TCP",
            Self::NodePortUdp => "NODE-PORT-UDP",
            Self::NodePortLocalUdp => "NODE-PORT-LOCAL-UDP",
            Self::NodePortSctpHash => "NODE-PORT-SCTP-HASH",
            Self::NodePortLocalSctpHash => "NODE-PORT-LOCAL-SCTP-HASH",
            Self::HealthCheckNodePort => "HEALTH-CHECK-NODE-PORT",
            Self::IpvsIps => "IPVS-IPS",
        }
    }

    /// The ipset type, e.g. `hash:ip,port`.
    pub fn set_type(self) -> &'static str {
        match self {
            Self::LoopBack | Self::LoadBalancerSourceIp => "hash:ip,port,ip",
            Self::LoadBalancerSourceCidr => "hash:ip,port,net",
            Self::NodePortTcp
            | Self::NodePortLocalTcp
            | Self::NodePortUdp
            | Self::NodePortLocalUdp
            | Self::HealthCheckNodePort => "bitmap:port",
            Self::IpvsIps => "hash:ip",
            _ => "hash:ip,port",
        }
    }
}

/// A set of one family: `KUBE-CLUSTER-IP` or `KUBE-6-CLUSTER-IP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SetName {
    /// Which set.
    pub kind: SetKind,
    /// Which family's instance.
    pub family: AddressFamily,
}

impl SetName {
    /// The kernel name: `KUBE-` or `KUBE-6-` plus the stem, cut to 31
    /// characters as kube-proxy does (`KUBE-6-LOAD-BALANCER-SOURCE-CID`).
    pub fn name(&self) -> String {
        let prefix = match self.family {
            AddressFamily::Ipv4 => "KUBE-",
            AddressFamily::Ipv6 => "KUBE-6-",
        };
        let mut n = format!("{prefix}{}", self.kind.stem());
        n.truncate(31);
        n
    }
}

/// One member of a set, typed by the set's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SetEntry {
    /// `hash:ip`.
    Ip(IpAddr),
    /// `hash:ip,port`: address, protocol and port.
    IpPort {
        /// Address.
        ip: IpAddr,
        /// Protocol.
        protocol: Protocol,
        /// Port.
        port: u16,
    },
    /// `hash:ip,port,ip`.
    IpPortIp {
        /// First address.
        ip: IpAddr,
        /// Protocol.
        protocol: Protocol,
        /// Port.
        port: u16,
        /// Second address.
        ip2: IpAddr,
    },
    /// `hash:ip,port,net`.
    IpPortNet {
        /// Address.
        ip: IpAddr,
        /// Protocol.
        protocol: Protocol,
        /// Port.
        port: u16,
        /// Network.
        net: IpNet,
    },
    /// `bitmap:port`.
    Port(u16),
}

/// Desired contents of every set of ours. A set absent from the map is empty.
pub type IpSets = BTreeMap<SetName, BTreeSet<SetEntry>>;

impl SetKind {
    /// Whether the set is a `bitmap:port` (no address family of its own).
    pub fn is_bitmap(self) -> bool {
        self.set_type() == "bitmap:port"
    }

    /// The set whose (family-dependent) kernel name is `name`, if it is one of
    /// ours.
    pub fn from_name(name: &str) -> Option<SetName> {
        [AddressFamily::Ipv4, AddressFamily::Ipv6]
            .into_iter()
            .flat_map(|family| {
                Self::ALL
                    .into_iter()
                    .map(move |kind| SetName { kind, family })
            })
            .find(|set| set.name() == name)
    }
}

impl SetName {
    /// Every set of ours in both families: IPv4 first, in kube-proxy's order.
    pub fn all() -> impl Iterator<Item = SetName> {
        [AddressFamily::Ipv4, AddressFamily::Ipv6]
            .into_iter()
            .flat_map(|family| {
                SetKind::ALL
                    .into_iter()
                    .map(move |kind| SetName { kind, family })
            })
    }
}

impl SetEntry {
    /// Whether this entry can be stored in `set`: the variant matches the
    /// set's type and every address (and network) is of the set's family.
    /// Bitmap sets take ports whatever their family.
    pub fn fits(&self, set: &SetName) -> bool {
        let fam = |ip: &IpAddr| AddressFamily::of(ip) == set.family;
        match (self, set.kind.set_type()) {
            (Self::Ip(ip), "hash:ip") => fam(ip),
            (Self::IpPort { ip, .. }, "hash:ip,port") => fam(ip),
            (Self::IpPortIp { ip, ip2, .. }, "hash:ip,port,ip") => fam(ip) && fam(ip2),
            (Self::IpPortNet { ip, net, .. }, "hash:ip,port,net") => fam(ip) && fam(&net.addr()),
            (Self::Port(_), "bitmap:port") => true,
            _ => false,
        }
    }

    /// The entries the kernel will actually hold for this one.
    ///
    /// ipset stores a `hash:ip,port,net` network by its prefix (host bits
    /// cleared) and refuses a zero-length prefix, so a `/0` is stored as the
    /// two halves `/1` (`0.0.0.0/1` + `128.0.0.0/1`, `::/1` + `8000::/1`);
    /// every other entry is stored as is.
    pub fn canonical(&self) -> Vec<SetEntry> {
        match *self {
            Self::IpPortNet {
                ip,
                protocol,
                port,
                net,
            } => {
                let net = net.trunc();
                if net.prefix_len() == 0 {
                    let halves = match net {
                        IpNet::V4(_) => {
                            ["0.0.0.0/1".parse::<IpNet>(), "128.0.0.0/1".parse::<IpNet>()]
                        }
                        IpNet::V6(_) => ["::/1".parse::<IpNet>(), "8000::/1".parse::<IpNet>()],
                    };
                    halves
                        .into_iter()
                        .flatten()
                        .map(|net| Self::IpPortNet {
                            ip,
                            protocol,
                            port,
                            net,
                        })
                        .collect()
                } else {
                    vec![Self::IpPortNet {
                        ip,
                        protocol,
                        port,
                        net,
                    }]
                }
            }
            other => vec![other],
        }
    }
}
