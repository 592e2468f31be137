#!/usr/bin/env bash
# tests/tailnet/down.sh: stops up.sh's tailscaled processes and control server, deletes its
# namespaces and the proxy node's veth and TUN device. Safe to run when nothing is up.
RUN=${RUN:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../../target/tailnet}
NS=${NS:-ts}
for f in "$RUN"/*/pid "$RUN"/control.pid; do
  [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
done
for n in hub alice bob carol; do
  for p in $(ip netns pids "$NS-$n" 2>/dev/null); do kill "$p" 2>/dev/null; done
done
sleep 1
for f in "$RUN"/*/pid "$RUN"/control.pid; do
  [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
  rm -f "$f"
done
for n in hub alice bob carol; do
  for p in $(ip netns pids "$NS-$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  ip netns del "$NS-$n" 2>/dev/null
done
ip link del ktp-hub0 2>/dev/null
ip link del ktp-ts0 2>/dev/null
true
