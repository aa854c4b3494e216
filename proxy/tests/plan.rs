//! Table-driven tests of the planner: Kubernetes objects in (written as
//! JSON), desired state out, rendered as sorted text lines so each case can
//! say exactly which virtual servers, addresses and set entries it expects.

use sluice_tests::fixtures::{self, merge};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Instant;

use ipvs_sys::{AddressFamily, Netmask, Scheduler, ServiceKey};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};
use sluice_proxy::model::{
    Admission, EndpointSliceView, IgnoreReason, ObjectKind, Problem, ServiceView,
};
use sluice_proxy::plan::SetEntry;
use sluice_proxy::plan::{
    DesiredState, FullPlan, Limits, NodeFacts, NodePortAddresses, PlannerConfig, ServicePlan,
    node_pod_cidrs, plan, plan_service, plan_views,
};

// ---------------------------------------------------------------- fixtures

/// A ClusterIP Service `default/<name>` on 10.96.0.10, port "http" 80/TCP,
/// with `patch` applied.
fn svc(name: &str, patch: Value) -> Value {
    fixtures::service("default", name, "10.96.0.10", patch)
}

/// An IPv4 EndpointSlice `default/<name>` of Service `service`, port "http"
/// 8080/TCP, with `endpoints`, and `patch` applied.
fn slice(name: &str, service: &str, endpoints: Value, patch: Value) -> Value {
    let mut v = fixtures::endpoint_slice(
        "default",
        name,
        service,
        Vec::new(),
        json!({ "endpoints": endpoints }),
    );
    merge(&mut v, patch);
    v
}

/// A ready endpoint on `node`, with `patch` applied.
fn ep(ip: &str, node: &str, patch: Value) -> Value {
    let mut v = fixtures::endpoint(ip, json!({ "nodeName": node }));
    merge(&mut v, patch);
    v
}

fn cond(ready: bool, serving: bool, terminating: bool) -> Value {
    json!({"conditions": {"ready": ready, "serving": serving, "terminating": terminating}})
}

/// This node: `node-a` in `zone-a`, with primary IPs 10.0.0.1 and fd00::1
/// and a second address, loopback and IPv6 link-local.
fn node() -> NodeFacts {
    NodeFacts {
        name: "node-a".into(),
        zone: Some("zone-a".into()),
        primary_ips: vec![ip("10.0.0.1"), ip("fd00::1")],
        addresses: [
            "10.0.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "fd00::1",
            "fe80::1",
            "::1",
        ]
        .into_iter()
        .map(ip)
        .collect(),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn services(values: &[Value]) -> Vec<Service> {
    values
        .iter()
        .map(|v| serde_json::from_value(v.clone()).unwrap())
        .collect()
}

fn slices(values: &[Value]) -> Vec<EndpointSlice> {
    values
        .iter()
        .map(|v| serde_json::from_value(v.clone()).unwrap())
        .collect()
}

fn run(svcs: &[Value], eps: &[Value], node: &NodeFacts, config: &PlannerConfig) -> FullPlan {
    plan(&services(svcs), &slices(eps), node, config)
}

// --------------------------------------------------------------- rendering

fn entry(e: &SetEntry) -> String {
    let p = |p: &ipvs_sys::Protocol| p.to_string().to_lowercase();
    match e {
        SetEntry::Ip(ip) => ip.to_string(),
        SetEntry::IpPort { ip, protocol, port } => format!("{ip},{}:{port}", p(protocol)),
        SetEntry::IpPortIp {
            ip,
            protocol,
            port,
            ip2,
        } => format!("{ip},{}:{port},{ip2}", p(protocol)),
        SetEntry::IpPortNet {
            ip,
            protocol,
            port,
            net,
        } => format!("{ip},{}:{port},{net}", p(protocol)),
        SetEntry::Port(port) => port.to_string(),
    }
}

/// The state as sorted lines:
/// `vs TCP 10.96.0.10:80 rr[ flags=0x..][ timeout=N] -> dest,dest|-`,
/// `bind IP`, `set NAME ENTRY`, `outfilter VIP PROTO PORT`,
/// `hc PORT NS/NAME COUNT`.
fn render(state: &DesiredState) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (key, vs) in &state.virtual_servers {
        let s = &vs.service;
        assert_eq!(s.key, *key);
        assert_eq!(
            s.netmask,
            Netmask::host(key.family()),
            "{key}: host netmask"
        );
        assert!(s.persistence_engine.is_none());
        let mut line = format!("vs {key} {}", s.scheduler);
        if s.flags.bits() != 0 {
            line += &format!(" flags={:#x}", s.flags.bits());
        }
        if s.timeout != 0 {
            line += &format!(" timeout={}", s.timeout);
        }
        let dests: Vec<String> = vs
            .destinations
            .iter()
            .map(|(addr, d)| {
                assert_eq!(d.addr, *addr);
                assert_eq!(d.weight, 1);
                assert_eq!(d.forwarding, ipvs_sys::ipvs::model::Forwarding::Masquerade);
                assert_eq!(
                    AddressFamily::of(&addr.ip()),
                    key.family(),
                    "{key}: real server {addr} of the other family"
                );
                addr.to_string()
            })
            .collect();
        line += " -> ";
        line += &if dests.is_empty() {
            "-".to_string()
        } else {
            dests.join(",")
        };
        out.insert(line);
    }
    for ip in &state.bound_addresses {
        out.insert(format!("bind {ip}"));
    }
    for (name, entries) in &state.sets {
        for e in entries {
            out.insert(format!("set {} {}", name.name(), entry(e)));
        }
    }
    for f in &state.lb_out_filters {
        out.insert(format!(
            "outfilter {} {} {}",
            f.vip,
            f.protocol.to_string().to_lowercase(),
            f.port
        ));
    }
    for (port, hc) in &state.health_checks {
        out.insert(format!(
            "hc {port} {}/{} {}",
            hc.namespace, hc.name, hc.local_endpoints
        ));
    }
    out
}

// ------------------------------------------------------------------- cases

struct Case {
    name: &'static str,
    services: Vec<Value>,
    slices: Vec<Value>,
    config: PlannerConfig,
    node: NodeFacts,
    /// Lines that must be present (or, with `exact`, the whole rendering).
    want: Vec<&'static str>,
    /// Line prefixes that must not be present.
    not: Vec<&'static str>,
    exact: bool,
    /// Substrings of the expected problems, one per problem, in order.
    problems: Vec<&'static str>,
}

impl Default for Case {
    fn default() -> Self {
        Self {
            name: "",
            services: vec![],
            slices: vec![],
            config: PlannerConfig::default(),
            node: node(),
            want: vec![],
            not: vec![],
            exact: false,
            problems: vec![],
        }
    }
}

fn check(case: &Case) {
    let out = run(&case.services, &case.slices, &case.node, &case.config);
    let got = render(&out.state);
    let dump = got.iter().cloned().collect::<Vec<_>>().join("\n");
    if case.exact {
        let want: BTreeSet<String> = case.want.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            got, want,
            "case {}: state differs\n--- got:\n{dump}",
            case.name
        );
    } else {
        for w in &case.want {
            assert!(
                got.contains(*w),
                "case {}: missing {w:?}\n--- got:\n{dump}",
                case.name
            );
        }
    }
    for n in &case.not {
        assert!(
            !got.iter().any(|l| l.starts_with(n)),
            "case {}: unexpected line starting {n:?}\n--- got:\n{dump}",
            case.name
        );
    }
    let problems: Vec<String> = out.problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        problems.len(),
        case.problems.len(),
        "case {}: problems {problems:#?}",
        case.name
    );
    for (got, want) in problems.iter().zip(&case.problems) {
        assert!(
            got.contains(want),
            "case {}: problem {got:?} does not contain {want:?}",
            case.name
        );
    }
    // Planning per Service and merging gives the same state.
    let merged = per_service(&case.services, &case.slices, &case.node, &case.config);
    assert_eq!(
        merged.state, out.state,
        "case {}: per-Service merge",
        case.name
    );
}

/// Plans every accepted Service on its own and merges the plans, in
/// reverse order.
fn per_service(
    svcs: &[Value],
    eps: &[Value],
    node: &NodeFacts,
    config: &PlannerConfig,
) -> FullPlan {
    let name = config.service_proxy_name.as_deref();
    let views: Vec<ServiceView> = services(svcs)
        .iter()
        .filter_map(|s| ServiceView::from_k8s(s, name).accepted())
        .collect();
    let slice_views: Vec<EndpointSliceView> = slices(eps)
        .iter()
        .filter_map(|s| EndpointSliceView::from_k8s(s, name).accepted())
        .collect();
    let plans: Vec<ServicePlan> = views
        .iter()
        .rev()
        .map(|v| plan_service(v, &slice_views, node, config))
        .collect();
    DesiredState::from_plans(plans.iter().rev())
}

fn two_endpoints() -> Vec<Value> {
    vec![slice(
        "web-1",
        "web",
        json!([
            ep("10.244.1.5", "node-a", json!({})),
            ep("10.244.2.5", "node-b", json!({}))
        ]),
        json!({}),
    )]
}

#[test]
fn cluster_ip() {
    let cases = [
        Case {
            name: "single stack TCP, exact state",
            services: vec![svc("web", json!({}))],
            slices: two_endpoints(),
            exact: true,
            want: vec![
                "vs TCP 10.96.0.10:80 rr -> 10.244.1.5:8080,10.244.2.5:8080",
                "bind 10.96.0.10",
                "set KUBE-CLUSTER-IP 10.96.0.10,tcp:80",
                "set KUBE-IPVS-IPS 10.96.0.10",
                "set KUBE-LOOP-BACK 10.244.1.5,tcp:8080,10.244.1.5",
            ],
            ..Case::default()
        },
        Case {
            name: "no slices: a virtual server without real servers",
            services: vec![svc("web", json!({}))],
            want: vec!["vs TCP 10.96.0.10:80 rr -> -"],
            ..Case::default()
        },
        Case {
            name: "UDP",
            services: vec![svc(
                "dns",
                json!({"spec": {"ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}}),
            )],
            slices: vec![slice(
                "dns-1",
                "dns",
                json!([ep("10.244.2.7", "node-b", json!({}))]),
                json!({"ports": [{"name": "dns", "port": 5353, "protocol": "UDP"}]}),
            )],
            exact: true,
            want: vec![
                "vs UDP 10.96.0.10:53 rr -> 10.244.2.7:5353",
                "bind 10.96.0.10",
                "set KUBE-CLUSTER-IP 10.96.0.10,udp:53",
                "set KUBE-IPVS-IPS 10.96.0.10",
            ],
            ..Case::default()
        },
        Case {
            name: "SCTP",
            services: vec![svc(
                "sig",
                json!({"spec": {"ports": [{"name": "s", "port": 3868, "protocol": "SCTP"}]}}),
            )],
            slices: vec![slice(
                "sig-1",
                "sig",
                json!([ep("10.244.2.7", "node-b", json!({}))]),
                json!({"ports": [{"name": "s", "port": 3868, "protocol": "SCTP"}]}),
            )],
            want: vec![
                "vs SCTP 10.96.0.10:3868 rr -> 10.244.2.7:3868",
                "set KUBE-CLUSTER-IP 10.96.0.10,sctp:3868",
            ],
            ..Case::default()
        },
        Case {
            name: "ports match slice ports by name and protocol",
            services: vec![svc(
                "multi",
                json!({"spec": {"ports": [
                    {"name": "http", "port": 80, "protocol": "TCP"},
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"}
                ]}}),
            )],
            slices: vec![slice(
                "multi-1",
                "multi",
                json!([ep("10.244.2.7", "node-b", json!({}))]),
                json!({"ports": [
                    {"name": "http", "port": 8080, "protocol": "TCP"},
                    {"name": "dns", "port": 5353, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 5354, "protocol": "TCP"},
                    {"name": "dns", "port": 9999, "protocol": "TCP"}
                ]}),
            )],
            want: vec![
                "vs TCP 10.96.0.10:80 rr -> 10.244.2.7:8080",
                "vs UDP 10.96.0.10:53 rr -> 10.244.2.7:5353",
                "vs TCP 10.96.0.10:53 rr -> 10.244.2.7:5354",
            ],
            not: vec!["vs TCP 10.96.0.10:53 rr -> 10.244.2.7:9999"],
            ..Case::default()
        },
        Case {
            name: "endpoints joined over slices; duplicates once; port per slice",
            services: vec![svc("web", json!({}))],
            slices: vec![
                slice(
                    "web-1",
                    "web",
                    json!([
                        ep("10.244.1.5", "node-a", json!({})),
                        ep("10.244.2.5", "node-b", json!({}))
                    ]),
                    json!({}),
                ),
                slice(
                    "web-2",
                    "web",
                    json!([
                        ep("10.244.2.5", "node-b", json!({})),
                        ep("10.244.3.5", "node-c", json!({}))
                    ]),
                    json!({"ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}),
                ),
                slice(
                    "web-3",
                    "web",
                    json!([ep("10.244.4.5", "node-d", json!({}))]),
                    json!({"ports": [{"name": "http", "port": 9090, "protocol": "TCP"}]}),
                ),
            ],
            want: vec![
                "vs TCP 10.96.0.10:80 rr -> 10.244.1.5:8080,10.244.2.5:8080,10.244.3.5:8080,10.244.4.5:9090",
            ],
            ..Case::default()
        },
        Case {
            name: "dual stack: each family its own virtual servers, endpoints and sets",
            services: vec![svc(
                "web",
                json!({"spec": {"clusterIPs": ["10.96.0.10", "fd00:96::10"],
                                "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack"}}),
            )],
            slices: vec![
                slice(
                    "web-v4",
                    "web",
                    json!([ep("10.244.1.5", "node-a", json!({}))]),
                    json!({}),
                ),
                slice(
                    "web-v6",
                    "web",
                    json!([
                        ep("fd00:244::5", "node-a", json!({})),
                        ep("fd00:244::6", "node-b", json!({}))
                    ]),
                    json!({"addressType": "IPv6"}),
                ),
            ],
            exact: true,
            want: vec![
                "vs TCP 10.96.0.10:80 rr -> 10.244.1.5:8080",
                "vs TCP [fd00:96::10]:80 rr -> [fd00:244::5]:8080,[fd00:244::6]:8080",
                "bind 10.96.0.10",
                "bind fd00:96::10",
                "set KUBE-CLUSTER-IP 10.96.0.10,tcp:80",
                "set KUBE-6-CLUSTER-IP fd00:96::10,tcp:80",
                "set KUBE-IPVS-IPS 10.96.0.10",
                "set KUBE-6-IPVS-IPS fd00:96::10",
                "set KUBE-LOOP-BACK 10.244.1.5,tcp:8080,10.244.1.5",
                "set KUBE-6-LOOP-BACK fd00:244::5,tcp:8080,fd00:244::5",
            ],
            ..Case::default()
        },
        Case {
            name: "dual stack with IPv6 disabled plans IPv4 only",
            services: vec![svc(
                "web",
                json!({"spec": {"clusterIPs": ["10.96.0.10", "fd00:96::10"]}}),
            )],
            config: PlannerConfig {
                ipv6: false,
                ..PlannerConfig::default()
            },
            want: vec!["vs TCP 10.96.0.10:80 rr -> -"],
            not: vec!["vs TCP [", "bind fd00", "set KUBE-6-"],
            ..Case::default()
        },
        Case {
            name: "IPv6 single stack with clusterIPs only",
            services: vec![svc(
                "web",
                json!({"spec": {"clusterIP": null, "clusterIPs": ["fd00:96::10"]}}),
            )],
            want: vec!["vs TCP [fd00:96::10]:80 rr -> -", "bind fd00:96::10"],
            not: vec!["set KUBE-CLUSTER-IP"],
            ..Case::default()
        },
    ];
    for c in &cases {
        check(c);
    }
}

#[test]
fn scheduler_flags_and_affinity() {
    let ann = |k: &str, v: &str| json!({"metadata": {"annotations": {k: v}}});
    let cases = [
        Case {
            name: "configured default scheduler",
            services: vec![svc("web", json!({}))],
            config: PlannerConfig {
                scheduler: Scheduler::LeastConnection,
                ..PlannerConfig::default()
            },
            want: vec!["vs TCP 10.96.0.10:80 lc -> -"],
            ..Case::default()
        },
        Case {
            name: "kube-router annotation",
            services: vec![svc("web", ann("kube-router.io/service.scheduler", "sh"))],
            want: vec!["vs TCP 10.96.0.10:80 sh -> -"],
            ..Case::default()
        },
        Case {
            name: "sluice annotation wins over kube-router's",
            services: vec![svc(
                "web",
                json!({"metadata": {"annotations": {
                    "kube-router.io/service.scheduler": "sh",
                    "sluice.dev/ipvs-scheduler": "wlc"}}}),
            )],
            want: vec!["vs TCP 10.96.0.10:80 wlc -> -"],
            ..Case::default()
        },
        Case {
            name: "invalid annotation keeps the default and is reported",
            services: vec![svc("web", ann("sluice.dev/ipvs-scheduler", "bogus"))],
            want: vec!["vs TCP 10.96.0.10:80 rr -> -"],
            problems: vec![
                "Service default/web: annotation sluice.dev/ipvs-scheduler: unknown IPVS scheduler \"bogus\"",
            ],
            ..Case::default()
        },
        Case {
            name: "mh gets mh-port (0x10) as in kube-proxy",
            services: vec![svc("web", ann("kube-router.io/service.scheduler", "mh"))],
            want: vec!["vs TCP 10.96.0.10:80 mh flags=0x10 -> -"],
            ..Case::default()
        },
        Case {
            name: "mh as the configured default also gets 0x10",
            services: vec![svc("web", json!({}))],
            config: PlannerConfig {
                scheduler: Scheduler::MaglevHashing,
                ..PlannerConfig::default()
            },
            want: vec!["vs TCP 10.96.0.10:80 mh flags=0x10 -> -"],
            ..Case::default()
        },
        Case {
            name: "schedflags annotation replaces the default flags",
            services: vec![svc(
                "web",
                json!({"metadata": {"annotations": {
                    "kube-router.io/service.scheduler": "mh",
                    "kube-router.io/service.schedflags": "flag-1, flag-3"}}}),
            )],
            want: vec!["vs TCP 10.96.0.10:80 mh flags=0x28 -> -"],
            ..Case::default()
        },
        Case {
            name: "sluice flags annotation wins; unknown flag reported",
            services: vec![svc(
                "web",
                json!({"metadata": {"annotations": {
                    "sluice.dev/ipvs-scheduler": "sh",
                    "sluice.dev/ipvs-sched-flags": "sh-port,bogus",
                    "kube-router.io/service.schedflags": "flag-1"}}}),
            )],
            want: vec!["vs TCP 10.96.0.10:80 sh flags=0x10 -> -"],
            problems: vec!["unknown scheduler flag \"bogus\""],
            ..Case::default()
        },
        Case {
            name: "ClientIP affinity, default timeout",
            services: vec![svc("web", json!({"spec": {"sessionAffinity": "ClientIP"}}))],
            want: vec!["vs TCP 10.96.0.10:80 rr flags=0x1 timeout=10800 -> -"],
            ..Case::default()
        },
        Case {
            name: "ClientIP affinity with timeout, on every virtual server",
            services: vec![svc(
                "web",
                json!({"spec": {"type": "NodePort", "sessionAffinity": "ClientIP",
                    "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 300}},
                    "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}}),
            )],
            want: vec![
                "vs TCP 10.96.0.10:80 rr flags=0x1 timeout=300 -> -",
                "vs TCP 10.0.0.1:30080 rr flags=0x1 timeout=300 -> -",
            ],
            ..Case::default()
        },
        Case {
            name: "affinity and mh together",
            services: vec![svc(
                "web",
                json!({"metadata": {"annotations": {"sluice.dev/ipvs-scheduler": "mh"}},
                       "spec": {"sessionAffinity": "ClientIP"}}),
            )],
            want: vec!["vs TCP 10.96.0.10:80 mh flags=0x11 timeout=10800 -> -"],
            ..Case::default()
        },
        Case {
            name: "out-of-range affinity timeout falls back to the default",
            services: vec![svc(
                "web",
                json!({"spec": {"sessionAffinity": "ClientIP",
                    "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}}}),
            )],
            want: vec!["vs TCP 10.96.0.10:80 rr flags=0x1 timeout=10800 -> -"],
            problems: vec!["timeoutSeconds 0"],
            ..Case::default()
        },
    ];
    for c in &cases {
        check(c);
    }
}

fn node_port_svc(name: &str, protocol: &str, patch: Value) -> Value {
    let mut v = svc(
        name,
        json!({"spec": {"type": "NodePort",
            "ports": [{"name": "http", "port": 80, "protocol": protocol, "nodePort": 30080}]}}),
    );
    merge(&mut v, patch);
    v
}

#[test]
fn node_ports() {
    let cases = [
        Case {
            name: "TCP NodePort on every node address, never loopback",
            services: vec![node_port_svc("web", "TCP", json!({}))],
            slices: vec![slice(
                "web-1",
                "web",
                json!([ep("10.244.2.5", "node-b", json!({}))]),
                json!({}),
            )],
            exact: true,
            want: vec![
                "vs TCP 10.96.0.10:80 rr -> 10.244.2.5:8080",
                "vs TCP 10.0.0.1:30080 rr -> 10.244.2.5:8080",
                "vs TCP 192.168.1.1:30080 rr -> 10.244.2.5:8080",
                "bind 10.96.0.10",
                "set KUBE-CLUSTER-IP 10.96.0.10,tcp:80",
                "set KUBE-IPVS-IPS 10.96.0.10",
                "set KUBE-NODE-PORT-TCP 30080",
            ],
            ..Case::default()
        },
        Case {
            name: "IPv6 NodePort skips link-local and loopback",
            services: vec![node_port_svc(
                "web",
                "TCP",
                json!({"spec": {"clusterIP": "fd00:96::10", "clusterIPs": ["fd00:96::10"]}}),
            )],
            want: vec![
                "vs TCP [fd00::1]:30080 rr -> -",
                "set KUBE-6-NODE-PORT-TCP 30080",
            ],
            not: vec![
                "vs TCP [fe80",
                "vs TCP [::1]",
                "vs TCP 10.0.0.1",
                "set KUBE-NODE-PORT-TCP",
            ],
            ..Case::default()
        },
        Case {
            name: "UDP NodePort uses the UDP bitmap",
            services: vec![node_port_svc("dns", "UDP", json!({}))],
            want: vec![
                "vs UDP 10.0.0.1:30080 rr -> -",
                "vs UDP 192.168.1.1:30080 rr -> -",
                "set KUBE-NODE-PORT-UDP 30080",
            ],
            not: vec!["set KUBE-NODE-PORT-TCP", "set KUBE-NODE-PORT-LOCAL"],
            ..Case::default()
        },
        Case {
            name: "SCTP NodePort: one hash entry per node IP",
            services: vec![node_port_svc("sig", "SCTP", json!({}))],
            want: vec![
                "vs SCTP 10.0.0.1:30080 rr -> -",
                "vs SCTP 192.168.1.1:30080 rr -> -",
                "set KUBE-NODE-PORT-SCTP-HASH 10.0.0.1,sctp:30080",
                "set KUBE-NODE-PORT-SCTP-HASH 192.168.1.1,sctp:30080",
            ],
            not: vec!["set KUBE-NODE-PORT-TCP", "set KUBE-NODE-PORT-UDP"],
            ..Case::default()
        },
        Case {
            name: "nodePortAddresses CIDRs select addresses",
            services: vec![node_port_svc("web", "TCP", json!({}))],
            config: PlannerConfig {
                node_port_addresses: NodePortAddresses::Cidrs(vec![
                    "192.168.0.0/16".parse().unwrap(),
                    "127.0.0.0/8".parse().unwrap(),
                ]),
                ..PlannerConfig::default()
            },
            want: vec![
                "vs TCP 192.168.1.1:30080 rr -> -",
                "set KUBE-NODE-PORT-TCP 30080",
            ],
            not: vec!["vs TCP 10.0.0.1:", "vs TCP 127.0.0.1:"],
            ..Case::default()
        },
        Case {
            name: "nodePortAddresses without CIDRs of a family: all of that family",
            services: vec![node_port_svc(
                "web",
                "TCP",
                json!({"spec": {"clusterIPs": ["10.96.0.10", "fd00:96::10"]}}),
            )],
            config: PlannerConfig {
                node_port_addresses: NodePortAddresses::Cidrs(vec!["10.0.0.0/24".parse().unwrap()]),
                ..PlannerConfig::default()
            },
            want: vec![
                "vs TCP 10.0.0.1:30080 rr -> -",
                "vs TCP [fd00::1]:30080 rr -> -",
            ],
            not: vec!["vs TCP 192.168.1.1:"],
            ..Case::default()
        },
        Case {
            name: "nodePortAddresses primary",
            services: vec![node_port_svc("web", "TCP", json!({}))],
            config: PlannerConfig {
                node_port_addresses: NodePortAddresses::Primary,
                ..PlannerConfig::default()
            },
            want: vec!["vs TCP 10.0.0.1:30080 rr -> -"],
            not: vec!["vs TCP 192.168.1.1:"],
            ..Case::default()
        },
        Case {
            name: "no usable node address: no NodePort entries at all",
            services: vec![node_port_svc("web", "TCP", json!({}))],
            node: NodeFacts {
                addresses: [ip("127.0.0.1")].into(),
                ..node()
            },
            want: vec!["vs TCP 10.96.0.10:80 rr -> -"],
            not: vec!["set KUBE-NODE-PORT", "vs TCP 127.0.0.1"],
            ..Case::default()
        },
    ];
    for c in &cases {
        check(c);
    }
}

fn lb_svc(name: &str, patch: Value) -> Value {
    let mut v = svc(
        name,
        json!({"spec": {"type": "LoadBalancer",
                "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]},
               "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}}),
    );
    merge(&mut v, patch);
    v
}

#[test]
fn load_balancers_and_external_ips() {
    let cases = [
        Case {
            name: "LoadBalancer without source ranges",
            services: vec![lb_svc("web", json!({}))],
            slices: vec![slice(
                "web-1",
                "web",
                json!([ep("10.244.2.5", "node-b", json!({}))]),
                json!({}),
            )],
            exact: true,
            want: vec![
                "vs TCP 10.96.0.10:80 rr -> 10.244.2.5:8080",
                "vs TCP 203.0.113.7:80 rr -> 10.244.2.5:8080",
                "vs TCP 10.0.0.1:30080 rr -> 10.244.2.5:8080",
                "vs TCP 192.168.1.1:30080 rr -> 10.244.2.5:8080",
                "bind 10.96.0.10",
                "bind 203.0.113.7",
                "set KUBE-CLUSTER-IP 10.96.0.10,tcp:80",
                "set KUBE-LOAD-BALANCER 203.0.113.7,tcp:80",
                "set KUBE-NODE-PORT-TCP 30080",
                "set KUBE-IPVS-IPS 10.96.0.10",
                "set KUBE-IPVS-IPS 203.0.113.7",
            ],
            ..Case::default()
        },
        Case {
            name: "source ranges covering the node: FW, SOURCE-CIDR, SOURCE-IP",
            services: vec![lb_svc(
                "web",
                json!({"spec": {"loadBalancerSourceRanges": ["10.0.0.0/24", " 198.51.100.0/24 "]}}),
            )],
            want: vec![
                "set KUBE-LOAD-BALANCER 203.0.113.7,tcp:80",
                "set KUBE-LOAD-BALANCER-FW 203.0.113.7,tcp:80",
                "set KUBE-LOAD-BALANCER-SOURCE-CIDR 203.0.113.7,tcp:80,10.0.0.0/24",
                "set KUBE-LOAD-BALANCER-SOURCE-CIDR 203.0.113.7,tcp:80,198.51.100.0/24",
                "set KUBE-LOAD-BALANCER-SOURCE-IP 203.0.113.7,tcp:80,203.0.113.7",
            ],
            not: vec!["outfilter"],
            ..Case::default()
        },
        Case {
            name: "source ranges not covering the node: out-filter instead of SOURCE-IP",
            services: vec![lb_svc(
                "web",
                json!({"spec": {"loadBalancerSourceRanges": ["198.51.100.0/24"]}}),
            )],
            want: vec![
                "set KUBE-LOAD-BALANCER-FW 203.0.113.7,tcp:80",
                "set KUBE-LOAD-BALANCER-SOURCE-CIDR 203.0.113.7,tcp:80,198.51.100.0/24",
                "outfilter 203.0.113.7 tcp 80",
            ],
            not: vec!["set KUBE-LOAD-BALANCER-SOURCE-IP"],
            ..Case::default()
        },
        Case {
            name: "a /0 source range is stored as two /1s",
            services: vec![lb_svc(
                "web",
                json!({"spec": {"loadBalancerSourceRanges": ["0.0.0.0/0"]}}),
            )],
            want: vec![
                "set KUBE-LOAD-BALANCER-SOURCE-CIDR 203.0.113.7,tcp:80,0.0.0.0/1",
                "set KUBE-LOAD-BALANCER-SOURCE-CIDR 203.0.113.7,tcp:80,128.0.0.0/1",
                "set KUBE-LOAD-BALANCER-SOURCE-IP 203.0.113.7,tcp:80,203.0.113.7",
            ],
            not: vec!["outfilter"],
            ..Case::default()
        },
        Case {
            name: "source ranges of the other family do not apply",
            services: vec![lb_svc(
                "web",
                json!({"spec": {"loadBalancerSourceRanges": ["2001:db8::/32"]}}),
            )],
            want: vec!["set KUBE-LOAD-BALANCER 203.0.113.7,tcp:80"],
            not: vec!["set KUBE-LOAD-BALANCER-FW", "outfilter"],
            ..Case::default()
        },
        Case {
            name: "LB IP already on another interface is not bound",
            services: vec![lb_svc("web", json!({}))],
            node: NodeFacts {
                addresses: node()
                    .addresses
                    .into_iter()
                    .chain([ip("203.0.113.7")])
                    .collect(),
                ..node()
            },
            want: vec![
                "vs TCP 203.0.113.7:80 rr -> -",
                "set KUBE-LOAD-BALANCER 203.0.113.7,tcp:80",
            ],
            not: vec!["bind 203.0.113.7", "set KUBE-IPVS-IPS 203.0.113.7"],
            ..Case::default()
        },
        Case {
            name: "ipMode Proxy and hostname-only ingress are skipped",
            services: vec![lb_svc(
                "web",
                json!({"status": {"loadBalancer": {"ingress": [
                    {"ip": "203.0.113.7", "ipMode": "Proxy"},
                    {"hostname": "lb.example.com"},
                    {"ip": "203.0.113.8", "ipMode": "VIP"}]}}}),
            )],
            want: vec!["vs TCP 203.0.113.8:80 rr -> -", "bind 203.0.113.8"],
            not: vec![
                "vs TCP 203.0.113.7",
                "bind 203.0.113.7",
                "set KUBE-LOAD-BALANCER 203.0.113.7",
            ],
            ..Case::default()
        },
        Case {
            name: "dual-stack LoadBalancer: each LB IP in its family",
            services: vec![lb_svc(
                "web",
                json!({"spec": {"clusterIPs": ["10.96.0.10", "fd00:96::10"],
                                "loadBalancerSourceRanges": ["2001:db8::/32"]},
                       "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"ip": "2001:db8::7"}]}}}),
            )],
            want: vec![
                "vs TCP [2001:db8::7]:80 rr -> -",
                "set KUBE-6-LOAD-BALANCER 2001:db8::7,tcp:80",
                "set KUBE-6-LOAD-BALANCER-FW 2001:db8::7,tcp:80",
                "set KUBE-6-LOAD-BALANCER-SOURCE-CID 2001:db8::7,tcp:80,2001:db8::/32",
                "outfilter 2001:db8::7 tcp 80",
                "set KUBE-LOAD-BALANCER 203.0.113.7,tcp:80",
            ],
            not: vec!["set KUBE-LOAD-BALANCER-FW"],
            ..Case::default()
        },
        Case {
            name: "externalIPs: bound unless already local",
            services: vec![svc(
                "web",
                json!({"spec": {"externalIPs": ["198.51.100.9", "192.168.1.1"]}}),
            )],
            slices: vec![slice(
                "web-1",
                "web",
                json!([ep("10.244.2.5", "node-b", json!({}))]),
                json!({}),
            )],
            want: vec![
                "vs TCP 198.51.100.9:80 rr -> 10.244.2.5:8080",
                "vs TCP 192.168.1.1:80 rr -> 10.244.2.5:8080",
                "set KUBE-EXTERNAL-IP 198.51.100.9,tcp:80",
                "set KUBE-EXTERNAL-IP 192.168.1.1,tcp:80",
                "bind 198.51.100.9",
                "set KUBE-IPVS-IPS 198.51.100.9",
            ],
            not: vec![
                "bind 192.168.1.1",
                "set KUBE-IPVS-IPS 192.168.1.1",
                "set KUBE-EXTERNAL-IP-LOCAL",
            ],
            ..Case::default()
        },
    ];
    for c in &cases {
        check(c);
    }
}

#[test]
fn traffic_policies() {
    let local_lb = |patch: Value| {
        let mut v = lb_svc(
            "web",
            json!({"spec": {"externalTrafficPolicy": "Local", "healthCheckNodePort": 32000,
                            "externalIPs": ["198.51.100.9"]}}),
        );
        merge(&mut v, patch);
        v
    };
    let mixed = vec![slice(
        "web-1",
        "web",
        json!([
            ep("10.244.1.5", "node-a", json!({})),
            ep("10.244.1.6", "node-a", cond(false, true, true)),
            ep("10.244.2.5", "node-b", json!({}))
        ]),
        json!({}),
    )];
    let cases = [
        Case {
            name: "eTP=Local: external virtual servers use local endpoints, ClusterIP all",
            services: vec![local_lb(json!({}))],
            slices: mixed.clone(),
            exact: true,
            want: vec![
                "vs TCP 10.96.0.10:80 rr -> 10.244.1.5:8080,10.244.2.5:8080",
                "vs TCP 203.0.113.7:80 rr -> 10.244.1.5:8080",
                "vs TCP 198.51.100.9:80 rr -> 10.244.1.5:8080",
                "vs TCP 10.0.0.1:30080 rr -> 10.244.1.5:8080",
                "vs TCP 192.168.1.1:30080 rr -> 10.244.1.5:8080",
                "bind 10.96.0.10",
                "bind 198.51.100.9",
                "bind 203.0.113.7",
                "set KUBE-CLUSTER-IP 10.96.0.10,tcp:80",
                "set KUBE-EXTERNAL-IP-LOCAL 198.51.100.9,tcp:80",
                "set KUBE-LOAD-BALANCER 203.0.113.7,tcp:80",
                "set KUBE-LOAD-BALANCER-LOCAL 203.0.113.7,tcp:80",
                "set KUBE-NODE-PORT-TCP 30080",
                "set KUBE-NODE-PORT-LOCAL-TCP 30080",
                "set KUBE-HEALTH-CHECK-NODE-PORT 32000",
                "set KUBE-IPVS-IPS 10.96.0.10",
                "set KUBE-IPVS-IPS 198.51.100.9",
                "set KUBE-IPVS-IPS 203.0.113.7",
                "set KUBE-LOOP-BACK 10.244.1.5,tcp:8080,10.244.1.5",
                "set KUBE-LOOP-BACK 10.244.1.6,tcp:8080,10.244.1.6",
                "hc 32000 default/web 1",
            ],
            ..Case::default()
        },
        Case {
            name: "eTP=Local without local endpoints falls back to cluster endpoints (PR #97081)",
            services: vec![local_lb(json!({}))],
            slices: vec![slice(
                "web-1",
                "web",
                json!([ep("10.244.2.5", "node-b", json!({}))]),
                json!({}),
            )],
            want: vec![
                "vs TCP 203.0.113.7:80 rr -> 10.244.2.5:8080",
                "vs TCP 10.0.0.1:30080 rr -> 10.244.2.5:8080",
                "hc 32000 default/web 0",
            ],
            ..Case::default()
        },
        Case {
            name: "eTP=Local health check counts distinct local ready IPs over ports",
            services: vec![local_lb(json!({"spec": {"ports": [
                {"name": "http", "port": 80, "nodePort": 30080},
                {"name": "https", "port": 443, "nodePort": 30443}]}}))],
            slices: vec![slice(
                "web-1",
                "web",
                json!([
                    ep("10.244.1.5", "node-a", json!({})),
                    ep("10.244.1.7", "node-a", json!({})),
                    ep("10.244.1.8", "node-a", cond(false, false, false))
                ]),
                json!({"ports": [{"name": "http", "port": 8080}, {"name": "https", "port": 8443}]}),
            )],
            want: vec![
                "hc 32000 default/web 2",
                "set KUBE-NODE-PORT-LOCAL-TCP 30443",
            ],
            ..Case::default()
        },
        Case {
            name: "eTP=Local on a ClusterIP Service is ignored (kube-proxy: NodePort/LB only)",
            services: vec![svc(
                "web",
                json!({"spec": {"externalTrafficPolicy": "Local", "externalIPs": ["198.51.100.9"]}}),
            )],
            slices: mixed.clone(),
            want: vec![
                "vs TCP 198.51.100.9:80 rr -> 10.244.1.5:8080,10.244.2.5:8080",
                "set KUBE-EXTERNAL-IP 198.51.100.9,tcp:80",
            ],
            not: vec!["set KUBE-EXTERNAL-IP-LOCAL", "hc "],
            ..Case::default()
        },
        Case {
            name: "iTP=Local: ClusterIP uses local endpoints",
            services: vec![svc(
                "web",
                json!({"spec": {"internalTrafficPolicy": "Local"}}),
            )],
            slices: mixed.clone(),
            want: vec!["vs TCP 10.96.0.10:80 rr -> 10.244.1.5:8080"],
            ..Case::default()
        },
        Case {
            name: "iTP=Local, no local endpoints, not externally accessible: none",
            services: vec![svc(
                "web",
                json!({"spec": {"internalTrafficPolicy": "Local"}}),
            )],
            slices: vec![slice(
                "web-1",
                "web",
                json!([ep("10.244.2.5", "node-b", json!({}))]),
                json!({}),
            )],
            want: vec!["vs TCP 10.96.0.10:80 rr -> -"],
            ..Case::default()
        },
        Case {
            name: "iTP=Local, no local endpoints, NodePort Service: kube-proxy falls back to cluster",
            services: vec![node_port_svc(
                "web",
                "TCP",
                json!({"spec": {"internalTrafficPolicy": "Local"}}),
            )],
            slices: vec![slice(
                "web-1",
                "web",
                json!([ep("10.244.2.5", "node-b", json!({}))]),
                json!({}),
            )],
            want: vec![
                "vs TCP 10.96.0.10:80 rr -> 10.244.2.5:8080",
                "vs TCP 10.0.0.1:30080 rr -> 10.244.2.5:8080",
            ],
            ..Case::default()
        },
        Case {
            name: "LoadBalancer with eTP=Local but no healthCheckNodePort is reported",
            services: vec![local_lb(json!({"spec": {"healthCheckNodePort": null}}))],
            not: vec!["hc ", "set KUBE-HEALTH-CHECK-NODE-PORT"],
            problems: vec!["without a healthCheckNodePort"],
            ..Case::default()
        },
    ];
    for c in &cases {
        check(c);
    }
}

#[test]
fn readiness_and_topology() {
    let one = |eps: Value| vec![slice("web-1", "web", eps, json!({}))];
    let zone = |z: &[&str]| json!({"hints": {"forZones": z.iter().map(|z| json!({"name": z})).collect::<Vec<_>>()}});
    let nodes = |z: &[&str], n: &[&str]| {
        json!({"hints": {
            "forZones": z.iter().map(|z| json!({"name": z})).collect::<Vec<_>>(),
            "forNodes": n.iter().map(|n| json!({"name": n})).collect::<Vec<_>>()}})
    };
    let itp_local = svc("web", json!({"spec": {"internalTrafficPolicy": "Local"}}));
    let cases = [
        Case {
            name: "ready endpoints only; ready absent means ready",
            services: vec![svc("web", json!({}))],
            slices: one(json!([
                {"addresses": ["10.244.2.1"], "nodeName": "node-b"},
                ep("10.244.2.2", "node-b", cond(false, true, true)),
                ep("10.244.2.3", "node-b", cond(false, false, false))
            ])),
            want: vec!["vs TCP 10.96.0.10:80 rr -> 10.244.2.1:8080"],
            ..Case::default()
        },
        Case {
            name: "no ready endpoints: serving and terminating ones",
            services: vec![svc("web", json!({}))],
            slices: one(json!([
                ep("10.244.2.2", "node-b", cond(false, true, true)),
                ep("10.244.2.3", "node-b", cond(false, false, true)),
                ep("10.244.2.4", "node-b", cond(false, true, false))
            ])),
            want: vec!["vs TCP 10.96.0.10:80 rr -> 10.244.2.2:8080"],
            ..Case::default()
        },
        Case {
            name: "local set falls back on its own: local terminating while remote ready",
            services: vec![itp_local.clone()],
            slices: one(json!([
                ep("10.244.1.2", "node-a", cond(false, true, true)),
                ep("10.244.2.2", "node-b", json!({}))
            ])),
            want: vec!["vs TCP 10.96.0.10:80 rr -> 10.244.1.2:8080"],
            ..Case::default()
        },
        Case {
            name: "zone hints: all have hints and one matches",
            services: vec![svc("web", json!({}))],
            slices: one(json!([
                ep("10.244.1.1", "node-a", zone(&["zone-a"])),
                ep("10.244.2.1", "node-b", zone(&["zone-b"])),
                ep("10.244.3.1", "node-c", zone(&["zone-a", "zone-c"])),
                ep(
                    "10.244.4.1",
                    "node-d",
                    merge_v(cond(false, false, false), json!({}))
                )
            ])),
            want: vec!["vs TCP 10.96.0.10:80 rr -> 10.244.1.1:8080,10.244.3.1:8080"],
            ..Case::default()
        },
        Case {
            name: "zone hints: none match this zone, ignored",
            services: vec![svc("web", json!({}))],
            slices: one(json!([
                ep("10.244.2.1", "node-b", zone(&["zone-b"])),
                ep("10.244.3.1", "node-c", zone(&["zone-c"]))
            ])),
            want: vec!["vs TCP 10.96.0.10:80 rr -> 10.244.2.1:8080,10.244.3.1:8080"],
            ..Case::default()
        },
        Case {
            name: "zone hints: partial hints ignored",
            services: vec![svc("web", json!({}))],
            slices: one(json!([
                ep("10.244.1.1", "node-a", zone(&["zone-a"])),
                ep("10.244.2.1", "node-b", json!({}))
            ])),
            want: vec!["vs TCP 10.96.0.10:80 rr -> 10.244.1.1:8080,10.244.2.1:8080"],
            ..Case::default()
        },
        Case {
            name: "zone hints: node without a zone ignores them",
            services: vec![svc("web", json!({}))],
            slices: one(json!([
                ep("10.244.1.1", "node-a", zone(&["zone-a"])),
                ep("10.244.2.1", "node-b", zone(&["zone-b"]))
            ])),
            node: NodeFacts {
                zone: None,
                ..node()
            },
            want: vec!["vs TCP 10.96.0.10:80 rr -> 10.244.1.1:8080,10.244.2.1:8080"],
            ..Case::default()
        },
        Case {
            name: "node hints take precedence over zone hints",
            services: vec![svc("web", json!({}))],
            slices: one(json!([
                ep("10.244.1.1", "node-a", nodes(&["zone-a"], &["node-a"])),
                ep("10.244.1.2", "node-x", nodes(&["zone-a"], &["node-x"])),
                ep("10.244.2.1", "node-b", nodes(&["zone-b"], &["node-b"]))
            ])),
            want: vec!["vs TCP 10.96.0.10:80 rr -> 10.244.1.1:8080"],
            ..Case::default()
        },
        Case {
            name: "node hints with the gate off: zone hints apply",
            services: vec![svc("web", json!({}))],
            slices: one(json!([
                ep("10.244.1.1", "node-a", nodes(&["zone-a"], &["node-a"])),
                ep("10.244.1.2", "node-x", nodes(&["zone-a"], &["node-x"])),
                ep("10.244.2.1", "node-b", nodes(&["zone-b"], &["node-b"]))
            ])),
            config: PlannerConfig {
                prefer_same_traffic_distribution: false,
                ..PlannerConfig::default()
            },
            want: vec!["vs TCP 10.96.0.10:80 rr -> 10.244.1.1:8080,10.244.1.2:8080"],
            ..Case::default()
        },
        Case {
            name: "node hints: none for this node, zone hints apply",
            services: vec![svc("web", json!({}))],
            slices: one(json!([
                ep("10.244.1.2", "node-x", nodes(&["zone-a"], &["node-x"])),
                ep("10.244.2.1", "node-b", nodes(&["zone-b"], &["node-b"]))
            ])),
            want: vec!["vs TCP 10.96.0.10:80 rr -> 10.244.1.2:8080"],
            ..Case::default()
        },
        Case {
            name: "node hints: partial, zone hints apply",
            services: vec![svc("web", json!({}))],
            slices: one(json!([
                ep("10.244.1.1", "node-a", nodes(&["zone-a"], &["node-a"])),
                ep("10.244.1.2", "node-x", zone(&["zone-a"])),
                ep("10.244.2.1", "node-b", zone(&["zone-b"]))
            ])),
            want: vec!["vs TCP 10.96.0.10:80 rr -> 10.244.1.1:8080,10.244.1.2:8080"],
            ..Case::default()
        },
        Case {
            name: "topology does not filter the local set, and falls back when nothing is ready",
            services: vec![svc("web", json!({}))],
            slices: one(json!([ep(
                "10.244.2.1",
                "node-b",
                merge_v(cond(false, true, true), zone(&["zone-b"]))
            )])),
            want: vec!["vs TCP 10.96.0.10:80 rr -> 10.244.2.1:8080"],
            ..Case::default()
        },
        Case {
            name: "hairpin: every local endpoint, ready or not, in KUBE-LOOP-BACK",
            services: vec![svc("web", json!({}))],
            slices: one(json!([
                ep("10.244.1.1", "node-a", json!({})),
                ep("10.244.1.2", "node-a", cond(false, false, false)),
                ep("10.244.2.1", "node-b", json!({}))
            ])),
            want: vec![
                "set KUBE-LOOP-BACK 10.244.1.1,tcp:8080,10.244.1.1",
                "set KUBE-LOOP-BACK 10.244.1.2,tcp:8080,10.244.1.2",
            ],
            not: vec!["set KUBE-LOOP-BACK 10.244.2.1"],
            ..Case::default()
        },
        Case {
            name: "a duplicated endpoint counts as local if any copy is",
            services: vec![itp_local],
            slices: vec![
                slice(
                    "web-1",
                    "web",
                    json!([ep("10.244.1.1", "node-b", json!({}))]),
                    json!({}),
                ),
                slice(
                    "web-2",
                    "web",
                    json!([ep("10.244.1.1", "node-a", json!({}))]),
                    json!({}),
                ),
            ],
            want: vec![
                "vs TCP 10.96.0.10:80 rr -> 10.244.1.1:8080",
                "set KUBE-LOOP-BACK 10.244.1.1,tcp:8080,10.244.1.1",
            ],
            ..Case::default()
        },
    ];
    for c in &cases {
        check(c);
    }
}

fn merge_v(mut a: Value, b: Value) -> Value {
    merge(&mut a, b);
    a
}

#[test]
fn filtering() {
    let cases = [
        Case {
            name: "Services and slices of another proxy are ignored silently",
            services: vec![svc(
                "web",
                json!({"metadata": {"labels": {"service.kubernetes.io/service-proxy-name": "cilium"}}}),
            )],
            slices: vec![slice(
                "web-1",
                "web",
                json!([ep("10.244.1.1", "node-a", json!({}))]),
                json!({"metadata": {"labels": {"service.kubernetes.io/service-proxy-name": "cilium"}}}),
            )],
            exact: true,
            ..Case::default()
        },
        Case {
            name: "the configured proxy name is ours, and so are unlabelled objects",
            services: vec![
                svc(
                    "web",
                    json!({"metadata": {"labels": {"service.kubernetes.io/service-proxy-name": "sluice"}}}),
                ),
                svc(
                    "api",
                    json!({"spec": {"clusterIP": "10.96.0.11", "clusterIPs": ["10.96.0.11"]}}),
                ),
                svc(
                    "other",
                    json!({"metadata": {"labels": {"service.kubernetes.io/service-proxy-name": "cilium"}},
                           "spec": {"clusterIP": "10.96.0.12", "clusterIPs": ["10.96.0.12"]}}),
                ),
            ],
            slices: vec![slice(
                "web-1",
                "web",
                json!([ep("10.244.1.1", "node-b", json!({}))]),
                json!({"metadata": {"labels": {"service.kubernetes.io/service-proxy-name": "sluice"}}}),
            )],
            config: PlannerConfig {
                service_proxy_name: Some("sluice".into()),
                ..PlannerConfig::default()
            },
            want: vec![
                "vs TCP 10.96.0.10:80 rr -> 10.244.1.1:8080",
                "vs TCP 10.96.0.11:80 rr -> -",
            ],
            not: vec!["vs TCP 10.96.0.12"],
            ..Case::default()
        },
        Case {
            name: "headless Services, headless slices, ExternalName and FQDN slices",
            services: vec![
                svc(
                    "headless",
                    json!({"spec": {"clusterIP": "None", "clusterIPs": ["None"]}}),
                ),
                svc(
                    "ext",
                    json!({"spec": {"type": "ExternalName", "externalName": "example.com",
                                    "clusterIP": null, "clusterIPs": null}}),
                ),
                svc("web", json!({})),
            ],
            slices: vec![
                slice(
                    "headless-1",
                    "headless",
                    json!([ep("10.244.1.1", "node-a", json!({}))]),
                    json!({"metadata": {"labels": {"service.kubernetes.io/headless": ""}}}),
                ),
                slice(
                    "web-fqdn",
                    "web",
                    json!([{"addresses": ["web.example.com"]}]),
                    json!({"addressType": "FQDN"}),
                ),
            ],
            exact: true,
            want: vec![
                "vs TCP 10.96.0.10:80 rr -> -",
                "bind 10.96.0.10",
                "set KUBE-CLUSTER-IP 10.96.0.10,tcp:80",
                "set KUBE-IPVS-IPS 10.96.0.10",
            ],
            ..Case::default()
        },
        Case {
            name: "slices of an unknown Service are reported",
            services: vec![svc("web", json!({}))],
            slices: vec![slice(
                "gone-1",
                "gone",
                json!([ep("10.244.1.1", "node-a", json!({}))]),
                json!({}),
            )],
            want: vec!["vs TCP 10.96.0.10:80 rr -> -"],
            not: vec!["set KUBE-LOOP-BACK"],
            problems: vec!["EndpointSlice default/gone-1: Service default/gone not found"],
            ..Case::default()
        },
        Case {
            name: "slices in another namespace do not join",
            services: vec![svc("web", json!({}))],
            slices: vec![slice(
                "web-1",
                "web",
                json!([ep("10.244.1.1", "node-a", json!({}))]),
                json!({"metadata": {"namespace": "other"}}),
            )],
            want: vec!["vs TCP 10.96.0.10:80 rr -> -"],
            problems: vec!["EndpointSlice other/web-1: Service other/web not found"],
            ..Case::default()
        },
    ];
    for c in &cases {
        check(c);
    }
}

// -------------------------------------------------------------- bad input

/// Good Services whose plans must not change when bad objects join them.
fn good_services() -> Vec<Value> {
    vec![
        lb_svc(
            "good-lb",
            json!({"spec": {"clusterIP": "10.96.1.1", "clusterIPs": ["10.96.1.1"],
                            "externalTrafficPolicy": "Local", "healthCheckNodePort": 32001,
                            "loadBalancerSourceRanges": ["10.0.0.0/8"]}}),
        ),
        svc(
            "good-dual",
            json!({"spec": {"clusterIPs": ["10.96.1.2", "fd00:96::2"], "sessionAffinity": "ClientIP"}}),
        ),
    ]
}

fn good_slices() -> Vec<Value> {
    vec![
        slice(
            "good-lb-1",
            "good-lb",
            json!([
                ep("10.244.1.1", "node-a", json!({})),
                ep("10.244.2.1", "node-b", json!({}))
            ]),
            json!({}),
        ),
        slice(
            "good-dual-6",
            "good-dual",
            json!([ep("fd00:244::1", "node-a", json!({}))]),
            json!({"addressType": "IPv6"}),
        ),
    ]
}

/// Only the parts of `state` that belong to the good Services.
fn good_part(state: &DesiredState) -> BTreeSet<String> {
    let mut s = state.clone();
    s.virtual_servers
        .retain(|_, vs| vs.owner.name.starts_with("good-"));
    s.health_checks.retain(|_, hc| hc.name.starts_with("good-"));
    render(&s)
        .into_iter()
        .filter(|l| l.starts_with("vs ") || l.starts_with("hc "))
        .collect()
}

/// What, extra Services, extra EndpointSlices, expected problem substrings.
type BadCase = (&'static str, Vec<Value>, Vec<Value>, Vec<&'static str>);

#[test]
fn bad_input_is_reported_and_isolated() {
    let baseline = run(
        &good_services(),
        &good_slices(),
        &node(),
        &PlannerConfig::default(),
    );
    assert!(baseline.problems.is_empty(), "{:?}", baseline.problems);
    let base_all = render(&baseline.state);
    let base_good = good_part(&baseline.state);
    assert_eq!(base_good.iter().filter(|l| l.starts_with("vs ")).count(), 6);

    let bad_svc = |patch: Value| svc("bad", patch);
    let bad_slice = |eps: Value, patch: Value| slice("bad-1", "bad", eps, patch);
    // (what, extra services, extra slices, expected problem substrings)
    let cases: Vec<BadCase> = vec![
        (
            "invalid clusterIP",
            vec![bad_svc(
                json!({"spec": {"clusterIP": "10.96.0.300", "clusterIPs": ["10.96.0.300"]}}),
            )],
            vec![],
            vec!["Service default/bad: no usable clusterIP (invalid clusterIP \"10.96.0.300\""],
        ),
        (
            "port 0 and port 70000",
            vec![bad_svc(json!({"spec": {"ports": [
                {"name": "a", "port": 0}, {"name": "b", "port": 70000}, {"name": "c", "port": 81}]}}))],
            vec![],
            vec![
                "port \"a\": invalid port 0",
                "port \"b\": invalid port 70000",
            ],
        ),
        (
            "negative and huge nodePort",
            vec![bad_svc(json!({"spec": {"type": "NodePort", "ports": [
                {"name": "a", "port": 81, "nodePort": -1}, {"name": "b", "port": 82, "nodePort": 65536}]}}))],
            vec![],
            vec!["invalid nodePort -1", "invalid nodePort 65536"],
        ),
        (
            "unknown protocol",
            vec![bad_svc(
                json!({"spec": {"ports": [{"name": "q", "port": 81, "protocol": "QUIC"}]}}),
            )],
            vec![],
            vec!["unsupported protocol \"QUIC\""],
        ),
        (
            "duplicate ports",
            vec![bad_svc(json!({"spec": {"ports": [
                {"name": "a", "port": 81}, {"name": "b", "port": 81}, {"name": "a", "port": 82},
                {"name": "u", "port": 81, "protocol": "UDP"}]}}))],
            vec![],
            vec!["port \"b\": duplicate", "port \"a\": duplicate"],
        ),
        (
            "invalid and special externalIPs",
            vec![bad_svc(
                json!({"spec": {"externalIPs": ["nope", "127.0.0.1", "0.0.0.0", "fd00::9", "198.51.100.20"]}}),
            )],
            vec![],
            vec![
                "invalid externalIP \"nope\"",
                "externalIP 127.0.0.1 is loopback",
                "externalIP 0.0.0.0 is unspecified",
                "externalIP fd00::9: the Service has no clusterIP of its family",
            ],
        ),
        (
            "invalid LB ingress IP and source range",
            vec![bad_svc(
                json!({"spec": {"type": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.0", "1.2.3.0/24"]},
                                "status": {"loadBalancer": {"ingress": [{"ip": "x.y"}, {"ip": "203.0.113.50"}]}}}),
            )],
            vec![],
            vec![
                "invalid load balancer ingress IP \"x.y\"",
                "invalid loadBalancerSourceRange \"10.0.0.0\"",
            ],
        ),
        (
            "an externalIP claiming a good Service's LB IP loses, though first by name",
            vec![bad_svc(json!({"spec": {"externalIPs": ["203.0.113.7"]}}))],
            vec![],
            vec![
                "Service default/bad: virtual server TCP 203.0.113.7:80 (externalIP of port \"http\") \
                 is also claimed by Service default/good-lb (as its LoadBalancer IP), which keeps it",
            ],
        ),
        (
            "an externalIP claiming a good Service's ClusterIP loses",
            vec![bad_svc(json!({"spec": {"externalIPs": ["10.96.1.2"]}}))],
            vec![],
            vec![
                "virtual server TCP 10.96.1.2:80 (externalIP of port \"http\") is also claimed by \
                  Service default/good-dual (as its ClusterIP)",
            ],
        ),
        (
            "a Service later by name claiming a good Service's health check port",
            vec![lb_svc(
                "x-bad",
                json!({"spec": {"externalTrafficPolicy": "Local", "healthCheckNodePort": 32001,
                                                "clusterIP": "10.96.9.9", "clusterIPs": ["10.96.9.9"],
                                                "ports": [{"name": "http", "port": 80, "nodePort": 30099}]},
                                       "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.99"}]}}}),
            )],
            vec![],
            vec!["healthCheckNodePort 32001 is also used by Service default/good-lb"],
        ),
        (
            "invalid endpoints",
            vec![bad_svc(json!({}))],
            vec![bad_slice(
                json!([{"addresses": []}, {"addresses": ["10.244.1.999"]}, {"addresses": ["fd00::1"]},
                       {"addresses": ["0.0.0.0"]}, ep("10.244.1.50", "node-a", json!({}))]),
                json!({}),
            )],
            vec![
                "endpoint #0 has no addresses",
                "endpoint #1: invalid address",
                "endpoint #2: address fd00::1 does not match addressType IPv4",
                "endpoint #3: address 0.0.0.0 cannot be a real server",
            ],
        ),
        (
            "invalid slice ports",
            vec![bad_svc(json!({}))],
            vec![bad_slice(
                json!([ep("10.244.1.50", "node-a", json!({}))]),
                json!({"ports": [{"port": 8080}, {"name": "http", "port": 0}, {"name": "http", "port": 99999},
                                 {"name": "http"}, {"name": "http", "port": 8080, "protocol": "ICMP"}]}),
            )],
            vec![
                "port #0 has no name",
                "invalid port 0",
                "invalid port 99999",
                "no port number",
                "unsupported protocol \"ICMP\"",
            ],
        ),
        (
            "slice without service-name label, slice with unknown addressType",
            vec![],
            vec![
                slice(
                    "bad-1",
                    "bad",
                    json!([]),
                    json!({"metadata": {"labels": null}}),
                ),
                slice("bad-2", "bad", json!([]), json!({"addressType": "IPv5"})),
            ],
            vec![
                "EndpointSlice default/bad-1: no kubernetes.io/service-name label",
                "unsupported addressType \"IPv5\"",
            ],
        ),
        (
            "Service and slice without names",
            vec![json!({"metadata": {"namespace": "default"}, "spec": {"clusterIP": "10.96.9.9"}})],
            vec![slice("", "bad", json!([]), json!({}))],
            vec!["Service has no name", "EndpointSlice has no name"],
        ),
        (
            "duplicate Service",
            vec![svc(
                "good-dual",
                json!({"spec": {"clusterIP": "10.96.9.9", "clusterIPs": ["10.96.9.9"]}}),
            )],
            vec![],
            vec!["duplicate Service; the first one is used"],
        ),
        (
            "huge Service: many ports and external IPs over the limit",
            vec![bad_svc(json!({"spec": {
                "ports": (1..=300).map(|p| json!({"name": format!("p{p}"), "port": p})).collect::<Vec<_>>(),
                "externalIPs": (1..=250).map(|i| format!("198.51.{}.{}", i / 200, i % 200 + 1)).collect::<Vec<_>>()}}))],
            vec![],
            vec!["too large to plan: 75300 virtual servers"],
        ),
        (
            "many broken endpoints are capped",
            vec![bad_svc(json!({}))],
            vec![bad_slice(
                Value::Array(
                    (0..5000)
                        .map(|i| json!({"addresses": [format!("bogus-{i}")]}))
                        .collect(),
                ),
                json!({}),
            )],
            vec![
                "endpoint #0: invalid address",
                "#1:",
                "#2:",
                "#3:",
                "#4:",
                "#5:",
                "#6:",
                "#7:",
                "#8:",
                "#9:",
                "#10:",
                "#11:",
                "#12:",
                "#13:",
                "#14:",
                "#15:",
                "4984 more problems not shown",
            ],
        ),
    ];
    for (what, extra_svcs, extra_slices, want_problems) in cases {
        let mut svcs = good_services();
        svcs.extend(extra_svcs.iter().cloned());
        let mut eps = good_slices();
        eps.extend(extra_slices.iter().cloned());
        let out = run(&svcs, &eps, &node(), &PlannerConfig::default());
        let problems: Vec<String> = out.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            problems.len(),
            want_problems.len(),
            "{what}: problems {problems:#?}"
        );
        for (got, want) in problems.iter().zip(&want_problems) {
            assert!(
                got.contains(want),
                "{what}: {got:?} does not contain {want:?}"
            );
        }
        assert_eq!(
            good_part(&out.state),
            base_good,
            "{what}: good Services changed"
        );
        // Nothing of the good Services' state went missing either.
        let all = render(&out.state);
        for line in &base_all {
            assert!(all.contains(line), "{what}: lost {line:?}");
        }
        // Order of objects does not matter.
        svcs.reverse();
        eps.reverse();
        let reversed = run(&svcs, &eps, &node(), &PlannerConfig::default());
        if what != "duplicate Service" {
            assert_eq!(reversed, out, "{what}: depends on input order");
        }
    }
}

#[test]
fn admission() {
    let s: Service = serde_json::from_value(svc(
        "web",
        json!({"metadata": {"labels": {"service.kubernetes.io/service-proxy-name": "x"}}}),
    ))
    .unwrap();
    assert_eq!(
        ServiceView::from_k8s(&s, None),
        Admission::Ignored(IgnoreReason::OtherProxy("x".into()))
    );
    assert!(matches!(
        ServiceView::from_k8s(&s, Some("x")),
        Admission::Accepted(_)
    ));
    let headless: Service =
        serde_json::from_value(svc("h", json!({"spec": {"clusterIP": "None"}}))).unwrap();
    assert_eq!(
        ServiceView::from_k8s(&headless, None),
        Admission::Ignored(IgnoreReason::Headless)
    );
    let no_ip: Service = serde_json::from_value(svc(
        "n",
        json!({"spec": {"clusterIP": null, "clusterIPs": null}}),
    ))
    .unwrap();
    assert_eq!(
        ServiceView::from_k8s(&no_ip, None),
        Admission::Ignored(IgnoreReason::NoClusterIp)
    );
    let fqdn: EndpointSlice =
        serde_json::from_value(slice("f", "web", json!([]), json!({"addressType": "FQDN"})))
            .unwrap();
    assert_eq!(
        EndpointSliceView::from_k8s(&fqdn, None),
        Admission::Ignored(IgnoreReason::Fqdn)
    );
    // A namespace-less manifest object lives in "default"; sloppy IPs parse.
    let bare: Service = serde_json::from_value(json!({
        "metadata": {"name": "bare"},
        "spec": {"clusterIP": "010.096.000.010", "ports": [{"port": 80}]}}))
    .unwrap();
    let v = ServiceView::from_k8s(&bare, None).accepted().unwrap();
    assert_eq!(
        (v.namespace.as_str(), v.cluster_ips.as_slice()),
        ("default", &[ip("10.96.0.10")][..])
    );
    assert!(v.problems.is_empty());
}

#[test]
fn node_facts_from_node() {
    let n: Node = serde_json::from_value(json!({
        "metadata": {"name": "node-a", "labels": {"topology.kubernetes.io/zone": "zone-a"}},
        "status": {"addresses": [
            {"type": "Hostname", "address": "node-a"},
            {"type": "ExternalIP", "address": "203.0.113.1"},
            {"type": "InternalIP", "address": "10.0.0.1"},
            {"type": "InternalIP", "address": "10.0.0.2"},
            {"type": "ExternalIP", "address": "2001:db8::1"}]}
    }))
    .unwrap();
    let f = NodeFacts::from_node(&n, [ip("10.0.0.1")]);
    assert_eq!(f.name, "node-a");
    assert_eq!(f.zone.as_deref(), Some("zone-a"));
    assert_eq!(f.primary_ips, vec![ip("10.0.0.1"), ip("2001:db8::1")]);
    assert_eq!(f.addresses, [ip("10.0.0.1")].into());
    assert!(f.is_local(Some("node-a")) && !f.is_local(Some("node-b")) && !f.is_local(None));
    assert!(!NodeFacts::default().is_local(Some("")));
}

#[test]
fn node_pod_cidrs_for_node_cidr_detection() {
    let cidrs = |spec: Value| -> Vec<String> {
        let n: Node =
            serde_json::from_value(json!({"metadata": {"name": "n"}, "spec": spec})).unwrap();
        node_pod_cidrs(&n).iter().map(ToString::to_string).collect()
    };
    // kube-proxy: the first CIDR of each family, IPv4 first; host bits cleared.
    assert_eq!(
        cidrs(json!({"podCIDR": "fd00:1::/64",
                     "podCIDRs": ["fd00:1::/64", "10.244.3.7/24", "10.244.9.0/24", "fd00:2::/64"]})),
        ["10.244.3.0/24", "fd00:1::/64"]
    );
    // Only the older single field.
    assert_eq!(
        cidrs(json!({"podCIDR": "10.244.1.0/24"})),
        ["10.244.1.0/24"]
    );
    // Garbage is skipped, not fatal; the next valid one of the family wins.
    assert_eq!(
        cidrs(json!({"podCIDRs": ["10.244.1.0/33", "nonsense", "10.244.2.0/24"]})),
        ["10.244.2.0/24"]
    );
    // Not allocated yet: nothing (the proxy then waits).
    assert!(cidrs(json!({})).is_empty());
    assert!(cidrs(json!({"podCIDRs": []})).is_empty());
    let bare: Node = serde_json::from_value(json!({"metadata": {"name": "n"}})).unwrap();
    assert!(node_pod_cidrs(&bare).is_empty());
}

// ---------------------------------------------------- incremental planning

#[test]
fn per_service_plans_merge_into_the_full_plan() {
    let svcs = vec![
        lb_svc(
            "a",
            json!({"spec": {"clusterIP": "10.96.2.1", "clusterIPs": ["10.96.2.1", "fd00:96::21"],
                            "externalTrafficPolicy": "Local", "healthCheckNodePort": 32100,
                            "loadBalancerSourceRanges": ["192.0.2.0/24"]},
                   "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.21"}]}}}),
        ),
        node_port_svc(
            "b",
            "SCTP",
            json!({"spec": {"clusterIP": "10.96.2.2", "clusterIPs": ["10.96.2.2"]}}),
        ),
        svc(
            "c",
            json!({"spec": {"clusterIP": "10.96.2.3", "clusterIPs": ["10.96.2.3"],
                            "externalIPs": ["198.51.100.1"]}}),
        ),
        // Conflicts with c on 198.51.100.1:80; c wins.
        svc(
            "d",
            json!({"spec": {"clusterIP": "10.96.2.4", "clusterIPs": ["10.96.2.4"],
                            "externalIPs": ["198.51.100.1"]}}),
        ),
    ];
    let eps = vec![
        slice(
            "a-1",
            "a",
            json!([ep("10.244.1.1", "node-a", json!({}))]),
            json!({}),
        ),
        slice(
            "a-2",
            "a",
            json!([ep("fd00:244::1", "node-b", json!({}))]),
            json!({"addressType": "IPv6"}),
        ),
        slice(
            "b-1",
            "b",
            json!([ep("10.244.2.1", "node-b", json!({}))]),
            json!({"ports": [{"name": "http", "port": 8080, "protocol": "SCTP"}]}),
        ),
        slice(
            "c-1",
            "c",
            json!([ep("10.244.3.1", "node-a", json!({}))]),
            json!({}),
        ),
        slice(
            "d-1",
            "d",
            json!([ep("10.244.4.1", "node-b", json!({}))]),
            json!({}),
        ),
    ];
    let config = PlannerConfig::default();
    let full = run(&svcs, &eps, &node(), &config);
    assert_eq!(
        full.problems,
        vec![Problem {
            namespace: "default".into(),
            name: "d".into(),
            kind: ObjectKind::Service,
            reason: "virtual server TCP 198.51.100.1:80 (externalIP of port \"http\") is also \
                     claimed by Service default/c (as its externalIP), which keeps it"
                .into(),
        }]
    );
    let vs = &full.state.virtual_servers[&ServiceKey::tcp("198.51.100.1:80".parse().unwrap())];
    assert_eq!(vs.owner.name, "c");

    // Plans in every rotation of the input order merge to the same result.
    let views: Vec<ServiceView> = services(&svcs)
        .iter()
        .filter_map(|s| ServiceView::from_k8s(s, None).accepted())
        .collect();
    let slice_views: Vec<EndpointSliceView> = slices(&eps)
        .iter()
        .filter_map(|s| EndpointSliceView::from_k8s(s, None).accepted())
        .collect();
    let plans: Vec<ServicePlan> = views
        .iter()
        .map(|v| plan_service(v, &slice_views, &node(), &config))
        .collect();
    for k in 0..plans.len() {
        let mut rotated = plans.clone();
        rotated.rotate_left(k);
        assert_eq!(DesiredState::from_plans(&rotated), full, "rotation {k}");
    }
    assert_eq!(plan_views(&views, &slice_views, &node(), &config), full);

    // A changed Service: re-plan only it, merge with the cached others.
    let mut svcs2 = svcs.clone();
    svcs2[2] = svc(
        "c",
        json!({"spec": {"clusterIP": "10.96.2.3", "clusterIPs": ["10.96.2.3"], "sessionAffinity": "ClientIP"}}),
    );
    let new_c = ServiceView::from_k8s(&services(&svcs2)[2], None)
        .accepted()
        .unwrap();
    let mut cached = plans.clone();
    cached[2] = plan_service(&new_c, &slice_views, &node(), &config);
    assert_eq!(
        DesiredState::from_plans(&cached),
        run(&svcs2, &eps, &node(), &config)
    );
    // d now owns the external IP without conflict.
    assert!(DesiredState::from_plans(&cached).problems.is_empty());

    // A Service's plan only holds its own things.
    let a = &plans[0];
    assert!(
        a.state
            .virtual_servers
            .values()
            .all(|vs| vs.owner.name == "a")
    );
    assert_eq!(a.state.health_checks.len(), 1);
    assert!(plans[1].state.health_checks.is_empty());
}

#[test]
fn plan_service_ignores_foreign_slices_and_slice_order() {
    let s = ServiceView::from_k8s(&services(&[svc("web", json!({}))])[0], None)
        .accepted()
        .unwrap();
    let eps = slices(&[
        slice(
            "web-2",
            "web",
            json!([ep("10.244.2.1", "node-a", json!({}))]),
            json!({}),
        ),
        slice(
            "web-1",
            "web",
            json!([ep("10.244.2.1", "node-b", json!({}))]),
            json!({}),
        ),
        slice(
            "other-1",
            "other",
            json!([ep("10.244.9.9", "node-b", json!({}))]),
            json!({}),
        ),
    ]);
    let views: Vec<EndpointSliceView> = eps
        .iter()
        .filter_map(|e| EndpointSliceView::from_k8s(e, None).accepted())
        .collect();
    let fwd = plan_service(&s, &views, &node(), &PlannerConfig::default());
    let rev = plan_service(&s, views.iter().rev(), &node(), &PlannerConfig::default());
    assert_eq!(fwd, rev);
    let lines = render(&fwd.state);
    assert!(
        lines.contains("vs TCP 10.96.0.10:80 rr -> 10.244.2.1:8080"),
        "{lines:?}"
    );
    assert!(lines.contains("set KUBE-LOOP-BACK 10.244.2.1,tcp:8080,10.244.2.1"));
}

#[test]
fn limits_are_configurable() {
    let config = PlannerConfig {
        limits: Limits {
            max_virtual_servers_per_service: 1,
            max_real_servers_per_service: 1,
        },
        ..PlannerConfig::default()
    };
    let out = run(&[svc("web", json!({}))], &two_endpoints(), &node(), &config);
    assert!(out.state.virtual_servers.is_empty());
    assert_eq!(out.problems.len(), 1);
    assert!(
        out.problems[0]
            .reason
            .contains("1 virtual servers and 2 real servers")
    );
}

// ------------------------------------------------------------------- scale

#[test]
fn ten_thousand_services() {
    const N: usize = 10_000;
    const EPS: usize = 10;
    let svcs: Vec<Service> = (0..N)
        .map(|i| {
            let cip = format!("10.96.{}.{}", i / 250, i % 250 + 1);
            // Every fifth Service is a NodePort one (2000 NodePorts; the
            // default range holds 2768).
            let spec = if i % 5 == 0 {
                json!({"type": "NodePort", "clusterIP": cip, "clusterIPs": [cip],
                       "ports": [{"name": "http", "port": 80, "nodePort": 30000 + i / 5}]})
            } else {
                json!({"clusterIP": cip, "clusterIPs": [cip]})
            };
            serde_json::from_value(svc(&format!("svc-{i}"), json!({ "spec": spec }))).unwrap()
        })
        .collect();
    let eps: Vec<EndpointSlice> = (0..N)
        .map(|i| {
            let endpoints: Vec<Value> = (0..EPS)
                .map(|j| {
                    let n = i * EPS + j;
                    ep(
                        &format!("10.{}.{}.{}", 128 + n / 65536, (n / 256) % 256, n % 256),
                        if j == 0 { "node-a" } else { "node-b" },
                        json!({}),
                    )
                })
                .collect();
            serde_json::from_value(slice(
                &format!("svc-{i}-1"),
                &format!("svc-{i}"),
                json!(endpoints),
                json!({}),
            ))
            .unwrap()
        })
        .collect();
    let node = NodeFacts {
        addresses: [ip("10.0.0.1"), ip("192.168.1.1")].into(),
        ..node()
    };
    let start = Instant::now();
    let out = plan(&svcs, &eps, &node, &PlannerConfig::default());
    let elapsed = start.elapsed();
    eprintln!("planned {N} Services x {EPS} endpoints in {elapsed:?}");
    assert!(out.problems.is_empty(), "{:?}", &out.problems[..1]);
    let node_ports = N / 5 * 2;
    assert_eq!(out.state.virtual_servers.len(), N + node_ports);
    assert_eq!(out.state.bound_addresses.len(), N);
    let dests: usize = out
        .state
        .virtual_servers
        .values()
        .map(|vs| vs.destinations.len())
        .sum();
    assert_eq!(dests, (N + node_ports) * EPS);
    let loopback = out
        .state
        .sets
        .iter()
        .find(|(n, _)| n.name() == "KUBE-LOOP-BACK")
        .map(|(_, e)| e.len());
    assert_eq!(loopback, Some(N));
    let set_len = |name: &str| {
        out.state
            .sets
            .iter()
            .find(|(n, _)| n.name() == name)
            .map_or(0, |(_, e)| e.len())
    };
    assert_eq!(set_len("KUBE-CLUSTER-IP"), N);
    assert_eq!(set_len("KUBE-IPVS-IPS"), N);
    assert_eq!(set_len("KUBE-NODE-PORT-TCP"), N / 5);
    if !cfg!(debug_assertions) {
        assert!(elapsed.as_secs_f64() < 2.0, "planning took {elapsed:?}");
    }
}
