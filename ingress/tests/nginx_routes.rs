//! ingress-nginx mode of `sluice_ingress::routes`: the five behaviours
//! users trip over, nginx's location order, the redirects and rewrites of
//! route resolution, canaries, fail-closed denials, and the table checked
//! against a slow reference of ingress-nginx's locations.

use std::time::Instant;

use k8s_openapi::api::networking::v1::Ingress;
use proptest::prelude::*;
use serde_json::{Value, json};
use sluice_ingress::annotations::{AnnotationConfig, ControllerSettings};
use sluice_ingress::routes::{
    Backend, BuildOptions, BuildOutput, Lookup, NormalizedPath, ProblemKind, RequestFacts,
    Resolution, RouteTable, Scheme, build, build_with, normalize,
};

const A: &str = "nginx.ingress.kubernetes.io";

fn ingress(name: &str, created: &str, annotations: &[(&str, &str)], spec: Value) -> Ingress {
    let ann: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| (format!("{A}/{k}"), Value::from(*v)))
        .collect();
    serde_json::from_value(json!({
        "metadata": { "namespace": "ns", "name": name, "creationTimestamp": created, "annotations": ann },
        "spec": spec,
    }))
    .expect("valid Ingress")
}

fn svc(name: &str) -> Value {
    json!({ "service": { "name": name, "port": { "number": 80 } } })
}

fn rule(host: &str, paths: &[(&str, &str, &str)]) -> Value {
    let paths: Vec<Value> = paths
        .iter()
        .map(|(p, ty, b)| json!({ "path": p, "pathType": ty, "backend": svc(b) }))
        .collect();
    json!({ "host": host, "http": { "paths": paths } })
}

fn nginx_options() -> BuildOptions {
    BuildOptions {
        ingress_nginx: Some(AnnotationConfig::default()),
    }
}

fn nginx(ings: &[Ingress]) -> BuildOutput {
    build_with(ings, &nginx_options())
}

/// A compact outcome: `fwd <service> <path>[?q]`, `<code> <location>`,
/// `503`, `204`, `default`, `404`.
fn outcome(t: &RouteTable, scheme: Scheme, host: &str, target: &str) -> String {
    let req = normalize(target).unwrap_or_else(|e| panic!("{target}: {e}"));
    let method = http::Method::GET;
    let facts = RequestFacts::new(scheme, host, &method);
    describe(t.resolve(&facts, &req))
}

fn describe(r: Resolution<'_>) -> String {
    match r {
        Resolution::Redirect(r) => format!("{} {}", r.status, r.location),
        Resolution::Deny { .. } => "503".into(),
        Resolution::Preflight { .. } => "204".into(),
        Resolution::Default(_) => "default".into(),
        Resolution::NoRoute => "404".into(),
        Resolution::Forward(f) => {
            let Backend::Service { name, .. } = &f.route.backend else {
                panic!("resource backend")
            };
            match f.query {
                Some(q) => format!("fwd {name} {}?{q}", f.path),
                None => format!("fwd {name} {}", f.path),
            }
        }
    }
}

fn get(t: &RouteTable, host: &str, target: &str) -> String {
    outcome(t, Scheme::Http, host, target)
}

// ------------------------------------------------ the five behaviours

#[test]
fn behaviour_1_regex_paths_are_case_insensitive_prefixes() {
    let out = nginx(&[ingress(
        "api",
        "2024-01-01T00:00:00Z",
        &[("use-regex", "true")],
        json!({ "rules": [rule("a.com", &[("/api/v[0-9]+", "ImplementationSpecific", "api")])] }),
    )]);
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    let t = &out.table;
    assert!(t.is_regex_host("a.com"));
    assert_eq!(get(t, "a.com", "/api/v2"), "fwd api /api/v2");
    assert_eq!(
        get(t, "a.com", "/API/V2"),
        "fwd api /API/V2",
        "case-insensitive"
    );
    assert_eq!(
        get(t, "a.com", "/api/v2/users/7"),
        "fwd api /api/v2/users/7",
        "a prefix"
    );
    assert_eq!(
        get(t, "a.com", "/api/v2beta"),
        "fwd api /api/v2beta",
        "not element-wise"
    );
    assert_eq!(get(t, "a.com", "/x/api/v2"), "404", "anchored at the start");
    // The same Ingress without ingress-nginx mode: a literal path.
    let spec = build(&[ingress(
        "api",
        "2024-01-01T00:00:00Z",
        &[("use-regex", "true")],
        json!({ "rules": [rule("a.com", &[("/api/v2", "Prefix", "api")])] }),
    )]);
    assert_eq!(get(&spec.table, "a.com", "/API/V2"), "404");
}

#[test]
fn behaviour_2_use_regex_on_one_ingress_changes_the_whole_host() {
    let plain = ingress(
        "plain",
        "2024-01-01T00:00:00Z",
        &[],
        json!({ "rules": [rule("a.com", &[("/exact", "Exact", "exact"), ("/app", "Prefix", "app")])] }),
    );
    let other_host = ingress(
        "other",
        "2024-01-01T00:00:00Z",
        &[],
        json!({ "rules": [rule("b.com", &[("/exact", "Exact", "b")])] }),
    );
    let regex = ingress(
        "regex",
        "2024-01-02T00:00:00Z",
        &[("use-regex", "true")],
        json!({ "rules": [rule("a.com", &[("/r/.*", "ImplementationSpecific", "r")])] }),
    );
    // Before: Exact is exact, Prefix is element-wise, case matters.
    let before = nginx(&[plain.clone(), other_host.clone()]);
    assert_eq!(get(&before.table, "a.com", "/exact/more"), "404");
    assert_eq!(get(&before.table, "a.com", "/application"), "404");
    assert_eq!(get(&before.table, "a.com", "/APP"), "404");
    // After: every path of a.com is a case-insensitive prefix regex.
    let after = nginx(&[plain, regex, other_host]);
    let t = &after.table;
    assert!(t.is_regex_host("a.com") && !t.is_regex_host("b.com"));
    assert_eq!(get(t, "a.com", "/exact/more"), "fwd exact /exact/more");
    assert_eq!(get(t, "a.com", "/application"), "fwd app /application");
    assert_eq!(get(t, "a.com", "/APP"), "fwd app /APP");
    assert_eq!(
        get(t, "b.com", "/exact/more"),
        "404",
        "other hosts keep their semantics"
    );
}

#[test]
fn behaviour_3_rewrite_target_implies_regex_and_rewrites_with_captures() {
    let out = nginx(&[ingress(
        "rw",
        "2024-01-01T00:00:00Z",
        &[("rewrite-target", "/$2"), ("x-forwarded-prefix", "/$1")],
        json!({ "rules": [rule("a.com", &[("/something(/|$)(.*)", "ImplementationSpecific", "rw")])] }),
    )]);
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    let t = &out.table;
    assert!(t.is_regex_host("a.com"), "rewrite-target implies use-regex");
    assert_eq!(get(t, "a.com", "/something"), "fwd rw /");
    assert_eq!(get(t, "a.com", "/something/"), "fwd rw /");
    assert_eq!(get(t, "a.com", "/something/new?x=1"), "fwd rw /new?x=1");
    assert_eq!(get(t, "a.com", "/SOMETHING/New"), "fwd rw /New");
    assert_eq!(get(t, "a.com", "/somethingelse"), "404");
    let req = normalize("/something/a/b").unwrap();
    let m = http::Method::GET;
    let Resolution::Forward(f) = t.resolve(&RequestFacts::new(Scheme::Http, "a.com", &m), &req)
    else {
        panic!()
    };
    assert_eq!(f.x_forwarded_prefix.as_deref(), Some("//"), "$1 is \"/\"");
    // A target equal to the path rewrites nothing and forces no regex.
    let same = nginx(&[ingress(
        "same",
        "2024-01-01T00:00:00Z",
        &[("rewrite-target", "/")],
        json!({ "rules": [rule("a.com", &[("/", "Prefix", "root")])] }),
    )]);
    assert!(!same.table.is_regex_host("a.com"));
    assert_eq!(get(&same.table, "a.com", "/x"), "fwd root /x");
}

#[test]
fn behaviour_4_prefix_without_trailing_slash_gets_the_301() {
    let out = nginx(&[ingress(
        "i",
        "2024-01-01T00:00:00Z",
        &[],
        json!({ "rules": [rule("a.com", &[
            ("/foo/", "Prefix", "foo"),
            ("/bar", "Prefix", "bar"),
            ("/exact/", "Exact", "ex"),
            ("/impl/", "ImplementationSpecific", "impl"),
        ])] }),
    )]);
    let t = &out.table;
    assert_eq!(get(t, "a.com", "/foo"), "301 http://a.com/foo/");
    assert_eq!(get(t, "a.com", "/foo?q=1"), "301 http://a.com/foo/?q=1");
    assert_eq!(
        outcome(t, Scheme::Https, "A.com:8443", "/foo"),
        "301 https://a.com/foo/"
    );
    assert_eq!(get(t, "a.com", "/foo/"), "fwd foo /foo/");
    assert_eq!(get(t, "a.com", "/foo/x"), "fwd foo /foo/x");
    // `/bar` is written without the slash: its exact twin serves `/bar`.
    assert_eq!(get(t, "a.com", "/bar"), "fwd bar /bar");
    assert_eq!(get(t, "a.com", "/barn"), "404");
    // Any location ending in `/` that proxies gets it, Exact ones too.
    assert_eq!(get(t, "a.com", "/exact"), "301 http://a.com/exact/");
    assert_eq!(get(t, "a.com", "/impl"), "301 http://a.com/impl/");
    // Relative with relative-redirects.
    let rel = nginx(&[ingress(
        "i",
        "2024-01-01T00:00:00Z",
        &[("relative-redirects", "true")],
        json!({ "rules": [rule("a.com", &[("/foo/", "Prefix", "foo")])] }),
    )]);
    assert_eq!(get(&rel.table, "a.com", "/foo"), "301 /foo/");
    // The Ingress specification (default mode) matches `/foo` instead.
    let spec = build(&[ingress(
        "i",
        "2024-01-01T00:00:00Z",
        &[],
        json!({ "rules": [rule("a.com", &[("/foo/", "Prefix", "foo")])] }),
    )]);
    assert_eq!(get(&spec.table, "a.com", "/foo"), "fwd foo /foo");
}

#[test]
fn behaviour_5_dots_and_double_slashes_are_normalized_before_matching() {
    let out = nginx(&[ingress(
        "i",
        "2024-01-01T00:00:00Z",
        &[("use-regex", "true")],
        json!({ "rules": [rule("a.com", &[("/admin", "Prefix", "admin"), ("/public", "Prefix", "public")])] }),
    )]);
    let t = &out.table;
    assert_eq!(get(t, "a.com", "/public/../admin"), "fwd admin /admin");
    assert_eq!(get(t, "a.com", "//admin"), "fwd admin /admin");
    assert_eq!(get(t, "a.com", "/./public//x/."), "fwd public /public/x/");
    assert_eq!(get(t, "a.com", "/public/%2e%2e/admin"), "fwd admin /admin");
    let static_host = nginx(&[ingress(
        "i",
        "2024-01-01T00:00:00Z",
        &[],
        json!({ "rules": [rule("a.com", &[("/admin/", "Prefix", "admin")])] }),
    )]);
    assert_eq!(
        get(&static_host.table, "a.com", "/x/../admin"),
        "301 http://a.com/admin/"
    );
    assert_eq!(
        get(&static_host.table, "a.com", "//admin//x"),
        "fwd admin /admin/x"
    );
}

// ------------------------------------------------ location order

#[test]
fn regex_locations_longest_path_first_then_first_match() {
    let out = nginx(&[
        ingress(
            "short",
            "2024-01-01T00:00:00Z",
            &[("use-regex", "true")],
            json!({ "rules": [rule("a.com", &[("/a", "ImplementationSpecific", "short"), ("/[a-z]+/x", "ImplementationSpecific", "class")])] }),
        ),
        ingress(
            "long",
            "2024-01-02T00:00:00Z",
            &[],
            json!({ "rules": [rule("a.com", &[("/a/xyz", "Prefix", "long"), ("/b/x", "Exact", "bx")])] }),
        ),
    ]);
    let t = &out.table;
    // `/[a-z]+/x` (9) before `/a/xyz` (6) before `/b/x` (4) before `/a` (2).
    assert_eq!(
        get(t, "a.com", "/a/xyz"),
        "fwd class /a/xyz",
        "the longer regex is tried first"
    );
    assert_eq!(get(t, "a.com", "/b/x"), "fwd class /b/x");
    assert_eq!(get(t, "a.com", "/a/q"), "fwd short /a/q");
    assert_eq!(get(t, "a.com", "/b/q"), "404");
}

#[test]
fn static_locations_exact_then_longest_prefix() {
    let out = nginx(&[ingress(
        "i",
        "2024-01-01T00:00:00Z",
        &[],
        json!({ "rules": [rule("a.com", &[
            ("/", "Prefix", "root"),
            ("/a", "Prefix", "a"),
            ("/a/b", "Exact", "ab-exact"),
            ("/a/b", "Prefix", "ab"),
            ("/im", "ImplementationSpecific", "img"),
        ])] }),
    )]);
    assert!(
        out.problems.is_empty() && out.conflicts.is_empty(),
        "{:?} {:?}",
        out.problems,
        out.conflicts
    );
    let t = &out.table;
    assert_eq!(get(t, "a.com", "/a/b"), "fwd ab-exact /a/b");
    assert_eq!(get(t, "a.com", "/a/b/c"), "fwd ab /a/b/c");
    assert_eq!(get(t, "a.com", "/a/bc"), "fwd a /a/bc");
    assert_eq!(
        get(t, "a.com", "/A"),
        "fwd root /A",
        "static locations are case-sensitive"
    );
    assert_eq!(
        get(t, "a.com", "/images"),
        "fwd img /images",
        "ImplementationSpecific is nginx's string prefix"
    );
    assert_eq!(get(t, "b.com", "/"), "404");
}

#[test]
fn same_path_different_types_coexist_same_type_conflicts() {
    let out = nginx(&[
        ingress(
            "old",
            "2024-01-01T00:00:00Z",
            &[],
            json!({ "rules": [rule("a.com", &[("/p", "Prefix", "old")])] }),
        ),
        ingress(
            "new",
            "2024-01-02T00:00:00Z",
            &[],
            json!({ "rules": [rule("a.com", &[("/p", "Prefix", "new"), ("/p", "ImplementationSpecific", "impl")])] }),
        ),
    ]);
    assert_eq!(out.conflicts.len(), 1);
    assert_eq!(out.conflicts[0].winner.name, "old");
    assert_eq!(get(&out.table, "a.com", "/p/x"), "fwd old /p/x");
    assert_eq!(get(&out.table, "a.com", "/px"), "fwd impl /px");
}

#[test]
fn unsupported_regex_skips_the_path_only() {
    let out = nginx(&[ingress(
        "i",
        "2024-01-01T00:00:00Z",
        &[("use-regex", "true")],
        json!({ "rules": [rule("a.com", &[("/(?=admin)x", "ImplementationSpecific", "la"), ("/(a)\\1", "ImplementationSpecific", "br"), ("/ok", "Prefix", "ok")])] }),
    )]);
    let bad: Vec<&ProblemKind> = out.problems.iter().map(|p| &p.kind).collect();
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(
        bad.iter()
            .all(|k| matches!(k, ProblemKind::UnsupportedRegex { .. }))
    );
    assert!(out.problems[0].to_string().contains("cannot run"));
    assert_eq!(get(&out.table, "a.com", "/ok"), "fwd ok /ok");
}

// ------------------------------------------------ redirects and hosts

#[test]
fn app_root_redirects_slash_for_the_host() {
    let out = nginx(&[
        ingress(
            "app",
            "2024-01-01T00:00:00Z",
            &[("app-root", "/app1")],
            json!({ "rules": [rule("a.com", &[("/", "Prefix", "web")])] }),
        ),
        ingress(
            "other",
            "2024-01-02T00:00:00Z",
            &[],
            json!({ "rules": [rule("a.com", &[("/api", "Prefix", "api")])] }),
        ),
    ]);
    let t = &out.table;
    assert_eq!(get(t, "a.com", "/"), "302 http://a.com/app1");
    assert_eq!(
        get(t, "A.com:8080", "/?x=1"),
        "302 http://A.com:8080/app1",
        "$http_host as sent, no query"
    );
    assert_eq!(get(t, "a.com", "/app1"), "fwd web /app1");
    assert_eq!(get(t, "a.com", "/api"), "fwd api /api");
}

#[test]
fn fixed_redirects() {
    let out = nginx(&[
        ingress(
            "p",
            "2024-01-01T00:00:00Z",
            &[("permanent-redirect", "https://new.example.com/x")],
            json!({ "rules": [rule("a.com", &[("/p", "Prefix", "p")])] }),
        ),
        ingress(
            "p308",
            "2024-01-01T00:00:00Z",
            &[
                ("permanent-redirect", "/moved"),
                ("permanent-redirect-code", "308"),
            ],
            json!({ "rules": [rule("a.com", &[("/q", "Prefix", "q")])] }),
        ),
        ingress(
            "t",
            "2024-01-01T00:00:00Z",
            &[
                ("temporal-redirect", "https://tmp.example.com"),
                ("temporal-redirect-code", "307"),
            ],
            json!({ "rules": [rule("a.com", &[("/t", "Prefix", "t")])] }),
        ),
    ]);
    let t = &out.table;
    assert_eq!(
        get(t, "a.com", "/p/anything?x"),
        "301 https://new.example.com/x"
    );
    assert_eq!(get(t, "a.com", "/q"), "308 http://a.com/moved");
    assert_eq!(get(t, "a.com", "/t"), "307 https://tmp.example.com");
}

#[test]
fn rewrite_to_a_url_redirects_with_the_query() {
    let out = nginx(&[ingress(
        "i",
        "2024-01-01T00:00:00Z",
        &[("rewrite-target", "https://b.example.com/$1")],
        json!({ "rules": [rule("a.com", &[("/go/(.*)", "ImplementationSpecific", "x")])] }),
    )]);
    assert_eq!(
        get(&out.table, "a.com", "/go/there?x=1"),
        "302 https://b.example.com/there?x=1"
    );
}

fn tls_ingress(name: &str, annotations: &[(&str, &str)], tls: bool) -> Ingress {
    let mut spec = json!({ "rules": [rule("a.com", &[("/", "Prefix", name)])] });
    if tls {
        spec["tls"] = json!([{ "hosts": ["a.com"], "secretName": "cert" }]);
    }
    ingress(name, "2024-01-01T00:00:00Z", annotations, spec)
}

#[test]
fn https_redirects() {
    let t = nginx(&[tls_ingress("web", &[], true)]).table;
    assert_eq!(get(&t, "a.com", "/x/?q=1"), "308 https://a.com/x/?q=1");
    assert_eq!(
        get(&t, "a.com:80", "/x/"),
        "308 https://a.com/x",
        "trailing slash dropped"
    );
    assert_eq!(get(&t, "a.com", "/"), "308 https://a.com");
    assert_eq!(outcome(&t, Scheme::Https, "a.com", "/x"), "fwd web /x");
    let keep = nginx(&[tls_ingress(
        "web",
        &[("preserve-trailing-slash", "true")],
        true,
    )])
    .table;
    assert_eq!(get(&keep, "a.com", "/x/"), "308 https://a.com/x/");
    let off = nginx(&[tls_ingress("web", &[("ssl-redirect", "false")], true)]).table;
    assert_eq!(get(&off, "a.com", "/x"), "fwd web /x");
    let no_tls = nginx(&[tls_ingress("web", &[], false)]).table;
    assert_eq!(get(&no_tls, "a.com", "/x"), "fwd web /x");
    let forced = nginx(&[tls_ingress("web", &[("force-ssl-redirect", "true")], false)]).table;
    assert_eq!(get(&forced, "a.com", "/x"), "308 https://a.com/x");
    let port = nginx(&[tls_ingress(
        "web",
        &[("use-port-in-redirects", "true")],
        true,
    )])
    .table;
    assert_eq!(get(&port, "a.com", "/x"), "308 https://a.com:443/x");
    // ConfigMap http-redirect-code and ssl-redirect.
    let (settings, _) = ControllerSettings::from_configmap(
        &[("http-redirect-code".to_owned(), "301".to_owned())].into(),
    );
    let opts = BuildOptions {
        ingress_nginx: Some(AnnotationConfig {
            settings,
            ..AnnotationConfig::default()
        }),
    };
    let t = build_with(&[tls_ingress("web", &[], true)], &opts).table;
    assert_eq!(get(&t, "a.com", "/x"), "301 https://a.com/x");
    // Default mode keeps sluice's own redirect.
    let spec = build(&[tls_ingress("web", &[], true)]).table;
    assert_eq!(get(&spec, "a.com", "/x/"), "308 https://a.com/x/");
}

#[test]
fn server_alias_and_www_redirect() {
    let out = nginx(&[
        ingress(
            "main",
            "2024-01-01T00:00:00Z",
            &[
                ("server-alias", "alias.com, *.wild.com, b.com"),
                ("from-to-www-redirect", "true"),
            ],
            json!({ "rules": [rule("a.com", &[("/", "Prefix", "main")])] }),
        ),
        ingress(
            "b",
            "2024-01-02T00:00:00Z",
            &[],
            json!({ "rules": [rule("b.com", &[("/", "Prefix", "b")])] }),
        ),
    ]);
    let t = &out.table;
    assert_eq!(get(t, "alias.com", "/x"), "fwd main /x");
    assert_eq!(get(t, "x.wild.com", "/x"), "fwd main /x");
    assert_eq!(
        get(t, "b.com", "/x"),
        "fwd b /x",
        "an alias that is a rule host is dropped"
    );
    assert!(
        out.problems
            .iter()
            .any(|p| matches!(&p.kind, ProblemKind::Ignored(m) if m.contains("b.com")))
    );
    assert_eq!(get(t, "www.a.com", "/x/?y=1"), "308 http://a.com:80/x/?y=1");
    assert_eq!(get(t, "www.a.com", "/x/"), "308 http://a.com:80/x");
}

#[test]
fn upstream_vhost() {
    let out = nginx(&[ingress(
        "i",
        "2024-01-01T00:00:00Z",
        &[("upstream-vhost", "$service_name.$namespace.svc")],
        json!({ "rules": [rule("a.com", &[("/", "Prefix", "web")])] }),
    )]);
    let req = normalize("/").unwrap();
    let m = http::Method::GET;
    let Resolution::Forward(f) = out
        .table
        .resolve(&RequestFacts::new(Scheme::Https, "a.com", &m), &req)
    else {
        panic!()
    };
    assert_eq!(f.upstream_host.as_deref(), Some("web.ns.svc"));
}

#[test]
fn cors_preflight_is_answered_before_redirects() {
    let out = nginx(&[ingress(
        "i",
        "2024-01-01T00:00:00Z",
        &[
            ("enable-cors", "true"),
            ("cors-allow-origin", "https://app.example.com"),
            ("permanent-redirect", "https://x/"),
        ],
        json!({ "rules": [rule("a.com", &[("/", "Prefix", "web")])] }),
    )]);
    let req = normalize("/api").unwrap();
    let opt = http::Method::OPTIONS;
    let mut facts = RequestFacts::new(Scheme::Https, "a.com", &opt);
    facts.origin = Some("https://app.example.com");
    assert_eq!(describe(out.table.resolve(&facts, &req)), "204");
    facts.origin = Some("https://evil.example.com");
    assert_eq!(describe(out.table.resolve(&facts, &req)), "301 https://x/");
}

// ------------------------------------------------ fail closed

#[test]
fn unenforced_access_control_answers_503_and_says_why() {
    let out = nginx(&[
        ingress(
            "guarded",
            "2024-01-01T00:00:00Z",
            &[("auth-proxy-set-headers", "ns/auth-headers")],
            json!({ "rules": [rule("a.com", &[("/admin/", "Prefix", "admin")])] }),
        ),
        ingress(
            "open",
            "2024-01-02T00:00:00Z",
            &[],
            json!({ "rules": [rule("a.com", &[("/", "Prefix", "web")])] }),
        ),
    ]);
    let t = &out.table;
    assert_eq!(get(t, "a.com", "/admin/x"), "503", "never served open");
    assert_eq!(
        get(t, "a.com", "/admin"),
        "301 http://a.com/admin/",
        "nginx's 301 still first"
    );
    assert_eq!(
        get(t, "a.com", "/other"),
        "fwd web /other",
        "the rest of the host is served"
    );
    let refused: Vec<_> = out
        .problems
        .iter()
        .filter(|p| matches!(p.kind, ProblemKind::Refused(_)))
        .collect();
    assert_eq!(refused.len(), 1);
    let text = refused[0].to_string();
    assert!(
        text.contains("ns/guarded")
            && text.contains("auth-proxy-set-headers")
            && text.contains("503"),
        "{text}"
    );
}

#[test]
fn client_certificate_annotations_deny_the_whole_host() {
    let out = nginx(&[
        ingress(
            "mtls",
            "2024-01-01T00:00:00Z",
            &[("auth-tls-secret", "ns/ca")],
            json!({ "rules": [rule("a.com", &[("/secure", "Prefix", "secure")])] }),
        ),
        ingress(
            "open",
            "2024-01-02T00:00:00Z",
            &[],
            json!({ "rules": [rule("a.com", &[("/", "Prefix", "web")]), rule("b.com", &[("/", "Prefix", "b")])] }),
        ),
    ]);
    let t = &out.table;
    assert_eq!(get(t, "a.com", "/secure"), "503");
    assert_eq!(
        get(t, "a.com", "/other"),
        "503",
        "auth-tls applies to the whole host in ingress-nginx"
    );
    assert_eq!(get(t, "b.com", "/other"), "fwd b /other");
}

#[test]
fn configmap_access_control_refuses_every_ingress() {
    // Enforced by the gateway, so only an unusable value refuses here.
    let (settings, _) = ControllerSettings::from_configmap(
        &[(
            "whitelist-source-range".to_owned(),
            "10.0.0.0/33".to_owned(),
        )]
        .into(),
    );
    let opts = BuildOptions {
        ingress_nginx: Some(AnnotationConfig {
            settings,
            ..AnnotationConfig::default()
        }),
    };
    let out = build_with(&[tls_ingress("web", &[], false)], &opts);
    assert_eq!(get(&out.table, "a.com", "/"), "503");
}

#[test]
fn snippets_are_reported_and_the_ingress_still_served() {
    let out = nginx(&[ingress(
        "i",
        "2024-01-01T00:00:00Z",
        &[
            ("configuration-snippet", "return 200;"),
            ("server-snippet", "x"),
        ],
        json!({ "rules": [rule("a.com", &[("/", "Prefix", "web")])] }),
    )]);
    assert_eq!(out.problems.len(), 2);
    assert!(out.problems[0].to_string().contains("never supported"));
    assert_eq!(get(&out.table, "a.com", "/"), "fwd web /");
}

// ------------------------------------------------ canaries

#[test]
fn canary_attaches_to_the_primary_backend() {
    let out = nginx(&[
        ingress(
            "main",
            "2024-01-01T00:00:00Z",
            &[],
            json!({ "rules": [rule("a.com", &[("/", "Prefix", "v1"), ("/api", "Prefix", "v1")]), rule("b.com", &[("/", "Prefix", "v1")])] }),
        ),
        ingress(
            "canary",
            "2024-01-02T00:00:00Z",
            &[("canary", "true"), ("canary-weight", "10")],
            json!({ "rules": [rule("a.com", &[("/", "Prefix", "v2")])] }),
        ),
        ingress(
            "lost",
            "2024-01-03T00:00:00Z",
            &[("canary", "true")],
            json!({ "rules": [rule("c.com", &[("/", "Prefix", "v3")])] }),
        ),
    ]);
    let t = &out.table;
    for (host, path) in [("a.com", "/"), ("a.com", "/api/x"), ("b.com", "/")] {
        let Lookup::Route(m) = t.lookup(host, &NormalizedPath::new(path).unwrap()) else {
            panic!()
        };
        let c = m
            .route
            .canary
            .as_ref()
            .expect("canary on every route to v1");
        assert_eq!(c.ingress.name, "canary");
        assert_eq!(c.policy.canary.as_ref().unwrap().weight, 10);
    }
    assert_eq!(t.len(), 3, "the canary adds no route");
    assert!(
        out.problems
            .iter()
            .any(|p| p.ingress.name == "lost" && matches!(p.kind, ProblemKind::Ignored(_)))
    );
}

// ------------------------------------------------ slow reference

#[derive(Debug, Clone)]
struct RefRule {
    path: String,
    ty: &'static str,
    regex: bool,
    backend: String,
}

/// ingress-nginx's locations and nginx's choice, written as directly as
/// possible: build the location list, then scan it.
fn reference(rules: &[RefRule], request: &str) -> String {
    let regex_host = rules.iter().any(|r| r.regex);
    let mut order: Vec<&RefRule> = rules.iter().collect();
    order.sort_by(|a, b| b.path.len().cmp(&a.path.len()).then(b.path.cmp(&a.path)));
    if regex_host {
        for r in &order {
            let re = regex::bytes::RegexBuilder::new(&format!("^{}", r.path))
                .case_insensitive(true)
                .unicode(false)
                .build()
                .unwrap();
            if re.is_match(request.as_bytes()) {
                return format!("fwd {}", r.backend);
            }
        }
        return "404".into();
    }
    // (name, exact?, backend)
    let mut locs: Vec<(String, bool, &str)> = Vec::new();
    for r in &order {
        match r.ty {
            "Exact" => locs.push((r.path.clone(), true, &r.backend)),
            "ImplementationSpecific" => locs.push((r.path.clone(), false, &r.backend)),
            _ if r.path == "/" => locs.push(("/".into(), false, &r.backend)),
            _ => {
                let norm = if r.path.ends_with('/') {
                    r.path.clone()
                } else {
                    format!("{}/", r.path)
                };
                locs.push((norm, false, &r.backend));
                if !rules.iter().any(|o| o.ty == "Exact" && o.path == r.path) {
                    locs.push((r.path.clone(), true, &r.backend));
                }
            }
        }
    }
    let first =
        |pred: &dyn Fn(&(String, bool, &str)) -> bool| locs.iter().find(|l| pred(l)).map(|l| l.2);
    if let Some(b) = first(&|l| l.1 && l.0 == request) {
        return format!("fwd {b}");
    }
    let named = locs.iter().any(|l| l.0 == request);
    if !named
        && locs
            .iter()
            .any(|l| l.0.len() > 1 && l.0 == format!("{request}/"))
    {
        return "301".into();
    }
    let best = locs
        .iter()
        .filter(|l| !l.1 && request.starts_with(&l.0))
        .max_by(|a, b| a.0.len().cmp(&b.0.len()).then(std::cmp::Ordering::Greater));
    best.map_or("404".into(), |l| format!("fwd {}", l.2))
}

fn rule_path() -> impl Strategy<Value = String> {
    let seg = prop::sample::select(vec!["a", "b", "ab", "A", "a.b", "[ab]", "a+"]);
    (prop::collection::vec(seg, 0..3), any::<bool>()).prop_map(|(segs, slash)| {
        let mut p = format!("/{}", segs.join("/"));
        if slash && !segs.is_empty() {
            p.push('/');
        }
        p
    })
}

fn request_path() -> impl Strategy<Value = String> {
    let seg = prop::sample::select(vec!["a", "b", "ab", "A", "abc", "a.b", "axb", "aa"]);
    (prop::collection::vec(seg, 0..4), any::<bool>()).prop_map(|(segs, slash)| {
        let mut p = format!("/{}", segs.join("/"));
        if slash && !segs.is_empty() {
            p.push('/');
        }
        p
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn nginx_lookup_agrees_with_reference(
        spec in prop::collection::vec(
            (rule_path(), prop::sample::select(vec!["Exact", "Prefix", "ImplementationSpecific"]), prop::bool::weighted(0.2)),
            1..8,
        ),
        requests in prop::collection::vec(request_path(), 1..12),
    ) {
        // One Ingress per rule, so use-regex is per rule; a second rule
        // with the same path and type would be a conflict.
        let mut rules: Vec<RefRule> = Vec::new();
        for (i, (path, ty, regex)) in spec.into_iter().enumerate() {
            if !rules.iter().any(|r| r.path == path && r.ty == ty) {
                rules.push(RefRule { path, ty, regex, backend: format!("b{i}") });
            }
        }
        let ings: Vec<Ingress> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let ann: &[(&str, &str)] = if r.regex { &[("use-regex", "true")] } else { &[] };
                ingress(&format!("i{i}"), &format!("2024-01-01T00:00:{i:02}Z"), ann, json!({ "rules": [rule("h.com", &[(&r.path, r.ty, &r.backend)])] }))
            })
            .collect();
        let out = nginx(&ings);
        prop_assert!(out.problems.is_empty(), "{:?}", out.problems);
        for req in requests {
            let want = reference(&rules, &req);
            let got = get(&out.table, "h.com", &req);
            let got = if got.starts_with("301 ") { "301".to_owned() } else { got.rsplit_once(' ').map_or(got.clone(), |(a, _)| a.to_owned()) };
            prop_assert_eq!(got, want, "request {} rules {:?}", req, rules);
        }
    }
}

// ------------------------------------------------ cost

#[test]
fn nginx_tables_of_ten_thousand_rules_build_and_resolve_in_bounds() {
    // 1,000 hosts × 10 paths; every 10th host is a regex host.
    let ings: Vec<Ingress> = (0..1000)
        .map(|i| {
            let regex = i % 10 == 0;
            let paths: Vec<(String, &str, String)> = (0..10)
                .map(|j| {
                    let p = if regex {
                        format!("/svc{j}/v[0-9]+/(.*)")
                    } else {
                        format!("/svc{j}/v{}/items", j % 4)
                    };
                    let ty = if regex {
                        "ImplementationSpecific"
                    } else if j % 3 == 0 {
                        "Exact"
                    } else {
                        "Prefix"
                    };
                    (p, ty, format!("s{i}-{j}"))
                })
                .collect();
            let refs: Vec<(&str, &str, &str)> = paths
                .iter()
                .map(|(p, t, b)| (p.as_str(), *t, b.as_str()))
                .collect();
            let ann: &[(&str, &str)] = if regex {
                &[("rewrite-target", "/$1")]
            } else {
                &[]
            };
            ingress(
                &format!("ing{i}"),
                "2024-01-01T00:00:00Z",
                ann,
                json!({ "rules": [rule(&format!("h{i}.example.com"), &refs)] }),
            )
        })
        .collect();
    let start = Instant::now();
    let out = nginx(&ings);
    let build_ms = start.elapsed().as_secs_f64() * 1e3;
    assert!(
        out.problems.is_empty(),
        "{:?}",
        &out.problems[..out.problems.len().min(3)]
    );
    assert_eq!(out.table.len(), 10_000);
    let reqs: Vec<(String, sluice_ingress::routes::NormalizedRequest)> = (0..1000)
        .map(|k| {
            let i = (k * 7919) % 1000;
            let j = k % 10;
            let path = if i % 10 == 0 {
                format!("/svc{j}/v2/items/{k}")
            } else {
                format!("/svc{j}/v{}/items/{k}", j % 4)
            };
            (format!("h{i}.example.com"), normalize(&path).unwrap())
        })
        .collect();
    let m = http::Method::GET;
    let start = Instant::now();
    let mut forwards = 0;
    for _ in 0..3 {
        for (h, r) in &reqs {
            if matches!(t_resolve(&out.table, h, r, &m), Resolution::Forward(_)) {
                forwards += 1;
            }
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / 3000.0;
    // Requests to regex hosts all have j = 0 and match; of the others
    // (j = 1..9, 100 each) the Prefix ones hit and the Exact ones miss.
    assert_eq!(
        forwards,
        3 * (100 + 600),
        "Prefix and regex rules hit, Exact ones miss"
    );
    // Generous debug-build bounds (regex compile dominates the build).
    assert!(build_ms <= 20_000.0, "build took {build_ms:.0} ms");
    assert!(ns <= 100_000.0, "resolve took {ns:.0} ns");
    eprintln!("debug: nginx build {build_ms:.0} ms for 10k rules, {ns:.0} ns/resolve");
}

fn t_resolve<'t>(
    t: &'t RouteTable,
    h: &str,
    r: &'t sluice_ingress::routes::NormalizedRequest,
    m: &http::Method,
) -> Resolution<'t> {
    t.resolve(&RequestFacts::new(Scheme::Https, h, m), r)
}
