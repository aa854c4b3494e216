//! The API server goes away for a minute: the real `sluice-proxy` binary,
//! watching the fake API server through a kubeconfig, in the IPVS VM (the
//! app loop needs IPVS).
//!
//! What "untouched" means here, and why these observables: while the API
//! server is down the proxy keeps running its periodic full resync from its
//! cache (as kube-proxy's BoundedFrequencyRunner does; drift repair must not
//! stop because the control plane is away), so
//! `kubeproxy_sync_proxy_rules_last_timestamp_seconds` keeps advancing and
//! `/healthz` stays 200 — but those syncs change nothing:
//! `kubeproxy_sluice_netlink_operations_total` (every IPVS and address change
//! sent) does not move, `ipvsadm -Sn`, our iptables rules, our ipsets and
//! the addresses on kube-ipvs0 read back identical, and connections through
//! a ClusterIP keep working throughout. Changes made while it was down are
//! applied once it is back.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use serde_json::{Value, json};
use sluice_tests::fake_api::FakeApiServer;
use sluice_tests::fixtures;
use sluice_tests::netns::{ask_from, echo_server, pod, sh};

#[test]
fn api_outage_in_the_ipvs_vm() {
    sluice_tests::vm::run_guest_tests("guest_");
}

fn service(name: &str, ip: &str) -> Value {
    fixtures::service("default", name, ip, json!({}))
}

fn slice(name: &str, svc: &str, ips: &[&str]) -> Value {
    let eps = ips
        .iter()
        .map(|ip| fixtures::endpoint(ip, json!({"nodeName": "node-1"})))
        .collect();
    fixtures::endpoint_slice("default", name, svc, eps, json!({}))
}

struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        // SAFETY: sending SIGTERM to our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn http_get(port: u16, path: &str) -> String {
    fixtures::http_get(("127.0.0.1", port), path).unwrap_or_default()
}

/// A sample from `/metrics` (the value after the name), or NaN.
fn metric(name: &str) -> f64 {
    http_get(10249, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(f64::NAN)
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

fn via_cluster_ip(vip: &str) -> Result<String, String> {
    let addr: SocketAddr = vip.parse().unwrap();
    ask_from(None, addr, "ping", Duration::from_secs(3))
        .map(|r| r.split(' ').next().unwrap_or_default().to_owned())
        .map_err(|e| e.to_string())
}

async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}\n{}",
            sh("ipvsadm -Sn")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const METRIC_OPS: &str = "kubeproxy_sluice_netlink_operations_total";
const METRIC_LAST: &str = "kubeproxy_sync_proxy_rules_last_timestamp_seconds";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the IPVS VM"]
async fn guest_api_server_down_for_a_minute_leaves_the_data_plane_alone() {
    echo_server(&pod(41), 8080, "pod41");
    echo_server(&pod(42), 8080, "pod42");
    let api = FakeApiServer::start().await;
    api.apply(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}}));
    api.apply(&service("web", "10.96.2.10"));
    api.apply(&slice("web-1", "web", &["10.244.41.2"]));
    api.apply(&service("db", "10.96.2.20"));
    api.apply(&slice("db-1", "db", &["10.244.42.2"]));
    let kubeconfig = "/tmp/outage-kubeconfig.yaml";
    std::fs::write(
        kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             users:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context:\n    cluster: fake\n    user: u\n\
             current-context: c\n",
            api.url()
        ),
    )
    .unwrap();
    let _proxy = Proxy(
        Command::new(env!("CARGO_BIN_EXE_sluice-proxy"))
            .args([
                "--kubeconfig",
                kubeconfig,
                "--hostname-override",
                "node-1",
                "--healthz-bind-address",
                "127.0.0.1:10256",
                "--metrics-bind-address",
                "127.0.0.1:10249",
                "--ipvs-sync-period",
                "5s",
                "--ipvs-min-sync-period",
                "0s",
            ])
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sluice-proxy"),
    );
    // A finished sync (rules and sets are written after IPVS) that
    // programmed both Services.
    wait_until("the first sync", Duration::from_secs(60), || {
        let synced = metric(METRIC_LAST) > 0.0;
        let s = if synced {
            sh("ipvsadm -Sn")
        } else {
            String::new()
        };
        synced
            && s.contains("-a -t 10.96.2.10:80 -r 10.244.41.2:8080")
            && s.contains("-a -t 10.96.2.20:80 -r 10.244.42.2:8080")
    })
    .await;
    assert!(sh("ipset list KUBE-CLUSTER-IP").contains("10.96.2.20,tcp:80"));
    // Let a full resync pass so the counters are settled.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let before = kernel_state();
    let ops_before = metric(METRIC_OPS);
    let last_before = metric(METRIC_LAST);
    assert!(
        ops_before > 0.0 && last_before > 0.0,
        "{ops_before} {last_before}"
    );
    assert_eq!(via_cluster_ip("10.96.2.10:80").as_deref(), Ok("pod41"));

    // Down for a minute. Meanwhile the cluster changes: an endpoint is
    // added, a Service is deleted, another is created.
    api.set_down(true).await;
    api.apply(&slice("web-1", "web", &["10.244.41.2", "10.244.42.2"]));
    api.delete::<Service>(Some("default"), "db");
    api.apply(&service("late", "10.96.2.30"));
    api.apply(&slice("late-1", "late", &["10.244.42.2"]));
    let down_since = Instant::now();
    while down_since.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            via_cluster_ip("10.96.2.10:80").as_deref(),
            Ok("pod41"),
            "traffic through the ClusterIP while the API server is down"
        );
        assert_eq!(sh("ipvsadm -Sn"), before.split("\n--\n").next().unwrap());
    }
    assert_eq!(kernel_state(), before, "nothing touched during the outage");
    assert_eq!(metric(METRIC_OPS), ops_before, "no netlink change sent");
    let last_during = metric(METRIC_LAST);
    assert!(
        last_during > last_before + 30.0,
        "periodic resyncs go on from the cache: {last_before} -> {last_during}"
    );
    assert!(http_get(10256, "/healthz").starts_with("HTTP/1.1 200"));

    // Back: what changed meanwhile lands.
    api.set_down(false).await;
    wait_until("the catch-up", Duration::from_secs(90), || {
        let s = sh("ipvsadm -Sn");
        s.contains("-a -t 10.96.2.10:80 -r 10.244.42.2:8080")
            && s.contains("-a -t 10.96.2.30:80 -r 10.244.42.2:8080")
            && !s.contains("10.96.2.20")
    })
    .await;
    assert_eq!(via_cluster_ip("10.96.2.30:80").as_deref(), Ok("pod42"));
    wait_until(
        "the deleted Service's address",
        Duration::from_secs(10),
        || !sh("ip -o addr show dev kube-ipvs0").contains("10.96.2.20/"),
    )
    .await;
    assert!(metric(METRIC_OPS) > ops_before);
}
