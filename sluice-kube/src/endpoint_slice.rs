//! One reader of `discovery.k8s.io/v1` EndpointSlices, with the API's
//! semantics (`EndpointConditions`, `Endpoint` and `EndpointPort` in
//! k8s.io/api discovery/v1 types.go), as kube-proxy's EndpointSlice cache
//! reads them:
//!
//! * a missing `ready` means true, a missing `serving` means true, a missing
//!   `terminating` means false;
//! * an endpoint is its **first** address: "no semantics are defined for
//!   additional addresses beyond the first, and kube-proxy does not look at
//!   them" (the EndpointSlice controller writes exactly one);
//! * an address that does not parse, is not of the slice's `addressType`,
//!   or cannot receive traffic (unspecified, multicast) is rejected with a
//!   reason ([`SliceProblem`]), never dropped silently;
//! * ports are matched by name **and** protocol ([`SliceRead::port`]); a
//!   missing protocol is TCP (the API default), a port without a name or a
//!   number is ignored, as kube-proxy ignores it;
//! * `FQDN` slices are not readable as IPs ([`Unreadable::Fqdn`]).
//!
//! Both the proxy and the ingress controller read slices through
//! [`read`]; what they do with the endpoints (IPVS real servers, upstream
//! addresses) is theirs.

use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::ip::parse_ip;
use crate::text::quote;

/// At most this many problems are kept per slice; the rest are counted
/// ([`SliceRead::more_problems`]), so a huge broken object cannot flood a
/// log or the Events API.
pub const MAX_PROBLEMS: usize = 16;

/// `addressType` of a slice whose addresses are IPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressType {
    /// `IPv4`.
    Ipv4,
    /// `IPv6`.
    Ipv6,
}

impl AddressType {
    /// Whether `ip` is of this family.
    pub fn matches(self, ip: &IpAddr) -> bool {
        matches!(
            (self, ip),
            (Self::Ipv4, IpAddr::V4(_)) | (Self::Ipv6, IpAddr::V6(_))
        )
    }
}

impl fmt::Display for AddressType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ipv4 => "IPv4",
            Self::Ipv6 => "IPv6",
        })
    }
}

/// A port's IP protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP (the API default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Parses a Kubernetes protocol name: exactly `TCP`, `UDP` or `SCTP`;
    /// absent means TCP, the API default.
    pub fn parse(s: Option<&str>) -> Option<Self> {
        match s {
            None | Some("TCP") => Some(Self::Tcp),
            Some("UDP") => Some(Self::Udp),
            Some("SCTP") => Some(Self::Sctp),
            Some(_) => None,
        }
    }
}

/// One usable port of a slice.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SlicePort {
    /// Name (empty for a Service's single unnamed port); with the protocol,
    /// what matches it to a Service port.
    pub name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// The endpoints' port number (a Service's target port).
    pub port: u16,
    /// `appProtocol`.
    pub app_protocol: Option<String>,
}

/// One endpoint: its first address and what the API says about it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// `addresses[0]`.
    pub ip: IpAddr,
    /// `nodeName`, where the endpoint runs.
    pub node_name: Option<String>,
    /// `conditions.ready` (absent = true).
    pub ready: bool,
    /// `conditions.serving` (absent = true).
    pub serving: bool,
    /// `conditions.terminating` (absent = false).
    pub terminating: bool,
    /// `hints.forZones[].name`.
    pub zone_hints: Vec<String>,
    /// `hints.forNodes[].name`.
    pub node_hints: Vec<String>,
}

/// Why a slice cannot be read as IP endpoints at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    /// `addressType: FQDN`: names, not IPs (nothing to report).
    #[error("addressType FQDN is not supported")]
    Fqdn,
    /// Any other `addressType`.
    #[error("unsupported addressType {}; ignored", quote(.0))]
    AddressType(String),
}

/// Which port a [`SliceProblem`] is about: its name, or its index when it
/// has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortLabel(String);

impl PortLabel {
    fn new(index: usize, name: &str) -> Self {
        Self(if name.is_empty() {
            format!("port #{index}")
        } else {
            format!("port {}", quote(name))
        })
    }
}

impl fmt::Display for PortLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A part of a slice that was skipped, and why. The text says what was
/// done ("ignored"), for the log line and the Warning Event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SliceProblem {
    /// A port without `name`.
    #[error("port #{0} has no name; ignored")]
    PortWithoutName(usize),
    /// A protocol other than TCP, UDP, SCTP.
    #[error("{port}: unsupported protocol {}; ignored", quote(.protocol))]
    UnsupportedProtocol {
        /// The port.
        port: PortLabel,
        /// The protocol as written.
        protocol: String,
    },
    /// A port without `port`.
    #[error("{0}: no port number; ignored")]
    NoPortNumber(PortLabel),
    /// A port number outside 1-65535.
    #[error("{port}: invalid port {number}; ignored")]
    InvalidPort {
        /// The port.
        port: PortLabel,
        /// The number as written.
        number: i32,
    },
    /// A second port with the same name and protocol.
    #[error("{0}: duplicate name and protocol; ignored")]
    DuplicatePort(PortLabel),
    /// An endpoint with no address.
    #[error("endpoint #{0} has no addresses; ignored")]
    NoAddresses(usize),
    /// A first address that is not an IP.
    #[error("endpoint #{index}: invalid address {}; ignored", quote(.address))]
    InvalidAddress {
        /// Index of the endpoint.
        index: usize,
        /// The address as written.
        address: String,
    },
    /// A first address of the other family.
    #[error("endpoint #{index}: address {ip} does not match addressType {address_type}; ignored")]
    FamilyMismatch {
        /// Index of the endpoint.
        index: usize,
        /// The address.
        ip: IpAddr,
        /// The slice's type.
        address_type: AddressType,
    },
    /// An address no traffic can be sent to (unspecified, multicast).
    #[error("endpoint #{index}: address {ip} cannot be a real server; ignored")]
    SpecialAddress {
        /// Index of the endpoint.
        index: usize,
        /// The address.
        ip: IpAddr,
    },
}

/// A slice as read: what is usable, and what was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceRead {
    /// `addressType`; every endpoint is of this family.
    pub address_type: AddressType,
    /// Usable ports, in order.
    pub ports: Vec<SlicePort>,
    /// Endpoints with a usable first address, in order.
    pub endpoints: Vec<Endpoint>,
    /// The first [`MAX_PROBLEMS`] problems.
    pub problems: Vec<SliceProblem>,
    /// How many more problems there were.
    pub more_problems: usize,
}

impl SliceRead {
    /// The port matching a Service port's name and protocol.
    pub fn port(&self, name: &str, protocol: Protocol) -> Option<&SlicePort> {
        self.ports
            .iter()
            .find(|p| p.name == name && p.protocol == protocol)
    }

    fn report(&mut self, p: SliceProblem) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(p);
        } else {
            self.more_problems += 1;
        }
    }
}

/// Reads `slice`. Never fails on a part: bad ports and endpoints are
/// skipped and reported; only an address type that is not IP makes the
/// whole slice unreadable.
pub fn read(slice: &EndpointSlice) -> Result<SliceRead, Unreadable> {
    let address_type = match slice.address_type.as_str() {
        "IPv4" => AddressType::Ipv4,
        "IPv6" => AddressType::Ipv6,
        "FQDN" => return Err(Unreadable::Fqdn),
        other => return Err(Unreadable::AddressType(other.to_owned())),
    };
    let mut out = SliceRead {
        address_type,
        ports: Vec::new(),
        endpoints: Vec::with_capacity(slice.endpoints.len()),
        problems: Vec::new(),
        more_problems: 0,
    };
    for (i, p) in slice.ports.iter().flatten().enumerate() {
        match read_port(i, p, &out.ports) {
            Ok(port) => out.ports.push(port),
            Err(problem) => out.report(problem),
        }
    }
    for (i, ep) in slice.endpoints.iter().enumerate() {
        match read_endpoint(i, ep, address_type) {
            Ok(ep) => out.endpoints.push(ep),
            Err(problem) => out.report(problem),
        }
    }
    Ok(out)
}

fn read_port(
    i: usize,
    p: &k8s_openapi::api::discovery::v1::EndpointPort,
    earlier: &[SlicePort],
) -> Result<SlicePort, SliceProblem> {
    let name = p.name.as_deref().ok_or(SliceProblem::PortWithoutName(i))?;
    let label = || PortLabel::new(i, name);
    let protocol = Protocol::parse(p.protocol.as_deref()).ok_or_else(|| {
        SliceProblem::UnsupportedProtocol {
            port: label(),
            protocol: p.protocol.clone().unwrap_or_default(),
        }
    })?;
    let number = p.port.ok_or_else(|| SliceProblem::NoPortNumber(label()))?;
    let port = u16::try_from(number)
        .ok()
        .filter(|&n| n != 0)
        .ok_or_else(|| SliceProblem::InvalidPort {
            port: label(),
            number,
        })?;
    if earlier
        .iter()
        .any(|q| q.name == name && q.protocol == protocol)
    {
        return Err(SliceProblem::DuplicatePort(label()));
    }
    Ok(SlicePort {
        name: name.to_owned(),
        protocol,
        port,
        app_protocol: p.app_protocol.clone(),
    })
}

fn read_endpoint(
    index: usize,
    ep: &k8s_openapi::api::discovery::v1::Endpoint,
    address_type: AddressType,
) -> Result<Endpoint, SliceProblem> {
    let first = ep
        .addresses
        .first()
        .ok_or(SliceProblem::NoAddresses(index))?;
    let ip = parse_ip(first).ok_or_else(|| SliceProblem::InvalidAddress {
        index,
        address: first.clone(),
    })?;
    if !address_type.matches(&ip) {
        return Err(SliceProblem::FamilyMismatch {
            index,
            ip,
            address_type,
        });
    }
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(SliceProblem::SpecialAddress { index, ip });
    }
    let cond = ep.conditions.as_ref();
    let hints = ep.hints.as_ref();
    Ok(Endpoint {
        ip,
        node_name: ep.node_name.clone(),
        ready: cond.and_then(|c| c.ready).unwrap_or(true),
        serving: cond.and_then(|c| c.serving).unwrap_or(true),
        terminating: cond.and_then(|c| c.terminating).unwrap_or(false),
        zone_hints: hints
            .and_then(|h| h.for_zones.as_ref())
            .map(|z| z.iter().map(|z| z.name.clone()).collect())
            .unwrap_or_default(),
        node_hints: hints
            .and_then(|h| h.for_nodes.as_ref())
            .map(|n| n.iter().map(|n| n.name.clone()).collect())
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn slice(address_type: &str, ports: Value, endpoints: Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"namespace": "ns", "name": "web-1"},
            "addressType": address_type, "ports": ports, "endpoints": endpoints
        }))
        .unwrap()
    }

    fn endpoint(conditions: Value) -> Endpoint {
        let s = slice(
            "IPv4",
            json!([]),
            json!([{"addresses": ["10.0.0.1"], "conditions": conditions}]),
        );
        read(&s).unwrap().endpoints.remove(0)
    }

    /// EndpointConditions (discovery/v1 types.go): "ready … A nil value
    /// should be interpreted as "true""; "serving … A nil value should be
    /// interpreted as "true""; "terminating … A nil value should be
    /// interpreted as "false"".
    #[test]
    fn conditions_default_as_the_api_documents() {
        for (conditions, ready, serving, terminating) in [
            (json!(null), true, true, false),
            (json!({}), true, true, false),
            (json!({"ready": false}), false, true, false),
            (json!({"serving": false}), true, false, false),
            (json!({"terminating": true}), true, true, true),
            (
                json!({"ready": false, "serving": true, "terminating": true}),
                false,
                true,
                true,
            ),
            (
                json!({"ready": false, "serving": false, "terminating": true}),
                false,
                false,
                true,
            ),
            (
                json!({"ready": true, "serving": true, "terminating": false}),
                true,
                true,
                false,
            ),
        ] {
            let ep = endpoint(conditions.clone());
            assert_eq!(
                (ep.ready, ep.serving, ep.terminating),
                (ready, serving, terminating),
                "{conditions}"
            );
        }
    }

    /// Endpoint.addresses: "No semantics are defined for additional
    /// addresses beyond the first, and kube-proxy does not look at them."
    /// An address must be of the slice's addressType and able to receive
    /// traffic; anything else is reported, never dropped silently.
    #[test]
    fn an_endpoint_is_its_first_address_and_bad_ones_are_reported() {
        for (address_type, addresses, want) in [
            ("IPv4", json!(["10.0.0.1", "10.0.0.2"]), Ok("10.0.0.1")),
            ("IPv4", json!(["10.0.0.1", "bogus"]), Ok("10.0.0.1")),
            // kube-proxy's sloppy parsing: leading zeros, IPv4-mapped IPv6.
            ("IPv4", json!(["010.000.0.01"]), Ok("10.0.0.1")),
            ("IPv4", json!(["::ffff:10.0.0.3"]), Ok("10.0.0.3")),
            ("IPv6", json!(["fd00::1"]), Ok("fd00::1")),
            (
                "IPv4",
                json!([]),
                Err("endpoint #0 has no addresses; ignored"),
            ),
            (
                "IPv4",
                json!(["bogus", "10.0.0.1"]),
                Err("endpoint #0: invalid address \"bogus\"; ignored"),
            ),
            (
                "IPv4",
                json!(["fd00::1"]),
                Err("endpoint #0: address fd00::1 does not match addressType IPv4; ignored"),
            ),
            (
                "IPv6",
                json!(["10.0.0.1"]),
                Err("endpoint #0: address 10.0.0.1 does not match addressType IPv6; ignored"),
            ),
            (
                "IPv4",
                json!(["0.0.0.0"]),
                Err("endpoint #0: address 0.0.0.0 cannot be a real server; ignored"),
            ),
            (
                "IPv4",
                json!(["224.0.0.1"]),
                Err("endpoint #0: address 224.0.0.1 cannot be a real server; ignored"),
            ),
            (
                "IPv6",
                json!(["::"]),
                Err("endpoint #0: address :: cannot be a real server; ignored"),
            ),
        ] {
            let s = slice(address_type, json!([]), json!([{"addresses": addresses}]));
            let r = read(&s).unwrap();
            match want {
                Ok(ip) => {
                    assert_eq!(r.endpoints.len(), 1, "{addresses}");
                    assert_eq!(r.endpoints[0].ip, ip.parse::<IpAddr>().unwrap());
                    assert!(r.problems.is_empty(), "{:?}", r.problems);
                }
                Err(reason) => {
                    assert!(r.endpoints.is_empty(), "{addresses}");
                    let got: Vec<String> = r.problems.iter().map(ToString::to_string).collect();
                    assert_eq!(got, [reason]);
                }
            }
        }
    }

    /// EndpointPort: "protocol … Default is TCP"; a port is identified by
    /// its name and protocol ("All ports in an EndpointSlice must have a
    /// unique name", per protocol as Services allow); a nil name or port is
    /// ignored, as kube-proxy ignores it.
    #[test]
    fn ports_are_matched_by_name_and_protocol() {
        let s = slice(
            "IPv4",
            json!([
                {"name": "dns", "port": 5353, "protocol": "UDP"},
                {"name": "dns", "port": 5354},
                {"name": "", "port": 8080, "appProtocol": "kubernetes.io/h2c"},
                {"name": "sctp", "port": 9, "protocol": "SCTP"},
            ]),
            json!([]),
        );
        let r = read(&s).unwrap();
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.port("dns", Protocol::Udp).unwrap().port, 5353);
        assert_eq!(r.port("dns", Protocol::Tcp).unwrap().port, 5354);
        assert_eq!(r.port("dns", Protocol::Sctp), None);
        let unnamed = r.port("", Protocol::Tcp).unwrap();
        assert_eq!(
            (unnamed.port, unnamed.app_protocol.as_deref()),
            (8080, Some("kubernetes.io/h2c"))
        );
        assert_eq!(r.port("sctp", Protocol::Sctp).unwrap().port, 9);
    }

    #[test]
    fn bad_ports_are_reported() {
        let s = slice(
            "IPv4",
            json!([
                {"port": 8080},
                {"name": "http", "port": 0},
                {"name": "http", "port": 99999},
                {"name": "http"},
                {"name": "http", "port": 8080, "protocol": "ICMP"},
                {"name": "http", "port": 8080},
                {"name": "http", "port": 8081},
                {"name": "", "port": 70000},
            ]),
            json!([]),
        );
        let r = read(&s).unwrap();
        let got: Vec<String> = r.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "port #0 has no name; ignored",
                "port \"http\": invalid port 0; ignored",
                "port \"http\": invalid port 99999; ignored",
                "port \"http\": no port number; ignored",
                "port \"http\": unsupported protocol \"ICMP\"; ignored",
                "port \"http\": duplicate name and protocol; ignored",
                "port #7: invalid port 70000; ignored",
            ]
        );
        assert_eq!(r.ports.len(), 1);
        assert_eq!(r.port("http", Protocol::Tcp).unwrap().port, 8080);
    }

    /// EndpointSlice.addressType: IPv4, IPv6 or FQDN.
    #[test]
    fn address_types() {
        assert_eq!(
            read(&slice("IPv6", json!([]), json!([])))
                .unwrap()
                .address_type,
            AddressType::Ipv6
        );
        assert_eq!(
            read(&slice("FQDN", json!([]), json!([]))),
            Err(Unreadable::Fqdn)
        );
        let e = read(&slice("IPv5", json!([]), json!([]))).unwrap_err();
        assert_eq!(e.to_string(), "unsupported addressType \"IPv5\"; ignored");
    }

    #[test]
    fn problems_are_capped_and_counted() {
        let eps: Vec<Value> = (0..100)
            .map(|i| json!({"addresses": [format!("bogus-{i}")]}))
            .collect();
        let r = read(&slice("IPv4", json!([]), Value::Array(eps))).unwrap();
        assert_eq!(r.problems.len(), MAX_PROBLEMS);
        assert_eq!(r.more_problems, 100 - MAX_PROBLEMS);
    }

    #[test]
    fn hints_and_node_name_are_kept() {
        let s = slice(
            "IPv4",
            json!([]),
            json!([{"addresses": ["10.0.0.1"], "nodeName": "n1",
                    "hints": {"forZones": [{"name": "z1"}], "forNodes": [{"name": "n1"}]}}]),
        );
        let ep = &read(&s).unwrap().endpoints[0];
        assert_eq!(ep.node_name.as_deref(), Some("n1"));
        assert_eq!(ep.zone_hints, ["z1"]);
        assert_eq!(ep.node_hints, ["n1"]);
    }
}
