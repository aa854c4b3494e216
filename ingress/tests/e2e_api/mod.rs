//! The `sluice-ingress` binary against the fake API server: a kubeconfig
//! for it, the objects the tests apply, and the process handle. Only
//! `hot_reload.rs` still uses it; the controller's API behaviour (status,
//! election, Events, Secrets, classes, outages) is tested on the real
//! control plane (`cluster_*.rs`, helpers in `cluster_support/`).
#![allow(dead_code)]

use sluice_tests::fixtures;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::{Value, json};
use sluice_tests::fake_api::FakeApiServer;

/// The address the binary publishes in Ingress status.
pub const STATUS_ADDRESS: &str = "192.0.2.10";

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scratch directory under the system temp dir, unique per test.
pub fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-ingress-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The running binary; killed on drop.
pub struct Ingress1 {
    pub child: Child,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub admin: SocketAddr,
    pub log: PathBuf,
}

impl Ingress1 {
    /// Starts the binary on loopback ephemeral ports against `api`, with
    /// status publishing (`STATUS_ADDRESS`) and `extra` flags, and waits
    /// until `/readyz` answers 200.
    pub async fn start(api: &FakeApiServer, dir: &std::path::Path, extra: &[&str]) -> Self {
        Self::start_as(api, dir, "sluice-ingress-test", extra).await
    }

    /// [`Ingress1::start`] with `$POD_NAME` (the election identity) set to
    /// `pod`.
    pub async fn start_as(
        api: &FakeApiServer,
        dir: &std::path::Path,
        pod: &str,
        extra: &[&str],
    ) -> Self {
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
                 contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
                 current-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
                api.url()
            ),
        )
        .unwrap();
        let port = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let (http, https, admin) = (port(free_port()), port(free_port()), port(free_port()));
        let log = dir.join(format!("sluice-ingress-{}.log", admin.port()));
        let child = Command::new(env!("CARGO_BIN_EXE_sluice-ingress"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--http-addr", &http.to_string()])
            .args(["--https-addr", &https.to_string()])
            .args(["--admin-addr", &admin.to_string()])
            .args(["--publish-status-address", STATUS_ADDRESS])
            .args(extra)
            .env("POD_NAME", pod)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut me = Self {
            child,
            http,
            https,
            admin,
            log,
        };
        me.wait_ready().await;
        me
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("sluice-ingress exited early ({st}): {}", self.log_text());
            }
            if self.admin_get("/readyz").await.0 == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not ready in time: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET on the admin listener: (status, body); (0, "") when it does not
    /// answer.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        use http_body_util::BodyExt;
        let Ok(tcp) = tokio::net::TcpStream::connect(self.admin).await else {
            return (0, String::new());
        };
        let io = hyper_util::rt::TokioIo::new(tcp);
        let Ok((mut send, conn)) = hyper::client::conn::http1::handshake(io).await else {
            return (0, String::new());
        };
        tokio::spawn(conn);
        let req = http::Request::get(path)
            .header("host", "admin")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let Ok(resp) = send.send_request(req).await else {
            return (0, String::new());
        };
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// Sends SIGTERM and waits (up to `limit`) for a clean exit.
    pub async fn terminate(mut self, limit: Duration) {
        let pid = self.child.id().to_string();
        let st = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(st.success());
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "exit {st}: {}", self.log_text());
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no exit after SIGTERM: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Ingress1 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------ objects

pub fn class() -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "sluice"}, "spec": {"controller": "sluice.dev/ingress-controller"}
    })
}

/// Service `name` with port 80 named `http`.
pub fn service(name: &str) -> Value {
    // No clusterIP: the fake API server allocates one.
    fixtures::service(
        "default",
        name,
        "",
        json!({"spec": {"clusterIP": null, "clusterIPs": null, "type": null}}),
    )
}

/// The EndpointSlice of Service `svc`: 127.0.0.1 on `port` (the slice
/// port is the target port).
pub fn slice(svc: &str, port: u16) -> Value {
    fixtures::endpoint_slice(
        "default",
        &format!("{svc}-1"),
        svc,
        fixtures::ready_endpoints(&["127.0.0.1"]),
        json!({"ports": [{"name": "http", "port": port}]}),
    )
}

/// A Prefix (or Exact) path to `svc`'s port `http`.
pub fn path(p: &str, ty: &str, svc: &str) -> Value {
    json!({"path": p, "pathType": ty,
           "backend": {"service": {"name": svc, "port": {"name": "http"}}}})
}

/// An Ingress of class `sluice` created at `created`.
pub fn ingress(name: &str, created: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["ingressClassName"] = json!("sluice");
    fixtures::ingress(
        "default",
        name,
        spec,
        json!({"metadata": {"creationTimestamp": created}}),
    )
}

/// A `kubernetes.io/tls` Secret with the given PEM bytes.
pub fn tls_secret(name: &str, chain_pem: &str, key_pem: &str) -> Value {
    let mut secret = Secret::default();
    secret.metadata.name = Some(name.into());
    secret.metadata.namespace = Some("default".into());
    secret.type_ = Some("kubernetes.io/tls".into());
    secret.data = Some(
        [
            (
                "tls.crt".to_owned(),
                ByteString(chain_pem.as_bytes().to_vec()),
            ),
            (
                "tls.key".to_owned(),
                ByteString(key_pem.as_bytes().to_vec()),
            ),
        ]
        .into(),
    );
    let mut v = serde_json::to_value(&secret).unwrap();
    v["apiVersion"] = json!("v1");
    v["kind"] = json!("Secret");
    v
}

/// `status.loadBalancer.ingress[].ip` of an Ingress.
pub fn lb_ips(api: &FakeApiServer, name: &str) -> Vec<String> {
    let ing: Ingress = api.get(Some("default"), name).unwrap();
    ing.status
        .and_then(|s| s.load_balancer)
        .and_then(|lb| lb.ingress)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| e.ip)
        .collect()
}

/// Warning Events about Ingress `name` with `reason`, as their notes.
pub fn warnings(api: &FakeApiServer, name: &str, reason: &str) -> Vec<String> {
    api.events()
        .into_iter()
        .filter(|e| {
            e["type"] == "Warning"
                && e["reason"] == reason
                && (e["regarding"]["name"] == name || e["involvedObject"]["name"] == name)
        })
        .map(|e| {
            e["note"]
                .as_str()
                .or(e["message"].as_str())
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}
