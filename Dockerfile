# syntax=docker/dockerfile:1
# The Sluice image: sluice-proxy and sluice-ingress on debian:bookworm-slim,
# with the tools sluice-proxy runs (iptables-restore/-save, ipset, conntrack).
#
#   docker build -t sluice:0.1.0 .
#
# sluice-proxy cannot run as non-root: it programs the host network
# namespace over netlink and through iptables/ipset, which check the
# capabilities of uid 0 (the chart gives it NET_ADMIN and NET_RAW, or
# privileged). sluice-ingress needs no privilege; the chart runs it as uid
# 65532 (USER below), without capabilities.

# --- build ---------------------------------------------------------------
# The toolchain the project is built and tested with (Cargo.toml's
# rust-version, 1.89, is the declared floor).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# --locked: exactly the dependency versions of Cargo.lock. No OpenSSL: TLS
# is rustls with ring.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sluice-proxy -p sluice-ingress \
        --bin sluice-proxy --bin sluice-ingress \
 && install -D -s -m 0755 target/release/sluice-proxy /out/sluice-proxy \
 && install -D -s -m 0755 target/release/sluice-ingress /out/sluice-ingress

# --- runtime -------------------------------------------------------------
FROM debian:bookworm-slim
# iptables uses Debian's default backend (nf_tables), which matches nodes
# whose kube-proxy/kubelet rules are in nf_tables (Debian 11+, Ubuntu 21.04+,
# RHEL 8+). On a node still on the legacy backend, derive an image that runs
# `update-alternatives --set iptables /usr/sbin/iptables-legacy` (and the
# ip6tables twin).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        iptables ipset conntrack ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/sluice-proxy /out/sluice-ingress /usr/local/bin/
# The default user suits sluice-ingress; the chart runs sluice-proxy as root.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/sluice-ingress"]
