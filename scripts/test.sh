#!/usr/bin/env bash
# Runs every test of Sluice: formatting, lints, unit and property tests, the
# fake-API-server suites, and the VM tier (real IPVS inside qemu). Installs
# what it needs first. Under CI=true a skipped VM tier is a failure.
set -euo pipefail
root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
start=$(date +%s)
step() { printf '\n==> %s (%ss)\n' "$1" "$(($(date +%s) - start))"; }

step "setup"
bash scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -q -- -D warnings

step "cargo test (host tests, then the VM tier)"
cargo test --workspace --no-fail-fast

step "fuzz smoke (decoders)"
bash scripts/fuzz.sh 20

step "done in $(($(date +%s) - start)) s"
