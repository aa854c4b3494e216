//! Shared fixtures for the gateway tests: backends (small hyper servers on
//! loopback), a gateway on ephemeral ports, routing built from Ingress
//! JSON, certificates from rcgen, and clients (hyper, raw TCP, rustls).
#![allow(dead_code)]

pub mod h2_frames;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::networking::v1::Ingress;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use sluice_ingress::gateway::{
    AppProtocol, CertStore, EndpointSet, Endpoints, Gateway, GatewayConfig, Metrics, Routing,
    ServiceKey,
};
use sluice_ingress::routes::{PortRef, RouteTable, SecretRef, build};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};

pub type TestBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub fn body(data: impl Into<Bytes>) -> TestBody {
    Full::new(data.into())
        .map_err(|e| match e {})
        .boxed_unsync()
}

pub fn empty() -> TestBody {
    Empty::new().map_err(|e| match e {}).boxed_unsync()
}

// ------------------------------------------------------------ backends

/// What a backend saw and can be told.
#[derive(Default)]
pub struct BackendState {
    pub name: String,
    pub hits: AtomicUsize,
    /// TCP connections accepted.
    pub connections: AtomicUsize,
    pub requests: Mutex<Vec<Value>>,
    /// Request body bytes received so far on `/upload`.
    pub received: AtomicU64,
    /// `/download?gate=1` waits on this after the first half.
    pub gate: Notify,
    /// Added to every response, in ms.
    pub delay_ms: AtomicU64,
}

/// A hyper server (HTTP/1.1 and h2c) on 127.0.0.1.
///
/// * `/upload`: counts the request body as it streams, answers the count;
/// * `/download?n=N[&gate=1]`: N bytes in 64 KiB chunks (with `gate`,
///   the second half waits for [`BackendState::gate`]);
/// * `/grpc`: a body and trailers `grpc-status: 0`;
/// * an `Upgrade` request: 101, then echoes bytes on the raw stream;
/// * anything else: a JSON echo of method, URI, version and headers.
pub struct Backend {
    pub addr: SocketAddr,
    pub state: Arc<BackendState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Backend {
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(name, listener)
    }

    pub fn serve(name: &str, listener: TcpListener) -> Self {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(BackendState {
            name: name.to_owned(),
            ..BackendState::default()
        });
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let st = state.clone();
        let task = tokio::spawn(async move {
            let graceful = hyper_util::server::graceful::GracefulShutdown::new();
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            loop {
                tokio::select! {
                    r = listener.accept() => {
                        let Ok((tcp, _)) = r else { continue };
                        st.connections.fetch_add(1, Ordering::SeqCst);
                        let st = st.clone();
                        let svc = hyper::service::service_fn(move |req| handle(st.clone(), req));
                        let conn = builder
                            .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                            .into_owned();
                        let conn = graceful.watch(conn);
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                    }
                    _ = &mut stop_rx => break,
                }
            }
            drop(listener);
            let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
        });
        Self {
            addr,
            state,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Stops accepting and lets open connections finish their requests.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn query_param<'a>(q: Option<&'a str>, key: &str) -> Option<&'a str> {
    q?.split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

async fn handle(
    st: Arc<BackendState>,
    mut req: Request<Incoming>,
) -> Result<Response<TestBody>, Infallible> {
    st.hits.fetch_add(1, Ordering::SeqCst);
    let delay = st.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let headers: HashMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    let info = json!({
        "backend": st.name,
        "method": req.method().as_str(),
        "uri": req.uri().to_string(),
        "path": req.uri().path(),
        "version": format!("{:?}", req.version()),
        "headers": headers,
    });
    st.requests.lock().unwrap().push(info.clone());
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    if req.headers().contains_key(http::header::UPGRADE) {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 4096];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if io.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        });
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut()
            .insert("upgrade", HeaderValue::from_static("websocket"));
        r.headers_mut()
            .insert("connection", HeaderValue::from_static("Upgrade"));
        return Ok(r);
    }
    let resp = match path.as_str() {
        "/upload" => {
            let mut b = req.into_body();
            let mut n = 0u64;
            while let Some(f) = b.frame().await {
                match f {
                    Ok(f) => {
                        if let Some(d) = f.data_ref() {
                            n += d.len() as u64;
                            st.received.fetch_add(d.len() as u64, Ordering::SeqCst);
                        }
                    }
                    Err(_) => break,
                }
            }
            Response::new(body(n.to_string()))
        }
        "/download" => {
            let n: u64 = query_param(query.as_deref(), "n")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let gated = query_param(query.as_deref(), "gate") == Some("1");
            let (mut tx, rx) = http_body_util::channel::Channel::<Bytes, Infallible>::new(4);
            let st2 = st.clone();
            tokio::spawn(async move {
                let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                let mut sent = 0u64;
                let mut gate_passed = !gated;
                while sent < n {
                    if !gate_passed && sent >= n / 2 {
                        st2.gate.notified().await;
                        gate_passed = true;
                    }
                    let len = (n - sent).min(chunk.len() as u64) as usize;
                    if tx.send_data(chunk.slice(..len)).await.is_err() {
                        return;
                    }
                    sent += len as u64;
                }
            });
            Response::new(rx.map_err(|e| match e {}).boxed_unsync())
        }
        "/grpc" => {
            let (mut tx, rx) = http_body_util::channel::Channel::<Bytes, Infallible>::new(2);
            tokio::spawn(async move {
                let _ = tx.send_data(Bytes::from_static(b"\0\0\0\0\x02hi")).await;
                let mut t = HeaderMap::new();
                t.insert("grpc-status", HeaderValue::from_static("0"));
                t.insert("grpc-message", HeaderValue::from_static("ok"));
                let _ = tx.send_trailers(t).await;
            });
            let mut r = Response::new(rx.map_err(|e| match e {}).boxed_unsync());
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/grpc"));
            r
        }
        _ => {
            let mut r = Response::new(body(info.to_string()));
            r.headers_mut()
                .insert("x-backend", HeaderValue::from_str(&st.name).unwrap());
            r.headers_mut()
                .insert("connection", HeaderValue::from_static("keep-alive"));
            r.headers_mut()
                .insert("keep-alive", HeaderValue::from_static("timeout=5"));
            r
        }
    };
    Ok(resp)
}

// ------------------------------------------------------------ routing

pub fn ingress(ns: &str, name: &str, annotations: Value, spec: Value) -> Ingress {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "namespace": ns,
            "name": name,
            "creationTimestamp": "2024-01-01T00:00:00Z",
            "annotations": annotations,
        },
        "spec": spec,
    }))
    .unwrap()
}

/// A rule `host` (None = any) with `(path, service)` Prefix paths on port 80.
pub fn rule(host: Option<&str>, paths: &[(&str, &str)]) -> Value {
    let paths: Vec<Value> = paths
        .iter()
        .map(|(p, svc)| {
            json!({
                "path": p,
                "pathType": "Prefix",
                "backend": { "service": { "name": svc, "port": { "number": 80 } } },
            })
        })
        .collect();
    match host {
        Some(h) => json!({ "host": h, "http": { "paths": paths } }),
        None => json!({ "http": { "paths": paths } }),
    }
}

pub fn table(ingresses: &[Ingress]) -> Arc<RouteTable> {
    let out = build(ingresses);
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    Arc::new(out.table)
}

pub fn key(svc: &str) -> ServiceKey {
    ServiceKey::new("ns", svc, PortRef::Number(80))
}

/// Endpoints: service name → addresses (HTTP/1.1).
pub fn endpoints(services: &[(&str, Vec<SocketAddr>)]) -> Arc<Endpoints> {
    Arc::new(
        services
            .iter()
            .map(|(s, a)| (key(s), EndpointSet::new(a.clone(), AppProtocol::Http1)))
            .collect(),
    )
}

pub fn routing(table: Arc<RouteTable>, endpoints: Arc<Endpoints>, certs: CertStore) -> Routing {
    Routing {
        table,
        endpoints,
        certs: Arc::new(certs),
        default_certificate: None,
        ..Routing::default()
    }
}

// ------------------------------------------------------------ gateway

pub struct TestGateway {
    pub gateway: Gateway,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub registry: prometheus_client::registry::Registry,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// A config listening on loopback ephemeral ports.
pub fn test_config() -> GatewayConfig {
    GatewayConfig {
        http_addr: Some("127.0.0.1:0".parse().unwrap()),
        https_addr: Some("127.0.0.1:0".parse().unwrap()),
        ..GatewayConfig::default()
    }
}

impl TestGateway {
    pub async fn start(config: GatewayConfig, routing: Routing) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut registry = prometheus_client::registry::Registry::default();
        let gateway = Gateway::new(config, Metrics::new(&mut registry)).unwrap();
        gateway.update(routing);
        let server = gateway.bind().await.unwrap();
        let http = server.http_addr().unwrap();
        let https = server.https_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move {
            let _ = rx.await;
        }));
        Self {
            gateway,
            http,
            https,
            registry,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).unwrap();
        out
    }

    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

// ------------------------------------------------------------ clients

pub fn h1_client() -> Client<HttpConnector, TestBody> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub fn h2c_client() -> Client<HttpConnector, TestBody> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new())
}

/// `GET http://{addr}{path}` with `Host: host`; status, headers, body.
pub async fn get(
    client: &Client<HttpConnector, TestBody>,
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> (StatusCode, HeaderMap, Bytes) {
    let req = Request::get(format!("http://{addr}{path}"))
        .header("host", host)
        .body(empty())
        .unwrap();
    let resp = client.request(req).await.expect("request");
    let (parts, b) = resp.into_parts();
    (
        parts.status,
        parts.headers,
        b.collect().await.unwrap().to_bytes(),
    )
}

pub fn json_of(b: &Bytes) -> Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(b)))
}

/// Writes `raw` on a fresh connection and reads until the peer closes (or
/// `limit` passes); returns what was read.
pub async fn raw_exchange(addr: SocketAddr, raw: &[u8], limit: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

// ------------------------------------------------------------ TLS

/// A test CA issuing leaf certificates (`sluice_tests::fixtures::TestCa`
/// with rustls's DER type).
pub struct TestCa {
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
    inner: sluice_tests::fixtures::TestCa,
}

/// A leaf certificate (PEM chain leaf + CA, PEM key, leaf DER).
pub struct Leaf {
    pub chain_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl TestCa {
    pub fn new() -> Self {
        let inner = sluice_tests::fixtures::TestCa::new("Sluice Test CA");
        Self {
            cert_pem: inner.cert_pem.clone(),
            cert_der: CertificateDer::from(inner.cert_der.clone()),
            inner,
        }
    }

    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let l = self.inner.leaf(names);
        Leaf {
            chain_pem: l.chain_pem,
            key_pem: l.key_pem,
            der: CertificateDer::from(l.der),
        }
    }
}

pub fn secret(name: &str) -> SecretRef {
    SecretRef {
        namespace: "ns".into(),
        name: name.into(),
    }
}

/// Accepts any server certificate (the tests compare it themselves).
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// Connects with TLS: `sni` = None sends no SNI. With `ca`, the chain is
/// verified against it; otherwise anything is accepted. Returns the stream
/// and the served leaf.
pub async fn tls_connect(
    addr: SocketAddr,
    sni: Option<&str>,
    alpn: &[&[u8]],
    ca: Option<&TestCa>,
) -> Result<(TlsStream, CertificateDer<'static>), std::io::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let mut cfg = match ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.cert_der.clone()).unwrap();
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = match sni {
        Some(s) => {
            cfg.enable_sni = true;
            ServerName::try_from(s.to_owned()).unwrap()
        }
        None => {
            cfg.enable_sni = false;
            ServerName::try_from("sni.invalid").unwrap()
        }
    };
    let tcp = TcpStream::connect(addr).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await?;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    Ok((tls, leaf))
}

/// One request over an established TLS stream with the negotiated ALPN.
pub async fn tls_request(
    tls: TlsStream,
    host: &str,
    path: &str,
) -> (StatusCode, HeaderMap, Bytes, http::Version) {
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(tls);
    let req = |version| {
        let uri = if version == http::Version::HTTP_2 {
            format!("https://{host}{path}")
        } else {
            path.to_owned()
        };
        Request::get(uri)
            .header("host", host)
            .version(version)
            .body(empty())
            .unwrap()
    };
    let resp = if h2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        send.send_request(req(http::Version::HTTP_2)).await.unwrap()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        send.send_request(req(http::Version::HTTP_11))
            .await
            .unwrap()
    };
    let version = resp.version();
    let (parts, b) = resp.into_parts();
    (
        parts.status,
        parts.headers,
        b.collect().await.unwrap().to_bytes(),
        version,
    )
}

/// A frame helper for streamed request bodies.
pub fn data(b: Bytes) -> Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>> {
    Ok(Frame::data(b))
}
