//! "Applies changes without dropping a request": the `sluice-ingress`
//! binary follows the fake API server while load generators keep sending
//! requests — HTTP/1.1 over keep-alive and over a new connection per
//! request, h2c (hyper and h2load), HTTP/1.1 from h2load, and TLS (h2 and
//! HTTP/1.1) over a new connection per request. 100 changes are applied
//! one after the other (paths added to and removed from the Ingress that
//! carries the load route, the load Service's endpoints moved between two
//! backends, the TLS Secret rotated); each is observed to take effect
//! before the next. Not one request may fail. The metrics the issue names
//! are then read back from `/metrics`.

mod e2e_api;
mod gateway_support;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e_api::*;
use gateway_support::{Backend, TestCa, empty, h1_client, h2c_client, tls_connect, tls_request};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sluice_tests::fake_api::FakeApiServer;

/// Successes and failures of one load generator.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failed: Mutex<Vec<String>>,
}

impl Tally {
    fn record(&self, r: Result<(), String>) {
        match r {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.failed.lock().unwrap().push(e),
        }
    }
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    gateway_support::TestBody,
>;

/// `GET /load` through a pooled client. Over h2 the authority comes from
/// the URI alone: a `Host` that disagrees with `:authority` is refused
/// (RFC 9113 §8.3.1).
async fn pooled_get(client: &Client, addr: SocketAddr, h2: bool) -> Result<(), String> {
    let mut req = Request::get(format!("http://{addr}/load"));
    if !h2 {
        req = req.header("host", "load.test");
    }
    let req = req.body(empty()).unwrap();
    let resp = client.request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    resp.into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    if status == StatusCode::OK {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

/// One HTTP/1.1 request on a connection of its own.
async fn fresh_h1_get(addr: SocketAddr) -> Result<(), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::get("/load")
        .header("host", "load.test")
        .body(empty())
        .unwrap();
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    resp.into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    if status == StatusCode::OK {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

/// Runs h2load once; returns the number of 2xx responses, or what failed.
fn h2load_once(addr: SocketAddr, h1: bool, n: usize) -> Result<usize, String> {
    let mut cmd = Command::new("h2load");
    cmd.args(["-n", &n.to_string(), "-c", "2", "-m", "2"]);
    if h1 {
        cmd.arg("--h1");
    }
    let out = cmd
        .arg(format!("http://{addr}/load"))
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // "requests: 400 total, 400 started, 400 done, 400 succeeded, 0 failed,
    // 0 errored, 0 timeout" and "status codes: 400 2xx, 0 3xx, 0 4xx, 0 5xx".
    let field = |line: &str, name: &str| -> Option<usize> {
        let l = text.lines().find(|l| l.starts_with(line))?;
        l.split(',')
            .find_map(|p| p.trim().trim_start_matches(line).trim().strip_suffix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    let ok = field("status codes:", "2xx");
    let failed = field("requests:", "failed");
    let errored = field("requests:", "errored");
    let timeout = field("requests:", "timeout");
    match (ok, failed, errored, timeout) {
        (Some(ok), Some(0), Some(0), Some(0)) if ok == n => Ok(ok),
        _ => Err(format!("h2load{}: {text}", if h1 { " --h1" } else { "" })),
    }
}

fn h2load_available() -> bool {
    Command::new("h2load")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The Ingress carrying the load: `/load` on any host and on
/// `secure.test` (TLS, Secret `cert`), plus `extra` Exact paths.
fn app(extra: &[String]) -> Value {
    let mut paths = vec![path("/load", "Prefix", "web")];
    paths.extend(extra.iter().map(|p| path(p, "Exact", "web")));
    ingress(
        "app",
        "2024-01-01T00:00:00Z",
        json!({
            "tls": [{"hosts": ["secure.test"], "secretName": "cert"}],
            "rules": [
                {"http": {"paths": paths}},
                {"host": "secure.test", "http": {"paths": [path("/load", "Prefix", "web")]}}
            ]
        }),
    )
}

/// Polls `check` every 10 ms until it holds; returns how long it took.
async fn observe<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "change never took effect: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Status and JSON body of `GET path` (HTTP/1.1, pooled).
async fn probe(client: &Client, addr: SocketAddr, path: &str) -> (StatusCode, String, Value) {
    let req = Request::get(format!("http://{addr}{path}"))
        .header("host", "load.test")
        .body(empty())
        .unwrap();
    let resp = client.request(req).await.expect("probe");
    let status = resp.status();
    let backend = resp
        .headers()
        .get("x-backend")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, backend, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_changes_under_load_fail_no_request() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = temp_dir("hot-reload");
    let backends = [Backend::start("blue").await, Backend::start("green").await];
    let ca = Arc::new(TestCa::new());
    let mut leaf = ca.leaf(&["secure.test"]);

    let api = FakeApiServer::start().await;
    api.apply(&class());
    api.apply(&service("web"));
    api.apply(&slice("web", backends[0].addr.port()));
    api.apply(&tls_secret("cert", &leaf.chain_pem, &leaf.key_pem));
    api.apply(&app(&[]));
    let ing = Ingress1::start(&api, &dir, &[]).await;
    let (http, https) = (ing.http, ing.https);

    // Load generators, until `stop`.
    let stop = Arc::new(AtomicBool::new(false));
    let mut tallies: Vec<(&'static str, Arc<Tally>)> = Vec::new();
    let mut tasks = Vec::new();
    let mut spawn_loop = |name: &'static str,
                          tasks: &mut Vec<_>,
                          f: Arc<
        dyn Fn(Arc<Tally>) -> futures::future::BoxFuture<'static, ()> + Send + Sync,
    >| {
        let tally = Arc::new(Tally::default());
        tallies.push((name, tally.clone()));
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                f(tally.clone()).await;
            }
        }));
    };
    for name in ["h1 keep-alive #1", "h1 keep-alive #2"] {
        let client = h1_client();
        spawn_loop(
            name,
            &mut tasks,
            Arc::new(move |t: Arc<Tally>| {
                let client = client.clone();
                Box::pin(async move { t.record(pooled_get(&client, http, false).await) })
            }),
        );
    }
    spawn_loop(
        "h1 new connection per request",
        &mut tasks,
        Arc::new(move |t: Arc<Tally>| Box::pin(async move { t.record(fresh_h1_get(http).await) })),
    );
    let client = h2c_client();
    spawn_loop(
        "h2c (one connection, multiplexed)",
        &mut tasks,
        Arc::new(move |t: Arc<Tally>| {
            let client = client.clone();
            Box::pin(async move { t.record(pooled_get(&client, http, true).await) })
        }),
    );
    let tls_ca = ca.clone();
    let alpn = Arc::new(AtomicUsize::new(0));
    spawn_loop(
        "TLS new connection per request (h2, http/1.1)",
        &mut tasks,
        Arc::new(move |t: Arc<Tally>| {
            let ca = tls_ca.clone();
            let n = alpn.fetch_add(1, Ordering::Relaxed);
            Box::pin(async move {
                let protos: &[&[u8]] = if n.is_multiple_of(2) {
                    &[b"h2"]
                } else {
                    &[b"http/1.1"]
                };
                let r = match tls_connect(https, Some("secure.test"), protos, Some(&ca)).await {
                    Ok((tls, _)) => {
                        let (status, _, _, _) = tls_request(tls, "secure.test", "/load").await;
                        if status == StatusCode::OK {
                            Ok(())
                        } else {
                            Err(format!("TLS status {status}"))
                        }
                    }
                    Err(e) => Err(format!("TLS handshake: {e}")),
                };
                t.record(r);
            })
        }),
    );
    let h2load = h2load_available();
    let h2load_tally = Arc::new(Tally::default());
    if h2load {
        let (stop, tally) = (stop.clone(), h2load_tally.clone());
        tasks.push(tokio::spawn(async move {
            let mut h1 = false;
            while !stop.load(Ordering::Relaxed) {
                let r = tokio::task::spawn_blocking(move || h2load_once(http, h1, 200))
                    .await
                    .unwrap();
                tally.record(r.map(|_| ()));
                h1 = !h1;
            }
        }));
    } else {
        // scripts/setup.sh installs it; CI must not lose this load silently.
        assert!(
            std::env::var_os("CI").is_none(),
            "h2load not installed (Debian nghttp2-client; scripts/setup.sh)"
        );
        eprintln!("h2load not installed (Debian nghttp2-client); its load is skipped");
    }

    // 100 changes, each observed.
    let probe_client = h1_client();
    let mut extra: Vec<String> = Vec::new();
    let mut on = 0usize;
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    for i in 0..100 {
        let took = match i % 4 {
            0 => {
                let p = format!("/p{i}");
                extra.push(p.clone());
                api.apply(&app(&extra));
                observe(&format!("add {p}"), || async {
                    let (s, _, j) = probe(&probe_client, http, &p).await;
                    s == StatusCode::OK && j["path"] == p.as_str()
                })
                .await
            }
            1 => {
                let p = extra.pop().unwrap();
                api.apply(&app(&extra));
                observe(&format!("remove {p}"), || async {
                    probe(&probe_client, http, &p).await.0 == StatusCode::NOT_FOUND
                })
                .await
            }
            2 => {
                on = 1 - on;
                api.apply(&slice("web", backends[on].addr.port()));
                let want = backends[on].state.name.clone();
                observe(&format!("endpoints → {want}"), || async {
                    probe(&probe_client, http, "/load").await.1 == want
                })
                .await
            }
            _ => {
                leaf = ca.leaf(&["secure.test"]);
                api.apply(&tls_secret("cert", &leaf.chain_pem, &leaf.key_pem));
                let want = leaf.der.clone();
                let ca = ca.clone();
                observe("certificate rotation", || {
                    let (want, ca) = (want.clone(), ca.clone());
                    async move {
                        match tls_connect(https, Some("secure.test"), &[], Some(&ca)).await {
                            Ok((_, served)) => served == want,
                            Err(_) => false,
                        }
                    }
                })
                .await
            }
        };
        slowest = slowest.max(took);
    }
    let changes_took = started.elapsed();
    // Let the generators run on the final state for a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load generator panicked");
    }

    let mut report = Vec::new();
    let mut all_failed = Vec::new();
    if h2load {
        tallies.push((
            "h2load runs (200 requests each, h2c and --h1)",
            h2load_tally,
        ));
    }
    for (name, t) in &tallies {
        let failed = t.failed.lock().unwrap().clone();
        report.push(format!(
            "{name}: {} ok, {} failed{}",
            t.ok.load(Ordering::Relaxed),
            failed.len(),
            failed
                .first()
                .map(|f| format!(" (first: {f})"))
                .unwrap_or_default()
        ));
        all_failed.extend(failed.into_iter().map(|f| format!("{name}: {f}")));
    }
    eprintln!(
        "100 changes in {changes_took:?} (slowest to take effect: {slowest:?})\n{}",
        report.join("\n")
    );
    for (name, t) in &tallies {
        assert!(t.ok.load(Ordering::Relaxed) > 0, "{name} sent nothing");
    }
    assert!(
        all_failed.is_empty(),
        "{} failed requests: {:?}",
        all_failed.len(),
        &all_failed[..all_failed.len().min(10)]
    );
    assert!(backends[0].hits() > 0 && backends[1].hits() > 0);

    // The metrics, scraped from the admin listener.
    let (code, metrics) = ing.admin_get("/metrics").await;
    assert_eq!(code, 200);
    let has = |parts: &[&str]| metrics.lines().any(|l| parts.iter().all(|p| l.contains(p)));
    for parts in [
        &[
            "sluice_ingress_requests_total{",
            "ingress=\"default/app\"",
            "service=\"default/web:http\"",
            "code=\"200\"",
        ][..],
        &["sluice_ingress_requests_total{", "code=\"404\""],
        &[
            "sluice_ingress_upstream_latency_seconds_bucket{",
            "service=\"default/web:http\"",
        ],
        &["sluice_ingress_open_connections{", "listener=\"http\""],
        &["sluice_ingress_open_connections{", "listener=\"https\""],
        &["sluice_ingress_tls_handshakes_total{", "result=\"ok\""],
    ] {
        assert!(has(parts), "{parts:?} not in\n{metrics}");
    }
    let reloads: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sluice_ingress_config_reloads_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no config_reloads in\n{metrics}"));
    assert!(reloads > 100, "{reloads} reloads for 100 changes");
    drop(ing);
    let _ = std::fs::remove_dir_all(&dir);
}
