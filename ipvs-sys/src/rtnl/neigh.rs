//! Neighbours: permanent IP neighbour entries (ARP for IPv4, NDP for IPv6)
//! and a VXLAN link's forwarding database (AF_BRIDGE entries with
//! `NTF_SELF`: "frames for this MAC go to this remote address"). Written
//! with [`super::Change`], dumped per link.

use std::net::IpAddr;

use super::RtnlClient;
use super::link::ifinfomsg;
use crate::error::{DecodeError, Error, Subject};
use crate::netlink::attr::Attrs;
use crate::netlink::message::{Header, Message, MessageWriter, NLM_F_DUMP};

pub(super) const RTM_NEWNEIGH: u16 = 28;
pub(super) const RTM_DELNEIGH: u16 = 29;
const RTM_GETNEIGH: u16 = 30;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// Filters a neighbour dump to one interface (honoured since Linux 4.20).
const NDA_IFINDEX: u16 = 8;
/// `NUD_PERMANENT`: a static entry the kernel never ages or re-resolves.
pub const NUD_PERMANENT: u16 = 0x80;
/// `NTF_SELF`: the entry belongs to the device itself (the VXLAN FDB), not
/// to a bridge it is a port of.
pub const NTF_SELF: u8 = 0x02;
/// `struct ndmsg` length.
const NDMSG_LEN: usize = 12;

/// A permanent IP neighbour entry to write: `ip` is at `mac` on link `index`
/// (`ip neigh replace IP lladdr MAC dev LINK nud permanent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Neighbour {
    /// Interface index.
    pub index: u32,
    /// The neighbour's IP address (its family picks ARP or NDP).
    pub ip: IpAddr,
    /// Its Ethernet address.
    pub mac: [u8; 6],
}

/// A permanent forwarding entry of a VXLAN link to write: frames for `mac`
/// are tunnelled to `dst` (`bridge fdb replace MAC dev LINK dst DST self
/// permanent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FdbEntry {
    /// Interface index of the VXLAN link.
    pub index: u32,
    /// The remote VTEP's MAC.
    pub mac: [u8; 6],
    /// The remote VTEP's underlay address.
    pub dst: IpAddr,
}

/// An IP neighbour entry as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourRecord {
    /// Interface index.
    pub index: u32,
    /// The neighbour's address.
    pub ip: IpAddr,
    /// Its Ethernet address, if resolved.
    pub mac: Option<[u8; 6]>,
    /// `NUD_*` state bits.
    pub state: u16,
    /// `NTF_*` flags.
    pub flags: u8,
}

impl NeighbourRecord {
    /// True for a static (`nud permanent`) entry.
    pub fn permanent(&self) -> bool {
        self.state & NUD_PERMANENT != 0
    }
}

/// A forwarding-database entry as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdbRecord {
    /// Interface index.
    pub index: u32,
    /// The MAC address.
    pub mac: [u8; 6],
    /// The remote address (VXLAN entries).
    pub dst: Option<IpAddr>,
    /// `NUD_*` state bits.
    pub state: u16,
    /// `NTF_*` flags.
    pub flags: u8,
}

impl FdbRecord {
    /// True for a static (`permanent`) entry.
    pub fn permanent(&self) -> bool {
        self.state & NUD_PERMANENT != 0
    }
}

fn ndmsg(family: u8, index: u32, state: u16, flags: u8) -> [u8; NDMSG_LEN] {
    let mut m = [0u8; NDMSG_LEN];
    m[0] = family;
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m[8..10].copy_from_slice(&state.to_ne_bytes());
    m[10] = flags;
    m
}

pub(super) fn family_of(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

pub(super) fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

pub(super) fn ip_from(raw: &[u8]) -> Result<IpAddr, DecodeError> {
    match raw.len() {
        4 => Ok(IpAddr::from(<[u8; 4]>::try_from(raw).unwrap_or_default())),
        16 => Ok(IpAddr::from(<[u8; 16]>::try_from(raw).unwrap_or_default())),
        n => Err(DecodeError::new(format!("address of {n} bytes"))),
    }
}

/// Appends a request about an IP neighbour (`ty` is new or delete).
pub(super) fn write_neighbour(buf: &mut Vec<u8>, header: Header, n: &Neighbour) {
    let mut msg = MessageWriter::begin(buf, header);
    msg.fixed(&ndmsg(family_of(&n.ip), n.index, NUD_PERMANENT, 0));
    let mut w = msg.attrs();
    w.bytes(NDA_DST, &ip_bytes(&n.ip));
    w.bytes(NDA_LLADDR, &n.mac);
    msg.finish();
}

/// Appends a request about a VXLAN forwarding entry.
pub(super) fn write_fdb(buf: &mut Vec<u8>, header: Header, f: &FdbEntry) {
    let mut msg = MessageWriter::begin(buf, header);
    msg.fixed(&ndmsg(
        libc::AF_BRIDGE as u8,
        f.index,
        NUD_PERMANENT,
        NTF_SELF,
    ));
    let mut w = msg.attrs();
    w.bytes(NDA_LLADDR, &f.mac);
    w.bytes(NDA_DST, &ip_bytes(&f.dst));
    msg.finish();
}

struct RawNeigh {
    family: u8,
    index: u32,
    state: u16,
    flags: u8,
    dst: Option<IpAddr>,
    lladdr: Option<[u8; 6]>,
}

fn decode_neigh(msg: &Message<'_>) -> Result<RawNeigh, DecodeError> {
    let p = msg.payload;
    if p.len() < NDMSG_LEN {
        return Err(DecodeError::new(
            "neighbour message shorter than struct ndmsg",
        ));
    }
    let mut n = RawNeigh {
        family: p[0],
        index: u32::from_ne_bytes([p[4], p[5], p[6], p[7]]),
        state: u16::from_ne_bytes([p[8], p[9]]),
        flags: p[10],
        dst: None,
        lladdr: None,
    };
    for a in Attrs::new(&p[NDMSG_LEN..]) {
        let a = a?;
        match a.ty {
            NDA_DST => n.dst = Some(ip_from(a.payload)?),
            // Non-Ethernet link-layer addresses (e.g. on tunnels) are not ours.
            NDA_LLADDR => n.lladdr = a.payload.try_into().ok(),
            _ => {}
        }
    }
    Ok(n)
}

impl RtnlClient {
    /// The IPv4 and IPv6 neighbour entries on link `index` (one dump).
    pub fn neighbours(&mut self, index: u32) -> Result<Vec<NeighbourRecord>, Error> {
        let mut out = Vec::new();
        self.request(
            RTM_GETNEIGH,
            NLM_F_DUMP,
            &ndmsg(libc::AF_UNSPEC as u8, 0, 0, 0),
            Subject::Neighbour,
            || format!("list neighbours of link {index}"),
            |w| w.u32(NDA_IFINDEX, index),
            |m| {
                if m.ty != RTM_NEWNEIGH {
                    return Ok(());
                }
                let n = decode_neigh(m)?;
                let family = i32::from(n.family);
                if n.index == index
                    && (family == libc::AF_INET || family == libc::AF_INET6)
                    && let Some(ip) = n.dst
                {
                    out.push(NeighbourRecord {
                        index: n.index,
                        ip,
                        mac: n.lladdr,
                        state: n.state,
                        flags: n.flags,
                    });
                }
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// The forwarding-database entries of link `index` (one dump).
    pub fn fdb(&mut self, index: u32) -> Result<Vec<FdbRecord>, Error> {
        let mut out = Vec::new();
        // An AF_BRIDGE dump request with a `struct ifinfomsg` header filters
        // by its interface index (what `bridge fdb show dev X` sends); the
        // index is checked again below for kernels that ignore it.
        let mut header = ifinfomsg(index, 0, 0);
        header[0] = libc::AF_BRIDGE as u8;
        self.request(
            RTM_GETNEIGH,
            NLM_F_DUMP,
            &header,
            Subject::Neighbour,
            || format!("list forwarding entries of link {index}"),
            |_| {},
            |m| {
                if m.ty != RTM_NEWNEIGH {
                    return Ok(());
                }
                let n = decode_neigh(m)?;
                if n.index == index
                    && i32::from(n.family) == libc::AF_BRIDGE
                    && let Some(mac) = n.lladdr
                {
                    out.push(FdbRecord {
                        index: n.index,
                        mac,
                        dst: n.dst,
                        state: n.state,
                        flags: n.flags,
                    });
                }
                Ok(())
            },
        )?;
        Ok(out)
    }
}
