//! The admin HTTP server both binaries run (health, readiness, metrics;
//! the proxy's healthCheckNodePort servers too): HTTP/1.1, one handler
//! function from request to response, header names in Go's title case (as
//! kube-proxy's net/http sends them), and an accept loop that pauses
//! instead of spinning when descriptors run out ([`crate::accept`]).

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::accept::{AcceptBackoff, accept};

/// A response with a body.
pub type AdminResponse = Response<Full<Bytes>>;

/// The Content-Type of the Prometheus text format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Serves HTTP/1.1 on `listener` with `handler` until the task is aborted.
pub async fn serve<F>(mut listener: TcpListener, handler: F)
where
    F: Fn(&Request<Incoming>) -> AdminResponse + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    let mut backoff = AcceptBackoff::default();
    loop {
        let (stream, _) = accept(&mut listener, &mut backoff).await;
        let handler = handler.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let resp = handler(&req);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .title_case_headers(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// A response with `status`, `Content-Type: content_type` and
/// `X-Content-Type-Options: nosniff`, plus `extra` headers.
pub fn response(
    status: StatusCode,
    content_type: &str,
    body: String,
    extra: &[(&str, String)],
) -> AdminResponse {
    let mut b = Response::builder()
        .status(status)
        .header("Content-Type", content_type)
        .header("X-Content-Type-Options", "nosniff");
    for (k, v) in extra {
        b = b.header(*k, v);
    }
    b.body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// `404 page not found`, as Go's net/http words it.
pub fn not_found() -> AdminResponse {
    response(
        StatusCode::NOT_FOUND,
        "text/plain; charset=utf-8",
        "404 page not found\n".into(),
        &[],
    )
}

/// The metrics in `registry`, in the Prometheus text format.
pub fn metrics(registry: &Registry) -> AdminResponse {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, registry) {
        Ok(()) => response(StatusCode::OK, METRICS_CONTENT_TYPE, out, &[]),
        Err(e) => response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("{e}\n"),
            &[],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(port: u16, path: &str) -> String {
        sluice_tests::fixtures::http_get_async(("127.0.0.1", port), path)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn serves_the_handler_with_title_case_headers() {
        let mut registry = Registry::default();
        let c = prometheus_client::metrics::counter::Counter::<u64>::default();
        registry.register("demo", "A demo", c.clone());
        c.inc();
        let registry = Arc::new(registry);
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let task = tokio::spawn(serve(l, move |req| match req.uri().path() {
            "/metrics" => metrics(&registry),
            "/ok" => response(
                StatusCode::OK,
                "application/json",
                "{}".into(),
                &[("X-Extra", "1".into())],
            ),
            _ => not_found(),
        }));
        let ok = get(port, "/ok").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Type: application/json\r\n"), "{ok}");
        assert!(ok.contains("X-Content-Type-Options: nosniff\r\n"), "{ok}");
        assert!(ok.contains("X-Extra: 1\r\n"), "{ok}");
        let m = get(port, "/metrics").await;
        assert!(m.contains("demo_total 1"), "{m}");
        assert!(m.contains("text/plain; version=0.0.4"), "{m}");
        assert!(get(port, "/x").await.starts_with("HTTP/1.1 404"));
        task.abort();
    }
}
