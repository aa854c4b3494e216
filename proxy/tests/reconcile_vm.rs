//! The proxy's kernel reconcilers against real IPVS, in the IPVS VM: adopt
//! existing state, repair drift, leave foreign and excluded services alone,
//! drain a live TCP connection within the bound, survive a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ipvs_sys::{Destination, Scheduler, Service, ServiceKey};
use sluice_proxy::plan::{ServicePortRef, VirtualServer};
use sluice_proxy::reconcile::addresses::AddressReconciler;
use sluice_proxy::reconcile::ipvs::{IpvsReconciler, Scope};
use sluice_tests::netns::{ask, echo_server, pod, sh};

#[test]
fn reconcilers_in_the_ipvs_vm() {
    sluice_tests::vm::run_guest_tests("guest_");
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn vs(key: ServiceKey, dests: &[&str]) -> VirtualServer {
    VirtualServer {
        service: Service::new(key, Scheduler::RoundRobin),
        destinations: dests
            .iter()
            .map(|d| (sa(d), Destination::masq(sa(d))))
            .collect(),
        owner: ServicePortRef {
            namespace: "default".into(),
            name: "web".into(),
            port_name: String::new(),
        },
    }
}

/// Sends a line and checks the echo server answered it.
fn echo(c: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    let line = String::from_utf8_lossy(msg).into_owned();
    let reply = ask(c, &line);
    assert!(reply.ends_with(&line), "{reply:?}");
    msg.to_vec()
}

fn connect(vip: &str) -> TcpStream {
    let c = TcpStream::connect_timeout(&sa(vip), Duration::from_secs(5)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c
}

struct Node {
    ipvs: IpvsReconciler,
    addrs: AddressReconciler,
}

impl Node {
    fn start(grace: Duration, exclude: &[&str]) -> Self {
        Self {
            ipvs: IpvsReconciler::open(grace, exclude.iter().map(|c| c.parse().unwrap()).collect())
                .unwrap(),
            addrs: AddressReconciler::open().unwrap(),
        }
    }

    /// One full sync: addresses, then virtual servers. Returns IPVS ops sent.
    fn sync(&mut self, desired: &BTreeMap<ServiceKey, VirtualServer>) -> usize {
        let bound: BTreeSet<IpAddr> = desired
            .keys()
            .filter_map(|k| match k {
                ServiceKey::Inet { addr, .. } => Some(addr.ip()),
                _ => None,
            })
            .collect();
        // Bind, reconcile IPVS while stale addresses still mark stale
        // services as ours, then unbind.
        let a = self.addrs.bind_missing(&bound).unwrap();
        assert!(a.failed.is_empty(), "{a:?}");
        let (_, dummy) = self.addrs.current().unwrap();
        let node = self.addrs.node_addresses().unwrap();
        let r = self
            .ipvs
            .sync(desired, Scope::Full, &dummy, &node, Instant::now())
            .unwrap();
        assert!(r.failed.is_empty(), "{:?}", r.failed);
        let a = self.addrs.unbind_stale(&bound).unwrap();
        assert!(a.failed.is_empty(), "{a:?}");
        r.ops
    }
}

#[test]
#[ignore = "runs inside the IPVS VM"]
fn guest_adopts_repairs_and_leaves_foreign_state_alone() {
    sh("ipvsadm -C");
    // Someone else's service, and one inside excludeCIDRs.
    sh("ipvsadm -A -t 172.16.0.1:80 -s rr && ipvsadm -A -t 10.96.100.1:80 -s rr");
    let web = ServiceKey::tcp(sa("10.96.0.10:80"));
    let dns = ServiceKey::udp(sa("10.96.0.53:53"));
    let stale = ServiceKey::tcp(sa("10.96.0.99:80"));
    let mut node = Node::start(Duration::from_secs(30), &["10.96.100.0/24"]);
    // A stale service of ours from an earlier run: its address is on kube-ipvs0.
    let with_stale: BTreeMap<_, _> = [(stale, vs(stale, &["10.244.9.2:80"]))].into();
    node.sync(&with_stale);
    let desired: BTreeMap<_, _> = [
        (web, vs(web, &["10.244.1.2:8080", "10.244.2.2:8080"])),
        (dns, vs(dns, &["10.244.1.2:53"])),
    ]
    .into();
    assert!(node.sync(&desired) > 0);
    let saved = sh("ipvsadm -Sn");
    assert!(
        saved.contains("-a -t 10.96.0.10:80 -r 10.244.2.2:8080 -m -w 1"),
        "{saved}"
    );
    assert!(saved.contains("-A -u 10.96.0.53:53 -s rr"), "{saved}");
    assert!(
        !saved.contains("10.96.0.99"),
        "stale service of ours removed: {saved}"
    );
    assert!(
        saved.contains("-A -t 172.16.0.1:80"),
        "foreign service kept: {saved}"
    );
    assert!(
        saved.contains("-A -t 10.96.100.1:80"),
        "excluded service kept: {saved}"
    );
    let addrs = sh("ip -o addr show dev kube-ipvs0");
    assert!(
        addrs.contains("10.96.0.10/32") && addrs.contains("10.96.0.53/32"),
        "{addrs}"
    );
    assert!(!addrs.contains("10.96.0.99"), "{addrs}");

    // A second sync (or a restart) against the same kernel changes nothing.
    assert_eq!(node.sync(&desired), 0);
    let mut restarted = Node::start(Duration::from_secs(30), &["10.96.100.0/24"]);
    assert_eq!(restarted.sync(&desired), 0);
    assert_eq!(sh("ipvsadm -Sn"), saved);

    // Drift: a virtual server, a real server and an address removed by hand.
    sh(
        "ipvsadm -D -u 10.96.0.53:53 && ipvsadm -d -t 10.96.0.10:80 -r 10.244.1.2:8080 && \
        ip addr del 10.96.0.10/32 dev kube-ipvs0 && ipvsadm -e -t 10.96.0.10:80 -r 10.244.2.2:8080 -m -w 5",
    );
    assert!(restarted.sync(&desired) >= 4);
    assert_eq!(sh("ipvsadm -Sn"), saved, "drift repaired");
    assert!(sh("ip -o addr show dev kube-ipvs0").contains("10.96.0.10/32"));
}

#[test]
#[ignore = "runs inside the IPVS VM"]
fn guest_live_connection_drains_within_the_bound_and_survives_restart() {
    sh("ipvsadm -C");
    let p1 = pod(11);
    let p2 = pod(12);
    echo_server(&p1, 8080, "pod11");
    echo_server(&p2, 8080, "pod12");
    let key = ServiceKey::tcp(sa("10.96.1.10:80"));
    let both: BTreeMap<_, _> = [(key, vs(key, &["10.244.11.2:8080", "10.244.12.2:8080"]))].into();
    let grace = Duration::from_secs(4);
    let mut node = Node::start(grace, &[]);
    node.sync(&both);

    // A long-lived connection through the ClusterIP.
    let mut conn = connect("10.96.1.10:80");
    assert_eq!(echo(&mut conn, b"hello"), b"hello");
    let dests = ipvs_sys::IpvsClient::open()
        .unwrap()
        .destinations(&key)
        .unwrap();
    let busy = dests
        .iter()
        .find(|d| d.active_conns > 0)
        .expect("one real server holds the connection");
    let backend_addr = busy.destination.addr.to_string();
    let backend = backend_addr.as_str();
    let other = if backend == "10.244.11.2:8080" {
        "10.244.12.2:8080"
    } else {
        "10.244.11.2:8080"
    };

    // Restart: a new reconciler against the same kernel changes nothing and
    // the connection keeps working.
    let mut node = Node::start(grace, &[]);
    assert_eq!(node.sync(&both), 0);
    assert_eq!(echo(&mut conn, b"after restart"), b"after restart");

    // Remove the connection's endpoint: it drains at weight 0, the
    // connection still works, new connections go to the other endpoint.
    let remaining: BTreeMap<_, _> = [(key, vs(key, &[other]))].into();
    node.sync(&remaining);
    let saved = sh("ipvsadm -Sn");
    assert!(saved.contains(&format!("-r {backend} -m -w 0")), "{saved}");
    assert_eq!(node.ipvs.draining().len(), 1);
    assert_eq!(echo(&mut conn, b"while draining"), b"while draining");
    for _ in 0..3 {
        let mut fresh = connect("10.96.1.10:80");
        assert_eq!(echo(&mut fresh, b"x"), b"x");
    }
    let listing = sh("ipvsadm -Ln");
    assert!(listing.contains(other), "{listing}");

    // Within the bound and still connected: kept.
    let (_, dummy) = node.addrs.current().unwrap();
    let nodes = node.addrs.node_addresses().unwrap();
    node.ipvs
        .process_drains(&remaining, &dummy, &nodes, Instant::now())
        .unwrap();
    assert!(sh("ipvsadm -Sn").contains(backend));
    // Past the bound: deleted, connections or not (kube-proxy would wait forever).
    std::thread::sleep(grace + Duration::from_millis(200));
    node.ipvs
        .process_drains(&remaining, &dummy, &nodes, Instant::now())
        .unwrap();
    let saved = sh("ipvsadm -Sn");
    assert!(!saved.contains(backend), "{saved}");
    assert!(node.ipvs.draining().is_empty());

    // The other endpoint's closed connections linger in TIME_WAIT (inactive),
    // so removing it drains too rather than cutting them.
    let none: BTreeMap<_, _> = [(key, vs(key, &[]))].into();
    node.sync(&none);
    assert!(sh("ipvsadm -Sn").contains(&format!("-r {other} -m -w 0")));
    // An endpoint that never had a connection goes at once.
    let idle = ServiceKey::tcp(sa("10.96.1.11:80"));
    let with_idle: BTreeMap<_, _> =
        [(key, vs(key, &[])), (idle, vs(idle, &["10.244.11.2:9999"]))].into();
    node.sync(&with_idle);
    assert!(sh("ipvsadm -Sn").contains("-r 10.244.11.2:9999"));
    let without: BTreeMap<_, _> = [(key, vs(key, &[])), (idle, vs(idle, &[]))].into();
    node.sync(&without);
    assert!(!sh("ipvsadm -Sn").contains("10.244.11.2:9999"));
    sh("ip netns del pod11 && ip netns del pod12");
}
