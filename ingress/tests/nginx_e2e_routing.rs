//! ingress-nginx routing annotations end to end: the `sluice-ingress`
//! binary in ingress-nginx mode (`--manifests`, the `nginx` class), curl as
//! the client, echo backends that report the request target and headers
//! they received.
//!
//! Redirects (`ssl-redirect`/`force-ssl-redirect` 308, `permanent-` and
//! `temporal-redirect` with their codes, `app-root`, `from-to-www-redirect`,
//! nginx's trailing-slash 301), rewrites (`rewrite-target` with captures,
//! `x-forwarded-prefix`, `upstream-vhost`), CORS (preflight 204, headers on
//! answers, origins not allowed), `proxy-body-size` (413, `0`, the
//! ConfigMap default) and `enable-access-log`; each with its default.

mod nginx_e2e_support;

use nginx_e2e_support::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects() {
    if !tools_available(&["curl"]) {
        return;
    }
    let app = echo("app").await;
    let dir = temp_dir("redirects");
    let mut objects = vec![nginx_class()];
    objects.extend(service("app", app.addr));
    let one = |name: &str, ann: &[(&str, &str)]| {
        ingress(
            name,
            &format!("{name}.test"),
            &[("/", "Prefix", "app")],
            ann,
        )
    };
    // A TLS host (default certificate): ssl-redirect is on by default.
    let mut tls = one("tls", &[]);
    tls["spec"]["tls"] = json!([{"hosts": ["tls.test"]}]);
    objects.push(tls);
    let mut off = one("tlsoff", &[("ssl-redirect", "false")]);
    off["spec"]["tls"] = json!([{"hosts": ["tlsoff.test"]}]);
    objects.push(off);
    objects.push(one("force", &[("force-ssl-redirect", "true")]));
    objects.push(one("plain", &[]));
    objects.push(one(
        "perm",
        &[("permanent-redirect", "https://new.test/landing")],
    ));
    objects.push(one(
        "perm308",
        &[
            ("permanent-redirect", "https://new.test/"),
            ("permanent-redirect-code", "308"),
        ],
    ));
    objects.push(one("temp", &[("temporal-redirect", "https://maint.test/")]));
    objects.push(one(
        "temp307",
        &[
            ("temporal-redirect", "https://maint.test/"),
            ("temporal-redirect-code", "307"),
        ],
    ));
    objects.push(one("root", &[("app-root", "/app1")]));
    objects.push(ingress(
        "www",
        "www.apex.test",
        &[("/", "Prefix", "app")],
        &[("from-to-www-redirect", "true")],
    ));
    objects.push(ingress(
        "slash",
        "slash.test",
        &[("/foo/", "Prefix", "app")],
        &[],
    ));
    write(&dir.join("manifests"), "objects", &objects);
    let s = Sluice::start(&dir, &[]).await;
    let port = s.http;

    let go = |host: &'static str, path: &'static str| {
        let s = &s;
        async move {
            let r = s.curl(host, path, &[]).await;
            (r.status, r.header("location").unwrap_or("").to_owned())
        }
    };
    // HTTPS: 308 for a TLS host (no port, as ingress-nginx without
    // use-port-in-redirects; a trailing slash dropped), none when opted
    // out, always with force-ssl-redirect, never for a plain host.
    assert_eq!(
        go("tls.test", "/a?b=1").await,
        (308, "https://tls.test/a?b=1".into())
    );
    assert_eq!(go("tlsoff.test", "/a").await.0, 200);
    assert_eq!(
        go("force.test", "/a/").await,
        (308, "https://force.test/a".into())
    );
    assert_eq!(go("plain.test", "/a").await.0, 200);
    // Fixed redirects with their default and explicit codes.
    assert_eq!(
        go("perm.test", "/x").await,
        (301, "https://new.test/landing".into())
    );
    assert_eq!(go("perm308.test", "/").await.0, 308);
    assert_eq!(
        go("temp.test", "/").await,
        (302, "https://maint.test/".into())
    );
    assert_eq!(go("temp307.test", "/").await.0, 307);
    // app-root: only `/`.
    assert_eq!(
        go("root.test", "/").await,
        (302, format!("http://root.test:{port}/app1"))
    );
    assert_eq!(go("root.test", "/other").await.0, 200);
    // from-to-www: the apex goes to www (and www is served).
    assert_eq!(
        go("apex.test", "/p/").await,
        (308, format!("http://www.apex.test:{port}/p"))
    );
    assert_eq!(go("www.apex.test", "/p").await.0, 200);
    // nginx's trailing-slash 301 for a Prefix path written with a slash.
    assert_eq!(
        go("slash.test", "/foo").await,
        (301, "http://slash.test/foo/".into())
    );
    assert_eq!(go("slash.test", "/foo/bar").await.0, 200);
    assert_eq!(
        app.hits.load(std::sync::atomic::Ordering::SeqCst),
        5,
        "redirects never reach the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites_prefix_and_vhost() {
    if !tools_available(&["curl"]) {
        return;
    }
    let app = echo("app").await;
    let dir = temp_dir("rewrites");
    let mut objects = vec![nginx_class()];
    objects.extend(service("app", app.addr));
    objects.push(ingress(
        "rw",
        "rw.test",
        &[("/something(/|$)(.*)", "ImplementationSpecific", "app")],
        &[
            ("rewrite-target", "/$2"),
            ("x-forwarded-prefix", "/something"),
        ],
    ));
    objects.push(ingress(
        "vhost",
        "vhost.test",
        &[("/", "Prefix", "app")],
        &[("upstream-vhost", "internal.$namespace.svc")],
    ));
    objects.push(ingress(
        "plain",
        "plain.test",
        &[("/", "Prefix", "app")],
        &[],
    ));
    write(&dir.join("manifests"), "objects", &objects);
    let s = Sluice::start(&dir, &[]).await;

    // The path the backend receives: the captures, the query kept.
    let r = s.curl("rw.test", "/something/new/page?q=1", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.upstream_uri(), "/new/page?q=1");
    assert_eq!(
        r.upstream_header("x-forwarded-prefix").as_deref(),
        Some("/something")
    );
    let r = s.curl("rw.test", "/SOMETHING", &[]).await;
    assert_eq!(r.upstream_uri(), "/", "case-insensitive, $2 empty");
    // upstream-vhost: the Host sent upstream; X-Forwarded-Host is the
    // client's.
    let r = s.curl("vhost.test", "/v", &[]).await;
    assert_eq!(
        r.upstream_header("host").as_deref(),
        Some("internal.demo.svc")
    );
    assert_eq!(
        r.upstream_header("x-forwarded-host"),
        Some(format!("vhost.test:{}", s.http))
    );
    // Defaults: the path as routed, the request's Host, no prefix header.
    let r = s
        .curl("plain.test", "/a//b/../c?x", &["--path-as-is"])
        .await;
    assert_eq!(r.upstream_uri(), "/a/c?x");
    assert_eq!(
        r.upstream_header("host"),
        Some(format!("plain.test:{}", s.http))
    );
    assert_eq!(r.upstream_header("x-forwarded-prefix"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors() {
    if !tools_available(&["curl"]) {
        return;
    }
    let app = echo("app").await;
    let dir = temp_dir("cors");
    let mut objects = vec![nginx_class()];
    objects.extend(service("app", app.addr));
    objects.push(ingress(
        "any",
        "any.test",
        &[("/", "Prefix", "app")],
        &[("enable-cors", "true")],
    ));
    objects.push(ingress(
        "list",
        "list.test",
        &[("/", "Prefix", "app")],
        &[
            ("enable-cors", "true"),
            (
                "cors-allow-origin",
                "https://a.example.com, https://*.b.example.com",
            ),
            ("cors-allow-methods", "GET, POST"),
            ("cors-allow-credentials", "false"),
            ("cors-expose-headers", "X-Total"),
            ("cors-max-age", "600"),
        ],
    ));
    objects.push(ingress("none", "none.test", &[("/", "Prefix", "app")], &[]));
    write(&dir.join("manifests"), "objects", &objects);
    let s = Sluice::start(&dir, &[]).await;

    // Defaults: any origin, ingress-nginx's methods, credentials, max age;
    // the preflight is answered by the gateway.
    let r = s
        .curl(
            "any.test",
            "/api",
            &["-X", "OPTIONS", "-H", "Origin: https://x.test"],
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET, PUT, POST, DELETE, PATCH, OPTIONS")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-max-age"), Some("1728000"));
    let r = s
        .curl("any.test", "/api", &["-H", "Origin: https://x.test"])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    // A list: the matching origin is echoed; a wildcard covers one label.
    let r = s
        .curl(
            "list.test",
            "/",
            &["-H", "Origin: https://api.b.example.com"],
        )
        .await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://api.b.example.com")
    );
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, POST"));
    assert_eq!(r.header("access-control-expose-headers"), Some("X-Total"));
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert_eq!(r.header("access-control-allow-credentials"), None);
    let r = s
        .curl(
            "list.test",
            "/",
            &["-H", "Origin: https://x.y.b.example.com"],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    // CORS headers on the gateway's own answers too (here a 404 upstream).
    let r = s
        .curl("any.test", "/status/404", &["-H", "Origin: https://x.test"])
        .await;
    assert_eq!(
        (r.status, r.header("access-control-allow-origin")),
        (404, Some("*"))
    );
    // Without enable-cors, OPTIONS goes to the backend and nothing is added.
    let r = s
        .curl(
            "none.test",
            "/",
            &["-X", "OPTIONS", "-H", "Origin: https://x.test"],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.echo()["method"], "OPTIONS");
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_size_and_access_log() {
    if !tools_available(&["curl"]) {
        return;
    }
    let app = echo("app").await;
    let dir = temp_dir("bodysize");
    let mut objects = vec![nginx_class()];
    objects.extend(service("app", app.addr));
    objects.push(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": "ingress-nginx"},
        "data": {"proxy-body-size": "3k"}
    }));
    objects.push(ingress(
        "small",
        "small.test",
        &[("/", "Prefix", "app")],
        &[("proxy-body-size", "1k"), ("enable-access-log", "false")],
    ));
    objects.push(ingress(
        "unlimited",
        "unlimited.test",
        &[("/", "Prefix", "app")],
        &[("proxy-body-size", "0")],
    ));
    objects.push(ingress(
        "default",
        "default.test",
        &[("/", "Prefix", "app")],
        &[],
    ));
    write(&dir.join("manifests"), "objects", &objects);
    let s = Sluice::start(&dir, &["--configmap", "ingress-nginx/cfg"]).await;
    let body = |n: usize| {
        let p = s.dir.join(format!("body-{n}"));
        std::fs::write(&p, vec![b'x'; n]).unwrap();
        format!("@{}", p.display())
    };
    let post = |host: &'static str, file: String, chunked: bool| {
        let s = &s;
        async move {
            let mut args = vec!["-X", "POST", "-H", "Expect:", "--data-binary", &file];
            if chunked {
                args.extend(["-H", "Transfer-Encoding: chunked"]);
            }
            s.curl(host, "/upload", &args).await.status
        }
    };
    // 1k: a declared length over it, and a chunked body growing past it.
    assert_eq!(post("small.test", body(512), false).await, 200);
    assert_eq!(post("small.test", body(2048), false).await, 413);
    assert_eq!(post("small.test", body(4096), true).await, 413);
    // The ConfigMap's 3k is the default; 0 is no limit.
    assert_eq!(post("default.test", body(2048), false).await, 200);
    assert_eq!(post("default.test", body(4096), false).await, 413);
    assert_eq!(post("unlimited.test", body(4 << 20), true).await, 200);

    // enable-access-log: false logs nothing for small.test.
    s.curl("default.test", "/logged", &[]).await;
    s.curl("small.test", "/unlogged", &[]).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let log = s.log();
    assert!(log.contains("/logged"), "{log}");
    assert!(!log.contains("/unlogged"), "{log}");
}
