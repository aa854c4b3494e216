//! The chart, installed: every object the chart renders, for the default
//! values and every documented variant (`COMBINATIONS` in
//! tests/chart/render.py), is server-side applied (strict field
//! validation) to the real API server, so schema, defaulting and admission
//! are the server's own. A broken object must fail, and does (last test).

use sluice_tests::cluster::{self, ApplyError, chart};

fn available() -> bool {
    cluster::available_or_skip("chart install") && chart::available_or_skip("chart install")
}

#[test]
fn every_variant_is_accepted_by_the_real_api_server() {
    if !available() {
        return;
    }
    let c = cluster::shared();
    let variants = chart::variants().unwrap();
    assert!(variants.len() >= 6, "{variants:?}");
    for v in &variants {
        let yaml = chart::render_variant(v).unwrap();
        let applied = c
            .apply_yaml(&yaml)
            .unwrap_or_else(|e| panic!("variant {v}: {e}"));
        let kinds: std::collections::BTreeSet<&str> = applied
            .iter()
            .map(|a| a.split(' ').next().unwrap())
            .collect();
        eprintln!("variant {v}: {} objects: {kinds:?}", applied.len());
        assert!(
            kinds.contains("ServiceAccount") && kinds.contains("ClusterRole"),
            "{v}: {kinds:?}"
        );
    }
}

#[test]
fn an_object_the_server_refuses_fails_the_install() {
    if !available() {
        return;
    }
    let c = cluster::shared();
    let yaml = chart::render_variant("defaults").unwrap();
    let broken = yaml.replacen("kind: DaemonSet", "kind: DaemonSet\nbogusField: 1", 1);
    assert_ne!(broken, yaml);
    match c.apply_yaml(&broken) {
        Err(ApplyError::Refused { object, source }) => {
            assert!(object.starts_with("DaemonSet"), "{object}: {source}")
        }
        other => panic!("a strict apply must refuse an unknown field: {other:?}"),
    }
}
