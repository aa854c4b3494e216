//! ingress-nginx's TLS-side settings end to end: the `sluice-ingress`
//! binary in ingress-nginx mode, certificates made with rcgen, curl as the
//! client.
//!
//! * the ConfigMap's `hsts`, `hsts-max-age`, `hsts-include-subdomains` and
//!   `hsts-preload`: the `Strict-Transport-Security` of HTTPS answers for
//!   hosts with TLS, none over plain HTTP.

mod nginx_e2e_support;

use nginx_e2e_support::*;
use serde_json::{Value, json};

/// A `kubernetes.io/tls` Secret for `host`, self-signed by rcgen.
fn tls_secret(name: &str, host: &str) -> Value {
    let c = rcgen::generate_simple_self_signed(vec![host.to_owned()]).unwrap();
    let mut s = secret(
        name,
        &[
            ("tls.crt", c.cert.pem().as_bytes()),
            ("tls.key", c.signing_key.serialize_pem().as_bytes()),
        ],
    );
    s["type"] = json!("kubernetes.io/tls");
    s
}

/// An Ingress of `host` with a `spec.tls` entry using Secret `secret`.
fn tls_ingress(name: &str, host: &str, secret: &str) -> Value {
    let mut i = ingress(name, host, &[("/", "Prefix", "app")], &[]);
    i["spec"]["tls"] = json!([{"hosts": [host], "secretName": secret}]);
    i
}

/// curl over HTTPS to the gateway (certificate not checked: self-signed).
async fn curl_https(s: &Sluice, host: &str, path: &str) -> Reply {
    curl(vec![
        "-k".into(),
        "--resolve".into(),
        format!("{host}:{}:127.0.0.1", s.https),
        format!("https://{host}:{}{path}", s.https),
    ])
    .await
}

/// The `Strict-Transport-Security` of an HTTPS answer under a ConfigMap
/// with `data`.
async fn hsts_with(tag: &str, data: Value) -> Option<String> {
    let app = echo("app").await;
    let dir = temp_dir(tag);
    let mut o = vec![nginx_class()];
    o.extend(service("app", app.addr));
    o.push(tls_secret("site-tls", "site.test"));
    o.push(tls_ingress("site", "site.test", "site-tls"));
    o.push(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "ingress-nginx-controller", "namespace": "ingress-nginx"},
        "data": data
    }));
    write(&dir.join("manifests"), "objects", &o);
    let s = Sluice::start(
        &dir,
        &["--configmap", "ingress-nginx/ingress-nginx-controller"],
    )
    .await;
    let r = curl_https(&s, "site.test", "/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.header("strict-transport-security").map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_hsts_settings_shape_the_header() {
    if !tools_available(&["curl"]) {
        return;
    }
    let v = hsts_with("hsts-default", json!({})).await;
    assert_eq!(v.as_deref(), Some("max-age=31536000; includeSubDomains"));
    let v = hsts_with(
        "hsts-set",
        json!({"hsts-max-age": "100", "hsts-include-subdomains": "false", "hsts-preload": "true"}),
    )
    .await;
    assert_eq!(v.as_deref(), Some("max-age=100; preload"));
    let v = hsts_with("hsts-off", json!({"hsts": "false"})).await;
    assert_eq!(v, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_hsts_over_plain_http() {
    if !tools_available(&["curl"]) {
        return;
    }
    let app = echo("app").await;
    let dir = temp_dir("hsts-http");
    let mut o = vec![nginx_class()];
    o.extend(service("app", app.addr));
    o.push(tls_secret("site-tls", "site.test"));
    let mut i = tls_ingress("site", "site.test", "site-tls");
    i["metadata"]["annotations"]["nginx.ingress.kubernetes.io/ssl-redirect"] = json!("false");
    o.push(i);
    write(&dir.join("manifests"), "objects", &o);
    let s = Sluice::start(&dir, &[]).await;
    let r = s.curl("site.test", "/", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("strict-transport-security"), None);
    let r = curl_https(&s, "site.test", "/").await;
    assert!(r.header("strict-transport-security").is_some());
}
