#!/usr/bin/env bash
# tests/tailnet/up.sh (root): a real tailnet on this machine. Namespace NS-hub holds a bridge
# (10.77.0.1/24) with the control server, DERP and STUN; the proxy's node is this host's own
# network namespace (veth ktp-hub0, 10.77.0.2, TUN device ktp-ts0), so the proxy reaches the
# test cluster on loopback as every other test does; the laptops alice, bob and carol are
# namespaces NS-alice, NS-bob and NS-carol (10.77.0.3-5), each with tailscaled on a TUN device.
# All join with an auth key, in this order, so their tailnet addresses and logins are fixed:
#   proxy 100.64.0.1 user-1@fake-control.example.net   alice 100.64.0.2 user-2@...
#   bob   100.64.0.3 user-3@...                        carol 100.64.0.4 user-4@...
# KTP_TAILNET_APP_CAPS (JSON) is granted to every peer; per-peer grants: POST
# http://10.77.0.1:9911/ktp/grants (control.go). BIN: build.sh's binaries; RUN: state,
# sockets and logs (RUN/NODE/sock is NODE's LocalAPI). NS: the namespaces' prefix (default ts;
# named namespaces are visible machine-wide, so runs in different network namespaces need
# different prefixes). down.sh (same RUN and NS) undoes it all.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN=${BIN:-$HERE/../../.cache/tailnet/bin}
RUN=${RUN:-$HERE/../../target/tailnet}
NS=${NS:-ts}
LAPTOPS="alice bob carol"
rm -rf "$RUN"
mkdir -p "$RUN"
ip netns add "$NS-hub"
ip -n "$NS-hub" link set lo up
ip -n "$NS-hub" link add br0 type bridge
ip -n "$NS-hub" addr add 10.77.0.1/24 dev br0
ip -n "$NS-hub" link set br0 up
# The proxy's node: this namespace.
ip link add ktp-hub0 type veth peer name v-proxy netns "$NS-hub"
ip -n "$NS-hub" link set v-proxy master br0 up
ip addr add 10.77.0.2/24 dev ktp-hub0
ip link set ktp-hub0 up
i=3
for n in $LAPTOPS; do
  ip netns add "$NS-$n"
  ip -n "$NS-$n" link set lo up
  ip link add "v-$n" type veth peer name eth0 netns "$NS-$n"
  ip link set "v-$n" netns "$NS-hub"
  ip -n "$NS-hub" link set "v-$n" master br0 up
  ip -n "$NS-$n" addr add "10.77.0.$i/24" dev eth0
  ip -n "$NS-$n" link set eth0 up
  ip -n "$NS-$n" route add default via 10.77.0.1
  i=$((i + 1))
done
ip netns exec "$NS-hub" "$BIN/control" -ip 10.77.0.1 ${KTP_TAILNET_APP_CAPS:+-app-caps "$KTP_TAILNET_APP_CAPS"} \
  >"$RUN/control.log" 2>&1 &
echo $! >"$RUN/control.pid"
for _ in $(seq 100); do
  grep -q "control on" "$RUN/control.log" 2>/dev/null && break
  sleep 0.1
done
start_node() { # NAME TUN [netns prefix...]
  local n=$1 tun=$2
  shift 2
  mkdir -p "$RUN/$n"
  "$@" "$BIN/tailscaled" --state="$RUN/$n/state" --socket="$RUN/$n/sock" \
    --statedir="$RUN/$n" --tun="$tun" --port=41641 >"$RUN/$n/tailscaled.log" 2>&1 &
  echo $! >"$RUN/$n/pid"
}
start_node proxy ktp-ts0
for n in $LAPTOPS; do start_node "$n" tailscale0 ip netns exec "$NS-$n"; done
for n in proxy $LAPTOPS; do
  for _ in $(seq 100); do [ -S "$RUN/$n/sock" ] && break; sleep 0.1; done
done
up() { # NAME [netns prefix...]
  local n=$1
  shift
  "$@" "$BIN/tailscale" --socket="$RUN/$n/sock" up --login-server=http://10.77.0.1:9911 \
    --authkey=test-auth-key --hostname="$n" --accept-dns=false --timeout=60s
}
up proxy
for n in $LAPTOPS; do up "$n" ip netns exec "$NS-$n"; done
"$BIN/tailscale" --socket="$RUN/proxy/sock" status
