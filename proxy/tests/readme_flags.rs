//! The README's `sluice-proxy` flag reference is checked against the built
//! binary: every flag `sluice-proxy --help` prints must have a row in the
//! README's "### sluice-proxy flags" table, and every row must name a flag
//! that still exists. The failure names each flag that is out of step.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Long flags in clap's `--help` output (help and version excluded).
fn flags_in_help(help: &str) -> BTreeSet<String> {
    help.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let line = match line.strip_prefix('-') {
                Some(rest) if !rest.starts_with('-') => rest.split_once(", ")?.1,
                _ => line,
            };
            let flag = line.strip_prefix("--")?;
            let name: String = flag
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            (!name.is_empty()).then(|| format!("--{name}"))
        })
        .filter(|f| f != "--help" && f != "--version")
        .collect()
}

/// Flags in the first column of the README table under `heading`.
fn flags_in_readme(readme: &str, heading: &str) -> BTreeSet<String> {
    let start = readme
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README.md has no {heading:?} section"));
    let section = &readme[start + heading.len() + 2..];
    let end = section.find("\n#").unwrap_or(section.len());
    section[..end]
        .lines()
        .filter_map(|l| l.strip_prefix("| `--"))
        .map(|l| {
            let name: String = l
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            format!("--{name}")
        })
        .collect()
}

#[test]
fn readme_lists_exactly_the_flags_of_sluice_proxy() {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-proxy"))
        .arg("--help")
        .output()
        .expect("run sluice-proxy --help");
    assert!(out.status.success());
    let help = flags_in_help(&String::from_utf8_lossy(&out.stdout));
    assert!(
        help.contains("--config") && help.contains("--v"),
        "{help:?}"
    );
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("read README.md");
    let listed = flags_in_readme(&readme, "### sluice-proxy flags");
    let missing: Vec<_> = help.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&help).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "README.md \"### sluice-proxy flags\" is out of date: add {missing:?}; remove {stale:?} \
         (no longer in sluice-proxy --help)"
    );
}
