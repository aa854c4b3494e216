//! The routing snapshot: route table, endpoints and certificates, as one
//! immutable value the controller builds and the gateway swaps in whole.
//!
//! A request loads the current snapshot once and uses it to the end, so a
//! swap never changes a request half-way and never touches a connection.
//! Endpoint health (in-flight counts, ejections) is kept by address outside
//! the snapshot, so it survives swaps (see [`crate::gateway::upstream`]).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use crate::routes::{Backend, PortRef, RouteTable};

use super::secrets::AccessSecrets;
use super::tls::CertStore;

/// Everything a request is routed with. Cheap to clone (all `Arc`s).
#[derive(Debug, Clone, Default)]
pub struct Routing {
    /// The route table from [`crate::routes::build()`].
    pub table: Arc<RouteTable>,
    /// Ready endpoints per Service port.
    pub endpoints: Arc<Endpoints>,
    /// Certificates per Secret.
    pub certs: Arc<CertStore>,
    /// The Secrets access control reads (basic auth users, client CAs).
    pub secrets: Arc<AccessSecrets>,
    /// The certificate served when SNI selects none (the
    /// `--default-ssl-certificate` Secret, reloaded with every snapshot);
    /// `None` falls back to the gateway's configured or self-signed one.
    pub default_certificate: Option<Arc<CertifiedKey>>,
}

/// A Service port as an Ingress backend names it: by number or by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// Service namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// The port as the Ingress backend refers to it.
    pub port: PortRef,
}

impl ServiceKey {
    /// Builds a key.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>, port: PortRef) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            port,
        }
    }

    /// The key of a Service backend; `None` for a resource backend.
    pub fn of(backend: &Backend) -> Option<Self> {
        match backend {
            Backend::Service {
                namespace,
                name,
                port,
            } => Some(Self::new(namespace.clone(), name.clone(), port.clone())),
            Backend::Resource { .. } => None,
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.name, self.port)
    }
}

/// How the gateway speaks to a Service port's endpoints, from the port's
/// `appProtocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AppProtocol {
    /// HTTP/1.1 (the default; what Ingress conformance expects).
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (cleartext). Needed for gRPC.
    H2c,
}

impl AppProtocol {
    /// Maps a Service port's `appProtocol`: `h2c`, `kubernetes.io/h2c` and
    /// `grpc` (any case) are [`AppProtocol::H2c`], anything else (including
    /// none) HTTP/1.1.
    pub fn from_app_protocol(app_protocol: Option<&str>) -> Self {
        match app_protocol {
            Some(p)
                if p.eq_ignore_ascii_case("h2c")
                    || p.eq_ignore_ascii_case("kubernetes.io/h2c")
                    || p.eq_ignore_ascii_case("grpc") =>
            {
                Self::H2c
            }
            _ => Self::Http1,
        }
    }
}

/// The ready endpoints of one Service port (from its EndpointSlices,
/// resolved to the target port) and how to speak to them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointSet {
    addrs: Vec<SocketAddr>,
    protocol: AppProtocol,
}

impl EndpointSet {
    /// A set of endpoints (duplicates removed, order kept).
    pub fn new(addrs: impl IntoIterator<Item = SocketAddr>, protocol: AppProtocol) -> Self {
        let mut out: Vec<SocketAddr> = Vec::new();
        for a in addrs {
            if !out.contains(&a) {
                out.push(a);
            }
        }
        Self {
            addrs: out,
            protocol,
        }
    }

    /// The endpoints.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The protocol spoken to them.
    pub fn protocol(&self) -> AppProtocol {
        self.protocol
    }

    /// Whether there is no endpoint.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }
}

/// Endpoints of every Service port the route table uses. The controller
/// fills it from Services and EndpointSlices; a Service port is reachable
/// by number and by name, so [`Endpoints::insert_port`] registers both.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    map: HashMap<ServiceKey, EndpointSet>,
}

impl Endpoints {
    /// No endpoints.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the endpoints of one key.
    pub fn insert(&mut self, key: ServiceKey, set: EndpointSet) {
        self.map.insert(key, set);
    }

    /// Sets the endpoints of a Service port under its number and, when it
    /// has one, its name.
    pub fn insert_port(
        &mut self,
        namespace: &str,
        service: &str,
        port: u16,
        port_name: Option<&str>,
        set: EndpointSet,
    ) {
        if let Some(n) = port_name.filter(|n| !n.is_empty()) {
            self.map.insert(
                ServiceKey::new(namespace, service, PortRef::Name(n.to_owned())),
                set.clone(),
            );
        }
        self.map.insert(
            ServiceKey::new(namespace, service, PortRef::Number(port)),
            set,
        );
    }

    /// Removes a key.
    pub fn remove(&mut self, key: &ServiceKey) -> Option<EndpointSet> {
        self.map.remove(key)
    }

    /// The endpoints of a key.
    pub fn get(&self, key: &ServiceKey) -> Option<&EndpointSet> {
        self.map.get(key)
    }

    /// Every key and set.
    pub fn iter(&self) -> impl Iterator<Item = (&ServiceKey, &EndpointSet)> {
        self.map.iter()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl FromIterator<(ServiceKey, EndpointSet)> for Endpoints {
    fn from_iter<I: IntoIterator<Item = (ServiceKey, EndpointSet)>>(iter: I) -> Self {
        Self {
            map: iter.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_protocols() {
        for p in ["h2c", "kubernetes.io/h2c", "GRPC"] {
            assert_eq!(AppProtocol::from_app_protocol(Some(p)), AppProtocol::H2c);
        }
        for p in [None, Some("http"), Some("kubernetes.io/ws"), Some("")] {
            assert_eq!(AppProtocol::from_app_protocol(p), AppProtocol::Http1);
        }
    }

    #[test]
    fn ports_by_number_and_name() {
        let a: SocketAddr = "10.0.0.1:8080".parse().unwrap();
        let mut e = Endpoints::new();
        e.insert_port(
            "ns",
            "web",
            80,
            Some("http"),
            EndpointSet::new([a, a], AppProtocol::Http1),
        );
        let by_num = ServiceKey::new("ns", "web", PortRef::Number(80));
        let by_name = ServiceKey::new("ns", "web", PortRef::Name("http".into()));
        assert_eq!(e.get(&by_num).unwrap().addrs(), &[a]);
        assert_eq!(e.get(&by_name), e.get(&by_num));
        assert_eq!(by_name.to_string(), "ns/web:http");
        let backend = Backend::Service {
            namespace: "ns".into(),
            name: "web".into(),
            port: PortRef::Number(80),
        };
        assert_eq!(ServiceKey::of(&backend), Some(by_num));
    }
}
