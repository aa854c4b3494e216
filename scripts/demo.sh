#!/usr/bin/env bash
# The main job on an embedded default, no cluster needed: build, boot the
# IPVS VM (this host kernel has no IPVS), program an example table with
# ipvs-sys, and show what ipvsadm and ip read back.
set -euo pipefail
root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup.sh
cargo build -q -p ipvs-sys --example program
exe="$root/target/debug/examples/program"
run=(bash -c "set -e; '$exe'; echo; echo '\$ ipvsadm -Ln'; ipvsadm -Ln; echo; echo '\$ ip -br addr show kube-ipvs0'; ip -br addr show kube-ipvs0")
if [ -e /proc/net/ip_vs ]; then
	"${run[@]}"
else
	tests/vm/sluice-vm --timeout 300 -- "${run[@]}"
fi
cat <<'TXT'

Next: `bash scripts/test.sh` runs every test (the VM tier included);
`bench/run ipvs-sync` compares ipvs-sys with ipvsadm on 110,000 objects.
TXT
