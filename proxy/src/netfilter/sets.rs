//! The ipsets kube-proxy's IPVS mode uses, as types.

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
    /// kube-proxy's comment for the set (`pkg/proxy/ipvs/ipset.go`), used as
    /// the `--comment` of the iptables rules that match it.
    pub fn comment(self) -> &'static str {
        match self {
            Self::LoopBack => {
                "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose"
            }
            Self::ClusterIp => "Kubernetes service cluster ip + port for masquerade purpose",
            Self::ExternalIp => {
                "Kubernetes service external ip + port for masquerade and filter purpose"
            }
            Self::ExternalIpLocal => {
                "Kubernetes service external ip + port with externalTrafficPolicy=local"
            }
            Self::LoadBalancer => "Kubernetes service lb portal",
            Self::LoadBalancerLocal => {
                "Kubernetes service load balancer ip + port with externalTrafficPolicy=local"
            }
            Self::LoadBalancerFw => {
                "Kubernetes service load balancer ip + port for load balancer with sourceRange"
            }
            Self::LoadBalancerSourceIp => {
                "Kubernetes service load balancer ip + port + source IP for packet filter purpose"
            }
            Self::LoadBalancerSourceCidr => {
                "Kubernetes service load balancer ip + port + source cidr for packet filter purpose"
            }
            Self::NodePortTcp => "Kubernetes nodeport TCP port for masquerade purpose",
            Self::NodePortLocalTcp => {
                "Kubernetes nodeport TCP port with externalTrafficPolicy=local"
            }
            Self::NodePortUdp => "Kubernetes nodeport UDP port for masquerade purpose",
            Self::NodePortLocalUdp => {
                "Kubernetes nodeport UDP port with externalTrafficPolicy=local"
            }
            Self::NodePortSctpHash => {
                "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'"
            }
            Self::NodePortLocalSctpHash => {
                "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash ip:port'"
            }
            Self::HealthCheckNodePort => "Kubernetes health check node port",
            Self::IpvsIps => "Addresses on the ipvs interface",
        }
    }

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

    /// The `create` arguments after the name, as kube-proxy passes them
    /// (`pkg/proxy/ipvs/ipset/ipset.go` `createSet`): hash sets get
    /// `family inet|inet6 hashsize 1024 maxelem 65536`, bitmap sets
    /// `range 0-65535`.
    pub fn create_options(&self) -> String {
        if self.kind.is_bitmap() {
            format!("{} range 0-65535", self.kind.set_type())
        } else {
            format!(
                "{} family {} hashsize 1024 maxelem 65536",
                self.kind.set_type(),
                family_keyword(self.family)
            )
        }
    }
}

/// ipset's name for an address family: `inet` or `inet6`.
pub(crate) fn family_keyword(family: AddressFamily) -> &'static str {
    match family {
        AddressFamily::Ipv4 => "inet",
        AddressFamily::Ipv6 => "inet6",
    }
}

/// ipset's (lower-case) name for a protocol.
pub(crate) fn protocol_keyword(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

fn parse_protocol(s: &str) -> Option<Protocol> {
    match s {
        "tcp" => Some(Protocol::Tcp),
        "udp" => Some(Protocol::Udp),
        "sctp" => Some(Protocol::Sctp),
        _ => None,
    }
}

/// A set member that could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse {text:?} as a member of a {set_type} set")]
pub struct EntryParseError {
    /// The text that was read.
    pub text: String,
    /// The set type it was read for.
    pub set_type: &'static str,
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

    /// Parses a member as `ipset save` prints it for a set of `kind`
    /// (`10.0.0.1,tcp:80`, `10.0.0.1,tcp:80,10.0.0.1`,
    /// `10.0.0.1,tcp:80,10.0.0.0/8`, `8080`, `10.0.0.1`; a host network is
    /// printed without its `/32` or `/128`).
    pub fn parse(kind: SetKind, text: &str) -> Result<SetEntry, EntryParseError> {
        let err = || EntryParseError {
            text: text.to_owned(),
            set_type: kind.set_type(),
        };
        let ip = |s: &str| s.parse::<IpAddr>().map_err(|_| err());
        let proto_port = |s: &str| -> Result<(Protocol, u16), EntryParseError> {
            let (p, port) = s.split_once(':').ok_or_else(err)?;
            let protocol = parse_protocol(p).ok_or_else(err)?;
            let port = port.parse::<u16>().map_err(|_| err())?;
            Ok((protocol, port))
        };
        let parts: Vec<&str> = text.split(',').collect();
        match (kind.set_type(), parts.as_slice()) {
            ("hash:ip", [a]) => Ok(Self::Ip(ip(a)?)),
            ("hash:ip,port", [a, pp]) => {
                let (protocol, port) = proto_port(pp)?;
                Ok(Self::IpPort {
                    ip: ip(a)?,
                    protocol,
                    port,
                })
            }
            ("hash:ip,port,ip", [a, pp, b]) => {
                let (protocol, port) = proto_port(pp)?;
                Ok(Self::IpPortIp {
                    ip: ip(a)?,
                    protocol,
                    port,
                    ip2: ip(b)?,
                })
            }
            ("hash:ip,port,net", [a, pp, n]) => {
                let (protocol, port) = proto_port(pp)?;
                let net = match n.parse::<IpNet>() {
                    Ok(net) => net,
                    Err(_) => IpNet::from(ip(n)?),
                };
                Ok(Self::IpPortNet {
                    ip: ip(a)?,
                    protocol,
                    port,
                    net,
                })
            }
            ("bitmap:port", [p]) => Ok(Self::Port(p.parse::<u16>().map_err(|_| err())?)),
            _ => Err(err()),
        }
    }
}

/// The member as ipset's command line takes it.
impl std::fmt::Display for SetEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::IpPort { ip, protocol, port } => {
                write!(f, "{ip},{}:{port}", protocol_keyword(*protocol))
            }
            Self::IpPortIp {
                ip,
                protocol,
                port,
                ip2,
            } => write!(f, "{ip},{}:{port},{ip2}", protocol_keyword(*protocol)),
            Self::IpPortNet {
                ip,
                protocol,
                port,
                net,
            } => write!(f, "{ip},{}:{port},{net}", protocol_keyword(*protocol)),
            Self::Port(port) => write!(f, "{port}"),
        }
    }
}
