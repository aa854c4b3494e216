//! HTTP/1.1 against hostile clients, over real sockets: header names with
//! underscores, upgrade tokens (h2c smuggling), client framing errors,
//! `#` and encoded path parameters in the target, the Host sent upstream,
//! and the request smuggling variants hyper already refuses.

mod gateway_support;

use std::time::Duration;

use serde_json::{Value, json};
use sluice_ingress::gateway::{CertStore, GatewayConfig};

use gateway_support::*;

/// Host `app.test`: `/` → web, `/admin` → admin.
async fn setup(config: GatewayConfig) -> (TestGateway, Backend, Backend) {
    let web = Backend::start("web").await;
    let admin = Backend::start("admin").await;
    let t = table(&[ingress(
        "ns",
        "app",
        json!({}),
        json!({ "rules": [rule(Some("app.test"), &[("/", "web"), ("/admin", "admin")])] }),
    )]);
    let gw = TestGateway::start(
        config,
        routing(
            t,
            endpoints(&[("web", vec![web.addr]), ("admin", vec![admin.addr])]),
            CertStore::new(),
        ),
    )
    .await;
    (gw, web, admin)
}

const T: Duration = Duration::from_secs(5);

/// The backend's JSON echo in a raw response.
fn echo(out: &str) -> Value {
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test]
async fn header_names_with_underscores_are_dropped() {
    let (gw, web, _admin) = setup(test_config()).await;
    let out = raw_exchange(
        gw.http,
        b"GET /u HTTP/1.1\r\nHost: app.test\r\nX_Forwarded_For: 6.6.6.6\r\n\
          X_Real_IP: 6.6.6.6\r\nX_Forwarded_Host: evil.test\r\nTransfer_Encoding: chunked\r\n\
          X_Custom: 1\r\nX-Keep: 1\r\nConnection: close\r\n\r\n",
        T,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let headers = &echo(&out)["headers"];
    for name in [
        "x_forwarded_for",
        "x_real_ip",
        "x_forwarded_host",
        "transfer_encoding",
        "x_custom",
    ] {
        assert!(headers.get(name).is_none(), "{name} forwarded: {headers}");
    }
    assert_eq!(headers["x-keep"], "1");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(web.hits(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn only_websocket_upgrades_are_tunnelled() {
    let (gw, web, _admin) = setup(test_config()).await;
    // h2c smuggling: a lenient backend would switch to HTTP/2 and serve
    // any path over the tunnel. The request goes as a plain request.
    for upgrade in ["h2c", "websocket, h2c", "foo"] {
        let raw = format!(
            "GET /x HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade, HTTP2-Settings\r\n\
             Upgrade: {upgrade}\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"
        );
        let out = raw_exchange(gw.http, raw.as_bytes(), Duration::from_secs(2)).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{upgrade}: {out}");
        let headers = &echo(&out)["headers"];
        assert!(headers.get("upgrade").is_none(), "{upgrade}: {headers}");
        assert!(headers.get("http2-settings").is_none(), "{headers}");
    }
    // WebSocket still is (gateway_http::websocket_upgrade_is_tunnelled
    // shows the tunnel).
    let out = raw_exchange(
        gw.http,
        b"GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n\r\n",
        Duration::from_millis(500),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 101"), "{out}");
    assert_eq!(web.hits(), 4);
    gw.shutdown().await;
}

#[tokio::test]
async fn client_framing_errors_are_400_and_counted_as_such() {
    let (gw, _web, _admin) = setup(test_config()).await;
    let head = "POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n";
    let cases: Vec<(&str, String)> = vec![
        (
            "overflowing chunk size",
            format!("{head}ffffffffffffffffff1\r\nx\r\n0\r\n\r\n"),
        ),
        (
            "20 kB chunk extension",
            format!("{head}1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(20 * 1024)),
        ),
        (
            "20 kB trailers",
            format!(
                "{head}1\r\nx\r\n0\r\nX-T: {}\r\n\r\n",
                "t".repeat(20 * 1024)
            ),
        ),
        ("bare LF chunk lines", format!("{head}1\nx\n0\n\n")),
        ("not hex", format!("{head}zz\r\nx\r\n0\r\n\r\n")),
    ];
    let n = cases.len();
    for (what, raw) in cases {
        let out = raw_exchange(gw.http, raw.as_bytes(), T).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{what}: {out}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let m = gw.metrics_text();
    let line = |code: u16| {
        format!(
            "sluice_ingress_requests_total{{ingress=\"ns/app\",service=\"ns/web:80\",code=\"{code}\"}}"
        )
    };
    assert!(m.contains(&format!("{} {n}", line(400))), "{m}");
    assert!(!m.contains(&line(502)), "{m}");
    gw.shutdown().await;
}

#[tokio::test]
async fn fragments_and_encoded_path_parameters_are_refused() {
    let (gw, web, admin) = setup(test_config()).await;
    for target in [
        "/public#/../admin",
        "/admin#x",
        "/#",
        "/public/..%3B/admin",
        "/public/..%3b/admin",
        "/public/%2e%2e%3b/admin",
        "/public/.%3Bx/../admin",
    ] {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
        let out = raw_exchange(gw.http, raw.as_bytes(), T).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{target}: {out}");
    }
    assert_eq!((web.hits(), admin.hits()), (0, 0));
    // A `#` in a header value or the query's own text is not a target
    // fragment; %3B elsewhere is an ordinary escape.
    let out = raw_exchange(
        gw.http,
        b"GET /a%3Bb?x=%23 HTTP/1.1\r\nHost: app.test\r\nX-Color: #fff\r\nConnection: close\r\n\r\n",
        T,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(echo(&out)["uri"], "/a%3Bb?x=%23");
    // Keep-alive: a refused request does not poison the next one.
    let c = h1_client();
    let (s, _, _) = get(&c, gw.http, "app.test", "/fine").await;
    assert_eq!(s, 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn the_upstream_gets_the_normalised_host() {
    let (gw, _web, _admin) = setup(test_config()).await;
    for (sent, want) in [
        ("ApP.tEsT.:80", "app.test"),
        ("APP.test:8080", "app.test:8080"),
        ("app.test.", "app.test"),
        ("app.test", "app.test"),
    ] {
        let raw = format!("GET /h HTTP/1.1\r\nHost: {sent}\r\nConnection: close\r\n\r\n");
        let out = raw_exchange(gw.http, raw.as_bytes(), T).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{sent}: {out}");
        let headers = &echo(&out)["headers"];
        assert_eq!(headers["host"], want, "{sent}");
        assert_eq!(headers["x-forwarded-host"], want, "{sent}");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn smuggling_variants_are_refused() {
    let (gw, web, admin) = setup(test_config()).await;
    // Each is refused by hyper's parser before any routing; none reaches a
    // backend. (gateway_http::smuggling_attempts_are_refused covers
    // CL + TE in both orders, duplicate Content-Length, TE: gzip, TE on
    // HTTP/1.0 and a space before the colon.)
    let cases: &[(&str, &[u8])] = &[
        (
            "obs-fold",
            b"GET / HTTP/1.1\r\nHost: app.test\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n",
        ),
        (
            "bare CR in a header",
            b"GET / HTTP/1.1\r\nHost: app.test\r\nX-A: 1\rTransfer-Encoding: chunked\r\n\r\n",
        ),
        (
            "NUL in a header value",
            b"GET / HTTP/1.1\r\nHost: app.test\r\nX-A: a\0b\r\n\r\n",
        ),
        (
            "NUL in the request line",
            b"GET /\0admin HTTP/1.1\r\nHost: app.test\r\n\r\n",
        ),
        (
            "Content-Length with a sign",
            b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: +4\r\n\r\nabcd",
        ),
        (
            "Content-Length list with different values",
            b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4, 40\r\n\r\nabcd",
        ),
        (
            "chunked twice",
            b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "chunked, not last",
            b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        ),
        (
            "TE with a vertical tab",
            b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "request line with a bare LF target",
            b"GET /admin\nHTTP/1.1\r\nHost: app.test\r\n\r\n",
        ),
    ];
    for (what, raw) in cases {
        let out = raw_exchange(gw.http, raw, T).await;
        assert!(
            out.starts_with("HTTP/1.1 400") || out.is_empty(),
            "{what}: {out}"
        );
    }
    assert_eq!((web.hits(), admin.hits()), (0, 0));
    gw.shutdown().await;
}

#[tokio::test]
async fn settings_allow_underscores_and_more_upgrade_protocols() {
    let config = GatewayConfig {
        allow_underscores_in_headers: true,
        upgrade_protocols: vec!["foo/2".into()],
        ..test_config()
    };
    let (gw, _web, _admin) = setup(config).await;
    let out = raw_exchange(
        gw.http,
        b"GET /u HTTP/1.1\r\nHost: app.test\r\nX_Custom: 1\r\nConnection: close\r\n\r\n",
        T,
    )
    .await;
    assert_eq!(echo(&out)["headers"]["x_custom"], "1", "{out}");
    let out = raw_exchange(
        gw.http,
        b"GET /up HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: FOO/2\r\n\r\n",
        Duration::from_millis(500),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 101"), "{out}");
    gw.shutdown().await;
}
