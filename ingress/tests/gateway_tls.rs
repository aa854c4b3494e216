//! TLS at the gateway over real sockets: SNI and wildcard certificate
//! selection, the default certificate, a broken Secret keeping the old
//! certificate, ALPN h2, HTTP → HTTPS 308 and HSTS, and the real `curl`.

mod gateway_support;

use std::process::Command;

use http::StatusCode;
use serde_json::json;
use sluice_ingress::gateway::{CertError, CertStore, Routing, select_certificate};
use sluice_ingress::routes::build::SSL_REDIRECT_ANNOTATION;

use gateway_support::*;

struct Fixture {
    gw: TestGateway,
    ca: TestCa,
    exact: Leaf,
    wild: Leaf,
    _web: Backend,
    routing: Routing,
}

/// `a.example.com` (own certificate), `*.example.com` (wildcard
/// certificate), `plain.example.com` with TLS but `ssl-redirect: false`,
/// and a host-less rule.
async fn setup() -> Fixture {
    let web = Backend::start("web").await;
    let ca = TestCa::new();
    let exact = ca.leaf(&["a.example.com"]);
    let wild = ca.leaf(&["*.example.com"]);
    let secure = ingress(
        "ns",
        "secure",
        json!({}),
        json!({
            "tls": [
                { "hosts": ["a.example.com"], "secretName": "a-cert" },
                { "hosts": ["*.example.com"], "secretName": "wild-cert" },
            ],
            "rules": [
                rule(Some("a.example.com"), &[("/", "web")]),
                rule(Some("*.example.com"), &[("/", "web")]),
            ],
        }),
    );
    let relaxed = ingress(
        "ns",
        "relaxed",
        json!({ SSL_REDIRECT_ANNOTATION: "false" }),
        json!({
            "tls": [{ "hosts": ["plain.example.com"], "secretName": "wild-cert" }],
            "rules": [ rule(Some("plain.example.com"), &[("/", "web")]), rule(None, &[("/", "web")]) ],
        }),
    );
    let mut certs = CertStore::new();
    certs
        .load_pem(
            secret("a-cert"),
            exact.chain_pem.as_bytes(),
            exact.key_pem.as_bytes(),
        )
        .unwrap();
    certs
        .load_pem(
            secret("wild-cert"),
            wild.chain_pem.as_bytes(),
            wild.key_pem.as_bytes(),
        )
        .unwrap();
    let r = routing(
        table(&[secure, relaxed]),
        endpoints(&[("web", vec![web.addr])]),
        certs,
    );
    let gw = TestGateway::start(test_config(), r.clone()).await;
    Fixture {
        gw,
        ca,
        exact,
        wild,
        _web: web,
        routing: r,
    }
}

#[tokio::test]
async fn sni_picks_exact_then_wildcard_then_default() {
    let f = setup().await;
    let addr = f.gw.https;
    let (_, leaf) = tls_connect(addr, Some("a.example.com"), &[], Some(&f.ca))
        .await
        .unwrap();
    assert_eq!(leaf, f.exact.der);
    let (_, leaf) = tls_connect(addr, Some("b.example.com"), &[], Some(&f.ca))
        .await
        .unwrap();
    assert_eq!(leaf, f.wild.der);
    let (_, leaf) = tls_connect(addr, Some("B.Example.COM"), &[], None)
        .await
        .unwrap();
    assert_eq!(leaf, f.wild.der);
    // A wildcard covers one label only; unknown names and no SNI get the
    // self-signed default, which the test CA does not vouch for.
    for sni in [Some("c.d.example.com"), Some("unknown.test"), None] {
        let (_, leaf) = tls_connect(addr, sni, &[], None).await.unwrap();
        assert_ne!(leaf, f.exact.der, "{sni:?}");
        assert_ne!(leaf, f.wild.der, "{sni:?}");
    }
    assert!(
        tls_connect(addr, Some("unknown.test"), &[], Some(&f.ca))
            .await
            .is_err()
    );

    // The pure selection agrees.
    let r = &f.routing;
    let pick = |sni| select_certificate(&r.table, &r.certs, sni).map(|c| c.cert[0].clone());
    assert_eq!(pick(Some("a.example.com")), Some(f.exact.der.clone()));
    assert_eq!(pick(Some("x.example.com")), Some(f.wild.der.clone()));
    assert_eq!(pick(Some("example.com")), None);
    assert_eq!(pick(None), None);

    let m = f.gw.metrics_text();
    assert!(
        m.contains("sluice_ingress_tls_handshakes_total{result=\"ok\"}"),
        "{m}"
    );
    f.gw.shutdown().await;
}

#[tokio::test]
async fn sni_picks_certificate_host_picks_route() {
    let f = setup().await;
    // SNI b.example.com, Host a.example.com: wildcard certificate, and the
    // request is routed by Host.
    let (tls, leaf) = tls_connect(f.gw.https, Some("b.example.com"), &[b"http/1.1"], None)
        .await
        .unwrap();
    assert_eq!(leaf, f.wild.der);
    let (s, h, b, _) = tls_request(tls, "a.example.com", "/x").await;
    assert_eq!(s, StatusCode::OK);
    assert!(h.contains_key("strict-transport-security"));
    let seen = json_of(&b);
    assert_eq!(seen["headers"]["host"], "a.example.com");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    f.gw.shutdown().await;
}

#[tokio::test]
async fn alpn_h2_over_tls() {
    let f = setup().await;
    let (tls, _) = tls_connect(
        f.gw.https,
        Some("a.example.com"),
        &[b"h2", b"http/1.1"],
        Some(&f.ca),
    )
    .await
    .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (s, h, b, v) = tls_request(tls, "a.example.com", "/h2").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, http::Version::HTTP_2);
    assert_eq!(
        h["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    assert_eq!(json_of(&b)["version"], "HTTP/1.1");

    let (tls, _) = tls_connect(
        f.gw.https,
        Some("a.example.com"),
        &[b"http/1.1"],
        Some(&f.ca),
    )
    .await
    .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (s, _, _, v) = tls_request(tls, "a.example.com", "/h1").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, http::Version::HTTP_11);
    f.gw.shutdown().await;
}

#[tokio::test]
async fn http_redirects_to_https_and_hsts_only_for_tls_hosts() {
    let f = setup().await;
    let c = h1_client();
    let (s, h, _) = get(&c, f.gw.http, "A.example.com:80", "/p/../q?x=1").await;
    assert_eq!(s, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(h["location"], "https://a.example.com/q?x=1");
    let (s, h, _) = get(&c, f.gw.http, "z.example.com", "/").await;
    assert_eq!(s, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(h["location"], "https://z.example.com/");
    // Opted out: served over plain HTTP, no HSTS on plain HTTP.
    let (s, h, _) = get(&c, f.gw.http, "plain.example.com", "/").await;
    assert_eq!(s, StatusCode::OK);
    assert!(!h.contains_key("strict-transport-security"));
    // Host-less rule: no TLS, no redirect, no HSTS even over HTTPS.
    let (s, _, _) = get(&c, f.gw.http, "other.test", "/").await;
    assert_eq!(s, StatusCode::OK);
    let (tls, _) = tls_connect(f.gw.https, Some("other.test"), &[], None)
        .await
        .unwrap();
    let (s, h, _, _) = tls_request(tls, "other.test", "/").await;
    assert_eq!(s, StatusCode::OK);
    assert!(!h.contains_key("strict-transport-security"));
    f.gw.shutdown().await;
}

#[tokio::test]
async fn broken_secret_keeps_previous_certificate() {
    let f = setup().await;
    let replacement = f.ca.leaf(&["a.example.com"]);
    let other = f.ca.leaf(&["a.example.com"]);
    let mut certs = (*f.routing.certs).clone();
    // Key of another certificate; garbage; a key without a certificate.
    let e = certs.load_pem(
        secret("a-cert"),
        replacement.chain_pem.as_bytes(),
        other.key_pem.as_bytes(),
    );
    assert!(matches!(e, Err(CertError::KeyMismatch)), "{e:?}");
    let e = certs.load_pem(secret("a-cert"), b"not pem", other.key_pem.as_bytes());
    assert!(matches!(e, Err(CertError::NoCertificate)), "{e:?}");
    let e = certs.load_pem(secret("a-cert"), replacement.chain_pem.as_bytes(), b"");
    assert!(matches!(e, Err(CertError::KeyPem(_))), "{e:?}");
    f.gw.gateway.update(Routing {
        certs: std::sync::Arc::new(certs.clone()),
        ..f.routing.clone()
    });
    let (_, leaf) = tls_connect(f.gw.https, Some("a.example.com"), &[], Some(&f.ca))
        .await
        .unwrap();
    assert_eq!(leaf, f.exact.der, "old certificate still served");

    // A valid update takes effect on the next handshake.
    certs
        .load_pem(
            secret("a-cert"),
            replacement.chain_pem.as_bytes(),
            replacement.key_pem.as_bytes(),
        )
        .unwrap();
    f.gw.gateway.update(Routing {
        certs: std::sync::Arc::new(certs),
        ..f.routing.clone()
    });
    let (_, leaf) = tls_connect(f.gw.https, Some("a.example.com"), &[], Some(&f.ca))
        .await
        .unwrap();
    assert_eq!(leaf, replacement.der);
    f.gw.shutdown().await;
}

fn curl_available() -> bool {
    Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs curl; returns (http_code, http_version, body).
async fn curl(args: Vec<String>) -> (String, String, String) {
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "-w",
                "\n%{http_code} %{http_version}",
            ])
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, tail) = text.rsplit_once('\n').unwrap();
    let (code, version) = tail.split_once(' ').unwrap();
    (code.to_owned(), version.to_owned(), body.to_owned())
}

#[tokio::test]
async fn end_to_end_with_curl() {
    if !curl_available() {
        eprintln!("curl not installed; skipping");
        return;
    }
    let f = setup().await;
    let dir = std::env::temp_dir().join(format!("sluice-gw-curl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &f.ca.cert_pem).unwrap();
    let (http, https) = (f.gw.http.port(), f.gw.https.port());
    let resolve = |host: &str, port: u16| format!("{host}:{port}:127.0.0.1");

    // HTTP/1.1, plain.
    let (code, v, body) = curl(vec![
        "--http1.1".into(),
        "--resolve".into(),
        resolve("plain.example.com", http),
        format!("http://plain.example.com:{http}/curl?x=1"),
    ])
    .await;
    assert_eq!((code.as_str(), v.as_str()), ("200", "1.1"), "{body}");
    assert_eq!(json_of(&body.into())["uri"], "/curl?x=1");

    // h2c prior knowledge.
    let (code, v, _) = curl(vec![
        "--http2-prior-knowledge".into(),
        "--resolve".into(),
        resolve("plain.example.com", http),
        format!("http://plain.example.com:{http}/"),
    ])
    .await;
    assert_eq!((code.as_str(), v.as_str()), ("200", "2"));

    // Redirect to HTTPS (not followed).
    let (code, _, _) = curl(vec![
        "--resolve".into(),
        resolve("a.example.com", http),
        format!("http://a.example.com:{http}/"),
    ])
    .await;
    assert_eq!(code, "308");

    // TLS, verified against the test CA, HTTP/1.1 and HTTP/2 via ALPN,
    // exact and wildcard certificates.
    for (host, flag, want) in [
        ("a.example.com", "--http1.1", "1.1"),
        ("a.example.com", "--http2", "2"),
        ("w.example.com", "--http2", "2"),
    ] {
        let (code, v, body) = curl(vec![
            flag.into(),
            "--cacert".into(),
            ca_file.display().to_string(),
            "--resolve".into(),
            resolve(host, https),
            format!("https://{host}:{https}/tls"),
        ])
        .await;
        assert_eq!(
            (code.as_str(), v.as_str()),
            ("200", want),
            "{host} {flag}: {body}"
        );
        assert_eq!(
            json_of(&body.into())["headers"]["host"],
            format!("{host}:{https}")
        );
    }

    // The default certificate is not trusted by the CA. (curl runs on a
    // blocking thread so the gateway keeps running meanwhile.)
    let args: Vec<String> = vec![
        "-sS".into(),
        "--max-time".into(),
        "10".into(),
        "--cacert".into(),
        ca_file.display().to_string(),
        "--resolve".into(),
        resolve("unknown.test", https),
        format!("https://unknown.test:{https}/"),
    ];
    let out = tokio::task::spawn_blocking(move || Command::new("curl").args(&args).output())
        .await
        .unwrap()
        .unwrap();
    assert!(!out.status.success());
    let _ = std::fs::remove_dir_all(&dir);
    f.gw.shutdown().await;
}
