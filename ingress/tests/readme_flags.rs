//! The README's `sluice-ingress` flag reference is checked against the built
//! binary: every flag `sluice-ingress --help` prints must have a row in the
//! README's "### sluice-ingress flags" table, and every row must name a flag
//! that still exists. The failure names each flag that is out of step.

use std::path::Path;

#[test]
fn readme_lists_exactly_the_flags_of_sluice_ingress() {
    sluice_tests::readme::assert_readme_lists_flags(
        env!("CARGO_BIN_EXE_sluice-ingress"),
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
        &["--manifests", "--log-format"],
    );
}
