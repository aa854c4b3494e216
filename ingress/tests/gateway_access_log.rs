//! The access log through the gateway: after a burst every request's line
//! is in the file, whole, without anyone flushing; and an output that
//! stops reading (a full pipe) costs lines, counted, never requests.

mod gateway_support;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::json;
use sluice_ingress::gateway::access_log::{AccessLogWriter, LineStyle, WriterOptions};
use sluice_ingress::gateway::{AccessLogFormat, CertStore, GatewayConfig};

use gateway_support::*;

const STYLE: LineStyle = LineStyle {
    format: AccessLogFormat::Fields,
    json_envelope: false,
};

/// A gateway routing `app.test` to one backend, logging with `log`.
async fn setup(log: AccessLogWriter) -> (TestGateway, Backend) {
    let web = Backend::start("web").await;
    let t = table(&[ingress(
        "ns",
        "app",
        json!({}),
        json!({ "rules": [rule(Some("app.test"), &[("/", "web")])] }),
    )]);
    let eps = endpoints(&[("web", vec![web.addr])]);
    let config = GatewayConfig {
        access_log: Some(log),
        ..test_config()
    };
    let gw = TestGateway::start(config, routing(t, eps, CertStore::new())).await;
    (gw, web)
}

/// `requests` GETs of `/burst/N` over `conns` concurrent connections;
/// every answer must be 200. Returns how long they took.
async fn burst(gw: &TestGateway, conns: usize, requests: usize) -> Duration {
    let t0 = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let (next, addr) = (next.clone(), gw.http);
            tokio::spawn(async move {
                let c = h1_client();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= requests {
                        return;
                    }
                    let (s, _, _) = get(&c, addr, "app.test", &format!("/burst/{i}")).await;
                    assert_eq!(s, StatusCode::OK);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    t0.elapsed()
}

/// The request numbers of complete 200 lines in `text`; panics on any
/// other line.
fn logged(text: &str) -> Vec<usize> {
    text.lines()
        .map(|l| {
            assert!(
                l.contains(" INFO sluice_ingress::access: client=127.0.0.1 method=GET host=app.test path=/burst/")
                    && l.contains(" status=200 ")
                    && l.contains(" ingress=ns/app service=ns/web:80 upstream=127.0.0.1:")
                    && l.ends_with(" attempts=1 complete=true"),
                "{l}"
            );
            let n = l.split("path=/burst/").nth(1).unwrap();
            n.split(' ').next().unwrap().parse().unwrap()
        })
        .collect()
}

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sluice-{name}-{}", std::process::id()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_burst_every_line_is_whole_in_the_file() {
    let path = scratch("access-burst.log");
    let file = std::fs::File::create(&path).unwrap();
    let w = AccessLogWriter::new(STYLE, Box::new(file), WriterOptions::default()).unwrap();
    let (gw, _web) = setup(w.clone()).await;
    const N: usize = 3000;
    burst(&gw, 16, N).await;

    // No flush: the writer's own sweep brings the last lines out.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = std::fs::read_to_string(&path).unwrap();
        if text.lines().count() >= N {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen: BTreeSet<usize> = logged(&text).into_iter().collect();
    assert_eq!(text.lines().count(), N, "one line per request");
    assert_eq!(seen, (0..N).collect(), "every request's line");
    assert_eq!(w.dropped_lines(), 0);
    gw.shutdown().await;
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_log_output_never_blocks_requests() {
    // A pipe nobody reads: once its 64 KiB are full, every write blocks.
    let (mut reader, pipe) = std::io::pipe().unwrap();
    let options = WriterOptions {
        batch_bytes: 4096,
        queue_batches: 2,
        flush_interval: Duration::from_millis(20),
    };
    let w = AccessLogWriter::new(STYLE, Box::new(pipe), options).unwrap();
    let (gw, web) = setup(w.clone()).await;
    const N: usize = 3000;
    // With a queue that waits for the output, this never ends.
    let took = tokio::time::timeout(Duration::from_secs(60), burst(&gw, 8, N))
        .await
        .expect("requests waited for the access log");
    eprintln!("{N} requests with a stalled access log output: {took:?}");
    assert_eq!(web.hits(), N);
    let dropped = w.dropped_lines();
    // ~200 bytes a line: the pipe and the queue hold well under 3000.
    assert!(dropped > 0, "the output never stalled");

    // Unblocked, the pipe gives whole lines only, and every request is
    // either written or counted.
    let text = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut written = 0;
    while Instant::now() < deadline {
        w.flush(Duration::from_secs(1));
        let mut t = String::from_utf8(text.lock().unwrap().clone()).unwrap();
        t.truncate(t.rfind('\n').map_or(0, |i| i + 1));
        written = logged(&t).len() as u64;
        if written + w.dropped_lines() == N as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dropped = w.dropped_lines();
    assert_eq!(
        written + dropped,
        N as u64,
        "written {written}, dropped {dropped}"
    );
    gw.shutdown().await;
}
