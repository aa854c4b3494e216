//! The `sluice-ingress` binary on the real control plane
//! (`sluice_tests::cluster`): the process handle, the objects the suites
//! apply (server-side, typed, no discovery round per apply), and what they
//! read back through the API server (Ingress status, Leases, Events) and
//! through the gateway's sockets.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

/// The address a gateway publishes in Ingress status unless a test says
/// otherwise.
pub const STATUS_ADDRESS: &str = "192.0.2.10";

/// How often the suites poll: fast enough to measure, slow enough not to
/// load two shared cores.
pub const POLL: Duration = Duration::from_millis(150);

/// The Lease the binary elects with (its `--election-id` default).
pub const LEASE: &str = "sluice-ingress-leader";

/// A scratch directory for logs, unique per test and process.
pub fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sluice-ingress-cluster-{test}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The `sluice-ingress` binary, on loopback ephemeral ports; SIGKILLed when
/// dropped (and when the test process dies: it is forked by the cluster's
/// launcher thread).
pub struct Gateway {
    child: Child,
    /// Plain HTTP listener.
    pub http: SocketAddr,
    /// HTTPS listener.
    pub https: SocketAddr,
    /// Admin listener (/readyz, /metrics).
    pub admin: SocketAddr,
    /// Its stderr.
    pub log: PathBuf,
    /// `$POD_NAME`: its election identity.
    pub pod: String,
}

impl Gateway {
    /// Starts the binary with `kubeconfig`, `$POD_NAME` = `pod`,
    /// `$POD_NAMESPACE` = `namespace` (the election namespace) and `args`,
    /// and waits until `/readyz` answers 200 (the first snapshot is served).
    pub async fn start(
        kubeconfig: &Path,
        dir: &Path,
        namespace: &str,
        pod: &str,
        args: &[String],
    ) -> Self {
        let g = Self::spawn(kubeconfig, dir, namespace, pod, args);
        g.wait_ready().await;
        g
    }

    /// Starts the binary without waiting for it.
    pub fn spawn(
        kubeconfig: &Path,
        dir: &Path,
        namespace: &str,
        pod: &str,
        args: &[String],
    ) -> Self {
        let (http, https, admin) = (free_addr(), free_addr(), free_addr());
        let log = dir.join(format!("{pod}-{}.log", admin.port()));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice-ingress"));
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--http-addr", &http.to_string()])
            .args(["--https-addr", &https.to_string()])
            .args(["--admin-addr", &admin.to_string()])
            .args(args)
            .env("POD_NAME", pod)
            .env("POD_NAMESPACE", namespace)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = sluice_tests::cluster::process::spawn(cmd).expect("start sluice-ingress");
        Self {
            child,
            http,
            https,
            admin,
            log,
            pod: pod.to_owned(),
        }
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if admin_get(self.admin, "/readyz").await.0 == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready in time: {}",
                self.pod,
                self.log_text()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `sig` (`TERM`, `STOP`, `CONT`, ...) to the process.
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(st.success(), "kill -{sig} {}", self.pid());
    }

    /// SIGTERM, then waits (up to `limit`) for a clean exit; returns the
    /// log.
    pub async fn terminate(mut self, limit: Duration) -> String {
        self.signal("TERM");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                let log = self.log_text();
                assert!(st.success(), "{} exit {st}: {log}", self.pod);
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit after SIGTERM: {}",
                self.pod,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL (a crash: nothing is cleaned up), reaped.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The flags every suite passes: its own controller class (tests share one
/// cluster, so each handles only its own IngressClass and never writes
/// another test's status) and the status address.
pub fn args(controller: &str, status: &str, extra: &[&str]) -> Vec<String> {
    let mut a = vec![
        "--controller-class".to_owned(),
        controller.to_owned(),
        "--publish-status-address".to_owned(),
        status.to_owned(),
    ];
    a.extend(extra.iter().map(|s| (*s).to_owned()));
    a
}

// ------------------------------------------------------------ HTTP

/// A plain GET on a fresh connection: (status, body). (0, error) when the
/// exchange failed.
pub async fn http_get(addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let once = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let io = hyper_util::rt::TokioIo::new(tcp);
        let (mut send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = http::Request::get(path)
            .header("host", host)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    match tokio::time::timeout(Duration::from_secs(5), once).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => (0, e),
        Err(_) => (0, "timed out".into()),
    }
}

/// GET on the admin listener.
pub async fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_get(addr, "admin", path).await
}

/// The pod that answered a request routed to the echo image (its JSON
/// body's `pod`), or None for anything else.
pub async fn echo_pod(addr: SocketAddr, host: &str, path: &str) -> Option<String> {
    let (status, body) = http_get(addr, host, path).await;
    if status != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&body).ok()?;
    v["pod"].as_str().map(str::to_owned)
}

/// The set of pods answering `n` sequential requests (round-robin first
/// choice: an idle Service is visited in turn).
pub async fn pods_answering(addr: SocketAddr, host: &str, n: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        if let Some(p) = echo_pod(addr, host, "/").await {
            seen.insert(p);
        }
    }
    seen
}

// ------------------------------------------------------------ waiting

/// Polls `check` every [`POLL`] until it returns Some; panics after
/// `limit` with `what` and `detail()`. Returns the value and how long it
/// took.
pub async fn wait_for<T, F, Fut>(
    what: &str,
    limit: Duration,
    mut check: F,
    detail: impl Fn() -> String,
) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return (v, start.elapsed());
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}\n{}",
            detail()
        );
        tokio::time::sleep(POLL).await;
    }
}

/// [`wait_for`] for a condition.
pub async fn wait_until<F, Fut>(
    what: &str,
    limit: Duration,
    mut check: F,
    detail: impl Fn() -> String,
) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_for(
        what,
        limit,
        || {
            let f = check();
            async move { f.await.then_some(()) }
        },
        detail,
    )
    .await
    .1
}

// ------------------------------------------------------------ objects

/// Server-side applies `obj` (JSON with apiVersion, kind, metadata) as the
/// field manager `sluice-tests`, forcing ownership. Only the kinds the
/// suites use are known (no discovery round trip per apply).
pub async fn apply(client: &kube::Client, obj: &Value) -> Result<(), kube::Error> {
    let kind = obj["kind"].as_str().expect("kind");
    let (group, version, plural, namespaced) = match kind {
        "Namespace" => ("", "v1", "namespaces", false),
        "Service" => ("", "v1", "services", true),
        "Secret" => ("", "v1", "secrets", true),
        "Pod" => ("", "v1", "pods", true),
        "Deployment" => ("apps", "v1", "deployments", true),
        "Ingress" => ("networking.k8s.io", "v1", "ingresses", true),
        "IngressClass" => ("networking.k8s.io", "v1", "ingressclasses", false),
        other => panic!("apply: unknown kind {other}"),
    };
    let ar = ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: obj["apiVersion"].as_str().unwrap().into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    let name = obj["metadata"]["name"].as_str().expect("name");
    let api: Api<DynamicObject> = if namespaced {
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or("default");
        Api::namespaced_with(client.clone(), ns, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    };
    let params = PatchParams::apply("sluice-tests").force();
    api.patch(name, &params, &Patch::Apply(obj))
        .await
        .map(|_| ())
}

/// [`apply`], panicking on failure.
pub async fn must_apply(client: &kube::Client, obj: &Value) {
    if let Err(e) = apply(client, obj).await {
        panic!("applying {} {}: {e}", obj["kind"], obj["metadata"]["name"]);
    }
}

pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// An IngressClass `name` of `controller`, optionally the cluster default.
pub fn ingress_class(name: &str, controller: &str, default: bool) -> Value {
    let mut c = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": name}, "spec": {"controller": controller}
    });
    if default {
        c["metadata"]["annotations"] =
            json!({"ingressclass.kubernetes.io/is-default-class": "true"});
    }
    c
}

/// Deployment and Service `name` of the HTTP echo image (port `http`,
/// 8080), `replicas` pods pinned to `node`, ready when `/` answers.
pub fn echo_app(ns: &str, name: &str, node: &str, replicas: u32) -> [Value; 2] {
    let deploy = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "nodeSelector": {"kubernetes.io/hostname": node},
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
    });
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": {"app": name},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    });
    [deploy, svc]
}

/// A bare Pod standing for a replica of the controller (labels of the
/// chart's Deployment), running `sleep` on `node`: what
/// `--update-status-on-shutdown` looks for before it takes status away.
pub fn replica_pod(ns: &str, name: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {
            "app.kubernetes.io/name": "sluice-ingress",
            "app.kubernetes.io/instance": "sluice",
            "pod-template-hash": name,
        }},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "nodeSelector": {"kubernetes.io/hostname": node},
            "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]
        }
    })
}

/// A Prefix path `p` to Service `svc`'s port `http`.
pub fn path(p: &str, svc: &str) -> Value {
    json!({"path": p, "pathType": "Prefix",
           "backend": {"service": {"name": svc, "port": {"name": "http"}}}})
}

/// Ingress `name` of `class` (None: no class) routing `host` `/` to `svc`.
pub fn ingress(ns: &str, name: &str, class: Option<&str>, host: &str, svc: &str) -> Value {
    let mut spec = json!({"rules": [{"host": host, "http": {"paths": [path("/", svc)]}}]});
    if let Some(c) = class {
        spec["ingressClassName"] = json!(c);
    }
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec
    })
}

/// A `kubernetes.io/tls` Secret with these PEM bytes.
pub fn tls_secret(ns: &str, name: &str, chain_pem: &str, key_pem: &str) -> Value {
    use k8s_openapi::ByteString;
    let data: std::collections::BTreeMap<String, ByteString> = [
        (
            "tls.crt".to_owned(),
            ByteString(chain_pem.as_bytes().to_vec()),
        ),
        (
            "tls.key".to_owned(),
            ByteString(key_pem.as_bytes().to_vec()),
        ),
    ]
    .into();
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": ns},
        "data": serde_json::to_value(data).unwrap()
    })
}

// ------------------------------------------------------------ reading back

/// `status.loadBalancer.ingress[].ip` of Ingress `ns/name` (empty if it has
/// none or does not exist).
pub async fn lb_ips(client: &kube::Client, ns: &str, name: &str) -> Vec<String> {
    let api: Api<Ingress> = Api::namespaced(client.clone(), ns);
    let Ok(Some(ing)) = api.get_opt(name).await else {
        return Vec::new();
    };
    ing.status
        .and_then(|s| s.load_balancer)
        .and_then(|lb| lb.ingress)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| e.ip)
        .collect()
}

/// The holder of Lease `ns/name` (None: no Lease, or released).
pub async fn lease_holder(client: &kube::Client, ns: &str, name: &str) -> Option<String> {
    let api: Api<Lease> = Api::namespaced(client.clone(), ns);
    api.get_opt(name)
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

/// The Lease itself.
pub async fn lease(client: &kube::Client, ns: &str, name: &str) -> Option<Lease> {
    let api: Api<Lease> = Api::namespaced(client.clone(), ns);
    api.get_opt(name).await.ok().flatten()
}

/// Warning Events (events.k8s.io/v1, as `kubectl events` reads them) about
/// Ingress `ns/name` with `reason`: (note, series count, reporting
/// instance) of each.
pub async fn warnings(
    client: &kube::Client,
    ns: &str,
    name: &str,
    reason: &str,
) -> Vec<(String, i32, String)> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let Ok(list) = api.list(&ListParams::default()).await else {
        return Vec::new();
    };
    list.items
        .into_iter()
        .filter(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("Ingress")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .map(|e| {
            (
                e.note.unwrap_or_default(),
                e.series.map_or(1, |s| s.count),
                e.reporting_instance.unwrap_or_default(),
            )
        })
        .collect()
}
