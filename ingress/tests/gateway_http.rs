//! The gateway's HTTP path over real sockets: routing and errors, header
//! rewriting, path hygiene, smuggling, limits and timeouts, h2c, gRPC
//! trailers, WebSocket upgrades, and large streamed bodies.

mod gateway_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use sluice_ingress::gateway::{
    AppProtocol, CertStore, EndpointSet, Endpoints, GatewayConfig, Limits, Timeouts,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use gateway_support::*;

/// Host `app.test`: `/` → web, `/admin` → admin; `/res` → a resource
/// backend; `/none` → a Service without endpoints.
async fn setup(config: GatewayConfig) -> (TestGateway, Backend, Backend) {
    let web = Backend::start("web").await;
    let admin = Backend::start("admin").await;
    let spec = json!({
        "rules": [{
            "host": "app.test",
            "http": { "paths": [
                { "path": "/", "pathType": "Prefix",
                  "backend": { "service": { "name": "web", "port": { "number": 80 } } } },
                { "path": "/admin", "pathType": "Prefix",
                  "backend": { "service": { "name": "admin", "port": { "number": 80 } } } },
                { "path": "/none", "pathType": "Prefix",
                  "backend": { "service": { "name": "empty", "port": { "number": 80 } } } },
                { "path": "/res", "pathType": "Prefix",
                  "backend": { "resource": { "apiGroup": "k8s.example.com",
                                             "kind": "StorageBucket", "name": "static" } } },
            ]}
        }]
    });
    let t = table(&[ingress("ns", "app", json!({}), spec)]);
    let eps = endpoints(&[
        ("web", vec![web.addr]),
        ("admin", vec![admin.addr]),
        ("empty", vec![]),
    ]);
    let gw = TestGateway::start(config, routing(t, eps, CertStore::new())).await;
    (gw, web, admin)
}

#[tokio::test]
async fn routes_forwards_and_rewrites_headers() {
    let (gw, web, admin) = setup(test_config()).await;
    let c = h1_client();

    let (s, h, b) = get(&c, gw.http, "app.test", "/a/./b//c?x=%2F&y=1").await;
    assert_eq!(s, StatusCode::OK);
    let seen = json_of(&b);
    assert_eq!(seen["backend"], "web");
    // Normalized path, original query.
    assert_eq!(seen["uri"], "/a/b/c?x=%2F&y=1");
    assert_eq!(seen["headers"]["host"], "app.test");
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["headers"]["x-real-ip"], "127.0.0.1");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http");
    assert_eq!(seen["headers"]["x-forwarded-host"], "app.test");
    // Hop-by-hop response headers from the backend are gone.
    assert_eq!(h["x-backend"], "web");
    assert!(!h.contains_key("keep-alive"));

    // Spoofed forwarding headers and hop-by-hop request headers.
    let req = Request::get(format!("http://{}/x", gw.http))
        .header("host", "APP.test:8080")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-real-ip", "6.6.6.6")
        .header("connection", "x-secret")
        .header("x-secret", "1")
        .header("proxy-authorization", "Basic Zm9v")
        .body(empty())
        .unwrap();
    let r = c.request(req).await.unwrap();
    let seen = json_of(&r.into_body().collect().await.unwrap().to_bytes());
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["headers"]["x-real-ip"], "127.0.0.1");
    // The normalized host (lower case; the port is not the default one).
    assert_eq!(seen["headers"]["host"], "app.test:8080");
    assert!(seen["headers"].get("x-secret").is_none());
    assert!(seen["headers"].get("proxy-authorization").is_none());

    let (s, _, b) = get(&c, gw.http, "app.test", "/admin/x").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json_of(&b)["backend"], "admin");

    // Errors.
    let (s, _, b) = get(&c, gw.http, "other.test", "/").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(b.len() < 100, "{b:?}");
    let (s, _, b) = get(&c, gw.http, "app.test", "/res").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let b = String::from_utf8_lossy(&b);
    assert!(b.contains("resource") && b.contains("StorageBucket"), "{b}");
    let (s, _, b) = get(&c, gw.http, "app.test", "/none").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&b).contains("no ready endpoints"));

    // HTTP/1.1 without Host; two Hosts.
    let out = raw_exchange(gw.http, b"GET / HTTP/1.1\r\n\r\n", Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    let out = raw_exchange(
        gw.http,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nHost: evil.test\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert_eq!(web.hits(), 2);
    assert_eq!(admin.hits(), 1);

    let m = gw.metrics_text();
    assert!(
        m.contains(
            "sluice_ingress_requests_total{ingress=\"ns/app\",service=\"ns/web:80\",code=\"200\"} 2"
        ),
        "{m}"
    );
    assert!(m.contains("sluice_ingress_open_connections{listener=\"http\"}"));
    assert!(m.contains("sluice_ingress_config_reloads_total 1"));
    gw.shutdown().await;
}

#[tokio::test]
async fn path_hygiene_attacks_never_reach_admin() {
    let (gw, web, admin) = setup(test_config()).await;
    let attacks: &[&str] = &[
        "/public/..;/admin",
        "/public/%2e%2e;/admin",
        "/admin%2F..%2Fx",
        "/public%2F..%2Fadmin",
        "/%5cadmin",
        "/public/%00/../admin",
        "/public/%zz/../admin",
        "/public/.;/../admin",
        "*",
    ];
    for a in attacks {
        let raw = format!("GET {a} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
        let out = raw_exchange(gw.http, raw.as_bytes(), Duration::from_secs(5)).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{a}: {out}");
    }
    // Absolute-form and authority-form targets.
    let out = raw_exchange(
        gw.http,
        b"GET http://app.test/public/..;/admin HTTP/1.1\r\nHost: app.test\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    let out = raw_exchange(
        gw.http,
        b"CONNECT app.test:80 HTTP/1.1\r\nHost: app.test\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert_eq!(admin.hits(), 0);
    assert_eq!(web.hits(), 0);

    // Spellings that resolve to /admin are routed as /admin, and forwarded
    // as /admin: router and backend agree.
    let c = h1_client();
    for p in ["/public/../admin/x", "/public/%2e%2E/admin/x", "//admin/x"] {
        let (s, _, b) = get(&c, gw.http, "app.test", p).await;
        assert_eq!(s, StatusCode::OK, "{p}");
        let seen = json_of(&b);
        assert_eq!(seen["backend"], "admin", "{p}");
        assert_eq!(seen["uri"], "/admin/x", "{p}");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn smuggling_attempts_are_refused() {
    let (gw, web, admin) = setup(test_config()).await;
    let t = Duration::from_secs(5);

    // Conflicting Content-Lengths.
    let out = raw_exchange(
        gw.http,
        b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd",
        t,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");

    // A transfer coding that is not chunked; TE on HTTP/1.0; a space
    // before the colon.
    for raw in [
        &b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip\r\n\r\nGET /admin HTTP/1.1\r\nHost: app.test\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.0\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
    ] {
        let out = raw_exchange(gw.http, raw, t).await;
        assert!(
            out.starts_with("HTTP/1.1 400"),
            "{}: {out}",
            String::from_utf8_lossy(raw)
        );
    }

    // CL + TE: hyper frames by Transfer-Encoding (RFC 9112 §6.1), drops
    // Content-Length and closes the connection after the response; the
    // gateway re-frames the body upstream. The bytes a CL-framing peer
    // would read as a second request are never parsed: one response,
    // then EOF, and the smuggled /admin request never reaches anyone.
    // Both header orders (hyper handles them on different code paths).
    for raw in [
        &b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: app.test\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: app.test\r\n\r\n",
    ] {
        let before = web.hits();
        let out = raw_exchange(gw.http, raw, t).await;
        assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out}");
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(
            out.to_ascii_lowercase().contains("\r\nconnection: close\r\n"),
            "{out}"
        );
        assert_eq!(web.hits(), before + 1);
        let last = web.state.requests.lock().unwrap().last().cloned().unwrap();
        assert_eq!((&last["method"], &last["path"]), (&json!("POST"), &json!("/")));
    }
    let seen = web.state.requests.lock().unwrap().clone();
    // The gateway framed the upstream request itself: never both headers.
    for r in &seen {
        let h = &r["headers"];
        assert!(
            h.get("content-length").is_none() || h.get("transfer-encoding").is_none(),
            "{r}"
        );
    }
    assert_eq!(admin.hits(), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn limits_and_timeouts() {
    let config = GatewayConfig {
        limits: Limits {
            max_request_body: 1024,
            ..Limits::default()
        },
        timeouts: Timeouts {
            header_read: Duration::from_millis(300),
            idle: Duration::from_secs(5),
            ..Timeouts::default()
        },
        ..test_config()
    };
    let (gw, web, _admin) = setup(config).await;

    // Slowloris: a head that never ends is cut after the head timeout.
    let started = Instant::now();
    let mut s = TcpStream::connect(gw.http).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("slowloris connection closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "{}", String::from_utf8_lossy(&buf));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250), "{took:?}");

    // Dripping one header byte at a time does not extend it.
    let started = Instant::now();
    let mut s = TcpStream::connect(gw.http).await.unwrap();
    let mut closed = false;
    for b in b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    {
        if s.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !closed {
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    }
    assert!(started.elapsed() < Duration::from_secs(3));

    // Keep-alive outlives the head timeout: idle is separate.
    let mut s = TcpStream::connect(gw.http).await.unwrap();
    for _ in 0..2 {
        s.write_all(b"GET /k HTTP/1.1\r\nHost: app.test\r\n\r\n")
            .await
            .unwrap();
        let head = read_head(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap();
        let mut body = vec![0; len];
        s.read_exact(&mut body).await.unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
    }

    // Header size: 40 KiB of header → 431.
    let big = format!(
        "GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    let out = raw_exchange(gw.http, big.as_bytes(), Duration::from_secs(5)).await;
    assert!(
        out.starts_with("HTTP/1.1 431"),
        "{}",
        &out[..out.len().min(200)]
    );

    // Body limit: declared and streamed.
    let hits = web.hits();
    let out = raw_exchange(
        gw.http,
        b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 2000\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert_eq!(web.hits(), hits, "413 before contacting the upstream");
    let c = h1_client();
    let chunks: Vec<_> = (0..4).map(|_| data(Bytes::from(vec![b'x'; 512]))).collect();
    let streamed = http_body_util::StreamBody::new(futures_iter(chunks));
    let req = Request::post(format!("http://{}/upload", gw.http))
        .header("host", "app.test")
        .body(http_body_util::BodyExt::boxed_unsync(streamed))
        .unwrap();
    let r = c.request(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Within the limit.
    let req = Request::post(format!("http://{}/upload", gw.http))
        .header("host", "app.test")
        .body(body(vec![b'y'; 1024]))
        .unwrap();
    let r = c.request(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.into_body().collect().await.unwrap().to_bytes(), "1024");
    gw.shutdown().await;
}

async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

fn futures_iter<T: Unpin>(v: Vec<T>) -> impl futures_core::Stream<Item = T> {
    struct S<T>(std::vec::IntoIter<T>);
    impl<T: Unpin> futures_core::Stream for S<T> {
        type Item = T;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<T>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    S(v.into_iter())
}

#[tokio::test]
async fn h2c_prior_knowledge_and_grpc_trailers() {
    let web = Backend::start("web").await;
    let grpc = Backend::start("grpc").await;
    let t = table(&[ingress(
        "ns",
        "app",
        json!({}),
        json!({ "rules": [
            rule(Some("app.test"), &[("/", "web")]),
            rule(Some("grpc.test"), &[("/", "grpc")]),
        ]}),
    )]);
    let mut eps = Endpoints::new();
    eps.insert(key("web"), EndpointSet::new([web.addr], AppProtocol::Http1));
    eps.insert(
        key("grpc"),
        EndpointSet::new([grpc.addr], AppProtocol::from_app_protocol(Some("grpc"))),
    );
    let gw = TestGateway::start(
        test_config(),
        routing(t, std::sync::Arc::new(eps), CertStore::new()),
    )
    .await;

    // h2c (prior knowledge) client → HTTP/1.1 backend.
    let tcp = TcpStream::connect(gw.http).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://app.test/h2c?q=1")
        .body(empty())
        .unwrap();
    let r = send.send_request(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.version(), http::Version::HTTP_2);
    let seen = json_of(&r.into_body().collect().await.unwrap().to_bytes());
    assert_eq!(seen["version"], "HTTP/1.1");
    assert_eq!(seen["uri"], "/h2c?q=1");
    assert_eq!(seen["headers"]["host"], "app.test");
    // :authority and Host disagree: malformed.
    let req = Request::get("http://app.test/x")
        .header("host", "other.test")
        .body(empty())
        .unwrap();
    let r = send.send_request(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // gRPC-style: h2c both sides, te: trailers kept, trailers relayed.
    let tcp = TcpStream::connect(gw.http).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::post("http://grpc.test/grpc")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body(Bytes::from_static(b"\0\0\0\0\x00")))
        .unwrap();
    let r = send.send_request(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/grpc");
    let collected = r.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(collected.to_bytes(), Bytes::from_static(b"\0\0\0\0\x02hi"));
    let seen = grpc.state.requests.lock().unwrap()[0].clone();
    assert_eq!(seen["version"], "HTTP/2.0");
    assert_eq!(seen["headers"]["te"], "trailers");
    gw.shutdown().await;
}

#[tokio::test]
async fn websocket_upgrade_is_tunnelled() {
    let (gw, web, _admin) = setup(test_config()).await;
    let mut s = TcpStream::connect(gw.http).await.unwrap();
    s.write_all(
        b"GET /chat HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    for msg in [&b"hello"[..], b"\x81\x05world", &[0u8; 3000]] {
        s.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, msg);
    }
    let seen = web.state.requests.lock().unwrap()[0].clone();
    assert_eq!(seen["headers"]["upgrade"], "websocket");
    assert_eq!(
        seen["headers"]["sec-websocket-key"],
        "dGhlIHNhbXBsZSBub25jZQ=="
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn large_bodies_stream_both_ways() {
    const SIZE: u64 = 64 * 1024 * 1024;
    let config = GatewayConfig {
        limits: Limits {
            max_request_body: 0,
            ..Limits::default()
        },
        ..test_config()
    };
    let (gw, web, _admin) = setup(config).await;
    let c = h1_client();

    // Download: the backend sends half, then waits until the client has
    // seen bytes; a gateway that buffered whole bodies would deadlock.
    let req = Request::get(format!("http://{}/download?n={SIZE}&gate=1", gw.http))
        .header("host", "app.test")
        .body(empty())
        .unwrap();
    let r = c.request(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut b = r.into_body();
    let mut got = 0u64;
    let mut opened = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(f) = tokio::time::timeout_at(deadline.into(), b.frame())
        .await
        .expect("download stalled")
    {
        if let Ok(d) = f.unwrap().into_data() {
            got += d.len() as u64;
        }
        if !opened && got > 0 {
            web.state.gate.notify_one();
            opened = true;
        }
    }
    assert_eq!(got, SIZE);

    // Upload: the client sends a first chunk and waits until the backend
    // has received bytes before sending the rest.
    let (mut tx, rx) = http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(4);
    let req = Request::post(format!("http://{}/upload", gw.http))
        .header("host", "app.test")
        .body(rx.map_err(|e| match e {}).boxed_unsync())
        .unwrap();
    let state = web.state.clone();
    let sender = tokio::spawn(async move {
        let chunk = Bytes::from(vec![b'u'; 1024 * 1024]);
        tx.send_data(chunk.clone()).await.unwrap();
        let wait = Instant::now();
        while state.received.load(Ordering::SeqCst) == 0 {
            assert!(
                wait.elapsed() < Duration::from_secs(10),
                "first byte never arrived"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for _ in 1..(SIZE / chunk.len() as u64) {
            tx.send_data(chunk.clone()).await.unwrap();
        }
    });
    let r = tokio::time::timeout(Duration::from_secs(30), c.request(req))
        .await
        .expect("upload stalled")
        .unwrap();
    sender.await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.into_body().collect().await.unwrap().to_bytes(),
        SIZE.to_string()
    );
    gw.shutdown().await;
}
