//! [`EndpointSliceView`]: a `discovery.k8s.io/v1/EndpointSlice` as the proxy
//! needs it.

use std::net::IpAddr;

use ipvs_sys::{AddressFamily, Protocol};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::{
    Admission, IgnoreReason, LABEL_HEADLESS, LABEL_SERVICE_NAME, ObjectKind, Problem, ProblemSink,
    label, namespace_of, other_proxy, parse_ip, parse_protocol, quote,
};

/// One port of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SlicePortView {
    /// Name; matches the Service port of the same name and protocol.
    pub name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// The endpoints' port number.
    pub port: u16,
}

/// One endpoint of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointView {
    /// `addresses[0]` (kube-proxy uses only the first address).
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

/// An EndpointSlice we use, normalized and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSliceView {
    /// Namespace.
    pub namespace: String,
    /// Name of the slice.
    pub name: String,
    /// Name of its Service (`kubernetes.io/service-name`).
    pub service_name: String,
    /// `addressType`; every endpoint is of this family.
    pub family: AddressFamily,
    /// Ports.
    pub ports: Vec<SlicePortView>,
    /// Endpoints with a valid first address of the slice's family.
    pub endpoints: Vec<EndpointView>,
    /// What was wrong with the object.
    pub problems: Vec<Problem>,
}

impl EndpointSliceView {
    /// Normalizes `slice`. `service_proxy_name` as for
    /// [`ServiceView::from_k8s`](super::ServiceView::from_k8s).
    pub fn from_k8s(
        slice: &EndpointSlice,
        service_proxy_name: Option<&str>,
    ) -> Admission<EndpointSliceView> {
        let meta = &slice.metadata;
        let namespace = namespace_of(meta);
        let name = match meta.name.as_deref() {
            Some(n) if !n.is_empty() => n.to_owned(),
            _ => {
                return Admission::Rejected(Problem::endpoint_slice(
                    &namespace,
                    "",
                    "EndpointSlice has no name; ignored",
                ));
            }
        };
        if let Some(other) = other_proxy(meta, service_proxy_name) {
            return Admission::Ignored(IgnoreReason::OtherProxy(other));
        }
        if label(meta, LABEL_HEADLESS).is_some() {
            return Admission::Ignored(IgnoreReason::Headless);
        }
        let family = match slice.address_type.as_str() {
            "IPv4" => AddressFamily::Ipv4,
            "IPv6" => AddressFamily::Ipv6,
            "FQDN" => return Admission::Ignored(IgnoreReason::Fqdn),
            other => {
                return Admission::Rejected(Problem::endpoint_slice(
                    &namespace,
                    &name,
                    format!("unsupported addressType {}; ignored", quote(other)),
                ));
            }
        };
        let service_name = match label(meta, LABEL_SERVICE_NAME) {
            Some(s) if !s.is_empty() => s.to_owned(),
            _ => {
                return Admission::Rejected(Problem::endpoint_slice(
                    &namespace,
                    &name,
                    format!("no {LABEL_SERVICE_NAME} label; ignored"),
                ));
            }
        };
        let mut problems = ProblemSink::new(ObjectKind::EndpointSlice, &namespace, &name);

        let mut ports = Vec::new();
        for (i, p) in slice.ports.iter().flatten().enumerate() {
            let Some(pname) = p.name.clone() else {
                problems.report(|| format!("port #{i} has no name; ignored"));
                continue;
            };
            let label = if pname.is_empty() {
                format!("port #{i}")
            } else {
                format!("port {}", quote(&pname))
            };
            let Some(protocol) = parse_protocol(p.protocol.as_deref()) else {
                problems.report(|| {
                    format!(
                        "{label}: unsupported protocol {}; ignored",
                        quote(p.protocol.as_deref().unwrap_or_default())
                    )
                });
                continue;
            };
            let port = match p.port {
                None => {
                    problems.report(|| format!("{label}: no port number; ignored"));
                    continue;
                }
                Some(n) => match u16::try_from(n).ok().filter(|&n| n != 0) {
                    Some(n) => n,
                    None => {
                        problems.report(|| format!("{label}: invalid port {n}; ignored"));
                        continue;
                    }
                },
            };
            let dup = SlicePortView {
                name: pname,
                protocol,
                port,
            };
            if ports
                .iter()
                .any(|q: &SlicePortView| q.name == dup.name && q.protocol == dup.protocol)
            {
                problems.report(|| format!("{label}: duplicate name and protocol; ignored"));
                continue;
            }
            ports.push(dup);
        }

        let mut endpoints = Vec::with_capacity(slice.endpoints.len());
        for (i, ep) in slice.endpoints.iter().enumerate() {
            let Some(first) = ep.addresses.first() else {
                problems.report(|| format!("endpoint #{i} has no addresses; ignored"));
                continue;
            };
            let Some(ip) = parse_ip(first) else {
                problems
                    .report(|| format!("endpoint #{i}: invalid address {}; ignored", quote(first)));
                continue;
            };
            if AddressFamily::of(&ip) != family {
                problems.report(|| {
                    format!(
                        "endpoint #{i}: address {ip} does not match addressType {}; ignored",
                        slice.address_type
                    )
                });
                continue;
            }
            if ip.is_unspecified() || ip.is_multicast() {
                problems.report(|| {
                    format!("endpoint #{i}: address {ip} cannot be a real server; ignored")
                });
                continue;
            }
            let cond = ep.conditions.as_ref();
            let hints = ep.hints.as_ref();
            endpoints.push(EndpointView {
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
            });
        }

        Admission::Accepted(EndpointSliceView {
            namespace,
            name,
            service_name,
            family,
            ports,
            endpoints,
            problems: problems.finish(),
        })
    }
}
