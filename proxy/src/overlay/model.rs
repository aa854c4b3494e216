//! The values the overlay's pure side hands to its kernel side: what the
//! VXLAN device must look like and how each remote node's pod subnet is
//! reached. Both halves depend only on these types, so the planner is tested
//! without root and the kernel reconciler without an API server.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// An Ethernet address (a VTEP MAC). Displays and parses as flannel writes
/// it: lowercase, colon-separated (`aa:bb:cc:dd:ee:ff`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// True for a unicast, locally administered address (what flannel
    /// generates: `b[0] = (b[0] & 0xfe) | 0x02`).
    pub fn is_local_unicast(&self) -> bool {
        self.0[0] & 0x03 == 0x02
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a MAC address string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: want six colon-separated hex octets")]
pub struct InvalidMac(pub String);

impl FromStr for MacAddr {
    type Err = InvalidMac;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(|| InvalidMac(s.to_owned()))?;
            if part.is_empty() || part.len() > 2 {
                return Err(InvalidMac(s.to_owned()));
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| InvalidMac(s.to_owned()))?;
        }
        if parts.next().is_some() {
            return Err(InvalidMac(s.to_owned()));
        }
        Ok(MacAddr(out))
    }
}

/// The VXLAN device one address family needs (`flannel.<VNI>` or
/// `flannel-v6.<VNI>`), as flannel's vxlan backend creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    /// Link name, e.g. `flannel.1`.
    pub name: String,
    /// VXLAN network identifier.
    pub vni: u32,
    /// UDP destination port; `None` leaves the kernel default (8472).
    pub port: Option<u16>,
    /// Index of the underlay (external) interface.
    pub underlay_index: u32,
    /// This node's public (underlay) address, the tunnel's local end.
    pub local: IpAddr,
    /// Device MTU (underlay or configured MTU minus 50).
    pub mtu: u32,
    /// VXLAN learning (flannel default: off).
    pub learning: bool,
    /// Group Based Policy extension (flannel default: off).
    pub gbp: bool,
    /// The VTEP MAC the device must carry.
    pub mac: MacAddr,
    /// The one address the device holds: this node's subnet network address
    /// as /32 (or /128), e.g. `10.244.1.0/32`.
    pub address: IpNet,
    /// The cluster network (`Network` / `IPv6Network`): other addresses
    /// inside it found on the device are removed, as flannel does.
    pub network: IpNet,
}

/// The device as found or created in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceState {
    /// Link name.
    pub name: String,
    /// Interface index.
    pub index: u32,
    /// The MAC the device actually carries (must equal the spec's).
    pub mac: MacAddr,
    /// Device MTU.
    pub mtu: u32,
}

/// How a remote node's pod subnet is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RemotePath {
    /// Through the VXLAN device: neighbour `vtep lladdr mac permanent`, FDB
    /// `mac dst public_ip self permanent`, route `subnet via vtep onlink`.
    Vxlan {
        /// The remote subnet's network address (`.0`), the route's gateway.
        vtep: IpAddr,
        /// The remote VTEP MAC from its backend-data annotation.
        mac: MacAddr,
    },
    /// DirectRouting: the remote node is on the same L2 segment; route
    /// `subnet via public_ip` over the underlay, no neighbour or FDB entry.
    Direct,
}

/// One remote node's pod subnet and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteNode {
    /// Node name (for logs and Events only).
    pub node: String,
    /// The remote node's pod subnet (from its podCIDRs).
    pub subnet: IpNet,
    /// The remote node's public (underlay) address.
    pub public_ip: IpAddr,
    /// VXLAN or direct.
    pub path: RemotePath,
}

/// Everything one address family of the overlay must have in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredOverlay {
    /// The local VXLAN device.
    pub device: DeviceSpec,
    /// Every remote node to be reachable, sorted by subnet.
    pub remotes: Vec<RemoteNode>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trips_in_flannel_form() {
        let mac: MacAddr = "0e:3f:A0:01:ff:7c".parse().unwrap();
        assert_eq!(mac.to_string(), "0e:3f:a0:01:ff:7c");
        assert!(mac.is_local_unicast());
        assert!("0e:3f:a0:01:ff".parse::<MacAddr>().is_err());
        assert!("0e:3f:a0:01:ff:7c:00".parse::<MacAddr>().is_err());
        assert!("0e:3f:a0:01:ff:zz".parse::<MacAddr>().is_err());
        assert!("0e:3f:a0:01:ff:".parse::<MacAddr>().is_err());
    }
}
