//! Bad input from the API server: the real kube-rs watchers against the fake
//! API server feed the snapshot, the incremental planner plans it, and the
//! app's problem reporting turns what is wrong into log lines and Warning
//! Events — which must reach the API server. Nothing panics, each bad part
//! is skipped, and every other Service is planned as if the bad ones were
//! not there.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ipvs_sys::ServiceKey;
use serde_json::{Value, json};
use sluice_proxy::app::Planning;
use sluice_proxy::app::events::{ORPHAN_GRACE, OrphanSlices, ProblemLog, publisher};
use sluice_proxy::plan::{DesiredState, NodeFacts, PlannerConfig};
use sluice_proxy::source::{Dirty, Snapshot, SourceEvent};
use sluice_tests::fake_api::FakeApiServer;
use sluice_tests::fixtures;
use tokio::sync::mpsc;

fn service(name: &str, ip: &str, spec: Value) -> Value {
    fixtures::service("default", name, ip, json!({ "spec": spec }))
}

fn slice(name: &str, svc: &str, ips: &[String]) -> Value {
    fixtures::endpoint_slice(
        "default",
        name,
        svc,
        fixtures::ready_endpoints(ips),
        json!({}),
    )
}

fn ips(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn tcp(s: &str) -> ServiceKey {
    ServiceKey::tcp(s.parse::<SocketAddr>().unwrap())
}

fn real_servers(d: &DesiredState, vip: &str) -> BTreeSet<String> {
    d.virtual_servers
        .get(&tcp(vip))
        .map(|vs| vs.destinations.keys().map(ToString::to_string).collect())
        .unwrap_or_default()
}

/// The Warning Events on one object: (kind, name) → notes.
fn notes(api: &FakeApiServer, kind: &str, name: &str) -> Vec<String> {
    api.events()
        .iter()
        .filter(|e| {
            e["regarding"]["kind"] == kind
                && e["regarding"]["name"] == name
                && e["type"] == "Warning"
                && e["reason"] == "InvalidInput"
        })
        .map(|e| e["note"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_skipped_reported_as_events_and_harms_no_other_service() {
    let api = FakeApiServer::start().await;
    api.apply(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}}));

    // The healthy neighbour, with one endpoint in a slice of its own and
    // one in a slice that also carries an invalid address.
    api.apply(&service("web", "10.96.3.10", json!({})));
    api.apply(&slice("web-1", "web", &ips(&["10.244.1.2"])));
    api.apply(&slice(
        "web-2",
        "web",
        &ips(&["10.244.1.999", "10.244.1.3"]),
    ));
    let mut bad_type = slice("web-3", "web", &ips(&["10.244.1.4"]));
    bad_type["addressType"] = json!("IPv5");
    api.apply(&bad_type);

    // Invalid IPs, ports, protocols and duplicates.
    api.apply(&service("bad-cluster-ip", "10.96.3.300", json!({})));
    api.apply(&service(
        "bad-ports",
        "10.96.3.11",
        json!({"ports": [
            {"name": "a", "port": 70000, "protocol": "TCP"},
            {"name": "b", "port": 80, "protocol": "ICMP"},
            {"name": "c", "port": 81, "protocol": "TCP"},
            {"name": "d", "port": 81, "protocol": "TCP"},
            {"name": "c", "port": 82, "protocol": "TCP"},
        ]}),
    ));
    api.apply(&service(
        "bad-external",
        "10.96.3.12",
        json!({"externalIPs": ["1.2.3.999", "127.0.0.1", "203.0.113.5"],
               "loadBalancerSourceRanges": ["10.0.0.0/33"]}),
    ));

    // Huge objects: 5,000 ports (valid: planned in full); 5,000 ports on
    // 14 addresses (70,000 virtual servers, over the per-Service limit:
    // rejected as a whole); 10,000 endpoints of which 100 are invalid; a
    // 1 MiB annotation value where a scheduler name belongs.
    let many_ports: Vec<Value> = (0..5000)
        .map(|i| json!({"name": format!("p{i}"), "port": 1000 + i, "protocol": "TCP"}))
        .collect();
    api.apply(&service(
        "huge-ports",
        "10.96.3.13",
        json!({"ports": many_ports}),
    ));
    let externals: Vec<String> = (1..=13).map(|i| format!("198.51.100.{i}")).collect();
    api.apply(&service(
        "too-big",
        "10.96.3.14",
        json!({"ports": many_ports, "externalIPs": externals}),
    ));
    api.apply(&service("huge-slice", "10.96.3.15", json!({})));
    let endpoints: Vec<String> = (0..10_000)
        .map(|i| {
            if i % 100 == 7 {
                format!("10.250.{}.{}.1", i / 256, i % 256)
            } else {
                format!("10.250.{}.{}", i / 256, i % 256)
            }
        })
        .collect();
    api.apply(&slice("huge-slice-1", "huge-slice", &endpoints));
    let mut annotated = service("big-annotation", "10.96.3.16", json!({}));
    annotated["metadata"]["annotations"] =
        json!({"sluice.dev/ipvs-scheduler": "x".repeat(1 << 20)});
    api.apply(&annotated);
    api.apply(&slice(
        "big-annotation-1",
        "big-annotation",
        &ips(&["10.244.2.2"]),
    ));

    // EndpointSlices whose Service does not exist: a hand-made one (a
    // mistake: reported) and one the EndpointSlice controller owns (its
    // Service was just deleted; the garbage collector removes it: quiet).
    api.apply(&slice("ghost-1", "ghost", &ips(&["10.244.9.2"])));
    let mut owned = slice("gone-1", "gone", &ips(&["10.244.9.3"]));
    owned["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Service",
        "name": "gone", "uid": "4f1e8c3a-0000-4000-8000-000000000001", "controller": true}]);
    api.apply(&owned);

    // The proxy's own pipeline: watchers → snapshot → planner → reports.
    let (tx, mut rx) = mpsc::channel::<SourceEvent>(1024);
    let source = tokio::spawn(sluice_proxy::source::kube::run(
        api.client(),
        "node-1".into(),
        None,
        tx,
    ));
    let mut snap = Snapshot::default();
    let mut dirty = Dirty::default();
    while !snap.synced() {
        let ev = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("initial sync")
            .expect("source running");
        dirty.absorb(snap.apply(ev));
    }
    let node = snap.nodes.get("node-1").expect("the Node").clone();
    let facts = NodeFacts::from_node(&node, ["192.168.50.10".parse().unwrap()]);
    let cfg = PlannerConfig::default();
    let mut planning = Planning::default();
    let mut orphans = OrphanSlices::default();
    let mut log = ProblemLog::default();
    let reporter = publisher(api.client(), "node-1");
    planning.update(&snap, &dirty, facts.clone(), &cfg);
    orphans.update(&snap, &dirty.services, Instant::now());
    assert_eq!(
        orphans.problems(Instant::now(), ORPHAN_GRACE).count(),
        0,
        "a fresh orphan may be a slice that arrived before its Service"
    );
    let mut problems = planning.problems();
    // The grace period has passed (the proxy reports after ORPHAN_GRACE).
    problems.extend(
        orphans
            .problems(Instant::now() + ORPHAN_GRACE, ORPHAN_GRACE)
            .cloned(),
    );
    let reported = log.publish(problems.clone(), Some(&reporter)).await;
    assert!(reported > 0);

    // Every other Service is planned as if nothing were wrong.
    let d = planning.desired();
    assert_eq!(
        real_servers(&d, "10.96.3.10:80"),
        BTreeSet::from(["10.244.1.2:8080".to_owned(), "10.244.1.3:8080".to_owned()]),
        "web: both valid endpoints, nothing from the bad slice"
    );
    assert!(d.virtual_servers.contains_key(&tcp("10.96.3.11:81")));
    for port in [80, 82] {
        assert!(
            !d.virtual_servers
                .contains_key(&tcp(&format!("10.96.3.11:{port}"))),
            "bad-ports: {port} skipped"
        );
    }
    assert!(d.virtual_servers.contains_key(&tcp("203.0.113.5:80")));
    assert!(!d.virtual_servers.contains_key(&tcp("127.0.0.1:80")));
    let huge = d
        .virtual_servers
        .keys()
        .filter(
            |k| matches!(k, ServiceKey::Inet { addr, .. } if addr.ip().to_string() == "10.96.3.13"),
        )
        .count();
    assert_eq!(huge, 5000, "5,000 ports planned in full");
    assert!(
        !d.virtual_servers.keys().any(
            |k| matches!(k, ServiceKey::Inet { addr, .. } if addr.ip().to_string() == "10.96.3.14")
        ),
        "over the limit: not planned at all"
    );
    assert_eq!(real_servers(&d, "10.96.3.15:80").len(), 9_900);
    assert_eq!(
        real_servers(&d, "10.96.3.16:80"),
        BTreeSet::from(["10.244.2.2:8080".to_owned()]),
        "the annotation is ignored, the Service served with the default scheduler"
    );
    let svc16 = &d.virtual_servers[&tcp("10.96.3.16:80")];
    assert_eq!(svc16.service.scheduler.name(), "rr");
    assert!(!d.virtual_servers.keys().any(
        |k| matches!(k, ServiceKey::Inet { addr, .. } if addr.ip().to_string() == "10.96.3.300")
    ),);

    // Each bad object has a Warning Event on it in the API server.
    let expect: &[(&str, &str, &str)] = &[
        ("Service", "bad-cluster-ip", "no usable clusterIP"),
        ("Service", "bad-ports", "invalid port 70000"),
        ("Service", "bad-ports", "unsupported protocol \"ICMP\""),
        ("Service", "bad-ports", "duplicate"),
        (
            "Service",
            "bad-external",
            "invalid externalIP \"1.2.3.999\"",
        ),
        (
            "Service",
            "bad-external",
            "externalIP 127.0.0.1 is loopback",
        ),
        ("Service", "bad-external", "invalid loadBalancerSourceRange"),
        ("Service", "too-big", "not proxied"),
        ("Service", "big-annotation", "unknown IPVS scheduler"),
        ("EndpointSlice", "web-2", "invalid address \"10.244.1.999\""),
        ("EndpointSlice", "web-3", "unsupported addressType \"IPv5\""),
        ("EndpointSlice", "huge-slice-1", "more problems not shown"),
        ("EndpointSlice", "ghost-1", "does not exist"),
    ];
    let all_arrived = api
        .wait_for(Duration::from_secs(20), |api| {
            expect
                .iter()
                .all(|(k, n, text)| notes(api, k, n).iter().any(|note| note.contains(text)))
        })
        .await;
    let summary: Vec<String> = api
        .events()
        .iter()
        .map(|e| {
            format!(
                "{} {}: {}",
                e["regarding"]["kind"], e["regarding"]["name"], e["note"]
            )
        })
        .collect();
    assert!(all_arrived, "missing Events; got:\n{}", summary.join("\n"));
    // Capped per object, short, and none for valid objects.
    let huge_notes = notes(&api, "EndpointSlice", "huge-slice-1");
    assert_eq!(
        huge_notes.len(),
        17,
        "16 problems and a count: {huge_notes:?}"
    );
    assert!(huge_notes.iter().any(|n| n.contains("84 more problems")));
    for e in api.events() {
        let note = e["note"].as_str().unwrap_or_default();
        assert!(note.len() <= 1024, "note of {} bytes", note.len());
    }
    assert!(
        notes(&api, "Service", "big-annotation")
            .iter()
            .all(|n| n.len() < 200),
        "the 1 MiB value is not echoed"
    );
    for (kind, name) in [
        ("Service", "web"),
        ("EndpointSlice", "web-1"),
        ("Service", "huge-ports"),
        ("EndpointSlice", "gone-1"),
    ] {
        assert!(notes(&api, kind, name).is_empty(), "{kind} {name}");
    }

    // Reported once: the next sync with the same problems publishes nothing.
    let events_before = api.events().len();
    assert_eq!(log.publish(problems, Some(&reporter)).await, 0);

    // A fix lands incrementally; the rest stays as it was.
    api.apply(&service("bad-cluster-ip", "10.96.3.30", json!({})));
    api.apply(&slice("ghost-1", "web", &ips(&["10.244.1.5"])));
    let mut dirty = Dirty::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !(snap.services.values().any(|s| {
        matches!(&s.admission, sluice_proxy::model::Admission::Accepted(v)
            if v.cluster_ips.iter().any(|ip| ip.to_string() == "10.96.3.30"))
    }) && snap
        .slices_of(&sluice_proxy::source::ObjectKey::new("default", "web"))
        .count()
        == 4)
    {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("the fixes arrive")
            .unwrap();
        dirty.absorb(snap.apply(ev));
    }
    let changed = planning.update(&snap, &dirty, facts, &cfg);
    assert!(
        !changed.everything,
        "only the changed Services are re-planned"
    );
    orphans.update(&snap, &dirty.services, Instant::now());
    let mut problems = planning.problems();
    problems.extend(orphans.problems(Instant::now(), Duration::ZERO).cloned());
    assert!(
        !problems
            .iter()
            .any(|p| p.name == "bad-cluster-ip" || p.name == "ghost-1"),
        "{problems:?}"
    );
    assert_eq!(log.publish(problems, Some(&reporter)).await, 0);
    assert_eq!(api.events().len(), events_before, "no new Events");
    let d = planning.desired();
    assert!(d.virtual_servers.contains_key(&tcp("10.96.3.30:80")));
    assert_eq!(real_servers(&d, "10.96.3.10:80").len(), 3);
    assert_eq!(real_servers(&d, "10.96.3.15:80").len(), 9_900);
    source.abort();
}
