//! nginx judges Sluice's ingress-nginx mode.
//!
//! Debian's nginx runs the location blocks ingress-nginx generates for a
//! set of Ingresses (regex `~*`, `=`, prefixes, the exact twins,
//! `rewrite ... break`, `app-root`'s server-level `if`, `return` for
//! permanent redirects; `merge_slashes` and the trailing-slash 301 are
//! nginx's own), proxying to a small backend that echoes which location
//! sent the request and the request target it received. The same corpus of
//! request targets goes to nginx and to Sluice's route resolution
//! (`RouteTable::resolve`, in process), and status, Location, backend and
//! upstream path must agree. (End to end through the gateway comes when it
//! calls `resolve`.)
//!
//! The nginx configuration is generated from a typed description built by
//! the test from the same Ingresses, following ingress-nginx's controller
//! (`getBackendServers`, `updateServerLocations`) and template
//! (`buildLocation`, `buildProxyPass`, the `app-root` block). It is the
//! oracle's configuration: in the product nothing is ever rendered.
//!
//! Paths: nginx forwards the request target as received when it does not
//! rewrite, Sluice the normalized one; so unrewritten upstream paths are
//! compared after normalizing nginx's, rewritten ones exactly.
//!
//! Needs `nginx` (installed with apt-get when missing and root; otherwise
//! the test is skipped, which under `CI=true` is a failure).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::networking::v1::Ingress;
use serde_json::{Value, json};
use sluice_ingress::annotations::AnnotationConfig;
use sluice_ingress::routes::{
    Backend, BuildOptions, RequestFacts, Resolution, RouteTable, Scheme, build_with, normalize,
};

// ------------------------------------------------ the scenario, typed

/// One rule of a test Ingress.
#[derive(Debug, Clone)]
struct TestRule {
    host: &'static str,
    path: &'static str,
    path_type: &'static str,
    backend: &'static str,
}

/// A test Ingress: the annotations ingress-nginx's template reads for
/// locations, and rules.
#[derive(Debug, Clone, Default)]
struct TestIngress {
    name: &'static str,
    use_regex: bool,
    rewrite_target: Option<&'static str>,
    app_root: Option<&'static str>,
    permanent_redirect: Option<&'static str>,
    rules: Vec<TestRule>,
}

impl TestIngress {
    fn to_k8s(&self, index: usize) -> Ingress {
        let mut ann = serde_json::Map::new();
        let p = "nginx.ingress.kubernetes.io";
        if self.use_regex {
            ann.insert(format!("{p}/use-regex"), "true".into());
        }
        if let Some(t) = self.rewrite_target {
            ann.insert(format!("{p}/rewrite-target"), t.into());
        }
        if let Some(a) = self.app_root {
            ann.insert(format!("{p}/app-root"), a.into());
        }
        if let Some(r) = self.permanent_redirect {
            ann.insert(format!("{p}/permanent-redirect"), r.into());
        }
        let rules: Vec<Value> = self
            .rules
            .iter()
            .map(|r| {
                json!({ "host": r.host, "http": { "paths": [{
                    "path": r.path, "pathType": r.path_type,
                    "backend": { "service": { "name": r.backend, "port": { "number": 80 } } },
                }] } })
            })
            .collect();
        serde_json::from_value(json!({
            "metadata": {
                "namespace": "ns", "name": self.name, "annotations": ann,
                "creationTimestamp": format!("2024-01-01T00:00:{index:02}Z"),
            },
            "spec": { "rules": rules },
        }))
        .expect("valid Ingress")
    }
}

fn r(
    host: &'static str,
    path: &'static str,
    path_type: &'static str,
    backend: &'static str,
) -> TestRule {
    TestRule {
        host,
        path,
        path_type,
        backend,
    }
}

fn scenario() -> Vec<TestIngress> {
    vec![
        TestIngress {
            name: "static",
            rules: vec![
                r("static.test", "/", "Prefix", "root"),
                r("static.test", "/foo/", "Prefix", "foo"),
                r("static.test", "/bar", "Prefix", "bar"),
                r("static.test", "/exact", "Exact", "exact"),
                r("static.test", "/ex/", "Exact", "exslash"),
                r("static.test", "/impl", "ImplementationSpecific", "impl"),
                r("static.test", "/a/b", "Prefix", "ab"),
                r("static.test", "/a/b", "Exact", "abexact"),
                r("static.test", "/deep/er/path", "Prefix", "deep"),
            ],
            ..TestIngress::default()
        },
        TestIngress {
            name: "nodefault",
            rules: vec![r("nodefault.test", "/only/", "Prefix", "only")],
            ..TestIngress::default()
        },
        TestIngress {
            name: "regex",
            use_regex: true,
            rules: vec![
                r(
                    "regex.test",
                    "/api/v[0-9]+",
                    "ImplementationSpecific",
                    "api",
                ),
                r(
                    "regex.test",
                    "/files/.*\\.png$",
                    "ImplementationSpecific",
                    "png",
                ),
                r(
                    "regex.test",
                    "/(users|groups)/[a-z]+",
                    "ImplementationSpecific",
                    "ug",
                ),
            ],
            ..TestIngress::default()
        },
        TestIngress {
            name: "regex-others",
            rules: vec![
                r("regex.test", "/exact", "Exact", "rexact"),
                r("regex.test", "/docs", "Prefix", "docs"),
                r("regex.test", "/docs/v1/", "Prefix", "docsv1"),
                r("regex.test", "/Static", "Prefix", "static"),
            ],
            ..TestIngress::default()
        },
        TestIngress {
            name: "rewrite",
            rewrite_target: Some("/$2"),
            rules: vec![r(
                "rewrite.test",
                "/something(/|$)(.*)",
                "ImplementationSpecific",
                "rw",
            )],
            ..TestIngress::default()
        },
        TestIngress {
            name: "rewrite2",
            rewrite_target: Some("/v1/$1/end"),
            rules: vec![r(
                "rewrite.test",
                "/app/([a-z]+)",
                "ImplementationSpecific",
                "rw2",
            )],
            ..TestIngress::default()
        },
        TestIngress {
            name: "rewrite-url",
            rewrite_target: Some("https://elsewhere.test/$1"),
            rules: vec![r(
                "rewrite.test",
                "/out/(.*)",
                "ImplementationSpecific",
                "out",
            )],
            ..TestIngress::default()
        },
        TestIngress {
            name: "rewrite-others",
            rules: vec![r("rewrite.test", "/plain", "Prefix", "plain")],
            ..TestIngress::default()
        },
        TestIngress {
            name: "approot",
            app_root: Some("/app1"),
            rules: vec![
                r("approot.test", "/", "Prefix", "web"),
                r("approot.test", "/app1", "Prefix", "app1"),
            ],
            ..TestIngress::default()
        },
        TestIngress {
            name: "moved",
            permanent_redirect: Some("https://new.test/landing"),
            rules: vec![r("moved.test", "/old", "Prefix", "old")],
            ..TestIngress::default()
        },
    ]
}

// ------------------------------------------------ ingress-nginx's locations

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathType {
    Exact,
    Prefix,
    Impl,
}

/// A location as ingress-nginx's controller holds it.
#[derive(Debug, Clone)]
struct Loc {
    path: String,
    path_type: PathType,
    /// `None`: the default backend (ingress-nginx proxies to it; here it
    /// answers 404 as the default backend does).
    backend: Option<&'static str>,
    rewrite: Option<&'static str>,
    use_regex: bool,
    app_root: Option<&'static str>,
    redirect: Option<&'static str>,
}

impl Loc {
    fn needs_rewrite(&self) -> bool {
        self.rewrite.is_some_and(|t| t != self.path)
    }
}

/// A server (host) as ingress-nginx renders it.
#[derive(Debug)]
struct Server {
    name: &'static str,
    regex: bool,
    locations: Vec<Loc>,
}

fn path_type(s: &str) -> PathType {
    match s {
        "Exact" => PathType::Exact,
        "Prefix" => PathType::Prefix,
        _ => PathType::Impl,
    }
}

/// `getBackendServers` + `updateServerLocations` + `enforceRegexModifier`.
fn servers(ings: &[TestIngress]) -> Vec<Server> {
    let mut hosts: Vec<&'static str> = Vec::new();
    for i in ings {
        for r in &i.rules {
            if !hosts.contains(&r.host) {
                hosts.push(r.host);
            }
        }
    }
    hosts
        .into_iter()
        .map(|host| {
            // The server's root location, with the first Ingress's
            // annotations, to the default backend.
            let first = ings
                .iter()
                .find(|i| i.rules.iter().any(|r| r.host == host))
                .unwrap();
            let mut locs = vec![Loc {
                path: "/".into(),
                path_type: PathType::Prefix,
                backend: None,
                rewrite: first.rewrite_target,
                use_regex: first.use_regex,
                app_root: first.app_root,
                redirect: first.permanent_redirect,
            }];
            for i in ings {
                for rule in i.rules.iter().filter(|r| r.host == host) {
                    let pt = path_type(rule.path_type);
                    let loc = Loc {
                        path: rule.path.into(),
                        path_type: pt,
                        backend: Some(rule.backend),
                        rewrite: i.rewrite_target,
                        use_regex: i.use_regex,
                        app_root: i.app_root,
                        redirect: i.permanent_redirect,
                    };
                    match locs
                        .iter_mut()
                        .find(|l| l.path == rule.path && l.path_type == pt)
                    {
                        Some(l) if l.backend.is_none() => *l = loc,
                        Some(_) => {}
                        None => locs.push(loc),
                    }
                }
            }
            locs.sort_by(|a, b| b.path.cmp(&a.path));
            locs.sort_by_key(|l| std::cmp::Reverse(l.path.len()));
            let regex = locs.iter().any(|l| l.needs_rewrite() || l.use_regex);
            Server {
                name: host,
                regex,
                locations: update_server_locations(locs),
            }
        })
        .collect()
}

fn update_server_locations(locs: Vec<Loc>) -> Vec<Loc> {
    let exact: Vec<String> = locs
        .iter()
        .filter(|l| l.path_type == PathType::Exact)
        .map(|l| l.path.clone())
        .collect();
    let mut out = Vec::new();
    for mut l in locs {
        if l.path == "/" || l.path_type != PathType::Prefix || l.needs_rewrite() || l.use_regex {
            out.push(l);
            continue;
        }
        let twin = (!exact.contains(&l.path)).then(|| Loc {
            path_type: PathType::Exact,
            ..l.clone()
        });
        if !l.path.ends_with('/') {
            l.path.push('/');
        }
        out.push(l);
        out.extend(twin);
    }
    out
}

/// ingress-nginx's `sanitizeQuotedRegex`.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if c == '\\' || c == '"' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The oracle's nginx.conf.
fn render(servers: &[Server], listen: u16, echo: u16, dir: &Path) -> String {
    let d = dir.display();
    let mut c = String::new();
    writeln!(c, "daemon off; master_process off; worker_processes 1;").unwrap();
    writeln!(c, "pid {d}/nginx.pid; error_log {d}/error.log warn;").unwrap();
    writeln!(c, "events {{ worker_connections 256; }}").unwrap();
    writeln!(c, "http {{").unwrap();
    writeln!(c, "  access_log off;").unwrap();
    for t in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        writeln!(c, "  {t}_temp_path {d}/{t};").unwrap();
    }
    writeln!(c, "  server_name_in_redirect off; port_in_redirect off;").unwrap();
    writeln!(
        c,
        "  upstream upstream_balancer {{ server 127.0.0.1:{echo}; }}"
    )
    .unwrap();
    writeln!(
        c,
        "  server {{ listen 127.0.0.1:{listen} default_server; location / {{ return 404; }} }}"
    )
    .unwrap();
    for s in servers {
        writeln!(c, "  server {{").unwrap();
        writeln!(
            c,
            "    listen 127.0.0.1:{listen}; server_name {};",
            quoted(s.name)
        )
        .unwrap();
        for l in s.locations.iter().filter(|l| l.app_root.is_some()) {
            writeln!(
                c,
                "    if ($uri = /) {{ return 302 $scheme://$http_host{}; }}",
                l.app_root.unwrap()
            )
            .unwrap();
        }
        for l in &s.locations {
            let modifier = if s.regex {
                format!("~* {}", quoted(&format!("^{}", l.path)))
            } else if l.path_type == PathType::Exact {
                format!("= {}", quoted(&l.path))
            } else {
                quoted(&l.path)
            };
            writeln!(c, "    location {modifier} {{").unwrap();
            if let Some(url) = l.redirect {
                writeln!(c, "      return 301 {url};").unwrap();
            }
            match l.backend {
                None => writeln!(c, "      return 404;").unwrap(),
                Some(b) => {
                    if l.needs_rewrite() {
                        let target = l.rewrite.unwrap();
                        writeln!(
                            c,
                            "      rewrite {} {target} break;",
                            quoted(&format!("(?i){}", l.path))
                        )
                        .unwrap();
                    }
                    writeln!(c, "      proxy_set_header X-Backend {b};").unwrap();
                    writeln!(c, "      proxy_pass http://upstream_balancer;").unwrap();
                }
            }
            writeln!(c, "    }}").unwrap();
        }
        writeln!(c, "  }}").unwrap();
    }
    writeln!(c, "}}").unwrap();
    c
}

// ------------------------------------------------ the corpus

fn corpus() -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let per_host: &[(&str, &[&str])] = &[
        (
            "static.test",
            &[
                "/",
                "/foo",
                "/foo/",
                "/foo/x",
                "/foo/x/",
                "/FOO/",
                "/foobar",
                "/bar",
                "/bar/",
                "/bar/baz",
                "/barn",
                "/exact",
                "/exact/",
                "/exact/more",
                "/ex",
                "/ex/",
                "/ex/y",
                "/impl",
                "/impl/",
                "/implant",
                "/impl/x",
                "/a",
                "/a/b",
                "/a/b/",
                "/a/b/c",
                "/a/bc",
                "/deep",
                "/deep/er",
                "/deep/er/path",
                "/deep/er/path/z",
                "//foo",
                "/x/../foo",
                "/foo/./x",
                "/foo//x",
                "/a/./b",
                "/a/b/..",
                "/foo?q=1",
                "/foo/?q=1&r=2",
                "/bar?x",
                "/foo/%2e%2e/bar",
                "/fo%6f/x",
                "/foo%20bar",
                "/.",
                "/%2E",
                "/a//b",
                "/nope",
                "/foo/x?y=%2F",
            ],
        ),
        (
            "nodefault.test",
            &[
                "/",
                "/only",
                "/only/",
                "/only/x",
                "/onlyx",
                "/only?a=b",
                "/x/../only",
                "/ONLY/",
            ],
        ),
        (
            "regex.test",
            &[
                "/",
                "/api/v1",
                "/api/v12/users",
                "/API/V3",
                "/api/v",
                "/api/vx",
                "/x/api/v1",
                "/files/a.png",
                "/files/a.PNG",
                "/files/dir/b.png",
                "/files/a.png.txt",
                "/files/a%2Epng",
                "/users/bob",
                "/groups/admins/x",
                "/Users/Bob",
                "/users/7",
                "/exact",
                "/exact/more",
                "/EXACT",
                "/docs",
                "/docs/",
                "/docsify",
                "/docs/v1",
                "/docs/v1/",
                "/docs/v1/a",
                "/static",
                "/STATIC/x",
                "/staticx",
                "//api/v1",
                "/x/../api/v2",
                "/api/v1?x=1",
                "/nothing",
                "/docs/./v1/",
            ],
        ),
        (
            "rewrite.test",
            &[
                "/",
                "/something",
                "/something/",
                "/something/new",
                "/something/new/deeper?x=1",
                "/SOMETHING/Up",
                "/somethingelse",
                "/something/a/../b",
                "//something//c",
                "/app/abc",
                "/app/abc/rest",
                "/APP/XyZ",
                "/app/123",
                "/app/",
                "/out/there",
                "/out/there?q=2",
                "/out/",
                "/plain",
                "/plain/x",
                "/plainly",
                "/PLAIN",
                "/nothing",
            ],
        ),
        (
            "approot.test",
            &[
                "/", "/?x=1", "/app1", "/app1/", "/app1/x", "/other", "//", "/./", "/app", "/app10",
            ],
        ),
        (
            "moved.test",
            &["/", "/old", "/old/", "/old/x?y=1", "/older", "/new"],
        ),
    ];
    // Every path to every host: each host's own paths probe its rules,
    // the others probe what it does not match.
    let mut all: Vec<&str> = Vec::new();
    for (_, paths) in per_host {
        for p in *paths {
            if !all.contains(p) {
                all.push(p);
            }
        }
    }
    for (host, _) in per_host {
        for p in &all {
            out.push((*host, (*p).to_owned()));
        }
    }
    // The same paths with a query, for the hosts whose answers carry it.
    for p in ["/foo", "/bar/baz", "/a/b/c", "/impl/q", "/ex"] {
        out.push(("static.test", format!("{p}?k=v&w")));
    }
    for p in ["/api/v9", "/docs/v1/z", "/files/q.png"] {
        out.push(("regex.test", format!("{p}?k=v")));
    }
    out
}

// ------------------------------------------------ processes and sockets

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The echo backend: answers `<X-Backend> <request target>`.
fn spawn_echo() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || echo(stream));
        }
    });
    port
}

fn echo(mut s: TcpStream) {
    let head = read_head(&mut s);
    let mut lines = head.split("\r\n");
    let target = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("")
        .to_owned();
    let backend = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("x-backend"))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    let body = format!("{backend} {target}");
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn read_head(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
        buf.push(byte[0]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// What nginx answered: status, Location, and for a 200 the echo body.
#[derive(Debug)]
struct Answer {
    status: u16,
    location: Option<String>,
    body: String,
}

fn ask(port: u16, host: &str, target: &str) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let location = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("location"))
        .map(|(_, v)| v.trim().to_owned());
    Answer {
        status,
        location,
        body: body.to_owned(),
    }
}

fn find_nginx() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// nginx, installed with apt-get when missing and possible.
fn nginx_binary() -> Option<PathBuf> {
    if let Some(p) = find_nginx() {
        return Some(p);
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .is_some_and(|o| o.stdout.starts_with(b"0"));
    if root {
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-q", "nginx"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status();
    }
    find_nginx()
}

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_nginx(bin: &Path, conf: &str, dir: &Path, port: u16) -> Nginx {
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let test = Command::new(bin)
        .args(["-t", "-q", "-p"])
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "nginx -t: {}\n{conf}",
        String::from_utf8_lossy(&test.stderr)
    );
    let child = Command::new(bin)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let n = Nginx(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nginx did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    n
}

// ------------------------------------------------ Sluice's answer

fn sluice(table: &RouteTable, host: &str, target: &str) -> (Answer, bool) {
    let req = normalize(target).unwrap_or_else(|e| panic!("{target}: {e}"));
    let method = http::Method::GET;
    let facts = RequestFacts::new(Scheme::Http, host, &method);
    let answer = |status, location, body| Answer {
        status,
        location,
        body,
    };
    match table.resolve(&facts, &req) {
        Resolution::Redirect(r) => (answer(r.status, Some(r.location), String::new()), false),
        Resolution::Forward(f) => {
            let Backend::Service { name, .. } = &f.route.backend else {
                panic!()
            };
            let rewritten = f.route.policy.paths.rewrite.is_some() && f.path != req.path.as_str();
            let target = match f.query {
                Some(q) => format!("{}?{q}", f.path),
                None => f.path.to_string(),
            };
            (answer(200, None, format!("{name} {target}")), rewritten)
        }
        Resolution::Default(_) | Resolution::NoRoute => (answer(404, None, String::new()), false),
        other => panic!("{host}{target}: unexpected {other:?}"),
    }
}

/// The upstream target nginx's backend saw, normalized as Sluice forwards.
fn normalized_echo(body: &str) -> String {
    let Some((backend, target)) = body.split_once(' ') else {
        return body.to_owned();
    };
    match normalize(target) {
        Ok(n) => match n.query {
            Some(q) => format!("{backend} {}?{q}", n.path),
            None => format!("{backend} {}", n.path),
        },
        Err(_) => body.to_owned(),
    }
}

#[test]
fn sluice_resolves_as_nginx_does() {
    let Some(bin) = nginx_binary() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "nginx is not installed and cannot be installed under CI=true"
        );
        eprintln!("SKIPPED: nginx_oracle: nginx is not installed (run scripts/setup.sh)");
        return;
    };
    let ings = scenario();
    let k8s: Vec<Ingress> = ings
        .iter()
        .enumerate()
        .map(|(i, ing)| ing.to_k8s(i))
        .collect();
    let out = build_with(
        &k8s,
        &BuildOptions {
            ingress_nginx: Some(AnnotationConfig::default()),
        },
    );
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    assert!(out.conflicts.is_empty(), "{:?}", out.conflicts);

    let dir = std::env::temp_dir().join(format!("sluice-nginx-oracle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let echo = spawn_echo();
    let port = free_port();
    let conf = render(&servers(&ings), port, echo, &dir);
    let _nginx = start_nginx(&bin, &conf, &dir, port);

    let corpus = corpus();
    assert!(corpus.len() >= 200, "corpus of {} requests", corpus.len());
    let mut mismatches = Vec::new();
    for (host, target) in &corpus {
        let n = ask(port, host, target);
        let (s, rewritten) = sluice(&out.table, host, target);
        let nginx_body = if n.status == 200 && !rewritten {
            normalized_echo(&n.body)
        } else if n.status == 200 {
            n.body.clone()
        } else {
            String::new()
        };
        if (n.status, &n.location, &nginx_body) != (s.status, &s.location, &s.body) {
            mismatches.push(format!(
                "{host}{target}: nginx {} {:?} {nginx_body:?}, sluice {} {:?} {:?}",
                n.status, n.location, s.status, s.location, s.body
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        mismatches.is_empty(),
        "{} of {} requests differ:\n{}\n\nnginx.conf:\n{conf}",
        mismatches.len(),
        corpus.len(),
        mismatches.join("\n")
    );
    eprintln!("nginx_oracle: {} requests, all agree", corpus.len());
}
