//! Encoding requests into and decoding replies from IPVS netlink attributes.
//!
//! Encoders follow what `ipvsadm` sends (`ipvs_nl_fill_service_attr`):
//! addresses as the 16-byte `union nf_inet_addr`, ports in network order,
//! flags with an all-ones mask. Decoders accept what the kernel sends and any
//! equivalent request form (IPv4 addresses of 4 or 16 bytes), and return a
//! [`DecodeError`] for anything else.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::consts::*;
use super::model::*;
use crate::error::DecodeError;
use crate::netlink::attr::{AttrWriter, Attrs};

fn family_code(f: AddressFamily) -> u16 {
    match f {
        AddressFamily::Ipv4 => AF_INET,
        AddressFamily::Ipv6 => AF_INET6,
    }
}

fn family_from_code(code: u16) -> Result<AddressFamily, DecodeError> {
    match code {
        AF_INET => Ok(AddressFamily::Ipv4),
        AF_INET6 => Ok(AddressFamily::Ipv6),
        other => Err(DecodeError::new(format!("unknown address family {other}"))),
    }
}

fn addr_union(ip: &IpAddr) -> [u8; 16] {
    let mut raw = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => raw[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => raw = v6.octets(),
    }
    raw
}

fn addr_from_union(family: AddressFamily, raw: &[u8]) -> Result<IpAddr, DecodeError> {
    match family {
        AddressFamily::Ipv4 if raw.len() >= 4 => {
            Ok(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])))
        }
        AddressFamily::Ipv6 if raw.len() == 16 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(raw);
            Ok(IpAddr::V6(Ipv6Addr::from(o)))
        }
        _ => Err(DecodeError::new(format!(
            "{} address bytes for {family:?}",
            raw.len()
        ))),
    }
}

/// Writes the attributes that identify a service (inside `IPVS_CMD_ATTR_SERVICE`).
pub fn put_service_key(w: &mut AttrWriter<'_>, key: &ServiceKey) {
    w.u16(svc_attr::AF, family_code(key.family()));
    match key {
        ServiceKey::Inet { protocol, addr } => {
            w.u16(svc_attr::PROTOCOL, protocol.number());
            w.bytes(svc_attr::ADDR, &addr_union(&addr.ip()));
            w.be16(svc_attr::PORT, addr.port());
        }
        ServiceKey::FwMark { mark, .. } => w.u32(svc_attr::FWMARK, *mark),
    }
}

/// Writes a whole service (inside `IPVS_CMD_ATTR_SERVICE`), as NEW/SET need.
pub fn put_service(w: &mut AttrWriter<'_>, s: &Service) {
    put_service_key(w, &s.key);
    w.cstr(svc_attr::SCHED_NAME, s.scheduler.name());
    if let Some(pe) = &s.persistence_engine {
        w.cstr(svc_attr::PE_NAME, pe.as_str());
    }
    let mut flags = [0u8; 8];
    flags[..4].copy_from_slice(&s.flags.without_hashed().bits().to_ne_bytes());
    flags[4..].copy_from_slice(&u32::MAX.to_ne_bytes());
    w.bytes(svc_attr::FLAGS, &flags);
    w.u32(svc_attr::TIMEOUT, s.timeout);
    w.u32(svc_attr::NETMASK, s.netmask.to_raw());
}

/// Writes a service key nested in `IPVS_CMD_ATTR_SERVICE`.
pub fn put_nested_service_key(w: &mut AttrWriter<'_>, key: &ServiceKey) {
    let n = w.begin_nested(cmd_attr::SERVICE);
    put_service_key(w, key);
    w.end_nested(n);
}

/// Writes the attributes that identify a real server (inside `IPVS_CMD_ATTR_DEST`).
pub fn put_destination_key(w: &mut AttrWriter<'_>, addr: &SocketAddr) {
    w.bytes(dest_attr::ADDR, &addr_union(&addr.ip()));
    w.be16(dest_attr::PORT, addr.port());
    w.u16(
        dest_attr::ADDR_FAMILY,
        family_code(AddressFamily::of(&addr.ip())),
    );
}

/// Writes a whole real server (inside `IPVS_CMD_ATTR_DEST`), as NEW/SET need.
pub fn put_destination(w: &mut AttrWriter<'_>, d: &Destination) {
    put_destination_key(w, &d.addr);
    let method = match d.forwarding {
        Forwarding::Masquerade => fwd::MASQ,
        Forwarding::Local => fwd::LOCALNODE,
        Forwarding::Tunnel(_) => fwd::TUNNEL,
        Forwarding::DirectRoute => fwd::DROUTE,
        Forwarding::Bypass => fwd::BYPASS,
    };
    w.u32(dest_attr::FWD_METHOD, method);
    w.u32(dest_attr::WEIGHT, d.weight);
    if let Forwarding::Tunnel(t) = d.forwarding {
        let (ty, port, checksum) = match t {
            Tunnel::Ipip => (tun_type::IPIP, 0, TunnelChecksum::None),
            Tunnel::Gue { port, checksum } => (tun_type::GUE, port, checksum),
            Tunnel::Gre { checksum } => (tun_type::GRE, 0, checksum),
        };
        w.u8(dest_attr::TUN_TYPE, ty);
        w.be16(dest_attr::TUN_PORT, port);
        w.u16(dest_attr::TUN_FLAGS, checksum_flags(checksum));
    }
    w.u32(dest_attr::U_THRESH, d.upper_threshold);
    w.u32(dest_attr::L_THRESH, d.lower_threshold);
}

fn checksum_flags(c: TunnelChecksum) -> u16 {
    match c {
        TunnelChecksum::None => tun_flag::NOCSUM,
        TunnelChecksum::Checksum => tun_flag::CSUM,
        TunnelChecksum::Remote => tun_flag::REMCSUM,
    }
}

fn checksum_from_flags(f: u16) -> Result<TunnelChecksum, DecodeError> {
    match f {
        tun_flag::NOCSUM => Ok(TunnelChecksum::None),
        tun_flag::CSUM => Ok(TunnelChecksum::Checksum),
        tun_flag::REMCSUM => Ok(TunnelChecksum::Remote),
        other => Err(DecodeError::new(format!("unknown tunnel flags {other:#x}"))),
    }
}

/// Decodes `IPVS_STATS_ATTR_*` (32-bit `STATS` or 64-bit `STATS64`).
pub fn decode_stats(attrs: Attrs<'_>, wide: bool) -> Result<Stats, DecodeError> {
    let mut s = Stats::default();
    for a in attrs {
        let a = a?;
        let field = match a.ty {
            stats_attr::CONNS => &mut s.conns,
            stats_attr::INPKTS => &mut s.in_packets,
            stats_attr::OUTPKTS => &mut s.out_packets,
            stats_attr::INBYTES => &mut s.in_bytes,
            stats_attr::OUTBYTES => &mut s.out_bytes,
            stats_attr::CPS => &mut s.cps,
            stats_attr::INPPS => &mut s.in_pps,
            stats_attr::OUTPPS => &mut s.out_pps,
            stats_attr::INBPS => &mut s.in_bps,
            stats_attr::OUTBPS => &mut s.out_bps,
            _ => continue,
        };
        // Byte counters are 64-bit even in the old 32-bit set.
        let is_u64 = wide || matches!(a.ty, stats_attr::INBYTES | stats_attr::OUTBYTES);
        *field = if is_u64 {
            a.u64()?
        } else {
            u64::from(a.u32()?)
        };
    }
    Ok(s)
}

/// Decodes the attributes inside `IPVS_CMD_ATTR_SERVICE`.
pub fn decode_service(attrs: Attrs<'_>) -> Result<ServiceState, DecodeError> {
    let (mut af, mut proto, mut addr, mut port, mut fwmark) = (None, None, None, None, None);
    let (mut sched, mut pe, mut flags, mut timeout, mut netmask) = (None, None, None, None, None);
    let (mut stats, mut stats64) = (None, None);
    for a in attrs {
        let a = a?;
        match a.ty {
            svc_attr::AF => af = Some(family_from_code(a.u16()?)?),
            svc_attr::PROTOCOL => proto = Some(a.u16()?),
            svc_attr::ADDR => addr = Some(a.payload),
            svc_attr::PORT => port = Some(a.be16()?),
            svc_attr::FWMARK => fwmark = Some(a.u32()?),
            svc_attr::SCHED_NAME => sched = Some(a.cstr()?),
            svc_attr::PE_NAME => pe = Some(a.cstr()?),
            svc_attr::FLAGS => {
                if a.payload.len() != 8 {
                    return Err(DecodeError::new("service flags are not 8 bytes"));
                }
                flags = Some(u32::from_ne_bytes(
                    a.payload[..4].try_into().unwrap_or_default(),
                ));
            }
            svc_attr::TIMEOUT => timeout = Some(a.u32()?),
            svc_attr::NETMASK => netmask = Some(a.u32()?),
            svc_attr::STATS => stats = Some(decode_stats(a.nested(), false)?),
            svc_attr::STATS64 => stats64 = Some(decode_stats(a.nested(), true)?),
            _ => {}
        }
    }
    let af = af.ok_or_else(|| DecodeError::new("service without an address family"))?;
    let key = match (fwmark, proto, addr, port) {
        (Some(mark), _, _, _) if mark != 0 => ServiceKey::FwMark { family: af, mark },
        (_, Some(p), Some(raw), Some(port)) => ServiceKey::Inet {
            protocol: Protocol::from_number(p)
                .ok_or_else(|| DecodeError::new(format!("unknown service protocol {p}")))?,
            addr: SocketAddr::new(addr_from_union(af, raw)?, port),
        },
        _ => {
            return Err(DecodeError::new(
                "service with neither fwmark nor protocol/address/port",
            ));
        }
    };
    let scheduler = match sched {
        Some(name) => name
            .parse::<Scheduler>()
            .map_err(|_| DecodeError::new(format!("invalid scheduler name {name:?}")))?,
        None => return Err(DecodeError::new("service without a scheduler")),
    };
    let persistence_engine = match pe {
        Some("") | None => None,
        Some(name) => Some(
            ModuleName::new(name)
                .map_err(|_| DecodeError::new(format!("invalid persistence engine {name:?}")))?,
        ),
    };
    let service = Service {
        key,
        scheduler,
        flags: ServiceFlags::from_bits(flags.unwrap_or(0)),
        timeout: timeout.unwrap_or(0),
        netmask: netmask.map_or(Netmask::host(af), |raw| Netmask::from_raw(af, raw)),
        persistence_engine,
    };
    Ok(ServiceState {
        service,
        stats: stats64.or(stats).unwrap_or_default(),
    })
}

/// Decodes the attributes inside `IPVS_CMD_ATTR_DEST`. `service_family` is
/// used when the kernel omits `IPVS_DEST_ATTR_ADDR_FAMILY` (before 3.18).
pub fn decode_destination(
    attrs: Attrs<'_>,
    service_family: AddressFamily,
) -> Result<DestinationState, DecodeError> {
    let (mut addr, mut port, mut af, mut method) = (None, None, None, None);
    let (mut weight, mut uthresh, mut lthresh) = (0, 0, 0);
    let (mut active, mut inactive, mut persist) = (0, 0, 0);
    let (mut tun, mut tun_port, mut tun_flags) = (tun_type::IPIP, 0, 0);
    let (mut stats, mut stats64) = (None, None);
    for a in attrs {
        let a = a?;
        match a.ty {
            dest_attr::ADDR => addr = Some(a.payload),
            dest_attr::PORT => port = Some(a.be16()?),
            dest_attr::ADDR_FAMILY => af = Some(family_from_code(a.u16()?)?),
            dest_attr::FWD_METHOD => method = Some(a.u32()? & fwd::MASK),
            dest_attr::WEIGHT => weight = a.u32()?,
            dest_attr::U_THRESH => uthresh = a.u32()?,
            dest_attr::L_THRESH => lthresh = a.u32()?,
            dest_attr::ACTIVE_CONNS => active = a.u32()?,
            dest_attr::INACT_CONNS => inactive = a.u32()?,
            dest_attr::PERSIST_CONNS => persist = a.u32()?,
            dest_attr::TUN_TYPE => tun = a.u8()?,
            dest_attr::TUN_PORT => tun_port = a.be16()?,
            dest_attr::TUN_FLAGS => tun_flags = a.u16()?,
            dest_attr::STATS => stats = Some(decode_stats(a.nested(), false)?),
            dest_attr::STATS64 => stats64 = Some(decode_stats(a.nested(), true)?),
            _ => {}
        }
    }
    let af = af.unwrap_or(service_family);
    let raw = addr.ok_or_else(|| DecodeError::new("real server without an address"))?;
    let port = port.ok_or_else(|| DecodeError::new("real server without a port"))?;
    let forwarding = match method {
        Some(fwd::MASQ) => Forwarding::Masquerade,
        Some(fwd::LOCALNODE) => Forwarding::Local,
        Some(fwd::DROUTE) => Forwarding::DirectRoute,
        Some(fwd::BYPASS) => Forwarding::Bypass,
        Some(fwd::TUNNEL) => Forwarding::Tunnel(match tun {
            tun_type::IPIP => Tunnel::Ipip,
            tun_type::GUE => Tunnel::Gue {
                port: tun_port,
                checksum: checksum_from_flags(tun_flags)?,
            },
            tun_type::GRE => Tunnel::Gre {
                checksum: checksum_from_flags(tun_flags)?,
            },
            other => return Err(DecodeError::new(format!("unknown tunnel type {other}"))),
        }),
        Some(other) => {
            return Err(DecodeError::new(format!(
                "unknown forwarding method {other}"
            )));
        }
        None => return Err(DecodeError::new("real server without a forwarding method")),
    };
    Ok(DestinationState {
        destination: Destination {
            addr: SocketAddr::new(addr_from_union(af, raw)?, port),
            forwarding,
            weight,
            upper_threshold: uthresh,
            lower_threshold: lthresh,
        },
        active_conns: active,
        inactive_conns: inactive,
        persistent_conns: persist,
        stats: stats64.or(stats).unwrap_or_default(),
    })
}

/// Finds the nested attribute `ty` among top-level attributes.
pub fn find_nested<'a>(attrs: Attrs<'a>, ty: u16) -> Result<Option<Attrs<'a>>, DecodeError> {
    for a in attrs {
        let a = a?;
        if a.ty == ty {
            return Ok(Some(a.nested()));
        }
    }
    Ok(None)
}
