//! VXLAN links: create one with the attributes flannel's vxlan backend uses,
//! read an existing link's VXLAN configuration, MAC and MTU back, and change
//! its MTU or MAC.

use std::net::IpAddr;

use super::link::{
    IFLA_IFNAME, IFLA_INFO_KIND, IFLA_LINKINFO, check_name, decode_link_with, ifinfomsg,
};
use super::neigh::ip_from;
use super::{ACK, RtnlClient};
use crate::error::{DecodeError, Error, ErrorKind, Subject};
use crate::netlink::attr::{AttrWriter, Attrs};
use crate::netlink::message::{Message, NLM_F_CREATE, NLM_F_EXCL};

const RTM_NEWLINK: u16 = 16;
const IFLA_ADDRESS: u16 = 1;
const IFLA_MTU: u16 = 4;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_VXLAN_ID: u16 = 1;
const IFLA_VXLAN_LINK: u16 = 3;
const IFLA_VXLAN_LOCAL: u16 = 4;
const IFLA_VXLAN_TTL: u16 = 5;
const IFLA_VXLAN_TOS: u16 = 6;
const IFLA_VXLAN_LEARNING: u16 = 7;
const IFLA_VXLAN_PROXY: u16 = 11;
const IFLA_VXLAN_RSC: u16 = 12;
const IFLA_VXLAN_L2MISS: u16 = 13;
const IFLA_VXLAN_L3MISS: u16 = 14;
const IFLA_VXLAN_PORT: u16 = 15;
const IFLA_VXLAN_LOCAL6: u16 = 17;
/// A flag attribute: present (empty) when Group Based Policy is on.
const IFLA_VXLAN_GBP: u16 = 23;

/// The tunnel parameters of a VXLAN link (what decides whether an existing
/// link can be kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanConfig {
    /// VXLAN network identifier.
    pub vni: u32,
    /// Index of the underlay link the tunnel sends through.
    pub link: Option<u32>,
    /// The tunnel's local (source) address.
    pub local: Option<IpAddr>,
    /// UDP destination port. On creation `None` leaves the kernel default
    /// (8472); read back, it is what the kernel reports.
    pub port: Option<u16>,
    /// Whether the device learns remote MACs from received packets.
    pub learning: bool,
    /// Group Based Policy extension.
    pub gbp: bool,
}

/// A VXLAN link to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    /// Link name, e.g. `flannel.1`.
    pub name: String,
    /// Tunnel parameters.
    pub config: VxlanConfig,
    /// The MAC to create it with (`None`: the kernel picks a random one).
    pub mac: Option<[u8; 6]>,
    /// The MTU to create it with (`None`: derived by the kernel).
    pub mtu: Option<u32>,
}

/// A link as read back, with its VXLAN configuration if it is a VXLAN link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanLink {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Link kind (`vxlan`, `veth`, ...) when it has one.
    pub kind: Option<String>,
    /// Whether it is administratively up.
    pub up: bool,
    /// Its Ethernet address, if it has a 6-byte one.
    pub mac: Option<[u8; 6]>,
    /// Its MTU.
    pub mtu: Option<u32>,
    /// The VXLAN parameters; `None` unless `kind` is `vxlan`.
    pub vxlan: Option<VxlanConfig>,
}

fn decode_vxlan_data(data: Attrs<'_>) -> Result<VxlanConfig, DecodeError> {
    let mut c = VxlanConfig {
        vni: 0,
        link: None,
        local: None,
        port: None,
        learning: false,
        gbp: false,
    };
    for a in data {
        let a = a?;
        match a.ty {
            IFLA_VXLAN_ID => c.vni = a.u32()?,
            IFLA_VXLAN_LINK => c.link = Some(a.u32()?).filter(|&i| i != 0),
            IFLA_VXLAN_LOCAL | IFLA_VXLAN_LOCAL6 => {
                let ip = ip_from(a.payload)?;
                if !ip.is_unspecified() {
                    c.local = Some(ip);
                }
            }
            IFLA_VXLAN_PORT => c.port = Some(a.be16()?),
            IFLA_VXLAN_LEARNING => c.learning = a.u8()? != 0,
            IFLA_VXLAN_GBP => c.gbp = true,
            _ => {}
        }
    }
    Ok(c)
}

/// Decodes an `RTM_NEWLINK` message with its MAC, MTU and VXLAN data.
pub(crate) fn decode_vxlan_link(msg: &Message<'_>) -> Result<VxlanLink, DecodeError> {
    let (mut mac, mut mtu, mut data) = (None, None, None);
    let link = decode_link_with(
        msg,
        |a| {
            match a.ty {
                IFLA_ADDRESS => mac = a.payload.try_into().ok(),
                IFLA_MTU => mtu = Some(a.u32()?),
                _ => {}
            }
            Ok(())
        },
        |d| data = Some(d),
    )?;
    let vxlan = match link.kind.as_deref() {
        Some("vxlan") => Some(decode_vxlan_data(data.unwrap_or_else(|| Attrs::new(&[])))?),
        _ => None,
    };
    Ok(VxlanLink {
        index: link.index,
        name: link.name,
        kind: link.kind,
        up: link.up,
        mac,
        mtu,
        vxlan,
    })
}

fn write_vxlan(w: &mut AttrWriter<'_>, spec: &VxlanSpec) {
    w.cstr(IFLA_IFNAME, &spec.name);
    if let Some(mac) = spec.mac {
        w.bytes(IFLA_ADDRESS, &mac);
    }
    if let Some(mtu) = spec.mtu {
        w.u32(IFLA_MTU, mtu);
    }
    let info = w.begin_nested(IFLA_LINKINFO);
    w.cstr(IFLA_INFO_KIND, "vxlan");
    let data = w.begin_nested(IFLA_INFO_DATA);
    let c = &spec.config;
    w.u32(IFLA_VXLAN_ID, c.vni);
    if let Some(link) = c.link {
        w.u32(IFLA_VXLAN_LINK, link);
    }
    match c.local {
        Some(IpAddr::V4(v4)) => w.bytes(IFLA_VXLAN_LOCAL, &v4.octets()),
        Some(IpAddr::V6(v6)) => w.bytes(IFLA_VXLAN_LOCAL6, &v6.octets()),
        None => {}
    }
    // As flannel (vishvananda/netlink addVxlanAttrs): no TTL or TOS
    // override, no proxy ARP, no route short circuit, no miss notifications.
    w.u8(IFLA_VXLAN_TTL, 0);
    w.u8(IFLA_VXLAN_TOS, 0);
    w.u8(IFLA_VXLAN_LEARNING, u8::from(c.learning));
    w.u8(IFLA_VXLAN_PROXY, 0);
    w.u8(IFLA_VXLAN_RSC, 0);
    w.u8(IFLA_VXLAN_L2MISS, 0);
    w.u8(IFLA_VXLAN_L3MISS, 0);
    if let Some(port) = c.port {
        w.be16(IFLA_VXLAN_PORT, port);
    }
    if c.gbp {
        w.bytes(IFLA_VXLAN_GBP, &[]);
    }
    w.end_nested(data);
    w.end_nested(info);
}

impl RtnlClient {
    /// The link called `name` with its MAC, MTU and (for a VXLAN link) its
    /// tunnel parameters, or `None` if there is no such link.
    pub fn vxlan_link(&mut self, name: &str) -> Result<Option<VxlanLink>, Error> {
        self.link_by_name(name, decode_vxlan_link)
    }

    /// Creates a VXLAN link (it starts down) and returns it as read back.
    /// An existing link of that name is an [`ErrorKind::Exists`] error; a
    /// missing underlay link is [`ErrorKind::NoSuchLink`].
    pub fn create_vxlan(&mut self, spec: &VxlanSpec) -> Result<VxlanLink, Error> {
        check_name(&spec.name)?;
        let name = &spec.name;
        self.request(
            RTM_NEWLINK,
            ACK | NLM_F_CREATE | NLM_F_EXCL,
            &ifinfomsg(0, 0, 0),
            Subject::Link,
            || format!("create vxlan link {name} (VNI {})", spec.config.vni),
            |w| write_vxlan(w, spec),
            |_| Ok(()),
        )?;
        self.vxlan_link(name)?.ok_or_else(|| {
            Error::new(
                ErrorKind::NoSuchLink,
                format!("link {name} vanished right after it was created"),
            )
        })
    }

    /// Sets a link's MTU.
    pub fn set_link_mtu(&mut self, index: u32, mtu: u32) -> Result<(), Error> {
        self.request(
            RTM_NEWLINK,
            ACK,
            &ifinfomsg(index, 0, 0),
            Subject::Link,
            || format!("set MTU of link {index} to {mtu}"),
            |w| w.u32(IFLA_MTU, mtu),
            |_| Ok(()),
        )
    }

    /// Sets a link's Ethernet address.
    pub fn set_link_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<(), Error> {
        self.request(
            RTM_NEWLINK,
            ACK,
            &ifinfomsg(index, 0, 0),
            Subject::Link,
            || format!("set MAC of link {index}"),
            |w| w.bytes(IFLA_ADDRESS, &mac),
            |_| Ok(()),
        )
    }
}
