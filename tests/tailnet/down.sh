#!/usr/bin/env bash
# tests/tailnet/down.sh: stops every process of up.sh's namespaces and deletes them.
for n in hub proxy alice bob; do
  for p in $(ip netns pids "ts-$n" 2>/dev/null); do kill "$p"; done
done
sleep 1
for n in hub proxy alice bob; do
  for p in $(ip netns pids "ts-$n" 2>/dev/null); do kill -9 "$p"; done
  ip netns del "ts-$n" 2>/dev/null || true
done
