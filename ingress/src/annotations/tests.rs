//! Per-annotation tests through [`super::parse`]: the default, valid forms,
//! and each error case (reported, default kept — or, for access control,
//! denied).

use std::collections::BTreeMap;

use super::access::{AuthSecretType, Satisfy, VerifyClient};
use super::affinity::{AffinityMode, CanaryBehavior, SameSite};
use super::backend::{BackendProtocol, HashPart, LoadBalance};
use super::canary::HeaderMatch;
use super::cors::AllowedOrigins;
use super::limits::{LimitPolicy, NextUpstreamOn};
use super::paths::CapturePart;
use super::values::{NginxSize, Seconds};
use super::*;

const P: &str = "nginx.ingress.kubernetes.io";

fn parse_in(ns: &str, kv: &[(&str, &str)], settings: ControllerSettings) -> ParsedIngress {
    let a: BTreeMap<String, String> = kv
        .iter()
        .map(|(k, v)| (format!("{P}/{k}"), v.to_string()))
        .collect();
    parse(
        &a,
        ns,
        &AnnotationConfig {
            prefix: AnnotationPrefix::default(),
            settings,
        },
    )
}

fn p(kv: &[(&str, &str)]) -> ParsedIngress {
    parse_in("ns", kv, ControllerSettings::default())
}

/// `(annotation without prefix, problem kind)` of a parse.
fn problems(parsed: &ParsedIngress) -> Vec<(String, AnnotationProblemKind)> {
    parsed
        .problems
        .iter()
        .map(|p| {
            (
                p.annotation.trim_start_matches(&format!("{P}/")).to_owned(),
                p.kind.clone(),
            )
        })
        .collect()
}

fn invalid_of(parsed: &ParsedIngress) -> Vec<String> {
    problems(parsed)
        .into_iter()
        .filter(|(_, k)| matches!(k, AnnotationProblemKind::InvalidValue(_)))
        .map(|(a, _)| a)
        .collect()
}

/// Each `bad` value of `name` is reported as invalid and `check` sees the
/// default.
fn rejects(name: &str, bad: &[&str], check: impl Fn(&IngressPolicy)) {
    for b in bad {
        let parsed = p(&[(name, b)]);
        assert_eq!(invalid_of(&parsed), vec![name.to_owned()], "{name} = {b:?}");
        check(&parsed.policy);
    }
}

#[test]
fn no_annotations_is_the_default_policy() {
    let parsed = p(&[]);
    assert_eq!(parsed.policy, IngressPolicy::default());
    assert!(parsed.problems.is_empty() && parsed.refusal.is_none());
    let d = parsed.policy;
    assert!(!d.paths.use_regex && d.paths.rewrite.is_none());
    assert!(d.redirects.ssl_redirect && !d.redirects.force_ssl_redirect);
    assert_eq!(d.limits.body_size, NginxSize::bytes(1 << 20));
    assert_eq!(
        (
            d.limits.connect_timeout,
            d.limits.read_timeout,
            d.limits.send_timeout
        ),
        (Seconds(5), Seconds(60), Seconds(60))
    );
    assert_eq!(
        (d.limits.next_upstream_tries, d.limits.next_upstream_timeout),
        (3, Seconds(0))
    );
    assert_eq!(d.limits.rate.burst_multiplier, 5);
    assert_eq!(d.backend.protocol, BackendProtocol::Http);
    assert_eq!(d.backend.load_balance, LoadBalance::RoundRobin);
    assert!(d.affinity.is_none() && d.canary.is_none() && d.cors.is_none());
    assert!(d.access.global_auth && d.access.satisfy == Satisfy::All);
    assert!(d.logs.access_log && !d.is_denied());
}

#[test]
fn paths_and_rewrites() {
    let parsed = p(&[
        ("use-regex", "true"),
        ("rewrite-target", "/$2"),
        ("app-root", "/app1"),
        ("x-forwarded-prefix", "/api"),
        ("upstream-vhost", "internal.example"),
        ("preserve-trailing-slash", "True"),
    ]);
    assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
    let paths = &parsed.policy.paths;
    assert!(paths.use_regex && paths.preserve_trailing_slash);
    assert_eq!(
        paths.rewrite.as_ref().unwrap().template().parts(),
        &[CapturePart::Literal("/".into()), CapturePart::Capture(2)]
    );
    assert_eq!(paths.app_root.as_ref().unwrap().as_str(), "/app1");
    assert_eq!(paths.x_forwarded_prefix.as_ref().unwrap().as_str(), "/api");
    assert_eq!(
        paths.upstream_vhost.as_ref().unwrap().as_str(),
        "internal.example"
    );
    assert!(paths.forces_regex("/x"));

    rejects("use-regex", &["yes", ""], |p| assert!(!p.paths.use_regex));
    rejects("rewrite-target", &["/$host/$1", "/a b", "/a?x=1"], |p| {
        assert!(p.paths.rewrite.is_none())
    });
    rejects("app-root", &["app", "https://x/app"], |p| {
        assert!(p.paths.app_root.is_none())
    });
    rejects("upstream-vhost", &["$request_uri", "a/b"], |p| {
        assert!(p.paths.upstream_vhost.is_none())
    });
    rejects("preserve-trailing-slash", &["on"], |p| {
        assert!(!p.paths.preserve_trailing_slash)
    });
    // x-forwarded-prefix without rewrite-target has no effect in ingress-nginx.
    let alone = p(&[("x-forwarded-prefix", "/api")]);
    assert!(matches!(
        problems(&alone)[0].1,
        AnnotationProblemKind::Ignored { .. }
    ));
    // rewrite-target equal to the path does not force regex for it.
    assert!(!p(&[("rewrite-target", "/")]).policy.paths.forces_regex("/"));
}

#[test]
fn redirects() {
    let parsed = p(&[
        ("ssl-redirect", "false"),
        ("force-ssl-redirect", "true"),
        ("permanent-redirect", "https://example.com/new"),
        ("permanent-redirect-code", "308"),
        ("from-to-www-redirect", "true"),
        ("server-alias", "a.example.com, *.b.example.com"),
        ("relative-redirects", "true"),
        ("use-port-in-redirects", "true"),
    ]);
    assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
    let r = &parsed.policy.redirects;
    assert!(
        !r.ssl_redirect
            && r.force_ssl_redirect
            && r.from_to_www
            && r.relative
            && r.use_port_in_redirects
    );
    let f = r.fixed.as_ref().unwrap();
    assert_eq!((f.url.as_str(), f.code), ("https://example.com/new", 308));
    assert_eq!(r.server_aliases.len(), 2);
    // Temporal wins, with its own code range and default.
    let t = p(&[
        ("permanent-redirect", "https://a/"),
        ("temporal-redirect", "https://b/"),
    ]);
    assert_eq!(
        t.policy
            .redirects
            .fixed
            .as_ref()
            .map(|f| (f.url.as_str(), f.code)),
        Some(("https://b/", 302))
    );
    let t = p(&[
        ("temporal-redirect", "https://b/"),
        ("temporal-redirect-code", "308"),
    ]);
    assert_eq!(invalid_of(&t), vec!["temporal-redirect-code"]);
    assert_eq!(t.policy.redirects.fixed.unwrap().code, 302);
    assert_eq!(
        p(&[("permanent-redirect", "/moved")])
            .policy
            .redirects
            .fixed
            .unwrap()
            .code,
        301
    );
    rejects(
        "permanent-redirect",
        &["example.com", "https://x/$1"],
        |p| assert!(p.redirects.fixed.is_none()),
    );
    rejects("temporal-redirect", &["/relative"], |p| {
        assert!(p.redirects.fixed.is_none())
    });
    rejects("server-alias", &["~^www\\d+\\.example\\.com$"], |p| {
        assert!(p.redirects.server_aliases.is_empty())
    });
    rejects("ssl-redirect", &["no"], |p| {
        assert!(p.redirects.ssl_redirect)
    });
    rejects("from-to-www-redirect", &["1.0"], |p| {
        assert!(!p.redirects.from_to_www)
    });
    let bad_code = p(&[
        ("permanent-redirect", "https://a/"),
        ("permanent-redirect-code", "200"),
    ]);
    assert_eq!(invalid_of(&bad_code), vec!["permanent-redirect-code"]);
    assert_eq!(bad_code.policy.redirects.fixed.unwrap().code, 301);
}

#[test]
fn limits_and_timeouts() {
    let parsed = p(&[
        ("proxy-body-size", "8m"),
        ("proxy-connect-timeout", "10"),
        ("proxy-read-timeout", "3600"),
        ("proxy-send-timeout", "120"),
        ("proxy-next-upstream", "error timeout http_503"),
        ("proxy-next-upstream-tries", "5"),
        ("proxy-next-upstream-timeout", "30"),
    ]);
    assert!(parsed.problems.is_empty());
    let l = &parsed.policy.limits;
    assert_eq!(l.body_size.as_bytes(), 8 << 20);
    assert_eq!(
        (l.connect_timeout, l.read_timeout, l.send_timeout),
        (Seconds(10), Seconds(3600), Seconds(120))
    );
    assert!(l.next_upstream.retries_on(NextUpstreamOn::Status(503)));
    assert_eq!(
        (l.next_upstream_tries, l.next_upstream_timeout),
        (5, Seconds(30))
    );
    assert_eq!(
        p(&[("proxy-body-size", "0")])
            .policy
            .limits
            .body_size
            .limit(),
        None
    );

    let d = LimitPolicy::default();
    rejects("proxy-body-size", &["1mb", "big", "-1"], |p| {
        assert_eq!(p.limits.body_size, d.body_size)
    });
    rejects("proxy-read-timeout", &["60s", "1m", "-5", "1.5"], |p| {
        assert_eq!(p.limits.read_timeout, Seconds(60))
    });
    rejects("proxy-connect-timeout", &["5s"], |p| {
        assert_eq!(p.limits.connect_timeout, Seconds(5))
    });
    rejects("proxy-send-timeout", &["x"], |p| {
        assert_eq!(p.limits.send_timeout, Seconds(60))
    });
    rejects("proxy-next-upstream", &["error sometimes"], |p| {
        assert_eq!(p.limits.next_upstream, d.next_upstream)
    });
    rejects("proxy-next-upstream-tries", &["three"], |p| {
        assert_eq!(p.limits.next_upstream_tries, 3)
    });
    rejects("proxy-next-upstream-timeout", &["30s"], |p| {
        assert_eq!(p.limits.next_upstream_timeout, Seconds(0))
    });

    // ConfigMap values are the defaults the annotations override.
    let (settings, _) = ControllerSettings::from_configmap(
        &[
            ("proxy-body-size".to_owned(), "20m".to_owned()),
            ("proxy-read-timeout".to_owned(), "90".to_owned()),
        ]
        .into(),
    );
    let parsed = parse_in("ns", &[("proxy-read-timeout", "30")], settings);
    assert_eq!(parsed.policy.limits.body_size.as_bytes(), 20 << 20);
    assert_eq!(parsed.policy.limits.read_timeout, Seconds(30));
}

#[test]
fn rate_limits_parse_and_refuse() {
    let parsed = p(&[
        ("limit-rps", "10"),
        ("limit-rpm", "300"),
        ("limit-connections", "4"),
        ("limit-burst-multiplier", "3"),
        ("limit-whitelist", "10.0.0.0/8, 192.168.0.1"),
        ("limit-rate", "100"),
        ("limit-rate-after", "1024"),
    ]);
    let rate = &parsed.policy.limits.rate;
    assert_eq!(rate.rps.map(|n| n.get()), Some(10));
    assert_eq!(rate.rpm.map(|n| n.get()), Some(300));
    assert_eq!(rate.connections.map(|n| n.get()), Some(4));
    assert_eq!(
        (rate.burst_multiplier, rate.rate_kib, rate.rate_after_kib),
        (3, 100, 1024)
    );
    assert!(
        rate.exempt
            .as_ref()
            .unwrap()
            .contains("10.1.1.1".parse().unwrap())
    );
    assert!(rate.is_active());
    // Not enforced yet: every limit-* annotation refuses the Ingress.
    assert_eq!(parsed.refusal.as_ref().unwrap().causes.len(), 7);
    assert!(parsed.policy.is_denied());
    assert!(
        problems(&parsed)
            .iter()
            .all(|(_, k)| *k == AnnotationProblemKind::NotEnforced)
    );
    let bad = p(&[("limit-rps", "ten"), ("limit-whitelist", "10.0.0.0/33")]);
    assert_eq!(invalid_of(&bad), vec!["limit-rps", "limit-whitelist"]);
    assert!(bad.policy.is_denied());
}

#[test]
fn backends() {
    let parsed = p(&[
        ("backend-protocol", "GRPCS"),
        ("proxy-ssl-secret", "ns/backend-ca"),
        ("proxy-ssl-verify", "on"),
        ("proxy-ssl-verify-depth", "2"),
        ("proxy-ssl-name", "api.internal"),
        ("proxy-ssl-server-name", "on"),
        ("service-upstream", "true"),
        ("load-balance", "ewma"),
        ("upstream-hash-by", "$request_uri"),
    ]);
    assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
    let b = &parsed.policy.backend;
    assert_eq!(b.protocol, BackendProtocol::Grpcs);
    let ssl = b.proxy_ssl.as_ref().unwrap();
    assert_eq!(ssl.secret.to_string(), "ns/backend-ca");
    assert!(ssl.verify && ssl.server_name && ssl.verify_depth == 2);
    assert_eq!(ssl.name.as_deref(), Some("api.internal"));
    assert!(b.service_upstream && b.load_balance == LoadBalance::Ewma);
    assert_eq!(b.hash_by.as_ref().unwrap().parts(), &[HashPart::RequestUri]);

    rejects("backend-protocol", &["FCGI", "h2c"], |p| {
        assert_eq!(p.backend.protocol, BackendProtocol::Http)
    });
    rejects("load-balance", &["chash", "random"], |p| {
        assert_eq!(p.backend.load_balance, LoadBalance::RoundRobin)
    });
    rejects("upstream-hash-by", &["$ssl_client_s_dn"], |p| {
        assert!(p.backend.hash_by.is_none())
    });
    rejects("service-upstream", &["maybe"], |p| {
        assert!(!p.backend.service_upstream)
    });
    // proxy-ssl-* without a secret has no effect; a bad secret denies, as
    // ingress-nginx answers 503.
    let alone = p(&[("proxy-ssl-verify", "on")]);
    assert!(matches!(
        problems(&alone)[0].1,
        AnnotationProblemKind::Ignored { .. }
    ));
    for bad in ["backend-ca", "other/backend-ca"] {
        let d = p(&[("proxy-ssl-secret", bad)]);
        assert!(
            d.policy.is_denied() && d.policy.backend.proxy_ssl.is_none(),
            "{bad}"
        );
    }
    let bad_verify = p(&[("proxy-ssl-secret", "ns/ca"), ("proxy-ssl-verify", "true")]);
    assert_eq!(invalid_of(&bad_verify), vec!["proxy-ssl-verify"]);
    assert!(!bad_verify.policy.backend.proxy_ssl.unwrap().verify);
}

#[test]
fn affinity() {
    let parsed = p(&[
        ("affinity", "cookie"),
        ("affinity-mode", "persistent"),
        ("affinity-canary-behavior", "legacy"),
        ("session-cookie-name", "route"),
        ("session-cookie-path", "/app"),
        ("session-cookie-domain", ".example.com"),
        ("session-cookie-expires", "172800"),
        ("session-cookie-max-age", "172800"),
        ("session-cookie-samesite", "Strict"),
        ("session-cookie-conditional-samesite-none", "true"),
        ("session-cookie-secure", "true"),
        ("session-cookie-change-on-failure", "true"),
    ]);
    assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
    let a = parsed.policy.affinity.unwrap();
    assert_eq!(
        (a.mode, a.canary_behavior),
        (AffinityMode::Persistent, CanaryBehavior::Legacy)
    );
    assert_eq!(a.name.as_str(), "route");
    assert_eq!(
        (a.path.as_deref(), a.domain.as_deref()),
        (Some("/app"), Some(".example.com"))
    );
    assert_eq!(
        (a.expires_secs, a.max_age_secs, a.same_site),
        (Some(172800), Some(172800), Some(SameSite::Strict))
    );
    assert!(a.conditional_same_site_none && a.secure && a.change_on_failure);

    let d = p(&[("affinity", "cookie")]).policy.affinity.unwrap();
    assert_eq!(
        (d.mode, d.name.as_str(), d.same_site, d.secure),
        (AffinityMode::Balanced, "INGRESSCOOKIE", None, false)
    );
    rejects("affinity", &["ip", "Cookie"], |p| {
        assert!(p.affinity.is_none())
    });
    let bad = p(&[
        ("affinity", "cookie"),
        ("session-cookie-samesite", "sometimes"),
        ("affinity-mode", "sticky"),
    ]);
    assert_eq!(
        invalid_of(&bad),
        vec!["affinity-mode", "session-cookie-samesite"]
    );
    let orphan = p(&[("session-cookie-name", "x")]);
    assert!(matches!(
        problems(&orphan)[0].1,
        AnnotationProblemKind::Ignored { .. }
    ));
}

#[test]
fn canaries() {
    let parsed = p(&[
        ("canary", "true"),
        ("canary-by-header", "X-Canary"),
        ("canary-by-cookie", "canary"),
        ("canary-weight", "20"),
        ("canary-weight-total", "1000"),
    ]);
    assert!(parsed.problems.is_empty());
    let c = parsed.policy.canary.unwrap();
    assert_eq!(c.by_header.as_ref().unwrap().name.as_str(), "x-canary");
    assert_eq!(
        c.by_header.as_ref().unwrap().matcher,
        HeaderMatch::AlwaysNever
    );
    assert_eq!(
        (c.weight, c.weight_total, c.effective_total()),
        (20, 1000, 1000)
    );
    assert_eq!(c.by_cookie.unwrap().as_str(), "canary");
    let v = p(&[
        ("canary", "true"),
        ("canary-by-header", "X-Version"),
        ("canary-by-header-value", "v2"),
        ("canary-by-header-pattern", "v[23]"),
    ]);
    assert_eq!(
        v.policy.canary.unwrap().by_header.unwrap().matcher,
        HeaderMatch::Value("v2".into()),
        "value wins over pattern"
    );
    let pat = p(&[
        ("canary", "true"),
        ("canary-by-header", "X-Version"),
        ("canary-by-header-pattern", "v[23]"),
    ]);
    assert!(matches!(
        pat.policy.canary.unwrap().by_header.unwrap().matcher,
        HeaderMatch::Pattern(_)
    ));
    let d = p(&[("canary", "true")]).policy.canary.unwrap();
    assert_eq!(
        (d.weight, d.weight_total, d.by_header, d.by_cookie),
        (0, 100, None, None)
    );
    let bad = p(&[
        ("canary", "true"),
        ("canary-weight", "lots"),
        ("canary-by-header-pattern", "(?<=x)y"),
    ]);
    assert_eq!(
        invalid_of(&bad),
        vec!["canary-by-header-pattern", "canary-weight"]
    );
    let disabled = p(&[("canary-weight", "50")]);
    assert!(disabled.policy.canary.is_none());
    assert!(matches!(
        problems(&disabled)[0].1,
        AnnotationProblemKind::Ignored { .. }
    ));
}

#[test]
fn access_control_parses_and_refuses() {
    let parsed = p(&[
        ("whitelist-source-range", "10.0.0.0/8"),
        ("denylist-source-range", "10.1.0.0/16"),
        ("auth-type", "basic"),
        ("auth-secret", "basic-auth"),
        ("auth-secret-type", "auth-map"),
        ("auth-realm", "Authentication Required - foo"),
        ("auth-url", "http://auth.ns.svc.cluster.local/verify"),
        ("auth-method", "POST"),
        ("auth-signin", "https://auth.example.com/start"),
        ("auth-response-headers", "X-User, X-Email"),
        ("auth-request-redirect", "https://app.example.com"),
        ("auth-tls-secret", "ns/ca"),
        ("auth-tls-verify-client", "optional"),
        ("auth-tls-verify-depth", "2"),
        ("auth-tls-pass-certificate-to-upstream", "true"),
        ("satisfy", "any"),
    ]);
    let a = &parsed.policy.access;
    assert!(
        a.allow
            .as_ref()
            .unwrap()
            .contains("10.9.9.9".parse().unwrap())
    );
    assert!(
        a.deny
            .as_ref()
            .unwrap()
            .contains("10.1.2.3".parse().unwrap())
    );
    let b = a.basic.as_ref().unwrap();
    assert_eq!(
        (
            b.secret.to_string().as_str(),
            b.secret_type,
            b.realm.as_str()
        ),
        (
            "ns/basic-auth",
            AuthSecretType::AuthMap,
            "Authentication Required - foo"
        )
    );
    let e = a.external.as_ref().unwrap();
    assert_eq!(
        (
            e.method.as_str(),
            e.signin_redirect_param.as_str(),
            e.response_headers.len()
        ),
        ("POST", "rd", 2)
    );
    let c = a.client_cert.as_ref().unwrap();
    assert_eq!(
        (c.verify, c.depth, c.pass_certificate),
        (VerifyClient::Optional, 2, true)
    );
    assert_eq!(a.satisfy, Satisfy::Any);
    // Client certificates are not enforced yet: refused, host-wide; the
    // enforced source ranges and auth are no cause.
    let refusal = parsed.refusal.as_ref().unwrap();
    assert!(refusal.host_wide() && parsed.policy.denied_host_wide);
    assert!(refusal.to_string().contains("auth-tls-secret"));
    assert!(!refusal.to_string().contains("whitelist-source-range"));
    assert!(
        !problems(&parsed)
            .iter()
            .any(|(_, k)| matches!(k, AnnotationProblemKind::InvalidValue(_)))
    );

    // Invalid access-control values deny on their own (ingress-nginx's 503).
    for (k, v) in [
        ("whitelist-source-range", "10.0.0.0/8,bogus"),
        ("auth-type", "digest"),
        ("auth-url", "not a url"),
        ("auth-tls-secret", "ca"),
    ] {
        let d = p(&[(k, v)]);
        assert!(
            d.policy
                .denials
                .iter()
                .any(|d| d.annotation.ends_with(k) && d.reason.contains("invalid")),
            "{k}"
        );
        assert_eq!(invalid_of(&d), vec![k.to_owned()]);
    }
    let no_secret = p(&[("auth-type", "basic")]);
    assert!(
        no_secret
            .policy
            .denials
            .iter()
            .any(|d| d.reason.contains("needs auth-secret"))
    );
    let cross = p(&[("auth-type", "basic"), ("auth-secret", "other/s")]);
    assert!(cross.policy.access.basic.is_none() && cross.policy.is_denied());
    // ConfigMap lists are the defaults, annotations override them.
    let (s, _) = ControllerSettings::from_configmap(
        &[(
            "whitelist-source-range".to_owned(),
            "192.168.0.0/16".to_owned(),
        )]
        .into(),
    );
    let g = parse_in("ns", &[], s.clone());
    assert!(
        g.policy
            .access
            .allow
            .as_ref()
            .unwrap()
            .contains("192.168.1.1".parse().unwrap())
    );
    assert!(g.refusal.is_none(), "the global allow-list is enforced");
    let o = parse_in("ns", &[("allowlist-source-range", "10.0.0.0/8")], s);
    assert!(
        !o.policy
            .access
            .allow
            .unwrap()
            .contains("192.168.1.1".parse().unwrap())
    );
}

#[test]
fn cors() {
    let parsed = p(&[
        ("enable-cors", "true"),
        (
            "cors-allow-origin",
            "https://a.example.com, https://*.b.example.com:8443",
        ),
        ("cors-allow-methods", "GET, POST"),
        ("cors-allow-headers", "X-Custom, Content-Type"),
        ("cors-allow-credentials", "false"),
        ("cors-expose-headers", "*, X-Total"),
        ("cors-max-age", "600"),
    ]);
    assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
    let c = parsed.policy.cors.unwrap();
    assert!(matches!(&c.origins, AllowedOrigins::List(l) if l.len() == 2));
    assert_eq!(
        (c.allow_methods.as_str(), c.allow_credentials, c.max_age),
        ("GET, POST", false, 600)
    );
    assert_eq!(c.expose_headers, "*, X-Total");
    let d = p(&[("enable-cors", "true")]).policy.cors.unwrap();
    assert_eq!(d.origins, AllowedOrigins::Any);
    assert_eq!(d.allow_methods, "GET, PUT, POST, DELETE, PATCH, OPTIONS");
    assert!(d.allow_credentials && d.max_age == 1_728_000);
    assert!(d.allow_headers.starts_with("DNT,Keep-Alive"));
    assert!(
        p(&[("cors-allow-origin", "https://a.com")])
            .policy
            .cors
            .is_none(),
        "needs enable-cors"
    );
    let bad = p(&[
        ("enable-cors", "true"),
        ("cors-allow-origin", "a.com"),
        ("cors-allow-methods", "GET;POST"),
        ("cors-max-age", "-1"),
    ]);
    assert_eq!(
        invalid_of(&bad),
        vec!["cors-allow-origin", "cors-allow-methods", "cors-max-age"]
    );
    let c = bad.policy.cors.unwrap();
    assert_eq!((c.origins, c.max_age), (AllowedOrigins::Any, 1_728_000));
}

#[test]
fn errors_and_logs() {
    let parsed = p(&[
        ("custom-http-errors", "404,503"),
        ("default-backend", "error-pages"),
        ("enable-access-log", "false"),
    ]);
    assert!(parsed.problems.is_empty());
    let e = &parsed.policy.errors;
    assert_eq!(e.custom_http_errors, vec![404, 503]);
    assert_eq!(e.default_backend.as_deref(), Some("error-pages"));
    assert!(!parsed.policy.logs.access_log);
    rejects("custom-http-errors", &["200", "4xx"], |p| {
        assert!(p.errors.custom_http_errors.is_empty())
    });
    rejects("default-backend", &["Error_Pages", "ns/x"], |p| {
        assert!(p.errors.default_backend.is_none())
    });
    rejects("enable-access-log", &["off"], |p| {
        assert!(p.logs.access_log)
    });
    let (s, _) = ControllerSettings::from_configmap(
        &[("disable-access-log".to_owned(), "true".to_owned())].into(),
    );
    assert!(
        !parse_in("ns", &[("enable-access-log", "true")], s)
            .policy
            .logs
            .access_log
    );
}

#[test]
fn snippets_are_never_and_the_rest_is_served() {
    let parsed = p(&[
        ("configuration-snippet", "more_set_headers \"X: y\";"),
        ("server-snippet", "location /x { return 200; }"),
        ("auth-snippet", "proxy_set_header Foo 42;"),
        ("stream-snippet", "server { listen 8000; }"),
        ("rewrite-target", "/"),
    ]);
    let kinds = problems(&parsed);
    assert_eq!(kinds.len(), 4);
    assert!(
        kinds
            .iter()
            .all(|(_, k)| *k == AnnotationProblemKind::Snippet)
    );
    assert!(parsed.refusal.is_none() && !parsed.policy.is_denied());
    assert!(parsed.policy.paths.rewrite.is_some());
    assert!(parsed.problems[0].to_string().contains("never supported"));
}

#[test]
fn problems_name_the_annotation_and_value() {
    let parsed = p(&[("proxy-body-size", "lots")]);
    let text = parsed.problems[0].to_string();
    assert!(
        text.contains("nginx.ingress.kubernetes.io/proxy-body-size"),
        "{text}"
    );
    assert!(text.contains("\"lots\""), "{text}");
}

#[test]
fn custom_prefix() {
    let a: BTreeMap<String, String> = [
        ("example.com/use-regex".to_owned(), "true".to_owned()),
        (
            "nginx.ingress.kubernetes.io/rewrite-target".to_owned(),
            "/".to_owned(),
        ),
    ]
    .into();
    let config = AnnotationConfig {
        prefix: AnnotationPrefix::new("example.com").unwrap(),
        settings: ControllerSettings::default(),
    };
    let parsed = parse(&a, "ns", &config);
    assert!(parsed.policy.paths.use_regex);
    assert!(
        parsed.policy.paths.rewrite.is_none(),
        "the default prefix is not read"
    );
}
