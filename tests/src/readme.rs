//! The README's flag tables checked against the binaries: every flag a
//! binary's `--help` prints must have a row in the README's table for it, and
//! every row must name a flag that still exists. Failures name each flag that
//! is out of step.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Long flags in clap's `--help` output (help and version excluded).
pub fn flags_in_help(help: &str) -> BTreeSet<String> {
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
pub fn flags_in_readme(readme: &str, heading: &str) -> BTreeSet<String> {
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

/// Runs `binary --help`, checks that it prints every flag of `sanity` (so a
/// broken parser cannot pass as "no flags"), and asserts that the README
/// table under `### NAME flags` lists exactly its flags. `readme` is the
/// README's path.
pub fn assert_readme_lists_flags(binary: &str, readme: &Path, sanity: &[&str]) {
    let name = Path::new(binary)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out = Command::new(binary)
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("run {name} --help: {e}"));
    assert!(out.status.success());
    let help = flags_in_help(&String::from_utf8_lossy(&out.stdout));
    assert!(sanity.iter().all(|f| help.contains(*f)), "{help:?}");
    let text = std::fs::read_to_string(readme).expect("read README.md");
    let heading = format!("### {name} flags");
    let listed = flags_in_readme(&text, &heading);
    let missing: Vec<_> = help.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&help).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "README.md \"{heading}\" is out of date: add {missing:?}; remove {stale:?} \
         (no longer in {name} --help)"
    );
}
