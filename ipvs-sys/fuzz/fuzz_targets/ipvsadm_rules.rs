//! The `ipvsadm -R`/`-S` rule language (`ipvs_sys::ipvsadm`).
//!
//! The first input byte picks the mode:
//!
//! * text (odd): the rest is rule text. `parse` never panics; what it
//!   accepts renders to text that parses again, and rendering that gives
//!   the same text (one render brings a table to its canonical spelling);
//! * rules (even): the rest builds a table (`arbitrary`) of everything the
//!   renderer represents: TCP/UDP/SCTP and firewall-mark services of both
//!   families, every scheduler (and other module names), persistence with
//!   timeout and netmask, persistence engines, one-packet and scheduler
//!   flags, real servers with masquerading, direct routing and IPIP/GUE/GRE
//!   tunnels, weights and thresholds. `parse(render(x)) == x`.
//!
//! Outside the generated domain on purpose: the `Local` and `Bypass`
//! forwarding methods (ipvsadm has no switch for them, `render` documents
//! that it writes them as `-g`), a timeout or netmask on a service that is
//! not persistent (ipvsadm -S prints neither), scheduler flag 3 on `sh`
//! and `mh` services (ipvsadm -S leaves it out), and IPv6 scope ids.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipvs_sys::ipvsadm::{Entry, parse, render};
use ipvs_sys::{
    AddressFamily, Destination, Forwarding, ModuleName, Netmask, Protocol, Scheduler, Service,
    ServiceFlags, ServiceKey, Tunnel, TunnelChecksum,
};
use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 1 {
        text(&String::from_utf8_lossy(rest));
    } else if let Ok(table) = Table::arbitrary_take_rest(Unstructured::new(rest)) {
        rules(table.entries());
    }
});

fn text(t: &str) {
    let Ok(entries) = parse(t) else { return };
    let once = render(&entries);
    let again = parse(&once).unwrap_or_else(|e| panic!("{e}\nrendered:\n{once}\nfrom {t:?}"));
    assert_eq!(render(&again), once, "render is not canonical; from {t:?}");
}

fn rules(entries: Vec<Entry>) {
    let text = render(&entries);
    match parse(&text) {
        Ok(back) => assert_eq!(back, entries, "round trip of\n{text}"),
        Err(e) => panic!("rendered table does not parse: {e}\n{text}"),
    }
}

#[derive(Arbitrary, Debug)]
struct Table(Vec<(Svc, Vec<Dest>)>);

#[derive(Arbitrary, Debug)]
struct Svc {
    key: Key,
    scheduler: u8,
    other_scheduler: Name,
    persistent: Option<(u32, Mask)>,
    one_packet: bool,
    sched_flags: u8,
    engine: Option<Name>,
}

#[derive(Arbitrary, Debug)]
enum Key {
    Inet(Proto, Addr),
    FwMark(bool, u32),
}

#[derive(Arbitrary, Debug)]
enum Proto {
    Tcp,
    Udp,
    Sctp,
}

#[derive(Arbitrary, Debug)]
enum Addr {
    V4([u8; 4], u16),
    V6([u16; 8], u16),
}

#[derive(Arbitrary, Debug)]
enum Mask {
    V4([u8; 4]),
    V6(u8),
}

/// A module name: 1–15 characters of `[A-Za-z0-9_-]`.
#[derive(Arbitrary, Debug)]
struct Name(Vec<u8>);

#[derive(Arbitrary, Debug)]
struct Dest {
    addr: Addr,
    forwarding: Fwd,
    weight: u32,
    upper: u32,
    lower: u32,
}

#[derive(Arbitrary, Debug)]
enum Fwd {
    Masquerade,
    DirectRoute,
    Ipip,
    Gue(u16, u8),
    Gre(u8),
}

impl Addr {
    fn socket(&self) -> SocketAddr {
        match self {
            Self::V4(a, p) => SocketAddr::new(IpAddr::V4(Ipv4Addr::from(*a)), *p),
            Self::V6(a, p) => SocketAddr::new(IpAddr::V6(Ipv6Addr::from(*a)), *p),
        }
    }
}

impl Name {
    fn module(&self) -> ModuleName {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
        let mut s: String = self
            .0
            .iter()
            .take(15)
            .map(|&b| char::from(CHARS[usize::from(b) % CHARS.len()]))
            .collect();
        if s.is_empty() {
            s.push('x');
        }
        ModuleName::new(&s).expect("valid by construction")
    }
}

fn checksum(b: u8) -> TunnelChecksum {
    match b % 3 {
        0 => TunnelChecksum::None,
        1 => TunnelChecksum::Checksum,
        _ => TunnelChecksum::Remote,
    }
}

impl Table {
    fn entries(&self) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        for (svc, dests) in self.0.iter().take(16) {
            let svc = svc.service();
            // `-A` twice for one key is an error, not a table.
            if out.iter().any(|(s, _)| s.key == svc.key) {
                continue;
            }
            let dests = dests.iter().take(16).map(Dest::destination).collect();
            out.push((svc, dests));
        }
        out
    }
}

impl Svc {
    fn service(&self) -> Service {
        let key = match &self.key {
            Key::Inet(proto, addr) => ServiceKey::Inet {
                protocol: match proto {
                    Proto::Tcp => Protocol::Tcp,
                    Proto::Udp => Protocol::Udp,
                    Proto::Sctp => Protocol::Sctp,
                },
                addr: addr.socket(),
            },
            Key::FwMark(v6, mark) => ServiceKey::FwMark {
                family: if *v6 {
                    AddressFamily::Ipv6
                } else {
                    AddressFamily::Ipv4
                },
                mark: *mark,
            },
        };
        let known = Scheduler::KNOWN.len();
        let scheduler = match usize::from(self.scheduler) % (known + 2) {
            i if i < known => Scheduler::KNOWN[i].clone(),
            // Parsed like ipvsadm's -s, so a known name is never `Other`.
            _ => self
                .other_scheduler
                .module()
                .as_str()
                .parse()
                .expect("a module name is a scheduler"),
        };
        let mut svc = Service::new(key, scheduler);
        if let Some((timeout, mask)) = &self.persistent {
            svc.flags |= ServiceFlags::PERSISTENT;
            svc.timeout = *timeout;
            svc.netmask = match (key.family(), mask) {
                (AddressFamily::Ipv4, Mask::V4(m)) => Netmask::V4(Ipv4Addr::from(*m)),
                (AddressFamily::Ipv6, Mask::V6(p)) => Netmask::V6(*p),
                (family, _) => Netmask::host(family),
            };
        }
        if self.one_packet {
            svc.flags |= ServiceFlags::ONE_PACKET;
        }
        // ipvsadm -S leaves flag 3 out for sh and mh (so does `render`).
        let hashing = matches!(
            svc.scheduler,
            Scheduler::SourceHashing | Scheduler::MaglevHashing
        );
        for (bit, flag) in [
            (1, ServiceFlags::SCHED1),
            (2, ServiceFlags::SCHED2),
            (4, ServiceFlags::SCHED3),
        ] {
            if self.sched_flags & bit != 0 && !(hashing && flag == ServiceFlags::SCHED3) {
                svc.flags |= flag;
            }
        }
        svc.persistence_engine = self.engine.as_ref().map(Name::module);
        svc
    }
}

impl Dest {
    fn destination(&self) -> Destination {
        let forwarding = match self.forwarding {
            Fwd::Masquerade => Forwarding::Masquerade,
            Fwd::DirectRoute => Forwarding::DirectRoute,
            Fwd::Ipip => Forwarding::Tunnel(Tunnel::Ipip),
            Fwd::Gue(port, c) => Forwarding::Tunnel(Tunnel::Gue {
                port,
                checksum: checksum(c),
            }),
            Fwd::Gre(c) => Forwarding::Tunnel(Tunnel::Gre {
                checksum: checksum(c),
            }),
        };
        Destination {
            addr: self.addr.socket(),
            forwarding,
            weight: self.weight,
            upper_threshold: self.upper,
            lower_threshold: self.lower,
        }
    }
}
