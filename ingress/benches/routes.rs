//! Route-table build and lookup timings, std only (no bench framework):
//!
//! `cargo bench -p sluice-ingress --bench routes`
//!
//! Prints the best of several rounds for: building a table of 10,000 rules
//! from Ingress objects, lookups of several shapes among those rules, and
//! request-path normalization.

use std::hint::black_box;
use std::time::Instant;

use k8s_openapi::api::networking::v1::Ingress;
use serde_json::{Value, json};
use sluice_ingress::routes::{Lookup, NormalizedPath, RouteTable, build, normalize};

/// 10,000 rules: 1,000 hosts (900 precise, 100 wildcard) × 10 paths (4
/// Exact, 6 Prefix, up to 3 elements deep), one Ingress per host with TLS.
fn fixture() -> Vec<Ingress> {
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
                    json!({
                        "path": format!("/svc{j}/v{}/items", j % 4),
                        "pathType": ty,
                        "backend": { "service": { "name": format!("s{i}-{j}"), "port": { "number": 80 } } },
                    })
                })
                .collect();
            serde_json::from_value(json!({
                "metadata": {
                    "namespace": format!("ns{}", i % 37),
                    "name": format!("ing{i}"),
                    "creationTimestamp": "2024-01-01T00:00:00Z",
                },
                "spec": {
                    "rules": [{ "host": host, "http": { "paths": paths } }],
                    "tls": [{ "hosts": [host], "secretName": format!("cert{i}") }],
                },
            }))
            .expect("fixture")
        })
        .collect()
}

/// Best nanoseconds per call of `f` over `rounds` rounds of `n` calls.
fn best_ns(rounds: usize, n: usize, mut f: impl FnMut(usize)) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let start = Instant::now();
        for k in 0..n {
            f(k);
        }
        best = best.min(start.elapsed().as_nanos() as f64 / n as f64);
    }
    best
}

fn requests(shape: impl Fn(usize) -> (String, String)) -> Vec<(String, NormalizedPath)> {
    (0..1024)
        .map(|k| {
            let (h, p) = shape(k);
            (h, NormalizedPath::new(&p).expect("normalized"))
        })
        .collect()
}

fn bench_lookups(name: &str, t: &RouteTable, reqs: &[(String, NormalizedPath)]) {
    let ns = best_ns(20, 100_000, |k| {
        let (h, p) = &reqs[k % reqs.len()];
        black_box(t.lookup(black_box(h), black_box(p)));
    });
    println!("lookup {name:<44} {ns:>8.0} ns");
}

fn main() {
    let ings = fixture();
    let mut best = f64::MAX;
    for _ in 0..10 {
        let start = Instant::now();
        let out = black_box(build(&ings));
        best = best.min(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!(out.table.len(), 10_000);
    }
    println!("build 10,000 rules (1,000 Ingresses)            {best:>8.2} ms");

    let t = build(&ings).table;
    let host = |k: usize| {
        let i = (k * 7919) % 1000;
        if i % 10 == 9 {
            format!("x.w{i}.example.com")
        } else {
            format!("h{i}.example.com:443")
        }
    };
    // Exact hits (j = 0, 3, 6, 9 are Exact rules).
    let exact = requests(|k| {
        let j = [0, 3, 6, 9][k % 4];
        (host(k), format!("/svc{j}/v{}/items", j % 4))
    });
    let prefix = requests(|k| {
        let j = [1, 2, 4, 5, 7, 8][k % 6];
        (host(k), format!("/svc{j}/v{}/items/{k}/detail", j % 4))
    });
    let deep = requests(|k| {
        let j = [1, 2, 4, 5, 7, 8][k % 6];
        (
            host(k),
            format!("/svc{j}/v{}/items{}", j % 4, "/x".repeat(40)),
        )
    });
    let miss = requests(|k| (host(k), format!("/nothing/{k}")));
    let unknown_host = requests(|k| (format!("u{k}.other.org"), "/svc1/v1/items".into()));
    bench_lookups("exact path hit, one request (hot cache)", &t, &exact[..1]);
    bench_lookups("exact path hit", &t, &exact);
    bench_lookups("prefix hit, 5 elements", &t, &prefix);
    bench_lookups("prefix hit, 43 elements", &t, &deep);
    bench_lookups("path miss (NoRoute)", &t, &miss);
    bench_lookups("unknown host (NoRoute)", &t, &unknown_host);

    let all = prefix.iter().chain(&exact).count();
    assert!(
        prefix
            .iter()
            .chain(&exact)
            .all(|(h, p)| matches!(t.lookup(h, p), Lookup::Route(_))),
        "{all} requests should hit"
    );

    let raw = "/api/v1/../v2/%7Euser//items/./42?page=3&sort=desc";
    let ns = best_ns(20, 100_000, |_| {
        black_box(normalize(black_box(raw)).ok());
    });
    println!("normalize {raw:<41} {ns:>8.0} ns");
}
