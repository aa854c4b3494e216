//! Route semantics of `sluice_ingress::routes`: Kubernetes objects (built
//! with `serde_json::json!`) → route table → lookups.

use std::time::Instant;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use proptest::prelude::*;
use serde_json::{Value, json};
use sluice_ingress::routes::build::{BackendError, SSL_REDIRECT_ANNOTATION};
use sluice_ingress::routes::class::DEFAULT_CONTROLLER;
use sluice_ingress::routes::host::HostError;
use sluice_ingress::routes::path::{self as rpath, PathError};
use sluice_ingress::routes::{
    Backend, BuildOutput, ClassSelector, ConflictKind, HostPattern, IngressRef, Lookup,
    NormalizedPath, PathType, PortRef, ProblemKind, Reject, RouteTable, SecretRef, Selection,
    build, normalize,
};

// ---------------------------------------------------------------- fixtures

const T0: &str = "2024-01-01T00:00:00Z";
const T1: &str = "2024-01-02T00:00:00Z";
const T2: &str = "2024-01-03T00:00:00Z";

fn ingress(ns: &str, name: &str, created: &str, spec: Value) -> Ingress {
    ingress_with(ns, name, created, json!({}), spec)
}

fn ingress_with(ns: &str, name: &str, created: &str, annotations: Value, spec: Value) -> Ingress {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "namespace": ns,
            "name": name,
            "creationTimestamp": created,
            "annotations": annotations,
        },
        "spec": spec,
    }))
    .expect("valid Ingress fixture")
}

/// A service backend on port 80.
fn svc(name: &str) -> Value {
    json!({ "service": { "name": name, "port": { "number": 80 } } })
}

/// An HTTP path whose backend service is named `backend`.
fn path(p: &str, ty: &str, backend: &str) -> Value {
    json!({ "path": p, "pathType": ty, "backend": svc(backend) })
}

/// A rule with an optional host.
fn rule(host: Option<&str>, paths: Vec<Value>) -> Value {
    match host {
        Some(h) => json!({ "host": h, "http": { "paths": paths } }),
        None => json!({ "http": { "paths": paths } }),
    }
}

fn table_of(ings: &[Ingress]) -> BuildOutput {
    build(ings)
}

fn np(p: &str) -> NormalizedPath {
    NormalizedPath::new(p).unwrap_or_else(|e| panic!("{p:?}: {e}"))
}

/// The backend service name a request reaches: `Some(name)` for a rule,
/// `Some("default:<name>")` for the default backend, `None` for NoRoute.
fn reach(t: &RouteTable, host: &str, p: &str) -> Option<String> {
    match t.lookup(host, &np(p)) {
        Lookup::Route(m) => Some(backend_name(&m.route.backend)),
        Lookup::Default(d) => Some(format!("default:{}", backend_name(&d.backend))),
        Lookup::NoRoute => None,
    }
}

fn backend_name(b: &Backend) -> String {
    match b {
        Backend::Service { name, .. } => name.clone(),
        Backend::Resource { name, .. } => format!("resource:{name}"),
    }
}

/// The rule path and type a request matches.
fn matched(t: &RouteTable, host: &str, p: &str) -> Option<(String, PathType)> {
    match t.lookup(host, &np(p)) {
        Lookup::Route(m) => Some((m.route.path.clone(), m.route.path_type)),
        _ => None,
    }
}

/// One host-less Ingress with the given (path, type) rules; backends are
/// named `"{type}:{path}"`.
fn paths_table(rules: &[(&str, &str)]) -> RouteTable {
    let paths = rules
        .iter()
        .map(|(p, ty)| path(p, ty, &format!("{ty}:{p}")))
        .collect();
    let out = table_of(&[ingress(
        "ns",
        "i",
        T0,
        json!({ "rules": [rule(None, paths)] }),
    )]);
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    assert!(out.conflicts.is_empty(), "{:?}", out.conflicts);
    out.table
}

// ---------------------------------------------------- the docs' example table

#[test]
fn docs_table_every_row() {
    // (rule paths, request, expected "type:path" or None)
    type Row = (
        &'static [(&'static str, &'static str)],
        &'static str,
        Option<&'static str>,
    );
    let rows: &[Row] = &[
        (&[("/", "Prefix")], "/", Some("Prefix:/")),
        (&[("/", "Prefix")], "/anything/at/all", Some("Prefix:/")),
        (&[("/", "Prefix")], "/x/", Some("Prefix:/")),
        (&[("/foo", "Exact")], "/foo", Some("Exact:/foo")),
        (&[("/foo", "Exact")], "/bar", None),
        (&[("/foo", "Exact")], "/foo/", None),
        (&[("/foo/", "Exact")], "/foo", None),
        (&[("/foo", "Prefix")], "/foo", Some("Prefix:/foo")),
        (&[("/foo", "Prefix")], "/foo/", Some("Prefix:/foo")),
        (&[("/foo/", "Prefix")], "/foo", Some("Prefix:/foo/")),
        (&[("/foo/", "Prefix")], "/foo/", Some("Prefix:/foo/")),
        (&[("/aaa/bb", "Prefix")], "/aaa/bbb", None),
        (
            &[("/aaa/bbb/", "Prefix")],
            "/aaa/bbb",
            Some("Prefix:/aaa/bbb/"),
        ),
        (
            &[("/aaa/bbb", "Prefix")],
            "/aaa/bbb/",
            Some("Prefix:/aaa/bbb"),
        ),
        (
            &[("/aaa/bbb", "Prefix")],
            "/aaa/bbb/ccc",
            Some("Prefix:/aaa/bbb"),
        ),
        (&[("/aaa/bbb", "Prefix")], "/aaa/bbbxyz", None),
        (
            &[("/", "Prefix"), ("/aaa", "Prefix")],
            "/aaa/ccc",
            Some("Prefix:/aaa"),
        ),
        (
            &[("/", "Prefix"), ("/aaa", "Prefix"), ("/aaa/bbb", "Prefix")],
            "/aaa/bbb",
            Some("Prefix:/aaa/bbb"),
        ),
        (
            &[("/", "Prefix"), ("/aaa", "Prefix"), ("/aaa/bbb", "Prefix")],
            "/ccc",
            Some("Prefix:/"),
        ),
        (&[("/aaa", "Prefix")], "/ccc", None),
        (
            &[("/foo", "Prefix"), ("/foo", "Exact")],
            "/foo",
            Some("Exact:/foo"),
        ),
        (
            &[("/foo", "Exact"), ("/foo", "Prefix")],
            "/foo",
            Some("Exact:/foo"),
        ),
    ];
    for (rules, request, want) in rows {
        let t = paths_table(rules);
        assert_eq!(
            reach(&t, "any.example", request).as_deref(),
            *want,
            "rules {rules:?} request {request}"
        );
        // Every "yes" row agrees with the pure matcher.
        if let Some(w) = want {
            let (ty, p) = w.split_once(':').unwrap();
            assert!(rpath::matches(PathType::parse(ty).unwrap(), p, request));
        }
    }
}

#[test]
fn no_match_goes_to_default_backend_row() {
    // "/aaa Prefix, request /ccc: no, goes to the default backend".
    let ing = ingress(
        "ns",
        "i",
        T0,
        json!({
            "defaultBackend": svc("fallback"),
            "rules": [rule(None, vec![path("/aaa", "Prefix", "aaa")])],
        }),
    );
    let t = table_of(&[ing]).table;
    assert_eq!(reach(&t, "h", "/ccc").as_deref(), Some("default:fallback"));
    assert_eq!(reach(&t, "h", "/aaa/x").as_deref(), Some("aaa"));
}

// ---------------------------------------------------------------- precedence

#[test]
fn longest_path_wins_regardless_of_order() {
    let rules = [
        ("/", "Prefix"),
        ("/a", "Prefix"),
        ("/a/b", "Prefix"),
        ("/a/b/c", "Exact"),
        ("/a/b/c/d", "Prefix"),
    ];
    let cases = [
        ("/", "Prefix:/"),
        ("/a", "Prefix:/a"),
        ("/a/bb", "Prefix:/a"),
        ("/a/b/c", "Exact:/a/b/c"),
        ("/a/b/c/", "Prefix:/a/b"),
        ("/a/b/c/x", "Prefix:/a/b"),
        ("/a/b/c/d/e", "Prefix:/a/b/c/d"),
    ];
    // Every rotation and the reverse: YAML order is irrelevant.
    let mut orders: Vec<Vec<(&str, &str)>> = (0..rules.len())
        .map(|k| {
            let mut r = rules.to_vec();
            r.rotate_left(k);
            r
        })
        .collect();
    orders.push(rules.iter().rev().copied().collect());
    for order in orders {
        let t = paths_table(&order);
        for (req, want) in cases {
            assert_eq!(
                reach(&t, "h", req).as_deref(),
                Some(want),
                "{order:?} {req}"
            );
        }
    }
}

#[test]
fn trailing_slash_prefix_twins_and_exact() {
    // `/foo` and `/foo/` both match `/foo`; `/foo/` wins.
    let t = paths_table(&[("/foo", "Prefix"), ("/foo/", "Prefix")]);
    assert_eq!(reach(&t, "h", "/foo").as_deref(), Some("Prefix:/foo/"));
    assert_eq!(reach(&t, "h", "/foo/x").as_deref(), Some("Prefix:/foo/"));
    // An Exact match beats a Prefix even when the prefix is spelled longer.
    let t = paths_table(&[("/foo/", "Prefix"), ("/foo", "Exact")]);
    assert_eq!(reach(&t, "h", "/foo").as_deref(), Some("Exact:/foo"));
    assert_eq!(reach(&t, "h", "/foo/").as_deref(), Some("Prefix:/foo/"));
}

#[test]
fn implementation_specific_is_prefix() {
    let t = paths_table(&[("/api", "ImplementationSpecific"), ("/api/v1", "Prefix")]);
    assert_eq!(
        reach(&t, "h", "/api").as_deref(),
        Some("ImplementationSpecific:/api")
    );
    assert_eq!(
        reach(&t, "h", "/api/x").as_deref(),
        Some("ImplementationSpecific:/api")
    );
    assert_eq!(reach(&t, "h", "/apix"), None);
    assert_eq!(
        reach(&t, "h", "/api/v1/x").as_deref(),
        Some("Prefix:/api/v1")
    );
    assert_eq!(
        matched(&t, "h", "/api/"),
        Some(("/api".to_owned(), PathType::ImplementationSpecific))
    );
    // Without a path it is `/`.
    let ing = ingress(
        "ns",
        "i",
        T0,
        json!({ "rules": [{ "http": { "paths": [
            { "pathType": "ImplementationSpecific", "backend": svc("root") }
        ] } }] }),
    );
    let out = table_of(&[ing]);
    assert!(out.problems.is_empty());
    assert_eq!(reach(&out.table, "h", "/x/y").as_deref(), Some("root"));
}

#[test]
fn paths_are_case_sensitive() {
    let t = paths_table(&[("/Foo", "Prefix"), ("/bar", "Exact")]);
    assert_eq!(reach(&t, "h", "/Foo/x").as_deref(), Some("Prefix:/Foo"));
    assert_eq!(reach(&t, "h", "/foo/x"), None);
    assert_eq!(reach(&t, "h", "/BAR"), None);
}

#[test]
fn escaped_unreserved_in_rule_paths_are_canonical() {
    let t = paths_table(&[("/%7Euser", "Prefix")]);
    let req = normalize("/%7euser/x").unwrap();
    assert!(matches!(t.lookup("h", &req.path), Lookup::Route(m) if m.route.path == "/~user"));
}

// --------------------------------------------------------------------- hosts

fn hosts_table() -> RouteTable {
    let ing = ingress(
        "ns",
        "i",
        T0,
        json!({
            "defaultBackend": svc("fallback"),
            "rules": [
                rule(Some("foo.com"), vec![path("/", "Prefix", "exact-foo")]),
                rule(Some("*.foo.com"), vec![path("/", "Prefix", "wild-foo")]),
                rule(Some("bar.foo.com"), vec![path("/only", "Prefix", "exact-bar")]),
                rule(None, vec![path("/", "Prefix", "any")]),
            ],
        }),
    );
    let out = table_of(&[ing]);
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    out.table
}

#[test]
fn precise_hosts_fold_case_strip_port_and_dot() {
    let t = hosts_table();
    for h in [
        "foo.com",
        "FOO.com",
        "foo.com:8080",
        "foo.com.",
        "Foo.Com.:443",
    ] {
        assert_eq!(reach(&t, h, "/x").as_deref(), Some("exact-foo"), "{h}");
    }
}

#[test]
fn wildcard_matches_exactly_one_label() {
    let t = hosts_table();
    assert_eq!(reach(&t, "baz.foo.com", "/").as_deref(), Some("wild-foo"));
    assert_eq!(
        reach(&t, "BAZ.foo.com:80", "/").as_deref(),
        Some("wild-foo")
    );
    assert_eq!(reach(&t, "a.baz.foo.com", "/").as_deref(), Some("any"));
    assert_eq!(reach(&t, "xfoo.com", "/").as_deref(), Some("any"));
}

#[test]
fn hostless_rules_match_any_host() {
    let t = hosts_table();
    for h in [
        "other.org",
        "",
        "10.0.0.1:80",
        "[::1]:8080",
        "bad host",
        "localhost",
    ] {
        assert_eq!(reach(&t, h, "/").as_deref(), Some("any"), "{h:?}");
    }
}

#[test]
fn precise_over_wildcard_over_hostless_without_fallthrough() {
    let t = hosts_table();
    // bar.foo.com has precise rules: the wildcard and host-less rules are
    // not consulted, a miss goes to the default backend.
    assert_eq!(
        reach(&t, "bar.foo.com", "/only/x").as_deref(),
        Some("exact-bar")
    );
    assert_eq!(
        reach(&t, "bar.foo.com", "/other").as_deref(),
        Some("default:fallback")
    );
    // A wildcard host with a path miss does not fall through either.
    let ing = ingress(
        "ns",
        "w",
        T0,
        json!({ "rules": [
            rule(Some("*.a.com"), vec![path("/api", "Prefix", "wild")]),
            rule(None, vec![path("/", "Prefix", "any")]),
        ] }),
    );
    let t = table_of(&[ing]).table;
    assert_eq!(reach(&t, "x.a.com", "/api").as_deref(), Some("wild"));
    assert_eq!(reach(&t, "x.a.com", "/web"), None);
    assert_eq!(reach(&t, "a.com", "/web").as_deref(), Some("any"));
}

// ---------------------------------------------- default backend and NoRoute

#[test]
fn no_rules_no_default_is_no_route() {
    let t = paths_table(&[("/a", "Exact")]);
    assert_eq!(t.lookup("h", &np("/b")), Lookup::NoRoute);
    let empty = table_of(&[]).table;
    assert!(empty.is_empty());
    assert_eq!(empty.lookup("h", &np("/")), Lookup::NoRoute);
}

#[test]
fn default_backend_only_ingress_catches_everything() {
    let ing = ingress("ns", "d", T0, json!({ "defaultBackend": svc("fallback") }));
    let out = table_of(&[ing]);
    assert!(out.table.is_empty());
    assert_eq!(
        reach(&out.table, "x.com", "/a/b").as_deref(),
        Some("default:fallback")
    );
    let d = out.table.default_backend().unwrap();
    assert_eq!(d.ingress, IngressRef::new("ns", "d"));
}

#[test]
fn oldest_default_backend_wins() {
    let young = ingress("a", "young", T2, json!({ "defaultBackend": svc("young") }));
    let old = ingress("z", "old", T0, json!({ "defaultBackend": svc("old") }));
    let mid = ingress("m", "mid", T1, json!({ "defaultBackend": svc("mid") }));
    let out = table_of(&[young, old, mid]);
    assert_eq!(reach(&out.table, "h", "/").as_deref(), Some("default:old"));
    let losers: Vec<_> = out
        .conflicts
        .iter()
        .map(|c| c.loser.name.as_str())
        .collect();
    assert_eq!(losers, ["mid", "young"]);
    assert!(
        out.conflicts
            .iter()
            .all(|c| c.kind == ConflictKind::DefaultBackend
                && c.winner == IngressRef::new("z", "old"))
    );
}

// ------------------------------------------------------------------ backends

#[test]
fn backends_named_numbered_and_resource() {
    let ing = ingress(
        "shop",
        "i",
        T0,
        json!({ "rules": [rule(None, vec![
            json!({ "path": "/num", "pathType": "Prefix",
                    "backend": { "service": { "name": "web", "port": { "number": 8080 } } } }),
            json!({ "path": "/named", "pathType": "Prefix",
                    "backend": { "service": { "name": "web", "port": { "name": "http" } } } }),
            json!({ "path": "/bucket", "pathType": "Prefix",
                    "backend": { "resource": { "apiGroup": "k8s.example.com",
                                               "kind": "StorageBucket", "name": "assets" } } }),
            json!({ "path": "/core", "pathType": "Prefix",
                    "backend": { "resource": { "kind": "ConfigMap", "name": "page" } } }),
        ])] }),
    );
    let out = table_of(&[ing]);
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    let backend = |p: &str| match out.table.lookup("h", &np(p)) {
        Lookup::Route(m) => m.route.backend.clone(),
        other => panic!("{p}: {other:?}"),
    };
    assert_eq!(
        backend("/num"),
        Backend::Service {
            namespace: "shop".into(),
            name: "web".into(),
            port: PortRef::Number(8080)
        }
    );
    assert_eq!(
        backend("/named/x"),
        Backend::Service {
            namespace: "shop".into(),
            name: "web".into(),
            port: PortRef::Name("http".into())
        }
    );
    assert_eq!(
        backend("/bucket/img.png"),
        Backend::Resource {
            namespace: "shop".into(),
            api_group: Some("k8s.example.com".into()),
            kind: "StorageBucket".into(),
            name: "assets".into()
        }
    );
    assert_eq!(
        backend("/bucket").to_string(),
        "resource StorageBucket.k8s.example.com shop/assets"
    );
    assert!(matches!(
        backend("/core"),
        Backend::Resource {
            api_group: None,
            ..
        }
    ));
    assert_eq!(backend("/named").to_string(), "service shop/web:http");
}

#[test]
fn resource_default_backend() {
    let ing = ingress(
        "ns",
        "i",
        T0,
        json!({ "defaultBackend": { "resource": { "apiGroup": "x.io", "kind": "Bucket", "name": "b" } } }),
    );
    let out = table_of(&[ing]);
    assert_eq!(
        reach(&out.table, "h", "/").as_deref(),
        Some("default:resource:b")
    );
}

// -------------------------------------------------------------- path hygiene

fn attack_table() -> RouteTable {
    paths_table(&[("/public", "Prefix"), ("/admin", "Prefix"), ("/", "Prefix")])
}

/// Normalizes like the gateway, then looks up; `Err` is a 400.
fn gateway(t: &RouteTable, raw: &str) -> Result<Option<String>, Reject> {
    let req = normalize(raw)?;
    Ok(match t.lookup("h", &req.path) {
        Lookup::Route(m) => Some(backend_name(&m.route.backend)),
        Lookup::Default(_) => Some("default".into()),
        Lookup::NoRoute => None,
    })
}

#[test]
fn traversal_reaches_what_the_resolved_path_reaches() {
    let t = attack_table();
    let admin = Some("Prefix:/admin".to_owned());
    for raw in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin",
        "/public/.%2e/admin",
        "/public/%2e./admin",
        "/public/./../admin",
        "//admin",
        "/./admin",
        "/public/../../admin",
        "/public//..//admin",
        "/%61dmin",
        "/public/../admin?next=/public",
    ] {
        assert_eq!(gateway(&t, raw), Ok(admin.clone()), "{raw}");
    }
    // And the other way round: nothing dressed up as /public/... escapes it.
    assert_eq!(
        gateway(&t, "/public/x/../y"),
        Ok(Some("Prefix:/public".into()))
    );
    assert_eq!(
        gateway(&t, "/admin/../public"),
        Ok(Some("Prefix:/public".into()))
    );
}

#[test]
fn hygiene_rejects_are_typed() {
    let t = attack_table();
    let cases = [
        ("/admin%2F..", Reject::EncodedSlash),
        ("/public%2f..%2fadmin", Reject::EncodedSlash),
        ("/a%5Cb", Reject::EncodedBackslash),
        ("/a%5cb", Reject::EncodedBackslash),
        ("/a\\b", Reject::Backslash),
        ("/public\\..\\admin", Reject::Backslash),
        ("/admin%00", Reject::Nul),
        ("/admin%00.html", Reject::Nul),
        ("/a%zz", Reject::InvalidPercentEncoding),
        ("/a%2", Reject::InvalidPercentEncoding),
        ("/public/..;/admin", Reject::DotSegmentParameter),
        ("*", Reject::NotAbsolute),
        ("", Reject::NotAbsolute),
    ];
    for (raw, want) in cases {
        assert_eq!(gateway(&t, raw), Err(want), "{raw:?}");
    }
    // Query strings are not the path's business.
    let r = normalize("/a?x=%2F%00..\\").unwrap();
    assert_eq!(
        (r.path.as_str(), r.query.as_deref()),
        ("/a", Some("x=%2F%00..\\"))
    );
}

fn path_input() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "/", "/", "/", ".", "..", "%2e", "%2E", "a", "b", "%41", "%7e", "~", "%2f", "%5C", "\\",
        "%00", "%zz", "%", ";", "?", "%3a", "//", "x y", "é", "#",
    ]);
    (any::<bool>(), prop::collection::vec(token, 0..16)).prop_map(|(lead, toks)| {
        let body = toks.concat();
        if lead { format!("/{body}") } else { body }
    })
}

fn check_normal_form(input: &str) -> Result<(), TestCaseError> {
    if let Ok(req) = normalize(input) {
        let p = req.path.as_str();
        prop_assert!(p.starts_with('/'), "{input:?} -> {p:?}");
        prop_assert!(!p.contains("//"), "{input:?} -> {p:?}");
        prop_assert!(
            p.split('/').all(|s| s != "." && s != ".."),
            "{input:?} -> {p:?}"
        );
        let again = NormalizedPath::new(p);
        prop_assert_eq!(again.as_ref(), Ok(&req.path), "not idempotent: {:?}", input);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn normalized_paths_are_canonical_and_idempotent(input in path_input()) {
        check_normal_form(&input)?;
    }

    #[test]
    fn normalized_arbitrary_strings(input in ".*") {
        check_normal_form(&input)?;
        check_normal_form(&format!("/{input}"))?;
    }
}

// ---------------------------------- table lookup vs a brute-force reference

/// The spec written as directly as possible: among all rules of the
/// selected host that match, Exact first, then the longest rule path.
fn reference<'a>(rules: &'a [(String, PathType)], request: &str) -> Option<&'a (String, PathType)> {
    rules
        .iter()
        .filter(|(p, ty)| rpath::matches(*ty, p, request))
        .max_by_key(|(p, ty)| (*ty == PathType::Exact, p.len()))
}

fn rule_path() -> impl Strategy<Value = String> {
    let seg = prop::sample::select(vec!["a", "b", "aa", "ab"]);
    (prop::collection::vec(seg, 0..4), any::<bool>()).prop_map(|(segs, slash)| {
        let mut p = String::from("/");
        p.push_str(&segs.join("/"));
        if slash && !segs.is_empty() {
            p.push('/');
        }
        p
    })
}

fn path_type() -> impl Strategy<Value = PathType> {
    prop::sample::select(vec![
        PathType::Exact,
        PathType::Prefix,
        PathType::ImplementationSpecific,
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn lookup_agrees_with_reference(
        rules in prop::collection::vec((rule_path(), path_type()), 0..12),
        requests in prop::collection::vec(rule_path(), 1..12),
    ) {
        // Drop duplicates of path + effective kind (those are conflicts).
        let mut uniq: Vec<(String, PathType)> = Vec::new();
        for (p, ty) in rules {
            if !uniq.iter().any(|(q, t)| *q == p && t.match_kind() == ty.match_kind()) {
                uniq.push((p, ty));
            }
        }
        let paths: Vec<Value> = uniq
            .iter()
            .map(|(p, ty)| path(p, ty.as_str(), &format!("{ty}:{p}")))
            .collect();
        let out = table_of(&[ingress("ns", "i", T0, json!({ "rules": [rule(None, paths)] }))]);
        prop_assert!(out.problems.is_empty() && out.conflicts.is_empty());
        for req in requests {
            let want = reference(&uniq, &req).cloned();
            let got = matched(&out.table, "h", &req);
            prop_assert_eq!(got, want, "request {}", req);
        }
    }
}

// ---------------------------------------------------------- class selection

fn class(name: &str, controller: &str, default: bool) -> IngressClass {
    let annotations = if default {
        json!({ "ingressclass.kubernetes.io/is-default-class": "true" })
    } else {
        json!({})
    };
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": { "name": name, "annotations": annotations },
        "spec": { "controller": controller },
    }))
    .unwrap()
}

fn classed(annotation: Option<&str>, class_name: Option<&str>) -> Ingress {
    let annotations = match annotation {
        Some(a) => json!({ "kubernetes.io/ingress.class": a }),
        None => json!({}),
    };
    let spec = match class_name {
        Some(c) => json!({ "ingressClassName": c, "defaultBackend": svc("x") }),
        None => json!({ "defaultBackend": svc("x") }),
    };
    ingress_with("ns", "i", T0, annotations, spec)
}

#[test]
fn class_selection_matrix() {
    use Selection::*;
    let classes = [
        class("sluice", DEFAULT_CONTROLLER, false),
        class("sluice-internal", DEFAULT_CONTROLLER, false),
        class("nginx", "k8s.io/ingress-nginx", true),
    ];
    let sel = ClassSelector::new(DEFAULT_CONTROLLER, false, &classes);
    let sel_flag = ClassSelector::new(DEFAULT_CONTROLLER, true, &classes);
    let default_classes = [
        class("sluice", DEFAULT_CONTROLLER, true),
        class("sluice-internal", DEFAULT_CONTROLLER, false),
        class("nginx", "k8s.io/ingress-nginx", false),
    ];
    let sel_default = ClassSelector::new(DEFAULT_CONTROLLER, false, &default_classes);
    assert!(sel.is_our_class("sluice") && sel.is_our_class("sluice-internal"));
    assert!(!sel.is_our_class("nginx") && !sel.has_default_class());
    assert!(sel_default.has_default_class());

    // (annotation, ingressClassName, plain, with flag, with our default)
    let matrix = [
        (
            None,
            Some("sluice"),
            OursByClassName,
            OursByClassName,
            OursByClassName,
        ),
        (
            None,
            Some("sluice-internal"),
            OursByClassName,
            OursByClassName,
            OursByClassName,
        ),
        (
            None,
            Some("nginx"),
            OtherByClassName,
            OtherByClassName,
            OtherByClassName,
        ),
        (
            None,
            Some("missing"),
            OtherByClassName,
            OtherByClassName,
            OtherByClassName,
        ),
        (
            Some("sluice"),
            None,
            OursByAnnotation,
            OursByAnnotation,
            OursByAnnotation,
        ),
        (
            Some("nginx"),
            None,
            OtherByAnnotation,
            OtherByAnnotation,
            OtherByAnnotation,
        ),
        // The legacy annotation takes precedence over ingressClassName.
        (
            Some("nginx"),
            Some("sluice"),
            OtherByAnnotation,
            OtherByAnnotation,
            OtherByAnnotation,
        ),
        (
            Some("sluice"),
            Some("nginx"),
            OursByAnnotation,
            OursByAnnotation,
            OursByAnnotation,
        ),
        // No class at all.
        (None, None, NoClass, OursWithoutClass, OursByDefaultClass),
        // Empty values count as unset.
        (
            Some(""),
            None,
            NoClass,
            OursWithoutClass,
            OursByDefaultClass,
        ),
        (
            None,
            Some(""),
            NoClass,
            OursWithoutClass,
            OursByDefaultClass,
        ),
        (
            Some(""),
            Some("sluice"),
            OursByClassName,
            OursByClassName,
            OursByClassName,
        ),
    ];
    for (ann, name, plain, flag, dflt) in matrix {
        let ing = classed(ann, name);
        assert_eq!(sel.select(&ing), plain, "{ann:?} {name:?}");
        assert_eq!(sel_flag.select(&ing), flag, "flag {ann:?} {name:?}");
        assert_eq!(sel_default.select(&ing), dflt, "default {ann:?} {name:?}");
        assert_eq!(sel.is_ours(&ing), plain.is_ours());
    }
}

#[test]
fn class_selection_controller_name_and_filter() {
    let classes = [
        class("a", "example.com/other", false),
        class("b", "acme.io/ingress-controller", true),
    ];
    // A custom controller name.
    let sel = ClassSelector::new("acme.io/ingress-controller", false, &classes);
    assert!(sel.is_ours(&classed(None, Some("b"))));
    assert!(!sel.is_ours(&classed(None, Some("a"))));
    assert!(sel.is_ours(&classed(None, None)));
    // The default controller owns nothing here; a default class of someone
    // else's does not make class-less Ingresses ours.
    let sel = ClassSelector::new(DEFAULT_CONTROLLER, false, &classes);
    assert!(!sel.is_ours(&classed(None, Some("b"))));
    assert!(!sel.is_ours(&classed(None, None)));
    // A class with no spec or no name is ignored.
    let odd: IngressClass = serde_json::from_value(json!({ "metadata": { "name": "c" } })).unwrap();
    let sel = ClassSelector::new(DEFAULT_CONTROLLER, false, [&odd]);
    assert!(!sel.is_our_class("c"));

    // Other classes are ignored entirely: they never reach the table.
    let classes = [class("sluice", DEFAULT_CONTROLLER, false)];
    let sel = ClassSelector::new(DEFAULT_CONTROLLER, false, &classes);
    let ours = ingress(
        "ns",
        "ours",
        T1,
        json!({ "ingressClassName": "sluice", "rules": [rule(None, vec![path("/", "Prefix", "ours")])] }),
    );
    let theirs = ingress(
        "ns",
        "theirs",
        T0,
        json!({ "ingressClassName": "nginx", "defaultBackend": svc("theirs"),
                "rules": [rule(None, vec![path("/", "Prefix", "theirs")])] }),
    );
    let ings = [theirs, ours];
    let out = build(sel.filter(&ings));
    assert!(out.conflicts.is_empty());
    assert_eq!(reach(&out.table, "h", "/").as_deref(), Some("ours"));
    assert!(out.table.default_backend().is_none());
}

// ----------------------------------------------------------------- conflicts

#[test]
fn oldest_wins_and_loser_is_reported() {
    let old = ingress(
        "b",
        "old",
        T0,
        json!({ "rules": [rule(Some("x.com"), vec![path("/api", "Prefix", "old")])] }),
    );
    let new = ingress(
        "a",
        "new",
        T1,
        json!({ "rules": [rule(Some("x.com"), vec![path("/api", "Prefix", "new")])] }),
    );
    for ings in [[old.clone(), new.clone()], [new.clone(), old.clone()]] {
        let out = table_of(&ings);
        assert_eq!(
            reach(&out.table, "x.com", "/api/v1").as_deref(),
            Some("old")
        );
        assert_eq!(out.conflicts.len(), 1);
        let c = &out.conflicts[0];
        assert_eq!(c.winner, IngressRef::new("b", "old"));
        assert_eq!(c.loser, IngressRef::new("a", "new"));
        assert_eq!(
            c.kind,
            ConflictKind::Path {
                host: Some(HostPattern::Exact("x.com".into())),
                path: "/api".into(),
                path_type: PathType::Prefix
            }
        );
        let msg = c.to_string();
        assert!(
            msg.contains("b/old") && msg.contains("a/new") && msg.contains("x.com"),
            "{msg}"
        );
        assert!(out.problems.is_empty());
    }
}

#[test]
fn same_timestamp_ties_break_on_namespace_then_name() {
    let mk = |ns: &str, name: &str| {
        ingress(
            ns,
            name,
            T0,
            json!({ "rules": [rule(None, vec![path("/x", "Exact", &format!("{ns}/{name}"))])] }),
        )
    };
    let ings = [mk("b", "a"), mk("a", "z"), mk("a", "y")];
    let out = table_of(&ings);
    assert_eq!(reach(&out.table, "h", "/x").as_deref(), Some("a/y"));
    let losers: Vec<String> = out.conflicts.iter().map(|c| c.loser.to_string()).collect();
    assert_eq!(losers, ["a/z", "b/a"]);
    assert!(
        out.conflicts
            .iter()
            .all(|c| c.winner == IngressRef::new("a", "y"))
    );
}

#[test]
fn missing_timestamp_sorts_after_timestamped() {
    let stamped = ingress(
        "z",
        "z",
        T2,
        json!({ "rules": [rule(None, vec![path("/", "Prefix", "stamped")])] }),
    );
    let mut unstamped = ingress(
        "a",
        "a",
        T0,
        json!({ "rules": [rule(None, vec![path("/", "Prefix", "unstamped")])] }),
    );
    unstamped.metadata.creation_timestamp = None;
    let out = table_of(&[unstamped, stamped]);
    assert_eq!(reach(&out.table, "h", "/").as_deref(), Some("stamped"));
    assert_eq!(out.conflicts[0].loser, IngressRef::new("a", "a"));
}

#[test]
fn different_paths_and_types_merge() {
    let a = ingress(
        "a",
        "a",
        T0,
        json!({ "rules": [rule(Some("x.com"), vec![path("/a", "Prefix", "a")])] }),
    );
    let b = ingress(
        "b",
        "b",
        T1,
        json!({ "rules": [
        rule(Some("x.com"), vec![path("/b", "Prefix", "b"), path("/a", "Exact", "b-exact")]),
        rule(Some("X.com"), vec![path("/c", "Prefix", "c")]),
    ] }),
    );
    let out = table_of(&[a, b]);
    assert!(out.conflicts.is_empty(), "{:?}", out.conflicts);
    let t = &out.table;
    assert_eq!(reach(t, "x.com", "/a/1").as_deref(), Some("a"));
    assert_eq!(reach(t, "x.com", "/a").as_deref(), Some("b-exact"));
    assert_eq!(reach(t, "x.com", "/b").as_deref(), Some("b"));
    assert_eq!(reach(t, "x.com", "/c").as_deref(), Some("c"));
    assert_eq!(t.len(), 4);
}

#[test]
fn prefix_and_implementation_specific_on_the_same_path_conflict() {
    let a = ingress(
        "a",
        "a",
        T0,
        json!({ "rules": [rule(None, vec![path("/p", "ImplementationSpecific", "a")])] }),
    );
    let b = ingress(
        "b",
        "b",
        T1,
        json!({ "rules": [rule(None, vec![path("/p", "Prefix", "b")])] }),
    );
    let out = table_of(&[a, b]);
    assert_eq!(reach(&out.table, "h", "/p").as_deref(), Some("a"));
    assert!(matches!(&out.conflicts[..], [c] if c.loser.name == "b"));
}

#[test]
fn duplicate_inside_one_ingress_first_wins() {
    let i = ingress(
        "n",
        "i",
        T0,
        json!({ "rules": [
        rule(Some("x.com"), vec![path("/d", "Exact", "first")]),
        rule(Some("x.com"), vec![path("/d", "Exact", "second")]),
    ] }),
    );
    let out = table_of(&[i]);
    assert_eq!(reach(&out.table, "x.com", "/d").as_deref(), Some("first"));
    assert!(matches!(&out.conflicts[..], [c] if c.winner == c.loser));
}

#[test]
fn same_path_on_different_hosts_is_no_conflict() {
    let a = ingress(
        "a",
        "a",
        T0,
        json!({ "rules": [rule(Some("a.com"), vec![path("/", "Prefix", "a")])] }),
    );
    let b = ingress(
        "b",
        "b",
        T1,
        json!({ "rules": [
        rule(Some("b.com"), vec![path("/", "Prefix", "b")]),
        rule(Some("*.a.com"), vec![path("/", "Prefix", "wa")]),
        rule(None, vec![path("/", "Prefix", "any")]),
    ] }),
    );
    let out = table_of(&[a, b]);
    assert!(out.conflicts.is_empty());
    assert_eq!(reach(&out.table, "a.com", "/").as_deref(), Some("a"));
    assert_eq!(reach(&out.table, "b.com", "/").as_deref(), Some("b"));
    assert_eq!(reach(&out.table, "w.a.com", "/").as_deref(), Some("wa"));
    assert_eq!(reach(&out.table, "c.com", "/").as_deref(), Some("any"));
}

// ------------------------------------------------------------ invalid input

#[test]
fn invalid_rules_are_reported_and_isolated() {
    let bad_paths = vec![
        path("relative", "Prefix", "bad"),
        path("/a//b", "Prefix", "bad"),
        path("/a/./b", "Exact", "bad"),
        path("/a/../b", "Prefix", "bad"),
        path("/a%2fb", "Prefix", "bad"),
        path("/a/..", "Prefix", "bad"),
        path("/a\\b", "ImplementationSpecific", "bad"),
        path("/ok", "Regex", "bad"),
        json!({ "pathType": "Prefix", "backend": svc("bad") }),
        json!({ "path": "/both", "pathType": "Prefix", "backend": {
            "service": { "name": "s", "port": { "number": 80 } },
            "resource": { "kind": "K", "name": "n" } } }),
        json!({ "path": "/neither", "pathType": "Prefix", "backend": {} }),
        json!({ "path": "/portboth", "pathType": "Prefix", "backend": {
            "service": { "name": "s", "port": { "number": 80, "name": "http" } } } }),
        json!({ "path": "/portneither", "pathType": "Prefix", "backend": {
            "service": { "name": "s", "port": {} } } }),
        json!({ "path": "/noport", "pathType": "Prefix", "backend": { "service": { "name": "s" } } }),
        json!({ "path": "/bigport", "pathType": "Prefix", "backend": {
            "service": { "name": "s", "port": { "number": 70000 } } } }),
        json!({ "path": "/negport", "pathType": "Prefix", "backend": {
            "service": { "name": "s", "port": { "number": -1 } } } }),
        json!({ "path": "/noname", "pathType": "Prefix", "backend": {
            "service": { "name": "", "port": { "number": 80 } } } }),
        json!({ "path": "/nokind", "pathType": "Prefix", "backend": {
            "resource": { "kind": "", "name": "n" } } }),
        path("/good", "Prefix", "good"),
    ];
    let ing = ingress(
        "ns",
        "mixed",
        T0,
        json!({ "rules": [
        rule(Some("*"), vec![path("/", "Prefix", "bad")]),
        rule(Some("10.0.0.1"), vec![path("/", "Prefix", "bad")]),
        rule(Some("a.*.com"), vec![path("/", "Prefix", "bad")]),
        rule(Some("x.com:80"), vec![path("/", "Prefix", "bad")]),
        rule(Some("under_score.com"), vec![path("/", "Prefix", "bad")]),
        rule(Some("x.com"), bad_paths),
    ] }),
    );
    let other = ingress(
        "ns",
        "fine",
        T1,
        json!({ "rules": [rule(Some("y.com"), vec![path("/", "Prefix", "fine")])] }),
    );
    let out = table_of(&[ing, other]);
    let t = &out.table;
    assert_eq!(t.len(), 2, "only /good and y.com survive");
    assert_eq!(reach(t, "x.com", "/good/1").as_deref(), Some("good"));
    assert_eq!(reach(t, "y.com", "/").as_deref(), Some("fine"));
    assert_eq!(reach(t, "x.com", "/ok"), None);
    assert!(out.conflicts.is_empty());

    let kinds: Vec<(&str, &ProblemKind)> = out
        .problems
        .iter()
        .map(|p| (p.field.as_str(), &p.kind))
        .collect();
    let host = |h: &str, error| ProblemKind::InvalidHost {
        host: h.into(),
        error,
    };
    let bad_path = |p: &str, error| ProblemKind::InvalidPath {
        path: p.into(),
        error,
    };
    let be = ProblemKind::InvalidBackend;
    let f = |i: usize| format!("spec.rules[5].http.paths[{i}]");
    let want: Vec<(String, ProblemKind)> = vec![
        (
            "spec.rules[0].host".into(),
            host("*", HostError::BareWildcard),
        ),
        (
            "spec.rules[1].host".into(),
            host("10.0.0.1", HostError::IpAddress),
        ),
        (
            "spec.rules[2].host".into(),
            host("a.*.com", HostError::MisplacedWildcard),
        ),
        (
            "spec.rules[3].host".into(),
            host("x.com:80", HostError::IpAddress),
        ),
        (
            "spec.rules[4].host".into(),
            host(
                "under_score.com",
                HostError::InvalidLabel("under_score".into()),
            ),
        ),
        (f(0), bad_path("relative", PathError::NotAbsolute)),
        (f(1), bad_path("/a//b", PathError::DoubleSlash)),
        (f(2), bad_path("/a/./b", PathError::DotSegment)),
        (f(3), bad_path("/a/../b", PathError::DotSegment)),
        (
            f(4),
            bad_path("/a%2fb", PathError::Hygiene(Reject::EncodedSlash)),
        ),
        (f(5), bad_path("/a/..", PathError::DotSegment)),
        (
            f(6),
            bad_path("/a\\b", PathError::Hygiene(Reject::Backslash)),
        ),
        (f(7), ProblemKind::InvalidPathType("Regex".into())),
        (f(8), bad_path("", PathError::Missing(PathType::Prefix))),
        (f(9), be(BackendError::BothServiceAndResource)),
        (f(10), be(BackendError::NeitherServiceNorResource)),
        (f(11), be(BackendError::BothPortNameAndNumber)),
        (f(12), be(BackendError::NeitherPortNameNorNumber)),
        (f(13), be(BackendError::MissingPort)),
        (f(14), be(BackendError::PortOutOfRange(70000))),
        (f(15), be(BackendError::PortOutOfRange(-1))),
        (f(16), be(BackendError::EmptyServiceName)),
        (f(17), be(BackendError::IncompleteResource)),
    ];
    let want: Vec<(&str, &ProblemKind)> = want.iter().map(|(f, k)| (f.as_str(), k)).collect();
    assert_eq!(kinds, want);
    assert!(
        out.problems
            .iter()
            .all(|p| p.ingress == IngressRef::new("ns", "mixed"))
    );
    let msg = out.problems[0].to_string();
    assert!(
        msg.starts_with("ingress ns/mixed: spec.rules[0].host: invalid host \"*\""),
        "{msg}"
    );
}

#[test]
fn nameless_and_specless_ingresses_do_not_break_the_build() {
    let nameless: Ingress = serde_json::from_value(json!({
        "metadata": { "namespace": "ns" },
        "spec": { "defaultBackend": svc("x") }
    }))
    .unwrap();
    let specless: Ingress = serde_json::from_value(json!({ "metadata": { "name": "s" } })).unwrap();
    let bad_default = ingress("ns", "bd", T0, json!({ "defaultBackend": {} }));
    let good = ingress("ns", "g", T1, json!({ "defaultBackend": svc("good") }));
    let out = table_of(&[nameless, specless, bad_default, good]);
    assert_eq!(reach(&out.table, "h", "/").as_deref(), Some("default:good"));
    let kinds: Vec<&ProblemKind> = out.problems.iter().map(|p| &p.kind).collect();
    assert_eq!(
        kinds,
        [
            &ProblemKind::MissingName,
            &ProblemKind::InvalidBackend(BackendError::NeitherServiceNorResource)
        ]
    );
    assert!(
        out.conflicts.is_empty(),
        "an invalid default backend does not win"
    );
}

// ----------------------------------------------------------------------- TLS

fn tls_ingress(
    ns: &str,
    name: &str,
    created: &str,
    annotations: Value,
    hosts: &[&str],
    tls: Value,
) -> Ingress {
    let rules: Vec<Value> = hosts
        .iter()
        .map(|h| {
            let host = (!h.is_empty()).then_some(*h);
            rule(host, vec![path("/", "Prefix", &format!("{name}:{h}"))])
        })
        .collect();
    ingress_with(
        ns,
        name,
        created,
        annotations,
        json!({ "rules": rules, "tls": tls }),
    )
}

fn secret(ns: &str, name: &str) -> Option<SecretRef> {
    Some(SecretRef {
        namespace: ns.into(),
        name: name.into(),
    })
}

#[test]
fn tls_hosts_map_to_secrets_and_redirect() {
    let ing = tls_ingress(
        "web",
        "site",
        T0,
        json!({}),
        &["a.com", "b.com", "x.wild.com", "plain.com", ""],
        json!([
            { "hosts": ["a.com", "B.com"], "secretName": "ab-cert" },
            { "hosts": ["*.wild.com"], "secretName": "wild-cert" },
        ]),
    );
    let out = table_of(&[ing]);
    assert!(out.problems.is_empty() && out.conflicts.is_empty());
    let t = &out.table;
    let m = |host: &str| match t.lookup(host, &np("/")) {
        Lookup::Route(m) => m,
        other => panic!("{host}: {other:?}"),
    };
    let a = m("a.com:80");
    assert_eq!(a.tls.unwrap().secret, secret("web", "ab-cert"));
    assert!(a.redirect_to_https());
    assert_eq!(m("b.com").tls.unwrap().secret, secret("web", "ab-cert"));
    let w = m("x.wild.com");
    assert_eq!(
        w.tls.unwrap().host,
        HostPattern::Wildcard("wild.com".into())
    );
    assert_eq!(w.tls.unwrap().secret, secret("web", "wild-cert"));
    assert!(w.redirect_to_https());
    // No TLS entry: no TLS, no redirect.
    let p = m("plain.com");
    assert!(p.tls.is_none() && !p.redirect_to_https());
    // TLS never applies to the host-less rule, even for a TLS host name.
    let any = m("other.com");
    assert!(any.route.host.is_none() && any.tls.is_none());
    // SNI lookup is independent of rules.
    assert_eq!(t.tls_for("A.COM").unwrap().secret, secret("web", "ab-cert"));
    assert_eq!(
        t.tls_for("y.wild.com").unwrap().secret,
        secret("web", "wild-cert")
    );
    assert!(t.tls_for("z.y.wild.com").is_none());
    assert!(t.tls_for("wild.com").is_none());
    let mut secrets: Vec<_> = t
        .tls_hosts()
        .filter_map(|h| h.secret.clone())
        .map(|s| s.name)
        .collect();
    secrets.sort();
    assert_eq!(secrets, ["ab-cert", "ab-cert", "wild-cert"]);
}

#[test]
fn tls_precise_entry_beats_wildcard_for_the_host() {
    let ing = tls_ingress(
        "n",
        "i",
        T0,
        json!({}),
        &["*.foo.com"],
        json!([
            { "hosts": ["*.foo.com"], "secretName": "wild" },
            { "hosts": ["bar.foo.com"], "secretName": "bar" },
        ]),
    );
    let t = table_of(&[ing]).table;
    // Routed by the wildcard rule, TLS by the request host.
    let Lookup::Route(m) = t.lookup("bar.foo.com", &np("/")) else {
        panic!()
    };
    assert_eq!(m.tls.unwrap().secret, secret("n", "bar"));
    let Lookup::Route(m) = t.lookup("baz.foo.com", &np("/")) else {
        panic!()
    };
    assert_eq!(m.tls.unwrap().secret, secret("n", "wild"));
}

#[test]
fn tls_oldest_wins_per_host() {
    let old = tls_ingress(
        "o",
        "old",
        T0,
        json!({}),
        &["a.com"],
        json!([{ "hosts": ["a.com"], "secretName": "old" }]),
    );
    let new = tls_ingress(
        "n",
        "new",
        T1,
        json!({}),
        &["b.com"],
        json!([{ "hosts": ["a.com", "b.com"], "secretName": "new" }]),
    );
    let out = table_of(&[new, old]);
    let t = &out.table;
    assert_eq!(t.tls_for("a.com").unwrap().secret, secret("o", "old"));
    assert_eq!(
        t.tls_for("a.com").unwrap().ingress,
        IngressRef::new("o", "old")
    );
    assert_eq!(t.tls_for("b.com").unwrap().secret, secret("n", "new"));
    assert_eq!(out.conflicts.len(), 1);
    let c = &out.conflicts[0];
    assert_eq!(
        (c.winner.name.as_str(), c.loser.name.as_str()),
        ("old", "new")
    );
    assert_eq!(
        c.kind,
        ConflictKind::Tls {
            host: HostPattern::Exact("a.com".into())
        }
    );
}

#[test]
fn tls_without_hosts_or_secret() {
    // No hosts: the Ingress's own rule hosts. No secretName: TLS with the
    // gateway's default certificate.
    let ing = tls_ingress(
        "n",
        "i",
        T0,
        json!({}),
        &["a.com", "*.b.com", ""],
        json!([{ "secretName": "mine" }, { "hosts": ["c.com"] }]),
    );
    let out = table_of(&[ing]);
    assert!(out.problems.is_empty() && out.conflicts.is_empty());
    let t = &out.table;
    assert_eq!(t.tls_for("a.com").unwrap().secret, secret("n", "mine"));
    assert_eq!(t.tls_for("x.b.com").unwrap().secret, secret("n", "mine"));
    let c = t.tls_for("c.com").unwrap();
    assert_eq!(c.secret, None);
    assert_eq!(t.tls_hosts().count(), 3);
}

#[test]
fn ssl_redirect_opt_out_is_per_ingress() {
    let tls = json!([{ "hosts": ["a.com"], "secretName": "s" }]);
    let on = tls_ingress("n", "on", T0, json!({}), &[], tls.clone());
    let off = ingress_with(
        "n",
        "off",
        T1,
        json!({ SSL_REDIRECT_ANNOTATION: "false" }),
        json!({ "rules": [rule(Some("a.com"), vec![path("/api", "Prefix", "api")])] }),
    );
    let on_rules = ingress(
        "n",
        "web",
        T2,
        json!({ "rules": [rule(Some("a.com"), vec![path("/", "Prefix", "web")])] }),
    );
    let out = table_of(&[on, off, on_rules]);
    assert!(out.problems.is_empty());
    let Lookup::Route(api) = out.table.lookup("a.com", &np("/api")) else {
        panic!()
    };
    assert!(api.tls.is_some() && !api.redirect_to_https());
    let Lookup::Route(web) = out.table.lookup("a.com", &np("/")) else {
        panic!()
    };
    assert!(web.redirect_to_https());
}

#[test]
fn bad_annotation_and_tls_host_are_reported_defaults_kept() {
    let ing = tls_ingress(
        "n",
        "i",
        T0,
        json!({ SSL_REDIRECT_ANNOTATION: "nope" }),
        &["a.com"],
        json!([{ "hosts": ["*", "a.com", "1.2.3.4"], "secretName": "s" }]),
    );
    let out = table_of(&[ing]);
    let fields: Vec<&str> = out.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "metadata.annotations[\"sluice.dev/ssl-redirect\"]",
            "spec.tls[0].hosts[0]",
            "spec.tls[0].hosts[2]"
        ]
    );
    let Lookup::Route(m) = out.table.lookup("a.com", &np("/")) else {
        panic!()
    };
    assert!(
        m.redirect_to_https(),
        "an invalid value keeps the default (on)"
    );
}

// --------------------------------------------------------------- performance

/// 10,000 rules: 1,000 hosts (900 precise, 100 wildcard) × 10 paths, in
/// 1,000 Ingresses.
fn big_fixture() -> Vec<Ingress> {
    (0..1000)
        .map(|i| {
            let host = if i % 10 == 9 {
                format!("*.w{i}.example.com")
            } else {
                format!("h{i}.example.com")
            };
            let paths: Vec<Value> = (0..10)
                .map(|j| {
                    let ty = if j % 3 == 0 { "Exact" } else { "Prefix" };
                    path(
                        &format!("/svc{j}/v{}/items", j % 4),
                        ty,
                        &format!("s{i}-{j}"),
                    )
                })
                .collect();
            ingress(
                &format!("ns{}", i % 37),
                &format!("ing{i}"),
                T0,
                json!({ "rules": [rule(Some(&host), paths)],
                        "tls": [{ "hosts": [host], "secretName": format!("cert{i}") }] }),
            )
        })
        .collect()
}

fn lookup_requests() -> Vec<(String, NormalizedPath)> {
    (0..1000)
        .map(|k| {
            let i = (k * 7919) % 1000;
            let host = if i % 10 == 9 {
                format!("x.w{i}.example.com")
            } else {
                format!("h{i}.example.com:443")
            };
            let j = k % 10;
            (host, np(&format!("/svc{j}/v{}/items/{k}/detail", j % 4)))
        })
        .collect()
}

fn time_lookups(t: &RouteTable, reqs: &[(String, NormalizedPath)], rounds: usize) -> f64 {
    let start = Instant::now();
    let mut hits = 0usize;
    for _ in 0..rounds {
        for (h, p) in reqs {
            if matches!(std::hint::black_box(t.lookup(h, p)), Lookup::Route(_)) {
                hits += 1;
            }
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / (rounds * reqs.len()) as f64;
    assert_eq!(
        hits,
        rounds * reqs.len() * 6 / 10,
        "Prefix rules hit, Exact ones miss"
    );
    ns
}

#[test]
fn ten_thousand_rules_build_and_lookup() {
    let ings = big_fixture();
    // Best of three, so a busy machine does not make the bound flaky.
    let mut build_ms = f64::MAX;
    let mut out = BuildOutput::default();
    for _ in 0..3 {
        let start = Instant::now();
        out = build(&ings);
        build_ms = build_ms.min(start.elapsed().as_secs_f64() * 1e3);
    }
    assert_eq!(out.table.len(), 10_000);
    assert!(out.problems.is_empty() && out.conflicts.is_empty());
    // Generous bound for an unoptimized build on a small CI machine; the
    // release figure is printed by the ignored test below and the bench.
    assert!(build_ms <= 500.0, "build took {build_ms:.1} ms");
    let ns = time_lookups(&out.table, &lookup_requests(), 3);
    assert!(ns <= 50_000.0, "lookup took {ns:.0} ns");
    eprintln!("debug: build {build_ms:.1} ms for 10k rules, {ns:.0} ns/lookup");
}

/// `cargo test --release -p sluice-ingress --test routes -- --ignored --nocapture`
#[test]
#[ignore = "timing; run in release"]
fn timing_release() {
    let ings = big_fixture();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let out = build(&ings);
        best = best.min(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!(out.table.len(), 10_000);
    }
    let t = build(&ings).table;
    let ns = time_lookups(&t, &lookup_requests(), 200);
    eprintln!("release: build {best:.2} ms for 10k rules, {ns:.0} ns/lookup");
    assert!(best <= 50.0, "build {best:.2} ms");
    assert!(ns <= 1_000.0, "lookup {ns:.0} ns");
}
