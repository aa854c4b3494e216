#!/usr/bin/env bash
# Runs inside the IPVS VM (see scripts/demo.sh): two "pods" as network
# namespaces serving HTTP with busybox, sluice-proxy fed from
# examples/manifests, requests through the ClusterIP and the NodePort.
set -euo pipefail
root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
proxy="$root/target/debug/sluice-proxy"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

for n in 1 2; do
	ip netns add "pod-$n"
	ip link add "vh$n" type veth peer name eth0 netns "pod-$n"
	ip addr add "10.244.$n.1/24" dev "vh$n"
	ip link set "vh$n" up
	ip -n "pod-$n" addr add "10.244.$n.2/24" dev eth0
	ip -n "pod-$n" link set eth0 up
	ip -n "pod-$n" link set lo up
	ip -n "pod-$n" route add default via "10.244.$n.1"
	mkdir -p "/tmp/www-$n"
	echo "hello from pod-$n (10.244.$n.2)" > "/tmp/www-$n/index.html"
	ip netns exec "pod-$n" busybox httpd -p 8080 -h "/tmp/www-$n"
done
# A node address for NodePorts, and a client outside the node.
ip netns add client
ip link add eth-node type veth peer name eth0 netns client
ip addr add 192.168.50.10/24 dev eth-node
ip link set eth-node up
ip -n client addr add 192.168.50.20/24 dev eth0
ip -n client link set eth0 up
ip -n client route add default via 192.168.50.10

say "sluice-proxy --manifests examples/manifests"
"$proxy" --manifests "$root/examples/manifests" --hostname-override demo-node \
	--healthz-bind-address 127.0.0.1:10256 --metrics-bind-address 127.0.0.1:10249 &
pid=$!
for _ in $(seq 100); do
	ipvsadm -Sn | grep -q 10.244.2.2:8080 && iptables-save | grep -q KUBE-POSTROUTING && break
	sleep 0.2
done

say "ipvsadm -Ln"
ipvsadm -Ln
say "ip -br addr show kube-ipvs0"
ip -br addr show kube-ipvs0

say "requests through ClusterIP 10.96.0.10:80 (round robin)"
for i in 1 2 3 4; do
	printf 'GET http://10.96.0.10/ -> '
	curl -sS --max-time 5 http://10.96.0.10/
done
say "requests through ClusterIP 10.96.0.20:80 (ClientIP affinity, sh scheduler)"
for i in 1 2 3; do
	printf 'GET http://10.96.0.20/ -> '
	curl -sS --max-time 5 http://10.96.0.20/
done
say "request from outside the node through NodePort 192.168.50.10:30080"
printf 'GET http://192.168.50.10:30080/ -> '
ip netns exec client curl -sS --max-time 5 http://192.168.50.10:30080/

say "health and metrics (kube-proxy's endpoints and names)"
curl -sS --max-time 5 http://127.0.0.1:10256/healthz
echo
curl -sS --max-time 5 http://127.0.0.1:10249/metrics | grep -E '^kubeproxy_sync_proxy_rules_(duration_seconds_count|last_timestamp_seconds|service_changes_total|endpoint_changes_total)'

kill "$pid"
wait "$pid" || true
say "sluice-proxy --cleanup"
"$proxy" --cleanup
echo "IPVS services left: $(ipvsadm -Sn | wc -l); KUBE- chains left: $(iptables-save | grep -c '^:KUBE-' || true); kube-ipvs0: $(ip -o link show kube-ipvs0 2>/dev/null | wc -l)"
