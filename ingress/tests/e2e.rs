//! End to end: the real `sluice-ingress` binary with `--manifests` on
//! loopback ephemeral ports, two tiny backends on 127.0.0.1, and real curl
//! requests (host and path routing, 404, TLS with SNI, HTTP/2 over TLS and
//! h2c, a manifest edit that changes routing without dropping an in-flight
//! request).

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use serde_json::json;

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A backend answering `NAME PATH`; `/slow` answers after 1.5 s.
async fn backend(name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let path = req.uri().path().to_owned();
                    async move {
                        if path == "/slow" {
                            tokio::time::sleep(Duration::from_millis(1500)).await;
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                            "{name} {path}"
                        )))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn curl_available() -> bool {
    Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs curl; returns (http_code, body).
async fn curl(args: Vec<String>) -> (String, String) {
    let shown = args.join(" ");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
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
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.to_owned(), body.to_owned())
}

async fn get(host: &str, port: u16, path: &str) -> (String, String) {
    curl(vec![
        "--resolve".into(),
        format!("{host}:{port}:127.0.0.1"),
        format!("http://{host}:{port}{path}"),
    ])
    .await
}

fn service_and_slice(name: &str, backend: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: demo}}\n\
         spec: {{ports: [{{name: http, port: 80, targetPort: {p}}}]}}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: {name}-1, namespace: demo, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nports: [{{name: http, port: {p}}}]\n\
         endpoints: [{{addresses: [127.0.0.1], conditions: {{ready: true}}}}]\n",
        p = backend.port()
    )
}

/// The web Ingress: `root` serves `www.test/`, svc-b serves `/b` (by port
/// number), svc-a by port name.
fn web_ingress(root: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: web, namespace: demo}}\n\
         spec:\n  ingressClassName: sluice\n  rules:\n  - host: www.test\n    http:\n      paths:\n\
         \x20     - {{path: /, pathType: Prefix, backend: {{service: {{name: {root}, port: {{name: http}}}}}}}}\n\
         \x20     - {{path: /b, pathType: Prefix, backend: {{service: {{name: svc-b, port: {{number: 80}}}}}}}}\n"
    )
}

fn write_manifests(dir: &Path, a: SocketAddr, b: SocketAddr, leaf: &(String, String)) {
    std::fs::write(
        dir.join("class.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: sluice}\n\
         spec: {controller: sluice.dev/ingress-controller}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("services.yaml"),
        format!(
            "{}---\n{}",
            service_and_slice("svc-a", a),
            service_and_slice("svc-b", b)
        ),
    )
    .unwrap();
    std::fs::write(dir.join("web.yaml"), web_ingress("svc-a")).unwrap();
    // Another controller's Ingress for the same host: ignored.
    std::fs::write(
        dir.join("other.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: other, namespace: demo}\n\
         spec:\n  ingressClassName: nginx\n  rules:\n  - host: other.test\n    http:\n      paths:\n\
         \x20     - {path: /, pathType: Prefix, backend: {service: {name: svc-a, port: {number: 80}}}}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("secure.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: secure, namespace: demo}\n\
         spec:\n  ingressClassName: sluice\n  tls: [{hosts: [secure.test], secretName: secure-cert}]\n\
         \x20 rules:\n  - host: secure.test\n    http:\n      paths:\n\
         \x20     - {path: /, pathType: Prefix, backend: {service: {name: svc-b, port: {number: 80}}}}\n",
    )
    .unwrap();
    let mut secret = Secret::default();
    secret.metadata.name = Some("secure-cert".into());
    secret.metadata.namespace = Some("demo".into());
    secret.type_ = Some("kubernetes.io/tls".into());
    secret.data = Some(
        [
            (
                "tls.crt".to_owned(),
                ByteString(leaf.0.clone().into_bytes()),
            ),
            (
                "tls.key".to_owned(),
                ByteString(leaf.1.clone().into_bytes()),
            ),
        ]
        .into(),
    );
    let mut v = serde_json::to_value(&secret).unwrap();
    v["apiVersion"] = json!("v1");
    v["kind"] = json!("Secret");
    std::fs::write(dir.join("secret.json"), v.to_string()).unwrap();
}

/// A CA and a leaf for `secure.test` signed by it: (ca pem, (chain, key)).
fn certificates() -> (String, (String, String)) {
    let ca = sluice_tests::fixtures::TestCa::new("Sluice e2e CA");
    let leaf = ca.leaf(&["secure.test"]);
    (ca.cert_pem, (leaf.chain_pem, leaf.key_pem))
}

async fn wait_ready(admin: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "sluice-ingress exited early"
        );
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://127.0.0.1:{admin}/readyz"))
            .output()
            .unwrap();
        if out.stdout == b"200" {
            return;
        }
        assert!(Instant::now() < deadline, "not ready in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-ingress-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_routes_from_manifests_with_curl() {
    if !curl_available() {
        eprintln!("curl not installed; skipping");
        return;
    }
    let (a, b) = (backend("backend-a").await, backend("backend-b").await);
    let dir = temp_dir();
    let manifests = dir.join("manifests");
    let (ca, leaf) = certificates();
    std::fs::write(dir.join("ca.pem"), &ca).unwrap();
    write_manifests(&manifests, a, b, &leaf);
    let (http, https, admin) = (free_port(), free_port(), free_port());
    let mut child = Proc(
        Command::new(env!("CARGO_BIN_EXE_sluice-ingress"))
            .arg("--manifests")
            .arg(&manifests)
            .args(["--http-addr", &format!("127.0.0.1:{http}")])
            .args(["--https-addr", &format!("127.0.0.1:{https}")])
            .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_ready(admin, &mut child.0).await;

    // Host and path routing, by port name and number.
    assert_eq!(
        get("www.test", http, "/x").await,
        ("200".into(), "backend-a /x".into())
    );
    assert_eq!(
        get("www.test", http, "/b/c").await,
        ("200".into(), "backend-b /b/c".into())
    );
    // No route: unknown host, and the other controller's host.
    assert_eq!(get("nope.test", http, "/").await.0, "404");
    assert_eq!(get("other.test", http, "/").await.0, "404");

    // TLS with SNI and the Secret's certificate.
    let (code, body) = curl(vec![
        "--resolve".into(),
        format!("secure.test:{https}:127.0.0.1"),
        "--cacert".into(),
        dir.join("ca.pem").display().to_string(),
        format!("https://secure.test:{https}/tls"),
    ])
    .await;
    assert_eq!((code.as_str(), body.as_str()), ("200", "backend-b /tls"));

    // HTTP/2: over TLS by ALPN, and cleartext with prior knowledge (the
    // later -w replaces the helper's, adding the protocol version).
    let (code, body) = curl(vec![
        "--http2".into(),
        "-w".into(),
        "\n%{http_code} %{http_version}".into(),
        "--resolve".into(),
        format!("secure.test:{https}:127.0.0.1"),
        "--cacert".into(),
        dir.join("ca.pem").display().to_string(),
        format!("https://secure.test:{https}/h2"),
    ])
    .await;
    assert_eq!((code.as_str(), body.as_str()), ("200 2", "backend-b /h2"));
    let (code, body) = curl(vec![
        "--http2-prior-knowledge".into(),
        "-w".into(),
        "\n%{http_code} %{http_version}".into(),
        "--resolve".into(),
        format!("www.test:{http}:127.0.0.1"),
        format!("http://www.test:{http}/h2c"),
    ])
    .await;
    assert_eq!((code.as_str(), body.as_str()), ("200 2", "backend-a /h2c"));

    // A slow request in flight while the manifest changes www.test/ to
    // svc-b: it completes on backend-a; new requests go to backend-b.
    let slow = tokio::spawn(get("www.test", http, "/slow"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(manifests.join("web.yaml"), web_ingress("svc-b")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (code, body) = get("www.test", http, "/x").await;
        assert_eq!(code, "200");
        if body == "backend-b /x" {
            break;
        }
        assert!(Instant::now() < deadline, "routing did not change");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        slow.await.unwrap(),
        ("200".into(), "backend-a /slow".into())
    );

    // Metrics and health.
    let out = Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{admin}/metrics")])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("sluice_ingress_requests_total"));
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}
