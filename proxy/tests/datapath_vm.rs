//! The data path kube-proxy's IPVS mode promises, end to end in the IPVS VM:
//! the real `sluice-proxy` binary on a manifest directory, "pods" and outside
//! clients as network namespaces, and bytes through sockets as the evidence.
//!
//! Covered here: LoadBalancer IPs and externalIPs; masquerading with
//! `externalTrafficPolicy: Cluster` and the client's own address with
//! `Local`; ClientIP session affinity; `loadBalancerSourceRanges`;
//! KUBE-IPVS-FILTER hiding host ports behind ClusterIPs; the
//! terminating-endpoint fallback; an IPv6 ClusterIP; drift in ipsets and
//! iptables repaired by the periodic resync; `--detect-local-mode NodeCIDR`.
//!
//! Network: pods `pod31` (10.244.31.2, fd00:244:31::2) and `pod32`
//! (10.244.32.2) run echo servers on 8080 that answer `NAME PEER LINE`;
//! client `cl-in` (192.168.50.20) and `cl-out` (192.168.60.20) sit on two
//! node networks (the node is .10 on each) and route everything via the node.

use sluice_tests::fixtures;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_tests::netns::{ask_from, client, echo_server, pod, pod_ipv6, sh};

#[test]
fn data_path_in_the_ipvs_vm() {
    sluice_tests::vm::run_guest_tests("guest_");
}

const CL_IN: &str = "cl-in";
const CL_OUT: &str = "cl-out";
const CL_IN_IP: &str = "192.168.50.20";
const POD31: &str = "10.244.31.2";
const POD32: &str = "10.244.32.2";

/// Pods and clients, once per VM boot (the guest tests share one process).
fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        echo_server(&pod(31), 8080, "pod31");
        echo_server(&pod(32), 8080, "pod32");
        pod_ipv6(31);
        client(CL_IN, "eth-in", "192.168.50.10", CL_IN_IP);
        client(CL_OUT, "eth-out", "192.168.60.10", "192.168.60.20");
    });
}

// ---- manifests ----

fn node(pod_cidrs: &[&str]) -> Value {
    let mut spec = json!({});
    if let Some(first) = pod_cidrs.first() {
        spec = json!({"podCIDR": first, "podCIDRs": pod_cidrs});
    }
    fixtures::node(
        "node-1",
        json!({"spec": spec,
               "status": {"addresses": [{"type": "InternalIP", "address": "192.168.50.10"}]}}),
    )
}

/// A Service in namespace `dp` with one TCP port `http` 80 → 8080. `spec`
/// and `status` are merged over that.
fn service(name: &str, cluster_ip: &str, spec: Value, status: Value) -> Value {
    fixtures::service(
        "dp",
        name,
        cluster_ip,
        json!({"spec": spec, "status": status}),
    )
}

/// An endpoint: (address, nodeName, ready, serving, terminating).
type Ep<'a> = (&'a str, &'a str, bool, bool, bool);

fn ready<'a>(ip: &'a str, node: &'a str) -> Ep<'a> {
    (ip, node, true, true, false)
}

fn slice(name: &str, svc: &str, family: &str, eps: &[Ep]) -> Value {
    let endpoints = eps
        .iter()
        .map(|(ip, node, r, s, t)| {
            fixtures::endpoint(
                ip,
                json!({"nodeName": node,
                       "conditions": {"ready": r, "serving": s, "terminating": t}}),
            )
        })
        .collect();
    fixtures::endpoint_slice("dp", name, svc, endpoints, json!({ "addressType": family }))
}

/// Replaces the whole manifest directory's content (write, then rename, so
/// the proxy never reads half a file).
fn write_manifests(dir: &str, items: Vec<Value>) {
    std::fs::create_dir_all(dir).unwrap();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    let tmp = format!("{dir}/.objects.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&list).unwrap()).unwrap();
    std::fs::rename(&tmp, format!("{dir}/objects.json")).unwrap();
}

// ---- the proxy ----

/// The real binary; stopped with SIGTERM when dropped (also when a test
/// fails, so the next one can bind the same ports).
struct Proxy(Child);

impl Proxy {
    fn start(dir: &str, extra: &[&str]) -> Self {
        let mut args = vec![
            "--manifests",
            dir,
            "--hostname-override",
            "node-1",
            "--healthz-bind-address",
            "127.0.0.1:10256",
            "--metrics-bind-address",
            "127.0.0.1:10249",
            "--ipvs-min-sync-period",
            "0s",
        ];
        args.extend_from_slice(extra);
        let child = Command::new(env!("CARGO_BIN_EXE_sluice-proxy"))
            .args(&args)
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sluice-proxy");
        Self(child)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // SAFETY: sending SIGTERM to our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn wait_until(what: &str, limit: Duration, cond: impl FnMut() -> bool) {
    // Each poll spawns tools; under TCG they compete with the proxy.
    sluice_tests::wait::wait_until(what, limit, Duration::from_millis(250), cond, || {
        format!("\nipvsadm:\n{}", sh("ipvsadm -Sn"))
    });
}

/// Waits until `ipvsadm -Sn` has every line, each `set` holds its entry and
/// the proxy reports a finished sync (the iptables rules are restored after
/// the sets, IPv6 last, so the entries alone do not mean the rules are in).
/// For a proxy's first sync only: later ones find the timestamp already set.
fn wait_programmed(ipvs: &[&str], sets: &[(&str, &str)]) {
    wait_until("the sync", Duration::from_secs(30), || {
        // The cheap in-process check first.
        if last_sync() <= 0.0 {
            return false;
        }
        let saved = sh("ipvsadm -Sn");
        ipvs.iter().all(|l| saved.contains(l))
            && sets.iter().all(|(set, entry)| {
                Command::new("ipset")
                    .args(["test", set, entry])
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
    });
}

/// `kubeproxy_sync_proxy_rules_last_timestamp_seconds`, 0 if unreadable.
fn last_sync() -> f64 {
    metric("kubeproxy_sync_proxy_rules_last_timestamp_seconds")
}

/// A sample from the proxy's `/metrics`, 0 if unreadable.
fn metric(name: &str) -> f64 {
    let Ok(mut s) = std::net::TcpStream::connect("127.0.0.1:10249") else {
        return 0.0;
    };
    use std::io::{Read, Write};
    let _ = s.set_read_timeout(Some(T));
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const T: Duration = Duration::from_secs(3);

/// One request; panics with the error if it gets no answer.
fn hit(ns: Option<&str>, addr: &str) -> (String, String) {
    let reply = ask_from(ns, sa(addr), "ping", T)
        .unwrap_or_else(|e| panic!("{addr} from {ns:?}: {e}\n{}", sh("ipvsadm -Ln")));
    let mut words = reply.split(' ');
    let name = words.next().unwrap_or_default().to_owned();
    let peer = words.next().unwrap_or_default().to_owned();
    assert!(reply.ends_with(" ping"), "{reply}");
    (name, peer)
}

/// `n` requests; the backends that answered and the sources they saw.
fn hits(ns: Option<&str>, addr: &str, n: usize) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut names, mut peers) = (BTreeSet::new(), BTreeSet::new());
    for _ in 0..n {
        let (name, peer) = hit(ns, addr);
        names.insert(name);
        peers.insert(peer);
    }
    (names, peers)
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ---- the tests ----

#[test]
#[ignore = "runs inside the IPVS VM"]
fn guest_lb_and_external_ips_masquerade_with_cluster_policy_and_keep_the_client_with_local() {
    setup();
    let dir = "/tmp/dp-lb";
    let both = [ready(POD31, "node-1"), ready(POD32, "node-2")];
    write_manifests(
        dir,
        vec![
            node(&[]),
            service(
                "lb",
                "10.96.1.10",
                json!({"type": "LoadBalancer", "externalIPs": ["198.51.100.10"],
                       "externalTrafficPolicy": "Cluster",
                       "ports": [{"name": "http", "port": 80, "targetPort": 8080,
                                  "nodePort": 30081, "protocol": "TCP"}]}),
                json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}),
            ),
            slice("lb-1", "lb", "IPv4", &both),
            service(
                "lbl",
                "10.96.1.11",
                json!({"type": "LoadBalancer", "externalIPs": ["198.51.100.11"],
                       "externalTrafficPolicy": "Local", "healthCheckNodePort": 32001,
                       "ports": [{"name": "http", "port": 80, "targetPort": 8080,
                                  "nodePort": 30082, "protocol": "TCP"}]}),
                json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.11"}]}}),
            ),
            slice("lbl-1", "lbl", "IPv4", &both),
        ],
    );
    let _proxy = Proxy::start(dir, &[]);
    wait_programmed(
        &[
            "-a -t 203.0.113.10:80 -r 10.244.32.2:8080",
            "-a -t 198.51.100.10:80 -r 10.244.32.2:8080",
            "-a -t 203.0.113.11:80 -r 10.244.31.2:8080",
            "-a -t 198.51.100.11:80 -r 10.244.31.2:8080",
        ],
        &[
            ("KUBE-LOAD-BALANCER-LOCAL", "203.0.113.11,tcp:80"),
            ("KUBE-EXTERNAL-IP-LOCAL", "198.51.100.11,tcp:80"),
        ],
    );
    let saved = sh("ipvsadm -Sn");
    assert!(
        !saved.contains("-a -t 203.0.113.11:80 -r 10.244.32.2:8080"),
        "Local policy uses only this node's endpoint: {saved}"
    );

    // Cluster policy from outside: both endpoints, and the pods see a node
    // address, never the client (kube-proxy masquerades so replies return
    // through this node).
    for vip in ["203.0.113.10:80", "198.51.100.10:80", "192.168.50.10:30081"] {
        let (names, peers) = hits(Some(CL_IN), vip, 4);
        assert_eq!(names, set(&["pod31", "pod32"]), "{vip}");
        assert!(
            !peers.contains(CL_IN_IP),
            "{vip}: masqueraded, saw {peers:?}"
        );
    }
    // Local policy: only the local pod, and it sees the client itself.
    for vip in ["203.0.113.11:80", "198.51.100.11:80", "192.168.50.10:30082"] {
        let (names, peers) = hits(Some(CL_IN), vip, 3);
        assert_eq!(names, set(&["pod31"]), "{vip}");
        assert_eq!(peers, set(&[CL_IN_IP]), "{vip}: source kept");
    }
    // The health check node port tells load balancers this node has one.
    let hc = http_get("127.0.0.1:32001", "/");
    assert!(hc.starts_with("HTTP/1.1 200"), "{hc}");
    assert!(
        hc.contains("\"localEndpoints\": 1") || hc.contains("\"localEndpoints\":1"),
        "{hc}"
    );
}

fn http_get(addr: &str, path: &str) -> String {
    sluice_tests::fixtures::http_get(sa(addr), path).unwrap_or_default()
}

#[test]
#[ignore = "runs inside the IPVS VM"]
fn guest_client_ip_affinity_pins_a_client_to_one_pod() {
    setup();
    let dir = "/tmp/dp-affinity";
    let both = [ready(POD31, "node-1"), ready(POD32, "node-1")];
    write_manifests(
        dir,
        vec![
            node(&[]),
            service(
                "sticky",
                "10.96.1.20",
                json!({"sessionAffinity": "ClientIP",
                       "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}),
                json!({}),
            ),
            slice("sticky-1", "sticky", "IPv4", &both),
            service("plain", "10.96.1.21", json!({}), json!({})),
            slice("plain-1", "plain", "IPv4", &both),
        ],
    );
    let _proxy = Proxy::start(dir, &[]);
    wait_programmed(
        &[
            "-A -t 10.96.1.20:80 -s rr -p 60",
            "-a -t 10.96.1.20:80 -r 10.244.32.2:8080",
            "-a -t 10.96.1.21:80 -r 10.244.32.2:8080",
        ],
        &[("KUBE-CLUSTER-IP", "10.96.1.21,tcp:80")],
    );
    let (names, peers) = hits(Some(CL_IN), "10.96.1.20:80", 10);
    assert_eq!(names.len(), 1, "ten connections, one pod: {names:?}");
    // Without local-traffic detection kube-proxy masquerades only hairpin
    // ClusterIP traffic, so the pod sees the client.
    assert_eq!(peers, set(&[CL_IN_IP]));
    let (names, _) = hits(Some(CL_IN), "10.96.1.21:80", 10);
    assert_eq!(
        names,
        set(&["pod31", "pod32"]),
        "without affinity both answer"
    );
}

#[test]
#[ignore = "runs inside the IPVS VM"]
fn guest_load_balancer_source_ranges_admit_only_listed_clients() {
    setup();
    let dir = "/tmp/dp-ranges";
    let lb = |name: &str, cip: &str, lbip: &str, node_port: u16, ranges: &[&str]| {
        service(
            name,
            cip,
            json!({"type": "LoadBalancer", "loadBalancerSourceRanges": ranges,
                   "ports": [{"name": "http", "port": 80, "targetPort": 8080,
                              "nodePort": node_port, "protocol": "TCP"}]}),
            json!({"loadBalancer": {"ingress": [{"ip": lbip}]}}),
        )
    };
    write_manifests(
        dir,
        vec![
            node(&[]),
            lb(
                "fw",
                "10.96.1.30",
                "203.0.113.30",
                30083,
                &["192.168.50.0/24"],
            ),
            slice("fw-1", "fw", "IPv4", &[ready(POD31, "node-1")]),
            lb("open", "10.96.1.31", "203.0.113.31", 30084, &[]),
            slice("open-1", "open", "IPv4", &[ready(POD31, "node-1")]),
        ],
    );
    let _proxy = Proxy::start(dir, &[]);
    wait_programmed(
        &[
            "-a -t 203.0.113.30:80 -r 10.244.31.2:8080",
            "-a -t 203.0.113.31:80 -r 10.244.31.2:8080",
        ],
        &[
            ("KUBE-LOAD-BALANCER-FW", "203.0.113.30,tcp:80"),
            (
                "KUBE-LOAD-BALANCER-SOURCE-CIDR",
                "203.0.113.30,tcp:80,192.168.50.0/24",
            ),
        ],
    );
    assert_eq!(
        hit(Some(CL_IN), "203.0.113.30:80").0,
        "pod31",
        "inside the range"
    );
    // The outside client reaches a load balancer without ranges, so only
    // the range can be what stops it on the other one.
    assert_eq!(hit(Some(CL_OUT), "203.0.113.31:80").0, "pod31");
    let blocked = ask_from(
        Some(CL_OUT),
        sa("203.0.113.30:80"),
        "ping",
        Duration::from_secs(2),
    );
    assert!(blocked.is_err(), "outside the range: {blocked:?}");
}

#[test]
#[ignore = "runs inside the IPVS VM"]
fn guest_ipvs_filter_hides_host_ports_behind_cluster_ips() {
    setup();
    // A host process on 0.0.0.0:9099 (the node's own service).
    let listener = std::net::TcpListener::bind("0.0.0.0:9099").unwrap();
    std::thread::spawn(move || {
        use std::io::{BufRead, BufReader, Write};
        for conn in listener.incoming().flatten() {
            let mut line = String::new();
            let mut r = BufReader::new(conn.try_clone().unwrap());
            if r.read_line(&mut line).is_ok() {
                let _ = (&conn).write_all(format!("host - {}\n", line.trim_end()).as_bytes());
            }
        }
    });
    let dir = "/tmp/dp-filter";
    write_manifests(
        dir,
        vec![
            node(&[]),
            service("filt", "10.96.1.40", json!({}), json!({})),
            slice("filt-1", "filt", "IPv4", &[ready(POD31, "node-1")]),
        ],
    );
    let _proxy = Proxy::start(dir, &[]);
    wait_programmed(
        &["-a -t 10.96.1.40:80 -r 10.244.31.2:8080"],
        &[("KUBE-IPVS-IPS", "10.96.1.40")],
    );
    assert_eq!(
        hit(Some(CL_IN), "10.96.1.40:80").0,
        "pod31",
        "the service port works"
    );
    assert_eq!(
        hit(Some(CL_IN), "192.168.50.10:9099").0,
        "host",
        "the host port is reachable on the node's address"
    );
    let hidden = ask_from(Some(CL_IN), sa("10.96.1.40:9099"), "ping", T);
    assert!(hidden.is_err(), "host port through a ClusterIP: {hidden:?}");
}

#[test]
#[ignore = "runs inside the IPVS VM"]
fn guest_terminating_endpoints_serve_until_a_ready_one_appears() {
    setup();
    let dir = "/tmp/dp-terminating";
    let objects = |eps: &[Ep]| {
        vec![
            node(&[]),
            service("term", "10.96.1.50", json!({}), json!({})),
            slice("term-1", "term", "IPv4", eps),
        ]
    };
    // pod31 terminates but still serves; pod32 terminates and does not.
    write_manifests(
        dir,
        objects(&[
            (POD31, "node-1", false, true, true),
            (POD32, "node-1", false, false, true),
        ]),
    );
    let _proxy = Proxy::start(dir, &[]);
    wait_programmed(
        &["-a -t 10.96.1.50:80 -r 10.244.31.2:8080 -m -w 1"],
        &[("KUBE-CLUSTER-IP", "10.96.1.50,tcp:80")],
    );
    assert!(!sh("ipvsadm -Sn").contains("-t 10.96.1.50:80 -r 10.244.32.2"));
    let (names, _) = hits(Some(CL_IN), "10.96.1.50:80", 3);
    assert_eq!(names, set(&["pod31"]), "served by the terminating endpoint");

    // A ready endpoint appears: only it takes new connections.
    write_manifests(
        dir,
        objects(&[
            (POD31, "node-1", false, true, true),
            (POD32, "node-1", true, true, false),
        ]),
    );
    wait_until("the ready endpoint", Duration::from_secs(15), || {
        let s = sh("ipvsadm -Sn");
        s.contains("-a -t 10.96.1.50:80 -r 10.244.32.2:8080 -m -w 1")
            && !s.contains("-a -t 10.96.1.50:80 -r 10.244.31.2:8080 -m -w 1")
    });
    let (names, _) = hits(Some(CL_IN), "10.96.1.50:80", 4);
    assert_eq!(names, set(&["pod32"]), "only the ready endpoint");
}

#[test]
#[ignore = "runs inside the IPVS VM"]
fn guest_dual_stack_service_reaches_ipv4_and_ipv6_pods() {
    setup();
    let dir = "/tmp/dp-ipv6";
    write_manifests(
        dir,
        vec![
            node(&[]),
            service(
                "dual",
                "10.96.1.60",
                json!({"clusterIPs": ["10.96.1.60", "fd00:96::1a"],
                       "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack"}),
                json!({}),
            ),
            slice("dual-v4", "dual", "IPv4", &[ready(POD32, "node-1")]),
            slice(
                "dual-v6",
                "dual",
                "IPv6",
                &[ready("fd00:244:31::2", "node-1")],
            ),
        ],
    );
    let _proxy = Proxy::start(dir, &[]);
    wait_programmed(
        &[
            "-a -t [fd00:96::1a]:80 -r [fd00:244:31::2]:8080",
            "-a -t 10.96.1.60:80 -r 10.244.32.2:8080",
        ],
        &[("KUBE-6-CLUSTER-IP", "fd00:96::1a,tcp:80")],
    );
    let sets = sh("ipset list -n");
    for name in ["KUBE-6-CLUSTER-IP", "KUBE-6-IPVS-IPS", "KUBE-6-LOOP-BACK"] {
        assert!(sets.lines().any(|l| l == name), "{name} missing: {sets}");
    }
    assert!(sh("ip -o addr show dev kube-ipvs0").contains("fd00:96::1a/128"));
    let save6 = sh("ip6tables-save -t nat");
    assert!(save6.contains("--match-set KUBE-6-CLUSTER-IP"), "{save6}");
    assert_eq!(hit(None, "[fd00:96::1a]:80").0, "pod31", "IPv6 ClusterIP");
    assert_eq!(hit(None, "10.96.1.60:80").0, "pod32", "IPv4 ClusterIP");
}

/// The `-A` lines of the nat and filter tables that mention our chains.
fn our_rules() -> Vec<String> {
    sh("iptables-save -t nat; iptables-save -t filter")
        .lines()
        .filter(|l| l.starts_with("-A ") && l.contains("KUBE-"))
        .map(str::to_owned)
        .collect()
}

#[test]
#[ignore = "runs inside the IPVS VM"]
fn guest_drift_in_sets_and_rules_is_repaired_by_the_periodic_resync() {
    setup();
    let dir = "/tmp/dp-drift";
    write_manifests(
        dir,
        vec![
            node(&[]),
            service("drift", "10.96.1.70", json!({}), json!({})),
            slice("drift-1", "drift", "IPv4", &[ready(POD31, "node-1")]),
        ],
    );
    let _proxy = Proxy::start(dir, &["--ipvs-sync-period", "2s"]);
    wait_programmed(
        &["-a -t 10.96.1.70:80 -r 10.244.31.2:8080"],
        &[("KUBE-CLUSTER-IP", "10.96.1.70,tcp:80")],
    );
    let rules = our_rules();
    // By hand: a member of ours, a rule in our chain and the jump into it.
    sh("ipset del KUBE-CLUSTER-IP 10.96.1.70,tcp:80");
    sh("iptables -t nat -D KUBE-POSTROUTING 1");
    sh(
        "iptables -t nat -D PREROUTING -m comment --comment 'kubernetes service portals' -j KUBE-SERVICES",
    );
    assert_ne!(our_rules(), rules, "the rules really changed");
    wait_until("drift repair", Duration::from_secs(20), || {
        our_rules() == rules
            && Command::new("ipset")
                .args(["test", "KUBE-CLUSTER-IP", "10.96.1.70,tcp:80"])
                .output()
                .is_ok_and(|o| o.status.success())
    });
    assert_eq!(hit(Some(CL_IN), "10.96.1.70:80").0, "pod31");
}

#[test]
#[ignore = "runs inside the IPVS VM"]
fn guest_node_cidr_detect_local_masquerades_only_sources_outside_the_pod_cidr() {
    setup();
    let dir = "/tmp/dp-nodecidr";
    let objects = |cidrs: &[&str]| {
        vec![
            node(cidrs),
            service(
                "local",
                "10.96.1.80",
                json!({"clusterIPs": ["10.96.1.80", "fd00:96::80"],
                       "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack"}),
                json!({}),
            ),
            slice("local-1", "local", "IPv4", &[ready(POD31, "node-1")]),
            slice(
                "local-2",
                "local",
                "IPv6",
                &[ready("fd00:244:31::2", "node-1")],
            ),
        ]
    };
    // No pod CIDR allocated yet: like kube-proxy, program nothing.
    write_manifests(dir, objects(&[]));
    let _proxy = Proxy::start(dir, &["--detect-local-mode", "NodeCIDR"]);
    // The proxy has the objects (a change is queued) ...
    wait_until("the objects", Duration::from_secs(15), || {
        metric("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds") > 0.0
    });
    // ... and, a few 50 ms loop turns later, still has not synced.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(last_sync(), 0.0, "no sync before the Node has a podCIDR");
    assert!(
        !sh("ipvsadm -Sn").contains("10.96.1.80"),
        "nothing before the Node has a podCIDR"
    );

    write_manifests(dir, objects(&["10.244.0.0/16", "fd00:244::/48"]));
    wait_programmed(
        &["-a -t 10.96.1.80:80 -r 10.244.31.2:8080"],
        &[
            ("KUBE-CLUSTER-IP", "10.96.1.80,tcp:80"),
            ("KUBE-6-CLUSTER-IP", "fd00:96::80,tcp:80"),
        ],
    );
    // iptables-save prints `! -s` before the match modules.
    let masq_rule = |save: &str, set: &str, cidr: &str| {
        save.lines().any(|l| {
            l.starts_with("-A KUBE-SERVICES")
                && l.contains(&format!("! -s {cidr}"))
                && l.contains(&format!("--match-set {set} dst,dst"))
                && l.ends_with("-j KUBE-MARK-MASQ")
        })
    };
    // Both families' rules (IPv6 is restored after IPv4).
    wait_until("the NodeCIDR rules", Duration::from_secs(10), || {
        masq_rule(
            &sh("iptables-save -t nat"),
            "KUBE-CLUSTER-IP",
            "10.244.0.0/16",
        ) && masq_rule(
            &sh("ip6tables-save -t nat"),
            "KUBE-6-CLUSTER-IP",
            "fd00:244::/48",
        )
    });
    // From outside the pod CIDR: masqueraded. From a pod: its own address.
    let (name, peer) = hit(Some(CL_IN), "10.96.1.80:80");
    assert_eq!(name, "pod31");
    assert_ne!(peer, CL_IN_IP, "non-local source masqueraded");
    let (name, peer) = hit(Some("pod32"), "10.96.1.80:80");
    assert_eq!(name, "pod31");
    assert_eq!(peer, POD32, "pod traffic keeps its source");

    // The pod CIDR changes (kube-proxy restarts for this): the rule follows
    // without a restart and pod32 now counts as outside.
    write_manifests(dir, objects(&["10.244.31.0/24"]));
    wait_until("the new NodeCIDR rule", Duration::from_secs(15), || {
        masq_rule(
            &sh("iptables-save -t nat"),
            "KUBE-CLUSTER-IP",
            "10.244.31.0/24",
        )
    });
    assert!(!sh("iptables-save -t nat").contains("10.244.0.0/16"));
    let (_, peer) = hit(Some("pod32"), "10.96.1.80:80");
    assert_ne!(peer, POD32, "outside the new pod CIDR: masqueraded");

    // The Node loses its pod CIDRs: the last ones stay in force (dropping
    // detection would change who is masqueraded).
    let queued = metric("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds");
    write_manifests(dir, objects(&[]));
    wait_until(
        "a sync of the changed Node",
        Duration::from_secs(15),
        || {
            let q = metric("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds");
            q > queued && last_sync() >= q
        },
    );
    assert!(masq_rule(
        &sh("iptables-save -t nat"),
        "KUBE-CLUSTER-IP",
        "10.244.31.0/24",
    ));
}
