#!/usr/bin/env bash
# Runs inside the IPVS VM (see scripts/demo.sh): two "pods" as network
# namespaces serving HTTP with busybox, sluice-proxy and sluice-ingress fed
# from $SLUICE_DEMO_DIR/manifests, requests through the ClusterIPs, the
# NodePort and the Ingress (HTTPS with SNI, host and path rules). Any failed
# or unexpected answer stops the demo with a non-zero status.
set -euo pipefail
root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
demo=${SLUICE_DEMO_DIR:?set by scripts/demo.sh}
manifests="$demo/manifests"
proxy="$root/target/debug/sluice-proxy"
ingress="$root/target/debug/sluice-ingress"
t0=$(date +%s)
say() { printf '\n\033[1m== %s\033[0m  [+%ss]\n' "$*" "$(($(date +%s) - t0))"; }
fail() { printf '\033[31mFAILED: %s\033[0m\n' "$*" >&2; exit 1; }
# show LABEL WANT CMD...: runs CMD, prints "LABEL -> answer", fails unless
# the answer contains WANT.
show() {
	local label=$1 want=$2 answer
	shift 2
	answer=$("$@" 2>&1) || fail "$label: $answer"
	printf '%-52s -> %s\n' "$label" "$answer"
	[[ $answer == *"$want"* ]] || fail "$label: expected \"$want\""
}
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

# The topology in one `ip -batch` per namespace: under TCG every process
# start costs, so a dozen `ip` calls would dominate the demo.
for n in 1 2; do
	mkdir -p "/tmp/www-$n/api"
	echo "hello from pod-$n (10.244.$n.2)" > "/tmp/www-$n/index.html"
	echo "api answer from pod-$n (10.244.$n.2)" > "/tmp/www-$n/api/index.html"
done
# Two pods, a node address for NodePorts and the Ingress, and a client
# outside the node.
ip -batch - <<'IP'
netns add pod-1
netns add pod-2
netns add client
link add vh1 type veth peer name eth0 netns pod-1
link add vh2 type veth peer name eth0 netns pod-2
link add eth-node type veth peer name eth0 netns client
addr add 10.244.1.1/24 dev vh1
addr add 10.244.2.1/24 dev vh2
addr add 192.168.50.10/24 dev eth-node
link set vh1 up
link set vh2 up
link set eth-node up
IP
for ns in pod-1:10.244.1.2/24:10.244.1.1 pod-2:10.244.2.2/24:10.244.2.1 client:192.168.50.20/24:192.168.50.10; do
	IFS=: read -r name addr gw <<<"$ns"
	ip -n "$name" -batch - <<IP
addr add $addr dev eth0
link set eth0 up
link set lo up
route add default via $gw
IP
done
for n in 1 2; do ip netns exec "pod-$n" busybox httpd -p 8080 -h "/tmp/www-$n"; done

say "sluice-proxy --manifests $manifests"
"$proxy" --manifests "$manifests" --hostname-override demo-node \
	--healthz-bind-address 127.0.0.1:10256 --metrics-bind-address 127.0.0.1:10249 &
pids+=($!)
say "sluice-ingress --manifests $manifests"
"$ingress" --manifests "$manifests" --http-addr 0.0.0.0:80 --https-addr 0.0.0.0:443 \
	--admin-addr 127.0.0.1:10254 2> "$demo/ingress.log" &
pids+=($!)
for _ in $(seq 150); do
	ipvsadm -Sn | grep -q 10.96.0.30 && iptables-save | grep -q KUBE-POSTROUTING &&
		[ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:10254/readyz)" = 200 ] && break
	sleep 0.2
done
ipvsadm -Sn | grep -q 10.96.0.30 || fail "sluice-proxy did not program IPVS"
[ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:10254/readyz)" = 200 ] ||
	{ cat "$demo/ingress.log"; fail "sluice-ingress not ready"; }

say "ipvsadm -Ln"
ipvsadm -Ln
say "ip -br addr show kube-ipvs0"
ip -br addr show kube-ipvs0

get() { curl -sS --max-time 15 "$@"; }
say "ClusterIP 10.96.0.10:80 (round robin over pod-1 and pod-2)"
for _ in 1 2 3 4; do show "GET http://10.96.0.10/" "hello from pod-" get http://10.96.0.10/; done
say "ClusterIP 10.96.0.20:80 (ClientIP affinity, sh scheduler: one pod)"
first=$(get http://10.96.0.20/)
for _ in 1 2; do show "GET http://10.96.0.20/" "$first" get http://10.96.0.20/; done
say "ClusterIP 10.96.0.30:80 (one endpoint)"
show "GET http://10.96.0.30/api/" "api answer from pod-2" get http://10.96.0.30/api/
say "NodePort 192.168.50.10:30080, from a client outside the node"
show "GET http://192.168.50.10:30080/" "hello from pod-" ip netns exec client curl -sS --max-time 15 http://192.168.50.10:30080/

say "sluice-ingress on 192.168.50.10:443: TLS by SNI, host and path rules (client outside the node)"
tls() { # HOST PATH: HTTPS with SNI HOST, checked against the demo CA
	ip netns exec client curl -sS --max-time 15 --cacert "$demo/ca.crt" \
		--resolve "$1:443:192.168.50.10" "https://$1$2"
}
# One request shows the answer and the certificate curl verified.
out=$(ip netns exec client curl -sS -v --max-time 15 --cacert "$demo/ca.crt" \
	--resolve shop.demo:443:192.168.50.10 https://shop.demo/ 2>&1) || fail "https://shop.demo/: $out"
show "GET https://shop.demo/       (rule shop.demo /)" "hello from pod-" echo "$(grep '^hello' <<<"$out")"
show "  certificate curl verified" "issuer CN=Sluice demo CA" \
	echo "$(sed -n 's/^\* *\(subject\|issuer\): /\1 /p' <<<"$out" | paste -sd';' -)"
show "GET https://shop.demo/api/   (rule shop.demo /api)" "api answer from pod-2" tls shop.demo /api/
show "GET https://sticky.demo/     (rule sticky.demo /)" "hello from pod-" tls sticky.demo /
show "GET http://shop.demo/        (TLS host over HTTP)" "308 https://shop.demo/" \
	ip netns exec client curl -sS -o /dev/null --max-time 15 -w '%{http_code} %{redirect_url}' \
	--resolve shop.demo:80:192.168.50.10 http://shop.demo/
show "GET http://unknown.demo/     (no rule)" "404" \
	ip netns exec client curl -sS -o /dev/null --max-time 15 -w '%{http_code}' \
	--resolve unknown.demo:80:192.168.50.10 http://unknown.demo/

say "health and metrics (kube-proxy's endpoints and names; the gateway's admin port)"
show "GET http://127.0.0.1:10256/healthz (sluice-proxy)" "lastUpdated" get http://127.0.0.1:10256/healthz
get http://127.0.0.1:10249/metrics | grep -E '^kubeproxy_sync_proxy_rules_(duration_seconds_count|last_timestamp_seconds|service_changes_total|endpoint_changes_total)'
show "GET http://127.0.0.1:10254/readyz (sluice-ingress)" "ready" get http://127.0.0.1:10254/readyz

for p in "${pids[@]}"; do kill "$p"; wait "$p" || true; done
pids=()
say "sluice-proxy --cleanup"
"$proxy" --cleanup
left_ipvs=$(ipvsadm -Sn | wc -l)
left_chains=$(iptables-save | grep -c '^:KUBE-' || true)
left_link=$( (ip -o link show kube-ipvs0 2>/dev/null || true) | wc -l)
echo "IPVS services left: $left_ipvs; KUBE- chains left: $left_chains; kube-ipvs0: $left_link"
[ "$left_ipvs" = 0 ] && [ "$left_chains" = 0 ] && [ "$left_link" = 0 ] || fail "--cleanup left state behind"
say "demo OK"
