//! `docs/migrating-from-ingress-nginx.md` cannot drift from the code: its
//! annotation and ConfigMap tables are generated from the catalog that also
//! drives the fail-closed check and `migrate-check`. Run with
//! `SLUICE_BLESS=1` to rewrite them after changing the catalog.

use std::path::PathBuf;

use sluice_ingress::annotations::{DEFAULT_PREFIX, catalog, configmap};

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/migrating-from-ingress-nginx.md")
}

/// Replaces what lies between the `name` markers with `body`.
fn splice(doc: &str, name: &str, body: &str) -> String {
    let begin = format!("<!-- BEGIN GENERATED: {name} -->\n");
    let end = format!("<!-- END GENERATED: {name} -->");
    let b = doc
        .find(&begin)
        .unwrap_or_else(|| panic!("no {begin:?} marker"))
        + begin.len();
    let e = doc[b..]
        .find(&end)
        .unwrap_or_else(|| panic!("no {end:?} marker"))
        + b;
    format!("{}{}{}", &doc[..b], body, &doc[e..])
}

#[test]
fn migration_doc_tables_are_generated_from_the_code() {
    let path = doc_path();
    let doc = std::fs::read_to_string(&path).expect("the migration doc");
    let want = splice(
        &doc,
        "annotations",
        &catalog::markdown_table(DEFAULT_PREFIX),
    );
    let want = splice(&want, "configmap", &configmap::markdown_table());
    if std::env::var_os("SLUICE_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    assert!(
        doc == want,
        "{} is out of date with the annotation catalog; run \
         `SLUICE_BLESS=1 cargo test -p sluice-ingress --test nginx_docs` and review the diff",
        path.display()
    );
}

#[test]
fn every_catalog_entry_is_in_the_doc() {
    let doc = std::fs::read_to_string(doc_path()).unwrap();
    for spec in catalog::CATALOG {
        assert!(
            doc.contains(&format!("`{DEFAULT_PREFIX}/{}`", spec.name)),
            "{} missing from the doc",
            spec.name
        );
    }
}
