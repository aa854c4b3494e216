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
//! `proxy-next-upstream-tries`. Canaries: `canary-weight` (+`-total`)
//! within a binomial tolerance over 2,000 requests, `canary-by-header`
//! (+`-value`, `-pattern`), `canary-by-cookie`, and their precedence.
//! Cookie affinity: the session cookie set, honoured, its attributes, and
//! `session-cookie-change-on-failure`. `upstream-hash-by` (a key keeps its
//! endpoint, only a removed endpoint's keys move); `load-balance: ewma`
//! against a slow and a fast endpoint.

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

/// How many of `n` GETs of `http://host/` (one curl, one keep-alive
/// connection) the backend named `name` answered.
async fn count_backend(s: &Sluice, host: &str, name: &str, n: usize) -> usize {
    let port = s.http;
    let resolve = format!("{host}:{port}:127.0.0.1");
    let url = format!("http://{host}:{port}/");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "120", "--resolve", &resolve])
            .args(std::iter::repeat_n(url, n))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("\"backend\":").count(), n, "{text}");
    text.matches(&format!("\"backend\":\"{name}\"")).count()
}

/// Asserts `got` canary answers of `n` are within 5 standard deviations
/// of a binomial(`n`, `p`).
fn within_binomial(got: usize, n: usize, p: f64) {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (got as f64 - mean).abs() <= 5.0 * sd,
        "{got} of {n}, want {mean} ± {}",
        5.0 * sd
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary() {
    if !tools_available(&["curl"]) {
        return;
    }
    let prod = echo("prod").await;
    let canary = echo("canary").await;
    let dir = temp_dir("canary");
    let mut objects = vec![nginx_class()];
    // A primary and a canary Ingress per host, each with its own Services
    // (a canary joins every route to its primary's Service port).
    let mut pair = |host: &str, ann: &[(&str, &str)]| {
        let (p, c) = (format!("{host}-prod"), format!("{host}-canary"));
        objects.extend(service(&p, prod.addr));
        objects.extend(service(&c, canary.addr));
        let h = format!("{host}.test");
        objects.push(ingress(&p, &h, &[("/", "Prefix", &p)], &[]));
        let mut a = vec![("canary", "true")];
        a.extend_from_slice(ann);
        objects.push(ingress(&c, &h, &[("/", "Prefix", &c)], &a));
    };
    pair("w30", &[("canary-weight", "30")]);
    pair(
        "w125",
        &[("canary-weight", "125"), ("canary-weight-total", "1000")],
    );
    pair("none", &[]);
    pair(
        "prec",
        &[
            ("canary-by-header", "X-Canary"),
            ("canary-by-cookie", "beta"),
            ("canary-weight", "100"),
        ],
    );
    pair(
        "value",
        &[
            ("canary-by-header", "X-Canary"),
            ("canary-by-header-value", "blue"),
        ],
    );
    pair(
        "pattern",
        &[
            ("canary-by-header", "X-Canary"),
            ("canary-by-header-pattern", "^(blue|cyan)$"),
        ],
    );
    write(&dir.join("manifests"), "objects", &objects);
    let s = Sluice::start(&dir, &[]).await;
    s.until("none.test", "/", &[], |r| r.status == 200).await;

    // Weights over 2,000 requests.
    within_binomial(
        count_backend(&s, "w30.test", "canary", 2000).await,
        2000,
        0.30,
    );
    within_binomial(
        count_backend(&s, "w125.test", "canary", 2000).await,
        2000,
        0.125,
    );
    assert_eq!(count_backend(&s, "none.test", "canary", 200).await, 0);
    assert_eq!(count_backend(&s, "prec.test", "canary", 200).await, 200);

    let backend = |host: &'static str, args: &'static [&'static str]| {
        let s = &s;
        async move {
            let r = s.curl(host, "/", args).await;
            r.echo()["backend"].as_str().unwrap().to_owned()
        }
    };
    // Precedence: header, then cookie, then weight (100 here).
    assert_eq!(
        backend("prec.test", &["-H", "X-Canary: always"]).await,
        "canary"
    );
    assert_eq!(
        backend("prec.test", &["-H", "X-Canary: never", "-b", "beta=always"]).await,
        "prod"
    );
    assert_eq!(
        backend("prec.test", &["-H", "X-Canary: always", "-b", "beta=never"]).await,
        "canary"
    );
    assert_eq!(backend("prec.test", &["-b", "beta=never"]).await, "prod");
    assert_eq!(
        backend("prec.test", &["-H", "X-Canary: maybe", "-b", "beta=never"]).await,
        "prod"
    );
    assert_eq!(
        backend("prec.test", &["-b", "other=1; beta=x"]).await,
        "canary"
    );
    // canary-by-header-value and -pattern (weight 0 otherwise).
    assert_eq!(
        backend("value.test", &["-H", "X-Canary: blue"]).await,
        "canary"
    );
    assert_eq!(
        backend("value.test", &["-H", "X-Canary: always"]).await,
        "prod"
    );
    assert_eq!(backend("value.test", &[]).await, "prod");
    assert_eq!(
        backend("pattern.test", &["-H", "X-Canary: cyan"]).await,
        "canary"
    );
    assert_eq!(
        backend("pattern.test", &["-H", "X-Canary: cyanide"]).await,
        "prod"
    );
}

/// The session cookie value naming `addr` (MD5 hex of `ip:port`).
fn session_value(addr: SocketAddr) -> String {
    use md5::Digest as _;
    md5::Md5::digest(addr.to_string().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_affinity() {
    if !tools_available(&["curl"]) {
        return;
    }
    let backends = [echo("a").await, echo("b").await, echo("c").await];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let good = echo("good").await;
    let (dead_a, dead_b) = (refused(), refused());
    let dir = temp_dir("affinity");
    let mut objects = vec![nginx_class()];
    objects.extend(service_of("trio", &addrs));
    objects.extend(service_of("flakya", &[dead_a, good.addr]));
    objects.extend(service_of("flakyb", &[dead_b, good.addr]));
    objects.push(one("sticky", "trio", &[("affinity", "cookie")]));
    objects.push(one("plain", "trio", &[]));
    objects.push(ingress(
        "custom",
        "custom.test",
        &[("/app", "Prefix", "trio")],
        &[
            ("affinity", "cookie"),
            ("affinity-mode", "persistent"),
            ("session-cookie-name", "SID"),
            ("session-cookie-path", "/app/x"),
            ("session-cookie-domain", "custom.test"),
            ("session-cookie-expires", "3600"),
            ("session-cookie-max-age", "7200"),
            ("session-cookie-samesite", "Strict"),
            ("session-cookie-secure", "true"),
        ],
    ));
    objects.push(one(
        "cof",
        "flakya",
        &[
            ("affinity", "cookie"),
            ("session-cookie-change-on-failure", "true"),
        ],
    ));
    objects.push(one("nocof", "flakyb", &[("affinity", "cookie")]));
    write(&dir.join("manifests"), "objects", &objects);
    let s = Sluice::start(&dir, &[]).await;
    s.until("sticky.test", "/", &[], |r| r.status == 200).await;

    // No cookie: balanced as usual, each answer sets the cookie of the
    // endpoint that answered.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let r = s.curl("sticky.test", "/", &[]).await;
        let name = r.echo()["backend"].as_str().unwrap().to_owned();
        let addr = addrs[["a", "b", "c"].iter().position(|n| *n == name).unwrap()];
        assert_eq!(
            r.header("set-cookie"),
            Some(format!("INGRESSCOOKIE={}; Path=/; HttpOnly", session_value(addr)).as_str()),
            "{r:?}"
        );
        seen.insert(name);
    }
    assert!(seen.len() >= 2, "{seen:?}");
    // With the cookie: always its endpoint, and no new cookie.
    for (i, addr) in addrs.iter().enumerate() {
        let cookie = format!("INGRESSCOOKIE={}", session_value(*addr));
        for _ in 0..10 {
            let r = s.curl("sticky.test", "/", &["-b", &cookie]).await;
            assert_eq!(r.echo()["backend"], ["a", "b", "c"][i], "{r:?}");
            assert_eq!(r.header("set-cookie"), None);
        }
    }
    // A cookie naming no endpoint: a new session.
    let r = s
        .curl(
            "sticky.test",
            "/",
            &["-b", "INGRESSCOOKIE=0123456789abcdef"],
        )
        .await;
    assert!(r.header("set-cookie").is_some(), "{r:?}");
    // Without affinity, no cookie.
    let r = s.curl("plain.test", "/", &[]).await;
    assert_eq!(r.header("set-cookie"), None);

    // session-cookie-* attributes.
    let r = s.curl("custom.test", "/app", &[]).await;
    let c = r.header("set-cookie").unwrap_or_default().to_owned();
    assert!(c.starts_with("SID="), "{c}");
    for part in [
        "; Path=/app/x",
        "; Domain=custom.test",
        "; Expires=",
        "; Max-Age=7200",
        "; Secure",
        "; HttpOnly",
        "; SameSite=Strict",
    ] {
        assert!(c.contains(part), "{part} not in {c}");
    }
    let expires = c
        .split("; Expires=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    let at = httpdate::parse_http_date(expires).unwrap();
    let ahead = at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(
        ahead > Duration::from_secs(3500) && ahead <= Duration::from_secs(3600),
        "{ahead:?}"
    );

    // The session's endpoint refuses: the request goes to the other one
    // (proxy-next-upstream's default `error`); with change-on-failure the
    // cookie moves to it, without it stays.
    let r = s
        .curl(
            "cof.test",
            "/",
            &["-b", &format!("INGRESSCOOKIE={}", session_value(dead_a))],
        )
        .await;
    assert_eq!(r.echo()["backend"], "good");
    assert_eq!(
        r.header("set-cookie"),
        Some(
            format!(
                "INGRESSCOOKIE={}; Path=/; HttpOnly",
                session_value(good.addr)
            )
            .as_str()
        )
    );
    let r = s
        .curl(
            "nocof.test",
            "/",
            &["-b", &format!("INGRESSCOOKIE={}", session_value(dead_b))],
        )
        .await;
    assert_eq!(r.echo()["backend"], "good");
    assert_eq!(r.header("set-cookie"), None, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_hash_by() {
    if !tools_available(&["curl"]) {
        return;
    }
    let backends = [echo("a").await, echo("b").await, echo("c").await];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let dir = temp_dir("hash-by");
    let manifests = |addrs: &[SocketAddr]| {
        let mut objects = vec![nginx_class()];
        objects.extend(service_of("hashed", addrs));
        objects.push(one("byarg", "hashed", &[("upstream-hash-by", "$arg_user")]));
        objects.push(one(
            "byheader",
            "hashed",
            &[("upstream-hash-by", "tenant-${http_x_tenant}")],
        ));
        objects.push(one("plain", "hashed", &[]));
        objects
    };
    write(&dir.join("manifests"), "objects", &manifests(&addrs));
    let s = Sluice::start(&dir, &[]).await;
    s.until("byarg.test", "/", &[], |r| r.status == 200).await;
    let backend_of = |host: &'static str, path: String, args: Vec<String>| {
        let s = &s;
        async move {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            let r = s.curl(host, &path, &a).await;
            r.echo()["backend"].as_str().unwrap().to_owned()
        }
    };

    // A key keeps its endpoint; keys spread over the endpoints.
    let mut before = Vec::new();
    for u in 0..40 {
        let b = backend_of("byarg.test", format!("/?user=u{u}"), vec![]).await;
        for _ in 0..3 {
            assert_eq!(
                backend_of("byarg.test", format!("/x?a=1&user=u{u}"), vec![]).await,
                b
            );
        }
        before.push(b);
    }
    let spread: std::collections::BTreeSet<_> = before.iter().collect();
    assert_eq!(spread.len(), 3, "{before:?}");
    let h = |t: &str| vec!["-H".to_owned(), format!("X-Tenant: {t}")];
    let t1 = backend_of("byheader.test", "/".into(), h("one")).await;
    for p in ["/a", "/b", "/c?d"] {
        assert_eq!(backend_of("byheader.test", p.into(), h("one")).await, t1);
    }
    // Without upstream-hash-by the same request is balanced.
    let mut plain = std::collections::BTreeSet::new();
    for _ in 0..12 {
        plain.insert(backend_of("plain.test", "/?user=u0".into(), vec![]).await);
    }
    assert!(plain.len() >= 2, "{plain:?}");

    // Consistent: without endpoint c, only c's keys move.
    write(&dir.join("manifests"), "objects", &manifests(&addrs[..2]));
    let moved = before.iter().position(|b| b == "c").expect("a key on c");
    let deadline = Instant::now() + Duration::from_secs(10);
    while backend_of("byarg.test", format!("/?user=u{moved}"), vec![]).await == "c" {
        assert!(Instant::now() < deadline, "endpoint c still used");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (u, b) in before.iter().enumerate() {
        let now = backend_of("byarg.test", format!("/?user=u{u}"), vec![]).await;
        if b == "c" {
            assert_ne!(now, "c");
        } else {
            assert_eq!(&now, b, "user u{u} moved from {b} to {now}");
        }
    }
}

/// A backend that answers every request after `delay`, with its name.
async fn slow(name: &'static str, delay: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |_req: Request<hyper::body::Incoming>| async move {
                        tokio::time::sleep(delay).await;
                        let body = json!({"backend": name}).to_string();
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balance_ewma() {
    if !tools_available(&["curl"]) {
        return;
    }
    let slow_ep = slow("slow", Duration::from_millis(250)).await;
    let fast_ep = slow("fast", Duration::ZERO).await;
    let dir = temp_dir("ewma");
    let mut objects = vec![nginx_class()];
    objects.extend(service_of("ewma-svc", &[slow_ep, fast_ep]));
    objects.extend(service_of("rr-svc", &[slow_ep, fast_ep]));
    objects.extend(service_of("cm-svc", &[slow_ep, fast_ep]));
    objects.push(one("ewma", "ewma-svc", &[("load-balance", "ewma")]));
    objects.push(one("rr", "rr-svc", &[("load-balance", "round_robin")]));
    // The ConfigMap's load-balance is the default of the others.
    objects.push(one("cm", "cm-svc", &[]));
    objects.push(json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "cfg", "namespace": "demo"},
           "data": {"load-balance": "ewma"}}));
    write(&dir.join("manifests"), "objects", &objects);
    let s = Sluice::start(&dir, &["--configmap", "demo/cfg"]).await;
    s.until("rr.test", "/", &[], |r| r.status == 200).await;
    let count_slow = |host: &'static str| {
        let s = &s;
        async move {
            let mut n = 0;
            for _ in 0..40 {
                if s.curl(host, "/", &[]).await.echo()["backend"] == "slow" {
                    n += 1;
                }
            }
            n
        }
    };
    // ewma: once both are measured, the fast endpoint takes (nearly)
    // everything; the default spreads sequential requests evenly.
    let ewma = count_slow("ewma.test").await;
    assert!(ewma <= 4, "slow endpoint got {ewma} of 40 under ewma");
    let cm = count_slow("cm.test").await;
    assert!(
        cm <= 4,
        "slow endpoint got {cm} of 40 under the ConfigMap's ewma"
    );
    let rr = count_slow("rr.test").await;
    assert!(rr >= 12, "slow endpoint got {rr} of 40 under round robin");
}
