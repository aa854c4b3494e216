//! The structured input: small vocabularies picked by index, so that the
//! fuzzer hits the same hosts and paths often (merges, conflicts, twins)
//! and still reaches every kind of invalid value.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::TypedLocalObjectReference;
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressClass, IngressClassSpec,
    IngressRule, IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use sluice_ingress::routes::build::SSL_REDIRECT_ANNOTATION;
use sluice_ingress::routes::class::{
    DEFAULT_CLASS_ANNOTATION, DEFAULT_CONTROLLER, LEGACY_CLASS_ANNOTATION,
};

/// Picks from a vocabulary by a fuzzed index.
fn pick(words: &'static [&'static str], i: u8) -> &'static str {
    words[usize::from(i) % words.len()]
}

pub const CLASS_NAMES: &[&str] = &["sluice", "other", "nginx", ""];
/// Class references on Ingresses (legacy annotation or className).
pub const CLASS_REFS: &[&str] = &["sluice", "other", "", " sluice ", "missing"];
pub const NAMESPACES: &[&str] = &["default", "ns1", "ns2"];
pub const NAMES: &[&str] = &["i0", "i1", "i2", "i3", "i4", ""];
pub const BOOLS: &[&str] = &["true", "false", "TRUE", " false ", "yes", ""];
pub const SERVICES: &[&str] = &["s1", "s2", ""];
pub const PORT_NAMES: &[&str] = &["http", "grpc", ""];
pub const PORT_NUMBERS: &[i32] = &[80, 8080, 0, -1, 65535, 65536, i32::MAX];
pub const KINDS: &[&str] = &["Bucket", ""];
pub const GROUPS: &[&str] = &["storage.example.com", ""];
pub const SECRETS: &[&str] = &["tls-a", "tls-b", ""];
pub const PATH_TYPES: &[&str] = &["Exact", "Prefix", "ImplementationSpecific", "", "exact"];
/// Host labels: valid, invalid and borderline (63 and 64 characters).
pub const LABELS: &[&str] = &[
    "a",
    "b",
    "foo",
    "x-y",
    "0",
    "1",
    "-a",
    "a-",
    "a_b",
    "A",
    "*",
    "",
    "xn--z",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];
/// Whole hosts that labels do not produce.
pub const ODD_HOSTS: &[&str] = &[
    "*", "1.2.3.4", "::1", "foo:80", "a..b", "*.*.a", "[::1]:80", "user@a", "a b", ":80", "a:b:c",
    "A.B:", "a.b:99x",
];
/// Path segments: plain, escaped, dot-segments, parameters, forbidden.
pub const SEGMENTS: &[&str] = &[
    "a", "b", "aa", "ab", "%61", "%41", "~", "%7e", "%3a", "%3A", ".", "..", "%2e", "%2E%2e", "",
    "x;y", "..;x", ".;", "%2F", "%5c", "\\", "%", "%zz", " ", "\u{e9}", "a.b", ".a", "#",
];
const TIMES: &[i64] = &[1_700_000_000, 1_700_000_100, 1_700_000_200];

#[derive(Arbitrary, Debug)]
pub struct Input {
    classes: Vec<ClassSpec>,
    pub watch_without_class: bool,
    ingresses: Vec<IngressSpecIn>,
    requests: Vec<RequestSpec>,
}

#[derive(Arbitrary, Debug)]
struct ClassSpec {
    name: u8,
    ours: bool,
    default: bool,
}

#[derive(Arbitrary, Debug)]
struct IngressSpecIn {
    namespace: Option<u8>,
    name: Option<u8>,
    created: Option<u8>,
    legacy_class: Option<u8>,
    class_name: Option<u8>,
    ssl_redirect: Option<u8>,
    default_backend: Option<BackendSpec>,
    rules: Vec<RuleSpec>,
    tls: Option<Vec<TlsSpec>>,
}

#[derive(Arbitrary, Debug)]
struct RuleSpec {
    host: Option<HostSpec>,
    paths: Option<Vec<PathSpec>>,
}

#[derive(Arbitrary, Debug, Clone)]
pub enum HostSpec {
    Labels {
        wildcard: bool,
        labels: Vec<u8>,
        upper: bool,
        trailing_dot: bool,
    },
    Odd(u8),
}

impl HostSpec {
    fn render(&self) -> String {
        match self {
            Self::Labels {
                wildcard,
                labels,
                upper,
                trailing_dot,
            } => {
                let mut h: String = labels
                    .iter()
                    .take(6)
                    .map(|&l| pick(LABELS, l))
                    .collect::<Vec<_>>()
                    .join(".");
                if *wildcard {
                    h = format!("*.{h}");
                }
                if *trailing_dot {
                    h.push('.');
                }
                if *upper {
                    h = h.to_ascii_uppercase();
                }
                h
            }
            Self::Odd(i) => pick(ODD_HOSTS, *i).to_owned(),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct PathSpec {
    path: Option<RawPath>,
    path_type: u8,
    backend: BackendSpec,
}

#[derive(Arbitrary, Debug)]
pub struct RawPath {
    absolute: bool,
    segments: Vec<u8>,
    trailing_slash: bool,
}

impl RawPath {
    pub fn render(&self) -> String {
        let body: Vec<&str> = self
            .segments
            .iter()
            .take(8)
            .map(|&s| pick(SEGMENTS, s))
            .collect();
        let mut p = body.join("/");
        if self.absolute {
            p.insert(0, '/');
        }
        if self.trailing_slash {
            p.push('/');
        }
        p
    }
}

#[derive(Arbitrary, Debug)]
enum BackendSpec {
    Service {
        name: u8,
        port: PortSpec,
    },
    Resource {
        kind: u8,
        name: u8,
        group: Option<u8>,
    },
    Both,
    Neither,
}

#[derive(Arbitrary, Debug)]
enum PortSpec {
    Number(u8),
    Name(u8),
    Both(u8, u8),
    Neither,
    Missing,
}

#[derive(Arbitrary, Debug)]
struct TlsSpec {
    hosts: Option<Vec<HostSpec>>,
    secret: Option<u8>,
}

#[derive(Arbitrary, Debug)]
struct RequestSpec {
    host: RequestHost,
    path: RawPath,
}

#[derive(Arbitrary, Debug)]
enum RequestHost {
    /// The host of the `rule`-th rule that has one (over all Ingresses),
    /// with a wildcard's `*` replaced by a label.
    OfRule {
        rule: u8,
        label: u8,
        upper: bool,
        trailing_dot: bool,
        port: Option<u16>,
    },
    Odd(u8),
    Missing,
}

impl BackendSpec {
    fn to_k8s(&self) -> IngressBackend {
        match self {
            Self::Service { name, port } => IngressBackend {
                service: Some(service(*name, port)),
                resource: None,
            },
            Self::Resource { kind, name, group } => IngressBackend {
                service: None,
                resource: Some(TypedLocalObjectReference {
                    api_group: group.map(|g| pick(GROUPS, g).to_owned()),
                    kind: pick(KINDS, *kind).to_owned(),
                    name: format!("b{}", pick(SERVICES, *name)),
                }),
            },
            Self::Both => IngressBackend {
                service: Some(service(0, &PortSpec::Number(0))),
                resource: Some(TypedLocalObjectReference {
                    api_group: None,
                    kind: "Bucket".into(),
                    name: "b".into(),
                }),
            },
            Self::Neither => IngressBackend::default(),
        }
    }
}

fn service(name: u8, port: &PortSpec) -> IngressServiceBackend {
    let number = |i: u8| PORT_NUMBERS[usize::from(i) % PORT_NUMBERS.len()];
    let port = match port {
        PortSpec::Number(n) => Some(ServiceBackendPort {
            number: Some(number(*n)),
            name: None,
        }),
        PortSpec::Name(n) => Some(ServiceBackendPort {
            name: Some(pick(PORT_NAMES, *n).to_owned()),
            number: None,
        }),
        PortSpec::Both(a, b) => Some(ServiceBackendPort {
            name: Some(pick(PORT_NAMES, *a).to_owned()),
            number: Some(number(*b)),
        }),
        PortSpec::Neither => Some(ServiceBackendPort::default()),
        PortSpec::Missing => None,
    };
    IngressServiceBackend {
        name: pick(SERVICES, name).to_owned(),
        port,
    }
}

impl Input {
    pub fn classes(&self) -> Vec<IngressClass> {
        self.classes
            .iter()
            .take(4)
            .map(|c| IngressClass {
                metadata: ObjectMeta {
                    name: Some(pick(CLASS_NAMES, c.name).to_owned()),
                    annotations: c.default.then(|| {
                        BTreeMap::from([(DEFAULT_CLASS_ANNOTATION.to_owned(), "true".to_owned())])
                    }),
                    ..ObjectMeta::default()
                },
                spec: Some(IngressClassSpec {
                    controller: Some(if c.ours {
                        DEFAULT_CONTROLLER.to_owned()
                    } else {
                        "example.com/other".to_owned()
                    }),
                    parameters: None,
                }),
            })
            .collect()
    }

    /// The Ingresses, at most one per namespace/name (the API server never
    /// lists two).
    pub fn ingresses(&self) -> Vec<Ingress> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for spec in self.ingresses.iter().take(6) {
            let ing = spec.to_k8s();
            let key = (
                ing.metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into()),
                ing.metadata.name.clone(),
            );
            if seen.insert(key) {
                out.push(ing);
            }
        }
        out
    }

    /// The requests as (Host header, request target).
    pub fn requests(&self) -> Vec<(String, String)> {
        let ingresses = self.ingresses();
        self.requests
            .iter()
            .take(16)
            .map(|r| (r.host.render(&ingresses), r.path.render()))
            .collect()
    }
}

impl RequestHost {
    fn render(&self, ingresses: &[Ingress]) -> String {
        match self {
            Self::OfRule {
                rule,
                label,
                upper,
                trailing_dot,
                port,
            } => {
                let rules: Vec<&IngressRule> = ingresses
                    .iter()
                    .filter_map(|i| i.spec.as_ref()?.rules.as_ref())
                    .flatten()
                    .collect();
                let hosts: Vec<&str> = rules.iter().filter_map(|r| r.host.as_deref()).collect();
                if hosts.is_empty() {
                    return String::new();
                }
                let h = hosts[usize::from(*rule) % hosts.len()];
                let mut h = match h.strip_prefix("*.") {
                    Some(parent) => format!("{}.{parent}", pick(LABELS, *label)),
                    None => h.to_owned(),
                };
                if *upper {
                    h = h.to_ascii_uppercase();
                }
                if *trailing_dot {
                    h.push('.');
                }
                if let Some(p) = port {
                    h.push_str(&format!(":{p}"));
                }
                h
            }
            Self::Odd(i) => pick(ODD_HOSTS, *i).to_owned(),
            Self::Missing => String::new(),
        }
    }
}

impl IngressSpecIn {
    fn to_k8s(&self) -> Ingress {
        let mut annotations = BTreeMap::new();
        if let Some(c) = self.legacy_class {
            annotations.insert(
                LEGACY_CLASS_ANNOTATION.to_owned(),
                pick(CLASS_REFS, c).to_owned(),
            );
        }
        if let Some(v) = self.ssl_redirect {
            annotations.insert(
                SSL_REDIRECT_ANNOTATION.to_owned(),
                pick(BOOLS, v).to_owned(),
            );
        }
        let rules = self
            .rules
            .iter()
            .take(4)
            .map(|r| IngressRule {
                host: r.host.as_ref().map(HostSpec::render),
                http: r.paths.as_ref().map(|paths| HTTPIngressRuleValue {
                    paths: paths
                        .iter()
                        .take(6)
                        .map(|p| HTTPIngressPath {
                            path: p.path.as_ref().map(RawPath::render),
                            path_type: pick(PATH_TYPES, p.path_type).to_owned(),
                            backend: p.backend.to_k8s(),
                        })
                        .collect(),
                }),
            })
            .collect();
        let tls = self.tls.as_ref().map(|entries| {
            entries
                .iter()
                .take(3)
                .map(|t| IngressTLS {
                    hosts: t
                        .hosts
                        .as_ref()
                        .map(|hs| hs.iter().take(3).map(HostSpec::render).collect()),
                    secret_name: t.secret.map(|s| pick(SECRETS, s).to_owned()),
                })
                .collect()
        });
        Ingress {
            metadata: ObjectMeta {
                namespace: self.namespace.map(|n| pick(NAMESPACES, n).to_owned()),
                name: self.name.map(|n| pick(NAMES, n).to_owned()),
                creation_timestamp: self.created.map(|t| {
                    let secs = TIMES[usize::from(t) % TIMES.len()];
                    Time(Timestamp::from_second(secs).expect("valid time"))
                }),
                annotations: (!annotations.is_empty()).then_some(annotations),
                ..ObjectMeta::default()
            },
            spec: Some(IngressSpec {
                default_backend: self.default_backend.as_ref().map(BackendSpec::to_k8s),
                ingress_class_name: self.class_name.map(|c| pick(CLASS_REFS, c).to_owned()),
                rules: Some(rules),
                tls,
            }),
            status: None,
        }
    }
}
