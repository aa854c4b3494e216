#!/usr/bin/env bash
# The main job on an embedded default, no cluster needed: sluice-proxy and
# sluice-ingress read the example manifests (examples/manifests plus a TLS
# Secret generated now), inside the IPVS VM (this host kernel has no IPVS):
# the proxy programs IPVS, kube-ipvs0, ipsets and iptables in front of two
# "pods" (network namespaces), the ingress routes host and path rules over
# HTTPS to the same pods; requests go through ClusterIPs, a NodePort and the
# Ingress. Exits non-zero if any step fails.
set -euo pipefail
root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup.sh
cargo build -q -p sluice-proxy -p sluice-ingress --bin sluice-proxy --bin sluice-ingress --example demo-cert

# The demo's manifests: the examples plus a throwaway CA and TLS Secret for
# the Ingress (no key is committed; see ingress/examples/demo-cert.rs).
# Under /tmp, which the VM shares with the host.
demo=$(mktemp -d /tmp/sluice-demo.XXXXXX)
trap 'rm -rf "$demo"' EXIT
mkdir "$demo/manifests"
cp examples/manifests/*.yaml "$demo/manifests/"
target/debug/examples/demo-cert "$demo" shop/shop-tls shop.demo sticky.demo
mv "$demo/tls-secret.json" "$demo/manifests/"

start=$(date +%s)
if [ -e /proc/net/ip_vs ] && [ -n "${SLUICE_DEMO_ON_HOST:-}" ]; then
	SLUICE_DEMO_DIR=$demo bash scripts/demo-guest.sh
else
	tests/vm/sluice-vm --timeout 300 --env "SLUICE_DEMO_DIR=$demo" -- bash "$root/scripts/demo-guest.sh"
fi
cat <<TXT

Demo finished in $(($(date +%s) - start)) s (after the build).

Where to go next:
  * On a real cluster: README.md "Quickstart" (helm install charts/sluice,
    replacing kube-proxy, switching an Ingress to class sluice).
  * bash scripts/test.sh runs every test (the VM tier and the chart included).
  * bench/run ipvs-sync compares ipvs-sys with ipvsadm on 110,000 objects
    (BENCHMARKS.md).
  * ARCHITECTURE.md explains the data flow; docs/ has the migration guides.
TXT
