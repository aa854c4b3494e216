//! What the hot-reload suite needs beside `cluster_support`: its corner of
//! the shared cluster (namespace, IngressClass, simulated node, gateway),
//! the Deployments and Ingresses it edits, load generators that count every
//! answer, and the observation loop that times each change.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::IngressClass;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use sluice_tests::cluster;
use sluice_tests::node_agent::NodeAgent;
use tokio::sync::Mutex as AsyncMutex;

use crate::cluster_support::{Gateway, args, echo_pod, ingress_class, must_apply, namespace};
use crate::gateway_support::{TestBody, body, empty};

/// How long one change may take to show through the gateway.
pub const CHANGE_LIMIT: Duration = Duration::from_secs(60);

/// How often a change is probed for: often enough to time it.
pub const OBSERVE_POLL: Duration = Duration::from_millis(20);

// ------------------------------------------------------------ the scene

/// One test's corner of the shared cluster: namespace, IngressClass of
/// controller `sluice.dev/<name>` and a simulated node, all called `name`.
pub struct Scene {
    pub client: kube::Client,
    pub ns: String,
    pub class: String,
    pub controller: String,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    node: Option<NodeAgent>,
}

impl Scene {
    /// None (the test is skipped) when no cluster can run here.
    pub async fn new(name: &str) -> Option<Scene> {
        if !cluster::available_or_skip(name) {
            return None;
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let c = cluster::shared();
        let client = c.client().await;
        let dir = std::env::temp_dir().join(format!("sluice-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let controller = format!("sluice.dev/{name}");
        must_apply(&client, &namespace(name)).await;
        must_apply(&client, &ingress_class(name, &controller, false)).await;
        let node = NodeAgent::start(c, name).expect("node agent");
        Some(Scene {
            client,
            ns: name.to_owned(),
            class: name.to_owned(),
            controller,
            dir,
            kubeconfig: c.admin_kubeconfig().to_owned(),
            node: Some(node),
        })
    }

    /// Server-side applies `obj`.
    pub async fn apply(&self, obj: &Value) {
        must_apply(&self.client, obj).await;
    }

    /// The gateway for this scene's class, with `extra` flags, once ready.
    pub async fn gateway(&self, extra: &[&str]) -> Gateway {
        Gateway::start(
            &self.kubeconfig,
            &self.dir,
            &self.ns,
            "gw",
            &args(
                &self.controller,
                crate::cluster_support::STATUS_ADDRESS,
                extra,
            ),
        )
        .await
    }

    /// Deployment `name` of the HTTP echo image, `replicas` pods labelled
    /// `app=name` on this scene's node. Deleted pods keep serving for
    /// three seconds (their endpoints `terminating`), as a real rollout's
    /// do while the data plane takes them out.
    pub fn echo_deployment(&self, name: &str, replicas: u32) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "terminationGracePeriodSeconds": 3,
                        "nodeSelector": {"kubernetes.io/hostname": self.class},
                        "containers": [{
                            "name": "echo", "image": "sluice.dev/echo:1",
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {
                                "httpGet": {"path": "/", "port": "http"},
                                "periodSeconds": 1
                            }
                        }]
                    }
                }
            }
        })
    }

    /// Service `name` (port `http` 80 → the pods' `http`) selecting
    /// `app=<app>`.
    pub fn service(&self, name: &str, app: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {"selector": {"app": app},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
        })
    }

    /// An Ingress of this scene's class.
    pub fn ingress(&self, name: &str, annotations: Value, spec: Value) -> Value {
        let mut spec = spec;
        spec["ingressClassName"] = json!(self.class);
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": self.ns, "annotations": annotations},
            "spec": spec
        })
    }

    /// Names of the Ready, not terminating pods with `app=<app>`.
    pub async fn ready_pods(&self, app: &str) -> BTreeSet<String> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns);
        let lp = ListParams::default().labels(&format!("app={app}"));
        let Ok(list) = api.list(&lp).await else {
            return BTreeSet::new();
        };
        list.items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .filter_map(|p| p.metadata.name)
            .collect()
    }

    /// Waits until `n` pods of `app` are Ready.
    pub async fn wait_ready(&self, app: &str, n: usize) {
        let started = Instant::now();
        while self.ready_pods(app).await.len() != n {
            assert!(
                started.elapsed() < CHANGE_LIMIT,
                "{n} pods of {app} never became Ready"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Merge-patches Deployment `name`.
    pub async fn patch_deployment(&self, name: &str, patch: Value) {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.ns);
        api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap_or_else(|e| panic!("patching Deployment {name}: {e}"));
    }

    /// `kubectl rollout restart`: a new pod-template annotation, so the
    /// Deployment controller replaces every pod.
    pub async fn restart(&self, name: &str, generation: usize) {
        let patch = json!({"spec": {"template": {"metadata": {"annotations": {
            "sluice.dev/restarted": generation.to_string()
        }}}}});
        self.patch_deployment(name, patch).await;
    }

    /// `kubectl scale`.
    pub async fn scale(&self, name: &str, replicas: u32) {
        self.patch_deployment(name, json!({"spec": {"replicas": replicas}}))
            .await;
    }

    /// Waits until `n` pods of `app` are Ready, none of them in `old`, and
    /// exactly those answer `GET path` for `host` through `gw`. Returns
    /// them and how long it took from the API server's showing them Ready
    /// (the EndpointSlice controller's and the gateway's part of a rollout;
    /// the rest is the simulated node starting pods).
    pub async fn wait_answering(
        &self,
        gw: &Gateway,
        host: &str,
        path: &str,
        app: &str,
        n: usize,
        old: &BTreeSet<String>,
    ) -> (BTreeSet<String>, Duration) {
        let started = Instant::now();
        let mut ready_since: Option<(BTreeSet<String>, Instant)> = None;
        loop {
            let ready = self.ready_pods(app).await;
            if ready.len() == n && ready.is_disjoint(old) {
                if ready_since.as_ref().is_none_or(|(r, _)| *r != ready) {
                    ready_since = Some((ready.clone(), Instant::now()));
                }
                let mut seen = BTreeSet::new();
                for _ in 0..4 * n {
                    if let Some(p) = echo_pod(gw.http, host, path).await {
                        seen.insert(p);
                    }
                }
                if seen == ready {
                    let since = ready_since.map(|(_, t)| t.elapsed()).unwrap_or_default();
                    return (ready, since);
                }
            } else {
                ready_since = None;
            }
            assert!(
                started.elapsed() < CHANGE_LIMIT,
                "{n} new pods of {app} never answered for {host}{path} (ready: {ready:?}, old: {old:?})\n{}",
                gw.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Deletes the namespace, class and node.
    pub async fn cleanup(mut self) {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        let _ = api.delete(&self.ns, &DeleteParams::default()).await;
        let classes: Api<IngressClass> = Api::all(self.client.clone());
        let _ = classes.delete(&self.class, &DeleteParams::default()).await;
        drop(self.node.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ------------------------------------------------------------ answers

/// What came back: status, headers and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The echo pod's JSON body (Null for anything else).
    pub fn echo(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A header's value, if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// 200 from the echo pods, which saw `path` for `host`.
    pub fn echoed(&self, host: &str, path: &str) -> Result<(), String> {
        let e = self.echo();
        if self.status == StatusCode::OK
            && e["path"] == path
            && e["host"].as_str().is_some_and(|h| h.starts_with(host))
        {
            Ok(())
        } else {
            Err(format!(
                "{} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            ))
        }
    }
}

async fn collect(resp: http::Response<hyper::body::Incoming>) -> Result<Answer, String> {
    let (parts, b) = resp.into_parts();
    let body = b.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// A request: method, host, path, extra headers and body.
#[derive(Debug, Clone)]
pub struct Ask {
    pub method: Method,
    pub host: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Ask {
    pub fn get(host: &str, path: &str) -> Self {
        Ask {
            method: Method::GET,
            host: host.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn method(mut self, m: Method) -> Self {
        self.method = m;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, b: impl Into<Bytes>) -> Self {
        self.body = b.into();
        self
    }

    /// The request in origin form with `Host` (HTTP/1.1) or in absolute
    /// form, whose authority becomes `:authority` (h2).
    fn request(&self, h2: bool, port: u16) -> Request<TestBody> {
        let uri = if h2 {
            format!("http://{}:{port}{}", self.host, self.path)
        } else {
            self.path.clone()
        };
        let mut r = Request::builder().method(self.method.clone()).uri(uri);
        if !h2 {
            r = r.header("host", &self.host);
        }
        for (k, v) in &self.headers {
            r = r.header(k, v);
        }
        let b = if self.body.is_empty() {
            empty()
        } else {
            body(self.body.clone())
        };
        r.body(b).unwrap()
    }
}

/// `ask` over HTTP/1.1 on a connection of its own.
pub async fn fresh_h1(addr: SocketAddr, ask: &Ask) -> Result<Answer, String> {
    let once = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let resp = send
            .send_request(ask.request(false, addr.port()))
            .await
            .map_err(|e| e.to_string())?;
        collect(resp).await
    };
    tokio::time::timeout(Duration::from_secs(10), once)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

/// One keep-alive connection, HTTP/1.1 or h2c (prior knowledge), opened
/// again only after the gateway closed it; every request on it counts.
pub struct Conn {
    addr: SocketAddr,
    h2: bool,
    h1: AsyncMutex<Option<hyper::client::conn::http1::SendRequest<TestBody>>>,
    h2c: AsyncMutex<Option<hyper::client::conn::http2::SendRequest<TestBody>>>,
    /// Connections opened so far.
    pub opened: AtomicUsize,
}

impl Conn {
    pub fn new(addr: SocketAddr, h2: bool) -> Self {
        Conn {
            addr,
            h2,
            h1: AsyncMutex::new(None),
            h2c: AsyncMutex::new(None),
            opened: AtomicUsize::new(0),
        }
    }

    async fn connect(&self) -> Result<tokio::net::TcpStream, String> {
        self.opened.fetch_add(1, Ordering::Relaxed);
        tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends `ask` on the connection (opening it if it is closed).
    pub async fn send(&self, ask: &Ask) -> Result<Answer, String> {
        let fut = async {
            let resp = if self.h2 {
                let mut slot = self.h2c.lock().await;
                if slot.as_ref().is_none_or(|s| s.is_closed()) {
                    let io = TokioIo::new(self.connect().await?);
                    let (send, conn) =
                        hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                            .await
                            .map_err(|e| e.to_string())?;
                    tokio::spawn(conn);
                    *slot = Some(send);
                }
                // h2 multiplexes: clone the handle and let go of the slot.
                let mut send = slot.as_ref().unwrap().clone();
                drop(slot);
                send.send_request(ask.request(true, self.addr.port()))
                    .await
                    .map_err(|e| e.to_string())?
            } else {
                let mut slot = self.h1.lock().await;
                if slot.as_ref().is_none_or(|s| s.is_closed()) {
                    let io = TokioIo::new(self.connect().await?);
                    let (send, conn) = hyper::client::conn::http1::handshake(io)
                        .await
                        .map_err(|e| e.to_string())?;
                    tokio::spawn(conn);
                    *slot = Some(send);
                }
                let send = slot.as_mut().unwrap();
                send.ready().await.map_err(|e| e.to_string())?;
                let resp = send
                    .send_request(ask.request(false, self.addr.port()))
                    .await
                    .map_err(|e| e.to_string())?;
                return collect(resp).await;
            };
            collect(resp).await
        };
        tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .unwrap_or_else(|_| Err("timed out".into()))
    }
}

// ------------------------------------------------------------ load

/// Successes and failures of one load generator.
#[derive(Default)]
pub struct Tally {
    pub ok: AtomicUsize,
    pub failed: Mutex<Vec<String>>,
}

impl Tally {
    pub fn record(&self, r: Result<(), String>) {
        match r {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.failed.lock().unwrap().push(e),
        }
    }
}

/// Load generators running until [`Load::finish`].
#[derive(Default)]
pub struct Load {
    stop: Arc<AtomicBool>,
    tallies: Vec<(String, Arc<Tally>)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Runs `one` back to back, recording each outcome under `name`.
    pub fn spawn<F, Fut>(&mut self, name: &str, one: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let tally = Arc::new(Tally::default());
        self.tallies.push((name.to_owned(), tally.clone()));
        let stop = self.stop.clone();
        self.tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tally.record(one().await);
            }
        }));
    }

    /// A tally fed by the caller's own task (h2load runs), stopped with the
    /// rest.
    pub fn external(&mut self, name: &str) -> (Arc<Tally>, Arc<AtomicBool>) {
        let tally = Arc::new(Tally::default());
        self.tallies.push((name.to_owned(), tally.clone()));
        (tally, self.stop.clone())
    }

    /// Adds a task to wait for at [`Load::finish`].
    pub fn task(&mut self, t: tokio::task::JoinHandle<()>) {
        self.tasks.push(t);
    }

    /// Stops every generator and waits for them; returns one line per
    /// generator and every failure.
    pub async fn finish(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("load generator panicked");
        }
        let mut lines = Vec::new();
        let mut failed = Vec::new();
        let mut idle = Vec::new();
        for (name, t) in &self.tallies {
            let f = t.failed.lock().unwrap().clone();
            let ok = t.ok.load(Ordering::Relaxed);
            lines.push(format!(
                "{name}: {ok} ok, {} failed{}",
                f.len(),
                f.first()
                    .map(|f| format!(" (first: {f})"))
                    .unwrap_or_default()
            ));
            if ok == 0 {
                idle.push(name.clone());
            }
            failed.extend(f.into_iter().map(|f| format!("{name}: {f}")));
        }
        LoadReport {
            lines,
            failed,
            idle,
        }
    }
}

/// What the load generators saw.
pub struct LoadReport {
    pub lines: Vec<String>,
    pub failed: Vec<String>,
    /// Generators that got no answer at all.
    pub idle: Vec<String>,
}

impl LoadReport {
    /// Every generator answered, and not one request failed.
    pub fn assert_clean(&self) {
        assert!(self.idle.is_empty(), "sent nothing: {:?}", self.idle);
        assert!(
            self.failed.is_empty(),
            "{} failed requests: {:?}",
            self.failed.len(),
            &self.failed[..self.failed.len().min(10)]
        );
    }
}

/// Runs h2load once (`-c 2 -m 2`); the number of 2xx responses, or its
/// output when any request failed or was not 2xx.
pub fn h2load_once(addr: SocketAddr, h1: bool, n: usize, path: &str) -> Result<usize, String> {
    let mut cmd = std::process::Command::new("h2load");
    cmd.args(["-n", &n.to_string(), "-c", "2", "-m", "2"]);
    if h1 {
        cmd.arg("--h1");
    }
    let out = cmd
        .arg(format!("http://{addr}{path}"))
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

/// True if h2load runs here. Under `CI` its absence fails the test:
/// scripts/setup.sh installs it, and CI must not lose that load silently.
pub fn h2load_available() -> bool {
    let here = std::process::Command::new("h2load")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !here {
        assert!(
            std::env::var_os("CI").is_none(),
            "h2load not installed (Debian nghttp2-client; scripts/setup.sh)"
        );
        eprintln!("h2load not installed (Debian nghttp2-client); its load is skipped");
    }
    here
}

// ------------------------------------------------------------ observing

/// Latencies of the changes a test made, by kind.
#[derive(Default)]
pub struct Latencies(Vec<(String, Duration)>);

impl Latencies {
    pub fn add(&mut self, kind: &str, took: Duration) {
        self.0.push((kind.to_owned(), took));
    }

    /// "kind: n changes, median .., slowest .." per kind, in first-seen
    /// order.
    pub fn summary(&self) -> Vec<String> {
        let mut kinds: Vec<&str> = Vec::new();
        for (k, _) in &self.0 {
            if !kinds.contains(&k.as_str()) {
                kinds.push(k);
            }
        }
        kinds
            .into_iter()
            .map(|k| {
                let mut d: Vec<Duration> = self
                    .0
                    .iter()
                    .filter(|(x, _)| x == k)
                    .map(|(_, d)| *d)
                    .collect();
                d.sort();
                format!(
                    "{k}: {} changes, median {:?}, slowest {:?}",
                    d.len(),
                    d[d.len() / 2],
                    d[d.len() - 1]
                )
            })
            .collect()
    }

    pub fn slowest(&self) -> Duration {
        self.0.iter().map(|(_, d)| *d).max().unwrap_or_default()
    }
}

/// Polls `check` every [`OBSERVE_POLL`] until it holds; returns how long it
/// took. Panics after [`CHANGE_LIMIT`].
pub async fn observe<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < CHANGE_LIMIT,
            "change never took effect: {what}"
        );
        tokio::time::sleep(OBSERVE_POLL).await;
    }
}

/// How a probed route behaved: as before the change, as after it, or
/// neither (a failure, whatever the change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Before,
    After,
}

/// Like [`observe`], for a change whose old and new behaviour are both
/// known: `judge` says which one an answer shows, or why it is neither. A
/// reload must never show a third state: each such answer is pushed on
/// `odd` (the caller fails the test once the load report is printed).
pub async fn observe_switch<F, Fut>(what: &str, odd: &mut Vec<String>, mut judge: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Seen, String>>,
{
    let started = Instant::now();
    loop {
        match judge().await {
            Ok(Seen::After) => return started.elapsed(),
            Ok(Seen::Before) => {}
            Err(e) => odd.push(format!("{what}: neither before nor after: {e}")),
        }
        assert!(
            started.elapsed() < CHANGE_LIMIT,
            "change never took effect: {what}"
        );
        tokio::time::sleep(OBSERVE_POLL).await;
    }
}
