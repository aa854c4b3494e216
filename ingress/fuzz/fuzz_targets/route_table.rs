//! The route-table builder and matcher (`routes::class`, `routes::build`,
//! `routes::table`) on random Ingress sets, against a slow reference.
//!
//! The input is structured (`arbitrary`): IngressClasses (ours or not,
//! default or not), Ingresses (namespaces, names, creation times, the
//! legacy class annotation and `ingressClassName`, `ssl-redirect`, default
//! backends, rules with precise, wildcard, missing and invalid hosts, paths
//! of every type built from tokens that include escapes, dot-segments and
//! forbidden bytes, valid and broken backends, TLS entries) and requests
//! (hosts taken from the rules, varied in case, port and trailing dot, or
//! odd ones).
//!
//! The reference is the documented semantics written as directly as
//! possible (see `reference.rs`): a list of accepted rules in age order,
//! first claim wins; a lookup selects the rules of the precise host, else
//! of the wildcard, else the host-less ones (no fall-through), keeps those
//! whose path matches, and takes the Exact one, else the longest prefix.
//! It is the same spec as `ingress/tests/routes.rs::reference`, extended
//! to hosts, Ingress order, classes, defaults and TLS. Never a panic, and
//! every answer (`lookup`, `tls_for`, `default_backend`, `routes`) equal.
#![no_main]

#[path = "route_table/generate.rs"]
mod generate;
#[path = "route_table/reference.rs"]
mod reference;

use libfuzzer_sys::fuzz_target;
use sluice_ingress::routes::class::DEFAULT_CONTROLLER;
use sluice_ingress::routes::{ClassSelector, Lookup, build, normalize};

use generate::Input;
use reference::{Expected, Reference};

fuzz_target!(|input: Input| {
    let classes = input.classes();
    let ingresses = input.ingresses();
    let selector = ClassSelector::new(DEFAULT_CONTROLLER, input.watch_without_class, &classes);
    let out = build(selector.filter(&ingresses));
    let table = &out.table;
    let model = Reference::new(&input);

    for (raw_host, raw_path) in input.requests() {
        let Ok(target) = normalize(&raw_path) else {
            continue;
        };
        let got = match table.lookup(&raw_host, &target.path) {
            Lookup::Route(m) => Expected::Route(m.route.clone(), m.tls.cloned()),
            Lookup::Default(d) => Expected::Default(d.clone()),
            Lookup::NoRoute => Expected::NoRoute,
        };
        let want = model.lookup(&raw_host, target.path.as_str());
        assert_eq!(
            got, want,
            "lookup host {raw_host:?} path {:?}\ninput: {input:#?}",
            target.path
        );
        assert_eq!(
            table.tls_for(&raw_host),
            model.tls_for(&raw_host).as_ref(),
            "tls_for {raw_host:?}"
        );
    }
    assert_eq!(table.default_backend(), model.default_route(), "default");
    let mut got: Vec<String> = table.routes().map(|r| format!("{r:?}")).collect();
    got.sort();
    assert_eq!(got, model.listed_routes(), "routes()");
    assert_eq!(table.len(), got.len());
});
