//! HTTP/1 request bytes through the gateway's request path, in process.
//!
//! One connection per input: the gateway's `GatewayService` (from
//! `Gateway::service`, the public entry point for driving it without its
//! listeners) served by hyper's HTTP/1 server with the settings of
//! `gateway::server` (buffer and header limits, keep-alive, no hyper head
//! timeout), over a `tokio::io::duplex` stream. The route table is fixed
//! (see `fixture.rs`): precise, wildcard, host-less, TLS-redirected,
//! resource and endpoint-less routes and a default backend; Service
//! backends point at a stub upstream on loopback that answers every request
//! `200 ok`.
//!
//! The input is written as the client's bytes, then the client half-closes.
//! Never a panic (in the gateway, in hyper, in any task: libfuzzer-sys
//! aborts on a panic anywhere), the connection ends within 5 s, and what
//! comes back is nothing or a sequence of well-formed HTTP/1.x responses
//! (status line, headers, body framed by Content-Length, chunked coding or
//! the close) and nothing else.
//!
//! `HTTP1_HEAD_SHOW=1` prints each answer (to look at one input: run the
//! target binary on its file).
//!
//! Glue kept small on purpose (the gateway's connection handling is being
//! reworked): only `serve` below touches the gateway.
#![no_main]

#[path = "http1_head/check.rs"]
mod check;
#[path = "http1_head/fixture.rs"]
mod fixture;

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use libfuzzer_sys::fuzz_target;
use sluice_ingress::gateway::Gateway;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

struct World {
    rt: tokio::runtime::Runtime,
    gateway: Gateway,
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let gateway = rt.block_on(fixture::gateway());
    World { rt, gateway }
});

/// Serves one client connection the way `gateway::server` does (its
/// `http_builder` HTTP/1 settings), except that a client half-close does
/// not drop the response in flight: the fuzzer must see the answer.
async fn serve(gateway: &Gateway, io: DuplexStream) {
    let peer = SocketAddr::from(([10, 0, 0, 1], 40000));
    let local = SocketAddr::from(([10, 0, 0, 2], 80));
    let limits = gateway.config().limits;
    let svc = TowerToHyperService::new(gateway.service(peer, local, false));
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true)
        .half_close(true)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades()
        .await;
}

fuzz_target!(|data: &[u8]| {
    let world = &*WORLD;
    let answer = world.rt.block_on(async {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (mut rd, mut wr) = tokio::io::split(client);
        let write = async {
            let _ = wr.write_all(data).await;
            let _ = wr.shutdown().await;
        };
        let read = async {
            let mut out = Vec::new();
            let _ = rd.read_to_end(&mut out).await;
            out
        };
        let all = async { tokio::join!(serve(&world.gateway, server), write, read).2 };
        tokio::time::timeout(Duration::from_secs(5), all).await
    });
    let Ok(answer) = answer else {
        panic!("the connection did not end within 5 s");
    };
    if std::env::var_os("HTTP1_HEAD_SHOW").is_some() {
        eprintln!("--- answer ---\n{}", String::from_utf8_lossy(&answer));
    }
    if let Err(e) = check::responses(&answer) {
        panic!(
            "malformed answer: {e}\n--- request ---\n{}\n--- answer ---\n{}",
            String::from_utf8_lossy(data),
            String::from_utf8_lossy(&answer)
        );
    }
});
