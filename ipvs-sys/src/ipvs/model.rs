//! The typed IPVS model: virtual services, real servers and kernel settings.
//!
//! Configuration ([`Service`], [`Destination`]) is kept apart from what only
//! the kernel reports ([`ServiceState`], [`DestinationState`]: counters and
//! statistics), so comparing desired with actual configuration is plain `==`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use super::consts::NAME_MAXLEN;
use crate::error::{Error, ErrorKind};

/// IP version of a service or real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddressFamily {
    /// IPv4 (`AF_INET`).
    Ipv4,
    /// IPv6 (`AF_INET6`).
    Ipv6,
}

impl AddressFamily {
    /// The family of `ip`.
    pub fn of(ip: &IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self::Ipv4,
            IpAddr::V6(_) => Self::Ipv6,
        }
    }
}

/// Transport protocol of a virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// SCTP (132).
    Sctp,
}

impl Protocol {
    /// The IANA protocol number.
    pub fn number(self) -> u16 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
            Self::Sctp => 132,
        }
    }

    /// The protocol with IANA number `n`, if IPVS supports it.
    pub fn from_number(n: u16) -> Option<Self> {
        match n {
            6 => Some(Self::Tcp),
            17 => Some(Self::Udp),
            132 => Some(Self::Sctp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        })
    }
}

/// What identifies a virtual service to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceKey {
    /// Traffic to one address and port of one protocol.
    Inet {
        /// TCP, UDP or SCTP.
        protocol: Protocol,
        /// The virtual address and port.
        addr: SocketAddr,
    },
    /// Traffic carrying a netfilter firewall mark.
    FwMark {
        /// Which IP version the mark applies to.
        family: AddressFamily,
        /// The mark (non-zero).
        mark: u32,
    },
}

impl ServiceKey {
    /// A TCP virtual service on `addr`.
    pub fn tcp(addr: SocketAddr) -> Self {
        Self::Inet {
            protocol: Protocol::Tcp,
            addr,
        }
    }

    /// A UDP virtual service on `addr`.
    pub fn udp(addr: SocketAddr) -> Self {
        Self::Inet {
            protocol: Protocol::Udp,
            addr,
        }
    }

    /// An SCTP virtual service on `addr`.
    pub fn sctp(addr: SocketAddr) -> Self {
        Self::Inet {
            protocol: Protocol::Sctp,
            addr,
        }
    }

    /// A firewall-mark virtual service.
    pub fn fwmark(family: AddressFamily, mark: u32) -> Self {
        Self::FwMark { family, mark }
    }

    /// The service's IP version.
    pub fn family(&self) -> AddressFamily {
        match self {
            Self::Inet { addr, .. } => AddressFamily::of(&addr.ip()),
            Self::FwMark { family, .. } => *family,
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inet { protocol, addr } => write!(f, "{protocol} {addr}"),
            Self::FwMark { family, mark } => write!(f, "FWM {mark} ({family:?})"),
        }
    }
}

/// A kernel module name as IPVS stores it: 1 to 15 bytes of
/// `[A-Za-z0-9_-]` (the NUL makes 16).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleName(String);

impl ModuleName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, Error> {
        let ok = !name.is_empty()
            && name.len() < NAME_MAXLEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "module name {name:?} must be 1 to {} characters of [A-Za-z0-9_-]",
                    NAME_MAXLEN - 1
                ),
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ModuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An IPVS scheduling algorithm (kernel module `ip_vs_<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheduler {
    /// `rr`: round robin.
    RoundRobin,
    /// `wrr`: weighted round robin.
    WeightedRoundRobin,
    /// `lc`: least connection.
    LeastConnection,
    /// `wlc`: weighted least connection.
    WeightedLeastConnection,
    /// `lblc`: locality-based least connection.
    LocalityBasedLeastConnection,
    /// `lblcr`: locality-based least connection with replication.
    LocalityBasedLeastConnectionReplication,
    /// `dh`: destination hashing.
    DestinationHashing,
    /// `sh`: source hashing.
    SourceHashing,
    /// `sed`: shortest expected delay.
    ShortestExpectedDelay,
    /// `nq`: never queue.
    NeverQueue,
    /// `mh`: maglev hashing.
    MaglevHashing,
    /// `fo`: weighted failover.
    WeightedFailover,
    /// `ovf`: weighted overflow.
    WeightedOverflow,
    /// Any other scheduler module.
    Other(ModuleName),
}

impl Scheduler {
    /// Every scheduler this crate names.
    pub const KNOWN: [Scheduler; 13] = [
        Self::RoundRobin,
        Self::WeightedRoundRobin,
        Self::LeastConnection,
        Self::WeightedLeastConnection,
        Self::LocalityBasedLeastConnection,
        Self::LocalityBasedLeastConnectionReplication,
        Self::DestinationHashing,
        Self::SourceHashing,
        Self::ShortestExpectedDelay,
        Self::NeverQueue,
        Self::MaglevHashing,
        Self::WeightedFailover,
        Self::WeightedOverflow,
    ];

    /// The kernel's name for the scheduler.
    pub fn name(&self) -> &str {
        match self {
            Self::RoundRobin => "rr",
            Self::WeightedRoundRobin => "wrr",
            Self::LeastConnection => "lc",
            Self::WeightedLeastConnection => "wlc",
            Self::LocalityBasedLeastConnection => "lblc",
            Self::LocalityBasedLeastConnectionReplication => "lblcr",
            Self::DestinationHashing => "dh",
            Self::SourceHashing => "sh",
            Self::ShortestExpectedDelay => "sed",
            Self::NeverQueue => "nq",
            Self::MaglevHashing => "mh",
            Self::WeightedFailover => "fo",
            Self::WeightedOverflow => "ovf",
            Self::Other(n) => n.as_str(),
        }
    }
}

impl FromStr for Scheduler {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match Self::KNOWN.iter().find(|k| k.name() == s) {
            Some(k) => Ok(k.clone()),
            None => Ok(Self::Other(ModuleName::new(s)?)),
        }
    }
}

impl fmt::Display for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Virtual service flags (`IP_VS_SVC_F_*`).
///
/// Equality ignores [`ServiceFlags::HASHED`], which the kernel sets on every
/// service it holds: a flag set read back equals the one written.
#[derive(Debug, Clone, Copy, Default, Eq)]
pub struct ServiceFlags(u32);

impl ServiceFlags {
    /// No flags.
    pub const EMPTY: Self = Self(0);
    /// Persistent: a client keeps its real server for the service timeout.
    pub const PERSISTENT: Self = Self(0x1);
    /// Set by the kernel on services in its table; ignored when comparing.
    pub const HASHED: Self = Self(0x2);
    /// One-packet scheduling (UDP): every datagram is scheduled on its own.
    pub const ONE_PACKET: Self = Self(0x4);
    /// Scheduler flag 1 (`sh-fallback` / `mh-fallback`).
    pub const SCHED1: Self = Self(0x8);
    /// Scheduler flag 2 (`sh-port` / `mh-port`).
    pub const SCHED2: Self = Self(0x10);
    /// Scheduler flag 3.
    pub const SCHED3: Self = Self(0x20);
    /// `sh-fallback`: the `sh` scheduler skips unavailable real servers.
    pub const SH_FALLBACK: Self = Self::SCHED1;
    /// `sh-port`: the `sh` scheduler hashes the source port too.
    pub const SH_PORT: Self = Self::SCHED2;
    /// `mh-fallback`: the `mh` scheduler skips unavailable real servers.
    pub const MH_FALLBACK: Self = Self::SCHED1;
    /// `mh-port`: the `mh` scheduler hashes the source port too.
    pub const MH_PORT: Self = Self::SCHED2;

    /// Flags from the kernel's bit representation.
    pub const fn from_bits(bits: u32) -> Self {
        Self(bits)
    }

    /// The bits, as the kernel reads them.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every flag in `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// These flags without [`ServiceFlags::HASHED`].
    pub const fn without_hashed(self) -> Self {
        Self(self.0 & !Self::HASHED.0)
    }
}

impl PartialEq for ServiceFlags {
    fn eq(&self, other: &Self) -> bool {
        self.without_hashed().0 == other.without_hashed().0
    }
}

impl std::hash::Hash for ServiceFlags {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Consistent with `eq`, which ignores HASHED.
        self.without_hashed().0.hash(state);
    }
}

impl std::ops::BitOr for ServiceFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for ServiceFlags {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

/// The mask IPVS applies to client addresses when grouping them for
/// persistence: a dotted mask for IPv4, a prefix length for IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Netmask {
    /// An IPv4 mask such as 255.255.255.0.
    V4(Ipv4Addr),
    /// An IPv6 prefix length, 1 to 128.
    V6(u8),
}

impl Netmask {
    /// The single-host mask for `family` (what kube-proxy and ipvsadm use
    /// unless told otherwise).
    pub fn host(family: AddressFamily) -> Self {
        match family {
            AddressFamily::Ipv4 => Self::V4(Ipv4Addr::BROADCAST),
            AddressFamily::Ipv6 => Self::V6(128),
        }
    }

    /// The attribute value: IPv4 masks travel as the mask's network-order
    /// bytes, IPv6 ones as the prefix length.
    pub(crate) fn to_raw(self) -> u32 {
        match self {
            Self::V4(m) => u32::from_ne_bytes(m.octets()),
            Self::V6(p) => u32::from(p),
        }
    }

    pub(crate) fn from_raw(family: AddressFamily, raw: u32) -> Self {
        match family {
            AddressFamily::Ipv4 => Self::V4(Ipv4Addr::from(raw.to_ne_bytes())),
            AddressFamily::Ipv6 => Self::V6(raw.min(255) as u8),
        }
    }

    fn family(self) -> AddressFamily {
        match self {
            Self::V4(_) => AddressFamily::Ipv4,
            Self::V6(_) => AddressFamily::Ipv6,
        }
    }
}

/// A virtual service's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Service {
    /// What traffic the service takes.
    pub key: ServiceKey,
    /// How it picks a real server.
    pub scheduler: Scheduler,
    /// Persistence, one-packet and scheduler flags.
    pub flags: ServiceFlags,
    /// Persistence timeout in seconds (meaningful with
    /// [`ServiceFlags::PERSISTENT`]).
    pub timeout: u32,
    /// Client grouping mask for persistence.
    pub netmask: Netmask,
    /// Persistence engine module (e.g. `sip`), if any.
    pub persistence_engine: Option<ModuleName>,
}

impl Service {
    /// A service with `scheduler`, no flags, no timeout and the host netmask.
    pub fn new(key: ServiceKey, scheduler: Scheduler) -> Self {
        Self {
            key,
            scheduler,
            flags: ServiceFlags::EMPTY,
            timeout: 0,
            netmask: Netmask::host(key.family()),
            persistence_engine: None,
        }
    }

    /// Makes the service persistent for `timeout_secs` (ClientIP affinity).
    pub fn persistent(mut self, timeout_secs: u32) -> Self {
        self.flags |= ServiceFlags::PERSISTENT;
        self.timeout = timeout_secs;
        self
    }

    /// Checks what the kernel would reject with a less helpful EINVAL.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let bad = |why: String| Err(Error::new(ErrorKind::InvalidArgument, why));
        if self.netmask.family() != self.key.family() {
            return bad(format!(
                "service {}: netmask {:?} does not match the service's address family",
                self.key, self.netmask
            ));
        }
        if let Netmask::V6(p) = self.netmask
            && !(1..=128).contains(&p)
        {
            return bad(format!(
                "service {}: IPv6 netmask /{p} is not 1..=128",
                self.key
            ));
        }
        if let ServiceKey::FwMark { mark: 0, .. } = self.key {
            return bad("a firewall-mark service needs a non-zero mark".into());
        }
        Ok(())
    }
}

/// Tunnel encapsulation for [`Forwarding::Tunnel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tunnel {
    /// IP in IP.
    Ipip,
    /// Generic UDP encapsulation to `port`.
    Gue {
        /// Destination UDP port of the encapsulation (non-zero).
        port: u16,
        /// Checksum handling.
        checksum: TunnelChecksum,
    },
    /// GRE.
    Gre {
        /// Checksum handling.
        checksum: TunnelChecksum,
    },
}

/// Checksum options of GUE and GRE tunnels (`IP_VS_TUNNEL_ENCAP_FLAG_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TunnelChecksum {
    /// No checksum.
    #[default]
    None,
    /// Outer checksum.
    Checksum,
    /// Remote checksum offload.
    Remote,
}

/// How packets reach a real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Forwarding {
    /// NAT (what Kubernetes uses).
    Masquerade,
    /// Local node.
    Local,
    /// IP tunnelling.
    Tunnel(Tunnel),
    /// Direct routing (gatewaying).
    DirectRoute,
    /// Bypass.
    Bypass,
}

/// A real server's configuration within a virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Destination {
    /// Address and port of the real server.
    pub addr: SocketAddr,
    /// How packets reach it.
    pub forwarding: Forwarding,
    /// Scheduling weight; 0 takes no new connections (0..=`i32::MAX`).
    pub weight: u32,
    /// Upper connection threshold (0 = none).
    pub upper_threshold: u32,
    /// Lower connection threshold (0 = none).
    pub lower_threshold: u32,
}

impl Destination {
    /// A NAT real server with weight 1 and no thresholds, as kube-proxy
    /// programs endpoints.
    pub fn masq(addr: SocketAddr) -> Self {
        Self {
            addr,
            forwarding: Forwarding::Masquerade,
            weight: 1,
            upper_threshold: 0,
            lower_threshold: 0,
        }
    }

    /// The same real server with another weight.
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.weight > i32::MAX as u32 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "real server {}: weight {} exceeds {}",
                    self.addr,
                    self.weight,
                    i32::MAX
                ),
            ));
        }
        if let Forwarding::Tunnel(Tunnel::Gue { port: 0, .. }) = self.forwarding {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "real server {}: a GUE tunnel needs a non-zero port",
                    self.addr
                ),
            ));
        }
        Ok(())
    }
}

/// Traffic statistics the kernel keeps per service and per real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Incoming packets.
    pub in_packets: u64,
    /// Outgoing packets.
    pub out_packets: u64,
    /// Incoming bytes.
    pub in_bytes: u64,
    /// Outgoing bytes.
    pub out_bytes: u64,
    /// Connections per second (estimate).
    pub cps: u64,
    /// Incoming packets per second (estimate).
    pub in_pps: u64,
    /// Outgoing packets per second (estimate).
    pub out_pps: u64,
    /// Incoming bytes per second (estimate).
    pub in_bps: u64,
    /// Outgoing bytes per second (estimate).
    pub out_bps: u64,
}

/// A virtual service as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceState {
    /// Its configuration.
    pub service: Service,
    /// Its statistics (64-bit when the kernel offers them).
    pub stats: Stats,
}

/// A real server as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationState {
    /// Its configuration.
    pub destination: Destination,
    /// Established connections.
    pub active_conns: u32,
    /// Other connections (e.g. TIME_WAIT, UDP).
    pub inactive_conns: u32,
    /// Persistence templates pointing at it.
    pub persistent_conns: u32,
    /// Its statistics.
    pub stats: Stats,
}

/// IPVS version and connection table size (`ipvsadm` prints these first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    /// IPVS version.
    pub version: Version,
    /// Size of the connection hash table.
    pub conn_tab_size: u32,
}

/// An IPVS version such as 1.2.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// Major.
    pub major: u8,
    /// Minor.
    pub minor: u8,
    /// Patch.
    pub patch: u8,
}

impl Version {
    pub(crate) fn from_code(code: u32) -> Self {
        Self {
            major: (code >> 16) as u8,
            minor: (code >> 8) as u8,
            patch: code as u8,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// IPVS connection timeouts in seconds (`ipvsadm --set tcp tcpfin udp`).
/// When setting, 0 leaves a value unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeouts {
    /// Established TCP connections.
    pub tcp: u32,
    /// TCP connections after a FIN.
    pub tcp_fin: u32,
    /// UDP flows.
    pub udp: u32,
}
