//! sluice-proxy at scale against the fake API server, in the IPVS VM:
//! 10,000 Services × 10 endpoints from start to fully programmed, peak RSS,
//! endpoint changes one at a time (latency until the kernel has each, netlink operations
//! it cost), CPU of idle periodic resyncs; the peer, `ipvsadm -R` of the
//! equivalent rule set, in the same run.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipvs_sys::{Destination, IpvsClient, Scheduler, Service, ServiceKey, ipvsadm};
use serde_json::json;
use sluice_tests::fake_api::{FakeApiConfig, FakeApiServer};

use crate::stats::{Samples, ratio};

fn vip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 1)) + i)
}

fn ep(i: u32, j: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 1)) + i * 10 + j)
}

/// Endpoint changes measured per round (one Service each).
const CHANGES: u32 = 6;

fn slice(i: u32, endpoints: &[Ipv4Addr]) -> serde_json::Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("svc-{i}-abcde"), "namespace": "bench",
                     "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints.iter().map(|a| json!({"addresses": [a.to_string()], "conditions": {"ready": true}})).collect::<Vec<_>>()
    })
}

fn rss_peak_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            // utime and stime are fields 14 and 15; after ')' they are 12 and 13 (1-based from state).
            Some(after.get(11)?.parse::<u64>().ok()? + after.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

fn metric(name: &str) -> f64 {
    let out = Command::new("curl")
        .args(["-s", "http://127.0.0.1:10249/metrics"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0)
}

fn programmed(ipvs: &mut IpvsClient, services: u32, dests: u32) -> bool {
    let Ok(svcs) = ipvs.services() else {
        return false;
    };
    let ours = svcs
        .iter()
        .filter(|s| matches!(s.service.key, ServiceKey::Inet { addr, .. } if addr.port() == 80))
        .count();
    if ours < services as usize {
        return false;
    }
    // All real servers of the last and a middle service present.
    [services - 1, services / 2].iter().all(|i| {
        ipvs.destinations(&ServiceKey::tcp(SocketAddr::new(vip(*i).into(), 80)))
            .map(|d| d.len() == dests as usize)
            .unwrap_or(false)
    })
}

/// The proxy under test; stopped with SIGTERM (and reaped) when dropped.
struct Proxy(Child);

impl Proxy {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn start_proxy(bin: &str, kubeconfig: &str) -> Proxy {
    Proxy(
        Command::new(bin)
            .args([
                "--kubeconfig",
                kubeconfig,
                "--hostname-override",
                "bench-node",
                "--metrics-bind-address",
                "127.0.0.1:10249",
                "--healthz-bind-address",
                "127.0.0.1:10256",
                "--ipvs-sync-period",
                "30s",
            ])
            // SLUICE_BENCH_PROXY_LOG=sluice_proxy=debug shows each sync's time.
            .env(
                "RUST_LOG",
                std::env::var("SLUICE_BENCH_PROXY_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sluice-proxy"),
    )
}

/// Runs the benchmark; `bin` is the sluice-proxy binary.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut services = 10_000u32;
    let mut rounds = 1u32;
    let mut settle = 130u64;
    let mut bin = String::from("target/release/sluice-proxy");
    let mut it = args.iter();
    while let Some(f) = it.next() {
        let v = it.next().ok_or_else(|| format!("{f} needs a value"))?;
        match f.as_str() {
            "--services" => services = v.parse().map_err(|_| "bad --services")?,
            "--rounds" => rounds = v.parse().map_err(|_| "bad --rounds")?,
            "--settle" => settle = v.parse().map_err(|_| "bad --settle")?,
            "--proxy" => bin = v.clone(),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let dests = 10u32;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let api = rt.block_on(FakeApiServer::start_with(FakeApiConfig {
        history_limit: 100_000,
        ..FakeApiConfig::default()
    }));
    let kubeconfig = "/tmp/sluice-bench-kubeconfig";
    std::fs::write(
        kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            api.url()
        ),
    )
    .map_err(|e| e.to_string())?;
    let t = Instant::now();
    api.apply(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "bench-node"}}));
    for i in 0..services {
        api.apply(&json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("svc-{i}"), "namespace": "bench"},
            "spec": {"clusterIP": vip(i).to_string(), "clusterIPs": [vip(i).to_string()],
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
        }));
        let eps: Vec<Ipv4Addr> = (0..dests).map(|j| ep(i, j)).collect();
        api.apply(&slice(i, &eps));
    }
    println!(
        "proxy-sync: {services} Services x {dests} endpoints loaded into the fake API server in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut ipvs = IpvsClient::open().map_err(|e| e.to_string())?;
    let (mut full, mut peer, mut change, mut first_change) = (
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
    );
    let mut rss = Vec::new();
    let mut change_ops = Vec::new();
    let mut idle_cpu = Vec::new();
    let ticks = 100.0; // USER_HZ
    for round in 1..=rounds {
        // The peer first, on an empty kernel: ipvsadm -R of the equivalent
        // rules. Then flush and let the IPVS destination trash expire
        // (every add scans it) before sluice-proxy starts from empty.
        let _ = Command::new(&bin).arg("--cleanup").status();
        let entries: Vec<ipvsadm::Entry> = (0..services)
            .map(|i| {
                let key = ServiceKey::tcp(SocketAddr::new(vip(i).into(), 80));
                let ds = (0..dests)
                    .map(|j| Destination::masq(SocketAddr::new(ep(i, j).into(), 8080)))
                    .collect();
                (Service::new(key, Scheduler::RoundRobin), ds)
            })
            .collect();
        let rules = ipvsadm::render(&entries);
        let t = Instant::now();
        let mut child = Command::new("ipvsadm")
            .arg("-R")
            .stdin(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        {
            use std::io::Write;
            child
                .stdin
                .take()
                .ok_or("stdin")?
                .write_all(rules.as_bytes())
                .map_err(|e| e.to_string())?;
        }
        child.wait().map_err(|e| e.to_string())?;
        peer.push(t.elapsed());
        let _ = Command::new("ipvsadm").arg("-C").status();
        println!("  (waiting {settle} s for the IPVS destination trash to expire)");
        std::thread::sleep(Duration::from_secs(settle));
        // From empty: no IPVS, no kube-ipvs0, no rules.
        let _ = Command::new(&bin).arg("--cleanup").status();
        let t = Instant::now();
        let proxy = start_proxy(&bin, kubeconfig);
        while !programmed(&mut ipvs, services, dests) {
            if t.elapsed() > Duration::from_secs(900) {
                return Err("sluice-proxy did not program the table within 900 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        full.push(t.elapsed());
        // The sync that programmed IPVS goes on with sets and rules; measure
        // the change only once it has finished.
        let programmed_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let t_wait = Instant::now();
        while metric("kubeproxy_sync_proxy_rules_last_timestamp_seconds") < programmed_at - 0.001 {
            if t_wait.elapsed() > Duration::from_secs(300) {
                return Err("the first sync did not finish".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_secs(1));
        // Endpoint changes, one Service each, a second apart. The first
        // runs code the proxy has not run before: under TCG that costs the
        // translation of every function on the incremental path, which a
        // proxy in a cluster pays once in its life. It is reported on its
        // own; the rest are the steady state.
        for c in 0..CHANGES {
            let i = services / 3 + c;
            let key = ServiceKey::tcp(SocketAddr::new(vip(i).into(), 80));
            let new_ep = Ipv4Addr::new(10, 250, (round % 250) as u8, 7 + c as u8);
            let ops_before = metric("kubeproxy_sluice_netlink_operations_total");
            let mut eps: Vec<Ipv4Addr> = (0..dests).map(|j| ep(i, j)).collect();
            eps[0] = new_ep;
            let applied_at = jiff::Timestamp::now();
            let t = Instant::now();
            api.apply(&slice(i, &eps));
            let want = SocketAddr::new(new_ep.into(), 8080);
            loop {
                let d = ipvs.destinations(&key).map_err(|e| e.to_string())?;
                if d.iter()
                    .any(|d| d.destination.addr == want && d.destination.weight == 1)
                {
                    break;
                }
                if t.elapsed() > Duration::from_secs(30) {
                    return Err("the endpoint change did not land within 30 s".into());
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            let took = t.elapsed();
            if c == 0 {
                first_change.push(took);
            } else {
                change.push(took);
            }
            std::thread::sleep(Duration::from_millis(1000));
            let ops = metric("kubeproxy_sluice_netlink_operations_total") - ops_before;
            change_ops.push(ops);
            // Wall clock, to line up with the proxy's own log timestamps
            // (SLUICE_BENCH_PROXY_LOG=sluice_proxy=debug): what part of the
            // latency is the watch delivery and what part the sync.
            println!(
                "  round {round}: change {c} applied at {applied_at}, in the kernel {:.1} ms later, {ops} netlink ops",
                took.as_secs_f64() * 1e3
            );
        }
        // Idle: CPU over 35 s, which contains one full resync (syncPeriod 30 s).
        let c0 = cpu_ticks(proxy.id());
        std::thread::sleep(Duration::from_secs(35));
        idle_cpu.push((cpu_ticks(proxy.id()) - c0) as f64 / ticks);
        rss.push(rss_peak_kb(proxy.id()));
        drop(proxy);

        println!(
            "  round {round}: sluice-proxy start→programmed {:.2} s vs ipvsadm -R {:.2} s; first change {:.1} ms; idle CPU {:.2} s/35 s; peak RSS {} MB",
            full.last().as_secs_f64(),
            peer.last().as_secs_f64(),
            first_change.last().as_secs_f64() * 1000.0,
            idle_cpu.last().copied().unwrap_or_default(),
            rss.last().copied().unwrap_or_default() / 1024
        );
    }
    println!();
    println!("| measure | sluice-proxy (min / median) | peer | ratio | target |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| start → {} objects programmed (API server → kernel, rules and sets included) | {} | ipvsadm -R: {} | {:.3} | ≤ 1.0 |",
        services * (dests + 1),
        full.cell(),
        peer.cell(),
        ratio(&full, &peer)
    );
    println!(
        "| one endpoint change → in the kernel ({} changes per round after the first) | {:.1} ms / {:.1} ms | | | ≤ 50 ms |",
        CHANGES - 1,
        change.min().as_secs_f64() * 1000.0,
        change.median().as_secs_f64() * 1000.0
    );
    println!(
        "| the first endpoint change of each round (code not yet translated by TCG) | {:.1} ms / {:.1} ms | | | |",
        first_change.min().as_secs_f64() * 1000.0,
        first_change.median().as_secs_f64() * 1000.0
    );
    println!("| netlink operations per change | {change_ops:?} | | | only its Service |");
    println!(
        "| peak RSS | {:?} MB | | | ≤ 128 MB |",
        rss.iter().map(|k| k / 1024).collect::<Vec<_>>()
    );
    println!("| CPU while idle for 35 s (one periodic resync) | {idle_cpu:?} s | | | |");
    drop(api);
    Ok(())
}
