//! The controller against a fake API server driven by the real kube-rs
//! client: routing follows creates, updates and deletes; status is written
//! on our Ingresses only; Warning Events are published; only TLS Secrets
//! are watched.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::{Value, json};
use sluice_ingress::controller::leader::{LeaseConfig, release, try_acquire_or_renew};
use sluice_ingress::controller::{self, ControllerConfig, ObjectKey, Update};
use sluice_ingress::gateway::ServiceKey;
use sluice_ingress::routes::PortRef;
use sluice_tests::fake_api::FakeApiServer;
use sluice_tests::fixtures;
use tokio::sync::{mpsc, watch};

mod e2e_api;
use e2e_api::lb_ips;

fn ingress(name: &str, class: &str, host: &str, service: &str) -> Value {
    let rule = fixtures::ingress_rule(host, "/", service, json!({"name": "http"}));
    let spec = json!({"ingressClassName": class, "rules": [rule]});
    fixtures::ingress("default", name, spec, json!({}))
}

fn slice(ip: &str) -> Value {
    fixtures::endpoint_slice(
        "default",
        "web-1",
        "web",
        fixtures::ready_endpoints(&[ip]),
        json!({}),
    )
}

fn addrs(u: &Update) -> Vec<String> {
    let key = ServiceKey::new("default", "web", PortRef::Name("http".into()));
    u.computed
        .routing
        .endpoints
        .get(&key)
        .map(|s| s.addrs().iter().map(|a| a.to_string()).collect())
        .unwrap_or_default()
}

async fn wait_update(
    rx: &mut watch::Receiver<Option<Arc<Update>>>,
    what: &str,
    mut pred: impl FnMut(&Update) -> bool,
) -> Arc<Update> {
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        rx.wait_for(|u| u.as_ref().is_some_and(|u| pred(u))),
    )
    .await;
    match r {
        Ok(Ok(u)) => u.clone().unwrap(),
        _ => panic!("timed out waiting for {what}"),
    }
}

#[tokio::test]
async fn routing_follows_the_api_and_status_goes_to_ours_only() {
    let api = FakeApiServer::start().await;
    for (name, controller) in [
        ("sluice", "sluice.dev/ingress-controller"),
        ("nginx", "k8s.io/ingress-nginx"),
    ] {
        api.apply(&json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": name}, "spec": {"controller": controller}
        }));
    }
    api.apply(&ingress("ours", "sluice", "a.test", "web"));
    api.apply(&ingress("theirs", "nginx", "b.test", "web"));
    api.apply(&json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    }));
    api.apply(&slice("10.0.0.1"));
    api.apply(&json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "password", "namespace": "default"},
        "data": {"p": "c2VjcmV0"}
    }));

    let client = api.client();
    let (ev_tx, ev_rx) = mpsc::channel(64);
    let (up_tx, mut up_rx) = watch::channel(None);
    let (leader_tx, leader_rx) = watch::channel(false);
    let lease = LeaseConfig {
        namespace: "default".into(),
        name: "sluice-ingress-leader".into(),
        identity: "replica-1".into(),
        lease_duration: Duration::from_secs(15),
        retry: Duration::from_millis(100),
    };
    let tasks = vec![
        tokio::spawn(controller::kube::run(
            client.clone(),
            ev_tx,
            None,
            up_tx.subscribe(),
        )),
        tokio::spawn(controller::leader::run(client.clone(), lease, leader_tx)),
        tokio::spawn(controller::api::write_status(
            client.clone(),
            "192.0.2.10".into(),
            up_tx.subscribe(),
            leader_rx,
        )),
        tokio::spawn(controller::api::publish_events(client, up_tx.subscribe())),
        tokio::spawn(controller::run(
            ControllerConfig::default(),
            ev_rx,
            up_tx,
            Duration::from_millis(20),
        )),
    ];

    let u = wait_update(&mut up_rx, "first snapshot", |u| !addrs(u).is_empty()).await;
    assert_eq!(addrs(&u), vec!["10.0.0.1:8080"]);
    assert_eq!(u.computed.ours.len(), 1);
    assert_eq!(u.computed.routing.table.routes().count(), 1);
    // Only TLS Secrets are watched.
    assert!(u.snapshot.secrets.is_empty());

    // Status on ours, never on theirs.
    assert!(
        api.wait_for(Duration::from_secs(10), |a| lb_ips(a, "ours")
            == vec!["192.0.2.10"])
            .await
    );

    // Endpoint update.
    api.apply(&slice("10.0.0.2"));
    wait_update(&mut up_rx, "endpoint update", |u| {
        addrs(u) == vec!["10.0.0.2:8080"]
    })
    .await;

    // A second Ingress of ours with a missing Service: routed (503 at the
    // gateway), reported, and an Event published.
    api.apply(&ingress("ghost", "sluice", "c.test", "ghost"));
    let u = wait_update(&mut up_rx, "second ingress", |u| u.computed.ours.len() == 2).await;
    assert!(
        u.computed
            .issues
            .iter()
            .any(|i| i.message.contains("service default/ghost not found")),
        "{:?}",
        u.computed.issues
    );
    assert!(
        api.wait_for(Duration::from_secs(10), |a| a.events().iter().any(|e| {
            e.to_string().contains("Unresolved") && e.to_string().contains("ghost")
        }))
        .await,
        "no Warning Event"
    );
    assert!(
        api.wait_for(Duration::from_secs(10), |a| lb_ips(a, "ghost")
            == vec!["192.0.2.10"])
            .await
    );

    // A TLS Secret is seen.
    api.apply(&json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "cert", "namespace": "default"},
        "data": {"tls.crt": "", "tls.key": ""}
    }));
    wait_update(&mut up_rx, "TLS secret", |u| {
        u.snapshot
            .secrets
            .contains_key(&ObjectKey::new("default", "cert"))
    })
    .await;

    // Delete ours: its route goes.
    api.delete::<Ingress>(Some("default"), "ours");
    let u = wait_update(&mut up_rx, "delete", |u| u.computed.ours.len() == 1).await;
    assert_eq!(u.computed.routing.table.routes().count(), 1);
    assert!(addrs(&u).is_empty());

    assert!(lb_ips(&api, "theirs").is_empty());
    for t in tasks {
        t.abort();
    }
}

#[tokio::test]
async fn lease_election_one_leader_takeover_after_expiry() {
    let api = FakeApiServer::start().await;
    let leases: kube::Api<Lease> = kube::Api::namespaced(api.client(), "default");
    let cfg = |id: &str, secs: u64| LeaseConfig {
        namespace: "default".into(),
        name: "election".into(),
        identity: id.into(),
        lease_duration: Duration::from_secs(secs),
        retry: Duration::from_millis(100),
    };
    assert!(try_acquire_or_renew(&leases, &cfg("a", 1)).await.unwrap());
    assert!(!try_acquire_or_renew(&leases, &cfg("b", 1)).await.unwrap());
    assert!(try_acquire_or_renew(&leases, &cfg("a", 1)).await.unwrap());
    let lease: Lease = api.get(Some("default"), "election").unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("a"));
    // "a" stops renewing; after the lease duration "b" takes over.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(try_acquire_or_renew(&leases, &cfg("b", 1)).await.unwrap());
    assert!(!try_acquire_or_renew(&leases, &cfg("a", 1)).await.unwrap());
    let spec = api
        .get::<Lease>(Some("default"), "election")
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
}

#[tokio::test]
async fn released_lease_is_taken_at_once() {
    let api = FakeApiServer::start().await;
    let leases: kube::Api<Lease> = kube::Api::namespaced(api.client(), "default");
    let cfg = |id: &str| LeaseConfig {
        namespace: "default".into(),
        name: "election".into(),
        identity: id.into(),
        lease_duration: Duration::from_secs(60),
        retry: Duration::from_millis(100),
    };
    assert!(try_acquire_or_renew(&leases, &cfg("a")).await.unwrap());
    assert!(!try_acquire_or_renew(&leases, &cfg("b")).await.unwrap());
    // Only the holder releases.
    assert!(!release(&leases, &cfg("b")).await.unwrap());
    assert!(release(&leases, &cfg("a")).await.unwrap());
    let spec = api
        .get::<Lease>(Some("default"), "election")
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(spec.holder_identity, None);
    // Long before the 60 s lease would have expired.
    assert!(try_acquire_or_renew(&leases, &cfg("b")).await.unwrap());
    assert!(!release(&leases, &cfg("a")).await.unwrap());
    let spec = api
        .get::<Lease>(Some("default"), "election")
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
}

#[tokio::test]
async fn no_status_without_leadership() {
    let api = FakeApiServer::start().await;
    api.apply(&json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "sluice"}, "spec": {"controller": "sluice.dev/ingress-controller"}
    }));
    api.apply(&ingress("ours", "sluice", "a.test", "web"));
    let client = api.client();
    let (ev_tx, ev_rx) = mpsc::channel(64);
    let (up_tx, mut up_rx) = watch::channel(None);
    let (leader_tx, leader_rx) = watch::channel(false);
    let tasks = vec![
        tokio::spawn(controller::kube::run(
            client.clone(),
            ev_tx,
            None,
            up_tx.subscribe(),
        )),
        tokio::spawn(controller::api::write_status(
            client,
            "192.0.2.10".into(),
            up_tx.subscribe(),
            leader_rx,
        )),
        tokio::spawn(controller::run(
            ControllerConfig::default(),
            ev_rx,
            up_tx,
            Duration::from_millis(20),
        )),
    ];
    wait_update(&mut up_rx, "first snapshot", |u| u.computed.ours.len() == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(lb_ips(&api, "ours").is_empty(), "follower wrote status");
    leader_tx.send_replace(true);
    assert!(
        api.wait_for(Duration::from_secs(10), |a| lb_ips(a, "ours")
            == vec!["192.0.2.10"])
            .await
    );
    for t in tasks {
        t.abort();
    }
}

/// Two different problems with the same reason on one Ingress are two
/// Warning Events, each with its own message. (A single long-lived
/// kube-runtime Recorder keys its series without the note: the second
/// Event only bumped the count of the first, its message lost.)
#[tokio::test]
async fn two_problems_on_one_ingress_are_two_events() {
    let api = FakeApiServer::start().await;
    api.apply(&json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "sluice"}, "spec": {"controller": "sluice.dev/ingress-controller"}
    }));
    let mut ing = ingress("broken", "sluice", "a.test", "ghost");
    ing["spec"]["tls"] = json!([{"hosts": ["a.test"], "secretName": "no-such-cert"}]);
    api.apply(&ing);
    let client = api.client();
    let (ev_tx, ev_rx) = mpsc::channel(64);
    let (up_tx, mut up_rx) = watch::channel(None);
    let tasks = vec![
        tokio::spawn(controller::kube::run(
            client.clone(),
            ev_tx,
            None,
            up_tx.subscribe(),
        )),
        tokio::spawn(controller::api::publish_events(client, up_tx.subscribe())),
        tokio::spawn(controller::run(
            ControllerConfig::default(),
            ev_rx,
            up_tx,
            Duration::from_millis(20),
        )),
    ];
    let u = wait_update(&mut up_rx, "first snapshot", |u| {
        u.computed.issues.len() == 2
    })
    .await;
    let messages: Vec<String> = u
        .computed
        .issues
        .iter()
        .map(|i| i.message.clone())
        .collect();
    let notes = |a: &FakeApiServer| -> Vec<String> {
        let mut n: Vec<String> = a
            .events()
            .iter()
            .filter(|e| {
                e["regarding"]["name"] == "broken" || e["involvedObject"]["name"] == "broken"
            })
            .filter_map(|e| {
                e["note"]
                    .as_str()
                    .or(e["message"].as_str())
                    .map(str::to_owned)
            })
            .collect();
        n.sort();
        n
    };
    let visible = api
        .wait_for(Duration::from_secs(10), |a| notes(a) == messages)
        .await;
    assert!(
        visible,
        "want one Event per problem {messages:?}, got {:?}",
        notes(&api)
    );
    for t in tasks {
        t.abort();
    }
}
