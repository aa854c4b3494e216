#!/usr/bin/env bash
# Runs every cargo-fuzz target of Sluice for a bounded time.
#
#   scripts/fuzz.sh [SECONDS_TOTAL]   (default 120)
#
# SECONDS_TOTAL is the wall-clock budget of the whole run, building the fuzz
# crates included: what is left after the build is shared evenly by the
# targets (at least MIN_SECS each). Each target starts from its committed
# seed corpus (<crate>/fuzz/corpus/<target>/, read only) plus a scratch
# corpus that is thrown away, so a smoke run never dirties the tree.
#
# Environment:
#   FUZZ_TARGETS="a b"  run only these targets (by name);
#   FUZZ_MERGE=1        rebuild the committed corpora from what they and the
#                       run cover (see merge below), to commit;
#   FUZZ_SANITIZER      cargo-fuzz sanitizer (default none; see below).
#
# Needs the nightly toolchain and cargo-fuzz (installed here if missing).
# Without them it prints SKIPPED and exits 0, except under CI=true, where a
# skip is a failure. A crash fails the run; its input is in
# <crate>/fuzz/artifacts/<target>/ (ignored by git): commit it to the corpus
# with a regression test.
#
# All fuzz crates build into one target directory (target/fuzz) with the
# same flags, so dependencies they share are built once. The sanitizer is
# "none": every target exercises safe Rust (a panic or an overflow is the
# finding), and AddressSanitizer would halve the executions per second.
set -euo pipefail
root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
total=${1:-120}
MIN_SECS=5

# One line per target: "<crate dir> <target> [libFuzzer flags]". Paths in
# flags are relative to the repository root.
TARGETS=(
	"ipvs-sys decode_replies -max_len=4096"
	"ipvs-sys ipvsadm_rules -max_len=2048"
	"proxy kube_proxy_config -max_len=4096 -dict=proxy/fuzz/kube_proxy_config.dict"
	"ingress route_table -max_len=2048"
	"ingress normalize_path -max_len=512"
	"ingress http1_head -max_len=4096 -dict=ingress/fuzz/http1_head.dict"
	"ingress annotations -max_len=4096"
	"sluice-kube manifests -max_len=4096 -dict=sluice-kube/fuzz/manifests.dict"
)

start=$(date +%s)
elapsed() { echo $(($(date +%s) - start)); }
ci() { [ "${CI:-}" = "true" ] || [ "${CI:-}" = "1" ]; }
skip() {
	if ci; then
		echo "fuzz: FAILED (CI=true, a skip is a failure): $1" >&2
		exit 1
	fi
	echo "fuzz: SKIPPED: $1"
	exit 0
}

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
	skip "no nightly toolchain (cargo-fuzz needs one; rustup toolchain install nightly)"
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
	echo "fuzz: installing cargo-fuzz"
	cargo install -q cargo-fuzz --locked || skip "cargo install cargo-fuzz failed"
fi

selected=()
for line in "${TARGETS[@]}"; do
	read -r _ name _ <<<"$line"
	if [ -z "${FUZZ_TARGETS:-}" ] || [[ " $FUZZ_TARGETS " == *" $name "* ]]; then
		selected+=("$line")
	fi
done
[ ${#selected[@]} -gt 0 ] || { echo "fuzz: no target matches FUZZ_TARGETS=$FUZZ_TARGETS" >&2; exit 1; }

target_dir="$root/target/fuzz"
fuzz_flags=(-s "${FUZZ_SANITIZER:-none}" -a --target-dir "$target_dir")

# Rebuilds the generated part of a committed corpus: the smallest set of
# inputs (libFuzzer's set-cover merge) that covers every edge the committed
# and the new inputs cover. Edges only, not hit counts: that keeps the
# corpus a few hundred KB. Hand-written seeds (any name that is not a
# 40-digit hash) are kept as they are.
merge() {
	local crate=$1 name=$2 seeds=$3 found=$4 fresh="$scratch/$2.merged"
	mkdir -p "$fresh"
	if ! (cd "$root/$crate" && cargo +nightly fuzz run "${fuzz_flags[@]}" "$name" \
		"$fresh" "$seeds" "$found" -- -set_cover_merge=1 -use_counters=0) >"$fresh.log" 2>&1; then
		echo "fuzz: merging into $seeds failed:" >&2
		tail -20 "$fresh.log" >&2
		return
	fi
	find "$seeds" -type f -regextype egrep -regex '.*/[0-9a-f]{40}' -delete
	cp -n "$fresh"/* "$seeds"/ 2>/dev/null || true
	echo "fuzz: $crate/$name: corpus now $(find "$seeds" -type f | wc -l) files, $(du -sk --apparent-size "$seeds" | cut -f1) KB"
}

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Build each fuzz crate once, with the workspace's dependency versions
# (the fuzz crates are workspaces of their own; their lock files are not
# committed and start from the root one).
crates=$(printf '%s\n' "${selected[@]}" | awk '{print $1}' | sort -u)
for crate in $crates; do
	lock="$root/$crate/fuzz/Cargo.lock"
	if [ ! -f "$lock" ] || [ "$root/Cargo.lock" -nt "$lock" ]; then
		cp "$root/Cargo.lock" "$lock"
	fi
	b0=$(date +%s)
	if ! (cd "$root/$crate" && cargo +nightly fuzz build "${fuzz_flags[@]}") >"$scratch/build.log" 2>&1; then
		echo "fuzz: building $crate/fuzz failed:" >&2
		tail -60 "$scratch/build.log" >&2
		exit 1
	fi
	echo "fuzz: built $crate/fuzz in $(($(date +%s) - b0)) s"
done

failed=()
left=${#selected[@]}
for line in "${selected[@]}"; do
	read -r crate name flags <<<"$line"
	remaining=$((total - $(elapsed)))
	secs=$((remaining / left - 2))
	[ "$secs" -ge "$MIN_SECS" ] || secs=$MIN_SECS
	left=$((left - 1))
	seeds="$root/$crate/fuzz/corpus/$name"
	mkdir -p "$seeds" "$scratch/$name"
	# Dictionary and other paths are relative to the root.
	args=()
	for f in $flags; do
		case $f in
		-dict=*) args+=("-dict=$root/${f#-dict=}") ;;
		*) args+=("$f") ;;
		esac
	done
	log="$scratch/$name.log"
	if (cd "$root/$crate" && cargo +nightly fuzz run "${fuzz_flags[@]}" "$name" \
		"$scratch/$name" "$seeds" -- -max_total_time="$secs" -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 "${args[@]}") >"$log" 2>&1; then
		runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')
		rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')
		cov=$(grep -oE '(INITED|DONE|#[0-9]+).*cov: [0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+' || true)
		echo "fuzz: $crate/$name: ok, $runs runs in ${secs} s ($rate exec/s, $cov, seeds $(find "$seeds" -type f | wc -l))"
	else
		echo "fuzz: $crate/$name: FAILED" >&2
		grep -E 'panicked|ERROR|SUMMARY|Test unit written|artifact_prefix|Reproduce with|cargo fuzz run' "$log" | head -20 >&2 || true
		tail -40 "$log" >&2
		failed+=("$crate/$name")
	fi
	if [ "${FUZZ_MERGE:-}" = "1" ]; then
		merge "$crate" "$name" "$seeds" "$scratch/$name"
	fi
done

echo "fuzz: ${#selected[@]} targets in $(elapsed) s (budget ${total} s)"
if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: FAILED: ${failed[*]}" >&2
	exit 1
fi
