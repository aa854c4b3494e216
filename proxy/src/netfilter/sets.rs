//! ipset's text forms of the sets the plan names ([`crate::plan::sets`]):
//! kube-proxy's comments, `create` options, members as `ipset save` prints
//! them.

use std::net::IpAddr;

use ipnet::IpNet;
use ipvs_sys::{AddressFamily, Protocol};

use crate::plan::{SetEntry, SetKind, SetName};

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
}

impl SetName {
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
