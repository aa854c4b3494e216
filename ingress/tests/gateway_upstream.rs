//! Upstream behaviour over real sockets: spreading over endpoints,
//! endpoints removed under load, connect-failure retries and ejection,
//! routing snapshot swaps under load, upstream timeouts, graceful
//! shutdown, keep-alive connection reuse.

mod gateway_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, StatusCode};
use serde_json::json;
use sluice_ingress::gateway::{CertStore, GatewayConfig, Routing, Timeouts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use gateway_support::*;

fn app_table(svc: &str) -> Arc<sluice_ingress::routes::RouteTable> {
    table(&[ingress(
        "ns",
        "app",
        json!({}),
        json!({ "rules": [rule(Some("app.test"), &[("/", svc)])] }),
    )])
}

/// Distinct addresses nobody listens on (bound together, then closed).
async fn dead_addrs<const N: usize>() -> [SocketAddr; N] {
    let mut ls = Vec::new();
    for _ in 0..N {
        ls.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    std::array::from_fn(|i| ls[i].local_addr().unwrap())
}

/// `workers` tasks each sending `per_worker` GETs; returns the statuses
/// that were not 200 (and transport errors).
async fn load(
    gw: SocketAddr,
    workers: usize,
    per_worker: usize,
    done: Arc<AtomicUsize>,
) -> Vec<String> {
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let c = h1_client();
            let mut bad = Vec::new();
            for i in 0..per_worker {
                let req = Request::get(format!("http://{gw}/load/{i}"))
                    .header("host", "app.test")
                    .body(empty())
                    .unwrap();
                match c.request(req).await {
                    Ok(r) => {
                        let s = r.status();
                        let b = http_body_util::BodyExt::collect(r.into_body()).await;
                        if s != StatusCode::OK || b.is_err() {
                            bad.push(format!("{s} {b:?}"));
                        }
                    }
                    Err(e) => bad.push(format!("{e:?}")),
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
            bad
        }));
    }
    let mut bad = Vec::new();
    for t in tasks {
        bad.extend(t.await.unwrap());
    }
    bad
}

async fn wait_until(done: &AtomicUsize, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while done.load(Ordering::SeqCst) < n {
        assert!(tokio::time::Instant::now() < deadline, "load stalled");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn hundred_requests_reach_all_ten_endpoints() {
    let mut backends = Vec::new();
    for i in 0..10 {
        backends.push(Backend::start(&format!("b{i}")).await);
    }
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let gw = TestGateway::start(
        test_config(),
        routing(
            app_table("web"),
            endpoints(&[("web", addrs)]),
            CertStore::new(),
        ),
    )
    .await;
    let c = h1_client();
    for i in 0..100 {
        let (s, _, _) = get(&c, gw.http, "app.test", &format!("/{i}")).await;
        assert_eq!(s, StatusCode::OK);
    }
    let hits: Vec<usize> = backends.iter().map(Backend::hits).collect();
    assert_eq!(hits.iter().sum::<usize>(), 100);
    assert!(hits.iter().all(|&h| h > 0), "{hits:?}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn endpoint_removed_under_load_fails_nothing() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let c = Backend::start("c").await;
    for be in [&a, &b, &c] {
        be.state.delay_ms.store(2, Ordering::Relaxed);
    }
    let table = app_table("web");
    let gw = TestGateway::start(
        test_config(),
        routing(
            table.clone(),
            endpoints(&[("web", vec![a.addr, b.addr, c.addr])]),
            CertStore::new(),
        ),
    )
    .await;
    let done = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(load(gw.http, 8, 50, done.clone()));
    wait_until(&done, 100).await;
    gw.gateway.update(routing(
        table,
        endpoints(&[("web", vec![a.addr, b.addr])]),
        CertStore::new(),
    ));
    // The pod goes away once it is out of the endpoints: it stops
    // accepting and finishes what it has.
    let c_state = c.state.clone();
    c.stop().await;
    let c_hits = c_state.hits.load(Ordering::SeqCst);
    let bad = load.await.unwrap();
    assert!(
        bad.is_empty(),
        "{} failed: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    assert_eq!(c_state.hits.load(Ordering::SeqCst), c_hits);
    assert!(c_hits > 0);
    assert_eq!(a.hits() + b.hits() + c_hits, 400);
    gw.shutdown().await;
}

#[tokio::test]
async fn connect_failures_retry_idempotent_requests_elsewhere() {
    let live = Backend::start("live").await;
    let post_live = Backend::start("post-live").await;
    // Endpoint health is per address: another dead one for the POSTs.
    let [dead, dead2] = dead_addrs().await;
    let t = table(&[ingress(
        "ns",
        "app",
        json!({}),
        json!({ "rules": [
            rule(Some("app.test"), &[("/", "web")]),
            rule(Some("post.test"), &[("/", "posts")]),
        ]}),
    )]);
    let gw = TestGateway::start(
        test_config(),
        routing(
            t,
            endpoints(&[
                ("web", vec![dead, live.addr]),
                ("posts", vec![dead2, post_live.addr]),
            ]),
            CertStore::new(),
        ),
    )
    .await;
    let c = h1_client();
    for i in 0..20 {
        let (s, _, b) = get(&c, gw.http, "app.test", &format!("/{i}")).await;
        assert_eq!(s, StatusCode::OK, "{b:?}");
    }
    assert_eq!(live.hits(), 20);
    let m = gw.metrics_text();
    assert!(
        m.contains("sluice_ingress_upstream_connect_failures_total{service=\"ns/web:80\"}"),
        "{m}"
    );
    // Five consecutive failures eject the dead endpoint.
    assert!(
        m.contains("sluice_ingress_upstream_ejections_total{service=\"ns/web:80\"} 1"),
        "{m}"
    );

    // POST is not idempotent: a connect failure is a 502, never a retry.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let req = Request::post(format!("http://{}/p", gw.http))
            .header("host", "post.test")
            .body(body("payload"))
            .unwrap();
        statuses.push(c.request(req).await.unwrap().status());
    }
    let failed = statuses
        .iter()
        .filter(|s| **s == StatusCode::BAD_GATEWAY)
        .count();
    assert!(failed >= 1, "{statuses:?}");
    assert_eq!(post_live.hits(), 4 - failed);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn routing_swaps_under_load_fail_nothing() {
    let v1 = Backend::start("v1").await;
    let v2 = Backend::start("v2").await;
    let eps = endpoints(&[("v1", vec![v1.addr]), ("v2", vec![v2.addr])]);
    let tables = [app_table("v1"), app_table("v2")];
    let gw = TestGateway::start(
        test_config(),
        routing(tables[0].clone(), eps.clone(), CertStore::new()),
    )
    .await;
    let done = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(load(gw.http, 8, 60, done.clone()));
    let mut swaps = 0;
    while done.load(Ordering::SeqCst) < 480 && swaps < 200 {
        swaps += 1;
        gw.gateway.update(Routing {
            table: tables[swaps % 2].clone(),
            endpoints: eps.clone(),
            certs: Arc::default(),
            default_certificate: None,
            ..Routing::default()
        });
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let bad = load.await.unwrap();
    assert!(
        bad.is_empty(),
        "{} failed: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    assert_eq!(v1.hits() + v2.hits(), 480);
    assert!(v1.hits() > 0 && v2.hits() > 0);
    assert!(swaps > 5, "{swaps}");
    let m = gw.metrics_text();
    assert!(
        m.contains(&format!(
            "sluice_ingress_config_reloads_total {}",
            swaps + 1
        )),
        "{m}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn upstream_timeout_and_graceful_shutdown() {
    let slow = Backend::start("slow").await;
    slow.state.delay_ms.store(400, Ordering::Relaxed);
    let t = table(&[ingress(
        "ns",
        "app",
        json!({}),
        json!({ "defaultBackend": { "service": { "name": "slow", "port": { "number": 80 } } } }),
    )]);
    let config = GatewayConfig {
        timeouts: Timeouts {
            upstream_read: Duration::from_millis(150),
            ..Timeouts::default()
        },
        ..test_config()
    };
    let gw = TestGateway::start(
        config,
        routing(
            t.clone(),
            endpoints(&[("slow", vec![slow.addr])]),
            CertStore::new(),
        ),
    )
    .await;
    let c = h1_client();
    let (s, _, _) = get(&c, gw.http, "any.test", "/").await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT);
    gw.shutdown().await;

    // Graceful shutdown lets a request in flight finish.
    let gw = TestGateway::start(
        test_config(),
        routing(t, endpoints(&[("slow", vec![slow.addr])]), CertStore::new()),
    )
    .await;
    let addr = gw.http;
    let inflight = tokio::spawn(async move {
        let c = h1_client();
        get(&c, addr, "any.test", "/slow").await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    gw.shutdown().await;
    let (s, _, b) = inflight.await.unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json_of(&b)["backend"], "slow");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// Reads an HTTP/1.1 response head (up to the blank line).
async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
            .await
            .expect("response head in time")
            .unwrap();
        assert_eq!(n, 1, "connection closed inside the head: {head:?}");
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test]
async fn keep_alive_connections_are_reused_but_never_after_an_upgrade_or_a_cut_body() {
    let web = Backend::start("web").await;
    let gw = TestGateway::start(
        test_config(),
        routing(
            app_table("web"),
            endpoints(&[("web", vec![web.addr])]),
            CertStore::new(),
        ),
    )
    .await;
    let conns = || web.state.connections.load(Ordering::SeqCst);
    // Sequential requests, small and streamed (several chunks), go over
    // one upstream connection.
    let c = h1_client();
    for i in 0..30 {
        let (s, _, _) = get(&c, gw.http, "app.test", &format!("/{i}")).await;
        assert_eq!(s, StatusCode::OK);
    }
    for _ in 0..3 {
        let (s, _, b) = get(&c, gw.http, "app.test", "/download?n=300000").await;
        assert_eq!((s, b.len()), (StatusCode::OK, 300_000));
    }
    assert_eq!(conns(), 1, "sequential requests share one connection");

    // An upgrade takes the idle connection over for good: the next
    // request needs a new one, and the tunnel keeps working after it.
    let mut ws = TcpStream::connect(gw.http).await.unwrap();
    ws.write_all(
        b"GET /chat HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut ws).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (s, _, _) = get(&c, gw.http, "app.test", "/after-upgrade").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(conns(), 2, "the upgraded connection was not reused");
    ws.write_all(b"still a tunnel").await.unwrap();
    let mut back = [0u8; 14];
    tokio::time::timeout(Duration::from_secs(5), ws.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"still a tunnel");

    // A client that leaves in the middle of a body: that connection is
    // dropped, never handed to the next request with bytes left in it.
    let mut cut = TcpStream::connect(gw.http).await.unwrap();
    cut.write_all(b"GET /download?n=8000000 HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut cut).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut some = [0u8; 1000];
    cut.read_exact(&mut some).await.unwrap();
    drop(cut);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..5 {
        let (s, _, b) = get(&c, gw.http, "app.test", &format!("/after-cut/{i}")).await;
        assert_eq!(s, StatusCode::OK);
        let seen = json_of(&b);
        assert_eq!(seen["uri"], format!("/after-cut/{i}"), "{seen}");
    }
    assert_eq!(conns(), 3, "one new connection after the cut body");
    gw.shutdown().await;
}
