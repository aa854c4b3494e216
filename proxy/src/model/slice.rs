//! [`EndpointSliceView`]: a `discovery.k8s.io/v1/EndpointSlice` as the proxy
//! needs it.

use ipvs_sys::{AddressFamily, Protocol};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use sluice_kube::endpoint_slice::{self, AddressType, Endpoint, Unreadable};

use super::{
    Admission, IgnoreReason, LABEL_HEADLESS, LABEL_SERVICE_NAME, ObjectKind, Problem, ProblemSink,
    ipvs_protocol, label, namespace_of, other_proxy,
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

/// One endpoint of an EndpointSlice: its first address and conditions, as
/// the shared reader ([`sluice_kube::endpoint_slice`]) reads them with the
/// API's semantics.
pub type EndpointView = Endpoint;

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
        let read = match endpoint_slice::read(slice) {
            Ok(r) => r,
            Err(Unreadable::Fqdn) => return Admission::Ignored(IgnoreReason::Fqdn),
            Err(e @ Unreadable::AddressType(_)) => {
                return Admission::Rejected(Problem::endpoint_slice(
                    &namespace,
                    &name,
                    e.to_string(),
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
        for p in &read.problems {
            problems.report(|| p.to_string());
        }
        problems.suppressed(read.more_problems);
        Admission::Accepted(EndpointSliceView {
            namespace,
            name,
            service_name,
            family: match read.address_type {
                AddressType::Ipv4 => AddressFamily::Ipv4,
                AddressType::Ipv6 => AddressFamily::Ipv6,
            },
            ports: read
                .ports
                .into_iter()
                .map(|p| SlicePortView {
                    name: p.name,
                    protocol: ipvs_protocol(p.protocol),
                    port: p.port,
                })
                .collect(),
            endpoints: read.endpoints,
            problems: problems.finish(),
        })
    }
}
