//! Snapshot → [`Routing`]: the pure heart of the controller.
//!
//! 1. [`ClassSelector`] picks our Ingresses; [`crate::routes::build()`]
//!    turns them into the route table, conflicts and problems.
//! 2. Every Service backend the table uses is resolved to endpoints: the
//!    Ingress port (number or name) names a Service port; that port's name
//!    and protocol name the EndpointSlice port (slices carry target ports).
//!    Slices are read by `sluice_kube::endpoint_slice`, with the API's
//!    semantics (an endpoint is its first address; missing `ready` and
//!    `serving` mean true; a bad address is an issue, not dropped
//!    silently). Ready endpoints are used; when a port has none,
//!    serving-and-terminating endpoints are (so a rollout's last pods still
//!    get traffic). The `appProtocol` of the Service port (else of the
//!    slice port) picks [`AppProtocol`].
//! 3. Every Secret a TLS entry names (and the `--default-ssl-certificate`)
//!    is parsed into the [`CertStore`]. A broken Secret keeps the
//!    certificate loaded from its previous version, if any, and is
//!    reported.
//!
//! 4. In ingress-nginx mode ([`ControllerConfig::ingress_nginx`]) the
//!    `--configmap` ConfigMap gives the controller-wide settings
//!    ([`ControllerSettings::from_configmap`]; its problems are
//!    [`Computed::setting_problems`]), the table is built with
//!    [`routes::build_with`], and every Secret an access-control annotation
//!    names (`auth-secret`, `auth-tls-secret`) is parsed into the
//!    [`AccessSecrets`] (see [`secrets`]).
//!
//! Anything that cannot be resolved is an [`Issue`] against the Ingress
//! that needs it (logged, and published as a Warning Event).

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use sluice_kube::endpoint_slice::{self, Protocol, Unreadable};

use crate::annotations::{
    AnnotationConfig, AnnotationPrefix, AnnotationProblemKind, ControllerSettings, SettingProblem,
};
use crate::gateway::{AppProtocol, CertStore, EndpointSet, Endpoints, Routing, ServiceKey};
use crate::routes::{
    self, BuildOptions, ClassSelector, Conflict, IngressRef, PortRef, Problem, ProblemKind,
    SecretRef, class::DEFAULT_CONTROLLER,
};

use super::secrets;
use super::snapshot::{ObjectKey, Snapshot};

/// The Secret type holding a certificate.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// What the controller is configured to handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerConfig {
    /// The IngressClass `spec.controller` we answer to.
    pub controller: String,
    /// Whether Ingresses without any class are ours.
    pub watch_ingress_without_class: bool,
    /// `--default-ssl-certificate`: loaded into the store like any other
    /// referenced Secret.
    pub default_ssl_certificate: Option<SecretRef>,
    /// ingress-nginx mode (the default): its annotations, ConfigMap and
    /// path semantics. `None`: the Ingress specification's semantics and
    /// only `sluice.dev/` annotations (`--ingress-nginx=false`).
    pub ingress_nginx: Option<NginxMode>,
}

/// How ingress-nginx mode reads its inputs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NginxMode {
    /// `--annotations-prefix`.
    pub prefix: AnnotationPrefix,
    /// `--configmap`: the ConfigMap with ingress-nginx's controller-wide
    /// settings; `None`: its defaults.
    pub configmap: Option<ObjectKey<ConfigMap>>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            controller: DEFAULT_CONTROLLER.to_owned(),
            watch_ingress_without_class: false,
            default_ssl_certificate: None,
            ingress_nginx: Some(NginxMode::default()),
        }
    }
}

/// Something the controller could not resolve for an Ingress.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Issue {
    /// The Ingress concerned; `None` for the default SSL certificate.
    pub ingress: Option<IngressRef>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.ingress {
            Some(i) => write!(f, "ingress {i}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The controller's output for one snapshot.
#[derive(Debug, Clone, Default)]
pub struct Computed {
    /// What the gateway routes with.
    pub routing: Routing,
    /// Rules that lost to an older Ingress.
    pub conflicts: Vec<Conflict>,
    /// Invalid parts of Ingresses.
    pub problems: Vec<Problem>,
    /// Unresolvable backends and certificates.
    pub issues: Vec<Issue>,
    /// Our Ingresses (the ones that get status), sorted.
    pub ours: Vec<IngressRef>,
    /// The `--configmap` ConfigMap, when one is configured.
    pub configmap: Option<ObjectKey<ConfigMap>>,
    /// Problems with its keys (one Warning Event each, on the ConfigMap).
    pub setting_problems: Vec<SettingProblem>,
    /// The Secrets access-control annotations name: watched one by one
    /// by the API-server source.
    pub referenced_secrets: BTreeSet<ObjectKey<Secret>>,
}

impl Computed {
    /// Every warning as `(ingress, reason, message)`, for logs and Events.
    pub fn warnings(&self) -> Vec<(Option<IngressRef>, &'static str, String)> {
        let mut out = Vec::new();
        for c in &self.conflicts {
            out.push((Some(c.loser.clone()), "Conflict", c.to_string()));
        }
        for p in &self.problems {
            out.push((
                Some(p.ingress.clone()),
                event_reason(&p.kind),
                format!("{}: {}", p.field, p.kind),
            ));
        }
        for i in &self.issues {
            out.push((i.ingress.clone(), "Unresolved", i.message.clone()));
        }
        for p in &self.setting_problems {
            out.push((None, "InvalidSetting", p.to_string()));
        }
        out
    }
}

/// Computes the routing for `snapshot`. `previous` is the last certificate
/// store: a Secret that no longer parses keeps its certificate from there.
pub fn compute(config: &ControllerConfig, snapshot: &Snapshot, previous: &CertStore) -> Computed {
    let selector = ClassSelector::new(
        &config.controller,
        config.watch_ingress_without_class,
        snapshot.classes.values().map(|c| c.as_ref()),
    );
    let ours: Vec<_> = snapshot
        .ingresses
        .values()
        .map(|i| i.as_ref())
        .filter(|i| selector.is_ours(i))
        .collect();
    let mut issues = BTreeSet::new();
    let (settings, setting_problems) = match &config.ingress_nginx {
        Some(mode) => settings(snapshot, mode, &mut issues),
        None => (ControllerSettings::default(), Vec::new()),
    };
    let options = BuildOptions {
        ingress_nginx: config.ingress_nginx.as_ref().map(|mode| AnnotationConfig {
            prefix: mode.prefix.clone(),
            settings,
        }),
    };
    let out = routes::build_with(ours.iter().copied(), &options);
    let access = secrets::load(&out.table, snapshot, &mut issues);

    // Endpoints for every Service backend in use.
    let mut endpoints = Endpoints::new();
    let backends = out.table.routes().map(|r| (&r.backend, &r.ingress)).chain(
        out.table
            .default_backend()
            .map(|d| (&d.backend, &d.ingress)),
    );
    for (backend, ingress) in backends {
        let Some(key) = ServiceKey::of(backend) else {
            continue;
        };
        if endpoints.get(&key).is_some() {
            continue;
        }
        match resolve(snapshot, &key) {
            Ok((set, problems)) => {
                for message in problems {
                    issues.insert(Issue {
                        ingress: Some(ingress.clone()),
                        message,
                    });
                }
                if set.is_empty() {
                    issues.insert(Issue {
                        ingress: Some(ingress.clone()),
                        message: format!("service {key} has no ready endpoints"),
                    });
                }
                endpoints.insert(key, set);
            }
            Err(message) => {
                issues.insert(Issue {
                    ingress: Some(ingress.clone()),
                    message,
                });
            }
        }
    }

    // Certificates.
    let mut certs = CertStore::new();
    let mut wanted: Vec<(SecretRef, Option<IngressRef>)> = out
        .table
        .tls_hosts()
        .filter_map(|t| Some((t.secret.clone()?, Some(t.ingress.clone()))))
        .collect();
    if let Some(d) = &config.default_ssl_certificate {
        wanted.push((d.clone(), None));
    }
    for (secret, ingress) in wanted {
        if certs.get(&secret).is_some() {
            continue;
        }
        let key = ObjectKey::new(&secret.namespace, &secret.name);
        let problem = match snapshot.secrets.get(&key) {
            None => Some(format!("TLS secret {key} not found")),
            Some(s) => load(&mut certs, s).err(),
        };
        if let Some(reason) = problem {
            let kept = previous.get(&secret).cloned();
            let message = if kept.is_some() && snapshot.secrets.contains_key(&key) {
                format!("{reason}; keeping the previously loaded certificate")
            } else {
                reason
            };
            if let (Some(k), true) = (kept, snapshot.secrets.contains_key(&key)) {
                certs.insert(secret.clone(), k);
            }
            issues.insert(Issue { ingress, message });
        }
    }

    let mut our_refs: Vec<IngressRef> = ours
        .iter()
        .filter_map(|i| {
            Some(IngressRef::new(
                i.metadata.namespace.clone().unwrap_or_default(),
                i.metadata.name.clone()?,
            ))
        })
        .collect();
    our_refs.sort();
    Computed {
        routing: Routing {
            default_certificate: config
                .default_ssl_certificate
                .as_ref()
                .and_then(|d| certs.get(d).cloned()),
            table: Arc::new(out.table),
            endpoints: Arc::new(endpoints),
            certs: Arc::new(certs),
            secrets: Arc::new(access.secrets),
        },
        conflicts: out.conflicts,
        problems: out.problems,
        issues: issues.into_iter().collect(),
        ours: our_refs,
        configmap: config
            .ingress_nginx
            .as_ref()
            .and_then(|m| m.configmap.clone()),
        setting_problems,
        referenced_secrets: access.referenced,
    }
}

/// The controller-wide settings: the `--configmap` ConfigMap's `data`, or
/// ingress-nginx's defaults when there is none (or it does not exist: an
/// [`Issue`], as ingress-nginx logs it).
fn settings(
    snapshot: &Snapshot,
    mode: &NginxMode,
    issues: &mut BTreeSet<Issue>,
) -> (ControllerSettings, Vec<SettingProblem>) {
    let Some(key) = &mode.configmap else {
        return (ControllerSettings::default(), Vec::new());
    };
    match snapshot.configmaps.get(key) {
        Some(cm) => ControllerSettings::from_configmap(&cm.data.clone().unwrap_or_default()),
        None => {
            issues.insert(Issue {
                ingress: None,
                message: format!(
                    "ConfigMap {key} (--configmap) not found; ingress-nginx's defaults apply"
                ),
            });
            (ControllerSettings::default(), Vec::new())
        }
    }
}

/// The Event reason of a problem with an Ingress: what an operator filters
/// on (`kubectl get events --field-selector reason=...`).
fn event_reason(kind: &ProblemKind) -> &'static str {
    match kind {
        ProblemKind::Annotation(p) => match p.kind {
            AnnotationProblemKind::InvalidValue(_) => "InvalidAnnotation",
            AnnotationProblemKind::Snippet => "SnippetRefused",
            AnnotationProblemKind::NotEnforced => "AccessNotEnforced",
            AnnotationProblemKind::Unsupported { .. }
            | AnnotationProblemKind::Ignored { .. }
            | AnnotationProblemKind::Unknown => "AnnotationIgnored",
        },
        ProblemKind::Refused(_) => "IngressRefused",
        ProblemKind::UnsupportedRegex { .. } => "UnsupportedRegex",
        ProblemKind::Ignored(_) => "Ignored",
        _ => "InvalidIngress",
    }
}

fn load(certs: &mut CertStore, secret: &Secret) -> Result<(), String> {
    let key = ObjectKey::<Secret>::of(&secret.metadata);
    if let Some(t) = secret.type_.as_deref().filter(|t| *t != TLS_SECRET_TYPE) {
        return Err(format!(
            "secret {key} has type {t:?}, not {TLS_SECRET_TYPE:?}"
        ));
    }
    certs
        .load_secret(secret)
        .map_err(|e| format!("TLS secret {key} is unusable: {e}"))
}

/// Resolves a backend's Service port to its endpoints (ready ones, else
/// serving-and-terminating ones), and what was wrong with its slices.
fn resolve(snapshot: &Snapshot, key: &ServiceKey) -> Result<(EndpointSet, Vec<String>), String> {
    let Some(svc) = snapshot
        .services
        .get(&ObjectKey::new(&key.namespace, &key.name))
    else {
        return Err(format!("service {}/{} not found", key.namespace, key.name));
    };
    let spec = svc.spec.as_ref();
    if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
        return Err(format!(
            "service {}/{} is of type ExternalName, which is not supported",
            key.namespace, key.name
        ));
    }
    let ports: &[ServicePort] = spec.and_then(|s| s.ports.as_deref()).unwrap_or(&[]);
    let port = ports.iter().find(|p| match &key.port {
        PortRef::Number(n) => p.port == i32::from(*n),
        PortRef::Name(n) => p.name.as_deref() == Some(n.as_str()),
    });
    let Some(port) = port else {
        return Err(format!(
            "service {}/{} has no port {}",
            key.namespace, key.name, key.port
        ));
    };
    let port_name = port.name.as_deref().unwrap_or("");
    let Some(protocol) = Protocol::parse(port.protocol.as_deref()) else {
        return Err(format!(
            "service {}/{} port {} has an unsupported protocol",
            key.namespace, key.name, key.port
        ));
    };
    let mut found = Resolved::default();
    let mut slice_proto = None;
    for slice in snapshot.slices_of(&key.namespace, &key.name) {
        let slice_key = ObjectKey::<EndpointSlice>::from_object(slice);
        let read = match endpoint_slice::read(slice) {
            Ok(r) => r,
            Err(Unreadable::Fqdn) => continue,
            Err(e) => {
                found
                    .problems
                    .push(format!("endpointslice {slice_key}: {e}"));
                continue;
            }
        };
        found.problems.extend(
            read.problems
                .iter()
                .map(|p| format!("endpointslice {slice_key}: {p}")),
        );
        if read.more_problems > 0 {
            found.problems.push(format!(
                "endpointslice {slice_key}: {} more problems not shown",
                read.more_problems
            ));
        }
        let Some(sp) = read.port(port_name, protocol) else {
            continue;
        };
        slice_proto = slice_proto.or(sp.app_protocol.clone());
        for ep in &read.endpoints {
            let addr = SocketAddr::new(ep.ip, sp.port);
            if ep.ready && !ep.terminating {
                found.ready.push(addr);
            } else if ep.serving && ep.terminating {
                found.terminating.push(addr);
            }
        }
    }
    let proto =
        AppProtocol::from_app_protocol(port.app_protocol.as_deref().or(slice_proto.as_deref()));
    let addrs = if found.ready.is_empty() {
        found.terminating
    } else {
        found.ready
    };
    Ok((EndpointSet::new(addrs, proto), found.problems))
}

/// What a Service port's slices hold.
#[derive(Default)]
struct Resolved {
    ready: Vec<SocketAddr>,
    terminating: Vec<SocketAddr>,
    /// Parts of slices skipped, for the Ingress's issues.
    problems: Vec<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::controller::snapshot::{Object, SERVICE_NAME_LABEL};

    fn obj<T: k8s_openapi::serde::de::DeserializeOwned>(v: Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    fn class(name: &str, controller: &str) -> Object {
        Object::IngressClass(obj(json!({
            "metadata": {"name": name}, "spec": {"controller": controller}
        })))
    }

    fn ingress(name: &str, class: Option<&str>, host: &str, port: Value) -> Object {
        let mut spec = json!({
            "rules": [{"host": host, "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": port}}
            }]}}],
            "tls": [{"hosts": [host], "secretName": "cert"}]
        });
        if let Some(c) = class {
            spec["ingressClassName"] = json!(c);
        }
        Object::Ingress(obj(json!({
            "metadata": {"namespace": "ns", "name": name, "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": spec
        })))
    }

    fn service() -> Object {
        Object::Service(obj(json!({
            "metadata": {"namespace": "ns", "name": "web"},
            "spec": {"ports": [
                {"name": "http", "port": 80, "targetPort": 8080},
                {"name": "grpc", "port": 9000, "appProtocol": "kubernetes.io/h2c"}
            ]}
        })))
    }

    fn slice(name: &str, endpoints: Value) -> Object {
        Object::EndpointSlice(obj(json!({
            "metadata": {"namespace": "ns", "name": name,
                         "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}, {"name": "grpc", "port": 9090}],
            "endpoints": endpoints
        })))
    }

    fn secret(cert: &str, key: &str) -> Object {
        use base64_like::encode;
        Object::Secret(obj(json!({
            "metadata": {"namespace": "ns", "name": "cert"},
            "type": TLS_SECRET_TYPE,
            "data": {"tls.crt": encode(cert.as_bytes()), "tls.key": encode(key.as_bytes())}
        })))
    }

    /// Minimal base64 for test fixtures (k8s `ByteString` is base64 JSON).
    mod base64_like {
        pub fn encode(b: &[u8]) -> String {
            const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut s = String::new();
            for c in b.chunks(3) {
                let n = (u32::from(c[0]) << 16)
                    | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                    | u32::from(*c.get(2).unwrap_or(&0));
                for i in 0..4 {
                    if i <= c.len() {
                        s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                    } else {
                        s.push('=');
                    }
                }
            }
            s
        }
    }

    fn pem(host: &str) -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec![host.to_owned()]).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    fn addrs(c: &Computed, port: PortRef) -> Vec<String> {
        let key = ServiceKey::new("ns", "web", port);
        let set = c.routing.endpoints.get(&key).expect("endpoints");
        set.addrs().iter().map(|a| a.to_string()).collect()
    }

    fn ready(ip: &str) -> Value {
        json!({"addresses": [ip], "conditions": {"ready": true, "serving": true}})
    }

    #[test]
    fn class_selection() {
        let objs = || {
            vec![
                class("sluice", DEFAULT_CONTROLLER),
                class("nginx", "k8s.io/ingress-nginx"),
                ingress("a", Some("sluice"), "a.example.com", json!({"number": 80})),
                ingress("b", Some("nginx"), "b.example.com", json!({"number": 80})),
                ingress("c", None, "c.example.com", json!({"number": 80})),
            ]
        };
        let cfg = ControllerConfig::default();
        let c = compute(&cfg, &Snapshot::from_objects(objs()), &CertStore::new());
        assert_eq!(c.ours, vec![IngressRef::new("ns", "a")]);
        let cfg = ControllerConfig {
            watch_ingress_without_class: true,
            ..ControllerConfig::default()
        };
        let c = compute(&cfg, &Snapshot::from_objects(objs()), &CertStore::new());
        assert_eq!(
            c.ours,
            vec![IngressRef::new("ns", "a"), IngressRef::new("ns", "c")]
        );
        let cfg = ControllerConfig {
            controller: "k8s.io/ingress-nginx".into(),
            ..ControllerConfig::default()
        };
        let c = compute(&cfg, &Snapshot::from_objects(objs()), &CertStore::new());
        assert_eq!(c.ours, vec![IngressRef::new("ns", "b")]);
        assert_eq!(c.routing.table.routes().count(), 1);
    }

    #[test]
    fn ports_by_number_and_name_resolve_to_slice_ports() {
        for (port, key, want, proto) in [
            (
                json!({"number": 80}),
                PortRef::Number(80),
                "10.0.0.1:8080",
                AppProtocol::Http1,
            ),
            (
                json!({"name": "http"}),
                PortRef::Name("http".into()),
                "10.0.0.1:8080",
                AppProtocol::Http1,
            ),
            (
                json!({"number": 9000}),
                PortRef::Number(9000),
                "10.0.0.1:9090",
                AppProtocol::H2c,
            ),
        ] {
            let s = Snapshot::from_objects([
                class("sluice", DEFAULT_CONTROLLER),
                ingress("a", Some("sluice"), "a.example.com", port),
                service(),
                slice("web-1", json!([ready("10.0.0.1")])),
            ]);
            let c = compute(&ControllerConfig::default(), &s, &CertStore::new());
            assert_eq!(addrs(&c, key.clone()), vec![want.to_owned()]);
            let set = c
                .routing
                .endpoints
                .get(&ServiceKey::new("ns", "web", key))
                .unwrap();
            assert_eq!(set.protocol(), proto);
        }
        // Unknown port and unknown service are issues.
        let s = Snapshot::from_objects([
            class("sluice", DEFAULT_CONTROLLER),
            ingress("a", Some("sluice"), "a.example.com", json!({"number": 81})),
            service(),
        ]);
        let c = compute(&ControllerConfig::default(), &s, &CertStore::new());
        assert!(
            c.issues
                .iter()
                .any(|i| i.message.contains("has no port 81")),
            "{:?}",
            c.issues
        );
        assert!(
            c.issues
                .iter()
                .any(|i| i.message.contains("TLS secret ns/cert not found"))
        );
    }

    #[test]
    fn terminating_endpoints_only_when_none_ready() {
        let term = json!({"addresses": ["10.0.0.9"],
                          "conditions": {"ready": false, "serving": true, "terminating": true}});
        let not_serving = json!({"addresses": ["10.0.0.8"],
                          "conditions": {"ready": false, "serving": false, "terminating": true}});
        let unready = json!({"addresses": ["10.0.0.7"], "conditions": {"ready": false}});
        let run = |eps: Value| {
            let s = Snapshot::from_objects([
                class("sluice", DEFAULT_CONTROLLER),
                ingress("a", Some("sluice"), "a.example.com", json!({"number": 80})),
                service(),
                slice("web-1", eps),
            ]);
            let c = compute(&ControllerConfig::default(), &s, &CertStore::new());
            addrs(&c, PortRef::Number(80))
        };
        assert_eq!(
            run(json!([ready("10.0.0.1"), term.clone(), unready.clone()])),
            vec!["10.0.0.1:8080"]
        );
        assert_eq!(
            run(json!([term, not_serving, unready.clone()])),
            vec!["10.0.0.9:8080"]
        );
        assert!(run(json!([unready])).is_empty());
        // No conditions at all means ready.
        assert_eq!(
            run(json!([{"addresses": ["10.0.0.2"]}])),
            vec!["10.0.0.2:8080"]
        );
    }

    /// EndpointSlices are read with the API's semantics (the shared
    /// reader): an endpoint is its first address, a missing `serving`
    /// means true (not `ready`), an address that does not parse is an
    /// issue on the Ingress (not dropped silently), and a slice port
    /// matches the Service port by name and protocol.
    #[test]
    fn endpoint_slices_are_read_with_the_api_semantics() {
        let run = |eps: Value, ports: Value| {
            let mut slice = slice("web-1", eps);
            if let Object::EndpointSlice(s) = &mut slice {
                s.ports = serde_json::from_value(ports).unwrap();
            }
            let s = Snapshot::from_objects([
                class("sluice", DEFAULT_CONTROLLER),
                ingress("a", Some("sluice"), "a.example.com", json!({"number": 80})),
                service(),
                slice,
            ]);
            compute(&ControllerConfig::default(), &s, &CertStore::new())
        };
        let http = || json!([{"name": "http", "port": 8080}]);
        // The first address only: the others are the same endpoint.
        let c = run(json!([{"addresses": ["10.0.0.1", "10.0.0.2"]}]), http());
        assert_eq!(addrs(&c, PortRef::Number(80)), vec!["10.0.0.1:8080"]);
        // Terminating without `serving`: serving (API default), so used
        // while nothing is ready.
        let c = run(
            json!([{"addresses": ["10.0.0.3"],
                    "conditions": {"ready": false, "terminating": true}}]),
            http(),
        );
        assert_eq!(addrs(&c, PortRef::Number(80)), vec!["10.0.0.3:8080"]);
        // An unusable address is reported against the Ingress.
        let c = run(
            json!([{"addresses": ["10.0.0.300"]}, {"addresses": ["10.0.0.4"]}]),
            http(),
        );
        assert_eq!(addrs(&c, PortRef::Number(80)), vec!["10.0.0.4:8080"]);
        assert!(
            c.issues.iter().any(|i| i.ingress == Some(IngressRef::new("ns", "a"))
                && i.message
                    == "endpointslice ns/web-1: endpoint #0: invalid address \"10.0.0.300\"; ignored"),
            "{:?}",
            c.issues
        );
        // A UDP port of the same name is not the Service's TCP port.
        let c = run(
            json!([{"addresses": ["10.0.0.5"]}]),
            json!([{"name": "http", "port": 5353, "protocol": "UDP"}]),
        );
        assert!(addrs(&c, PortRef::Number(80)).is_empty());
    }

    #[test]
    fn broken_secret_keeps_previous_certificate_deleted_one_drops_it() {
        let (cert, key) = pem("a.example.com");
        let base = || {
            vec![
                class("sluice", DEFAULT_CONTROLLER),
                ingress("a", Some("sluice"), "a.example.com", json!({"number": 80})),
                service(),
            ]
        };
        let sref = SecretRef {
            namespace: "ns".into(),
            name: "cert".into(),
        };
        let cfg = ControllerConfig::default();
        let mut objs = base();
        objs.push(secret(&cert, &key));
        let good = compute(&cfg, &Snapshot::from_objects(objs), &CertStore::new());
        let loaded = good.routing.certs.get(&sref).cloned().expect("loaded");
        assert!(!good.issues.iter().any(|i| i.message.contains("TLS")));

        let mut objs = base();
        objs.push(secret("garbage", &key));
        let broken = compute(
            &cfg,
            &Snapshot::from_objects(objs.clone()),
            &good.routing.certs,
        );
        assert!(Arc::ptr_eq(
            broken.routing.certs.get(&sref).unwrap(),
            &loaded
        ));
        assert!(
            broken.issues.iter().any(|i| i
                .message
                .contains("keeping the previously loaded certificate")),
            "{:?}",
            broken.issues
        );
        // Broken without a previous certificate: none.
        let fresh = compute(&cfg, &Snapshot::from_objects(objs), &CertStore::new());
        assert!(fresh.routing.certs.get(&sref).is_none());

        let gone = compute(&cfg, &Snapshot::from_objects(base()), &good.routing.certs);
        assert!(gone.routing.certs.get(&sref).is_none());
    }

    #[test]
    fn default_ssl_certificate_travels_in_the_routing_and_follows_its_secret() {
        let cfg = ControllerConfig {
            default_ssl_certificate: Some(SecretRef {
                namespace: "ns".into(),
                name: "cert".into(),
            }),
            ..ControllerConfig::default()
        };
        let snap = |cert: &str, key: &str| {
            Snapshot::from_objects([class("sluice", DEFAULT_CONTROLLER), secret(cert, key)])
        };
        let (c1, k1) = pem("fallback.test");
        let (c2, k2) = pem("fallback.test");
        let first = compute(&cfg, &snap(&c1, &k1), &CertStore::new());
        let d1 = first.routing.default_certificate.clone().expect("loaded");
        let second = compute(&cfg, &snap(&c2, &k2), &first.routing.certs);
        let d2 = second
            .routing
            .default_certificate
            .clone()
            .expect("reloaded");
        assert_ne!(d1.cert, d2.cert);
        // Broken: the previous one stays, reported without an Ingress.
        let broken = compute(&cfg, &snap("garbage", &k2), &second.routing.certs);
        assert!(Arc::ptr_eq(
            broken.routing.default_certificate.as_ref().unwrap(),
            &d2
        ));
        assert!(broken.issues.iter().any(|i| i.ingress.is_none()));
        // Not configured: none.
        let none = compute(
            &ControllerConfig::default(),
            &snap(&c1, &k1),
            &CertStore::new(),
        );
        assert!(none.routing.default_certificate.is_none());
    }
}
