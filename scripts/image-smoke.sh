#!/usr/bin/env bash
# Checks the container image's runtime stage: both binaries start and the
# tools the proxy calls (iptables, ip6tables, ipset, conntrack) are there.
#
# With a usable Docker daemon it builds the Dockerfile and runs the image.
# Without one (this project's build machines have neither a daemon nor
# registry access), it rebuilds the runtime stage by hand: a debootstrap of
# Debian bookworm (minbase, what debian:bookworm-slim is made from), the same
# `apt-get install` line as the Dockerfile, the release binaries built here
# with the same toolchain, and the same checks inside a chroot. It prints the
# root filesystem's size as an estimate of the image's.
#
# Not part of scripts/test.sh: it downloads ~100 MB and takes minutes.
set -euo pipefail
root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

checks='set -e
sluice-proxy --help >/dev/null
sluice-ingress --help >/dev/null
iptables --version
ip6tables --version
ipset version
conntrack --version
echo "runtime stage OK"'

if docker info >/dev/null 2>&1; then
	docker build -t sluice:smoke .
	docker run --rm --entrypoint sh sluice:smoke -c "$checks"
	docker image ls sluice:smoke
	exit 0
fi

echo "no Docker daemon: rebuilding the runtime stage with debootstrap" >&2
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
cargo build --release --locked -q -p sluice-proxy -p sluice-ingress --bin sluice-proxy --bin sluice-ingress
rootfs=$(mktemp -d /tmp/sluice-image-XXXXXX)
trap 'umount "$rootfs/proc" 2>/dev/null || true; rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
# The Dockerfile's runtime RUN line.
chroot "$rootfs" sh -c 'apt-get update -q >/dev/null \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        iptables ipset conntrack ca-certificates >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin'
# Debian's container images carry apt's docker-clean setting: no .deb left.
rm -f "$rootfs"/var/cache/apt/archives/*.deb
# Stripped, as the Dockerfile installs them (the release profile keeps line
# tables for profiling).
install -s -m 0755 target/release/sluice-proxy target/release/sluice-ingress "$rootfs/usr/local/bin/"
mount -t proc proc "$rootfs/proc"
chroot "$rootfs" sh -c "$checks"
echo "root filesystem (≈ image size; slim also drops docs and locales): $(du -sh --exclude=proc "$rootfs" | cut -f1)"
echo "of which the two binaries: $(du -ch "$rootfs"/usr/local/bin/sluice-* | tail -1 | cut -f1)"
