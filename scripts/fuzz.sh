#!/usr/bin/env bash
# Runs the netlink decoder fuzz target for SECONDS (default 60) with
# cargo-fuzz on the nightly toolchain. Skips, with a reason, when either is
# missing, unless CI=true (then it installs cargo-fuzz, and a missing nightly
# toolchain is reported as a skip, since none can be fetched here).
set -euo pipefail
root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
secs=${1:-60}
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
	echo "fuzz: SKIPPED: no nightly toolchain (cargo-fuzz needs one)"
	exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
	echo "fuzz: installing cargo-fuzz"
	cargo install -q cargo-fuzz --locked
fi
cd "$root/ipvs-sys"
cargo +nightly fuzz run decode_replies -- -max_total_time="$secs" -max_len=4096 2>&1 | tail -5
