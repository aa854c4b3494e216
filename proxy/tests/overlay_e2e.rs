//! The overlay end to end on the host kernel: three "nodes" (network
//! namespaces on an underlay bridge), each with a `cni0` bridge and two
//! "pod" namespaces, Nodes in a real API server (`sluice_tests::cluster`,
//! one cluster per test: the Nodes get fixed names and podCIDRs), one overlay instance per
//! node (the real rtnetlink kernel side opened inside the node's namespace,
//! iptables run there). What the kernel holds is read back with `ip` and
//! `bridge`; traffic is real ICMP and TCP.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use serde_json::json;
use sluice_proxy::netfilter::SystemRunner;
use sluice_proxy::overlay::config::parse_net_conf;
use sluice_proxy::overlay::dataplane::SystemDataplane;
use sluice_proxy::overlay::nodes::{NodeEvent, watch_nodes};
use sluice_proxy::overlay::run::{OverlayOptions, run};
use sluice_tests::cluster::{self, Cluster};
use sluice_tests::netns::{Netns, ask, echo_server, sh, spawn_in_netns};
use tokio::sync::mpsc;

const VXLAN_CONF: &str = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#;
const DIRECT_CONF: &str =
    r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}"#;

fn node_ns(i: u8) -> String {
    format!("ovc-n{i}")
}

fn node_ip(i: u8) -> String {
    format!("192.168.77.{}", 10 + i)
}

fn pod_ns(i: u8, p: char) -> String {
    format!("ovc-p{i}{p}")
}

fn pod_ip(i: u8, p: char) -> String {
    format!("10.244.{i}.{}", if p == 'a' { 2 } else { 3 })
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// One ICMP echo from namespace `from` to `to` over a raw socket (no
/// `ping` binary needed): true when the matching reply comes back from
/// `to` within two seconds; three tries.
fn ping(from: &str, to: &str) -> bool {
    let dst: std::net::Ipv4Addr = to.parse().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    spawn_in_netns(from, move || {
        // SAFETY: plain socket calls on a descriptor this closure owns and
        // closes; buffers outlive the calls.
        let ok = unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP);
            assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 200_000,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as u16;
            addr.sin_addr.s_addr = u32::from(dst).to_be();
            let id = (std::process::id() as u16) ^ 0x5a5a;
            let mut got = false;
            'tries: for seq in 1..=3u16 {
                let mut pkt = vec![8u8, 0, 0, 0];
                pkt.extend(id.to_be_bytes());
                pkt.extend(seq.to_be_bytes());
                pkt.extend(b"sluice-overlay-e2e");
                let c = checksum(&pkt);
                pkt[2..4].copy_from_slice(&c.to_be_bytes());
                libc::sendto(
                    fd,
                    pkt.as_ptr().cast(),
                    pkt.len(),
                    0,
                    (&addr as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as u32,
                );
                let until = std::time::Instant::now() + Duration::from_millis(700);
                while std::time::Instant::now() < until {
                    let mut buf = [0u8; 1500];
                    let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
                    if n < 20 {
                        continue;
                    }
                    let ihl = usize::from(buf[0] & 0x0f) * 4;
                    let n = n as usize;
                    let src = std::net::Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
                    if n >= ihl + 8
                        && buf[ihl] == 0
                        && buf[ihl + 4..ihl + 6] == id.to_be_bytes()
                        && src == dst
                    {
                        got = true;
                        break 'tries;
                    }
                }
            }
            libc::close(fd);
            got
        };
        tx.send(ok).unwrap();
    })
    .join()
    .unwrap();
    rx.recv().unwrap()
}

/// The test network. Dropping it deletes every namespace.
struct Lab {
    _ns: Vec<Netns>,
}

fn lab() -> Lab {
    let mut ns = vec![Netns::new("ovc-sw"), Netns::new("ovc-ext")];
    sh("ip -n ovc-sw link add br0 type bridge && ip -n ovc-sw link set br0 up");
    // The "external" host, on the underlay.
    sh(
        "ip link add ovc-ext0 type veth peer name eth0 netns ovc-ext && \
        ip link set ovc-ext0 netns ovc-sw && \
        ip -n ovc-sw link set ovc-ext0 master br0 up && \
        ip -n ovc-ext addr add 192.168.77.100/24 dev eth0 && ip -n ovc-ext link set eth0 up",
    );
    for i in 1..=3u8 {
        let n = node_ns(i);
        ns.push(Netns::new(&n));
        sh(&format!(
            "ip link add ovc-sw{i} type veth peer name eth0 netns {n} && \
             ip link set ovc-sw{i} netns ovc-sw && \
             ip -n ovc-sw link set ovc-sw{i} master br0 up && \
             ip -n {n} addr add {}/24 dev eth0 && ip -n {n} link set eth0 up && \
             ip -n {n} link add cni0 type bridge && \
             ip -n {n} addr add 10.244.{i}.1/24 dev cni0 && ip -n {n} link set cni0 up && \
             ip netns exec {n} sysctl -qw net.ipv4.ip_forward=1",
            node_ip(i)
        ));
        for p in ['a', 'b'] {
            let pn = pod_ns(i, p);
            ns.push(Netns::new(&pn));
            sh(&format!(
                "ip -n {n} link add veth{p} type veth peer name eth0 netns {pn} && \
                 ip -n {n} link set veth{p} master cni0 up && \
                 ip -n {pn} addr add {}/24 dev eth0 && ip -n {pn} link set eth0 up && \
                 ip -n {pn} route add default via 10.244.{i}.1",
                pod_ip(i, p)
            ));
        }
    }
    Lab { _ns: ns }
}

/// The VTEP MAC of the hand-made flannel node.
const FLANNEL_MAC: &str = "2a:66:6c:61:6e:04";

/// Node 4 as flanneld's vxlan backend leaves it, made with `ip`/`bridge`
/// (what flannel's netlink calls amount to): `flannel.1` with its MAC and
/// `.0/32`, a pod behind `cni0`, and the entries for node 1 (neighbour, FDB,
/// onlink route, in flannel's order).
fn flannel_node(node1_mac: &str) -> Vec<Netns> {
    let (n, p) = ("ovc-n4", "ovc-p4a");
    let ns = vec![Netns::new(n), Netns::new(p)];
    sh(&format!(
        "ip link add ovc-sw4 type veth peer name eth0 netns {n} && \
         ip link set ovc-sw4 netns ovc-sw && ip -n ovc-sw link set ovc-sw4 master br0 up && \
         ip -n {n} addr add {ip4}/24 dev eth0 && ip -n {n} link set eth0 up && \
         ip netns exec {n} sysctl -qw net.ipv4.ip_forward=1 && \
         ip -n {n} link add flannel.1 address {FLANNEL_MAC} type vxlan id 1 local {ip4} dev eth0 dstport 8472 nolearning && \
         ip -n {n} link set flannel.1 mtu 1450 up && ip -n {n} addr add 10.244.4.0/32 dev flannel.1 && \
         ip -n {n} link add cni0 type bridge && ip -n {n} addr add 10.244.4.1/24 dev cni0 && ip -n {n} link set cni0 up && \
         ip -n {n} link add vetha type veth peer name eth0 netns {p} && ip -n {n} link set vetha master cni0 up && \
         ip -n {p} addr add 10.244.4.2/24 dev eth0 && ip -n {p} link set eth0 up && \
         ip -n {p} route add default via 10.244.4.1 && \
         ip -n {n} neigh replace 10.244.1.0 lladdr {node1_mac} dev flannel.1 nud permanent && \
         bridge -n {n} fdb append {node1_mac} dst {ip1} dev flannel.1 self permanent && \
         ip -n {n} route replace 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink",
        ip4 = node_ip(4),
        ip1 = node_ip(1),
    ));
    ns
}

fn node_object(i: u8) -> serde_json::Value {
    let cidr = format!("10.244.{i}.0/24");
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": format!("node{i}")},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
    })
}

/// Starts node `i`'s overlay: kernel side opened in its namespace, the
/// API client and the loop in the test's.
fn start(client: kube::Client, i: u8, conf: &str) -> tokio::task::JoinHandle<()> {
    let ns = node_ns(i);
    let dataplane = SystemDataplane::open_in_netns(Path::new(&format!("/run/netns/{ns}"))).unwrap();
    let runner = SystemRunner::in_netns(&ns).unwrap();
    let opts = OverlayOptions {
        conf: parse_net_conf(conf).unwrap(),
        node_name: format!("node{i}"),
        iface: Some("eth0".into()),
        public_ip: None,
        subnet_file: std::env::temp_dir()
            .join(format!("ovc-{}/node{i}/subnet.env", std::process::id())),
        cni_conflist: None,
        ip_masq: true,
        masquerade_mark: 0x4000,
        resync_period: Duration::from_secs(300),
    };
    tokio::spawn(async move {
        let (tx, rx) = mpsc::channel::<NodeEvent>(256);
        let watch = tokio::spawn(watch_nodes(client.clone(), tx));
        let _ = run(opts, Some(client), rx, dataplane, runner).await;
        watch.abort();
    })
}

/// The test's own real control plane.
struct Api(Cluster);

impl Api {
    fn start() -> Option<Api> {
        if !cluster::available_or_skip("the overlay on the real API server") {
            return None;
        }
        Some(Api(Cluster::start().unwrap()))
    }

    fn apply(&self, obj: &serde_json::Value) {
        self.0.apply_yaml(&obj.to_string()).unwrap();
    }

    async fn client(&self) -> kube::Client {
        self.0.client().await
    }

    /// The Node as the API server has it now (blocking: the callers poll
    /// from synchronous conditions).
    fn node(&self, name: &str) -> Option<Node> {
        let (kc, name) = (self.0.admin_kubeconfig().to_owned(), name.to_owned());
        cluster::block_on(async move {
            let c = cluster::client_from(&kc).await.ok()?;
            kube::Api::<Node>::all(c).get_opt(&name).await.ok()?
        })
    }

    fn delete_node(&self, name: &str) {
        let (kc, name) = (self.0.admin_kubeconfig().to_owned(), name.to_owned());
        cluster::block_on(async move {
            let c = cluster::client_from(&kc).await.unwrap();
            kube::Api::<Node>::all(c)
                .delete(&name, &Default::default())
                .await
                .unwrap();
        });
    }
}

fn vtep_mac(api: &Api, i: u8) -> Option<String> {
    let n = api.node(&format!("node{i}"))?;
    let data = n
        .metadata
        .annotations?
        .get("flannel.alpha.coreos.com/backend-data")?
        .clone();
    let v: serde_json::Value = serde_json::from_str(&data).ok()?;
    v["VtepMAC"].as_str().map(str::to_owned)
}

async fn wait(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn routes(i: u8) -> String {
    sh(&format!("ip -n {} route show", node_ns(i)))
}

fn neighbours(i: u8) -> String {
    sh(&format!("ip -n {} neigh show dev flannel.1", node_ns(i)))
}

fn fdb(i: u8) -> String {
    sh(&format!("bridge -n {} fdb show dev flannel.1", node_ns(i)))
}

/// Node `i` reaches every other node's pods through the tunnel.
fn programmed(i: u8, others: &[u8]) -> bool {
    let r = routes(i);
    others.iter().all(|o| {
        r.contains(&format!(
            "10.244.{o}.0/24 via 10.244.{o}.0 dev flannel.1 onlink"
        ))
    })
}

fn tcp_from(pod: &str, to: &str, port: u16) -> String {
    let to = to.to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    spawn_in_netns(pod, move || {
        let addr: std::net::SocketAddr = format!("{to}:{port}").parse().unwrap();
        let reply = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))
            .map(|mut c| ask(&mut c, "hello"))
            .unwrap_or_else(|e| format!("connect failed: {e}"));
        tx.send(reply).unwrap();
    })
    .join()
    .unwrap();
    rx.recv().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_route_pod_traffic_like_flannel() {
    let _lab = lab();
    let Some(api) = Api::start() else { return };
    for i in 1..=3 {
        api.apply(&node_object(i));
    }
    let started = std::time::Instant::now();
    let mut tasks: Vec<Option<tokio::task::JoinHandle<()>>> = {
        let client = api.client().await;
        (1..=3)
            .map(|i| Some(start(client.clone(), i, VXLAN_CONF)))
            .collect()
    };

    wait("every node programmed", 30, || {
        programmed(1, &[2, 3]) && programmed(2, &[1, 3]) && programmed(3, &[1, 2])
    })
    .await;
    eprintln!("three nodes programmed in {:?}", started.elapsed());
    let macs: Vec<String> = (1..=3).map(|i| vtep_mac(&api, i).unwrap()).collect();
    // What flannel would have: device, neighbour, FDB entry, onlink route.
    let link = sh("ip -n ovc-n1 -d link show flannel.1");
    assert!(link.contains(&format!("link/ether {}", macs[0])), "{link}");
    assert!(
        link.contains("vxlan id 1") && link.contains("dstport 8472") && link.contains("nolearning"),
        "{link}"
    );
    assert!(link.contains("mtu 1450"), "{link}");
    assert!(sh("ip -n ovc-n1 addr show dev flannel.1").contains("inet 10.244.1.0/32"));
    let neigh = neighbours(1);
    assert!(
        neigh.contains(&format!("10.244.2.0 lladdr {} PERMANENT", macs[1])),
        "{neigh}"
    );
    let f = fdb(1);
    assert!(
        f.contains(&format!("{} dst {} self permanent", macs[1], node_ip(2))),
        "{f}"
    );
    assert!(
        f.contains(&format!("{} dst {} self permanent", macs[2], node_ip(3))),
        "{f}"
    );

    // Pod to pod across nodes: ICMP both ways, TCP with the pod's own
    // address as the source (no NAT inside the cluster network).
    assert!(ping(&pod_ns(1, 'a'), &pod_ip(2, 'a')));
    assert!(ping(&pod_ns(3, 'b'), &pod_ip(1, 'b')));
    assert!(ping(&pod_ns(2, 'b'), &pod_ip(3, 'a')));
    echo_server(&pod_ns(2, 'a'), 7000, "p2a");
    assert_eq!(
        tcp_from(&pod_ns(1, 'a'), &pod_ip(2, 'a'), 7000),
        "p2a 10.244.1.2 hello"
    );
    // Pod to node (another node's underlay address, and its own node).
    assert!(ping(&pod_ns(1, 'a'), &node_ip(2)));
    assert!(ping(&pod_ns(1, 'b'), &node_ip(1)));
    // Pod to the outside: masqueraded to the node's address.
    echo_server("ovc-ext", 7001, "ext");
    assert_eq!(
        tcp_from(&pod_ns(1, 'a'), "192.168.77.100", 7001),
        format!("ext {} hello", node_ip(1))
    );
    let nat = sh("ip netns exec ovc-n1 iptables-save -t nat");
    assert!(
        nat.contains("-A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG"),
        "{nat}"
    );

    // Interop: node 4 is set up by hand exactly as flanneld would set it
    // up, and announces itself with flannel's annotation text. Sluice nodes
    // program it and pod traffic flows both ways.
    let _flannel_ns = flannel_node(&macs[0]);
    api.apply(&json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "flannel4", "annotations": {
            "flannel.alpha.coreos.com/backend-data": format!("{{\"VNI\":1,\"VtepMAC\":\"{FLANNEL_MAC}\"}}"),
            "flannel.alpha.coreos.com/backend-type": "vxlan",
            "flannel.alpha.coreos.com/kube-subnet-manager": "true",
            "flannel.alpha.coreos.com/public-ip": node_ip(4),
        }},
        "spec": {"podCIDR": "10.244.4.0/24", "podCIDRs": ["10.244.4.0/24"]},
    }));
    wait("the flannel node programmed on node1", 20, || {
        routes(1).contains("10.244.4.0/24 via 10.244.4.0 dev flannel.1 onlink")
            && fdb(1).contains(&format!("{FLANNEL_MAC} dst {} self permanent", node_ip(4)))
    })
    .await;
    assert!(ping(&pod_ns(1, 'a'), "10.244.4.2"));
    assert!(ping("ovc-p4a", &pod_ip(1, 'b')));

    // A remote with malformed annotations is skipped; the others keep
    // working.
    api.apply(&json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "broken", "annotations": {
            "flannel.alpha.coreos.com/backend-data": "{\"VNI\":1,\"VtepMAC\":\"zz:zz\"}",
            "flannel.alpha.coreos.com/backend-type": "vxlan",
            "flannel.alpha.coreos.com/kube-subnet-manager": "true",
            "flannel.alpha.coreos.com/public-ip": "192.168.77.99",
        }},
        "spec": {"podCIDR": "10.244.9.0/24", "podCIDRs": ["10.244.9.0/24"]},
    }));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!routes(1).contains("10.244.9.0/24"), "{}", routes(1));
    assert!(ping(&pod_ns(1, 'b'), &pod_ip(3, 'a')));

    // Node removal: its route, FDB entry and neighbour go on every node.
    tasks[2].take().unwrap().abort();
    let removed = std::time::Instant::now();
    api.delete_node("node3");
    wait("node3's entries gone on node1 and node2", 20, || {
        [1u8, 2].iter().all(|&i| {
            !routes(i).contains("10.244.3.0/24")
                && !neighbours(i).contains("10.244.3.0")
                && !fdb(i).contains(&macs[2])
        })
    })
    .await;
    eprintln!("node removal cleaned up in {:?}", removed.elapsed());
    assert!(!ping(&pod_ns(1, 'a'), &pod_ip(3, 'a')));
    assert!(
        ping(&pod_ns(1, 'a'), &pod_ip(2, 'a')),
        "the others keep working"
    );

    // Re-added with a new MAC (a rebuilt node: fresh device, no annotation).
    sh("ip -n ovc-n3 link del flannel.1");
    api.apply(&node_object(3));
    tasks[2] = Some(start(api.client().await, 3, VXLAN_CONF));
    wait("node3 back with a new MAC", 30, || {
        vtep_mac(&api, 3).is_some_and(|m| m != macs[2]) && programmed(1, &[2, 3])
    })
    .await;
    let new_mac = vtep_mac(&api, 3).unwrap();
    wait("node1's FDB and neighbour follow the new MAC", 20, || {
        let f = fdb(1);
        f.contains(&format!("{new_mac} dst {} self permanent", node_ip(3)))
            && !f.contains(&macs[2])
            && neighbours(1).contains(&format!("10.244.3.0 lladdr {new_mac} PERMANENT"))
    })
    .await;
    wait("pod traffic to the re-added node", 20, || {
        ping(&pod_ns(1, 'a'), &pod_ip(3, 'b'))
    })
    .await;

    // Restart keeps the MAC (from the node's own annotation) and the
    // device; entries of a node that went away while we were down (here
    // planted by hand) are removed at startup.
    let index_before = sh("ip -n ovc-n2 -o link show flannel.1");
    tasks[1].take().unwrap().abort();
    sh(
        "ip -n ovc-n2 neigh replace 10.244.50.0 lladdr 2a:00:00:00:00:50 dev flannel.1 nud permanent && \
        bridge -n ovc-n2 fdb append 2a:00:00:00:00:50 dst 192.168.77.50 dev flannel.1 self permanent && \
        ip -n ovc-n2 route add 10.244.50.0/24 via 10.244.50.0 dev flannel.1 onlink",
    );
    assert!(routes(2).contains("10.244.50.0/24"));
    tasks[1] = Some(start(api.client().await, 2, VXLAN_CONF));
    wait("stale entries removed at startup", 20, || {
        !routes(2).contains("10.244.50.0/24")
            && !neighbours(2).contains("10.244.50.0")
            && !fdb(2).contains("2a:00:00:00:00:50")
    })
    .await;
    assert_eq!(vtep_mac(&api, 2).unwrap(), macs[1]);
    let index_after = sh("ip -n ovc-n2 -o link show flannel.1");
    assert_eq!(
        index_before.split(':').next(),
        index_after.split(':').next(),
        "same device (not recreated)"
    );
    assert!(index_after.contains(&macs[1]));
    assert!(ping(&pod_ns(3, 'a'), &pod_ip(2, 'b')));

    // DirectRouting on node1: the other nodes share its L2 segment, so
    // their subnets are routed over eth0 with no neighbour or FDB entry.
    tasks[0].take().unwrap().abort();
    tasks[0] = Some(start(api.client().await, 1, DIRECT_CONF));
    wait("direct routes on node1", 20, || {
        let r = routes(1);
        r.contains(&format!("10.244.2.0/24 via {} dev eth0", node_ip(2)))
            && r.contains(&format!("10.244.3.0/24 via {} dev eth0", node_ip(3)))
            && !neighbours(1).contains("10.244.2.0")
            && !fdb(1).contains(&macs[1])
    })
    .await;
    assert!(ping(&pod_ns(1, 'a'), &pod_ip(2, 'a')));
    assert_eq!(
        tcp_from(&pod_ns(1, 'b'), &pod_ip(2, 'a'), 7000),
        "p2a 10.244.1.3 hello"
    );

    for t in tasks.into_iter().flatten() {
        t.abort();
    }
}

/// Dual stack: two nodes with IPv4 and IPv6 underlay addresses and pod
/// subnets; `flannel.1` and `flannel-v6.1` on each; TCP between pods over
/// both families (the pod's own address seen on the other side).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_stack_pods_reach_each_other_over_both_families() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    const CONF: &str = r#"{"Network":"10.244.0.0/16","IPv6Network":"fd00:10:244::/48","EnableIPv6":true,"Backend":{"Type":"vxlan"}}"#;
    let mut keep = vec![Netns::new("ovd-sw")];
    sh("ip -n ovd-sw link add br0 type bridge && ip -n ovd-sw link set br0 up");
    for i in 1..=2u8 {
        let (n, p) = (format!("ovd-n{i}"), format!("ovd-p{i}"));
        keep.push(Netns::new(&n));
        keep.push(Netns::new(&p));
        sh(&format!(
            "ip link add ovd-sw{i} type veth peer name eth0 netns {n} && \
             ip link set ovd-sw{i} netns ovd-sw && ip -n ovd-sw link set ovd-sw{i} master br0 up && \
             ip -n {n} addr add 192.168.78.{i}/24 dev eth0 && ip -n {n} addr add fd78::{i}/64 dev eth0 nodad && \
             ip -n {n} link set eth0 up && \
             ip netns exec {n} sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 && \
             ip -n {n} link add cni0 type bridge && ip -n {n} link set cni0 up && \
             ip -n {n} addr add 10.244.{i}.1/24 dev cni0 && ip -n {n} addr add fd00:10:244:{i}::1/64 dev cni0 nodad && \
             ip -n {n} link add veth type veth peer name eth0 netns {p} && ip -n {n} link set veth master cni0 up && \
             ip -n {p} link set eth0 up && \
             ip -n {p} addr add 10.244.{i}.2/24 dev eth0 && ip -n {p} addr add fd00:10:244:{i}::2/64 dev eth0 nodad && \
             ip -n {p} route add default via 10.244.{i}.1 && ip -n {p} -6 route add default via fd00:10:244:{i}::1"
        ));
    }
    let Some(api) = Api::start() else { return };
    let mut tasks = Vec::new();
    for i in 1..=2u8 {
        let (v4, v6) = (format!("10.244.{i}.0/24"), format!("fd00:10:244:{i}::/64"));
        api.apply(&json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": format!("node{i}")},
            "spec": {"podCIDR": v4, "podCIDRs": [v4, v6]},
        }));
    }
    for i in 1..=2u8 {
        let ns = format!("ovd-n{i}");
        let dataplane =
            SystemDataplane::open_in_netns(Path::new(&format!("/run/netns/{ns}"))).unwrap();
        let runner = SystemRunner::in_netns(&ns).unwrap();
        let opts = OverlayOptions {
            conf: parse_net_conf(CONF).unwrap(),
            node_name: format!("node{i}"),
            iface: Some("eth0".into()),
            public_ip: None,
            subnet_file: std::env::temp_dir()
                .join(format!("ovd-{}/node{i}/subnet.env", std::process::id())),
            cni_conflist: None,
            ip_masq: true,
            masquerade_mark: 0x4000,
            resync_period: Duration::from_secs(300),
        };
        let client = api.client().await;
        tasks.push(tokio::spawn(async move {
            let (tx, rx) = mpsc::channel::<NodeEvent>(256);
            let watch = tokio::spawn(watch_nodes(client.clone(), tx));
            let _ = run(opts, Some(client), rx, dataplane, runner).await;
            watch.abort();
        }));
    }
    wait("both families programmed on both nodes", 30, || {
        (1..=2u8).all(|i| {
            let o = 3 - i;
            let r4 = sh(&format!("ip -n ovd-n{i} route show"));
            let r6 = sh(&format!("ip -n ovd-n{i} -6 route show"));
            r4.contains(&format!(
                "10.244.{o}.0/24 via 10.244.{o}.0 dev flannel.1 onlink"
            )) && r6.contains(&format!(
                "fd00:10:244:{o}::/64 via fd00:10:244:{o}:: dev flannel-v6.1"
            ))
        })
    })
    .await;
    let node1 = api.node("node1").unwrap();
    let a = node1.metadata.annotations.unwrap();
    assert_eq!(a["flannel.alpha.coreos.com/public-ipv6"], "fd78::1");
    let v6data = &a["flannel.alpha.coreos.com/backend-v6-data"];
    assert!(v6data.starts_with("{\"VNI\":1,\"VtepMAC\":\""), "{v6data}");
    let fdb = sh("bridge -n ovd-n1 fdb show dev flannel-v6.1");
    assert!(fdb.contains("dst fd78::2 self permanent"), "{fdb}");
    assert!(sh("ip -n ovd-n1 -6 addr show dev flannel-v6.1").contains("fd00:10:244:1::/128"));

    echo_server("ovd-p2", 7100, "p2");
    assert_eq!(
        tcp_from("ovd-p1", "10.244.2.2", 7100),
        "p2 10.244.1.2 hello"
    );
    assert_eq!(
        tcp_from("ovd-p1", "[fd00:10:244:2::2]", 7100),
        "p2 fd00:10:244:1::2 hello"
    );
    for t in tasks {
        t.abort();
    }
    drop(keep);
}
