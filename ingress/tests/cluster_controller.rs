//! The real `sluice-ingress` binary against the real control plane
//! (kube-apiserver, etcd, the controller manager's EndpointSlice and
//! Deployment controllers, the scheduler), with Ingresses routing to
//! process-backed pods of a simulated node. Everything is read back where a
//! user would look: Ingress status, the Lease and Events through the API
//! server, answers (and certificates) through the gateway's sockets.
//!
//! * routing follows Ingress creates, updates and deletes, and the
//!   EndpointSlices the real controller writes as a Deployment scales;
//! * IngressClass selection: our class, another controller's, no class
//!   with and without `--watch-ingress-without-class`, the default-class
//!   annotation (and the API server's DefaultIngressClass admission);
//! * status only on our Ingresses, written by the Lease holder of two
//!   replicas; `kill -9` of the leader and the takeover time; the
//!   `--update-status-on-shutdown` cases (alone, another replica running,
//!   a follower leaving, `=false`);
//! * Warning Events for a host+path conflict, a missing Service and Secret
//!   (one Event per problem) and a broken TLS Secret; TLS
//!   by SNI, rotation, a broken update keeping the previous certificate,
//!   `--default-ssl-certificate` reloaded.
//!
//! One cluster for the binary; each test has its own namespace, node and
//! controller class (`--controller-class`), so two tests' gateways never
//! touch each other's Ingresses.

mod cluster_support;
mod gateway_support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cluster_support::*;
use gateway_support::{TestCa, tls_connect, tls_request};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use sluice_tests::cluster;
use sluice_tests::node_agent::NodeAgent;

const WAIT: Duration = Duration::from_secs(30);
const TERM: Duration = Duration::from_secs(20);

/// One test's corner of the shared cluster.
struct Scene {
    client: kube::Client,
    ns: String,
    /// The IngressClass name, also the node's name.
    class: String,
    /// `--controller-class` of this test's gateways.
    controller: String,
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Scene {
    /// Namespace `name`, IngressClass `name` of controller
    /// `sluice.dev/<name>`, admin credentials.
    async fn new(name: &str) -> Option<(Scene, NodeAgent)> {
        if !cluster::available_or_skip(name) {
            return None;
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let c = cluster::shared();
        let client = c.client().await;
        let scene = Scene {
            client,
            ns: name.to_owned(),
            class: name.to_owned(),
            controller: format!("sluice.dev/{name}"),
            dir: temp_dir(name),
            kubeconfig: c.admin_kubeconfig().to_owned(),
        };
        must_apply(&scene.client, &namespace(name)).await;
        must_apply(
            &scene.client,
            &ingress_class(name, &scene.controller, false),
        )
        .await;
        let node = NodeAgent::start(c, name).expect("node agent");
        Some((scene, node))
    }

    async fn apply(&self, obj: &serde_json::Value) {
        must_apply(&self.client, obj).await;
    }

    async fn gateway(&self, pod: &str, status: &str, extra: &[&str]) -> Gateway {
        Gateway::start(
            &self.kubeconfig,
            &self.dir,
            &self.ns,
            pod,
            &args(&self.controller, status, extra),
        )
        .await
    }

    fn ingress(&self, name: &str, host: &str, svc: &str) -> serde_json::Value {
        ingress(&self.ns, name, Some(&self.class), host, svc)
    }

    async fn lb_ips(&self, name: &str) -> Vec<String> {
        lb_ips(&self.client, &self.ns, name).await
    }

    async fn holder(&self) -> Option<String> {
        lease_holder(&self.client, &self.ns, LEASE).await
    }

    /// Names of the Ready, not terminating pods with `app=<app>`.
    async fn ready_pods(&self, app: &str) -> BTreeSet<String> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns);
        let lp = ListParams::default().labels(&format!("app={app}"));
        let Ok(list) = api.list(&lp).await else {
            return BTreeSet::new();
        };
        list.items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .filter_map(|p| p.metadata.name)
            .collect()
    }

    async fn scale(&self, app: &str, replicas: u32) {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.ns);
        api.patch(
            app,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .unwrap();
    }

    /// Waits until `n` pods of `app` are Ready and exactly those answer
    /// for `host`; returns them.
    async fn wait_answering(
        &self,
        gw: &Gateway,
        host: &str,
        app: &str,
        n: usize,
    ) -> BTreeSet<String> {
        wait_for(
            &format!("{n} pods of {app} answering for {host}"),
            Duration::from_secs(60),
            || async {
                let ready = self.ready_pods(app).await;
                if ready.len() != n {
                    return None;
                }
                let seen = pods_answering(gw.http, host, 3 * n).await;
                (seen == ready).then_some(seen)
            },
            || gw.log_text(),
        )
        .await
        .0
    }

    async fn cleanup(self, node: NodeAgent) {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        let _ = api.delete(&self.ns, &DeleteParams::default()).await;
        let classes: Api<IngressClass> = Api::all(self.client.clone());
        let _ = classes.delete(&self.class, &DeleteParams::default()).await;
        drop(node);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_follows_ingresses_and_the_endpoint_slices_of_a_scaling_deployment() {
    let Some((s, node)) = Scene::new("ic-routing").await else {
        return;
    };
    for o in echo_app(&s.ns, "web", &s.class, 2)
        .into_iter()
        .chain(echo_app(&s.ns, "other", &s.class, 1))
    {
        s.apply(&o).await;
    }
    s.apply(&s.ingress("app", "app.test", "web")).await;
    let gw = s.gateway("gw", STATUS_ADDRESS, &[]).await;

    // Both pods of the Deployment answer, as the EndpointSlice controller
    // published them.
    let two = s.wait_answering(&gw, "app.test", "web", 2).await;
    assert_eq!(http_get(gw.http, "nowhere.test", "/").await.0, 404);

    // Scale up: the new pod gets traffic once it is Ready.
    s.scale("web", 3).await;
    let three = s.wait_answering(&gw, "app.test", "web", 3).await;
    assert!(two.is_subset(&three));
    // Scale down: the removed pods stop getting requests.
    s.scale("web", 1).await;
    let one = s.wait_answering(&gw, "app.test", "web", 1).await;
    assert!(one.is_subset(&three));

    // An update moves the host to another Service and adds a path.
    let mut app = s.ingress("app", "app.test", "other");
    app["spec"]["rules"][0]["http"]["paths"]
        .as_array_mut()
        .unwrap()
        .push(path("/web", "web"));
    s.apply(&app).await;
    let other = s.ready_pods("other").await;
    wait_until(
        "app.test / routed to `other`, /web to `web`",
        WAIT,
        || async {
            let root = echo_pod(gw.http, "app.test", "/").await;
            let web = echo_pod(gw.http, "app.test", "/web/x").await;
            root.is_some_and(|p| other.contains(&p)) && web.is_some_and(|p| one.contains(&p))
        },
        || gw.log_text(),
    )
    .await;

    // A second Ingress is created, then deleted.
    s.apply(&s.ingress("second", "second.test", "web")).await;
    wait_until(
        "second.test routed",
        WAIT,
        || async { echo_pod(gw.http, "second.test", "/").await.is_some() },
        || gw.log_text(),
    )
    .await;
    let api: Api<Ingress> = Api::namespaced(s.client.clone(), &s.ns);
    api.delete("second", &DeleteParams::default())
        .await
        .unwrap();
    wait_until(
        "second.test gone (404)",
        WAIT,
        || async { http_get(gw.http, "second.test", "/").await.0 == 404 },
        || gw.log_text(),
    )
    .await;
    // The Ingress that stays keeps routing.
    assert!(echo_pod(gw.http, "app.test", "/").await.is_some());
    drop(gw);
    s.cleanup(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_class_selection_decides_routes_and_status() {
    let Some((s, node)) = Scene::new("ic-class").await else {
        return;
    };
    for o in echo_app(&s.ns, "web", &s.class, 1) {
        s.apply(&o).await;
    }
    s.apply(&ingress_class(
        "ic-class-nginx",
        "k8s.io/ingress-nginx",
        false,
    ))
    .await;
    s.apply(&s.ingress("ours", "ours.test", "web")).await;
    s.apply(&ingress(
        &s.ns,
        "theirs",
        Some("ic-class-nginx"),
        "theirs.test",
        "web",
    ))
    .await;
    s.apply(&ingress(&s.ns, "classless", None, "classless.test", "web"))
        .await;
    // The legacy annotation naming our class.
    let mut legacy = ingress(&s.ns, "legacy", None, "legacy.test", "web");
    legacy["metadata"]["annotations"] = json!({"kubernetes.io/ingress.class": s.class});
    s.apply(&legacy).await;
    let routed = |gw: &Gateway, host: &'static str| {
        let addr = gw.http;
        async move { echo_pod(addr, host, "/").await.is_some() }
    };

    // Without --watch-ingress-without-class: ours and the annotated one.
    let gw = s.gateway("plain", "192.0.2.21", &[]).await;
    wait_until(
        "status on ours and legacy",
        WAIT,
        || async {
            s.lb_ips("ours").await == ["192.0.2.21"] && s.lb_ips("legacy").await == ["192.0.2.21"]
        },
        || gw.log_text(),
    )
    .await;
    wait_until(
        "ours.test and legacy.test routed",
        WAIT,
        || async { routed(&gw, "ours.test").await && routed(&gw, "legacy.test").await },
        || gw.log_text(),
    )
    .await;
    assert_eq!(http_get(gw.http, "theirs.test", "/").await.0, 404);
    assert_eq!(http_get(gw.http, "classless.test", "/").await.0, 404);
    assert!(s.lb_ips("theirs").await.is_empty());
    assert!(s.lb_ips("classless").await.is_empty());
    // Alone, the leader takes its address back on SIGTERM.
    gw.terminate(TERM).await;
    assert!(s.lb_ips("ours").await.is_empty());
    assert!(s.lb_ips("legacy").await.is_empty());

    // With --watch-ingress-without-class the classless one is ours too;
    // another controller's class still is not.
    let gw = s
        .gateway(
            "without-class",
            "192.0.2.22",
            &["--watch-ingress-without-class"],
        )
        .await;
    wait_until(
        "status on the classless Ingress",
        WAIT,
        || async { s.lb_ips("classless").await == ["192.0.2.22"] },
        || gw.log_text(),
    )
    .await;
    assert!(routed(&gw, "classless.test").await);
    assert_eq!(http_get(gw.http, "theirs.test", "/").await.0, 404);
    assert!(s.lb_ips("theirs").await.is_empty());
    gw.terminate(TERM).await;
    assert!(s.lb_ips("classless").await.is_empty());

    // Our class marked the cluster default: the classless Ingress is ours
    // without the flag...
    s.apply(&ingress_class(&s.class, &s.controller, true)).await;
    let gw = s.gateway("default-class", "192.0.2.23", &[]).await;
    wait_until(
        "status on the classless Ingress (default class)",
        WAIT,
        || async { s.lb_ips("classless").await == ["192.0.2.23"] },
        || gw.log_text(),
    )
    .await;
    assert!(routed(&gw, "classless.test").await);
    // ...and the API server's DefaultIngressClass admission names our class
    // in an Ingress created without one.
    s.apply(&ingress(&s.ns, "late", None, "late.test", "web"))
        .await;
    let api: Api<Ingress> = Api::namespaced(s.client.clone(), &s.ns);
    let late = api.get("late").await.unwrap();
    assert_eq!(
        late.spec.unwrap().ingress_class_name.as_deref(),
        Some(s.class.as_str())
    );
    wait_until(
        "late.test routed, with status",
        WAIT,
        || async { routed(&gw, "late.test").await && s.lb_ips("late").await == ["192.0.2.23"] },
        || gw.log_text(),
    )
    .await;
    // The default taken away: the classless Ingress is dropped at once.
    s.apply(&ingress_class(&s.class, &s.controller, false))
        .await;
    wait_until(
        "classless.test unrouted once our class is no longer the default",
        WAIT,
        || async { http_get(gw.http, "classless.test", "/").await.0 == 404 },
        || gw.log_text(),
    )
    .await;
    assert!(routed(&gw, "late.test").await);
    assert!(s.lb_ips("theirs").await.is_empty());
    drop(gw);
    let classes: Api<IngressClass> = Api::all(s.client.clone());
    let _ = classes
        .delete("ic-class-nginx", &DeleteParams::default())
        .await;
    s.cleanup(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_elect_one_status_writer_and_hand_over() {
    let Some((s, node)) = Scene::new("ic-leader").await else {
        return;
    };
    for o in echo_app(&s.ns, "web", &s.class, 1) {
        s.apply(&o).await;
    }
    // The replicas' Pods (their labels are what --update-status-on-shutdown
    // looks for), running on the node.
    for pod in ["replica-a", "replica-b"] {
        s.apply(&replica_pod(&s.ns, pod, &s.class)).await;
    }
    s.apply(&s.ingress("web", "web.test", "web")).await;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.ns);
    wait_until(
        "both replica Pods Running",
        Duration::from_secs(60),
        || async {
            let mut n = 0;
            for p in ["replica-a", "replica-b"] {
                let phase = pods.get(p).await.ok().and_then(|p| p.status?.phase);
                n += usize::from(phase.as_deref() == Some("Running"));
            }
            n == 2
        },
        String::new,
    )
    .await;

    let a = s.gateway("replica-a", STATUS_ADDRESS, &[]).await;
    wait_until(
        "replica-a leads and writes status",
        WAIT,
        || async {
            s.holder().await.as_deref() == Some("replica-a")
                && s.lb_ips("web").await == [STATUS_ADDRESS]
        },
        || a.log_text(),
    )
    .await;
    let b = s.gateway("replica-b", STATUS_ADDRESS, &[]).await;
    // b campaigns (every 5 s) and stays a follower.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.holder().await.as_deref(), Some("replica-a"));
    assert!(!b.log_text().contains("leading=true"), "{}", b.log_text());

    // kill -9 the leader: nothing is released; b takes over once the
    // Lease (15 s) runs out, at its next round (every 5 s).
    let before = lease(&s.client, &s.ns, LEASE).await.unwrap().spec.unwrap();
    let duration = Duration::from_secs(before.lease_duration_seconds.unwrap() as u64);
    a.kill9();
    let killed = Instant::now();
    // A change while nobody leads: routed by b at once, its status waits
    // for the new leader.
    s.apply(&s.ingress("late", "late.test", "web")).await;
    wait_until(
        "b routes late.test while a follower",
        WAIT,
        || async { echo_pod(b.http, "late.test", "/").await.is_some() },
        || b.log_text(),
    )
    .await;
    let status_before_takeover = std::sync::atomic::AtomicBool::new(false);
    let (_, _) = wait_for(
        "replica-b to take the Lease over",
        duration + Duration::from_secs(15),
        || async {
            // Status first: if it is there and the Lease (read after) is
            // still not b's, someone wrote status without leading.
            let written = !s.lb_ips("late").await.is_empty();
            let holder = s.holder().await;
            if written && holder.as_deref() != Some("replica-b") {
                status_before_takeover.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            (holder.as_deref() == Some("replica-b")).then_some(())
        },
        || b.log_text(),
    )
    .await;
    let takeover = killed.elapsed();
    assert!(
        !status_before_takeover.load(std::sync::atomic::Ordering::Relaxed),
        "status written with no leader"
    );
    let spec = lease(&s.client, &s.ns, LEASE).await.unwrap().spec.unwrap();
    assert_eq!(
        spec.lease_transitions,
        Some(before.lease_transitions.unwrap_or(0) + 1)
    );
    // Lease time plus one campaign period at most (client-go's bound too).
    assert!(
        takeover <= duration + Duration::from_secs(5) + Duration::from_secs(1),
        "takeover took {takeover:?}"
    );
    let (_, status_after) = wait_for(
        "the new leader writes status on late",
        WAIT,
        || async { (s.lb_ips("late").await == [STATUS_ADDRESS]).then_some(()) },
        || b.log_text(),
    )
    .await;
    eprintln!(
        "leader kill -9 → takeover in {:.1} s (lease {duration:?}, renewal every 5 s); \
         status on a new Ingress {:.1} s later",
        takeover.as_secs_f64(),
        status_after.as_secs_f64()
    );

    // A follower leaving touches neither status nor Lease.
    let a = s.gateway("replica-a", STATUS_ADDRESS, &[]).await;
    let c = s.gateway("replica-c", STATUS_ADDRESS, &[]).await;
    c.terminate(TERM).await;
    assert_eq!(s.holder().await.as_deref(), Some("replica-b"));
    assert_eq!(s.lb_ips("web").await, [STATUS_ADDRESS]);

    // The leader's SIGTERM while another replica's Pod runs: status stays
    // for the next leader, the Lease is released and a takes it at its next
    // round, without waiting the Lease out.
    let log = b.terminate(TERM).await;
    let stopped = Instant::now();
    assert!(log.contains("another replica is running"), "{log}");
    assert!(log.contains("released the Lease"), "{log}");
    assert_eq!(s.lb_ips("web").await, [STATUS_ADDRESS]);
    assert_eq!(s.lb_ips("late").await, [STATUS_ADDRESS]);
    let (_, _) = wait_for(
        "replica-a to take the released Lease",
        Duration::from_secs(10),
        || async { (s.holder().await.as_deref() == Some("replica-a")).then_some(()) },
        || a.log_text(),
    )
    .await;
    let handover = stopped.elapsed();
    assert!(handover < duration, "handover took {handover:?}");
    eprintln!("graceful handover in {:.1} s", handover.as_secs_f64());

    // The last replica leaving (the other Pod deleted): it takes its
    // address out of every Ingress it wrote, and releases the Lease.
    pods.delete("replica-b", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    wait_until(
        "replica-b's Pod gone",
        WAIT,
        || async { pods.get_opt("replica-b").await.unwrap().is_none() },
        String::new,
    )
    .await;
    a.terminate(TERM).await;
    assert!(s.lb_ips("web").await.is_empty());
    assert!(s.lb_ips("late").await.is_empty());
    assert_eq!(s.holder().await, None);

    // --update-status-on-shutdown=false: the status stays.
    let a = s
        .gateway(
            "replica-a",
            STATUS_ADDRESS,
            &["--update-status-on-shutdown=false"],
        )
        .await;
    wait_until(
        "status written again",
        WAIT,
        || async { s.lb_ips("web").await == [STATUS_ADDRESS] },
        || a.log_text(),
    )
    .await;
    a.terminate(TERM).await;
    assert_eq!(s.lb_ips("web").await, [STATUS_ADDRESS]);
    s.cleanup(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_and_broken_secrets_are_events_and_certificates_rotate() {
    let Some((s, node)) = Scene::new("ic-tls").await else {
        return;
    };
    for o in echo_app(&s.ns, "web", &s.class, 1)
        .into_iter()
        .chain(echo_app(&s.ns, "web2", &s.class, 1))
    {
        s.apply(&o).await;
    }
    let ca = TestCa::new();
    let (s1, s2) = (ca.leaf(&["s.test"]), ca.leaf(&["s.test"]));
    let (d1, d2) = (ca.leaf(&["fallback.test"]), ca.leaf(&["fallback.test"]));
    s.apply(&tls_secret(&s.ns, "s-cert", &s1.chain_pem, &s1.key_pem))
        .await;
    s.apply(&tls_secret(&s.ns, "fallback", &d1.chain_pem, &d1.key_pem))
        .await;

    // Same host and path twice: the older Ingress wins although its name
    // sorts after the newer one's; the newer gets a Conflict Event. (The
    // API server stamps creationTimestamp in whole seconds.)
    s.apply(&s.ingress("zz-old", "a.test", "web")).await;
    let api: Api<Ingress> = Api::namespaced(s.client.clone(), &s.ns);
    let created = api
        .get("zz-old")
        .await
        .unwrap()
        .metadata
        .creation_timestamp
        .unwrap()
        .0;
    while k8s_openapi::jiff::Timestamp::now().as_second() <= created.as_second() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.apply(&s.ingress("aa-new", "a.test", "web2")).await;
    let mut secure = s.ingress("secure", "s.test", "web");
    secure["spec"]["tls"] = json!([{"hosts": ["s.test"], "secretName": "s-cert"}]);
    s.apply(&secure).await;

    let default_cert = format!("--default-ssl-certificate={}/fallback", s.ns);
    let gw = s.gateway("gw", STATUS_ADDRESS, &[&default_cert]).await;
    wait_until(
        "a.test routed to the older Ingress's Service",
        Duration::from_secs(60),
        || async {
            let web = s.ready_pods("web").await;
            echo_pod(gw.http, "a.test", "/")
                .await
                .is_some_and(|p| web.contains(&p))
        },
        || gw.log_text(),
    )
    .await;
    let (conflicts, _) = wait_for(
        "a Conflict Event on aa-new",
        WAIT,
        || async {
            let w = warnings(&s.client, &s.ns, "aa-new", "Conflict").await;
            (!w.is_empty()).then_some(w)
        },
        || gw.log_text(),
    )
    .await;
    assert!(conflicts[0].0.contains("zz-old"), "{conflicts:?}");
    assert_eq!(conflicts[0].2, "gw", "reporting instance is $POD_NAME");
    assert!(
        warnings(&s.client, &s.ns, "zz-old", "Conflict")
            .await
            .is_empty()
    );

    // Two problems on one Ingress (a missing Service, a missing Secret):
    // an Event for each, each with its own note. It is still ours: status,
    // the redirect to HTTPS (its TLS section), 503 there (the default
    // certificate stands in for the missing one).
    let mut broken = s.ingress("broken", "broken.test", "ghost");
    broken["spec"]["tls"] = json!([{"hosts": ["broken.test"], "secretName": "no-such-cert"}]);
    s.apply(&broken).await;
    let ghost = format!("service {}/ghost not found", s.ns);
    let no_cert = format!("TLS secret {}/no-such-cert not found", s.ns);
    wait_until(
        "one Event per problem on broken",
        WAIT,
        || async {
            let notes: BTreeSet<String> = warnings(&s.client, &s.ns, "broken", "Unresolved")
                .await
                .into_iter()
                .map(|w| w.0)
                .collect();
            notes.iter().any(|n| n.contains(&ghost)) && notes.iter().any(|n| n.contains(&no_cert))
        },
        || gw.log_text(),
    )
    .await;
    wait_until(
        "status on broken, 308 then 503 for its host",
        WAIT,
        || async {
            let https = match tls_connect(gw.https, Some("broken.test"), &[], None).await {
                Ok((tls, _)) => tls_request(tls, "broken.test", "/").await.0.as_u16(),
                Err(_) => 0,
            };
            s.lb_ips("broken").await == [STATUS_ADDRESS]
                && http_get(gw.http, "broken.test", "/").await.0 == 308
                && https == 503
        },
        || gw.log_text(),
    )
    .await;

    // TLS: the Secret's certificate by SNI, the default one otherwise.
    let served = |sni: Option<&'static str>| {
        let (ca, https) = (&ca, gw.https);
        async move {
            match tls_connect(https, sni, &[], sni.map(|_| ca)).await {
                Ok((_, leaf)) => Some(leaf),
                Err(_) => None,
            }
        }
    };
    wait_until(
        "s.test served with s-cert",
        WAIT,
        || async { served(Some("s.test")).await == Some(s1.der.clone()) },
        || gw.log_text(),
    )
    .await;
    assert_eq!(served(Some("fallback.test")).await, Some(d1.der.clone()));
    assert_eq!(served(None).await, Some(d1.der.clone()));
    let (tls, _) = tls_connect(gw.https, Some("s.test"), &[b"h2"], Some(&ca))
        .await
        .unwrap();
    let (status, _, body, version) = tls_request(tls, "s.test", "/").await;
    assert_eq!((status.as_u16(), version), (200, http::Version::HTTP_2));
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        s.ready_pods("web")
            .await
            .contains(body["pod"].as_str().unwrap())
    );

    // Rotation.
    s.apply(&tls_secret(&s.ns, "s-cert", &s2.chain_pem, &s2.key_pem))
        .await;
    let (_, rotated) = wait_for(
        "the rotated certificate served",
        WAIT,
        || async { (served(Some("s.test")).await == Some(s2.der.clone())).then_some(()) },
        || gw.log_text(),
    )
    .await;
    eprintln!(
        "certificate rotation served after {:.2} s",
        rotated.as_secs_f64()
    );

    // A broken update: a Warning Event, the previous certificate stays.
    s.apply(&tls_secret(
        &s.ns,
        "s-cert",
        "not a certificate",
        &s2.key_pem,
    ))
    .await;
    let (notes, _) = wait_for(
        "an Event for the broken Secret",
        WAIT,
        || async {
            let w = warnings(&s.client, &s.ns, "secure", "Unresolved").await;
            w.iter()
                .any(|n| n.0.contains("keeping the previously loaded certificate"))
                .then_some(w)
        },
        || gw.log_text(),
    )
    .await;
    assert!(notes.iter().any(|n| n.0.contains("s-cert")), "{notes:?}");
    assert_eq!(served(Some("s.test")).await, Some(s2.der.clone()));

    // The default certificate's Secret changes: the new one is served.
    s.apply(&tls_secret(&s.ns, "fallback", &d2.chain_pem, &d2.key_pem))
        .await;
    wait_until(
        "the new default certificate served",
        WAIT,
        || async { served(Some("fallback.test")).await == Some(d2.der.clone()) },
        || gw.log_text(),
    )
    .await;
    assert_eq!(served(None).await, Some(d2.der.clone()));
    // The Secret fixed: served again, and still no status on anything not
    // ours.
    s.apply(&tls_secret(&s.ns, "s-cert", &s1.chain_pem, &s1.key_pem))
        .await;
    wait_until(
        "the fixed certificate served",
        WAIT,
        || async { served(Some("s.test")).await == Some(s1.der.clone()) },
        || gw.log_text(),
    )
    .await;
    drop(gw);
    s.cleanup(node).await;
}
