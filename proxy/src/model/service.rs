//! [`ServiceView`]: a `v1/Service` as the proxy needs it.

use std::convert::Infallible;
use std::net::IpAddr;

use ipnet::IpNet;
use ipvs_sys::{AddressFamily, Protocol, Scheduler, ServiceFlags};
use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{
    ANNOTATION_KUBE_ROUTER_SCHED_FLAGS, ANNOTATION_KUBE_ROUTER_SCHEDULER, ANNOTATION_SCHED_FLAGS,
    ANNOTATION_SCHEDULER, Admission, IgnoreReason, ObjectKind, Problem, ProblemSink, annotation,
    namespace_of, other_proxy, parse_cidr, parse_ip, parse_protocol, port_number, quote,
    special_ip,
};

/// Session affinity timeout when `sessionAffinityConfig.clientIP
/// .timeoutSeconds` is absent or invalid (the API server's default, 3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;
/// The largest session affinity timeout the API accepts (one day).
pub const MAX_AFFINITY_TIMEOUT: u32 = 86400;

/// One port of a Service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServicePortView {
    /// Port name (empty when unnamed); EndpointSlice ports match on it.
    pub name: String,
    /// Transport protocol.
    pub protocol: Protocol,
    /// The port on the ClusterIP, externalIPs and LoadBalancer IPs.
    pub port: u16,
    /// The NodePort, if any.
    pub node_port: Option<u16>,
}

/// A Service we proxy, normalized and validated.
///
/// Invalid parts were dropped and are listed in `problems`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// ClusterIPs, at most one per family, in `spec.clusterIPs` order.
    pub cluster_ips: Vec<IpAddr>,
    /// Ports, without duplicates (by name+protocol and by port+protocol).
    pub ports: Vec<ServicePortView>,
    /// `spec.externalIPs`, deduplicated.
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip` with `ipMode` VIP (or unset),
    /// deduplicated, whatever the Service's type (as kube-proxy).
    /// Hostname-only and `ipMode: Proxy` ingress is left out: the load
    /// balancer, not this node, answers on those.
    pub load_balancer_ips: Vec<IpAddr>,
    /// `spec.loadBalancerSourceRanges`, host bits cleared, deduplicated.
    pub source_ranges: Vec<IpNet>,
    /// `externalTrafficPolicy: Local` on a NodePort or LoadBalancer Service
    /// (kube-proxy ignores the field on other types).
    pub external_policy_local: bool,
    /// `internalTrafficPolicy: Local`.
    pub internal_policy_local: bool,
    /// `Some(timeout)` for `sessionAffinity: ClientIP`.
    pub affinity_timeout: Option<u32>,
    /// `spec.healthCheckNodePort` of a LoadBalancer Service with
    /// `externalTrafficPolicy: Local`.
    pub health_check_node_port: Option<u16>,
    /// Scheduler chosen by annotation; `None` means the configured default.
    pub scheduler: Option<Scheduler>,
    /// Scheduler flags chosen by annotation; `None` means the default
    /// (`mh-port` for `mh`, as kube-proxy, otherwise none).
    pub sched_flags: Option<ServiceFlags>,
    /// What was wrong with the object.
    pub problems: Vec<Problem>,
}

impl ServiceView {
    /// Normalizes `svc`. `service_proxy_name` is this proxy's name
    /// (`None`: like kube-proxy, handle only unlabelled Services).
    ///
    /// Steps: whether it is ours at all ([`admit`]), its ClusterIPs (none
    /// usable: rejected), then each field on its own; a bad part is
    /// dropped and reported, the rest is kept.
    pub fn from_k8s(svc: &Service, service_proxy_name: Option<&str>) -> Admission<ServiceView> {
        let Admitted {
            namespace,
            name,
            spec,
            svc_type,
        } = match admit(svc, service_proxy_name) {
            Ok(a) => a,
            Err(Admission::Ignored(why)) => return Admission::Ignored(why),
            Err(Admission::Rejected(p)) => return Admission::Rejected(p),
            Err(Admission::Accepted(never)) => match never {},
        };
        let mut problems = ProblemSink::new(ObjectKind::Service, &namespace, &name);
        let cluster_ips = match cluster_ips(spec, &mut problems) {
            Ok(ips) if !ips.is_empty() => ips,
            Ok(_) => {
                let reasons: Vec<String> =
                    problems.finish().into_iter().map(|p| p.reason).collect();
                return Admission::Rejected(Problem::service(
                    &namespace,
                    &name,
                    format!(
                        "no usable clusterIP ({}); the Service is not proxied",
                        reasons.join("; ")
                    ),
                ));
            }
            Err(ignored) => return Admission::Ignored(ignored),
        };
        let families: Vec<AddressFamily> = cluster_ips.iter().map(AddressFamily::of).collect();
        // kube-proxy ignores externalTrafficPolicy on other types.
        let external_policy_local = matches!(svc_type, "NodePort" | "LoadBalancer")
            && spec.external_traffic_policy.as_deref() == Some("Local");
        let meta = &svc.metadata;
        Admission::Accepted(ServiceView {
            ports: ports(spec, &mut problems),
            external_ips: external_ips(spec, &families, &mut problems),
            load_balancer_ips: load_balancer_ips(svc, &mut problems),
            source_ranges: source_ranges(spec, &mut problems),
            external_policy_local,
            internal_policy_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
            affinity_timeout: affinity_timeout(spec, &mut problems),
            health_check_node_port: health_check_node_port(
                spec,
                svc_type == "LoadBalancer" && external_policy_local,
                &mut problems,
            ),
            scheduler: scheduler(meta, &mut problems),
            sched_flags: sched_flags(meta, &mut problems),
            cluster_ips,
            problems: problems.finish(),
            namespace,
            name,
        })
    }
}

/// A Service that is ours to proxy, before its fields are read.
struct Admitted<'a> {
    namespace: String,
    name: String,
    spec: &'a ServiceSpec,
    svc_type: &'a str,
}

/// Whether `svc` is ours: it has a name, no other proxy's label, a spec,
/// and is not an ExternalName.
fn admit<'a>(
    svc: &'a Service,
    service_proxy_name: Option<&str>,
) -> Result<Admitted<'a>, Admission<Infallible>> {
    let meta = &svc.metadata;
    let namespace = namespace_of(meta);
    let name = match meta.name.as_deref() {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => {
            return Err(Admission::Rejected(Problem::service(
                &namespace,
                "",
                "Service has no name; ignored",
            )));
        }
    };
    if let Some(other) = other_proxy(meta, service_proxy_name) {
        return Err(Admission::Ignored(IgnoreReason::OtherProxy(other)));
    }
    let Some(spec) = svc.spec.as_ref() else {
        return Err(Admission::Ignored(IgnoreReason::NoClusterIp));
    };
    let svc_type = spec.type_.as_deref().unwrap_or("ClusterIP");
    if svc_type == "ExternalName" {
        return Err(Admission::Ignored(IgnoreReason::ExternalName));
    }
    Ok(Admitted {
        namespace,
        name,
        spec,
        svc_type,
    })
}

/// The usable ClusterIPs, at most one per family (empty: none usable), or
/// why the Service is not proxied at all (none, or headless).
/// `spec.clusterIP` is `spec.clusterIPs[0]`; objects from manifests may
/// carry only one of them.
fn cluster_ips(
    spec: &ServiceSpec,
    problems: &mut ProblemSink,
) -> Result<Vec<IpAddr>, IgnoreReason> {
    let primary = spec
        .cluster_ip
        .as_deref()
        .filter(|s| !s.is_empty())
        .or_else(|| spec.cluster_ips.as_ref()?.first().map(String::as_str));
    match primary {
        None | Some("") => return Err(IgnoreReason::NoClusterIp),
        Some("None") => return Err(IgnoreReason::Headless),
        Some(_) => {}
    }
    let listed: Vec<&str> = match spec.cluster_ips.as_deref() {
        Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
        _ => primary.into_iter().collect(),
    };
    let mut cluster_ips: Vec<IpAddr> = Vec::new();
    for s in listed {
        match parse_ip(s) {
            None => problems.report(|| format!("invalid clusterIP {}; ignored", quote(s))),
            Some(ip) => {
                if let Some(why) = special_ip(&ip) {
                    problems.report(|| format!("clusterIP {ip} is {why}; ignored"));
                } else if cluster_ips
                    .iter()
                    .any(|c| AddressFamily::of(c) == AddressFamily::of(&ip))
                {
                    problems.report(|| {
                        format!("more than one clusterIP of the same family; {ip} ignored")
                    });
                } else {
                    cluster_ips.push(ip);
                }
            }
        }
    }
    Ok(cluster_ips)
}

/// The ports, without duplicates (by name+protocol and by port+protocol).
fn ports(spec: &ServiceSpec, problems: &mut ProblemSink) -> Vec<ServicePortView> {
    let mut ports: Vec<ServicePortView> = Vec::new();
    for (i, p) in spec.ports.iter().flatten().enumerate() {
        let pname = p.name.clone().unwrap_or_default();
        let label = if pname.is_empty() {
            format!("port #{i}")
        } else {
            format!("port {}", quote(&pname))
        };
        let Some(protocol) = parse_protocol(p.protocol.as_deref()) else {
            problems.report(|| {
                format!(
                    "{label}: unsupported protocol {}; port ignored",
                    quote(p.protocol.as_deref().unwrap_or_default())
                )
            });
            continue;
        };
        let Some(port) = port_number(p.port) else {
            problems.report(|| format!("{label}: invalid port {}; port ignored", p.port));
            continue;
        };
        let node_port = match p.node_port {
            None | Some(0) => None,
            Some(n) => match port_number(n) {
                Some(n) => Some(n),
                None => {
                    problems.report(|| format!("{label}: invalid nodePort {n}; ignored"));
                    None
                }
            },
        };
        if ports
            .iter()
            .any(|q| q.protocol == protocol && (q.port == port || q.name == pname))
        {
            problems.report(|| {
                format!(
                    "{label}: duplicate of an earlier port ({protocol} {port} or same name); ignored"
                )
            });
            continue;
        }
        ports.push(ServicePortView {
            name: pname,
            protocol,
            port,
            node_port,
        });
    }
    ports
}

/// `spec.externalIPs` of the Service's families, deduplicated.
fn external_ips(
    spec: &ServiceSpec,
    families: &[AddressFamily],
    problems: &mut ProblemSink,
) -> Vec<IpAddr> {
    let mut external_ips: Vec<IpAddr> = Vec::new();
    for s in spec.external_ips.iter().flatten() {
        match parse_ip(s) {
            None => problems.report(|| format!("invalid externalIP {}; ignored", quote(s))),
            Some(ip) => {
                if let Some(why) = special_ip(&ip) {
                    problems.report(|| format!("externalIP {ip} is {why}; ignored"));
                } else if !families.contains(&AddressFamily::of(&ip)) {
                    problems.report(|| {
                        format!(
                            "externalIP {ip}: the Service has no clusterIP of its family; ignored"
                        )
                    });
                } else if !external_ips.contains(&ip) {
                    external_ips.push(ip);
                }
            }
        }
    }
    external_ips
}

/// `status.loadBalancer.ingress[].ip` in VIP mode, deduplicated.
fn load_balancer_ips(svc: &Service, problems: &mut ProblemSink) -> Vec<IpAddr> {
    let mut load_balancer_ips: Vec<IpAddr> = Vec::new();
    let ingress = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    for ing in ingress.into_iter().flatten() {
        let Some(s) = ing.ip.as_deref().filter(|s| !s.is_empty()) else {
            continue; // hostname-only
        };
        if ing.ip_mode.as_deref().is_some_and(|m| m != "VIP") {
            continue; // ipMode Proxy: the load balancer terminates traffic
        }
        match parse_ip(s) {
            None => problems
                .report(|| format!("invalid load balancer ingress IP {}; ignored", quote(s))),
            Some(ip) => {
                if let Some(why) = special_ip(&ip) {
                    problems.report(|| format!("load balancer ingress IP {ip} is {why}; ignored"));
                } else if !load_balancer_ips.contains(&ip) {
                    load_balancer_ips.push(ip);
                }
            }
        }
    }
    load_balancer_ips
}

/// `spec.loadBalancerSourceRanges`, host bits cleared, deduplicated.
fn source_ranges(spec: &ServiceSpec, problems: &mut ProblemSink) -> Vec<IpNet> {
    let mut source_ranges: Vec<IpNet> = Vec::new();
    for s in spec.load_balancer_source_ranges.iter().flatten() {
        match parse_cidr(s) {
            None => {
                problems.report(|| format!("invalid loadBalancerSourceRange {}; ignored", quote(s)))
            }
            Some(net) => {
                if !source_ranges.contains(&net) {
                    source_ranges.push(net);
                }
            }
        }
    }
    source_ranges
}

/// `Some(timeout)` for `sessionAffinity: ClientIP`.
fn affinity_timeout(spec: &ServiceSpec, problems: &mut ProblemSink) -> Option<u32> {
    match spec.session_affinity.as_deref() {
        None | Some("None") | Some("") => None,
        Some("ClientIP") => {
            let t = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds);
            Some(match t {
                None => DEFAULT_AFFINITY_TIMEOUT,
                Some(t) if (1..=MAX_AFFINITY_TIMEOUT as i32).contains(&t) => t as u32,
                Some(t) => {
                    problems.report(|| {
                        format!(
                            "sessionAffinityConfig.clientIP.timeoutSeconds {t} is not in 1..={MAX_AFFINITY_TIMEOUT}; using {DEFAULT_AFFINITY_TIMEOUT}"
                        )
                    });
                    DEFAULT_AFFINITY_TIMEOUT
                }
            })
        }
        Some(other) => {
            problems
                .report(|| format!("unknown sessionAffinity {}; treated as None", quote(other)));
            None
        }
    }
}

/// `spec.healthCheckNodePort`, when `wanted` (a LoadBalancer with
/// `externalTrafficPolicy: Local`).
fn health_check_node_port(
    spec: &ServiceSpec,
    wanted: bool,
    problems: &mut ProblemSink,
) -> Option<u16> {
    if !wanted {
        return None;
    }
    match spec.health_check_node_port {
        None | Some(0) => {
            problems.report(|| "externalTrafficPolicy Local without a healthCheckNodePort".into());
            None
        }
        Some(p) => {
            let n = port_number(p);
            if n.is_none() {
                problems.report(|| format!("invalid healthCheckNodePort {p}; ignored"));
            }
            n
        }
    }
}

/// The IPVS scheduler an annotation names (ours first, then
/// kube-router's); `None`: the configured default.
fn scheduler(meta: &ObjectMeta, problems: &mut ProblemSink) -> Option<Scheduler> {
    let (key, value) = [ANNOTATION_SCHEDULER, ANNOTATION_KUBE_ROUTER_SCHEDULER]
        .into_iter()
        .find_map(|k| annotation(meta, k).map(|v| (k, v.trim())))?;
    let found = Scheduler::KNOWN.iter().find(|s| s.name() == value).cloned();
    if found.is_none() {
        problems.report(|| {
            format!(
                "annotation {key}: unknown IPVS scheduler {}; using the default",
                quote(value)
            )
        });
    }
    found
}

/// The scheduler flags an annotation names; `None`: the default.
fn sched_flags(meta: &ObjectMeta, problems: &mut ProblemSink) -> Option<ServiceFlags> {
    let (key, value) = [ANNOTATION_SCHED_FLAGS, ANNOTATION_KUBE_ROUTER_SCHED_FLAGS]
        .into_iter()
        .find_map(|k| annotation(meta, k).map(|v| (k, v)))?;
    let mut flags = ServiceFlags::EMPTY;
    let mut any = false;
    for token in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let f = match token {
            "flag-1" | "sh-fallback" | "mh-fallback" => ServiceFlags::SCHED1,
            "flag-2" | "sh-port" | "mh-port" => ServiceFlags::SCHED2,
            "flag-3" => ServiceFlags::SCHED3,
            _ => {
                problems.report(|| {
                    format!(
                        "annotation {key}: unknown scheduler flag {}; ignored",
                        quote(token)
                    )
                });
                continue;
            }
        };
        flags |= f;
        any = true;
    }
    any.then_some(flags)
}
