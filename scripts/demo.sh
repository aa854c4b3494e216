#!/usr/bin/env bash
# The main job on an embedded default, no cluster needed: sluice-proxy reads
# the example manifests and programs IPVS, kube-ipvs0, ipsets and iptables
# inside the IPVS VM (this host kernel has no IPVS), in front of two "pods";
# requests go through the ClusterIP and the NodePort.
set -euo pipefail
root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup.sh
cargo build -q -p sluice-proxy
if [ -e /proc/net/ip_vs ] && [ -n "${SLUICE_DEMO_ON_HOST:-}" ]; then
	bash scripts/demo-guest.sh
else
	tests/vm/sluice-vm --timeout 300 -- bash "$root/scripts/demo-guest.sh"
fi
cat <<'TXT'

Next: `bash scripts/test.sh` runs every test (the VM tier included);
`bench/run ipvs-sync` compares ipvs-sys with ipvsadm on 110,000 objects;
ARCHITECTURE.md explains the data flow.
TXT
