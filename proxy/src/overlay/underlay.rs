//! Finding the underlay interface and its facts, as flanneld does: the
//! interface named by `--overlay-iface`, else the one holding
//! `--overlay-public-ip`, else the one of the default route. Everything is
//! read in the calling thread's network namespace (`/proc/thread-self`,
//! rtnetlink, ioctls), never through `ip`.

use super::error::UnderlayError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use ipvs_sys::rtnl::RtnlClient;

use super::plan::UnderlayFacts;

/// The interface of the IPv4 default route in `/proc/net/route` text (the
/// one with the lowest metric).
pub fn default_route_v4(route_file: &str) -> Option<String> {
    route_file
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
            (f.len() >= 8 && f[1] == "00000000" && f[7] == "00000000")
                .then(|| (f[6].parse::<u32>().unwrap_or(u32::MAX), f[0].to_owned()))
        })
        .min()
        .map(|(_, name)| name)
}

/// The interface of the IPv6 default route in `/proc/net/ipv6_route` text.
pub fn default_route_v6(route_file: &str) -> Option<String> {
    route_file
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // dst dst_len src src_len next_hop metric refcnt use flags iface
            (f.len() >= 10 && f[0].chars().all(|c| c == '0') && f[1] == "00" && f[9] != "lo").then(
                || {
                    (
                        u32::from_str_radix(f[5], 16).unwrap_or(u32::MAX),
                        f[9].to_owned(),
                    )
                },
            )
        })
        .min()
        .map(|(_, name)| name)
}

fn c_name(name: &str) -> Result<std::ffi::CString, UnderlayError> {
    std::ffi::CString::new(name).map_err(|_| UnderlayError::NulInName(name.to_owned()))
}

/// The interface's index (`if_nametoindex`, in this thread's namespace).
fn index_of(name: &str) -> Result<u32, UnderlayError> {
    let c = c_name(name)?;
    // SAFETY: `c` is a valid NUL-terminated string for the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(UnderlayError::NoSuchInterface {
            name: name.to_owned(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(index)
}

/// The interface's name by index (`if_indextoname`).
fn name_of(index: u32) -> Result<String, UnderlayError> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return Err(UnderlayError::NoSuchIndex {
            index,
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    let s = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Ok(s.to_string_lossy().into_owned())
}

/// The interface's MTU (`SIOCGIFMTU` on a datagram socket of this thread's
/// namespace).
fn mtu_of(name: &str) -> Result<u32, UnderlayError> {
    let c = c_name(name)?;
    // SAFETY: plain socket(2); the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(UnderlayError::Mtu {
            name: name.to_owned(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(c.as_bytes()) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: fd is open, req is a valid ifreq with a NUL-terminated name
    // (the name is at most 15 bytes: longer names failed if_nametoindex).
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFMTU as _, &mut req) };
    let err = std::io::Error::last_os_error();
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    if rc < 0 {
        return Err(UnderlayError::Mtu {
            name: name.to_owned(),
            source: err,
        });
    }
    // SAFETY: SIOCGIFMTU fills the ifru_mtu member.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    u32::try_from(mtu).map_err(|_| UnderlayError::BadMtu {
        name: name.to_owned(),
        mtu,
    })
}

/// Finds the underlay interface and reads its facts. `overlay` lists the
/// cluster networks: addresses inside them (the VXLAN device, `cni0`) are
/// not underlay subnets.
pub fn discover(
    rtnl: &mut RtnlClient,
    iface: Option<&str>,
    public_ip: Option<IpAddr>,
    overlay: &[IpNet],
) -> Result<UnderlayFacts, UnderlayError> {
    let addrs = rtnl.addresses().map_err(UnderlayError::AddressDump)?;
    let holder = public_ip.and_then(|ip| addrs.iter().find(|a| a.addr == ip));
    let name = match (iface, holder) {
        (Some(name), _) => name.to_owned(),
        (None, Some(a)) => name_of(a.index)?,
        // No flag, or a public IP that is not local (NAT): the interface
        // of the default route.
        (None, None) => {
            let read = |f: &str| std::fs::read_to_string(format!("/proc/thread-self/net/{f}"));
            read("route")
                .ok()
                .and_then(|t| default_route_v4(&t))
                .or_else(|| read("ipv6_route").ok().and_then(|t| default_route_v6(&t)))
                .ok_or(UnderlayError::NoDefaultRoute)?
        }
    };
    let index = index_of(&name)?;
    let mtu = mtu_of(&name)?;
    let mine: Vec<_> = addrs.iter().filter(|a| a.index == index).collect();
    let pick_v4 = |want: Option<IpAddr>| -> Option<Ipv4Addr> {
        mine.iter()
            .filter_map(|a| match a.addr {
                IpAddr::V4(v) if want.is_none_or(|w| w == a.addr) => Some(v),
                _ => None,
            })
            .next()
    };
    let pick_v6 = |want: Option<IpAddr>| -> Option<Ipv6Addr> {
        mine.iter()
            .filter_map(|a| match a.addr {
                IpAddr::V6(v)
                    if want.is_none_or(|w| w == a.addr) && (v.segments()[0] & 0xffc0) != 0xfe80 =>
                {
                    Some(v)
                }
                _ => None,
            })
            .next()
    };
    let (want4, want6) = match public_ip {
        Some(ip @ IpAddr::V4(_)) => (Some(ip), None),
        Some(ip @ IpAddr::V6(_)) => (None, Some(ip)),
        None => (None, None),
    };
    // The public IP may be a NAT address that is not local: then the
    // tunnel's local end is just the interface's first address.
    let local_v4 = pick_v4(want4).or_else(|| pick_v4(None));
    let local_v6 = pick_v6(want6).or_else(|| pick_v6(None));
    let connected = addrs
        .iter()
        .filter(|a| !a.addr.is_loopback())
        .filter_map(|a| IpNet::new(a.addr, a.prefix_len).ok())
        .filter(|n| n.prefix_len() < n.max_prefix_len())
        .map(|n| n.trunc())
        .filter(|n| !overlay.iter().any(|o| o.contains(n) || n.contains(o)))
        .collect();
    Ok(UnderlayFacts {
        index,
        mtu,
        local_v4,
        local_v6,
        public_ip: match public_ip {
            Some(IpAddr::V4(v)) => Some(v),
            _ => None,
        },
        public_ipv6: match public_ip {
            Some(IpAddr::V6(v)) => Some(v),
            _ => None,
        },
        connected,
    })
}
