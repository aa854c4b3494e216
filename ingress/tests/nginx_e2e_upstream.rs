//! ingress-nginx upstream annotations end to end: the `sluice-ingress`
//! binary in ingress-nginx mode (`--manifests`, the `nginx` class), curl as
//! the client, real backends on loopback.
//!
//! Timeouts: `proxy-read-timeout` (504 when the response head is late),
//! `proxy-connect-timeout` (504 against an endpoint whose listen queue is
//! full, so its SYNs go unanswered) and the ConfigMap's
//! `proxy-read-timeout`. Retries: `proxy-next-upstream` with `error`
//! (POST retried after a refused connect, as nginx does: nothing was
//! sent), `http_503`, `non_idempotent`, `off`, and
//! `proxy-next-upstream-tries`.

mod nginx_e2e_support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use nginx_e2e_support::*;
use serde_json::{Value, json};

/// A backend answering every request with `status` and its name, counting
/// hits.
async fn fixed(name: &'static str, status: u16) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let h = h.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    h.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let _ = req.into_body().collect().await;
                        let mut r = Response::new(Full::new(Bytes::from(name)));
                        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, hits)
}

/// A port with nothing listening (connects are refused).
fn refused() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// A listener that never accepts, its queue filled: further SYNs are
/// dropped and connects hang. Kept alive by the returned values.
async fn black_hole() -> (
    SocketAddr,
    Vec<tokio::net::TcpStream>,
    tokio::net::TcpListener,
) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = sock.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            held.push(s);
        }
    }
    assert!(
        tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(addr)
        )
        .await
        .is_err(),
        "the listen queue of {addr} is not full"
    );
    (addr, held, listener)
}

/// A Service `name` in `demo` whose endpoints are `backends` (one
/// EndpointSlice each, as their ports differ).
fn service_of(name: &str, backends: &[SocketAddr]) -> Vec<Value> {
    let mut v = vec![json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": "demo"},
           "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})];
    for (i, b) in backends.iter().enumerate() {
        v.push(
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": format!("{name}-{i}"), "namespace": "demo",
                            "labels": {"kubernetes.io/service-name": name}},
               "addressType": "IPv4",
               "ports": [{"name": "http", "port": b.port()}],
               "endpoints": [{"addresses": [b.ip().to_string()],
                              "conditions": {"ready": true}}]}),
        );
    }
    v
}

fn one(name: &str, svc: &str, ann: &[(&str, &str)]) -> Value {
    ingress(name, &format!("{name}.test"), &[("/", "Prefix", svc)], ann)
}

/// The statuses of `n` requests to `host`.
async fn statuses(s: &Sluice, host: &str, path: &str, args: &[&str], n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(s.curl(host, path, args).await.status);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts() {
    if !tools_available(&["curl"]) {
        return;
    }
    let app = echo("app").await;
    let (hole, _held, _listener) = black_hole().await;
    let dir = temp_dir("timeouts");
    let mut objects = vec![nginx_class()];
    objects.extend(service("app", app.addr));
    objects.extend(service_of("hole", &[hole]));
    objects.push(one("read1", "app", &[("proxy-read-timeout", "1")]));
    objects.push(one("readdefault", "app", &[]));
    objects.push(one(
        "connect1",
        "hole",
        &[
            ("proxy-connect-timeout", "1"),
            ("proxy-next-upstream", "off"),
        ],
    ));
    write(&dir.join("manifests"), "objects", &objects);
    // The ConfigMap's proxy-read-timeout is every route's default.
    std::fs::write(
        dir.join("manifests/configmap.json"),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "ingress-nginx-controller", "namespace": "demo"},
               "data": {"proxy-read-timeout": "2"}})
        .to_string(),
    )
    .unwrap();
    let s = Sluice::start(&dir, &["--configmap", "demo/ingress-nginx-controller"]).await;
    s.until("read1.test", "/", &[], |r| r.status == 200).await;

    // proxy-read-timeout: 1 — a response head 3 s late is a 504 after ~1 s.
    let t = Instant::now();
    let r = s.curl("read1.test", "/sleep/3000", &[]).await;
    let took = t.elapsed();
    assert_eq!(r.status, 504, "{r:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    // Within the timeout: the answer.
    assert_eq!(s.curl("read1.test", "/sleep/300", &[]).await.status, 200);
    // The ConfigMap's 2 s: 1.5 s late is served, 3 s late is a 504 after ~2 s.
    assert_eq!(
        s.curl("readdefault.test", "/sleep/1500", &[]).await.status,
        200
    );
    let t = Instant::now();
    let r = s.curl("readdefault.test", "/sleep/3000", &[]).await;
    assert_eq!(r.status, 504, "{r:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        t.elapsed()
    );

    // proxy-connect-timeout: 1 — an endpoint that never completes the
    // handshake is a 504 after ~1 s (the default would wait 5 s).
    let t = Instant::now();
    let r = s.curl("connect1.test", "/", &[]).await;
    let took = t.elapsed();
    assert_eq!(r.status, 504, "{r:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(3000),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_upstream() {
    if !tools_available(&["curl"]) {
        return;
    }
    let good = echo("good").await;
    let (bad, bad_hits) = fixed("bad", 503).await;
    // Endpoint health is per address: one dead port per case.
    let (dead_a, dead_b) = (refused(), refused());
    let dir = temp_dir("next-upstream");
    let mut objects = vec![nginx_class()];
    objects.extend(service_of("flaky", &[bad, good.addr]));
    objects.extend(service_of("deada", &[dead_a, good.addr]));
    objects.extend(service_of("deadb", &[dead_b, good.addr]));
    objects.push(one(
        "s503",
        "flaky",
        &[("proxy-next-upstream", "error timeout http_503")],
    ));
    objects.push(one(
        "s503post",
        "flaky",
        &[(
            "proxy-next-upstream",
            "error timeout http_503 non_idempotent",
        )],
    ));
    objects.push(one(
        "s503once",
        "flaky",
        &[
            ("proxy-next-upstream", "error timeout http_503"),
            ("proxy-next-upstream-tries", "1"),
        ],
    ));
    objects.push(one("plain", "flaky", &[]));
    objects.push(one("dead", "deada", &[]));
    objects.push(one("deadoff", "deadb", &[("proxy-next-upstream", "off")]));
    write(&dir.join("manifests"), "objects", &objects);
    let s = Sluice::start(&dir, &[]).await;
    s.until("s503.test", "/", &[], |r| r.status == 200).await;

    // http_503: every GET ends at the good endpoint, the 503 one was tried.
    let before = bad_hits.load(Ordering::SeqCst);
    let got = statuses(&s, "s503.test", "/", &[], 10).await;
    assert!(got.iter().all(|&c| c == 200), "{got:?}");
    assert!(
        bad_hits.load(Ordering::SeqCst) > before,
        "503 endpoint never tried"
    );
    // A POST reached the 503 endpoint: not sent again without non_idempotent.
    let post = ["-X", "POST", "-d", "x=1"];
    let got = statuses(&s, "s503.test", "/", &post, 10).await;
    assert!(got.contains(&503) && got.contains(&200), "{got:?}");
    let got = statuses(&s, "s503post.test", "/", &post, 10).await;
    assert!(got.iter().all(|&c| c == 200), "{got:?}");
    // proxy-next-upstream-tries: 1 and the default `error timeout`: the
    // endpoint's 503 is passed on.
    let got = statuses(&s, "s503once.test", "/", &[], 10).await;
    assert!(got.contains(&503), "{got:?}");
    let got = statuses(&s, "plain.test", "/", &[], 10).await;
    assert!(got.contains(&503), "{got:?}");

    // error (default): a refused connect sent nothing, so even a POST goes
    // to the other endpoint, as in nginx.
    let got = statuses(&s, "dead.test", "/", &post, 6).await;
    assert!(got.iter().all(|&c| c == 200), "{got:?}");
    // off: the refused connect is the client's 502.
    let got = statuses(&s, "deadoff.test", "/", &[], 4).await;
    assert!(got.contains(&502), "{got:?}");
}
