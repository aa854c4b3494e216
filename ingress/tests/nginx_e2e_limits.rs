//! ingress-nginx's per-client limits end to end: the `sluice-ingress`
//! binary in ingress-nginx mode, clients on distinct loopback addresses
//! (127.0.0.N, each a client address of its own), the rate measured
//! against the test's clock.
//!
//! * `limit-rps` with `limit-burst-multiplier`: `1 + rps × multiplier`
//!   requests pass at once (nginx's `burst=… nodelay`), then the rate; the
//!   zone is per Ingress (shared by its paths) and per client address;
//! * `limit-rpm` (burst `rpm × multiplier`), `limit-allowlist` (and the default multiplier 5);
//! * `limit-connections`: requests in progress per client;
//! * the ConfigMap's `limit-req-status-code` and `limit-conn-status-code`.

mod nginx_e2e_support;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use nginx_e2e_support::*;

/// An HTTP/1.1 keep-alive connection to the gateway from `source`.
struct Client {
    send: SendRequest<Empty<Bytes>>,
}

impl Client {
    async fn connect(source: &str, port: u16) -> Self {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(source.parse::<IpAddr>().unwrap(), 0))
            .unwrap();
        let stream = sock
            .connect(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .unwrap();
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Self { send }
    }

    /// `GET path` with `Host: host`: the status and the body.
    async fn get(&mut self, host: &str, path: &str) -> (u16, String) {
        self.send.ready().await.unwrap();
        let req = hyper::Request::get(path)
            .header("host", host)
            .body(Empty::new())
            .unwrap();
        let resp = self.send.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

/// One request on a connection of its own from `source`.
async fn once(source: &str, port: u16, host: &str, path: &str) -> u16 {
    Client::connect(source, port).await.get(host, path).await.0
}

fn objects(app: SocketAddr, ingresses: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    let mut o = vec![nginx_class()];
    o.extend(service("app", app));
    o.extend(ingresses);
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_rates_follow_nginx_leaky_bucket() {
    if !tools_available(&["curl"]) {
        return;
    }
    let app = echo("app").await;
    let dir = temp_dir("limits-rate");
    let ingresses = vec![
        ingress(
            "rps",
            "rps.test",
            &[("/", "Prefix", "app"), ("/other", "Prefix", "app")],
            &[("limit-rps", "10"), ("limit-burst-multiplier", "1")],
        ),
        ingress(
            "rpm",
            "rpm.test",
            &[("/", "Prefix", "app")],
            &[("limit-rpm", "3"), ("limit-burst-multiplier", "1")],
        ),
        ingress(
            "exempt",
            "exempt.test",
            &[("/", "Prefix", "app")],
            &[("limit-rps", "1"), ("limit-whitelist", "127.0.0.4/32")],
        ),
    ];
    write(
        &dir.join("manifests"),
        "objects",
        &objects(app.addr, ingresses),
    );
    let s = Sluice::start(&dir, &[]).await;

    // A fresh client: 1 + burst (10 × 1) at once, then refused with 503.
    let mut c = Client::connect("127.0.0.2", s.http).await;
    let start = Instant::now();
    let mut passed = 0;
    for _ in 0..30 {
        let (status, body) = c.get("rps.test", "/").await;
        match status {
            200 => passed += 1,
            503 => assert!(body.contains("limiting requests"), "{body}"),
            other => panic!("{other} {body}"),
        }
    }
    let burst_time = start.elapsed().as_secs_f64();
    let leaked = (10.0 * burst_time).floor() as i32;
    assert!(
        (11..=11 + leaked + 1).contains(&passed),
        "{passed} passed in {burst_time:.3}s"
    );
    // Another path of the Ingress shares its zone; another client has its
    // own bucket.
    assert_eq!(c.get("rps.test", "/other").await.0, 503);
    assert_eq!(once("127.0.0.3", s.http, "rps.test", "/other").await, 200);

    // Then the rate: over about two seconds of requests every 20 ms, 10
    // per second pass (nginx counts whole milliseconds; ±1 at each end).
    let start = Instant::now();
    let mut passed = 0;
    while start.elapsed() < Duration::from_secs(2) {
        if c.get("rps.test", "/").await.0 == 200 {
            passed += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let expected = 10.0 * secs;
    assert!(
        (passed as f64 - expected).abs() <= 2.0,
        "{passed} passed in {secs:.3}s, expected about {expected:.1}"
    );

    // limit-rpm 3 with multiplier 1: 1 + 3 at once, then one per 20 s
    // (a second later, still none: the rate is per minute).
    let mut c = Client::connect("127.0.0.2", s.http).await;
    let statuses: Vec<u16> = futures_collect(&mut c, "rpm.test", 6).await;
    assert_eq!(statuses, [200, 200, 200, 200, 503, 503]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(c.get("rpm.test", "/").await.0, 503);

    // limit-whitelist: the exempt address is never limited; another gets
    // 1 + 1 × 5 (the default multiplier).
    let mut exempt = Client::connect("127.0.0.4", s.http).await;
    for _ in 0..20 {
        assert_eq!(exempt.get("exempt.test", "/").await.0, 200);
    }
    let mut other = Client::connect("127.0.0.5", s.http).await;
    let statuses = futures_collect(&mut other, "exempt.test", 8).await;
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 503, 503]);
}

/// `n` requests for `/` of `host` on `c`, one after the other.
async fn futures_collect(c: &mut Client, host: &str, n: usize) -> Vec<u16> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(c.get(host, "/").await.0);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_client_and_configmap_status_codes() {
    if !tools_available(&["curl"]) {
        return;
    }
    let app = echo("app").await;
    let dir = temp_dir("limits-conn");
    let mut o = objects(
        app.addr,
        vec![
            ingress(
                "conn",
                "conn.test",
                &[("/", "Prefix", "app")],
                &[("limit-connections", "2")],
            ),
            ingress(
                "rps",
                "rps.test",
                &[("/", "Prefix", "app")],
                &[("limit-rps", "1"), ("limit-burst-multiplier", "1")],
            ),
        ],
    );
    o.push(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "ingress-nginx-controller", "namespace": "ingress-nginx"},
        "data": {"limit-conn-status-code": "429", "limit-req-status-code": "429"}
    }));
    write(&dir.join("manifests"), "objects", &o);
    let s = Sluice::start(
        &dir,
        &["--configmap", "ingress-nginx/ingress-nginx-controller"],
    )
    .await;
    let port = s.http;

    // Two slow requests in progress from 127.0.0.2: a third from it is
    // refused with the ConfigMap's status, one from 127.0.0.3 passes.
    let slow: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(async move { once("127.0.0.2", port, "conn.test", "/sleep/1500").await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = Client::connect("127.0.0.2", port)
        .await
        .get("conn.test", "/")
        .await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("limiting connections"), "{body}");
    assert_eq!(once("127.0.0.3", port, "conn.test", "/").await, 200);
    for h in slow {
        assert_eq!(h.await.unwrap(), 200);
    }
    // The slots went with the responses.
    assert_eq!(once("127.0.0.2", port, "conn.test", "/").await, 200);

    // limit-req-status-code.
    let mut c = Client::connect("127.0.0.2", port).await;
    assert_eq!(
        futures_collect(&mut c, "rps.test", 3).await,
        [200, 200, 429]
    );
}
