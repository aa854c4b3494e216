//! sluice-proxy end to end in the IPVS VM: the real binary, fed from a
//! manifest directory, programs ClusterIP and NodePort services in front of
//! "pod" namespaces; clients reach them; health and metrics answer; an
//! endpoint change lands; a restart changes nothing; `--cleanup` leaves
//! nothing of ours behind.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sluice_tests::netns::{ask, echo_server, pod, sh, spawn_in_netns};

#[test]
fn sluice_proxy_in_the_ipvs_vm() {
    sluice_tests::vm::run_guest_tests("guest_");
}

const MANIFESTS: &str = "/tmp/sluice-manifests";

fn write_manifests(endpoints: &[&str]) {
    let eps: Vec<String> = endpoints
        .iter()
        .map(|ip| {
            format!(
                "  - addresses: [\"{ip}\"]\n    conditions: {{ready: true}}\n    nodeName: node-1\n"
            )
        })
        .collect();
    let text = format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-1\n---\n\
         apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: shop\n\
         spec:\n  type: NodePort\n  clusterIP: 10.96.0.10\n  clusterIPs: [10.96.0.10]\n\
         \x20 ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n    nodePort: 30080\n    protocol: TCP\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-abc\n  namespace: shop\n\
         \x20 labels:\n    kubernetes.io/service-name: web\naddressType: IPv4\n\
         ports:\n- name: http\n  port: 8080\n  protocol: TCP\nendpoints:\n{}",
        eps.concat()
    );
    std::fs::create_dir_all(MANIFESTS).unwrap();
    // Write then rename, so the proxy never reads half a file.
    let tmp = format!("{MANIFESTS}/.web.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, format!("{MANIFESTS}/web.yaml")).unwrap();
}

fn start_proxy() -> Child {
    Command::new(env!("CARGO_BIN_EXE_sluice-proxy"))
        .args([
            "--manifests",
            MANIFESTS,
            "--hostname-override",
            "node-1",
            "--healthz-bind-address",
            "127.0.0.1:10256",
            "--metrics-bind-address",
            "127.0.0.1:10249",
            "--ipvs-min-sync-period",
            "0s",
        ])
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sluice-proxy")
}

fn stop(mut p: Child) {
    // SAFETY: sending SIGTERM to our own child.
    unsafe { libc::kill(p.id() as i32, libc::SIGTERM) };
    let _ = p.wait();
}

fn wait_until(what: &str, limit: Duration, cond: impl FnMut() -> bool) {
    sluice_tests::wait::wait_until(what, limit, Duration::from_millis(100), cond, String::new);
}

fn http_get(path: &str, port: u16) -> String {
    sluice_tests::fixtures::http_get(("127.0.0.1", port), path).unwrap()
}

fn connect(addr: &str) -> TcpStream {
    let c =
        TcpStream::connect_timeout(&addr.parse::<SocketAddr>().unwrap(), Duration::from_secs(5))
            .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c
}

#[test]
#[ignore = "runs inside the IPVS VM"]
fn guest_proxy_programs_serves_reacts_restarts_and_cleans_up() {
    // Two pods, a client namespace on a "node network" 192.168.50.0/24.
    let p1 = pod(21);
    let p2 = pod(22);
    echo_server(&p1, 8080, "pod21");
    echo_server(&p2, 8080, "pod22");
    sh(
        "ip netns add client && ip link add eth-node type veth peer name eth0 netns client && \
        ip addr add 192.168.50.10/24 dev eth-node && ip link set eth-node up && \
        ip -n client addr add 192.168.50.20/24 dev eth0 && ip -n client link set eth0 up && \
        ip -n client link set lo up && ip -n client route add default via 192.168.50.10",
    );
    write_manifests(&["10.244.21.2", "10.244.22.2"]);
    let proxy = start_proxy();
    wait_until(
        "the ClusterIP virtual server",
        Duration::from_secs(30),
        || sh("ipvsadm -Sn").contains("-a -t 10.96.0.10:80 -r 10.244.22.2:8080 -m -w 1"),
    );
    let saved = sh("ipvsadm -Sn");
    assert!(
        saved.contains("-A -t 192.168.50.10:30080 -s rr"),
        "NodePort on the node address: {saved}"
    );
    assert!(
        !saved.contains("127.0.0.1:30080"),
        "never on localhost: {saved}"
    );
    assert!(sh("ip -o addr show dev kube-ipvs0").contains("10.96.0.10/32"));
    assert_eq!(sh("cat /proc/sys/net/ipv4/vs/conntrack").trim(), "1");
    // Rules and sets follow the virtual servers within the same sync.
    wait_until("iptables rules and ipsets", Duration::from_secs(10), || {
        sh("iptables-save").lines().any(|l| {
            l.starts_with("-A KUBE-POSTROUTING") && l.contains("! --mark 0x4000/0x4000 -j RETURN")
        }) && sh("ipset list KUBE-CLUSTER-IP").contains("10.96.0.10,tcp:80")
    });

    // ClusterIP from the node: both pods answer over a few connections.
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..6 {
        let mut c = connect("10.96.0.10:80");
        let reply = ask(&mut c, &format!("hello {i}"));
        seen.insert(reply.split(' ').next().unwrap().to_owned());
    }
    assert_eq!(seen.len(), 2, "round robin over both pods: {seen:?}");

    // NodePort from an outside client: masqueraded, as kube-proxy does for
    // externalTrafficPolicy Cluster, so the pod sees a node address.
    let (tx, rx) = std::sync::mpsc::channel();
    spawn_in_netns("client", move || {
        let mut c = connect("192.168.50.10:30080");
        tx.send(ask(&mut c, "from outside")).unwrap();
    })
    .join()
    .unwrap();
    let reply = rx.recv().unwrap();
    let source = reply.split(' ').nth(1).unwrap_or_default().to_owned();
    assert!(reply.ends_with("from outside"), "{reply}");
    assert_ne!(
        source, "192.168.50.20",
        "the pod must see a masqueraded source: {reply}"
    );

    // Health and metrics.
    let healthz = http_get("/healthz", 10256);
    assert!(healthz.starts_with("HTTP/1.1 200"), "{healthz}");
    let metrics = http_get("/metrics", 10249);
    assert!(
        metrics.contains("kubeproxy_sync_proxy_rules_duration_seconds_count"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("kubeproxy_sync_proxy_rules_last_timestamp_seconds 0\n"),
        "{metrics}"
    );

    // An endpoint goes away: it leaves the table (or drains at weight 0 if
    // connections of it linger in TIME_WAIT).
    write_manifests(&["10.244.21.2"]);
    wait_until("the endpoint removal", Duration::from_secs(15), || {
        let s = sh("ipvsadm -Sn");
        !s.contains("-r 10.244.22.2:8080 -m -w 1")
    });
    for i in 0..3 {
        let mut c = connect("10.96.0.10:80");
        assert!(ask(&mut c, &format!("after {i}")).starts_with("pod21 "));
    }

    // Shutdown never flushes; a restart changes nothing that is right.
    stop(proxy);
    let before = sh("ipvsadm -Sn");
    assert!(
        before.contains("10.96.0.10:80"),
        "state kept after shutdown"
    );
    let mut kept = connect("10.96.0.10:80");
    assert!(ask(&mut kept, "before restart").starts_with("pod21 "));
    let proxy = start_proxy();
    wait_until(
        "the restarted proxy's health",
        Duration::from_secs(30),
        || {
            TcpStream::connect("127.0.0.1:10256").is_ok()
                && http_get("/healthz", 10256).contains("lastUpdated\": \"2")
        },
    );
    let after = sh("ipvsadm -Sn");
    let strip = |s: &str| -> Vec<String> {
        let mut v: Vec<String> = s
            .lines()
            .filter(|l| !l.contains("10.244.22.2"))
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    assert_eq!(strip(&after), strip(&before), "restart changed the table");
    assert!(
        ask(&mut kept, "after restart").starts_with("pod21 "),
        "connection survived"
    );
    stop(proxy);

    // --cleanup removes everything of ours and exits 0.
    let status = Command::new(env!("CARGO_BIN_EXE_sluice-proxy"))
        .arg("--cleanup")
        .status()
        .unwrap();
    assert!(status.success());
    assert!(!sh("ipvsadm -Sn").contains("10.96.0.10"));
    assert!(!sh("ipvsadm -Sn").contains("30080"));
    assert!(!sh("ip -o link").contains("kube-ipvs0"));
    assert!(
        !sh("iptables-save").contains("KUBE-"),
        "{}",
        sh("iptables-save")
    );
    assert!(!sh("ipset list -n").contains("KUBE-"));
}
