#!/usr/bin/env bash
# Builds the real Kubernetes control plane the tests run against, from the Go
# module in tests/cluster/go (pinned k8s.io/kubernetes and etcd, taken from
# the Go module proxy; see tests/cluster/README.md): kube-apiserver,
# kube-controller-manager, kube-scheduler, kube-proxy and etcd.
#
# The binaries are cached outside the work tree, in
#   ${SLUICE_CLUSTER_CACHE:-~/.cache/sluice-cluster}/<key>/bin
# where <key> hashes go.mod and go.sum, so a bump rebuilds and an unchanged
# module never does (idempotent). Never committed.
#
#   build.sh             build what is missing, print the bin dir
#   build.sh --bin-dir   print the bin dir only (exit 1 if not built)
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
mod=$here/go
cache=${SLUICE_CLUSTER_CACHE:-${HOME:-/root}/.cache/sluice-cluster}
key=$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-16)
bin=$cache/$key/bin
components=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd)

built() {
	local c
	for c in "${components[@]}"; do [ -x "$bin/$c" ] || return 1; done
}

if [ "${1-}" = --bin-dir ]; then
	built || { echo "cluster: not built ($bin); run tests/cluster/build.sh" >&2; exit 1; }
	echo "$bin"
	exit 0
fi
if built; then
	echo "$bin"
	exit 0
fi

command -v go >/dev/null || { echo "cluster: go not found (Go 1.26 is needed to build the control plane)" >&2; exit 1; }
mkdir -p "$cache/$key"
exec {lock}>"$cache/.lock"
flock "$lock"
if ! built; then
	start=$(date +%s)
	tmp=$(mktemp -d "$cache/$key/.bin.XXXXXX")
	echo "cluster: building the control plane ($(go version | cut -d' ' -f3), key $key) into $bin" >&2
	# -mod=readonly: go.sum is the pin; a build never edits the module.
	# The version variables are what Kubernetes' own build stamps (without
	# them /version says v0.0.0-master); read the release from go.mod.
	local_ver=$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "$mod/go.mod")
	minor=$(echo "$local_ver" | cut -d. -f2)
	ldflags="-s -w"
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $pkg.gitVersion=$local_ver -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
	done
	(cd "$mod" && GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath -ldflags="$ldflags" -o "$tmp/" \
		k8s.io/kubernetes/cmd/kube-apiserver \
		k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler \
		k8s.io/kubernetes/cmd/kube-proxy) >&2
	(cd "$mod" && GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath -ldflags='-s -w' -o "$tmp/etcd" go.etcd.io/etcd/server/v3) >&2
	rm -rf "$bin"
	mv "$tmp" "$bin"
	echo "cluster: built in $(($(date +%s) - start)) s" >&2
	# Builds for older keys are dead weight.
	find "$cache" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -exec rm -rf {} +
fi
echo "$bin"
