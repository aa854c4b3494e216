//! ingress-nginx access control end to end: the `sluice-ingress` binary in
//! ingress-nginx mode (`--controller-class k8s.io/ingress-nginx`, reading
//! `--manifests`), curl as the client.
//!
//! * basic auth against htpasswd files made by Apache's `htpasswd`
//!   (bcrypt `-B`, apr1 `-m`, SHA-1 `-s`) and an `auth-map` Secret, with
//!   `auth-realm`, and a missing Secret (503, never open);
//! * source ranges: allow-list, deny-list, the `whitelist-` alias,
//!   `satisfy: any`, and the ConfigMap's global allow-list;
//! * external auth against a real auth service (an HTTP server in this
//!   test): 2xx with `auth-response-headers`, 401 with its challenge, 403,
//!   `auth-signin` with `rd`, `auth-method`, `auth-request-redirect`, and an
//!   unreachable service (500);
//! * fail closed: an access annotation enforced now is served with it, one
//!   still unenforced (`limit-rps`) keeps the route at 503.

mod nginx_e2e_support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use nginx_e2e_support::*;

/// `htpasswd -n<flag>b USER PASSWORD`: one line made by Apache's tool.
fn htpasswd(flag: &str, user: &str, password: &str) -> String {
    let out = Command::new("htpasswd")
        .arg(format!("-n{flag}b"))
        .args([user, password])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn basic(user: &str, password: &str) -> String {
    format!("{user}:{password}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_with_htpasswd_files_made_by_apache() {
    if !tools_available(&["curl", "htpasswd"]) {
        return;
    }
    let app = echo("app").await;
    let dir = temp_dir("basic");
    let m = dir.join("manifests");
    let bcrypt = htpasswd("B", "alice", "alice-pw");
    let apr1 = htpasswd("m", "bob", "bob-pw");
    let sha1 = htpasswd("s", "carol", "carol-pw");
    assert!(bcrypt.starts_with("alice:$2y$") && apr1.starts_with("bob:$apr1$"));
    assert!(sha1.starts_with("carol:{SHA}"));
    let file = format!("# made by htpasswd\n{bcrypt}\n{apr1}\n{sha1}\n");
    let dave = htpasswd("m", "dave", "dave-pw");
    let dave_hash = dave.split_once(':').unwrap().1.to_owned();
    let mut objects = vec![nginx_class()];
    objects.extend(service("app", app.addr));
    objects.push(secret("htpasswd", &[("auth", file.as_bytes())]));
    objects.push(secret("users", &[("dave", dave_hash.as_bytes())]));
    objects.push(ingress(
        "basic",
        "basic.test",
        &[("/", "Prefix", "app")],
        &[
            ("auth-type", "basic"),
            ("auth-secret", "htpasswd"),
            ("auth-realm", "Sluice \"test\""),
        ],
    ));
    objects.push(ingress(
        "map",
        "map.test",
        &[("/", "Prefix", "app")],
        &[
            ("auth-type", "basic"),
            ("auth-secret", "demo/users"),
            ("auth-secret-type", "auth-map"),
        ],
    ));
    objects.push(ingress(
        "missing",
        "missing.test",
        &[("/", "Prefix", "app")],
        &[("auth-type", "basic"), ("auth-secret", "nope")],
    ));
    write(&m, "objects", &objects);
    let s = Sluice::start(&dir, &[]).await;

    // No credentials, a wrong password, an unknown user: 401 and the realm.
    let r = s.curl("basic.test", "/", &[]).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"Sluice test\"")
    );
    for (u, p) in [("alice", "bob-pw"), ("bob", "alice-pw"), ("eve", "x")] {
        let r = s.curl("basic.test", "/", &["-u", &basic(u, p)]).await;
        assert_eq!(r.status, 401, "{u}");
    }
    assert_eq!(app.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    // Each hash scheme of htpasswd: bcrypt, apr1, SHA-1.
    for (u, p) in [
        ("alice", "alice-pw"),
        ("bob", "bob-pw"),
        ("carol", "carol-pw"),
    ] {
        let r = s.curl("basic.test", "/x", &["-u", &basic(u, p)]).await;
        assert_eq!(r.status, 200, "{u}: {}", r.body);
        assert_eq!(r.upstream_uri(), "/x");
    }
    // auth-map: a user per key; the default realm is empty.
    let r = s.curl("map.test", "/", &["-u", "dave:dave-pw"]).await;
    assert_eq!(r.status, 200);
    let r = s.curl("map.test", "/", &["-u", "dave:bob-pw"]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"\""));
    // The Secret does not exist: 503, never open.
    let r = s.curl("missing.test", "/", &["-u", "alice:alice-pw"]).await;
    assert_eq!(r.status, 503);
    assert!(
        s.log().contains("secret demo/nope not found"),
        "{}",
        s.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ranges_and_satisfy() {
    if !tools_available(&["curl", "htpasswd"]) {
        return;
    }
    let app = echo("app").await;
    let dir = temp_dir("ranges");
    let m = dir.join("manifests");
    let line = htpasswd("s", "ann", "ann-pw");
    let mut objects = vec![nginx_class()];
    objects.extend(service("app", app.addr));
    objects.push(secret("htpasswd", &[("auth", line.as_bytes())]));
    let one = |name: &str, ann: &[(&str, &str)]| {
        ingress(
            name,
            &format!("{name}.test"),
            &[("/", "Prefix", "app")],
            ann,
        )
    };
    objects.push(one(
        "allowed",
        &[("allowlist-source-range", "10.0.0.0/8, 127.0.0.1/32")],
    ));
    objects.push(one("outside", &[("allowlist-source-range", "10.0.0.0/8")]));
    objects.push(one(
        "legacy",
        &[("whitelist-source-range", "192.168.0.0/16")],
    ));
    objects.push(one("denied", &[("denylist-source-range", "127.0.0.0/8")]));
    objects.push(one("notdenied", &[("denylist-source-range", "10.0.0.0/8")]));
    objects.push(one(
        "both",
        &[
            ("allowlist-source-range", "127.0.0.0/8"),
            ("denylist-source-range", "127.0.0.1"),
        ],
    ));
    let any = [
        ("allowlist-source-range", "10.0.0.0/8"),
        ("auth-type", "basic"),
        ("auth-secret", "htpasswd"),
        ("satisfy", "any"),
    ];
    objects.push(one("any", &any));
    let mut all = any;
    all[3] = ("satisfy", "all");
    objects.push(one("all", &all));
    objects.push(one(
        "anyok",
        &[
            ("allowlist-source-range", "127.0.0.1"),
            ("auth-type", "basic"),
            ("auth-secret", "htpasswd"),
            ("satisfy", "any"),
        ],
    ));
    write(&m, "objects", &objects);
    let s = Sluice::start(&dir, &[]).await;

    let status = |host: &'static str, args: &'static [&'static str]| {
        let s = &s;
        async move { s.curl(&format!("{host}.test"), "/", args).await.status }
    };
    assert_eq!(status("allowed", &[]).await, 200);
    assert_eq!(status("outside", &[]).await, 403);
    assert_eq!(status("legacy", &[]).await, 403);
    assert_eq!(status("denied", &[]).await, 403);
    assert_eq!(status("notdenied", &[]).await, 200);
    assert_eq!(status("both", &[]).await, 403, "deny wins");
    // satisfy any: outside the allow-list, the password suffices.
    assert_eq!(status("any", &[]).await, 401);
    assert_eq!(status("any", &["-u", "ann:ann-pw"]).await, 200);
    // satisfy all (the default): both are needed.
    assert_eq!(status("all", &["-u", "ann:ann-pw"]).await, 403);
    // satisfy any: inside the allow-list, no password needed.
    assert_eq!(status("anyok", &[]).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configmap_allow_list_is_every_ingress_default() {
    if !tools_available(&["curl"]) {
        return;
    }
    let app = echo("app").await;
    let dir = temp_dir("cm-ranges");
    let m = dir.join("manifests");
    let mut objects = vec![nginx_class()];
    objects.extend(service("app", app.addr));
    objects.push(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "ingress-nginx-controller", "namespace": "ingress-nginx"},
        "data": {"whitelist-source-range": "10.0.0.0/8"}
    }));
    objects.push(ingress(
        "plain",
        "plain.test",
        &[("/", "Prefix", "app")],
        &[],
    ));
    objects.push(ingress(
        "own",
        "own.test",
        &[("/", "Prefix", "app")],
        &[("allowlist-source-range", "127.0.0.1")],
    ));
    write(&m, "objects", &objects);
    let s = Sluice::start(
        &dir,
        &["--configmap", "ingress-nginx/ingress-nginx-controller"],
    )
    .await;
    assert_eq!(s.curl("plain.test", "/", &[]).await.status, 403);
    assert_eq!(s.curl("own.test", "/", &[]).await.status, 200);
}

/// What the auth service saw of each subrequest.
type Seen = Arc<Mutex<Vec<(String, String, BTreeMap<String, String>)>>>;

/// The auth service: `Authorization: Bearer good` → 200 with
/// `X-Auth-User: alice`; `Bearer forbidden` → 403; `Bearer broken` → 502;
/// anything else → 401 with a Bearer challenge.
async fn auth_service() -> (SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let headers: BTreeMap<String, String> = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                        .collect();
                    log.lock().unwrap().push((
                        req.method().to_string(),
                        req.uri().to_string(),
                        headers.clone(),
                    ));
                    let token = headers.get("authorization").cloned().unwrap_or_default();
                    let mut r = Response::new(Full::new(Bytes::new()));
                    match token.as_str() {
                        "Bearer good" => {
                            r.headers_mut()
                                .insert("x-auth-user", "alice".parse().unwrap());
                        }
                        "Bearer forbidden" => *r.status_mut() = hyper::StatusCode::FORBIDDEN,
                        "Bearer broken" => *r.status_mut() = hyper::StatusCode::BAD_GATEWAY,
                        _ => {
                            *r.status_mut() = hyper::StatusCode::UNAUTHORIZED;
                            r.headers_mut().insert(
                                "www-authenticate",
                                "Bearer realm=\"auth\"".parse().unwrap(),
                            );
                        }
                    }
                    async move { Ok::<_, Infallible>(r) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_auth_against_a_real_auth_service() {
    if !tools_available(&["curl"]) {
        return;
    }
    let app = echo("app").await;
    let (auth, seen) = auth_service().await;
    let dir = temp_dir("extauth");
    let m = dir.join("manifests");
    let url = format!("http://{auth}/verify?from=sluice");
    let mut objects = vec![nginx_class()];
    objects.extend(service("app", app.addr));
    objects.push(ingress(
        "ext",
        "ext.test",
        &[("/", "Prefix", "app")],
        &[
            ("auth-url", &url),
            ("auth-response-headers", "X-Auth-User, X-Auth-Groups"),
            ("auth-method", "POST"),
        ],
    ));
    objects.push(ingress(
        "signin",
        "signin.test",
        &[("/", "Prefix", "app")],
        &[
            ("auth-url", &url),
            ("auth-signin", "https://login.test/start"),
            ("auth-request-redirect", "https://signin.test/back"),
        ],
    ));
    let closed = free_port();
    objects.push(ingress(
        "down",
        "down.test",
        &[("/", "Prefix", "app")],
        &[("auth-url", &format!("http://127.0.0.1:{closed}/verify"))],
    ));
    write(&m, "objects", &objects);
    let s = Sluice::start(&dir, &[]).await;

    // No token: 401 with the auth service's challenge; nothing upstream.
    let r = s.curl("ext.test", "/app?x=1", &[]).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"auth\""));
    let r = s
        .curl(
            "ext.test",
            "/app",
            &["-H", "Authorization: Bearer forbidden"],
        )
        .await;
    assert_eq!(r.status, 403);
    let r = s
        .curl("ext.test", "/app", &["-H", "Authorization: Bearer broken"])
        .await;
    assert_eq!(r.status, 500, "neither 2xx, 401 nor 403");
    assert_eq!(app.hits.load(std::sync::atomic::Ordering::SeqCst), 0);

    // Granted: the named headers come from the auth answer; one it lacks
    // is removed, whatever the client sent.
    let r = s
        .curl(
            "ext.test",
            "/app?x=1",
            &[
                "-H",
                "Authorization: Bearer good",
                "-H",
                "X-Auth-User: mallory",
                "-H",
                "X-Auth-Groups: admins",
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.upstream_header("x-auth-user").as_deref(), Some("alice"));
    assert_eq!(r.upstream_header("x-auth-groups"), None);
    assert_eq!(r.upstream_uri(), "/app?x=1");
    // What the auth service received: auth-method, its own URL, the
    // client's headers and ingress-nginx's.
    let (method, uri, h) = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        (method.as_str(), uri.as_str()),
        ("POST", "/verify?from=sluice")
    );
    assert_eq!(h["x-original-uri"], "/app?x=1");
    assert_eq!(h["x-original-method"], "GET");
    assert_eq!(h["x-auth-request-redirect"], "/app?x=1");
    assert_eq!(h["x-sent-from"], "nginx-ingress-controller");
    assert_eq!(h["host"], auth.to_string());
    assert_eq!(h["authorization"], "Bearer good");
    assert!(h["x-original-url"].starts_with("http://ext.test:"));

    // auth-signin: a 401 becomes a 302 with rd (the original URL).
    let r = s.curl("signin.test", "/app?x=1", &[]).await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location").unwrap(),
        format!(
            "https://login.test/start?rd=http://signin.test:{}%2Fapp%3Fx%3D1",
            s.http
        )
    );
    let (_, _, h) = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(h["x-auth-request-redirect"], "https://signin.test/back");

    // The auth service cannot be reached: 500, never open.
    let r = s.curl("down.test", "/", &[]).await;
    assert_eq!(r.status, 500);
    assert_eq!(app.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforced_access_is_served_with_it_unenforced_stays_closed() {
    if !tools_available(&["curl", "htpasswd"]) {
        return;
    }
    let app = echo("app").await;
    let dir = temp_dir("failclosed");
    let m = dir.join("manifests");
    let line = htpasswd("s", "ann", "ann-pw");
    let mut objects = vec![nginx_class()];
    objects.extend(service("app", app.addr));
    objects.push(secret("htpasswd", &[("auth", line.as_bytes())]));
    objects.push(ingress(
        "enforced",
        "enforced.test",
        &[("/", "Prefix", "app")],
        &[("auth-type", "basic"), ("auth-secret", "htpasswd")],
    ));
    objects.push(ingress(
        "limited",
        "limited.test",
        &[("/", "Prefix", "app"), ("/open", "Prefix", "app")],
        &[("limit-rps", "5")],
    ));
    objects.push(ingress(
        "snippet",
        "snippet.test",
        &[("/", "Prefix", "app")],
        &[("configuration-snippet", "deny all;")],
    ));
    write(&m, "objects", &objects);
    let s = Sluice::start(&dir, &[]).await;
    assert_eq!(s.curl("enforced.test", "/", &[]).await.status, 401);
    assert_eq!(
        s.curl("enforced.test", "/", &["-u", "ann:ann-pw"])
            .await
            .status,
        200
    );
    // Not enforced yet: every route of the Ingress answers 503 and says why.
    for path in ["/", "/open/x"] {
        let r = s.curl("limited.test", path, &[]).await;
        assert_eq!(r.status, 503, "{path}");
        assert!(r.body.contains("limit-rps"), "{}", r.body);
    }
    // A snippet is refused, the rest of its Ingress served.
    assert_eq!(s.curl("snippet.test", "/", &[]).await.status, 200);
    let log = s.log();
    assert!(
        log.contains("configuration-snippet") && log.contains("never supported"),
        "{log}"
    );
}
