//! The API-server source against the fake API server, through the real
//! kube-rs client: initial sync, changes, kube-proxy's label filtering,
//! re-lists after 410 Gone, and an API server that goes away and comes back.

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use serde_json::json;
use sluice_proxy::model::Admission;
use sluice_proxy::source::{Kind, ObjectKey, Snapshot, SourceEvent};
use sluice_tests::fake_api::{FakeApiServer, Verb};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_sync_filter_and_recover() {
    let api = FakeApiServer::start().await;
    api.apply(&service("web", "10.96.0.10", json!({})));
    api.apply(&service(
        "other-proxy",
        "10.96.0.11",
        json!({"service.kubernetes.io/service-proxy-name": "cilium"}),
    ));
    api.apply(&slice("web-1", "web", "10.244.1.2"));
    api.apply(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}}));
    api.apply(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-2"}}));

    let (tx, mut rx) = mpsc::channel(1024);
    let source = tokio::spawn(sluice_proxy::source::kube::run(
        api.client(),
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
    api.apply(&slice("web-1", "web", "10.244.1.3"));
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
    api.delete::<Service>(Some("default"), "web");
    until(&mut snap, &mut rx, "service deletion", |s| {
        !s.services.contains_key(&key("web"))
    })
    .await;

    // History compacted and watches cut: the watchers get 410 and re-list.
    let lists_before = api.count(Verb::List, "services");
    api.compact();
    api.apply(&service("db", "10.96.0.20", json!({})));
    api.compact();
    api.expire_watches();
    until(&mut snap, &mut rx, "db after re-list", |s| {
        s.services.contains_key(&key("db"))
    })
    .await;
    assert!(
        api.count(Verb::List, "services") > lists_before,
        "a re-list happened"
    );

    // The API server goes away; changes made meanwhile arrive after it returns.
    api.stop().await;
    api.apply(&slice("db-1", "db", "10.244.2.2"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    api.restart().await;
    until(&mut snap, &mut rx, "slice made while down", |s| {
        endpoint_ip(s, "db-1").is_some()
    })
    .await;
    source.abort();
    let _ = Kind::Service;
}
