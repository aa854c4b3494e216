//! Soak: the real `sluice-ingress` binary on the real control plane
//! (`sluice_tests::cluster`: kube-apiserver, etcd, controller manager,
//! scheduler) with process-backed pods on a simulated node
//! (`sluice_tests::node_agent`), serving mixed traffic while everything it
//! watches churns.
//!
//! Traffic, each kind from its own task, all the time:
//!
//! * HTTP/1.1 on one keep-alive connection, and on a new connection per
//!   request;
//! * HTTPS (HTTP/1.1), a new TLS handshake per request, verified against
//!   the test CA (so a certificate rotation is seen by the next handshake);
//! * HTTP/2 over TLS (ALPN h2) on one long-lived connection;
//! * WebSocket: a new `Upgrade: websocket` connection per session, 101,
//!   then three messages echoed through the tunnel;
//! * gRPC: h2c (prior knowledge) on one long-lived connection to a Service
//!   whose port says `appProtocol: kubernetes.io/h2c`, `application/grpc`
//!   requests whose body comes back followed by `grpc-status: 0` trailers.
//!
//! Churn, one action at a time from a seeded generator, each waited for
//! until its effect is observed: Deployments scaled up and down, rolling
//! updates (maxSurge 1, maxUnavailable 0, pods that drain for their grace
//! period), Services and Ingresses created (served) and deleted (404), a
//! path added to and removed from the stable Ingress, a Service port
//! added and removed, and the TLS Secret rotated to a new certificate
//! (the next handshakes present it).
//!
//! Asserted: every churn action takes effect in time; **no request fails**
//! (no traffic is sent to anything the churn removes, so every failure is
//! the gateway's); the gateway's RSS (`VmRSS`) and open file descriptors
//! (`/proc/PID/fd`) stay flat: the maximum over the last third of the run
//! is at most the maximum over the first third plus 10 % (file
//! descriptors: plus 10 % or plus 4, whichever is more, as the few
//! connections being opened at a sampling instant make small counts
//! jitter).
//!
//! `SLUICE_SOAK_SECS` sets the duration (default 180, what `cargo test`
//! runs); `SLUICE_SOAK_SEED` replays a churn sequence. The 30-minute run:
//!
//! ```text
//! cargo build -p sluice-tests --bin sluice-testpod
//! SLUICE_SOAK_SECS=1800 cargo test -p sluice-ingress --test soak -- --nocapture
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use sluice_ingress::routes::class::DEFAULT_CONTROLLER;
use sluice_tests::cluster;
use sluice_tests::fixtures::TestCa;
use sluice_tests::node_agent::NodeAgent;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const NS: &str = "soak";
const NODE: &str = "soak-node";
const WEB_HOST: &str = "web.soak.test";
const GRPC_HOST: &str = "grpc.soak.test";
const TLS_HOST: &str = "tls.soak.test";
/// A request (or WebSocket session) that takes longer has failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two requests of one traffic task (keeps the load within
/// what two shared cores carry beside the control plane and the pods).
const PACE: Duration = Duration::from_millis(15);
/// Grace period of the pods: a deleted pod drains (keeps serving) this long.
const GRACE_SECS: u32 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_mixed_traffic_while_everything_churns() {
    if !cluster::available_or_skip("the soak test (control-plane tier)") {
        return;
    }
    let secs = env_u64("SLUICE_SOAK_SECS", 180);
    let seed = env_u64("SLUICE_SOAK_SEED", clock_seed());
    println!("soak: {secs} s, seed {seed} (SLUICE_SOAK_SEED replays the churn)");
    let c = cluster::shared();
    let node = NodeAgent::start(c, NODE).unwrap();
    let client = c.client().await;
    let ca = TestCa::new("soak CA");
    let world = World::new(client.clone());
    world.create(&ca).await;
    world.wait_endpoints("web", 3).await.unwrap();
    world.wait_endpoints("grpc", 2).await.unwrap();

    let mut gw = Gateway::start(c.admin_kubeconfig());
    let gw_addrs = gw.addrs;
    gw_addrs.wait_serving(&ca).await;

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let leaf = Arc::new(Mutex::new(Vec::new()));
    let ca = Arc::new(ca);
    let mut tasks = Vec::new();
    for kind in Traffic::ALL {
        let t = Traffic::task(
            kind,
            gw_addrs,
            ca.clone(),
            tally.clone(),
            stop.clone(),
            leaf.clone(),
        );
        tasks.push(tokio::spawn(t));
    }
    let sampler = tokio::spawn(sample(gw.pid(), stop.clone()));

    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut churn = Churn::new(seed, world, gw_addrs, ca.clone(), leaf.clone());
    churn.run_until(deadline).await;

    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let samples = sampler.await.unwrap();
    let report = Report {
        secs,
        tally: &tally,
        churn: &churn.done,
        samples: &samples,
    };
    println!("{report}");
    assert!(gw.alive(), "sluice-ingress exited during the soak");
    drop(gw);
    drop(node);
    report.check();
}

// ---------------------------------------------------------------------------
// Setup: the objects, the gateway process.

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        _ => default,
    }
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// xorshift64*: a reproducible churn sequence.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn deployment(name: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": GRACE_SECS,
                    "nodeSelector": {"kubernetes.io/hostname": NODE},
                    "containers": [{
                        "name": "echo", "image": "sluice.dev/echo:1",
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"},
                                           "periodSeconds": 1},
                    }],
                },
            },
        },
    })
}

fn service(name: &str, app: &str, h2c: bool, extra_port: bool) -> Value {
    let mut http = json!({"name": "http", "port": 80, "targetPort": "http"});
    if h2c {
        http["appProtocol"] = json!("kubernetes.io/h2c");
    }
    let mut ports = vec![http];
    if extra_port {
        ports.push(json!({"name": "alt", "port": 81, "targetPort": "http"}));
    }
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selector": {"app": app}, "ports": ports},
    })
}

fn backend(service: &str) -> Value {
    json!({"service": {"name": service, "port": {"number": 80}}})
}

fn path(p: &str, kind: &str, service: &str) -> Value {
    json!({"path": p, "pathType": kind, "backend": backend(service)})
}

/// The Ingress all steady traffic goes through; `extra` adds an Exact
/// `/extra` on the web host that goes to the h2c Service instead.
fn stable_ingress(extra: bool) -> Value {
    let mut web_paths = vec![path("/", "Prefix", "web")];
    if extra {
        web_paths.push(path("/extra", "Exact", "grpc"));
    }
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "stable", "namespace": NS},
        "spec": {
            "ingressClassName": "sluice",
            "tls": [{"hosts": [TLS_HOST], "secretName": "soak-tls"}],
            "rules": [
                {"host": WEB_HOST, "http": {"paths": web_paths}},
                {"host": GRPC_HOST, "http": {"paths": [path("/", "Prefix", "grpc")]}},
                {"host": TLS_HOST, "http": {"paths": [path("/", "Prefix", "web")]}},
            ],
        },
    })
}

fn extra_ingress(name: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "ingressClassName": "sluice",
            "rules": [{"host": format!("{name}.soak.test"),
                       "http": {"paths": [path("/", "Prefix", name)]}}],
        },
    })
}

fn tls_secret(ca: &TestCa) -> (Value, Vec<u8>) {
    let leaf = ca.leaf(&[TLS_HOST]);
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "soak-tls", "namespace": NS},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": leaf.chain_pem, "tls.key": leaf.key_pem},
    });
    (secret, leaf.der)
}

/// The cluster as the churn sees it.
struct World {
    client: kube::Client,
}

impl World {
    fn new(client: kube::Client) -> Self {
        Self { client }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), NS)
    }

    /// Server-side apply of `obj` (namespaced, in `NS`).
    async fn apply<K>(&self, obj: Value)
    where
        K: kube::Resource<Scope = NamespaceResourceScope>
            + Clone
            + k8s_openapi::serde::de::DeserializeOwned
            + fmt::Debug,
        K::DynamicType: Default,
    {
        let name = obj["metadata"]["name"].as_str().unwrap().to_owned();
        self.api::<K>()
            .patch(
                &name,
                &PatchParams::apply("soak").force(),
                &Patch::Apply(obj),
            )
            .await
            .unwrap_or_else(|e| panic!("applying {name}: {e}"));
    }

    async fn delete<K>(&self, name: &str)
    where
        K: kube::Resource<Scope = NamespaceResourceScope>
            + Clone
            + k8s_openapi::serde::de::DeserializeOwned
            + fmt::Debug,
        K::DynamicType: Default,
    {
        self.api::<K>()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("deleting {name}: {e}"));
    }

    async fn create(&self, ca: &TestCa) {
        let ns: Api<Namespace> = Api::all(self.client.clone());
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
        ns.patch(NS, &PatchParams::apply("soak").force(), &Patch::Apply(obj))
            .await
            .unwrap();
        let classes: Api<IngressClass> = Api::all(self.client.clone());
        let class = json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": "sluice"},
            "spec": {"controller": DEFAULT_CONTROLLER},
        });
        classes
            .patch(
                "sluice",
                &PatchParams::apply("soak").force(),
                &Patch::Apply(class),
            )
            .await
            .unwrap();
        self.apply::<Deployment>(deployment("web", 3)).await;
        self.apply::<Deployment>(deployment("grpc", 2)).await;
        self.apply::<Service>(service("web", "web", false, false))
            .await;
        self.apply::<Service>(service("grpc", "grpc", true, false))
            .await;
        self.apply::<Secret>(tls_secret(ca).0).await;
        self.apply::<Ingress>(stable_ingress(false)).await;
    }

    /// Ready, not terminating endpoints of a Service.
    async fn ready_endpoints(&self, service: &str) -> usize {
        let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
        let Ok(slices) = self.api::<EndpointSlice>().list(&lp).await else {
            return 0;
        };
        slices
            .into_iter()
            .flat_map(|s| s.endpoints)
            .filter(|e| {
                let c = e.conditions.clone().unwrap_or_default();
                c.ready.unwrap_or(true) && !c.terminating.unwrap_or(false)
            })
            .count()
    }

    async fn wait_endpoints(&self, service: &str, n: usize) -> Result<(), String> {
        wait(&format!("{n} ready endpoints of {service}"), 90, || async {
            (self.ready_endpoints(service).await == n).then_some(())
        })
        .await
    }

    /// Whether a Deployment's rollout is complete.
    async fn rolled_out(&self, name: &str) -> bool {
        let Ok(d) = self.api::<Deployment>().get(name).await else {
            return false;
        };
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let generation = d.metadata.generation.unwrap_or(0);
        let Some(s) = d.status else {
            return false;
        };
        s.observed_generation.unwrap_or(0) >= generation
            && s.updated_replicas.unwrap_or(0) == want
            && s.replicas.unwrap_or(0) == want
            && s.available_replicas.unwrap_or(0) == want
    }
}

/// Polls `probe` every 200 ms for up to `secs` seconds.
async fn wait<T, F, Fut>(what: &str, secs: u64, mut probe: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = probe().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("not within {secs} s: {what}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The gateway's listeners.
#[derive(Debug, Clone, Copy)]
struct Addrs {
    http: SocketAddr,
    https: SocketAddr,
    admin: SocketAddr,
}

/// The `sluice-ingress` process.
struct Gateway {
    child: Child,
    addrs: Addrs,
}

impl Gateway {
    fn start(kubeconfig: &std::path::Path) -> Self {
        let addrs = Addrs {
            http: free_addr(),
            https: free_addr(),
            admin: free_addr(),
        };
        let child = Command::new(env!("CARGO_BIN_EXE_sluice-ingress"))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--http-addr", &addrs.http.to_string()])
            .args(["--https-addr", &addrs.https.to_string()])
            .args(["--admin-addr", &addrs.admin.to_string()])
            .args(["--access-log", "off", "--election-namespace", NS])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Self { child, addrs }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Addrs {
    /// Waits until every stable host answers through the gateway.
    async fn wait_serving(&self, ca: &TestCa) {
        for host in [WEB_HOST, GRPC_HOST] {
            wait(&format!("{host} served"), 60, || async {
                let r = plain_get(self.http, host, "/").await.ok()?;
                (r.0 == StatusCode::OK).then_some(())
            })
            .await
            .unwrap();
        }
        wait("TLS served", 60, || async {
            tls_get(self.https, ca, b"http/1.1", "/").await.ok()
        })
        .await
        .unwrap();
    }
}

// ---------------------------------------------------------------------------
// Traffic.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Traffic {
    KeepAlive,
    NewConnection,
    Tls,
    H2,
    WebSocket,
    Grpc,
}

impl Traffic {
    const ALL: [Traffic; 6] = [
        Traffic::KeepAlive,
        Traffic::NewConnection,
        Traffic::Tls,
        Traffic::H2,
        Traffic::WebSocket,
        Traffic::Grpc,
    ];

    fn label(self) -> &'static str {
        match self {
            Traffic::KeepAlive => "HTTP/1.1 keep-alive",
            Traffic::NewConnection => "HTTP/1.1 new connection",
            Traffic::Tls => "HTTPS new handshake",
            Traffic::H2 => "HTTP/2 over TLS",
            Traffic::WebSocket => "WebSocket session",
            Traffic::Grpc => "gRPC (h2c, trailers)",
        }
    }

    async fn task(
        self,
        gw: Addrs,
        ca: Arc<TestCa>,
        tally: Arc<Tally>,
        stop: Arc<AtomicBool>,
        leaf: Arc<Mutex<Vec<u8>>>,
    ) {
        let mut conn = Conn::None;
        let mut n: u64 = 0;
        while !stop.load(Ordering::SeqCst) {
            n += 1;
            let one = async {
                match self {
                    Traffic::KeepAlive => keep_alive(&mut conn, gw.http, &tally, n).await,
                    Traffic::NewConnection => new_connection(gw.http, n).await,
                    Traffic::Tls => tls_once(gw.https, &ca, &leaf, n).await,
                    Traffic::H2 => h2_once(&mut conn, gw.https, &ca, &tally, n).await,
                    Traffic::WebSocket => websocket(gw.http, n).await,
                    Traffic::Grpc => grpc_once(&mut conn, gw.http, &tally, n).await,
                }
            };
            let outcome = match tokio::time::timeout(REQUEST_TIMEOUT, one).await {
                Ok(r) => r,
                Err(_) => {
                    conn = Conn::None;
                    Err(format!("no answer within {REQUEST_TIMEOUT:?}"))
                }
            };
            if outcome.is_err() {
                conn = Conn::None;
            }
            tally.record(self, outcome);
            tokio::time::sleep(PACE).await;
        }
    }
}

/// A long-lived connection of one traffic task.
enum Conn {
    None,
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// Requests that passed and failed, per kind, and the first failures.
#[derive(Default)]
struct Tally {
    ok: [AtomicU64; 6],
    failed: [AtomicU64; 6],
    /// Long-lived connections (re)opened, per kind.
    connects: [AtomicU64; 6],
    first_failures: Mutex<Vec<String>>,
}

impl Tally {
    fn index(kind: Traffic) -> usize {
        Traffic::ALL.iter().position(|k| *k == kind).unwrap()
    }

    fn record(&self, kind: Traffic, outcome: Result<(), String>) {
        let i = Self::index(kind);
        match outcome {
            Ok(()) => self.ok[i].fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                let mut f = self.first_failures.lock().unwrap();
                if f.len() < 20 {
                    f.push(format!("{}: {e}", kind.label()));
                }
                self.failed[i].fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    fn connected(&self, kind: Traffic) {
        self.connects[Self::index(kind)].fetch_add(1, Ordering::Relaxed);
    }
}

fn get(host: &str, path: &str, version: http::Version) -> Request<Full<Bytes>> {
    let uri = if version == http::Version::HTTP_2 {
        format!("https://{host}{path}")
    } else {
        path.to_owned()
    };
    Request::get(uri)
        .version(version)
        .header(http::header::HOST, host)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// Checks an echo answer: 200 and the echo pod saw `path` on `host`.
async fn check_echo(
    resp: Result<Response<hyper::body::Incoming>, hyper::Error>,
    host: &str,
    path: &str,
) -> Result<Value, String> {
    let resp = resp.map_err(|e| format!("{path}: {e}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{path}: body: {e}"))?
        .to_bytes();
    if status != StatusCode::OK {
        return Err(format!(
            "{path}: {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    let seen: Value =
        serde_json::from_slice(&body).map_err(|e| format!("{path}: not the echo's JSON: {e}"))?;
    if seen["path"] != path || seen["host"] != host {
        return Err(format!("{path}: the pod saw {seen}"));
    }
    Ok(seen)
}

async fn h1_connect(addr: SocketAddr) -> Result<http1::SendRequest<Full<Bytes>>, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (send, conn) = http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(send)
}

async fn keep_alive(
    conn: &mut Conn,
    addr: SocketAddr,
    tally: &Tally,
    n: u64,
) -> Result<(), String> {
    // A connection the gateway closed between requests is reopened; that
    // is not a failed request (one it closes under a request is).
    let reusable = matches!(conn, Conn::H1(s) if !s.is_closed());
    if !reusable {
        *conn = Conn::H1(h1_connect(addr).await?);
        tally.connected(Traffic::KeepAlive);
    }
    let Conn::H1(send) = conn else { unreachable!() };
    if send.ready().await.is_err() {
        *conn = Conn::H1(h1_connect(addr).await?);
        tally.connected(Traffic::KeepAlive);
    }
    let Conn::H1(send) = conn else { unreachable!() };
    let path = format!("/keep-alive/{n}");
    let r = send
        .send_request(get(WEB_HOST, &path, http::Version::HTTP_11))
        .await;
    check_echo(r, WEB_HOST, &path).await.map(drop)
}

/// A GET on a new plain connection: status and body.
async fn plain_get(
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> Result<(StatusCode, Bytes), String> {
    let mut send = h1_connect(addr).await?;
    let mut req = get(host, path, http::Version::HTTP_11);
    req.headers_mut()
        .insert(http::header::CONNECTION, "close".parse().unwrap());
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

async fn new_connection(addr: SocketAddr, n: u64) -> Result<(), String> {
    let mut send = h1_connect(addr).await?;
    let path = format!("/new/{n}");
    let mut req = get(WEB_HOST, &path, http::Version::HTTP_11);
    req.headers_mut()
        .insert(http::header::CONNECTION, "close".parse().unwrap());
    check_echo(send.send_request(req).await, WEB_HOST, &path)
        .await
        .map(drop)
}

type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// A TLS connection to the HTTPS listener for `TLS_HOST`, verified
/// against the test CA; the stream and the leaf it presented.
async fn tls_connect(
    addr: SocketAddr,
    ca: &TestCa,
    alpn: &[u8],
) -> Result<(TlsStream, CertificateDer<'static>), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der.clone().into()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from(TLS_HOST).unwrap(), tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .ok_or("no certificate")?[0]
        .clone();
    Ok((tls, leaf))
}

/// One HTTP/1.1 GET over a new TLS connection; the leaf presented.
async fn tls_get(
    addr: SocketAddr,
    ca: &TestCa,
    alpn: &[u8],
    path: &str,
) -> Result<CertificateDer<'static>, String> {
    let (tls, leaf) = tls_connect(addr, ca, alpn).await?;
    let (mut send, conn) = http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let mut req = get(TLS_HOST, path, http::Version::HTTP_11);
    req.headers_mut()
        .insert(http::header::CONNECTION, "close".parse().unwrap());
    check_echo(send.send_request(req).await, TLS_HOST, path).await?;
    Ok(leaf)
}

async fn tls_once(
    addr: SocketAddr,
    ca: &TestCa,
    latest: &Mutex<Vec<u8>>,
    n: u64,
) -> Result<(), String> {
    let leaf = tls_get(addr, ca, b"http/1.1", &format!("/tls/{n}")).await?;
    *latest.lock().unwrap() = leaf.to_vec();
    Ok(())
}

async fn h2_once(
    conn: &mut Conn,
    addr: SocketAddr,
    ca: &TestCa,
    tally: &Tally,
    n: u64,
) -> Result<(), String> {
    if !matches!(conn, Conn::H2(s) if !s.is_closed()) {
        let (tls, _) = tls_connect(addr, ca, b"h2").await?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err("ALPN h2 not chosen".into());
        }
        let (send, c) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::spawn(c);
        *conn = Conn::H2(send);
        tally.connected(Traffic::H2);
    }
    let Conn::H2(send) = conn else { unreachable!() };
    let path = format!("/h2/{n}");
    let r = send
        .send_request(get(TLS_HOST, &path, http::Version::HTTP_2))
        .await;
    check_echo(r, TLS_HOST, &path).await.map(drop)
}

/// A WebSocket client frame (FIN, text, masked) carrying `payload`.
fn ws_frame(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut f = vec![0x81, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

async fn websocket(addr: SocketAddr, n: u64) -> Result<(), String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let req = format!(
        "GET /ws/{n} HTTP/1.1\r\nHost: {WEB_HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.map_err(|e| e.to_string())? == 0 {
            return Err(format!(
                "upgrade: closed after {:?}",
                String::from_utf8_lossy(&head)
            ));
        }
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        let line = String::from_utf8_lossy(&head);
        return Err(format!(
            "upgrade answered {:?}",
            line.lines().next().unwrap_or("")
        ));
    }
    for i in 0..3u8 {
        let frame = ws_frame(format!("soak {n} {i}").as_bytes(), [i, 7, 13, n as u8]);
        s.write_all(&frame).await.map_err(|e| e.to_string())?;
        let mut back = vec![0u8; frame.len()];
        s.read_exact(&mut back)
            .await
            .map_err(|e| format!("message {i}: {e}"))?;
        if back != frame {
            return Err(format!("message {i} came back altered"));
        }
    }
    s.shutdown().await.map_err(|e| e.to_string())
}

async fn grpc_once(conn: &mut Conn, addr: SocketAddr, tally: &Tally, n: u64) -> Result<(), String> {
    if !matches!(conn, Conn::H2(s) if !s.is_closed()) {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (send, c) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .map_err(|e| format!("h2c handshake: {e}"))?;
        tokio::spawn(c);
        *conn = Conn::H2(send);
        tally.connected(Traffic::Grpc);
    }
    let Conn::H2(send) = conn else { unreachable!() };
    // One length-prefixed gRPC message.
    let payload = format!("soak {n}");
    let mut msg = vec![0u8];
    msg.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    msg.extend_from_slice(payload.as_bytes());
    let req = Request::post(format!("http://{GRPC_HOST}/soak.Echo/Say"))
        .version(http::Version::HTTP_2)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .body(Full::new(Bytes::from(msg.clone())))
        .unwrap();
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    if resp.status() != StatusCode::OK {
        return Err(format!("gRPC: {}", resp.status()));
    }
    let got = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("gRPC body: {e}"))?;
    let status = got
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .map(|v| v.as_bytes().to_vec());
    if status.as_deref() != Some(b"0") {
        return Err(format!("gRPC: trailers {:?}", got.trailers()));
    }
    if got.to_bytes() != msg {
        return Err("gRPC: the message came back altered".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Churn.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Scale,
    RollWeb,
    RollGrpc,
    IngressAddRemove,
    StablePath,
    ServicePort,
    RotateCert,
}

impl Action {
    const ALL: [Action; 7] = [
        Action::Scale,
        Action::RollWeb,
        Action::RollGrpc,
        Action::IngressAddRemove,
        Action::StablePath,
        Action::ServicePort,
        Action::RotateCert,
    ];

    fn label(self) -> &'static str {
        match self {
            Action::Scale => "web scaled (2-4 replicas), endpoints ready",
            Action::RollWeb => "web rolling update complete",
            Action::RollGrpc => "grpc rolling update complete",
            Action::IngressAddRemove => "Service+Ingress created, served, deleted, 404",
            Action::StablePath => "stable Ingress path added/removed, routed",
            Action::ServicePort => "Service port added/removed",
            Action::RotateCert => "TLS Secret rotated, new leaf served",
        }
    }
}

struct Churn {
    rng: Rng,
    world: World,
    gw: Addrs,
    ca: Arc<TestCa>,
    leaf: Arc<Mutex<Vec<u8>>>,
    replicas: i32,
    revision: u64,
    extra_path: bool,
    extra_port: bool,
    /// Each action and how long it took to take effect.
    done: BTreeMap<Action, Vec<Duration>>,
}

impl Churn {
    fn new(seed: u64, world: World, gw: Addrs, ca: Arc<TestCa>, leaf: Arc<Mutex<Vec<u8>>>) -> Self {
        Self {
            rng: Rng(seed | 1),
            world,
            gw,
            ca,
            leaf,
            replicas: 3,
            revision: 0,
            extra_path: false,
            extra_port: false,
            done: BTreeMap::new(),
        }
    }

    async fn run_until(&mut self, deadline: Instant) {
        // Every action once first (in a seeded order), then at random.
        let mut first: Vec<Action> = Action::ALL.to_vec();
        while Instant::now() < deadline {
            let action = if first.is_empty() {
                Action::ALL[self.rng.below(Action::ALL.len() as u64) as usize]
            } else {
                first.remove(self.rng.below(first.len() as u64) as usize)
            };
            let t0 = Instant::now();
            if let Err(e) = self.act(action).await {
                panic!("churn: {}: {e}", action.label());
            }
            self.done.entry(action).or_default().push(t0.elapsed());
            tokio::time::sleep(Duration::from_millis(500 + self.rng.below(1500))).await;
        }
    }

    async fn act(&mut self, action: Action) -> Result<(), String> {
        let w = &self.world;
        match action {
            Action::Scale => {
                let mut n = 2 + self.rng.below(3) as i32;
                if n == self.replicas {
                    n = if n == 4 { 2 } else { n + 1 };
                }
                self.replicas = n;
                let patch = json!({"spec": {"replicas": n}});
                w.api::<Deployment>()
                    .patch("web", &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map_err(|e| e.to_string())?;
                w.wait_endpoints("web", n as usize).await?;
                wait("web rolled out", 90, || async {
                    w.rolled_out("web").await.then_some(())
                })
                .await
            }
            Action::RollWeb | Action::RollGrpc => {
                let name = if action == Action::RollWeb {
                    "web"
                } else {
                    "grpc"
                };
                self.revision += 1;
                let patch = json!({"spec": {"template": {"metadata": {"annotations": {
                    "soak/revision": self.revision.to_string()}}}}});
                w.api::<Deployment>()
                    .patch(name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map_err(|e| e.to_string())?;
                wait(&format!("{name} rolled out"), 120, || async {
                    w.rolled_out(name).await.then_some(())
                })
                .await
            }
            Action::IngressAddRemove => {
                let name = format!("extra-{}", self.rng.below(1000));
                let host = format!("{name}.soak.test");
                w.apply::<Service>(service(&name, "web", false, false))
                    .await;
                w.apply::<Ingress>(extra_ingress(&name)).await;
                let http = self.gw.http;
                wait(&format!("{host} served"), 60, || async {
                    let r = plain_get(http, &host, "/x").await.ok()?;
                    (r.0 == StatusCode::OK).then_some(())
                })
                .await?;
                w.delete::<Ingress>(&name).await;
                w.delete::<Service>(&name).await;
                wait(&format!("{host} gone (404)"), 60, || async {
                    let r = plain_get(http, &host, "/x").await.ok()?;
                    (r.0 == StatusCode::NOT_FOUND).then_some(())
                })
                .await
            }
            Action::StablePath => {
                self.extra_path = !self.extra_path;
                w.apply::<Ingress>(stable_ingress(self.extra_path)).await;
                // /extra goes to the h2c Service when present (the echo
                // sees HTTP/2), to web's `/` (HTTP/1.1) when not.
                let want = if self.extra_path {
                    "HTTP/2.0"
                } else {
                    "HTTP/1.1"
                };
                let http = self.gw.http;
                wait(&format!("/extra served over {want}"), 60, || async {
                    let (s, body) = plain_get(http, WEB_HOST, "/extra").await.ok()?;
                    let seen: Value = serde_json::from_slice(&body).ok()?;
                    (s == StatusCode::OK && seen["proto"] == want).then_some(())
                })
                .await
            }
            Action::ServicePort => {
                self.extra_port = !self.extra_port;
                w.apply::<Service>(service("web", "web", false, self.extra_port))
                    .await;
                let want = if self.extra_port { 2 } else { 1 };
                wait("the Service's ports", 30, || async {
                    let s = w.api::<Service>().get("web").await.ok()?;
                    (s.spec?.ports?.len() == want).then_some(())
                })
                .await
            }
            Action::RotateCert => {
                let (secret, der) = tls_secret(&self.ca);
                w.apply::<Secret>(secret).await;
                let (https, ca, leaf) = (self.gw.https, &self.ca, &self.leaf);
                wait("the new certificate served", 60, || async {
                    let got = tls_get(https, ca, b"http/1.1", "/rotated").await.ok()?;
                    (got.as_ref() == der.as_slice()).then_some(())
                })
                .await?;
                // The traffic task's own handshakes see it too.
                wait(
                    "the traffic's handshakes on the new certificate",
                    30,
                    || async { (*leaf.lock().unwrap() == der).then_some(()) },
                )
                .await
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Resources and the report.

/// One sample of the gateway's resources.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rss_kib: u64,
    fds: u64,
}

fn read_sample(pid: u32) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Sample { rss_kib, fds })
}

/// Samples every second until `stop`.
async fn sample(pid: u32, stop: Arc<AtomicBool>) -> Vec<Sample> {
    let mut out = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        if let Some(s) = read_sample(pid) {
            out.push(s);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    out
}

struct Report<'a> {
    secs: u64,
    tally: &'a Tally,
    churn: &'a BTreeMap<Action, Vec<Duration>>,
    samples: &'a [Sample],
}

/// Maxima of the first and the last third.
fn thirds(samples: &[Sample], f: impl Fn(&Sample) -> u64) -> (u64, u64) {
    let third = (samples.len() / 3).max(1);
    let max = |s: &[Sample]| s.iter().map(&f).max().unwrap_or(0);
    (
        max(&samples[..third]),
        max(&samples[samples.len() - third..]),
    )
}

impl Report<'_> {
    fn rss(&self) -> (u64, u64) {
        thirds(self.samples, |s| s.rss_kib)
    }

    fn fds(&self) -> (u64, u64) {
        thirds(self.samples, |s| s.fds)
    }

    fn check(&self) {
        let failed: u64 = self
            .tally
            .failed
            .iter()
            .map(|f| f.load(Ordering::Relaxed))
            .sum();
        assert_eq!(
            failed,
            0,
            "failed requests; the first: {:#?}",
            self.tally.first_failures.lock().unwrap()
        );
        for (i, kind) in Traffic::ALL.iter().enumerate() {
            assert!(
                self.tally.ok[i].load(Ordering::Relaxed) > 0,
                "no {} passed",
                kind.label()
            );
        }
        assert!(self.samples.len() >= 9, "too few samples");
        let (first, last) = self.rss();
        assert!(
            last * 10 <= first * 11,
            "RSS grew: max {first} KiB in the first third, {last} KiB in the last"
        );
        let (first, last) = self.fds();
        assert!(
            last <= first + (first / 10).max(4),
            "file descriptors grew: max {first} in the first third, {last} in the last"
        );
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "soak: {} s", self.secs)?;
        for (i, kind) in Traffic::ALL.iter().enumerate() {
            writeln!(
                f,
                "  {:<26} {:>7} ok {:>4} failed {:>4} connections opened",
                kind.label(),
                self.tally.ok[i].load(Ordering::Relaxed),
                self.tally.failed[i].load(Ordering::Relaxed),
                self.tally.connects[i].load(Ordering::Relaxed),
            )?;
        }
        for (action, times) in self.churn {
            let total: Duration = times.iter().sum();
            let max = times.iter().max().copied().unwrap_or_default();
            writeln!(
                f,
                "  churn {:<48} x{:<3} mean {:>5.1} s, max {:>5.1} s",
                action.label(),
                times.len(),
                total.as_secs_f64() / times.len() as f64,
                max.as_secs_f64()
            )?;
        }
        let (r1, r3) = self.rss();
        let (f1, f3) = self.fds();
        write!(
            f,
            "  RSS max first third {:.1} MiB, last third {:.1} MiB; fds max first third {f1}, last third {f3} ({} samples)",
            r1 as f64 / 1024.0,
            r3 as f64 / 1024.0,
            self.samples.len()
        )
    }
}
