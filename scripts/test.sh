#!/usr/bin/env bash
# Runs every test of Sluice: formatting, lints, unit and property tests, the
# control-plane tier (a real kube-apiserver, etcd, kube-controller-manager
# and kube-scheduler built from Go modules, with process-backed pods), the
# fake-API-server suites kept for injected faults, and the VM tier (real IPVS
# inside qemu). Installs and builds what it needs first. Under CI=true a
# skipped tier is a failure.
set -euo pipefail
root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
start=$(date +%s)
step() { printf '\n==> %s (%ss)\n' "$1" "$(($(date +%s) - start))"; }

step "setup"
bash scripts/setup.sh

step "control plane (tests/cluster/build.sh: built from the Go module proxy once, cached by go.sum)"
bash tests/cluster/build.sh >/dev/null

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -q -- -D warnings

step "chart tests (Helm SDK render + strict lint, kubernetes-validate --strict)"
# .venv-chart/ holds the pinned packages of tests/chart/requirements.txt
# (helm-python-sdk bundles Helm's Go SDK; kubernetes-validate bundles the
# schemas); reinstalled only when that file changes.
want=$(sha256sum tests/chart/requirements.txt | cut -d' ' -f1)
if [ "$(cat .venv-chart/.requirements.sha256 2>/dev/null)" != "$want" ]; then
	[ -x .venv-chart/bin/python ] || /usr/bin/python3 -m venv .venv-chart
	.venv-chart/bin/pip install -q --disable-pip-version-check -r tests/chart/requirements.txt
	echo "$want" > .venv-chart/.requirements.sha256
fi
.venv-chart/bin/python -m pytest -q tests/chart

step "cargo test (host tests, then the VM tier)"
cargo test --workspace --no-fail-fast

step "fuzz smoke (every cargo-fuzz target; 2 min in all, building included)"
bash scripts/fuzz.sh 115

step "done in $(($(date +%s) - start)) s"
