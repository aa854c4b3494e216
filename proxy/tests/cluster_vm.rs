//! sluice-proxy against the real control plane (`sluice_tests::cluster`):
//! Services and EndpointSlices written by the real API server and its
//! EndpointSlice controller for Deployments of process-backed pods (a node
//! agent in the IPVS VM), the proxy in the VM beside them.
//!
//! Observables: `ipvsadm -Sn`, `iptables-save`, `ipset save`, kube-ipvs0's
//! addresses, bytes through ClusterIPs, NodePorts and load-balancer IPs,
//! and the proxy's metrics. Each guest test uses its own namespace and node
//! and deletes the namespace at the end, so the next proxy starts from a
//! cluster without it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use sluice_tests::cluster::{self, Cluster, Component};
use sluice_tests::netns::sh;
use sluice_tests::node_agent::NodeAgent;

#[test]
fn in_the_ipvs_vm() {
    cluster::run_guest_tests("guest_");
}

/// The proxy binary, killed with SIGTERM when dropped; its log is kept in
/// a file for assertions.
struct Proxy {
    child: Child,
    log: std::path::PathBuf,
}

impl Proxy {
    fn start(kubeconfig: &std::path::Path, node: &str, extra: &[&str]) -> Proxy {
        let log = std::env::temp_dir().join(format!("sluice-proxy-{node}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice-proxy"))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args([
                "--hostname-override",
                node,
                "--healthz-bind-address",
                "127.0.0.1:10256",
                "--metrics-bind-address",
                "127.0.0.1:10249",
                "--ipvs-sync-period",
                "5s",
                "--ipvs-min-sync-period",
                "0s",
                "--graceful-termination-period",
                "2s",
            ])
            .args(extra)
            .env("RUST_LOG", "sluice_proxy=info,sluice_kube=info")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .expect("start sluice-proxy");
        Proxy { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.signal(libc::SIGTERM);
        let _ = self.child.wait();
    }
}

fn http_get(port: u16, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn metric(name: &str) -> f64 {
    http_get(10249, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// One line through a TCP service address: the answering pod's name.
fn ask_tcp(addr: SocketAddr) -> Result<String, String> {
    let mut c =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    c.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    c.write_all(b"ping\n").map_err(|e| e.to_string())?;
    let mut buf = [0u8; 256];
    let n = c.read(&mut buf).map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&buf[..n]).into_owned();
    line.split(' ')
        .next()
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| format!("odd reply {line:?}"))
}

/// One datagram through a UDP service address: the answering pod's name.
fn ask_udp(addr: SocketAddr) -> Result<String, String> {
    let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    s.send_to(b"ping", addr).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 256];
    let n = s.recv(&mut buf).map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&buf[..n]).into_owned();
    Ok(line.split(' ').next().unwrap_or_default().to_owned())
}

async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}\n{}",
            sh("ipvsadm -Sn")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Real servers (address:port) with weight > 0 of a TCP virtual server.
fn live_real_servers(vip: &str) -> Vec<String> {
    let mut out: Vec<String> = sh("ipvsadm -Sn")
        .lines()
        .filter(|l| l.starts_with(&format!("-a -t {vip} ")))
        .filter(|l| !l.ends_with(" -w 0"))
        .filter_map(|l| l.split(" -r ").nth(1)?.split(' ').next().map(str::to_owned))
        .collect();
    out.sort();
    out
}

async fn pod_ips(client: &kube::Client, ns: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut ips: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let st = p.status?;
            let ready = st
                .conditions?
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            ready.then_some(st.pod_ip?)
        })
        .collect();
    ips.sort();
    ips
}

async fn service(client: &kube::Client, ns: &str, name: &str) -> Service {
    Api::<Service>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap()
}

async fn delete_namespace(client: &kube::Client, ns: &str) {
    let _ = Api::<Namespace>::all(client.clone())
        .delete(ns, &DeleteParams::default())
        .await;
}

/// A Deployment of line-echo pods pinned to `node` (tests share the
/// cluster; each keeps its pods on its own node).
fn workload(ns: &str, node: &str, replicas: u32, version: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  strategy: {{type: RollingUpdate, rollingUpdate: {{maxUnavailable: 0, maxSurge: 1}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 4
      nodeSelector: {{kubernetes.io/hostname: {node}}}
      containers:
      - name: echo
        image: sluice.dev/tcp-echo
        env: [{{name: VERSION, value: "{version}"}}]
        ports:
        - {{name: tcp, containerPort: 8080}}
        - {{name: dns, containerPort: 5353, protocol: UDP}}
        readinessProbe:
          tcpSocket: {{port: tcp}}
          periodSeconds: 1
"#
    )
}

fn services(ns: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {ns}}}
spec:
  selector: {{app: web}}
  ports:
  - {{name: tcp, port: 80, targetPort: tcp}}
  - {{name: dns, port: 53, targetPort: dns, protocol: UDP}}
---
apiVersion: v1
kind: Service
metadata: {{name: web-np, namespace: {ns}}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{name: tcp, port: 80, targetPort: tcp}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-lb, namespace: {ns}}}
spec:
  type: LoadBalancer
  selector: {{app: web}}
  ports: [{{name: tcp, port: 80, targetPort: tcp}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-ext, namespace: {ns}}}
spec: {{type: ExternalName, externalName: example.com}}
---
apiVersion: v1
kind: Service
metadata: {{name: web-headless, namespace: {ns}}}
spec:
  clusterIP: None
  selector: {{app: web}}
  ports: [{{name: tcp, port: 80, targetPort: tcp}}]
"#
    )
}

/// Probes `addr` every 50 ms on a thread until dropped; counts failures.
struct Prober {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Prober {
    fn start(addr: SocketAddr) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, o, f, e) = (stop.clone(), ok.clone(), failed.clone(), errors.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match ask_tcp(addr) {
                    Ok(_) => o.fetch_add(1, Ordering::Relaxed),
                    Err(err) => {
                        e.lock().unwrap().push(err);
                        f.fetch_add(1, Ordering::Relaxed)
                    }
                };
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Prober {
            stop,
            ok,
            failed,
            errors,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let errors = self.errors.lock().unwrap().clone();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            errors,
        )
    }
}

async fn scale(client: &kube::Client, ns: &str, replicas: u32) {
    let deploys: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), ns);
    deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": replicas}})),
        )
        .await
        .unwrap();
}

/// Waits until the ClusterIP's live real servers are exactly the ready
/// pods' addresses (port 8080), and there are `n` of them.
async fn wait_converged(client: &kube::Client, ns: &str, vip: &str, n: usize) {
    let start = Instant::now();
    loop {
        let ips = pod_ips(client, ns).await;
        let want: Vec<String> = ips.iter().map(|ip| format!("{ip}:8080")).collect();
        if want.len() == n && live_real_servers(vip) == want {
            return;
        }
        if start.elapsed() > Duration::from_secs(90) {
            let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
            let state: Vec<String> = pods
                .list(&ListParams::default())
                .await
                .unwrap()
                .into_iter()
                .map(|p| {
                    let st = p.status.unwrap_or_default();
                    format!(
                        "{} ip={:?} phase={:?} deleting={} conditions={:?}",
                        p.metadata.name.unwrap_or_default(),
                        st.pod_ip,
                        st.phase,
                        p.metadata.deletion_timestamp.is_some(),
                        st.conditions
                            .unwrap_or_default()
                            .into_iter()
                            .map(|c| format!("{}={}", c.type_, c.status))
                            .collect::<Vec<_>>()
                    )
                })
                .collect();
            panic!(
                "timed out: want {n} real servers = ready pods {want:?}\npods: {state:#?}\nipvsadm:\n{}",
                sh("ipvsadm -Sn")
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the IPVS VM"]
async fn guest_services_of_every_type_scaling_and_a_rolling_update() {
    sluice_tests::vm::assert_in_vm();
    let c: &Cluster = cluster::shared();
    let ns = "proxy-e2e";
    let node = NodeAgent::start(c, "vm-proxy-a").unwrap();
    let client = c.client().await;
    c.apply_yaml(&workload(ns, node.name(), 3, "v1")).unwrap();
    c.apply_yaml(&services(ns)).unwrap();
    // No load-balancer controller here: give the LB Service its address as
    // a cloud controller would.
    let lb_ip = "192.0.2.80";
    Api::<Service>::namespaced(client.clone(), ns)
        .patch_status(
            "web-lb",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"status": {"loadBalancer": {"ingress": [{"ip": lb_ip}]}}}),
            ),
        )
        .await
        .unwrap();
    let _proxy = Proxy::start(
        c.admin_kubeconfig(),
        node.name(),
        &["--detect-local-mode", "NodeCIDR"],
    );

    let web = service(&client, ns, "web").await;
    let vip = web.spec.as_ref().unwrap().cluster_ip.clone().unwrap();
    let vip80 = format!("{vip}:80");
    wait_converged(&client, ns, &vip80, 3).await;

    // Every pod answers through the ClusterIP (round robin), TCP and UDP.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..12 {
        seen.insert(ask_tcp(vip80.parse().unwrap()).unwrap());
    }
    assert_eq!(seen.len(), 3, "round robin over the three pods: {seen:?}");
    assert!(
        ask_udp(format!("{vip}:53").parse().unwrap())
            .unwrap()
            .starts_with("web-")
    );

    // NodePort on the node's address, and the load-balancer IP.
    let np = service(&client, ns, "web-np").await;
    let node_port = np.spec.unwrap().ports.unwrap()[0].node_port.unwrap();
    let node_addr: SocketAddr = format!("{}:{node_port}", node.address()).parse().unwrap();
    wait_until("the NodePort", Duration::from_secs(30), || {
        ask_tcp(node_addr).is_ok()
    })
    .await;
    wait_until("the load-balancer IP", Duration::from_secs(30), || {
        ask_tcp(format!("{lb_ip}:80").parse().unwrap()).is_ok()
    })
    .await;
    // ExternalName and headless Services get no virtual server: the only
    // TCP ones of this namespace are web, web-np (ClusterIP and NodePort)
    // and web-lb (ClusterIP and LB IP).
    let lb = service(&client, ns, "web-lb")
        .await
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    let np_ip = service(&client, ns, "web-np")
        .await
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    let ours: Vec<String> = sh("ipvsadm -Sn")
        .lines()
        .filter(|l| l.starts_with("-A -t "))
        .map(str::to_owned)
        .filter(|l| {
            [&vip, &lb, &np_ip, &lb_ip.to_owned()]
                .iter()
                .any(|ip| l.contains(ip.as_str()))
        })
        .collect();
    assert_eq!(ours.len(), 4, "{ours:?}");

    // detect-local from the podCIDR node IPAM gave the node.
    let rules = sh("iptables-save -t nat");
    assert!(
        rules.contains(&format!("! -s {}", node.pod_cidr())),
        "NodeCIDR detect-local uses the node's podCIDR {}:\n{rules}",
        node.pod_cidr()
    );

    // Scale up and down.
    scale(&client, ns, 5).await;
    wait_converged(&client, ns, &vip80, 5).await;
    scale(&client, ns, 2).await;
    wait_converged(&client, ns, &vip80, 2).await;

    // A rolling update under traffic: terminating pods keep serving through
    // their grace period while the proxy stops sending them new
    // connections, so not one probe fails.
    let prober = Prober::start(vip80.parse().unwrap());
    c.apply_yaml(&workload(ns, node.name(), 2, "v2")).unwrap();
    let old: Vec<String> = pod_ips(&client, ns).await;
    wait_until("the rollout", Duration::from_secs(120), || {
        let live = live_real_servers(&vip80);
        live.len() == 2
            && live
                .iter()
                .all(|rs| !old.iter().any(|o| rs.starts_with(&format!("{o}:"))))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (ok, failed, errors) = prober.finish();
    assert!(ok > 50, "the prober ran ({ok} answers)");
    assert_eq!(
        failed, 0,
        "probes failed during the rolling update: {errors:?}"
    );
    wait_converged(&client, ns, &vip80, 2).await;

    delete_namespace(&client, ns).await;
    wait_until(
        "the namespace's virtual servers gone",
        Duration::from_secs(120),
        || !sh("ipvsadm -Sn").contains(&vip80),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the IPVS VM"]
async fn guest_api_server_restart_and_a_forced_relist() {
    sluice_tests::vm::assert_in_vm();
    let c: &Cluster = cluster::shared();
    let ns = "proxy-outage";
    let node = NodeAgent::start(c, "vm-proxy-b").unwrap();
    let client = c.client().await;
    c.apply_yaml(&workload(ns, node.name(), 2, "v1")).unwrap();
    c.apply_yaml(&services(ns)).unwrap();
    let proxy = Proxy::start(c.admin_kubeconfig(), node.name(), &[]);
    let vip = service(&client, ns, "web")
        .await
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    let vip80 = format!("{vip}:80");
    wait_converged(&client, ns, &vip80, 2).await;
    // A full resync passes so the counters settle.
    tokio::time::sleep(Duration::from_secs(6)).await;

    // The API server goes away for 20 s: the data plane stays exactly as it
    // was, traffic flows, and periodic resyncs change nothing.
    let before = kernel_state();
    let ops_before = metric("kubeproxy_sluice_netlink_operations_total");
    let prober = Prober::start(vip80.parse().unwrap());
    c.stop_component(Component::ApiServer).unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        kernel_state(),
        before,
        "nothing touched while the API server is down"
    );
    assert_eq!(
        metric("kubeproxy_sluice_netlink_operations_total"),
        ops_before
    );
    assert!(http_get(10256, "/healthz").starts_with("HTTP/1.1 200"));
    c.start_component(Component::ApiServer).unwrap();
    let (ok, failed, errors) = prober.finish();
    assert!(
        ok > 50 && failed == 0,
        "traffic during the outage: {ok} ok, {failed} failed {errors:?}"
    );

    // Back: changes made now are caught up.
    let client = c.client().await;
    scale(&client, ns, 3).await;
    wait_converged(&client, ns, &vip80, 3).await;

    // A forced re-list: the proxy is frozen while the cluster changes, etcd
    // is compacted past what the proxy saw and the API server restarts
    // (its watch cache starts over), so the proxy's watches resume from a
    // resourceVersion that is gone: 410, then a fresh list.
    proxy.signal(libc::SIGSTOP);
    scale(&client, ns, 1).await;
    c.apply_yaml(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: late, namespace: {ns}}}\n\
         spec: {{selector: {{app: web}}, ports: [{{port: 81, targetPort: 8080}}]}}\n"
    ))
    .unwrap();
    let late = service(&client, ns, "late")
        .await
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    c.compact_etcd().unwrap();
    c.restart_component(Component::ApiServer).unwrap();
    proxy.signal(libc::SIGCONT);
    let client = c.client().await;
    wait_converged(&client, ns, &vip80, 1).await;
    wait_until(
        "the Service made while the proxy was frozen",
        Duration::from_secs(60),
        || ask_tcp(format!("{late}:81").parse().unwrap()).is_ok(),
    )
    .await;
    let log = proxy.log();
    assert!(
        log.contains("410") || log.contains("too old") || log.contains("Expired"),
        "the proxy's watches saw 410 Gone and re-listed; its log:\n{log}"
    );

    delete_namespace(&client, ns).await;
    wait_until(
        "the namespace's virtual servers gone",
        Duration::from_secs(120),
        || !sh("ipvsadm -Sn").contains(&vip80),
    )
    .await;
}

/// Everything of ours the kernel reports, read back independently.
fn kernel_state() -> String {
    let rules: Vec<String> = sh("iptables-save -t nat; iptables-save -t filter")
        .lines()
        .filter(|l| l.starts_with("-A ") && l.contains("KUBE-"))
        .map(str::to_owned)
        .collect();
    let mut sets: Vec<String> = sh("ipset save")
        .lines()
        .filter(|l| l.contains("KUBE-"))
        .map(str::to_owned)
        .collect();
    sets.sort();
    format!(
        "{}\n--\n{}\n--\n{}\n--\n{}",
        sh("ipvsadm -Sn"),
        rules.join("\n"),
        sets.join("\n"),
        sh("ip -o addr show dev kube-ipvs0 | awk '{print $4}' | sort")
    )
}
