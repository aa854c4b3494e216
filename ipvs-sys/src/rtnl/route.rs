//! Routes in the main table: written with [`super::Change`] (replace or
//! delete), dumped per address family.

use std::net::IpAddr;

use super::RtnlClient;
use super::neigh::{family_of, ip_bytes, ip_from};
use crate::error::{DecodeError, Error, Subject};
use crate::netlink::attr::Attrs;
use crate::netlink::message::{Header, Message, MessageWriter, NLM_F_DUMP};

pub(super) const RTM_NEWROUTE: u16 = 24;
pub(super) const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;
/// `RT_TABLE_MAIN`.
pub const RT_TABLE_MAIN: u32 = 254;
/// `RTPROT_BOOT`: what `ip route` and flannel's netlink library write.
const RTPROT_BOOT: u8 = 3;
/// `RTPROT_KERNEL`: routes the kernel derives from addresses.
pub const RTPROT_KERNEL: u8 = 2;
const RT_SCOPE_UNIVERSE: u8 = 0;
/// In a delete request: match any scope.
const RT_SCOPE_NOWHERE: u8 = 255;
/// `RTN_UNICAST`.
pub(super) const RTN_UNICAST: u8 = 1;
/// `RTNH_F_ONLINK`: the gateway is on the link even without a covering
/// prefix (flannel's `via 10.244.2.0 dev flannel.1 onlink`).
const RTNH_F_ONLINK: u32 = 4;
/// `struct rtmsg` length.
const RTMSG_LEN: usize = 12;

/// A unicast route in the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    /// Destination network address.
    pub dst: IpAddr,
    /// Destination prefix length.
    pub prefix_len: u8,
    /// Next hop, if any.
    pub gateway: Option<IpAddr>,
    /// Output interface; `None` lets the kernel resolve it from the gateway.
    pub oif: Option<u32>,
    /// The gateway is reachable on `oif` without a covering prefix.
    pub onlink: bool,
    /// Route metric; `None` leaves the kernel default (0 for IPv4, 1024 for
    /// IPv6). A delete should pass the metric the dump reported.
    pub metric: Option<u32>,
}

/// A route as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRecord {
    /// The route (its metric is the reported one).
    pub route: Route,
    /// `RTPROT_*` value: who installed it.
    pub protocol: u8,
    /// `RT_SCOPE_*` value.
    pub scope: u8,
}

fn rtmsg(family: u8, dst_len: u8, protocol: u8, scope: u8, ty: u8, flags: u32) -> [u8; RTMSG_LEN] {
    let mut m = [0u8; RTMSG_LEN];
    m[0] = family;
    m[1] = dst_len;
    m[4] = RT_TABLE_MAIN as u8;
    m[5] = protocol;
    m[6] = scope;
    m[7] = ty;
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m
}

/// Appends a replace (`delete == false`) or delete request for `r`.
pub(super) fn write_route(buf: &mut Vec<u8>, header: Header, r: &Route, delete: bool) {
    let mut msg = MessageWriter::begin(buf, header);
    let flags = if r.onlink { RTNH_F_ONLINK } else { 0 };
    let fixed = if delete {
        // As `ip route del`: any scope, any protocol, any type.
        rtmsg(
            family_of(&r.dst),
            r.prefix_len,
            0,
            RT_SCOPE_NOWHERE,
            0,
            flags,
        )
    } else {
        rtmsg(
            family_of(&r.dst),
            r.prefix_len,
            RTPROT_BOOT,
            RT_SCOPE_UNIVERSE,
            RTN_UNICAST,
            flags,
        )
    };
    msg.fixed(&fixed);
    let mut w = msg.attrs();
    w.u32(RTA_TABLE, RT_TABLE_MAIN);
    w.bytes(RTA_DST, &ip_bytes(&r.dst));
    if let Some(gw) = &r.gateway {
        w.bytes(RTA_GATEWAY, &ip_bytes(gw));
    }
    if let Some(oif) = r.oif {
        w.u32(RTA_OIF, oif);
    }
    if let Some(metric) = r.metric {
        w.u32(RTA_PRIORITY, metric);
    }
    msg.finish();
}

/// Decodes an `RTM_NEWROUTE` message; `None` for routes outside the main
/// table, non-unicast routes and multipath routes (never ours to touch).
fn decode_route(msg: &Message<'_>) -> Result<Option<RouteRecord>, DecodeError> {
    let p = msg.payload;
    if p.len() < RTMSG_LEN {
        return Err(DecodeError::new("route message shorter than struct rtmsg"));
    }
    let family = i32::from(p[0]);
    let prefix_len = p[1];
    let mut table = u32::from(p[4]);
    let (protocol, scope, ty) = (p[5], p[6], p[7]);
    let flags = u32::from_ne_bytes([p[8], p[9], p[10], p[11]]);
    let mut dst = None;
    let mut route = Route {
        dst: match family {
            libc::AF_INET6 => IpAddr::from([0u8; 16]),
            _ => IpAddr::from([0u8; 4]),
        },
        prefix_len,
        gateway: None,
        oif: None,
        onlink: flags & RTNH_F_ONLINK != 0,
        metric: None,
    };
    let mut multipath = false;
    for a in Attrs::new(&p[RTMSG_LEN..]) {
        let a = a?;
        match a.ty {
            RTA_DST => dst = Some(ip_from(a.payload)?),
            RTA_GATEWAY => route.gateway = Some(ip_from(a.payload)?),
            RTA_OIF => route.oif = Some(a.u32()?),
            RTA_PRIORITY => route.metric = Some(a.u32()?),
            RTA_TABLE => table = a.u32()?,
            RTA_MULTIPATH => multipath = true,
            _ => {}
        }
    }
    if let Some(dst) = dst {
        route.dst = dst;
    }
    if table != RT_TABLE_MAIN || ty != RTN_UNICAST || multipath {
        return Ok(None);
    }
    Ok(Some(RouteRecord {
        route,
        protocol,
        scope,
    }))
}

impl RtnlClient {
    /// The unicast, single-path routes of the main table for one family
    /// (`ipv6` picks it); one dump.
    pub fn routes(&mut self, ipv6: bool) -> Result<Vec<RouteRecord>, Error> {
        let family = if ipv6 { libc::AF_INET6 } else { libc::AF_INET } as u8;
        let mut out = Vec::new();
        self.request(
            RTM_GETROUTE,
            NLM_F_DUMP,
            &rtmsg(family, 0, 0, 0, 0, 0),
            Subject::Route,
            || "list routes".into(),
            |_| {},
            |m| {
                if m.ty == RTM_NEWROUTE
                    && let Some(r) = decode_route(m)?
                {
                    out.push(r);
                }
                Ok(())
            },
        )?;
        Ok(out)
    }
}
