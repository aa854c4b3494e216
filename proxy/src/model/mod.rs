//! Normalized, validated views of the Kubernetes objects the proxy reads.
//!
//! [`ServiceView::from_k8s`] and [`EndpointSliceView::from_k8s`] decide
//! whether an object is ours at all ([`Admission`]), parse every string
//! field once (IPs, CIDRs, protocols, ports), drop what is invalid and
//! record a [`Problem`] for it. The planner then works on plain typed values
//! and never fails. Nothing here panics on any input.
//!
//! Parsing follows kube-proxy's "sloppy" rules (`netutils.ParseIPSloppy`):
//! IPv4 octets with leading zeros are read as decimal, and IPv4-mapped IPv6
//! addresses count as IPv4.

mod problem;
mod service;
mod slice;

use std::net::IpAddr;

use ipnet::IpNet;
use ipvs_sys::Protocol;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub(crate) use problem::ProblemSink;
pub use problem::{MAX_PROBLEMS_PER_OBJECT, ObjectKind, Problem};
pub use service::{DEFAULT_AFFINITY_TIMEOUT, MAX_AFFINITY_TIMEOUT, ServicePortView, ServiceView};
pub use slice::{EndpointSliceView, EndpointView, SlicePortView};

/// Label naming the service proxy that should handle a Service (and is
/// copied onto its EndpointSlices). kube-proxy skips every object that has
/// it; Sluice skips those whose value differs from its configured name.
pub const LABEL_SERVICE_PROXY_NAME: &str = "service.kubernetes.io/service-proxy-name";
/// Label the EndpointSlice controller puts on slices of headless Services.
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// Label linking an EndpointSlice to its Service.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Node label with the node's zone (copied onto endpoints as `zone`).
pub const LABEL_TOPOLOGY_ZONE: &str = "topology.kubernetes.io/zone";
/// Service annotation choosing the IPVS scheduler (`rr`, `lc`, `mh`, ... any
/// of [`ipvs_sys::Scheduler::KNOWN`]). Takes precedence over
/// [`ANNOTATION_KUBE_ROUTER_SCHEDULER`].
pub const ANNOTATION_SCHEDULER: &str = "sluice.dev/ipvs-scheduler";
/// kube-router's scheduler annotation, honoured for drop-in compatibility.
pub const ANNOTATION_KUBE_ROUTER_SCHEDULER: &str = "kube-router.io/service.scheduler";
/// Service annotation with IPVS scheduler flags, comma separated:
/// `flag-1`, `flag-2`, `flag-3` (kube-router's names) or `sh-fallback`,
/// `sh-port`, `mh-fallback`, `mh-port`. Takes precedence over
/// [`ANNOTATION_KUBE_ROUTER_SCHED_FLAGS`].
pub const ANNOTATION_SCHED_FLAGS: &str = "sluice.dev/ipvs-sched-flags";
/// kube-router's scheduler-flags annotation.
pub const ANNOTATION_KUBE_ROUTER_SCHED_FLAGS: &str = "kube-router.io/service.schedflags";

/// Whether an object is ours to proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission<T> {
    /// Ours. Problems with parts of it are inside the view.
    Accepted(T),
    /// Deliberately not ours (not an error, nothing to report).
    Ignored(IgnoreReason),
    /// Unusable as a whole; the problem says why.
    Rejected(Problem),
}

impl<T> Admission<T> {
    /// The view, if accepted.
    pub fn accepted(self) -> Option<T> {
        match self {
            Self::Accepted(v) => Some(v),
            _ => None,
        }
    }
}

/// Why an object is not ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IgnoreReason {
    /// Labelled for another service proxy (the label's value).
    OtherProxy(String),
    /// A headless Service (`clusterIP: None`) or a slice labelled headless.
    Headless,
    /// A Service of type ExternalName.
    ExternalName,
    /// A Service without a ClusterIP (and not headless).
    NoClusterIp,
    /// An EndpointSlice of address type FQDN.
    Fqdn,
}

/// The namespace of an object; objects from a manifest directory may omit
/// it, and they then live in `default` (as `kubectl apply` would put them).
pub(crate) fn namespace_of(meta: &ObjectMeta) -> String {
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => ns.to_owned(),
        _ => "default".to_owned(),
    }
}

pub(crate) fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

pub(crate) fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// Whether `labels` say the object belongs to another proxy.
pub(crate) fn other_proxy(meta: &ObjectMeta, service_proxy_name: Option<&str>) -> Option<String> {
    let value = label(meta, LABEL_SERVICE_PROXY_NAME)?;
    if Some(value) == service_proxy_name {
        None
    } else {
        Some(value.to_owned())
    }
}

pub use sluice_kube::ip::parse_ip;
pub(crate) use sluice_kube::text::quote;

/// Parses a CIDR like kube-proxy (`ParseCIDRSloppy`): surrounding whitespace
/// is ignored (API validation lets it through), the address is parsed with
/// [`parse_ip`], and host bits are cleared (`10.1.2.3/8` is `10.0.0.0/8`).
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    let (addr, len) = s.trim().split_once('/')?;
    if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let len: u8 = len.parse().ok()?;
    let ip = parse_ip(addr)?;
    // An IPv4-mapped address with an IPv6 prefix length is not worth
    // guessing about.
    if ip.is_ipv4() && addr.contains(':') {
        return None;
    }
    IpNet::new(ip, len).ok().map(|n| n.trunc())
}

/// Parses a Kubernetes protocol name (exactly `TCP`, `UDP` or `SCTP`; an
/// absent protocol means TCP, the API default).
pub fn parse_protocol(s: Option<&str>) -> Option<Protocol> {
    sluice_kube::endpoint_slice::Protocol::parse(s).map(ipvs_protocol)
}

/// The IPVS protocol of a Kubernetes one.
pub(crate) fn ipvs_protocol(p: sluice_kube::endpoint_slice::Protocol) -> Protocol {
    use sluice_kube::endpoint_slice::Protocol as K;
    match p {
        K::Tcp => Protocol::Tcp,
        K::Udp => Protocol::Udp,
        K::Sctp => Protocol::Sctp,
    }
}

/// A port number from the API (`i32`): `Some` if in 1..=65535.
pub(crate) fn port_number(p: i32) -> Option<u16> {
    u16::try_from(p).ok().filter(|&p| p != 0)
}

/// Addresses that must never be a virtual IP: unspecified, loopback,
/// multicast, link-local (API validation rejects them for externalIPs).
pub(crate) fn special_ip(ip: &IpAddr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    if ip.is_multicast() {
        return Some("multicast");
    }
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    };
    link_local.then_some("link-local or broadcast")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sloppy_cidrs() {
        assert_eq!(
            parse_cidr(" 10.1.2.3/8 "),
            Some("10.0.0.0/8".parse().unwrap())
        );
        assert_eq!(parse_cidr("0.0.0.0/0"), Some("0.0.0.0/0".parse().unwrap()));
        assert_eq!(parse_cidr("fd00::1/64"), Some("fd00::/64".parse().unwrap()));
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0.0/",
            "/8",
            "fd00::/129",
            "a/8",
        ] {
            assert_eq!(parse_cidr(bad), None, "{bad}");
        }
    }
}
