#!/usr/bin/env bash
# Installs what building and testing Sluice needs on a Debian machine.
# Idempotent: installs only what is missing. Needs root for apt-get.
set -euo pipefail
root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
packages=(qemu-system-x86 busybox-static kmod cpio ipvsadm ipset iptables iproute2 conntrack curl ca-certificates python3-venv nghttp2-client nginx apache2-utils)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "setup: missing packages ${missing[*]}; run as root to install them" >&2
		exit 1
	fi
	echo "setup: installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo (Rust toolchain) not found" >&2; exit 1; }
# The control plane the tests run against is built from Go modules
# (tests/cluster/build.sh); Go itself comes with the machine.
command -v go >/dev/null || { echo "setup: go (Go 1.26) not found; the control-plane tier needs it" >&2; exit 1; }
# Fetch the Debian kernel and build the VM's initramfs once (cached).
"$root/tests/vm/sluice-vm" --prepare
