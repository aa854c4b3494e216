//! TLS against hostile clients, over real sockets: a Host the SNI-chosen
//! certificate does not cover (421 Misdirected Request), and the
//! protocol versions and cipher suites on offer, judged by OpenSSL's
//! `s_client`.

mod gateway_support;

use std::process::Command;

use http::StatusCode;
use serde_json::json;
use sluice_ingress::gateway::{CertStore, GatewayConfig};

use gateway_support::*;

struct Fixture {
    gw: TestGateway,
    _web: Backend,
}

/// `a.example.com` (its own certificate), `*.example.com` (a wildcard
/// certificate) and `other.test` (no TLS), all to one backend.
async fn setup(config: GatewayConfig) -> Fixture {
    let web = Backend::start("web").await;
    let ca = TestCa::new();
    let exact = ca.leaf(&["a.example.com"]);
    let wild = ca.leaf(&["*.example.com"]);
    let ing = ingress(
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
                rule(Some("other.test"), &[("/", "web")]),
            ],
        }),
    );
    let mut certs = CertStore::new();
    for (name, leaf) in [("a-cert", &exact), ("wild-cert", &wild)] {
        certs
            .load_pem(
                secret(name),
                leaf.chain_pem.as_bytes(),
                leaf.key_pem.as_bytes(),
            )
            .unwrap();
    }
    let r = routing(table(&[ing]), endpoints(&[("web", vec![web.addr])]), certs);
    Fixture {
        gw: TestGateway::start(config, r).await,
        _web: web,
    }
}

async fn status(f: &Fixture, sni: &str, host: &str, alpn: &[u8]) -> StatusCode {
    let (tls, _) = tls_connect(f.gw.https, Some(sni), &[alpn], None)
        .await
        .unwrap();
    tls_request(tls, host, "/").await.0
}

#[tokio::test]
async fn a_host_the_sni_certificate_does_not_cover_is_misdirected() {
    let f = setup(test_config()).await;
    for alpn in [&b"http/1.1"[..], b"h2"] {
        // The certificate for a.example.com covers neither.
        assert_eq!(
            status(&f, "a.example.com", "b.example.com", alpn).await,
            StatusCode::MISDIRECTED_REQUEST
        );
        assert_eq!(
            status(&f, "a.example.com", "other.test", alpn).await,
            StatusCode::MISDIRECTED_REQUEST
        );
        // Covered: the same name in another spelling, and a name the
        // wildcard certificate covers (HTTP/2 connection reuse).
        assert_eq!(
            status(&f, "a.example.com", "A.Example.COM.:443", alpn).await,
            StatusCode::OK
        );
        assert_eq!(
            status(&f, "b.example.com", "c.example.com", alpn).await,
            StatusCode::OK
        );
        // SNI chose no Ingress certificate (the default one): no claim to
        // check against.
        assert_eq!(
            status(&f, "unknown.test", "other.test", alpn).await,
            StatusCode::OK
        );
    }
    f.gw.shutdown().await;
}

#[tokio::test]
async fn the_421_check_can_be_turned_off() {
    let f = setup(GatewayConfig {
        strict_sni_host: false,
        ..test_config()
    })
    .await;
    assert_eq!(
        status(&f, "a.example.com", "b.example.com", b"http/1.1").await,
        StatusCode::OK
    );
    f.gw.shutdown().await;
}

fn openssl_available() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `openssl s_client` against `addr` with `args`; whether the
/// handshake completed, and what it printed.
async fn s_client(addr: std::net::SocketAddr, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &addr.to_string(),
        "-servername",
        "a.example.com",
    ])
    .args(args)
    .stdin(std::process::Stdio::null());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let done = text.contains("Cipher is ") && !text.contains("Cipher is (NONE)");
    (done, text)
}

#[tokio::test]
async fn only_tls_12_and_13_with_aead_suites() {
    if !openssl_available() {
        eprintln!("openssl not installed; skipping");
        return;
    }
    let f = setup(test_config()).await;
    let addr = f.gw.https;
    for args in [
        &["-tls1_3"][..],
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"],
    ] {
        let (ok, out) = s_client(addr, args).await;
        assert!(ok, "{args:?} refused:\n{out}");
    }
    for args in [
        // CBC suites, with and without forward secrecy.
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0"][..],
        &[
            "-tls1_2",
            "-cipher",
            "ECDHE-ECDSA-AES256-SHA384:@SECLEVEL=0",
        ],
        &[
            "-tls1_2",
            "-cipher",
            "AES128-SHA:AES256-GCM-SHA384:@SECLEVEL=0",
        ],
        // RC4, 3DES, NULL.
        &["-tls1_2", "-cipher", "RC4:3DES:eNULL:@SECLEVEL=0"],
        // Old protocol versions.
        &["-tls1_1", "-cipher", "ALL:@SECLEVEL=0"],
        &["-tls1", "-cipher", "ALL:@SECLEVEL=0"],
    ] {
        let (ok, out) = s_client(addr, args).await;
        assert!(!ok, "{args:?} accepted:\n{out}");
    }
    f.gw.shutdown().await;
}
