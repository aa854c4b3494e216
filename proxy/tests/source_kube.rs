//! The API-server source against the real control plane
//! (`sluice_tests::cluster`), through the real kube-rs client: initial
//! sync, changes, kube-proxy's label filtering, a forced re-list after 410
//! Gone (etcd compacted past what the watchers saw, the API server
//! restarted so its watch cache starts over), and an API server that goes
//! away and comes back.

use std::time::Duration;

use serde_json::json;
use sluice_proxy::model::Admission;
use sluice_proxy::source::{Kind, ObjectKey, Snapshot, SourceEvent};
use sluice_tests::cluster::{self, Cluster, Component};
use sluice_tests::fixtures;
use tokio::sync::mpsc;

fn service(name: &str, ip: &str, labels: serde_json::Value) -> serde_json::Value {
    fixtures::service("default", name, ip, json!({"metadata": {"labels": labels}}))
}

fn slice(name: &str, svc: &str, ip: &str) -> serde_json::Value {
    fixtures::endpoint_slice(
        "default",
        name,
        svc,
        fixtures::ready_endpoints(&[ip]),
        json!({}),
    )
}

fn key<K>(name: &str) -> ObjectKey<K> {
    ObjectKey::new("default", name)
}

/// Applies events until `cond` holds (or fails after 20 s).
async fn until(
    snap: &mut Snapshot,
    rx: &mut mpsc::Receiver<SourceEvent>,
    what: &str,
    cond: impl Fn(&Snapshot) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond(snap) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ev)) => {
                snap.apply(ev);
            }
            _ => panic!("timed out waiting for: {what}"),
        }
    }
}

fn endpoint_ip(snap: &Snapshot, name: &str) -> Option<String> {
    let entry = snap.slices.get(&key(name))?;
    let Admission::Accepted(view) = &entry.admission else {
        return None;
    };
    Some(view.endpoints.first()?.ip.to_string())
}

fn apply(c: &Cluster, obj: &serde_json::Value) {
    c.apply_yaml(&obj.to_string()).unwrap();
}

/// How many times the admin listed Services so far (the audit log).
fn service_lists(c: &Cluster) -> usize {
    c.audit_events()
        .unwrap()
        .iter()
        .filter(|e| e.verb == "list" && e.resource().as_deref() == Some("services"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_sync_filter_and_recover() {
    if !cluster::available_or_skip("the proxy's API source") {
        return;
    }
    // Its own cluster: the API server is restarted.
    let c = Cluster::start().unwrap();
    apply(&c, &service("web", "10.96.0.10", json!({})));
    apply(
        &c,
        &service(
            "other-proxy",
            "10.96.0.11",
            json!({"service.kubernetes.io/service-proxy-name": "cilium"}),
        ),
    );
    apply(&c, &slice("web-1", "web", "10.244.1.2"));
    apply(&c, &fixtures::node("node-1", json!({})));
    apply(&c, &fixtures::node("node-2", json!({})));

    let (tx, mut rx) = mpsc::channel(1024);
    let source = tokio::spawn(sluice_proxy::source::kube::run(
        c.client().await,
        "node-1".into(),
        None,
        tx,
    ));
    let mut snap = Snapshot::default();
    until(&mut snap, &mut rx, "initial sync", Snapshot::synced).await;
    assert!(snap.services.contains_key(&key("web")));
    assert!(
        !snap.services.contains_key(&key("other-proxy")),
        "another proxy's Service is ignored"
    );
    assert_eq!(
        snap.nodes.keys().collect::<Vec<_>>(),
        vec!["node-1"],
        "only this node"
    );
    assert_eq!(endpoint_ip(&snap, "web-1").as_deref(), Some("10.244.1.2"));

    // Changes arrive and dirty only their Service.
    apply(&c, &slice("web-1", "web", "10.244.1.3"));
    let mut dirty = Default::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while endpoint_ip(&snap, "web-1").as_deref() != Some("10.244.1.3") {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("slice update")
            .unwrap();
        let d: sluice_proxy::source::Dirty = snap.apply(ev);
        sluice_proxy::source::Dirty::absorb(&mut dirty, d);
    }
    assert_eq!(dirty.services, [key("web")].into());
    let client = c.client().await;
    kube::Api::<k8s_openapi::api::core::v1::Service>::namespaced(client, "default")
        .delete("web", &Default::default())
        .await
        .unwrap();
    until(&mut snap, &mut rx, "service deletion", |s| {
        !s.services.contains_key(&key("web"))
    })
    .await;

    // History moves on past what the watchers saw (objects they do not
    // watch), etcd is compacted and the API server restarted: the watchers
    // resume from a resourceVersion that is gone, get 410 and re-list.
    for i in 0..5 {
        apply(
            &c,
            &json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("churn{i}"), "namespace": "default"}}),
        );
    }
    let lists_before = service_lists(&c);
    c.compact_etcd().unwrap();
    c.restart_component(Component::ApiServer).unwrap();
    apply(&c, &service("db", "10.96.0.20", json!({})));
    until(&mut snap, &mut rx, "db after re-list", |s| {
        s.services.contains_key(&key("db"))
    })
    .await;
    assert!(service_lists(&c) > lists_before, "a re-list happened");

    // The API server goes away and comes back; the watchers reconnect.
    c.stop_component(Component::ApiServer).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.start_component(Component::ApiServer).unwrap();
    apply(&c, &slice("db-1", "db", "10.244.2.2"));
    until(&mut snap, &mut rx, "a slice made after the outage", |s| {
        endpoint_ip(s, "db-1").is_some()
    })
    .await;
    source.abort();
    let _ = Kind::Service;
}
