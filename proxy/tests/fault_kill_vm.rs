//! `sluice-proxy` killed with SIGKILL at random points of its first full
//! sync and of incremental syncs, then restarted, in the IPVS VM: the real
//! binary watching an API server through a kubeconfig (the fake API server
//! for now; the scenario only needs the kubeconfig, so a real control plane
//! can drive it too).
//!
//! What it proves, and how it is observed:
//!
//! * **A restart converges to what a clean start produces.** After the
//!   last restart the node's state read back independently (`ipvsadm -Sn`
//!   sorted, our iptables rules in order, our ipset members, kube-ipvs0's
//!   addresses) is compared byte for byte with the state a clean start
//!   (`--cleanup`, then a fresh process) produces for the same cluster.
//!   Between restarts, convergence is checked against a model of the
//!   cluster (virtual servers, real servers, kube-ipvs0 addresses and
//!   KUBE-CLUSTER-IP members).
//! * **Services that did not change never fail.** A prober connects to the
//!   ClusterIPs of four unchanging Services (echo servers in pod network
//!   namespaces), a new connection each time, throughout every kill and
//!   restart; every failure is counted and reported.
//!
//! Kill points come from a seeded generator (the seed is printed; set
//! `SLUICE_FAULT_SEED` to replay a run). Phases:
//!
//! 1. reference: a clean start with 64 Services; its time to converge
//!    sizes the kill windows;
//! 2. first sync on an empty node: `--cleanup`, then starts killed at
//!    random points of the first sync, then a start that converges
//!    (must equal the reference);
//! 3. first sync after a restart with work to do (the prober runs from
//!    here on): killed while down, a third of the Services are replaced;
//!    restarts killed at random points of their first sync, then one that
//!    converges;
//! 4. incremental syncs: batches of changes, a kill at a random point
//!    while they are being synced, a restart that converges;
//! 5. the node after all that against a clean start.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use sluice_tests::fake_api::FakeApiServer;
use sluice_tests::netns::{ask_from, echo_server, pod, sh};

#[test]
fn fault_kill_in_the_ipvs_vm() {
    sluice_tests::vm::run_guest_tests("guest_fault_kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the IPVS VM"]
async fn guest_fault_kill_sigkill_in_first_and_incremental_syncs() {
    sluice_tests::vm::assert_in_vm();
    let api = FakeApiServer::start().await;
    let kubeconfig = PathBuf::from("/tmp/fault-kill-kubeconfig.yaml");
    write_kubeconfig(&kubeconfig, &api.url());
    let report = kill_scenario(&kubeconfig, seed()).await;
    report.check();
}

// ------------------------------------------------------------- parameters

/// Services that churn, besides the four stable ones: `SLUICE_FAULT_BULK`,
/// default 60 (a first sync of 64 Services takes 4–6 s in the VM's debug
/// build, wide enough for random kill points; 300 works too and makes the
/// test take about three times as long).
fn bulk() -> usize {
    env_number("SLUICE_FAULT_BULK", 60)
}

/// Rounds of each kind: `SLUICE_FAULT_ROUNDS`, default 1 (one round of
/// restarts with work to do, two of incremental kills); more for a soak.
fn rounds() -> usize {
    env_number("SLUICE_FAULT_ROUNDS", 1)
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).map_or(default, |v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} is a number"))
    })
}

/// Kills at random points of a first sync on an empty node.
const EMPTY_NODE_KILLS: usize = 2;
/// Kills per round of "replace a third while down, then kill first syncs".
const KILLS_PER_RESTART_ROUND: usize = 2;
/// Incremental kills per round.
const INCREMENTAL_PER_ROUND: usize = 2;
/// How long a restarted proxy may take to converge.
const CONVERGE_LIMIT: Duration = Duration::from_secs(90);
const NODE: &str = "node-1";
const PODS: [(u8, &str); 2] = [(41, "pod41"), (42, "pod42")];

fn seed() -> u64 {
    match std::env::var("SLUICE_FAULT_SEED") {
        Ok(s) => s.trim().parse().expect("SLUICE_FAULT_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    }
}

/// SplitMix64: small, seeded, good enough to pick kill points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn duration(&mut self, max: Duration) -> Duration {
        Duration::from_micros(self.below(max.as_micros() as u64 + 1))
    }
}

// ---------------------------------------------------------------- the model

/// The Services the scenario keeps in the cluster: name → (ClusterIP,
/// ready endpoint addresses). Every Service has one TCP port 80 → 8080.
#[derive(Debug, Clone, Default)]
struct Model {
    services: BTreeMap<String, (Ipv4Addr, Vec<Ipv4Addr>)>,
    next_bulk: u32,
}

/// The unchanging Services the prober uses: (name, ClusterIP, pods that
/// may answer).
fn stable() -> Vec<(String, Ipv4Addr, Vec<&'static str>)> {
    vec![
        (
            "stable-0".into(),
            Ipv4Addr::new(10, 96, 7, 10),
            vec!["pod41"],
        ),
        (
            "stable-1".into(),
            Ipv4Addr::new(10, 96, 7, 11),
            vec!["pod42"],
        ),
        (
            "stable-2".into(),
            Ipv4Addr::new(10, 96, 7, 12),
            vec!["pod41", "pod42"],
        ),
        (
            "stable-3".into(),
            Ipv4Addr::new(10, 96, 7, 13),
            vec!["pod41", "pod42"],
        ),
    ]
}

fn pod_ip(name: &str) -> Ipv4Addr {
    let n = PODS.iter().find(|(_, p)| *p == name).expect("known pod").0;
    Ipv4Addr::new(10, 244, n, 2)
}

impl Model {
    fn new(rng: &mut Rng) -> Self {
        let mut m = Model::default();
        for (name, vip, pods) in stable() {
            let eps = pods.iter().map(|p| pod_ip(p)).collect();
            m.services.insert(name, (vip, eps));
        }
        for _ in 0..bulk() {
            m.add_bulk(rng);
        }
        m
    }

    /// A new bulk Service with a ClusterIP of its own and 1–3 endpoints
    /// (addresses nobody answers on; only the tables matter for these).
    fn add_bulk(&mut self, rng: &mut Rng) -> String {
        let n = self.next_bulk;
        self.next_bulk += 1;
        let vip = Ipv4Addr::new(10, 96, 20 + (n / 250) as u8, (n % 250) as u8 + 1);
        let name = format!("bulk-{n}");
        self.services
            .insert(name.clone(), (vip, random_endpoints(rng)));
        name
    }

    fn bulk_names(&self) -> Vec<String> {
        self.services
            .keys()
            .filter(|n| n.starts_with("bulk-"))
            .cloned()
            .collect()
    }

    /// A random change to a bulk Service: delete one, add one, or change
    /// one's endpoints. Returns (name, present after the change).
    fn random_change(&mut self, rng: &mut Rng) -> (String, bool) {
        let names = self.bulk_names();
        if names.is_empty() {
            return (self.add_bulk(rng), true);
        }
        let pick = names[rng.below(names.len() as u64) as usize].clone();
        match rng.below(3) {
            0 => {
                self.services.remove(&pick);
                (pick, false)
            }
            1 => (self.add_bulk(rng), true),
            _ => {
                self.services.get_mut(&pick).expect("picked").1 = random_endpoints(rng);
                (pick, true)
            }
        }
    }
}

fn random_endpoints(rng: &mut Rng) -> Vec<Ipv4Addr> {
    let n = 1 + rng.below(3);
    let mut eps: Vec<Ipv4Addr> = (0..n)
        .map(|_| Ipv4Addr::new(10, 245, rng.below(200) as u8, 1 + rng.below(250) as u8))
        .collect();
    eps.sort();
    eps.dedup();
    eps
}

// --------------------------------------------------------------- the cluster

/// Writes to the cluster through a kubeconfig, so the scenario runs against
/// any API server.
struct Cluster {
    services: Api<Service>,
    slices: Api<EndpointSlice>,
    nodes: Api<Node>,
}

fn write_kubeconfig(path: &Path, server: &str) {
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n\
             users:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n\
             current-context: c\n"
        ),
    )
    .expect("write the kubeconfig");
}

impl Cluster {
    async fn connect(kubeconfig: &Path) -> Self {
        let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("kube config");
        let client = kube::Client::try_from(cfg).expect("kube client");
        Cluster {
            services: Api::namespaced(client.clone(), "default"),
            slices: Api::namespaced(client.clone(), "default"),
            nodes: Api::all(client),
        }
    }

    async fn apply<K>(api: &Api<K>, name: &str, obj: &Value)
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let pp = PatchParams::apply("fault-kill").force();
        api.patch(name, &pp, &Patch::Apply(obj))
            .await
            .unwrap_or_else(|e| panic!("apply {name}: {e}"));
    }

    async fn node(&self) {
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}});
        Self::apply(&self.nodes, NODE, &node).await;
    }

    async fn put(&self, name: &str, vip: Ipv4Addr, eps: &[Ipv4Addr]) {
        let svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": "ClusterIP", "clusterIP": vip.to_string(),
                     "clusterIPs": [vip.to_string()],
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
        });
        let endpoints: Vec<Value> = eps
            .iter()
            .map(|ip| {
                json!({"addresses": [ip.to_string()], "conditions": {"ready": true},
                             "nodeName": NODE})
            })
            .collect();
        let slice = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "default",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
        });
        Self::apply(&self.services, name, &svc).await;
        Self::apply(&self.slices, name, &slice).await;
    }

    async fn remove(&self, name: &str) {
        let dp = DeleteParams::default();
        self.slices
            .delete(name, &dp)
            .await
            .unwrap_or_else(|e| panic!("delete slice {name}: {e}"));
        self.services
            .delete(name, &dp)
            .await
            .unwrap_or_else(|e| panic!("delete service {name}: {e}"));
    }

    /// Makes the cluster say what `model` says about `name`.
    async fn sync(&self, model: &Model, name: &str, present: bool) {
        match (present, model.services.get(name)) {
            (true, Some((vip, eps))) => self.put(name, *vip, eps).await,
            _ => self.remove(name).await,
        }
    }
}

// ------------------------------------------------------------------ the proxy

/// A running `sluice-proxy`; killed with SIGKILL when dropped.
struct Proxy {
    child: Child,
    started: Instant,
}

impl Proxy {
    fn start(kubeconfig: &Path, n: usize) -> Self {
        let log = std::fs::File::create(format!("/tmp/fault-kill-proxy-{n}.log"))
            .expect("proxy log file");
        let child = Command::new(env!("CARGO_BIN_EXE_sluice-proxy"))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args([
                "--hostname-override",
                NODE,
                "--healthz-bind-address",
                "127.0.0.1:10256",
                "--metrics-bind-address",
                "127.0.0.1:10249",
                "--ipvs-min-sync-period",
                "0s",
            ])
            // The per-sync debug line says where a sync's time goes.
            .env("RUST_LOG", "info,sluice_proxy::app=debug")
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start sluice-proxy");
        Proxy {
            child,
            started: Instant::now(),
        }
    }

    /// SIGKILL, and reap the process.
    fn kill(mut self) -> Duration {
        let alive = self.started.elapsed();
        // SAFETY: sending SIGKILL to our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
        alive
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: as in `kill`.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
            let _ = self.child.wait();
        }
    }
}

fn cleanup_node() {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-proxy"))
        .arg("--cleanup")
        .output()
        .expect("run sluice-proxy --cleanup");
    assert!(
        out.status.success(),
        "--cleanup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left = Observed::read();
    assert!(
        left == Observed::default() && sh("ipvsadm -Sn").trim().is_empty(),
        "--cleanup left state behind: {left:?}\n{}",
        sh("ipvsadm -Sn")
    );
}

/// The fields of the first `synced` line in the log of start `n`.
fn first_sync(n: usize) -> String {
    let log = std::fs::read_to_string(format!("/tmp/fault-kill-proxy-{n}.log")).unwrap_or_default();
    let Some(line) = log.lines().find(|l| l.contains("synced")) else {
        return "(no sync logged)".into();
    };
    // Drop the colour codes and everything before the fields.
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
        .split_once("synced ")
        .map_or(plain.clone(), |(_, fields)| fields.to_owned())
}

// ----------------------------------------------------------- the node's state

/// Everything of ours the kernel reports, in a canonical order: IPVS lines
/// sorted (the kernel lists real servers in insertion order), rules in
/// chain order, set members and addresses sorted.
fn kernel_state() -> String {
    let mut ipvs: Vec<String> = sh("ipvsadm -Sn").lines().map(str::to_owned).collect();
    ipvs.sort();
    let rules: Vec<String> = sh("iptables-save -t nat; iptables-save -t filter")
        .lines()
        .filter(|l| l.starts_with("-A ") && l.contains("KUBE-"))
        .map(str::to_owned)
        .collect();
    // `initval` is the hash seed the kernel draws for each new set.
    let mut sets: Vec<String> = sh("ipset save")
        .lines()
        .filter(|l| l.contains("KUBE-"))
        .map(|l| match l.find(" initval ") {
            Some(i) => l[..i].to_owned(),
            None => l.to_owned(),
        })
        .collect();
    sets.sort();
    format!(
        "{}\n--\n{}\n--\n{}\n--\n{}",
        ipvs.join("\n"),
        rules.join("\n"),
        sets.join("\n"),
        sh("ip -o addr show dev kube-ipvs0 2>/dev/null | awk '{print $4}' | sort")
    )
}

/// The parts of the node's state a model of the cluster predicts.
#[derive(Debug, Default, PartialEq, Eq)]
struct Observed {
    /// `VIP:80` of every TCP virtual server.
    virtual_servers: BTreeSet<String>,
    /// (`VIP:80`, `RIP:8080`) of every real server.
    real_servers: BTreeSet<(String, String)>,
    /// Addresses on kube-ipvs0.
    addresses: BTreeSet<String>,
    /// KUBE-CLUSTER-IP members.
    cluster_ips: BTreeSet<String>,
}

impl Observed {
    fn read() -> Self {
        let mut o = Observed::default();
        for line in sh("ipvsadm -Sn").lines() {
            let t: Vec<&str> = line.split_whitespace().collect();
            match t.as_slice() {
                ["-A", "-t", vip, ..] => {
                    o.virtual_servers.insert(vip.to_string());
                }
                ["-a", "-t", vip, "-r", rip, ..] => {
                    o.real_servers.insert((vip.to_string(), rip.to_string()));
                }
                _ => {}
            }
        }
        o.addresses = sh("ip -o -4 addr show dev kube-ipvs0 2>/dev/null | awk '{print $4}'")
            .lines()
            .map(|a| a.trim_end_matches("/32").to_owned())
            .collect();
        o.cluster_ips = sh("ipset list KUBE-CLUSTER-IP 2>/dev/null | sed '1,/^Members:/d'")
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        o
    }

    fn of(model: &Model) -> Self {
        let mut o = Observed::default();
        for (vip, eps) in model.services.values() {
            let vs = format!("{vip}:80");
            for ep in eps {
                o.real_servers.insert((vs.clone(), format!("{ep}:8080")));
            }
            o.virtual_servers.insert(vs);
            o.addresses.insert(vip.to_string());
            o.cluster_ips.insert(format!("{vip},tcp:80"));
        }
        o
    }

    /// How many entries differ from `want`, in all four parts.
    fn distance(&self, want: &Self) -> usize {
        fn d<T: Ord>(a: &BTreeSet<T>, b: &BTreeSet<T>) -> usize {
            a.symmetric_difference(b).count()
        }
        d(&self.virtual_servers, &want.virtual_servers)
            + d(&self.real_servers, &want.real_servers)
            + d(&self.addresses, &want.addresses)
            + d(&self.cluster_ips, &want.cluster_ips)
    }
}

/// A sample from `/metrics`, or NaN.
fn metric(name: &str) -> f64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", 10249)) else {
        return f64::NAN;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let req = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if s.write_all(req.as_bytes()).is_err() {
        return f64::NAN;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

const METRIC_LAST_SYNC: &str = "kubeproxy_sync_proxy_rules_last_timestamp_seconds";

/// Waits until the node matches the model, the running proxy has finished
/// a sync, and the whole state stays the same for a second. Returns how
/// long it took from the proxy's start, or an error with the difference.
async fn converge(model: &Model, proxy: &Proxy) -> Result<Duration, String> {
    let want = Observed::of(model);
    let deadline = Instant::now() + CONVERGE_LIMIT;
    loop {
        // The metric first: it is cheap, and reading the kernel costs the
        // proxy CPU time under emulation. A new process's first finished
        // sync is its full sync.
        let synced = metric(METRIC_LAST_SYNC) > 0.0;
        let seen = if synced || Instant::now() > deadline {
            Observed::read()
        } else {
            Observed::default()
        };
        if synced && seen == want {
            let took = proxy.started.elapsed();
            let before = kernel_state();
            tokio::time::sleep(Duration::from_secs(1)).await;
            if kernel_state() == before {
                return Ok(took);
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no convergence within {CONVERGE_LIMIT:?}: {} entries differ from the model\n\
                 missing virtual servers: {:?}\nunexpected virtual servers: {:?}",
                seen.distance(&want),
                want.virtual_servers
                    .difference(&seen.virtual_servers)
                    .take(5)
                    .collect::<Vec<_>>(),
                seen.virtual_servers
                    .difference(&want.virtual_servers)
                    .take(5)
                    .collect::<Vec<_>>(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// ------------------------------------------------------------------ the prober

/// Connects to the stable ClusterIPs in a loop, a new connection each time,
/// and counts what fails.
struct Prober {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<ProbeStats>,
}

#[derive(Debug, Default)]
struct ProbeStats {
    attempts: u64,
    failures: Vec<String>,
}

impl Prober {
    fn start(started: Instant) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut stats = ProbeStats::default();
            let targets = stable();
            while !flag.load(Ordering::Relaxed) {
                for (name, vip, pods) in &targets {
                    let addr = SocketAddr::from((*vip, 80));
                    stats.attempts += 1;
                    let t = started.elapsed();
                    match ask_from(None, addr, "ping", Duration::from_secs(3)) {
                        Ok(r) if pods.iter().any(|p| r.starts_with(&format!("{p} "))) => {}
                        Ok(r) => stats
                            .failures
                            .push(format!("{t:.1?} {name}: wrong answer {r:?}")),
                        Err(e) => stats.failures.push(format!("{t:.1?} {name}: {e}")),
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            stats
        });
        Prober { stop, thread }
    }

    fn finish(self) -> ProbeStats {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("prober thread")
    }
}

// ---------------------------------------------------------------- the scenario

/// One kill: in which phase, how long after the start, and how far from
/// converged the node was when the process died.
#[derive(Debug)]
struct Kill {
    phase: &'static str,
    after: Duration,
    distance: usize,
}

/// What a run saw.
#[derive(Debug, Default)]
struct Report {
    seed: u64,
    reference: Duration,
    kills: Vec<Kill>,
    converged: Vec<(&'static str, Duration)>,
    probes: ProbeStats,
    /// When each phase ended, from the start of the scenario.
    phases: Vec<(&'static str, Duration)>,
    /// For each start that converged: its first sync's log fields (how
    /// long it took and where the time went).
    first_syncs: Vec<String>,
    /// Everything that went wrong, in order.
    problems: Vec<String>,
}

impl Report {
    fn check(&self) {
        println!(
            "fault_kill: seed {}, reference convergence {:?}, {} kills, {} restarts converged, \
             {} probes, {} probe failures",
            self.seed,
            self.reference,
            self.kills.len(),
            self.converged.len(),
            self.probes.attempts,
            self.probes.failures.len()
        );
        for k in &self.kills {
            println!(
                "  kill {:<12} after {:>7.1?}, {} entries from converged",
                k.phase, k.after, k.distance
            );
        }
        for (phase, took) in &self.converged {
            println!("  converged {phase:<12} in {took:.1?}");
        }
        for (phase, at) in &self.phases {
            println!("  phase {phase:<16} done at {at:.1?}");
        }
        for (line, (phase, _)) in self.first_syncs.iter().zip(&self.converged) {
            println!("  first sync {phase:<12} {line}");
        }
        let mut problems = self.problems.clone();
        if !self.probes.failures.is_empty() {
            problems.push(format!(
                "{} of {} probes through unchanged Services failed: {:#?}",
                self.probes.failures.len(),
                self.probes.attempts,
                self.probes.failures.iter().take(20).collect::<Vec<_>>()
            ));
        }
        assert!(
            problems.is_empty(),
            "seed {} (SLUICE_FAULT_SEED={} replays it):\n{}",
            self.seed,
            self.seed,
            problems.join("\n")
        );
    }
}

/// Starts proxies and kills them at random points until one converges.
struct Run<'a> {
    kubeconfig: &'a Path,
    began: Instant,
    rng: Rng,
    report: Report,
    starts: usize,
}

impl Run<'_> {
    fn phase(&mut self, name: &'static str) {
        self.report.phases.push((name, self.began.elapsed()));
    }

    fn start(&mut self) -> Proxy {
        self.starts += 1;
        Proxy::start(self.kubeconfig, self.starts)
    }

    /// Starts a proxy and kills it after a random part of `window`.
    async fn start_and_kill(&mut self, phase: &'static str, window: Duration, model: &Model) {
        let proxy = self.start();
        tokio::time::sleep(self.rng.duration(window)).await;
        self.kill(phase, proxy, model);
    }

    fn kill(&mut self, phase: &'static str, proxy: Proxy, model: &Model) {
        let after = proxy.kill();
        let distance = Observed::read().distance(&Observed::of(model));
        self.report.kills.push(Kill {
            phase,
            after,
            distance,
        });
    }

    /// Starts a proxy and waits until it converges; `None` (and a problem
    /// in the report) if it does not.
    async fn start_and_converge(&mut self, phase: &'static str, model: &Model) -> Option<Proxy> {
        let proxy = self.start();
        match converge(model, &proxy).await {
            Ok(took) => {
                self.report.converged.push((phase, took));
                self.report.first_syncs.push(first_sync(self.starts));
                Some(proxy)
            }
            Err(e) => {
                self.report.problems.push(format!("{phase}: {e}"));
                None
            }
        }
    }
}

/// The whole scenario against the cluster behind `kubeconfig`.
async fn kill_scenario(kubeconfig: &Path, seed: u64) -> Report {
    println!("fault_kill: seed {seed}");
    for (n, name) in PODS {
        pod(n);
        echo_server(name, 8080, name);
    }
    let cluster = Cluster::connect(kubeconfig).await;
    let mut run = Run {
        kubeconfig,
        began: Instant::now(),
        rng: Rng(seed),
        report: Report {
            seed,
            ..Report::default()
        },
        starts: 0,
    };
    let mut model = Model::new(&mut run.rng);
    cluster.node().await;
    futures::stream::iter(&model.services)
        .for_each_concurrent(8, |(name, (vip, eps))| cluster.put(name, *vip, eps))
        .await;
    run.phase("objects created");

    // 1. The reference: a clean start.
    let Some(proxy) = run.start_and_converge("reference", &model).await else {
        return run.report;
    };
    let reference = kernel_state();
    // Kill windows: how long the clean start took to reach the model.
    let window = run.report.converged.last().map_or(CONVERGE_LIMIT, |c| c.1);
    run.report.reference = window;
    proxy.kill();
    run.phase("reference");

    // 2. First syncs on an empty node, killed.
    cleanup_node();
    for _ in 0..EMPTY_NODE_KILLS {
        run.start_and_kill("empty-node", window, &model).await;
    }
    let Some(mut proxy) = run.start_and_converge("empty-node", &model).await else {
        return run.report;
    };
    if kernel_state() != reference {
        run.report.problems.push(format!(
            "after kills in the first sync on an empty node, the node differs from a clean \
             start:\n{}",
            diff(&reference, &kernel_state())
        ));
    }

    run.phase("empty node");

    // 3. First syncs after a restart with work to do; the prober runs
    //    from here on.
    let prober = Prober::start(Instant::now());
    for _ in 0..rounds() {
        run.kill("converged", proxy, &model);
        for _ in 0..bulk() / 3 {
            let (name, present) = model.random_change(&mut run.rng);
            cluster.sync(&model, &name, present).await;
        }
        for _ in 0..KILLS_PER_RESTART_ROUND {
            run.start_and_kill("first-sync", window, &model).await;
        }
        let Some(p) = run.start_and_converge("first-sync", &model).await else {
            run.report.probes = prober.finish();
            return run.report;
        };
        proxy = p;
    }

    run.phase("first syncs");

    // 4. Incremental syncs, killed. Changes go in one by one, each synced
    //    at once (minSyncPeriod 0); the kill comes a random moment after a
    //    random one of them, and the rest land while the proxy is down.
    for _ in 0..INCREMENTAL_PER_ROUND * rounds() {
        let changes = 5 + run.rng.below(20);
        let kill_after = run.rng.below(changes);
        let mut running = Some(proxy);
        for i in 0..changes {
            let (name, present) = model.random_change(&mut run.rng);
            cluster.sync(&model, &name, present).await;
            if i == kill_after
                && let Some(p) = running.take()
            {
                tokio::time::sleep(run.rng.duration(Duration::from_millis(300))).await;
                run.kill("incremental", p, &model);
            }
        }
        let Some(p) = run.start_and_converge("incremental", &model).await else {
            run.report.probes = prober.finish();
            return run.report;
        };
        proxy = p;
    }
    run.report.probes = prober.finish();
    run.phase("incremental");

    // 5. Against a clean start of the same cluster.
    let after_faults = kernel_state();
    proxy.kill();
    cleanup_node();
    if let Some(clean) = run.start_and_converge("clean", &model).await {
        let clean_state = kernel_state();
        if clean_state != after_faults {
            run.report.problems.push(format!(
                "after the kills the node differs from a clean start:\n{}",
                diff(&clean_state, &after_faults)
            ));
        }
        clean.kill();
    }
    run.phase("clean start");
    run.report
}

/// The lines only in `want` (`-`) and only in `got` (`+`).
fn diff(want: &str, got: &str) -> String {
    let w: BTreeSet<&str> = want.lines().collect();
    let g: BTreeSet<&str> = got.lines().collect();
    let mut out: Vec<String> = w.difference(&g).map(|l| format!("- {l}")).collect();
    out.extend(g.difference(&w).map(|l| format!("+ {l}")));
    out.join("\n")
}
