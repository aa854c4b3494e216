//! Shared fixtures of the ingress-nginx end-to-end tests: the real
//! `sluice-ingress` binary in ingress-nginx mode serving the `nginx`
//! IngressClass (`--controller-class k8s.io/ingress-nginx`, the migration
//! swap) from a `--manifests` directory, echo backends on loopback, and
//! curl as the client.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use serde_json::{Value, json};

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn tools_available(tools: &[&str]) -> bool {
    tools.iter().all(|t| {
        let ok = Command::new(t)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !ok {
            eprintln!("{t} not installed; skipping");
        }
        ok
    })
}

// ------------------------------------------------------------ backends

/// A backend that answers every request with a JSON echo: its name, the
/// method, the request target as received (`uri`), and the headers.
/// `/status/NNN` answers NNN; `/sleep/MS` answers after MS ms; a request
/// body is read and its length echoed (`body_len`).
pub struct Echo {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
}

pub async fn echo(name: &'static str) -> Echo {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let h = h.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    h.fetch_add(1, Ordering::SeqCst);
                    answer(name, req)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Echo { addr, hits }
}

async fn answer(
    name: &'static str,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    let len = body
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    if let Some(ms) = path.strip_prefix("/sleep/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
    }
    let status = path
        .strip_prefix("/status/")
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(200);
    let v = json!({
        "backend": name,
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "headers": headers,
        "body_len": len,
    });
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    Ok(r)
}

// ------------------------------------------------------------ manifests

/// The `nginx` IngressClass of ingress-nginx.
pub fn nginx_class() -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
           "metadata": {"name": "nginx"},
           "spec": {"controller": "k8s.io/ingress-nginx"}})
}

/// A Service `name` (port 80, name `http`) in `demo` with one ready
/// endpoint, the backend.
pub fn service(name: &str, backend: SocketAddr) -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": "demo"},
               "spec": {"ports": [{"name": "http", "port": 80, "targetPort": backend.port()}]}}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": format!("{name}-1"), "namespace": "demo",
                            "labels": {"kubernetes.io/service-name": name}},
               "addressType": "IPv4",
               "ports": [{"name": "http", "port": backend.port()}],
               "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}]}),
    ]
}

/// An Ingress of class nginx in `demo`: `host`, `paths` as (path,
/// pathType, service), and ingress-nginx annotations (names without the
/// prefix).
pub fn ingress(
    name: &str,
    host: &str,
    paths: &[(&str, &str, &str)],
    annotations: &[(&str, &str)],
) -> Value {
    let ann: BTreeMap<String, String> = annotations
        .iter()
        .map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), (*v).to_owned()))
        .collect();
    let paths: Vec<Value> = paths
        .iter()
        .map(|(p, t, svc)| {
            json!({"path": p, "pathType": t,
                   "backend": {"service": {"name": svc, "port": {"number": 80}}}})
        })
        .collect();
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
           "metadata": {"name": name, "namespace": "demo", "annotations": ann},
           "spec": {"ingressClassName": "nginx",
                    "rules": [{"host": host, "http": {"paths": paths}}]}})
}

/// An Opaque Secret in `demo` with `data` (values as text).
pub fn secret(name: &str, data: &[(&str, &[u8])]) -> Value {
    let data: BTreeMap<String, k8s_openapi::ByteString> = data
        .iter()
        .map(|(k, v)| ((*k).to_owned(), k8s_openapi::ByteString(v.to_vec())))
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": name, "namespace": "demo"}, "data": data})
}

/// Writes `objects` as `DIR/NAME.json` (a `List`), atomically.
pub fn write(dir: &Path, name: &str, objects: &[Value]) {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, list.to_string()).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{name}.json"))).unwrap();
}

// ------------------------------------------------------------ the binary

/// `sluice-ingress --manifests` in ingress-nginx mode for the `nginx`
/// class, on ephemeral loopback ports.
pub struct Sluice {
    child: Child,
    pub http: u16,
    pub https: u16,
    pub admin: u16,
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh manifests directory.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-nginx-e2e-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    dir
}

impl Sluice {
    /// Starts the binary on `dir/manifests` with `extra` flags and waits
    /// until it is ready.
    pub async fn start(dir: &Path, extra: &[&str]) -> Self {
        let (http, https, admin) = (free_port(), free_port(), free_port());
        let log = dir.join("sluice.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-ingress"))
            .arg("--manifests")
            .arg(dir.join("manifests"))
            .args(["--controller-class", "k8s.io/ingress-nginx"])
            .args(["--http-addr", &format!("127.0.0.1:{http}")])
            .args(["--https-addr", &format!("127.0.0.1:{https}")])
            .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(
                child.try_wait().unwrap().is_none(),
                "sluice-ingress exited early: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            let out = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
                .arg(format!("http://127.0.0.1:{admin}/readyz"))
                .output()
                .unwrap();
            if out.stdout == b"200" {
                break;
            }
            assert!(Instant::now() < deadline, "not ready in time");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self {
            child,
            http,
            https,
            admin,
            dir: dir.to_owned(),
            log,
        }
    }

    /// The controller's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// curl against the plain-HTTP listener: `host` resolves to it.
    pub async fn curl(&self, host: &str, path: &str, args: &[&str]) -> Reply {
        let mut a: Vec<String> = vec![
            "--resolve".into(),
            format!("{host}:{}:127.0.0.1", self.http),
        ];
        a.extend(args.iter().map(|s| (*s).to_owned()));
        a.push(format!("http://{host}:{}{path}", self.http));
        curl(a).await
    }

    /// Repeats `curl(host, path)` until `done` holds (the manifests are
    /// polled every second), up to 10 s.
    pub async fn until(
        &self,
        host: &str,
        path: &str,
        args: &[&str],
        done: impl Fn(&Reply) -> bool,
    ) -> Reply {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.curl(host, path, args).await;
            if done(&r) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "{host}{path}: still {} {}\n{}",
                r.status,
                r.body,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

// ------------------------------------------------------------ curl

/// An answer as curl saw it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The backend's echo.
    pub fn echo(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not an echo ({e}): {} {}", self.status, self.body))
    }

    /// The request target the backend received.
    pub fn upstream_uri(&self) -> String {
        self.echo()["uri"].as_str().unwrap().to_owned()
    }

    /// A request header the backend received.
    pub fn upstream_header(&self, name: &str) -> Option<String> {
        self.echo()["headers"][name].as_str().map(str::to_owned)
    }
}

/// Runs `curl -si ARGS` (no redirects followed) and parses the answer.
pub async fn curl(args: Vec<String>) -> Reply {
    let shown = args.join(" ");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "-i", "--max-time", "15"])
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {shown}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_reply(&text)
}

/// Parses `curl -i` output (interim 1xx answers skipped).
pub fn parse_reply(text: &str) -> Reply {
    let mut rest = text;
    loop {
        let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        if (100..200).contains(&status) && body.starts_with("HTTP/") {
            rest = body;
            continue;
        }
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        return Reply {
            status,
            headers,
            body: body.to_owned(),
        };
    }
}
