//! Interface addresses: list (one dump for all links), add and remove, batched.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{ACK, RtnlClient};
use crate::error::{DecodeError, Error, ErrorKind, Subject};
use crate::netlink::attr::Attrs;
use crate::netlink::message::{
    Header, Message, MessageWriter, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use crate::netlink::transport_error;

const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
/// `IFA_F_NODAD`: no duplicate address detection; service addresses on a
/// dummy link are ours by definition and must be usable at once.
const IFA_F_NODAD: u32 = 0x02;
/// `struct ifaddrmsg` length.
const IFADDRMSG_LEN: usize = 8;

/// An address on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    /// Interface index.
    pub index: u32,
    /// The address.
    pub addr: IpAddr,
    /// Prefix length (32 or 128 for a host address).
    pub prefix_len: u8,
}

impl Address {
    /// A host address (/32 or /128) on interface `index`.
    pub fn host(index: u32, addr: IpAddr) -> Self {
        let prefix_len = if addr.is_ipv4() { 32 } else { 128 };
        Self {
            index,
            addr,
            prefix_len,
        }
    }
}

/// One address change for [`RtnlClient::apply_addresses`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrOp {
    /// Bind an address ([`ErrorKind::Exists`] if it is already bound).
    Add(Address),
    /// Unbind an address ([`ErrorKind::NoSuchAddress`] if it is not bound).
    Delete(Address),
}

impl AddrOp {
    fn describe(&self) -> String {
        match self {
            Self::Add(a) => format!(
                "add address {}/{} to link {}",
                a.addr, a.prefix_len, a.index
            ),
            Self::Delete(a) => format!(
                "delete address {}/{} from link {}",
                a.addr, a.prefix_len, a.index
            ),
        }
    }
}

fn ifaddrmsg(family: u8, prefix_len: u8, index: u32) -> [u8; IFADDRMSG_LEN] {
    let mut m = [0u8; IFADDRMSG_LEN];
    m[0] = family;
    m[1] = prefix_len;
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m
}

fn family_of(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

/// Decodes an `RTM_NEWADDR` message. IPv4 prefers `IFA_LOCAL` (on
/// point-to-point links `IFA_ADDRESS` is the peer).
pub(crate) fn decode_address(msg: &Message<'_>) -> Result<Address, DecodeError> {
    let p = msg.payload;
    if p.len() < IFADDRMSG_LEN {
        return Err(DecodeError::new(
            "address message shorter than struct ifaddrmsg",
        ));
    }
    let family = p[0];
    let prefix_len = p[1];
    let index = u32::from_ne_bytes([p[4], p[5], p[6], p[7]]);
    let parse = |raw: &[u8]| -> Result<IpAddr, DecodeError> {
        match (i32::from(family), raw.len()) {
            (libc::AF_INET, 4) => Ok(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
            (libc::AF_INET6, 16) => {
                let mut o = [0u8; 16];
                o.copy_from_slice(raw);
                Ok(IpAddr::V6(Ipv6Addr::from(o)))
            }
            _ => Err(DecodeError::new(format!(
                "address of {} bytes in family {family}",
                raw.len()
            ))),
        }
    };
    let (mut local, mut address) = (None, None);
    for a in Attrs::new(&p[IFADDRMSG_LEN..]) {
        let a = a?;
        match a.ty {
            IFA_LOCAL => local = Some(parse(a.payload)?),
            IFA_ADDRESS => address = Some(parse(a.payload)?),
            _ => {}
        }
    }
    let addr = local
        .or(address)
        .ok_or_else(|| DecodeError::new("address message without an address"))?;
    Ok(Address {
        index,
        addr,
        prefix_len,
    })
}

impl RtnlClient {
    /// Every address on every interface (one dump, as kube-proxy's newest
    /// code does: per-interface dumps are quadratic with many addresses).
    pub fn addresses(&mut self) -> Result<Vec<Address>, Error> {
        let mut out = Vec::new();
        self.request(
            RTM_GETADDR,
            NLM_F_DUMP,
            &ifaddrmsg(libc::AF_UNSPEC as u8, 0, 0),
            Subject::Address,
            || "list addresses".into(),
            |_| {},
            |m| {
                if m.ty == RTM_NEWADDR {
                    out.push(decode_address(m)?);
                }
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// The addresses on interface `index`.
    pub fn link_addresses(&mut self, index: u32) -> Result<Vec<Address>, Error> {
        let mut all = self.addresses()?;
        all.retain(|a| a.index == index);
        Ok(all)
    }

    /// Binds one address.
    pub fn add_address(&mut self, a: Address) -> Result<(), Error> {
        self.apply_addresses(&[AddrOp::Add(a)])?
            .pop()
            .unwrap_or(Ok(()))
    }

    /// Unbinds one address.
    pub fn delete_address(&mut self, a: Address) -> Result<(), Error> {
        self.apply_addresses(&[AddrOp::Delete(a)])?
            .pop()
            .unwrap_or(Ok(()))
    }

    /// Applies address changes, pipelined like [`crate::IpvsClient::apply`]:
    /// one result per op, a failing op does not stop the others.
    pub fn apply_addresses(&mut self, ops: &[AddrOp]) -> Result<Vec<Result<(), Error>>, Error> {
        let mut results = Vec::with_capacity(ops.len());
        for window in ops.chunks(self.conn.window_ops()) {
            self.buf.clear();
            let first = self.conn.next_seq(window.len() as u32);
            for (i, op) in window.iter().enumerate() {
                let (ty, flags, a) = match op {
                    AddrOp::Add(a) => (RTM_NEWADDR, ACK | NLM_F_CREATE | NLM_F_EXCL, a),
                    AddrOp::Delete(a) => (RTM_DELADDR, ACK, a),
                };
                let header = Header {
                    ty,
                    flags: NLM_F_REQUEST | flags,
                    seq: first.wrapping_add(i as u32),
                };
                let mut msg = MessageWriter::begin(&mut self.buf, header);
                msg.fixed(&ifaddrmsg(family_of(&a.addr), a.prefix_len, a.index));
                let mut w = msg.attrs();
                let raw = ip_bytes(&a.addr);
                w.bytes(IFA_LOCAL, &raw);
                w.bytes(IFA_ADDRESS, &raw);
                if a.addr.is_ipv6() {
                    w.u32(IFA_FLAGS, IFA_F_NODAD);
                }
                msg.finish();
            }
            let buf = std::mem::take(&mut self.buf);
            self.count(window.len());
            let verdicts = self.conn.pipeline(&buf, first, window.len());
            self.buf = buf;
            let verdicts = verdicts.map_err(|e| transport_error("apply address changes", e))?;
            for (op, v) in window.iter().zip(verdicts) {
                results.push(v.map_err(|ack| {
                    let e =
                        Error::from_kernel(ack.errno, Subject::Address, op.describe(), ack.message);
                    // Deleting an address that is not there reports EADDRNOTAVAIL.
                    debug_assert!(e.kind() != ErrorKind::Decode);
                    e
                }));
            }
        }
        Ok(results)
    }
}
