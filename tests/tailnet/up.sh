#!/usr/bin/env bash
# tests/tailnet/up.sh: a real tailnet in network namespaces (root): ts-hub holds a bridge
# 10.77.0.1/24 with the control server, DERP and STUN; ts-proxy, ts-alice and ts-bob each run
# tailscaled with a TUN device, joined with an auth key. Tailnet addresses follow registration
# order: proxy 100.64.0.1 (user-1@fake-control.example.net), alice 100.64.0.2 (user-2@...),
# bob 100.64.0.3 (user-3@...). KTP_TAILNET_APP_CAPS (JSON) is granted to every peer.
# BIN: the binaries of build.sh; RUN: state, sockets and logs (RUN/NODE/sock is NODE's LocalAPI).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN=${BIN:-$HERE/../../.cache/tailnet/bin}
RUN=${RUN:-$HERE/../../target/tailnet}
NODES="proxy alice bob"
mkdir -p "$RUN"
ip netns add ts-hub
ip -n ts-hub link set lo up
ip -n ts-hub link add br0 type bridge
ip -n ts-hub addr add 10.77.0.1/24 dev br0
ip -n ts-hub link set br0 up
i=2
for n in $NODES; do
  ip netns add "ts-$n"
  ip -n "ts-$n" link set lo up
  ip link add "v-$n" type veth peer name eth0 netns "ts-$n"
  ip link set "v-$n" netns ts-hub
  ip -n ts-hub link set "v-$n" master br0 up
  ip -n "ts-$n" addr add "10.77.0.$i/24" dev eth0
  ip -n "ts-$n" link set eth0 up
  ip -n "ts-$n" route add default via 10.77.0.1
  i=$((i + 1))
done
ip netns exec ts-hub "$BIN/control" -ip 10.77.0.1 ${KTP_TAILNET_APP_CAPS:+-app-caps "$KTP_TAILNET_APP_CAPS"} \
  >"$RUN/control.log" 2>&1 &
sleep 2
for n in $NODES; do
  mkdir -p "$RUN/$n"
  ip netns exec "ts-$n" "$BIN/tailscaled" --state="$RUN/$n/state" --socket="$RUN/$n/sock" \
    --statedir="$RUN/$n" --tun=tailscale0 --port=41641 >"$RUN/$n/tailscaled.log" 2>&1 &
done
sleep 3
for n in $NODES; do
  ip netns exec "ts-$n" "$BIN/tailscale" --socket="$RUN/$n/sock" up \
    --login-server=http://10.77.0.1:9911 --authkey=test-auth-key --hostname="$n" --timeout=60s
done
ip netns exec ts-proxy "$BIN/tailscale" --socket="$RUN/proxy/sock" status
