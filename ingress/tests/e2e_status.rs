//! The `sluice-ingress` binary against the fake API server, read back
//! through the API and over TLS: status written by the leader on our
//! Ingresses only; on SIGTERM the leader takes it back and releases the
//! Lease (`--update-status-on-shutdown`), while `=false`, a follower's
//! shutdown, or another running replica leave it; a host+path conflict and
//! a broken TLS Secret each produce a Warning Event, the oldest Ingress
//! keeps the route and the previous certificate keeps serving; the
//! `--default-ssl-certificate` Secret is reloaded when it changes.

mod e2e_api;
mod gateway_support;

use std::time::Duration;

use e2e_api::*;
use gateway_support::{Backend, TestCa, tls_connect, tls_request};
use k8s_openapi::api::coordination::v1::Lease;
use serde_json::json;
use sluice_tests::fake_api::FakeApiServer;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_events_certificates_and_shutdown() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = temp_dir("status");
    let (web, web2) = (Backend::start("web").await, Backend::start("web2").await);
    let ca = TestCa::new();
    let (s1, d1, d2) = (
        ca.leaf(&["s.test"]),
        ca.leaf(&["fallback.test"]),
        ca.leaf(&["fallback.test"]),
    );

    let api = FakeApiServer::start().await;
    api.apply(&class());
    api.apply(&json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx"}
    }));
    for (svc, b) in [("web", &web), ("web2", &web2)] {
        api.apply(&service(svc));
        api.apply(&slice(svc, b.addr.port()));
    }
    let rule = |host: &str, svc: &str| json!({"host": host, "http": {"paths": [path("/", "Prefix", svc)]}});
    // Same host and path: "old" is older and wins although its name sorts
    // after "new"; "new" gets an Event. (The API server stamps
    // creationTimestamp, in whole seconds.)
    api.apply(&ingress(
        "old",
        "2024-01-01T00:00:00Z",
        json!({"rules": [rule("a.test", "web")]}),
    ));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    api.apply(&ingress(
        "new",
        "2025-01-01T00:00:00Z",
        json!({"rules": [rule("a.test", "web2")]}),
    ));
    api.apply(&ingress(
        "secure",
        "2024-01-01T00:00:00Z",
        json!({"tls": [{"hosts": ["s.test"], "secretName": "s-cert"}],
               "rules": [rule("s.test", "web")]}),
    ));
    let mut theirs = ingress(
        "theirs",
        "2024-01-01T00:00:00Z",
        json!({"rules": [rule("b.test", "web")]}),
    );
    theirs["spec"]["ingressClassName"] = json!("nginx");
    api.apply(&theirs);
    api.apply(&tls_secret("s-cert", &s1.chain_pem, &s1.key_pem));
    api.apply(&tls_secret("fallback", &d1.chain_pem, &d1.key_pem));

    let ing = Ingress1::start(
        &api,
        &dir,
        &["--default-ssl-certificate", "default/fallback"],
    )
    .await;
    let ours = ["old", "new", "secure"];

    // Status: the leader writes our address on ours, never on theirs.
    assert!(
        api.wait_for(WAIT, |a| ours
            .iter()
            .all(|n| lb_ips(a, n) == vec![STATUS_ADDRESS]))
            .await,
        "status not written: {}",
        ing.log_text()
    );
    assert!(lb_ips(&api, "theirs").is_empty());

    // Conflict: the oldest Ingress routes a.test; the other gets a Warning.
    let client = gateway_support::h1_client();
    let (status, headers, _) = gateway_support::get(&client, ing.http, "a.test", "/").await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-backend"], "web");
    assert!(
        api.wait_for(WAIT, |a| !warnings(a, "new", "Conflict").is_empty())
            .await,
        "no Conflict event: {:?}",
        api.events()
    );
    assert!(warnings(&api, "old", "Conflict").is_empty());
    assert!(web2.hits() == 0);

    // TLS: the Secret's certificate by SNI, the default certificate for
    // anything else.
    let served = |sni: &'static str| {
        let ca = &ca;
        let https = ing.https;
        async move {
            tls_connect(https, Some(sni), &[], Some(ca))
                .await
                .unwrap()
                .1
        }
    };
    assert_eq!(served("s.test").await, s1.der);
    assert_eq!(served("fallback.test").await, d1.der);
    let (tls, _) = tls_connect(ing.https, Some("s.test"), &[b"h2"], Some(&ca))
        .await
        .unwrap();
    let (status, headers, _, _) = tls_request(tls, "s.test", "/").await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-backend"], "web");

    // A broken update of the Secret: a Warning Event, the old certificate
    // keeps serving.
    api.apply(&tls_secret("s-cert", "not a certificate", &s1.key_pem));
    assert!(
        api.wait_for(WAIT, |a| warnings(a, "secure", "Unresolved")
            .iter()
            .any(|n| n.contains("keeping the previously loaded certificate")))
            .await,
        "no event for the broken Secret: {:?}",
        api.events()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(served("s.test").await, s1.der);

    // The default certificate's Secret changes: the new one is served.
    api.apply(&tls_secret("fallback", &d2.chain_pem, &d2.key_pem));
    let deadline = tokio::time::Instant::now() + WAIT;
    while served("fallback.test").await != d2.der {
        assert!(
            tokio::time::Instant::now() < deadline,
            "default certificate not reloaded: {}",
            ing.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, no_sni) = tls_connect(ing.https, None, &[], None).await.unwrap();
    assert_eq!(no_sni, d2.der);

    // SIGTERM: the leader takes its address back out of our Ingresses.
    ing.terminate(Duration::from_secs(20)).await;
    for n in ours {
        assert!(lb_ips(&api, n).is_empty(), "{n} kept {:?}", lb_ips(&api, n));
    }
    // ...and released the Lease for the next replica.
    let lease: Lease = api.get(Some("default"), "sluice-ingress-leader").unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity, None);

    // With --update-status-on-shutdown=false the status stays.
    let ing = Ingress1::start(&api, &dir, &["--update-status-on-shutdown=false"]).await;
    assert!(
        api.wait_for(WAIT, |a| ours
            .iter()
            .all(|n| lb_ips(a, n) == vec![STATUS_ADDRESS]))
            .await,
        "status not written again: {}",
        ing.log_text()
    );
    ing.terminate(Duration::from_secs(20)).await;
    for n in ours {
        assert_eq!(lb_ips(&api, n), vec![STATUS_ADDRESS], "{n}");
    }

    // Two replicas: the follower's shutdown leaves status and Lease alone;
    // the leader's then takes the status back.
    let leader = Ingress1::start_as(&api, &dir, "replica-a", &[]).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !leader.log_text().contains("leadership changed") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            leader.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let follower = Ingress1::start_as(&api, &dir, "replica-b", &[]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    follower.terminate(Duration::from_secs(20)).await;
    for n in ours {
        assert_eq!(lb_ips(&api, n), vec![STATUS_ADDRESS], "{n}");
    }
    let lease: Lease = api.get(Some("default"), "sluice-ingress-leader").unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some("replica-a")
    );
    leader.terminate(Duration::from_secs(20)).await;
    for n in ours {
        assert!(lb_ips(&api, n).is_empty(), "{n}");
    }

    // Another replica running (a Pod with our Pod's labels, from the next
    // revision): the leader leaves the status for the next leader.
    let pod = |name: &str, labels: serde_json::Value| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running"}
        })
    };
    api.apply(&pod(
        "sluice-ingress-test",
        json!({"app.kubernetes.io/name": "sluice-ingress", "pod-template-hash": "aaa"}),
    ));
    api.apply(&pod(
        "sluice-ingress-next",
        json!({"app.kubernetes.io/name": "sluice-ingress", "pod-template-hash": "bbb"}),
    ));
    api.apply(&pod("web-1", json!({"app.kubernetes.io/name": "web"})));
    let ing = Ingress1::start(&api, &dir, &[]).await;
    assert!(
        api.wait_for(WAIT, |a| ours
            .iter()
            .all(|n| lb_ips(a, n) == vec![STATUS_ADDRESS]))
            .await,
        "status not written: {}",
        ing.log_text()
    );
    let log = ing.log.clone();
    ing.terminate(Duration::from_secs(20)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("another replica is running"), "{text}");
    for n in ours {
        assert_eq!(lb_ips(&api, n), vec![STATUS_ADDRESS], "{n}");
    }
    assert!(lb_ips(&api, "theirs").is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
