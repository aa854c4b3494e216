//! The programs the node agent runs as pod containers (see
//! `sluice_tests::node_agent::registry`).
//!
//! * `sluice-testpod http-echo --listen PORT...`: HTTP/1.1 and h2c on every
//!   port; every request is answered 200 with a JSON body in the shape of
//!   Gateway API's echo-basic: `path`, `host`, `method`, `proto`, `headers`
//!   (name → values), `namespace`, `pod`. Two query parameters shape the
//!   answer for tests: `echo_status=CODE` answers that status, and
//!   `echo_delay_ms=N` waits first. Two kinds of request are answered
//!   otherwise: an `Upgrade: websocket` request gets 101 and the upgraded
//!   connection then echoes every byte (a tunnel check, not a WebSocket
//!   server: no `Sec-WebSocket-Accept`, frames come back as sent); a
//!   gRPC request (`content-type: application/grpc…`) gets its body back
//!   with trailers `grpc-status: 0` and `grpc-message: POD`.
//! * `sluice-testpod echo [--tcp PORT]... [--udp PORT]...`: each TCP line
//!   is answered `POD PEER-IP LINE`, each UDP datagram likewise.
//!
//! Both ignore SIGTERM: a deleted pod keeps serving until its grace period
//! ends and the agent kills it, so its endpoint is seen serving and
//! terminating, as with an application that drains.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};

fn main() {
    // SAFETY: setting a signal disposition before any thread exists.
    unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, rest) = args
        .split_first()
        .map_or(("", &[][..]), |(m, r)| (m.as_str(), r));
    let ports = |flag: &str| -> Vec<u16> {
        rest.windows(2)
            .filter(|w| w[0] == flag)
            .filter_map(|w| w[1].parse().ok())
            .collect()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match mode {
        "http-echo" => rt.block_on(http_echo(ports("--listen"))),
        "echo" => rt.block_on(line_echo(ports("--tcp"), ports("--udp"))),
        _ => {
            eprintln!(
                "usage: sluice-testpod http-echo --listen PORT... | echo [--tcp PORT]... [--udp PORT]..."
            );
            std::process::exit(2);
        }
    }
}

fn pod() -> String {
    std::env::var("POD_NAME").unwrap_or_default()
}

async fn http_echo(ports: Vec<u16>) {
    let mut tasks = Vec::new();
    for port in ports {
        let l = TcpListener::bind(("0.0.0.0", port)).await.expect("bind");
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = l.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(answer);
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(conn), svc)
                        .await;
                });
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

type Body = BoxBody<Bytes, hyper::Error>;

async fn answer(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    if header(hyper::header::UPGRADE) == "websocket" {
        return Ok(upgrade_echo(req));
    }
    if header(hyper::header::CONTENT_TYPE).starts_with("application/grpc") {
        return Ok(grpc_echo(req).await);
    }
    Ok(json_echo(req)
        .await
        .map(|b| b.map_err(|e| match e {}).boxed()))
}

/// 101, then every byte of the upgraded connection echoed.
fn upgrade_echo(req: Request<Incoming>) -> Response<Body> {
    tokio::spawn(async move {
        if let Ok(up) = hyper::upgrade::on(req).await {
            let (mut r, mut w) = tokio::io::split(TokioIo::new(up));
            let _ = tokio::io::copy(&mut r, &mut w).await;
        }
    });
    Response::builder()
        .status(hyper::StatusCode::SWITCHING_PROTOCOLS)
        .header(hyper::header::UPGRADE, "websocket")
        .header(hyper::header::CONNECTION, "upgrade")
        .header("x-sluice-pod", pod())
        .body(Full::new(Bytes::new()).map_err(|e| match e {}).boxed())
        .expect("a valid response")
}

/// The request's body back, then gRPC's trailers.
async fn grpc_echo(req: Request<Incoming>) -> Response<Body> {
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let mut trailers = hyper::HeaderMap::new();
    trailers.insert("grpc-status", hyper::header::HeaderValue::from_static("0"));
    if let Ok(v) = hyper::header::HeaderValue::from_str(&pod()) {
        trailers.insert("grpc-message", v);
    }
    let frames = futures::stream::iter([Ok(Frame::data(body)), Ok(Frame::trailers(trailers))]);
    Response::builder()
        .header(hyper::header::CONTENT_TYPE, "application/grpc")
        .header("x-sluice-pod", pod())
        .body(StreamBody::new(frames).boxed())
        .expect("a valid response")
}

async fn json_echo(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    if let Some(ms) = query.get("echo_delay_ms").and_then(|v| v.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = query
        .get("echo_status")
        .and_then(|v| v.parse().ok())
        .unwrap_or(200u16);
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in req.headers() {
        headers
            .entry(canonical(k.as_str()))
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let proto = match req.version() {
        hyper::Version::HTTP_2 => "HTTP/2.0",
        hyper::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    let body = serde_json::json!({
        "path": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "host": host,
        "method": req.method().as_str(),
        "proto": proto,
        "headers": headers,
        "namespace": std::env::var("NAMESPACE").unwrap_or_default(),
        "ingress": "",
        "service": "",
        "pod": pod(),
    });
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-sluice-pod", pod())
        .body(Full::new(Bytes::from(format!("{body}\n"))))
        .expect("a valid response")
}

/// `x-forwarded-for` → `X-Forwarded-For`, as Go's net/http shows names.
fn canonical(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

async fn line_echo(tcp: Vec<u16>, udp: Vec<u16>) {
    let mut tasks = Vec::new();
    for port in tcp {
        let l = TcpListener::bind(("0.0.0.0", port))
            .await
            .expect("bind tcp");
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((conn, peer)) = l.accept().await else {
                    continue;
                };
                tokio::spawn(tcp_session(conn, peer));
            }
        }));
    }
    for port in udp {
        let s = UdpSocket::bind(("0.0.0.0", port)).await.expect("bind udp");
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok((n, peer)) = s.recv_from(&mut buf).await else {
                    continue;
                };
                let line = String::from_utf8_lossy(&buf[..n]);
                let reply = format!("{} {} {}\n", pod(), peer.ip(), line.trim_end());
                let _ = s.send_to(reply.as_bytes(), peer).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn tcp_session(conn: tokio::net::TcpStream, peer: SocketAddr) {
    let (r, mut w) = conn.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let reply = format!("{} {} {line}\n", pod(), peer.ip().to_canonical());
        if w.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}
