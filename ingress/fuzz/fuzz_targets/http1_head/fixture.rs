//! The fixed world of the target: a stub upstream and a gateway routing to
//! it. Hosts and paths here are in `ingress/fuzz/http1_head.dict` and the
//! seed corpus, so the fuzzer reaches every kind of route.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::networking::v1::Ingress;
use sluice_ingress::gateway::{
    AppProtocol, EndpointSet, Endpoints, Gateway, GatewayConfig, Metrics, Routing, ServiceKey,
};
use sluice_ingress::routes::{PortRef, build};

/// The Ingress the route table is built from.
const INGRESS: &str = r#"{
  "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
  "metadata": {"namespace": "default", "name": "fuzz"},
  "spec": {
    "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}},
    "tls": [{"hosts": ["secure.test"], "secretName": "none"}],
    "rules": [
      {"host": "app.test", "http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
        {"path": "/exact", "pathType": "Exact", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
        {"path": "/api", "pathType": "Prefix", "backend": {"service": {"name": "api", "port": {"name": "http"}}}},
        {"path": "/bucket", "pathType": "Prefix", "backend": {"resource": {"kind": "Bucket", "name": "b"}}},
        {"path": "/empty", "pathType": "Prefix", "backend": {"service": {"name": "empty", "port": {"number": 80}}}}
      ]}},
      {"host": "*.wild.test", "http": {"paths": [
        {"path": "/", "pathType": "ImplementationSpecific", "backend": {"service": {"name": "web", "port": {"number": 80}}}}
      ]}},
      {"host": "secure.test", "http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}
      ]}},
      {"http": {"paths": [
        {"path": "/open", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}
      ]}}
    ]
  }
}"#;

/// A loopback HTTP/1.1 server answering every request `200 ok` after
/// reading its body.
async fn stub_upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the stub upstream");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                let _ = req.into_body().collect().await;
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

pub async fn gateway() -> Gateway {
    let upstream = stub_upstream().await;
    let ingress: Ingress = serde_json::from_str(INGRESS).expect("fixture Ingress");
    let out = build([&ingress]);
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    let set = EndpointSet::new([upstream], AppProtocol::Http1);
    let mut endpoints = Endpoints::new();
    endpoints.insert(
        ServiceKey::new("default", "web", PortRef::Number(80)),
        set.clone(),
    );
    endpoints.insert(
        ServiceKey::new("default", "api", PortRef::Name("http".into())),
        set,
    );
    let config = GatewayConfig {
        http_addr: None,
        https_addr: None,
        ..GatewayConfig::default()
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let gateway = Gateway::new(config, Metrics::new(&mut registry)).expect("gateway");
    gateway.update(Routing {
        table: Arc::new(out.table),
        endpoints: Arc::new(endpoints),
        ..Routing::default()
    });
    gateway
}
