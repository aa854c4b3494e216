//! "Applies changes without dropping a request", on the real control plane
//! (kube-apiserver, etcd, the controller manager's Deployment, ReplicaSet
//! and EndpointSlice controllers, the scheduler) with process-backed pods of
//! a simulated node: the `sluice-ingress` binary follows the API server
//! while load generators keep sending requests, and not one may fail.
//!
//! * `hundred_changes_under_load_fail_no_request`: HTTP/1.1 over keep-alive
//!   and over a new connection per request, h2c (hyper and h2load), HTTP/1.1
//!   from h2load, and TLS (h2 and HTTP/1.1) over a new connection per
//!   request, while 100 changes are made one after the other through the API
//!   server — paths added to and removed from the Ingress carrying the load,
//!   the load Service's backends changed (its selector moved between two
//!   Deployments, the selected Deployment rolled and scaled, so the
//!   EndpointSlice controller rewrites real EndpointSlices with terminating
//!   endpoints), the TLS Secret rotated — each observed to take effect
//!   before the next. The metrics the issue names are read back.
//! * `annotation_changes_under_load_fail_no_request_elsewhere`: in
//!   ingress-nginx mode, one Ingress has `rewrite-target`,
//!   `permanent-redirect`, `proxy-body-size`, `enable-cors` and
//!   `whitelist-source-range` put on and taken off in turn, while an
//!   Ingress of another host and one of the same host are under load: no
//!   failed request there, and every probe of the changed route shows
//!   either the old behaviour or the new one, never a third.
//!
//! One cluster for the binary; each test has its own namespace, node and
//! controller class.

mod cluster_support;
mod gateway_support;
mod hot_reload_support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cluster_support::{Gateway, admin_get, tls_secret};
use gateway_support::{TestCa, tls_connect, tls_request};
use hot_reload_support::*;
use http::{Method, StatusCode};
use serde_json::{Value, json};

/// A Prefix or Exact path to Service `web`'s port `http`.
fn path(p: &str, kind: &str) -> Value {
    json!({"path": p, "pathType": kind,
           "backend": {"service": {"name": "web", "port": {"name": "http"}}}})
}

/// The Ingress carrying the load: `/load` on any host and on `secure.test`
/// (TLS, Secret `cert`), plus `extra` Exact paths.
fn app(s: &Scene, extra: &[String]) -> Value {
    let mut paths = vec![path("/load", "Prefix")];
    paths.extend(extra.iter().map(|p| path(p, "Exact")));
    s.ingress(
        "app",
        json!({}),
        json!({
            "tls": [{"hosts": ["secure.test"], "secretName": "cert"}],
            "rules": [
                {"http": {"paths": paths}},
                {"host": "secure.test", "http": {"paths": [path("/load", "Prefix")]}}
            ]
        }),
    )
}

/// 200 from the echo pods.
fn ok(a: Result<Answer, String>) -> Result<(), String> {
    match a {
        Ok(a) if a.status == StatusCode::OK && a.echo()["pod"].is_string() => Ok(()),
        Ok(a) => Err(format!("status {}", a.status)),
        Err(e) => Err(e),
    }
}

/// The load of the first test: every client shape the gateway serves.
fn start_load(gw: &Gateway, ca: &Arc<TestCa>) -> Load {
    let (http, https) = (gw.http, gw.https);
    let mut load = Load::default();
    let ask = Arc::new(Ask::get("load.test", "/load"));
    for name in ["h1 keep-alive #1", "h1 keep-alive #2"] {
        let (conn, ask) = (Arc::new(Conn::new(http, false)), ask.clone());
        load.spawn(name, move || {
            let (conn, ask) = (conn.clone(), ask.clone());
            async move { ok(conn.send(&ask).await) }
        });
    }
    let a = ask.clone();
    load.spawn("h1 new connection per request", move || {
        let ask = a.clone();
        async move { ok(fresh_h1(http, &ask).await) }
    });
    // h2c on one connection, many streams at once: the authority is the
    // gateway's address, which the host-less rule serves.
    let conn = Arc::new(Conn::new(http, true));
    let h2ask = Arc::new(Ask::get(&http.ip().to_string(), "/load"));
    for n in 1..=4 {
        let (conn, ask) = (conn.clone(), h2ask.clone());
        load.spawn(
            &format!("h2c (one connection, multiplexed) stream #{n}"),
            move || {
                let (conn, ask) = (conn.clone(), ask.clone());
                async move { ok(conn.send(&ask).await) }
            },
        );
    }
    let alpn = Arc::new(AtomicUsize::new(0));
    let ca = ca.clone();
    load.spawn("TLS new connection per request (h2, http/1.1)", move || {
        let ca = ca.clone();
        let n = alpn.fetch_add(1, Ordering::Relaxed);
        async move {
            let protos: &[&[u8]] = if n.is_multiple_of(2) {
                &[b"h2"]
            } else {
                &[b"http/1.1"]
            };
            match tls_connect(https, Some("secure.test"), protos, Some(&ca)).await {
                Ok((tls, _)) => match tls_request(tls, "secure.test", "/load").await.0 {
                    StatusCode::OK => Ok(()),
                    s => Err(format!("TLS status {s}")),
                },
                Err(e) => Err(format!("TLS handshake: {e}")),
            }
        }
    });
    if h2load_available() {
        let (tally, stop) = load.external("h2load runs (200 requests each, h2c and --h1)");
        load.task(tokio::spawn(async move {
            let mut h1 = false;
            while !stop.load(Ordering::Relaxed) {
                let r = tokio::task::spawn_blocking(move || h2load_once(http, h1, 200, "/load"))
                    .await
                    .unwrap();
                tally.record(r.map(|_| ()));
                h1 = !h1;
            }
        }));
    }
    load
}

/// Status and echo JSON of `GET path` for `load.test` on a new connection.
async fn probe(gw: &Gateway, path: &str) -> (StatusCode, Value) {
    match fresh_h1(gw.http, &Ask::get("load.test", path)).await {
        Ok(a) => (a.status, a.echo()),
        Err(_) => (StatusCode::from_u16(599).unwrap(), Value::Null),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_changes_under_load_fail_no_request() {
    let Some(s) = Scene::new("hr-changes").await else {
        return;
    };
    let ca = Arc::new(TestCa::new());
    let mut leaf = ca.leaf(&["secure.test"]);
    // Two Deployments; Service `web` selects one of them at a time.
    let colors = ["blue", "green"];
    for c in colors {
        s.apply(&s.echo_deployment(c, 2)).await;
    }
    s.apply(&s.service("web", "blue")).await;
    s.apply(&tls_secret(&s.ns, "cert", &leaf.chain_pem, &leaf.key_pem))
        .await;
    s.apply(&app(&s, &[])).await;
    let gw = s.gateway(&[]).await;
    let none = BTreeSet::new();
    s.wait_ready("green", 2).await;
    let mut active = 0usize;
    let mut replicas = 2usize;
    let (mut pods, _) = s
        .wait_answering(&gw, "load.test", "/load", "blue", 2, &none)
        .await;

    let load = start_load(&gw, &ca);
    let mut lat = Latencies::default();
    let mut extra: Vec<String> = Vec::new();
    let started = Instant::now();
    for i in 0..100 {
        match i % 4 {
            0 => {
                let p = format!("/p{i}");
                extra.push(p.clone());
                s.apply(&app(&s, &extra)).await;
                let took = observe(&format!("add {p}"), || async {
                    let (st, j) = probe(&gw, &p).await;
                    st == StatusCode::OK && j["path"] == p.as_str()
                })
                .await;
                lat.add("Ingress path added", took);
            }
            1 => {
                let p = extra.pop().unwrap();
                s.apply(&app(&s, &extra)).await;
                let took = observe(&format!("remove {p}"), || async {
                    probe(&gw, &p).await.0 == StatusCode::NOT_FOUND
                })
                .await;
                lat.add("Ingress path removed", took);
            }
            2 => {
                let t = Instant::now();
                let (kind, old) = match (i / 4) % 4 {
                    0 => {
                        active = 1 - active;
                        s.apply(&s.service("web", colors[active])).await;
                        ("Service selector moved", pods.clone())
                    }
                    1 => {
                        s.restart(colors[active], i).await;
                        ("Deployment rolled", pods.clone())
                    }
                    2 => {
                        replicas = 3;
                        s.scale(colors[active], 3).await;
                        ("Deployment scaled up", none.clone())
                    }
                    _ => {
                        replicas = 2;
                        s.scale(colors[active], 2).await;
                        ("Deployment scaled down", none.clone())
                    }
                };
                let (now, after_ready) = s
                    .wait_answering(&gw, "load.test", "/load", colors[active], replicas, &old)
                    .await;
                pods = now;
                lat.add(kind, t.elapsed());
                lat.add(&format!("{kind}: once the pods were Ready"), after_ready);
            }
            _ => {
                leaf = ca.leaf(&["secure.test"]);
                s.apply(&tls_secret(&s.ns, "cert", &leaf.chain_pem, &leaf.key_pem))
                    .await;
                let want = leaf.der.clone();
                let ca = ca.clone();
                let took = observe("certificate rotation", || {
                    let (want, ca) = (want.clone(), ca.clone());
                    async move {
                        match tls_connect(gw.https, Some("secure.test"), &[], Some(&ca)).await {
                            Ok((_, served)) => served == want,
                            Err(_) => false,
                        }
                    }
                })
                .await;
                lat.add("TLS Secret rotated", took);
            }
        }
    }
    let changes_took = started.elapsed();
    // Let the generators run on the final state for a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = load.finish().await;
    eprintln!(
        "100 changes through the API server in {changes_took:?} (slowest to take effect: {:?})\n{}\n{}",
        lat.slowest(),
        lat.summary().join("\n"),
        report.lines.join("\n")
    );
    report.assert_clean();

    // The metrics, scraped from the admin listener.
    let (code, metrics) = admin_get(gw.admin, "/metrics").await;
    assert_eq!(code, 200);
    let has = |parts: &[&str]| metrics.lines().any(|l| parts.iter().all(|p| l.contains(p)));
    let (ingress, service) = (
        format!("ingress=\"{}/app\"", s.ns),
        format!("service=\"{}/web:http\"", s.ns),
    );
    for parts in [
        &[
            "sluice_ingress_requests_total{",
            &ingress,
            &service,
            "code=\"200\"",
        ][..],
        &["sluice_ingress_requests_total{", "code=\"404\""],
        &["sluice_ingress_upstream_latency_seconds_bucket{", &service],
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
    drop(gw);
    s.cleanup().await;
}

// ------------------------------------------------------------ annotations

const PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// The Ingress whose annotations change: `t.test/toggled` to `web`, with
/// `annotations` (names without the prefix) and, for a rewrite, the path
/// as a regex with captures.
fn toggled(s: &Scene, annotations: &[(&str, &str)], regex_path: Option<&str>) -> Value {
    let a: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| (format!("{PREFIX}{k}"), json!(v)))
        .collect();
    let p = match regex_path {
        Some(r) => path(r, "ImplementationSpecific"),
        None => path("/toggled", "Prefix"),
    };
    s.ingress(
        "toggled",
        Value::Object(a),
        json!({"rules": [{"host": "t.test", "http": {"paths": [p]}}]}),
    )
}

/// One annotation change: what is applied, the request that shows it, and
/// how its answer reads with the annotation on (`Ok(true)`), off
/// (`Ok(false)`), or neither.
struct Toggle {
    name: &'static str,
    annotations: &'static [(&'static str, &'static str)],
    regex_path: Option<&'static str>,
    ask: fn() -> Ask,
    on: fn(&Answer) -> Result<bool, String>,
}

/// The route as it is without annotations: the echo pods saw the request.
fn plain(a: &Answer, method: &str, path: &str) -> bool {
    a.status == StatusCode::OK && a.echo()["method"] == method && a.echo()["path"] == path
}

fn neither(a: &Answer) -> Result<bool, String> {
    Err(format!(
        "{} {:?} {}",
        a.status,
        a.headers,
        String::from_utf8_lossy(&a.body)
    ))
}

const TOGGLES: &[Toggle] = &[
    Toggle {
        name: "rewrite-target",
        annotations: &[("rewrite-target", "/$2")],
        regex_path: Some("/toggled(/|$)(.*)"),
        ask: || Ask::get("t.test", "/toggled/x"),
        on: |a| {
            if plain(a, "GET", "/x") {
                Ok(true)
            } else if plain(a, "GET", "/toggled/x") {
                Ok(false)
            } else {
                neither(a)
            }
        },
    },
    Toggle {
        name: "permanent-redirect",
        annotations: &[("permanent-redirect", "https://moved.example/")],
        regex_path: None,
        ask: || Ask::get("t.test", "/toggled/x"),
        on: |a| {
            if a.status == StatusCode::MOVED_PERMANENTLY
                && a.header("location") == Some("https://moved.example/")
            {
                Ok(true)
            } else if plain(a, "GET", "/toggled/x") {
                Ok(false)
            } else {
                neither(a)
            }
        },
    },
    Toggle {
        name: "proxy-body-size",
        annotations: &[("proxy-body-size", "1k")],
        regex_path: None,
        ask: || {
            Ask::get("t.test", "/toggled/upload")
                .method(Method::POST)
                .body(vec![b'x'; 4096])
        },
        on: |a| {
            if a.status == StatusCode::PAYLOAD_TOO_LARGE {
                Ok(true)
            } else if plain(a, "POST", "/toggled/upload") {
                Ok(false)
            } else {
                neither(a)
            }
        },
    },
    Toggle {
        name: "enable-cors",
        annotations: &[("enable-cors", "true")],
        regex_path: None,
        ask: || {
            Ask::get("t.test", "/toggled/x")
                .method(Method::OPTIONS)
                .header("origin", "https://site.example")
                .header("access-control-request-method", "PUT")
        },
        on: |a| {
            if a.status == StatusCode::NO_CONTENT
                && a.header("access-control-allow-origin").is_some()
                && a.header("access-control-allow-methods").is_some()
            {
                Ok(true)
            } else if plain(a, "OPTIONS", "/toggled/x") {
                Ok(false)
            } else {
                neither(a)
            }
        },
    },
    Toggle {
        name: "whitelist-source-range",
        annotations: &[("whitelist-source-range", "192.0.2.0/24")],
        regex_path: None,
        ask: || Ask::get("t.test", "/toggled/x"),
        on: |a| {
            if a.status == StatusCode::FORBIDDEN {
                Ok(true)
            } else if plain(a, "GET", "/toggled/x") {
                Ok(false)
            } else {
                neither(a)
            }
        },
    },
];

/// Load on the routes that do not change: `a.test/` (another Ingress, its
/// own host) and `t.test/neighbour` (another Ingress of the changing
/// route's host), each over HTTP/1.1 keep-alive, a new HTTP/1.1 connection
/// per request, and h2c streams on one connection. Each answer must come
/// from the echo pods with the path unchanged.
fn steady_load(gw: &Gateway) -> Load {
    let http = gw.http;
    let mut load = Load::default();
    for (host, path) in [("a.test", "/a/steady"), ("t.test", "/neighbour/steady")] {
        let ask = Arc::new(Ask::get(host, path));
        let check = move |r: Result<Answer, String>| r.and_then(|a| a.echoed(host, path));
        let (conn, a) = (Arc::new(Conn::new(http, false)), ask.clone());
        load.spawn(&format!("{host}{path} h1 keep-alive"), move || {
            let (conn, ask) = (conn.clone(), a.clone());
            async move { check(conn.send(&ask).await) }
        });
        let a = ask.clone();
        load.spawn(&format!("{host}{path} h1 new connection"), move || {
            let ask = a.clone();
            async move { check(fresh_h1(http, &ask).await) }
        });
        let conn = Arc::new(Conn::new(http, true));
        for n in 1..=2 {
            let (conn, a) = (conn.clone(), ask.clone());
            load.spawn(&format!("{host}{path} h2c stream #{n}"), move || {
                let (conn, ask) = (conn.clone(), a.clone());
                async move { check(conn.send(&ask).await) }
            });
        }
    }
    load
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn annotation_changes_under_load_fail_no_request_elsewhere() {
    let Some(s) = Scene::new("hr-annotations").await else {
        return;
    };
    s.apply(&s.echo_deployment("web", 2)).await;
    s.apply(&s.service("web", "web")).await;
    s.apply(&s.ingress(
        "steady",
        json!({}),
        json!({"rules": [{"host": "a.test", "http": {"paths": [path("/", "Prefix")]}}]}),
    ))
    .await;
    s.apply(&s.ingress(
        "neighbour",
        json!({}),
        json!({"rules": [{"host": "t.test", "http": {"paths": [path("/neighbour", "Prefix")]}}]}),
    ))
    .await;
    s.apply(&toggled(&s, &[], None)).await;
    // ingress-nginx mode is the default; said here because it is the point.
    let gw = s.gateway(&["--ingress-nginx=true"]).await;
    s.wait_answering(&gw, "a.test", "/", "web", 2, &BTreeSet::new())
        .await;
    let probe_toggle = |t: &'static Toggle| {
        let http = gw.http;
        move || async move {
            let a = fresh_h1(http, &(t.ask)()).await?;
            (t.on)(&a)
        }
    };
    for t in TOGGLES {
        let seen = probe_toggle(t)().await;
        assert_eq!(seen, Ok(false), "{} before any change", t.name);
    }

    let load = steady_load(&gw);
    let mut lat = Latencies::default();
    let mut odd = Vec::new();
    let started = Instant::now();
    let cycles = 5;
    for cycle in 0..cycles {
        for t in TOGGLES {
            for on in [true, false] {
                let kind = format!("{} {}", t.name, if on { "on" } else { "off" });
                let what = format!("{kind} (cycle {cycle})");
                if on {
                    s.apply(&toggled(&s, t.annotations, t.regex_path)).await;
                } else {
                    s.apply(&toggled(&s, &[], None)).await;
                }
                let probe = probe_toggle(t);
                let took = observe_switch(&what, &mut odd, || {
                    let f = probe();
                    async move {
                        f.await
                            .map(|now| if now == on { Seen::After } else { Seen::Before })
                    }
                })
                .await;
                lat.add(&kind, took);
            }
        }
    }
    let changes_took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = load.finish().await;
    let changes = cycles * TOGGLES.len() * 2;
    eprintln!(
        "{changes} annotation changes through the API server in {changes_took:?} (slowest to take effect: {:?})\n{}\n{}",
        lat.slowest(),
        lat.summary().join("\n"),
        report.lines.join("\n")
    );
    report.assert_clean();
    assert!(
        odd.is_empty(),
        "{} probes of the changed route saw a third state: {:?}",
        odd.len(),
        &odd[..odd.len().min(10)]
    );
    drop(gw);
    s.cleanup().await;
}
