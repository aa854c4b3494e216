//! Profiles the proxy's pure side at scale, without a kernel: N Services
//! × M endpoints go through the snapshot and the incremental planner, then
//! one endpoint changes. Prints time and memory (VmRSS, VmHWM) per stage.
//!
//! `cargo run --release -p sluice-proxy --example plan_profile -- 10000 10`

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Instant;

use serde_json::json;
use sluice_proxy::app::Planning;
use sluice_proxy::plan::{NodeFacts, PlannerConfig};
use sluice_proxy::source::{Dirty, Kind, Object, Snapshot, SourceEvent};

fn status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn report(stage: &str, started: Instant) {
    println!(
        "{stage:<40} {:>9.1} ms  rss {:>6} MB  peak {:>6} MB",
        started.elapsed().as_secs_f64() * 1e3,
        status("VmRSS:") / 1024,
        status("VmHWM:") / 1024
    );
}

fn service(i: u32) -> Object {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + i);
    Object::service(
        &serde_json::from_value(json!({
            "metadata": {"namespace": "bench", "name": format!("svc-{i}")},
            "spec": {"clusterIP": ip.to_string(), "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}
        }))
        .unwrap(),
        None,
    )
}

fn slice(i: u32, dests: u32, shift: u32) -> Object {
    let eps: Vec<_> = (0..dests)
        .map(|j| {
            let a = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + i * 16 + j + shift);
            json!({"addresses": [a.to_string()], "conditions": {"ready": true}})
        })
        .collect();
    Object::endpoint_slice(
        &serde_json::from_value(json!({
            "metadata": {"namespace": "bench", "name": format!("svc-{i}-abc"),
                         "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": eps
        }))
        .unwrap(),
        None,
    )
}

fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers"))
        .collect();
    let (n, m) = (
        args.first().copied().unwrap_or(10_000),
        args.get(1).copied().unwrap_or(10),
    );
    report("start", Instant::now());
    let t = Instant::now();
    let services: Vec<Object> = (0..n).map(service).collect();
    let slices: Vec<Object> = (0..n).map(|i| slice(i, m, 0)).collect();
    report("objects built", t);
    let t = Instant::now();
    let mut snap = Snapshot::default();
    let mut dirty = Dirty::default();
    dirty.absorb(snap.apply(SourceEvent::Replace(Kind::Service, services)));
    dirty.absorb(snap.apply(SourceEvent::Replace(Kind::EndpointSlice, slices)));
    dirty.absorb(snap.apply(SourceEvent::Replace(Kind::Node, vec![])));
    report("snapshot filled", t);
    let facts = NodeFacts {
        name: "bench-node".into(),
        addresses: BTreeSet::from(["192.168.1.10".parse().unwrap()]),
        ..NodeFacts::default()
    };
    let cfg = PlannerConfig::default();
    let mut planning = Planning::default();
    let t = Instant::now();
    let r = planning.update(&snap, &dirty, facts.clone(), &cfg);
    report(
        &format!("full plan ({} virtual servers)", r.virtual_servers.len()),
        t,
    );
    for round in 0..5 {
        let t = Instant::now();
        let d = snap.apply(SourceEvent::Apply(slice(n / 2, m, round + 1)));
        let r = planning.update(&snap, &d, facts.clone(), &cfg);
        let desired = planning.desired();
        report(
            &format!(
                "one endpoint change ({} vs, {} total)",
                r.virtual_servers.len(),
                desired.virtual_servers.len()
            ),
            t,
        );
    }
}
