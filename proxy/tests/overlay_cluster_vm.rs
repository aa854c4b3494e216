//! The overlay on the real control plane, in the IPVS VM: three simulated
//! nodes (network namespaces on an underlay bridge, Nodes registered and
//! kept Ready by node agents, podCIDRs from node IPAM), each running the
//! real `sluice-proxy` binary with `--overlay-config` on the chart's own
//! ServiceAccount token (the chart's RBAC applied to the API server). The
//! proxies publish their VTEPs through `nodes/status` and program each other
//! from what they read back; pods on different nodes talk over the tunnel.
//! Finally the audit log judges the chart's RBAC both ways for the proxy:
//! no request refused, no grant unused.

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use sluice_tests::cluster::{self, chart};
use sluice_tests::netns::{Netns, ask, echo_server, sh, spawn_in_netns};
use sluice_tests::node_agent::{NodeAgent, NodeConfig};

#[test]
fn in_the_ipvs_vm() {
    if !chart::available_or_skip("overlay on the real control plane") {
        return;
    }
    cluster::run_guest_tests("guest_");
}

const UNDERLAY: &str = "ovu";
const PROXY_SA: &str = "system:serviceaccount:kube-system:sluice-proxy";

fn node_ns(i: u8) -> String {
    format!("ovn{i}")
}

fn node_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 90, 10 + i)
}

/// The VM's side of the underlay: a bridge the nodes hang on, routed and
/// masqueraded to the VM's uplink so the nodes reach the API server (the
/// host's loopback, through qemu's user network).
fn underlay() {
    sh(&format!(
        "ip link add {UNDERLAY} type bridge && ip addr add 192.168.90.1/24 dev {UNDERLAY} && \
         ip link set {UNDERLAY} up && sysctl -qw net.ipv4.ip_forward=1 && \
         iptables -t nat -A POSTROUTING -s 192.168.90.0/24 -o eth0 -j MASQUERADE"
    ));
}

/// Node `i`: its namespace on the underlay, `cni0` with the podCIDR's
/// first address, one pod with the second running a line echo.
fn node_network(i: u8, cidr: ipnet::Ipv4Net) -> Vec<Netns> {
    let (n, p) = (node_ns(i), format!("ovp{i}"));
    let ns = vec![Netns::new(&n), Netns::new(&p)];
    let gw = Ipv4Addr::from(u32::from(cidr.network()) + 1);
    let pod = Ipv4Addr::from(u32::from(cidr.network()) + 2);
    let len = cidr.prefix_len();
    sh(&format!(
        "ip link add ovs{i} type veth peer name eth0 netns {n} && \
         ip link set ovs{i} master {UNDERLAY} up && \
         ip -n {n} addr add {ip}/24 dev eth0 && ip -n {n} link set eth0 up && \
         ip -n {n} route add default via 192.168.90.1 && \
         ip netns exec {n} sysctl -qw net.ipv4.ip_forward=1 && \
         ip -n {n} link add cni0 type bridge && ip -n {n} addr add {gw}/{len} dev cni0 && \
         ip -n {n} link set cni0 up && \
         ip -n {n} link add veth0 type veth peer name eth0 netns {p} && \
         ip -n {n} link set veth0 master cni0 up && \
         ip -n {p} addr add {pod}/{len} dev eth0 && ip -n {p} link set eth0 up && \
         ip -n {p} route add default via {gw}",
        ip = node_ip(i)
    ));
    echo_server(&p, 7000, &format!("pod{i}"));
    ns
}

struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        // SAFETY: SIGTERM to our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn start_proxy(i: u8, kubeconfig: &std::path::Path, dir: &std::path::Path) -> Proxy {
    let conf = dir.join("net-conf.json");
    Proxy(
        Command::new("ip")
            .args(["netns", "exec", &node_ns(i)])
            .arg(env!("CARGO_BIN_EXE_sluice-proxy"))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--hostname-override", &node_ns(i)])
            .args(["--healthz-bind-address", "", "--metrics-bind-address", ""])
            .arg("--overlay-config")
            .arg(&conf)
            .args(["--overlay-iface", "eth0"])
            .arg("--overlay-subnet-file")
            .arg(dir.join(format!("{}-subnet.env", node_ns(i))))
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sluice-proxy"),
    )
}

fn routes(i: u8) -> String {
    sh(&format!("ip -n {} route show", node_ns(i)))
}

/// From pod `from`, one line to pod address `to`: the echo's reply.
fn tcp_from(from: u8, to: Ipv4Addr) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    spawn_in_netns(&format!("ovp{from}"), move || {
        let addr = std::net::SocketAddr::from((to, 7000));
        let reply = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))
            .map(|mut c| ask(&mut c, "hello"))
            .unwrap_or_else(|e| format!("connect failed: {e}"));
        tx.send(reply).unwrap();
    })
    .join()
    .unwrap();
    rx.recv().unwrap()
}

fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the IPVS VM"]
async fn guest_three_proxies_build_the_overlay_through_nodes_status_with_the_chart_s_rbac() {
    sluice_tests::vm::assert_in_vm();
    let c = cluster::shared();
    let rendered = chart::render_variant("overlay").unwrap();
    c.apply_yaml(&chart::rbac_only(&rendered).unwrap()).unwrap();
    let kubeconfig = c
        .kubeconfig_for_service_account("kube-system", "sluice-proxy")
        .unwrap();
    let dir = std::env::temp_dir().join("sluice-overlay-cluster");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("net-conf.json"),
        format!(
            r#"{{"Network":"{}","Backend":{{"Type":"vxlan"}}}}"#,
            c.config().cluster_cidr
        ),
    )
    .unwrap();

    underlay();
    let mut agents = Vec::new();
    let mut nets = Vec::new();
    let mut pods = Vec::new();
    for i in 1..=3u8 {
        let mut cfg = NodeConfig::new(&node_ns(i));
        cfg.address = Some(node_ip(i));
        cfg.pods = false;
        let agent = NodeAgent::start_with(c, cfg).unwrap();
        nets.push(node_network(i, agent.pod_cidr()));
        pods.push(Ipv4Addr::from(u32::from(agent.pod_cidr().network()) + 2));
        agents.push(agent);
    }
    // A node whose overlay annotations are malformed: every proxy skips
    // it with a Warning Event (and keeps programming the others).
    c.apply_yaml(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: ovbad\n  annotations:\n    \
         flannel.alpha.coreos.com/backend-type: vxlan\n    \
         flannel.alpha.coreos.com/backend-data: '{\"VNI\":1,\"VtepMAC\":\"not-a-mac\"}'\n    \
         flannel.alpha.coreos.com/kube-subnet-manager: 'true'\n    \
         flannel.alpha.coreos.com/public-ip: 192.168.90.99\n",
    )
    .unwrap();
    let mut proxies: Vec<Option<Proxy>> = (1..=3u8)
        .map(|i| Some(start_proxy(i, &kubeconfig, &dir)))
        .collect();

    // Every node routes every other node's podCIDR over flannel.1.
    let cidrs: Vec<String> = agents.iter().map(|a| a.pod_cidr().to_string()).collect();
    for i in 1..=3u8 {
        wait_until(
            &format!("node {i}'s routes"),
            Duration::from_secs(90),
            || {
                let r = routes(i);
                cidrs
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j + 1 != i as usize)
                    .all(|(_, cidr)| {
                        r.contains(&format!("{cidr} via")) && r.contains("dev flannel.1 onlink")
                    })
            },
        );
    }
    // What they published, read back through the API server.
    let client = c.client().await;
    let nodes: Api<Node> = Api::all(client);
    for i in 1..=3u8 {
        let n = nodes.get(&node_ns(i)).await.unwrap();
        let ann = n.metadata.annotations.unwrap_or_default();
        assert_eq!(
            ann.get("flannel.alpha.coreos.com/public-ip")
                .map(String::as_str),
            Some(node_ip(i).to_string().as_str()),
            "{ann:?}"
        );
        assert_eq!(
            ann.get("flannel.alpha.coreos.com/backend-type")
                .map(String::as_str),
            Some("vxlan")
        );
        let data = ann
            .get("flannel.alpha.coreos.com/backend-data")
            .expect("backend-data");
        let mac = serde_json::from_str::<serde_json::Value>(data).unwrap()["VtepMAC"]
            .as_str()
            .unwrap()
            .to_owned();
        let link = sh(&format!("ip -n {} link show flannel.1", node_ns(i)));
        assert!(
            link.contains(&mac),
            "published MAC {mac} is the device's: {link}"
        );
        let unavailable = n
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "NetworkUnavailable");
        assert_eq!(unavailable.map(|c| c.status).as_deref(), Some("False"));
    }
    // The malformed node: a Warning Event about it, from the proxies.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(c.client().await);
    let start = Instant::now();
    loop {
        let warned = events
            .list(&Default::default())
            .await
            .unwrap()
            .into_iter()
            .any(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("ovbad")
            });
        if warned {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no Warning Event about node ovbad"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Pod to pod across nodes, without masquerading.
    for (from, to) in [(1u8, 2u8), (2, 3), (3, 1)] {
        let reply = tcp_from(from, pods[to as usize - 1]);
        assert_eq!(
            reply,
            format!("pod{to} {} hello", pods[from as usize - 1]),
            "pod{from} -> pod{to}"
        );
    }

    // Node 3 leaves: its proxy stops and its Node is deleted; the others
    // drop its entries.
    proxies[2] = None;
    drop(agents.pop());
    for i in 1..=2u8 {
        wait_until(
            &format!("node 3's route gone from node {i}"),
            Duration::from_secs(60),
            || !routes(i).contains(&format!("{} via", cidrs[2])),
        );
    }
    assert!(tcp_from(1, pods[1]).starts_with("pod2 "));
    drop(proxies);

    // The chart's RBAC, judged by the audit log.
    let grants = chart::grants_for(&rendered, "kube-system", "sluice-proxy").unwrap();
    let events = c.audit_events().unwrap();
    let report = chart::check_privilege(&grants, &events, PROXY_SA);
    assert!(report.refused.is_empty(), "refused: {:#?}", report.refused);
    let unused: Vec<String> = report.unused.iter().map(ToString::to_string).collect();
    assert!(
        unused.is_empty(),
        "the chart grants what the proxy never used: {unused:#?}"
    );
    let client = c.client().await;
    let _ = Api::<Node>::all(client)
        .delete("ovbad", &Default::default())
        .await;
    drop(nets);
}
