//! The README's `sluice-proxy` flag reference is checked against the built
//! binary: every flag `sluice-proxy --help` prints must have a row in the
//! README's "### sluice-proxy flags" table, and every row must name a flag
//! that still exists. The failure names each flag that is out of step.

use std::path::Path;

#[test]
fn readme_lists_exactly_the_flags_of_sluice_proxy() {
    sluice_tests::readme::assert_readme_lists_flags(
        env!("CARGO_BIN_EXE_sluice-proxy"),
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
        &["--config", "--v"],
    );
}
