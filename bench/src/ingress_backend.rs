//! The small, fast backend both proxies forward to: HTTP/1.1 keep-alive,
//! one fixed body, one thread (a current-thread tokio runtime), so it costs
//! the same whichever proxy is in front of it.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};

/// The body every request gets (64 bytes, like a small API answer).
pub const BODY: &[u8] = b"sluice bench backend: a small body of exactly sixty-four bytes.\n";

/// `sluice-bench ingress-backend ADDR`: serves [`BODY`] on ADDR until
/// killed.
pub fn run(args: &[String]) -> Result<(), String> {
    let addr: SocketAddr = args
        .first()
        .ok_or("usage: sluice-bench ingress-backend ADDR")?
        .parse()
        .map_err(|e| format!("backend address: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(serve(addr))
}

async fn serve(addr: SocketAddr) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("bind {addr}: {e}"))?;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(BODY))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}
