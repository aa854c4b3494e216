//! Someone else tampering with the node's kernel state while `sluice-proxy`
//! runs, in the IPVS VM: the real binary (against the fake API server, the
//! cluster does not change) with `--ipvs-sync-period 5s`, while a prober
//! connects through four untouched Services.
//!
//! One tamper at a time, from a seeded generator (the seed is printed;
//! `SLUICE_TAMPER_SEED` replays a run, `SLUICE_TAMPER_ROUNDS` sets how many,
//! default 10: every kind once in a random order, then random kinds), on
//! the bulk Services or on the rules all Services share:
//!
//! * `ipvsadm -D` (a virtual server deleted), `-E` (its scheduler changed),
//!   `-d` (a real server deleted), `-e` (a real server's weight changed);
//! * `ip addr del` of a ClusterIP on kube-ipvs0;
//! * `ipset del` of a KUBE-CLUSTER-IP member, `ipset add` of a foreign one;
//! * `iptables -D` of one rule of one of our chains, `-F` of one of our
//!   chains, `-D` of a jump from a built-in chain to ours.
//!
//! Asserted for each: `kubeproxy_sluice_drift_repairs_total` grows by
//! exactly the objects the tamper changed, per object, and by nothing else;
//! when it has, the node's state (`ipvsadm -Sn`, our rules, our set
//! members, kube-ipvs0's addresses, read back independently) is what it was
//! before the tamper; and that happened within one sync period plus the
//! longest full sync of the run (durations from the proxy's own `synced`
//! log lines). Each tamper lands just after a sync ended (one landing while
//! a sync reads the kernel is repaired a sync later; a rule changed while a
//! full sync is between its `iptables-save` and its restore is repaired by
//! that restore unseen, so uncounted). Before any tamper, two quiet full
//! syncs count nothing.
//! Throughout, probes through the untouched Services see no failure.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use sluice_tests::fake_api::FakeApiServer;
use sluice_tests::netns::{ask_from, echo_server, pod, sh};

#[test]
fn tamper_in_the_ipvs_vm() {
    sluice_tests::vm::run_guest_tests("guest_tamper");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the IPVS VM"]
async fn guest_tamper_repaired_within_one_sync_period_and_counted() {
    sluice_tests::vm::assert_in_vm();
    let seed = seed();
    println!("tamper: seed {seed} (SLUICE_TAMPER_SEED replays it)");
    let api = FakeApiServer::start().await;
    let kubeconfig = Path::new("/tmp/tamper-kubeconfig.yaml");
    write_kubeconfig(kubeconfig, &api.url());
    for (n, name) in PODS {
        pod(n);
        echo_server(name, 8080, name);
    }
    let services = services();
    create(kubeconfig, &services).await;
    let proxy = Proxy::start(kubeconfig);
    let want = Observed::of(&services);
    converge(&want).await;

    // Quiet: two periodic full syncs with nothing to repair count nothing.
    let mut synced_at = next_sync_end(last_sync()).await;
    synced_at = next_sync_end(synced_at).await;
    let quiet = repairs();
    assert!(
        quiet.values().all(|n| *n == 0),
        "drift counted on a quiet node: {quiet:?}"
    );
    let reference = kernel_state();
    next_sync_end(synced_at).await;

    let prober = Prober::start(&services);
    let mut rng = Rng(seed);
    let mut results = Vec::new();
    let mut first: Vec<Tamper> = Tamper::ALL.to_vec();
    for round in 0..rounds() {
        let kind = if first.is_empty() {
            *rng.pick(&Tamper::ALL)
        } else {
            first.remove(rng.below(first.len() as u64) as usize)
        };
        // Each tamper lands just after a sync ended, so the next full sync
        // sees it whole: one that landed while a sync read the kernel would
        // be repaired only by the sync after (two full syncs later), and a
        // rule changed between a sync's iptables-save and its restore is
        // repaired by that restore unseen, so not counted.
        next_sync_end(last_sync()).await;
        let before = repairs();
        let (what, expected) = kind.apply(&mut rng, &services);
        let outcome = match wait_counted(&before, &expected).await {
            // Counted: the sync that repaired it has ended; the node must
            // be back to what it was.
            Ok(took) if kernel_state() == reference => Ok(took),
            Ok(_) => Err(format!(
                "counted, but the node differs from before:\n{}",
                diff(&reference, &kernel_state())
            )),
            Err(e) => Err(e),
        };
        println!(
            "  {round:>2} {:<24} {what:<56} {}",
            kind.label(),
            match &outcome {
                Ok(d) => format!("repaired and counted in {:.1} s", d.as_secs_f64()),
                Err(e) => e.clone(),
            }
        );
        results.push((kind, what, outcome));
    }
    let probes = prober.finish();
    let counted = repairs();
    let full_syncs = full_sync_times();
    drop(proxy);

    // A tamper lands as a sync ends; the full sync that repairs it starts
    // one sync period later: the bound is the period plus the longest full
    // sync, plus the polling.
    let longest = full_syncs.iter().copied().max().unwrap_or_default();
    let bound = SYNC_PERIOD + longest + POLL_SLACK;
    let mut problems = Vec::new();
    let mut by_kind: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (kind, what, outcome) in &results {
        match outcome {
            Ok(d) if *d <= bound => by_kind
                .entry(kind.label())
                .or_default()
                .push(d.as_secs_f64()),
            Ok(d) => problems.push(format!("{what}: repaired in {d:.1?}, over {bound:.1?}")),
            Err(e) => problems.push(format!("{what}: {e}")),
        }
    }
    println!(
        "tamper: {} tampers, {} probes through untouched Services, {} failed; \
         {} full syncs, longest {longest:.1?}, bound {bound:.1?}",
        results.len(),
        probes.attempts,
        probes.failures.len(),
        full_syncs.len(),
    );
    for (kind, times) in &by_kind {
        let max = times.iter().copied().fold(0.0, f64::max);
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        println!(
            "  {kind:<24} x{:<3} repaired in mean {mean:.1} s, max {max:.1} s",
            times.len()
        );
    }
    println!("  kubeproxy_sluice_drift_repairs_total: {counted:?}");
    if !probes.failures.is_empty() {
        problems.push(format!(
            "{} of {} probes through untouched Services failed: {:#?}",
            probes.failures.len(),
            probes.attempts,
            probes.failures.iter().take(20).collect::<Vec<_>>()
        ));
    }
    assert!(
        problems.is_empty(),
        "seed {seed} (SLUICE_TAMPER_SEED={seed} replays it):\n{}",
        problems.join("\n")
    );
}

// ------------------------------------------------------------- parameters

/// `--ipvs-sync-period`: how often a full sync repairs drift.
const SYNC_PERIOD: Duration = Duration::from_secs(5);
/// How late the test may see a counter that moved.
const POLL_SLACK: Duration = Duration::from_millis(500);
/// How long a tamper may go uncounted (or a sync not end) before the test
/// gives up (full syncs take seconds to tens of seconds in the emulated VM
/// on a loaded host; the bound asserted is computed from them).
const GIVE_UP: Duration = Duration::from_secs(90);
const NODE: &str = "node-1";
const PODS: [(u8, &str); 2] = [(41, "pod41"), (42, "pod42")];
/// Bulk Services, the ones tampered with.
const BULK: u8 = 16;
const METRICS: &str = "127.0.0.1:10249";

fn seed() -> u64 {
    match std::env::var("SLUICE_TAMPER_SEED") {
        Ok(s) => s.trim().parse().expect("SLUICE_TAMPER_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    }
}

fn rounds() -> usize {
    std::env::var("SLUICE_TAMPER_ROUNDS").map_or(10, |v| {
        v.trim().parse().expect("SLUICE_TAMPER_ROUNDS is a number")
    })
}

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------- the cluster

/// A Service: name, ClusterIP, endpoint addresses, and for the stable ones
/// the pods that may answer.
#[derive(Debug, Clone)]
struct Svc {
    name: String,
    vip: Ipv4Addr,
    endpoints: Vec<Ipv4Addr>,
    answers: Vec<&'static str>,
}

impl Svc {
    fn stable(&self) -> bool {
        !self.answers.is_empty()
    }
}

fn services() -> Vec<Svc> {
    let pod_ip = |n: u8| Ipv4Addr::new(10, 244, n, 2);
    let mut out = vec![
        Svc {
            name: "stable-0".into(),
            vip: Ipv4Addr::new(10, 96, 7, 10),
            endpoints: vec![pod_ip(41)],
            answers: vec!["pod41"],
        },
        Svc {
            name: "stable-1".into(),
            vip: Ipv4Addr::new(10, 96, 7, 11),
            endpoints: vec![pod_ip(42)],
            answers: vec!["pod42"],
        },
        Svc {
            name: "stable-2".into(),
            vip: Ipv4Addr::new(10, 96, 7, 12),
            endpoints: vec![pod_ip(41), pod_ip(42)],
            answers: vec!["pod41", "pod42"],
        },
        Svc {
            name: "stable-3".into(),
            vip: Ipv4Addr::new(10, 96, 7, 13),
            endpoints: vec![pod_ip(41), pod_ip(42)],
            answers: vec!["pod41", "pod42"],
        },
    ];
    // Bulk Services: two endpoints each that nobody answers on (only the
    // tables matter for these).
    for n in 0..BULK {
        out.push(Svc {
            name: format!("bulk-{n}"),
            vip: Ipv4Addr::new(10, 96, 20, n + 1),
            endpoints: vec![Ipv4Addr::new(10, 245, n, 1), Ipv4Addr::new(10, 245, n, 2)],
            answers: Vec::new(),
        });
    }
    out
}

fn bulk(services: &[Svc]) -> Vec<&Svc> {
    services.iter().filter(|s| !s.stable()).collect()
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

async fn apply<K>(api: &Api<K>, name: &str, obj: &Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let pp = PatchParams::apply("tamper").force();
    api.patch(name, &pp, &Patch::Apply(obj))
        .await
        .unwrap_or_else(|e| panic!("apply {name}: {e}"));
}

/// The Node, and each Service with its EndpointSlice (TCP 80 → 8080).
async fn create(kubeconfig: &Path, services: &[Svc]) {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kube config");
    let client = kube::Client::try_from(cfg).expect("kube client");
    let nodes: Api<Node> = Api::all(client.clone());
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client, "default");
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}});
    apply(&nodes, NODE, &node).await;
    for s in services {
        let vip = s.vip.to_string();
        let svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": s.name, "namespace": "default"},
            "spec": {"type": "ClusterIP", "clusterIP": vip, "clusterIPs": [vip],
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
        });
        let endpoints: Vec<Value> = s
            .endpoints
            .iter()
            .map(|ip| {
                json!({"addresses": [ip.to_string()], "conditions": {"ready": true},
                       "nodeName": NODE})
            })
            .collect();
        let slice = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": s.name, "namespace": "default",
                         "labels": {"kubernetes.io/service-name": s.name}},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
        });
        apply(&svcs, &s.name, &svc).await;
        apply(&slices, &s.name, &slice).await;
    }
}

// ------------------------------------------------------------------ the proxy

/// A running `sluice-proxy`; killed when dropped.
struct Proxy(Child);

impl Proxy {
    fn start(kubeconfig: &Path) -> Self {
        let log = std::fs::File::create("/tmp/tamper-proxy.log").expect("proxy log file");
        let child = Command::new(env!("CARGO_BIN_EXE_sluice-proxy"))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args([
                "--hostname-override",
                NODE,
                "--healthz-bind-address",
                "127.0.0.1:10256",
                "--metrics-bind-address",
                METRICS,
                "--ipvs-sync-period",
                "5s",
                "--ipvs-min-sync-period",
                "0s",
            ])
            // The per-sync debug line says how long each full sync took.
            .env("RUST_LOG", "info,sluice_proxy::app=debug")
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start sluice-proxy");
        Proxy(child)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `/metrics`, or empty.
fn scrape() -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(METRICS) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let req = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if s.write_all(req.as_bytes()).is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// When the proxy last finished a sync (Unix seconds; 0 if never).
fn last_sync() -> f64 {
    scrape()
        .lines()
        .find_map(|l| l.strip_prefix("kubeproxy_sync_proxy_rules_last_timestamp_seconds "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn synced() -> bool {
    last_sync() > 0.0
}

/// Waits until a sync ends after the one that ended at `after`; returns
/// when it ended.
async fn next_sync_end(after: f64) -> f64 {
    let t0 = Instant::now();
    loop {
        let t = last_sync();
        if t > after {
            return t;
        }
        assert!(t0.elapsed() < GIVE_UP, "no sync ended within {GIVE_UP:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const OBJECTS: [&str; 6] = [
    "virtual_server",
    "real_server",
    "address",
    "set",
    "set_member",
    "rule",
];

/// `kubeproxy_sluice_drift_repairs_total` by object (0 when absent).
fn repairs() -> BTreeMap<&'static str, u64> {
    let text = scrape();
    OBJECTS
        .iter()
        .map(|o| {
            let prefix = format!("kubeproxy_sluice_drift_repairs_total{{object=\"{o}\"}} ");
            let n = text
                .lines()
                .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
                .unwrap_or(0);
            (*o, n)
        })
        .collect()
}

// ----------------------------------------------------------- the node's state

/// Everything of ours the kernel reports, canonical: IPVS lines sorted,
/// our chains' rules in order, the jumps to them sorted (a repaired jump
/// is inserted first in its built-in chain), set members and addresses
/// sorted.
fn kernel_state() -> String {
    let mut ipvs: Vec<String> = sh("ipvsadm -Sn").lines().map(str::to_owned).collect();
    ipvs.sort();
    let saved = sh("iptables-save -t nat; iptables-save -t filter");
    let ours: Vec<&str> = saved
        .lines()
        .filter(|l| l.starts_with("-A KUBE-"))
        .collect();
    let mut jumps: Vec<&str> = saved
        .lines()
        .filter(|l| l.starts_with("-A ") && !l.starts_with("-A KUBE-") && l.contains("KUBE-"))
        .collect();
    jumps.sort();
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
        "{}\n--\n{}\n--\n{}\n--\n{}\n--\n{}",
        ipvs.join("\n"),
        ours.join("\n"),
        jumps.join("\n"),
        sets.join("\n"),
        sh("ip -o addr show dev kube-ipvs0 2>/dev/null | awk '{print $4}' | sort")
    )
}

/// The parts of the node's state the Services predict.
#[derive(Debug, Default, PartialEq, Eq)]
struct Observed {
    virtual_servers: BTreeSet<String>,
    real_servers: BTreeSet<(String, String)>,
    addresses: BTreeSet<String>,
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
        o
    }

    fn of(services: &[Svc]) -> Self {
        let mut o = Observed::default();
        for s in services {
            let vs = format!("{}:80", s.vip);
            for ep in &s.endpoints {
                o.real_servers.insert((vs.clone(), format!("{ep}:8080")));
            }
            o.virtual_servers.insert(vs);
            o.addresses.insert(s.vip.to_string());
        }
        o
    }
}

/// Waits for the first sync to program the Services and the state to
/// hold still for a second.
async fn converge(want: &Observed) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if Observed::read() == *want && synced() {
            let before = kernel_state();
            tokio::time::sleep(Duration::from_secs(1)).await;
            if kernel_state() == before {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the proxy did not program the Services within 90 s: {:?}",
            Observed::read()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the drift counters grew by exactly `expected` since
/// `before` (they move when the sync that repaired ends); how long that
/// took, or what they grew by instead.
async fn wait_counted(
    before: &BTreeMap<&'static str, u64>,
    expected: &BTreeMap<&'static str, u64>,
) -> Result<Duration, String> {
    let t0 = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let grown: BTreeMap<&str, u64> = repairs()
            .iter()
            .map(|(o, n)| (*o, n - before[o]))
            .filter(|(_, n)| *n > 0)
            .collect();
        if grown == *expected {
            return Ok(t0.elapsed());
        }
        let over = grown
            .iter()
            .any(|(o, n)| expected.get(o).is_none_or(|e| n > e));
        if over || t0.elapsed() > GIVE_UP {
            return Err(format!(
                "drift repairs counted {grown:?} after {:.1?}, expected {expected:?}",
                t0.elapsed()
            ));
        }
    }
}

/// How long each full sync took, from the proxy's `synced` debug lines.
fn full_sync_times() -> Vec<Duration> {
    let log = std::fs::read_to_string("/tmp/tamper-proxy.log").unwrap_or_default();
    log.lines()
        .map(strip_colours)
        .filter(|l| l.contains(" synced") || l.contains("synced "))
        .filter(|l| l.contains("full=true"))
        .filter_map(|l| {
            let ms = l.split("took_ms=").nth(1)?.split_whitespace().next()?;
            Some(Duration::from_millis(ms.parse().ok()?))
        })
        .collect()
}

fn strip_colours(line: &str) -> String {
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
}

/// The lines only in `want` (`-`) and only in `got` (`+`).
fn diff(want: &str, got: &str) -> String {
    let w: BTreeSet<&str> = want.lines().collect();
    let g: BTreeSet<&str> = got.lines().collect();
    let mut out: Vec<String> = w.difference(&g).map(|l| format!("- {l}")).collect();
    out.extend(g.difference(&w).map(|l| format!("+ {l}")));
    out.join("\n")
}

// ----------------------------------------------------------------- tampering

#[derive(Debug, Clone, Copy)]
enum Tamper {
    DeleteVirtualServer,
    EditVirtualServer,
    DeleteRealServer,
    EditRealServer,
    DeleteAddress,
    DeleteSetMember,
    AddSetMember,
    DeleteRule,
    FlushChain,
    DeleteJump,
}

impl Tamper {
    const ALL: [Tamper; 10] = [
        Tamper::DeleteVirtualServer,
        Tamper::EditVirtualServer,
        Tamper::DeleteRealServer,
        Tamper::EditRealServer,
        Tamper::DeleteAddress,
        Tamper::DeleteSetMember,
        Tamper::AddSetMember,
        Tamper::DeleteRule,
        Tamper::FlushChain,
        Tamper::DeleteJump,
    ];

    fn label(self) -> &'static str {
        match self {
            Tamper::DeleteVirtualServer => "ipvsadm -D",
            Tamper::EditVirtualServer => "ipvsadm -E",
            Tamper::DeleteRealServer => "ipvsadm -d",
            Tamper::EditRealServer => "ipvsadm -e",
            Tamper::DeleteAddress => "ip addr del kube-ipvs0",
            Tamper::DeleteSetMember => "ipset del",
            Tamper::AddSetMember => "ipset add",
            Tamper::DeleteRule => "iptables -D (our chain)",
            Tamper::FlushChain => "iptables -F (our chain)",
            Tamper::DeleteJump => "iptables -D (jump)",
        }
    }

    /// Tampers; returns the command run and the drift repairs it should
    /// count, by object.
    fn apply(self, rng: &mut Rng, services: &[Svc]) -> (String, BTreeMap<&'static str, u64>) {
        let bulk = bulk(services);
        let s = *rng.pick(&bulk);
        let rs = *rng.pick(&s.endpoints);
        let (cmd, expected): (String, Vec<(&str, u64)>) = match self {
            Tamper::DeleteVirtualServer => (
                format!("ipvsadm -D -t {}:80", s.vip),
                vec![
                    ("virtual_server", 1),
                    ("real_server", s.endpoints.len() as u64),
                ],
            ),
            Tamper::EditVirtualServer => (
                format!("ipvsadm -E -t {}:80 -s wlc", s.vip),
                vec![("virtual_server", 1)],
            ),
            Tamper::DeleteRealServer => (
                format!("ipvsadm -d -t {}:80 -r {rs}:8080", s.vip),
                vec![("real_server", 1)],
            ),
            Tamper::EditRealServer => (
                format!("ipvsadm -e -t {}:80 -r {rs}:8080 -m -w 7", s.vip),
                vec![("real_server", 1)],
            ),
            Tamper::DeleteAddress => (
                format!("ip addr del {}/32 dev kube-ipvs0", s.vip),
                vec![("address", 1)],
            ),
            Tamper::DeleteSetMember => (
                format!("ipset del KUBE-CLUSTER-IP {},tcp:80", s.vip),
                vec![("set_member", 1)],
            ),
            Tamper::AddSetMember => (
                format!(
                    "ipset add KUBE-CLUSTER-IP 10.96.99.{},tcp:80",
                    1 + rng.below(200)
                ),
                vec![("set_member", 1)],
            ),
            Tamper::DeleteRule => {
                let (table, chain, n) = our_chain(rng);
                let nth = 1 + rng.below(n as u64);
                (
                    format!("iptables -t {table} -D {chain} {nth}"),
                    vec![("rule", 1)],
                )
            }
            Tamper::FlushChain => {
                let (table, chain, n) = our_chain(rng);
                (
                    format!("iptables -t {table} -F {chain}"),
                    vec![("rule", n as u64)],
                )
            }
            Tamper::DeleteJump => {
                let (table, rule) = jump(rng);
                // `-A CHAIN …` as iptables-save prints it, comment quoted.
                (
                    format!("iptables -t {table} -D {}", &rule[3..]),
                    vec![("rule", 1)],
                )
            }
        };
        sh(&cmd);
        (cmd, expected.into_iter().collect())
    }
}

/// A random chain of ours that holds rules: (table, chain, rule count).
fn our_chain(rng: &mut Rng) -> (&'static str, String, usize) {
    let mut chains: Vec<(&'static str, String, usize)> = Vec::new();
    for table in ["nat", "filter"] {
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for l in sh(&format!("iptables-save -t {table}")).lines() {
            if let Some(rest) = l.strip_prefix("-A KUBE-") {
                let chain = rest.split_whitespace().next().unwrap_or_default();
                *count.entry(format!("KUBE-{chain}")).or_default() += 1;
            }
        }
        chains.extend(count.into_iter().map(|(c, n)| (table, c, n)));
    }
    rng.pick(&chains).clone()
}

/// A random jump from a built-in chain to one of ours: (table, the rule
/// as `iptables-save` prints it).
fn jump(rng: &mut Rng) -> (&'static str, String) {
    let mut jumps = Vec::new();
    for table in ["nat", "filter"] {
        for l in sh(&format!("iptables-save -t {table}")).lines() {
            if l.starts_with("-A ") && !l.starts_with("-A KUBE-") && l.contains("-j KUBE-") {
                jumps.push((table, l.to_owned()));
            }
        }
    }
    assert!(!jumps.is_empty(), "no jumps to our chains");
    rng.pick(&jumps).clone()
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
    fn start(services: &[Svc]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let targets: Vec<Svc> = services.iter().filter(|s| s.stable()).cloned().collect();
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            let mut stats = ProbeStats::default();
            while !flag.load(Ordering::Relaxed) {
                for s in &targets {
                    let addr = SocketAddr::from((s.vip, 80));
                    stats.attempts += 1;
                    let t = started.elapsed();
                    match ask_from(None, addr, "ping", Duration::from_secs(3)) {
                        Ok(r) if s.answers.iter().any(|p| r.starts_with(&format!("{p} "))) => {}
                        Ok(r) => stats
                            .failures
                            .push(format!("{t:.1?} {}: wrong answer {r:?}", s.name)),
                        Err(e) => stats.failures.push(format!("{t:.1?} {}: {e}", s.name)),
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
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
