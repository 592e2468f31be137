#!/usr/bin/env bash
# tests/tailnet/build.sh [OUT]: builds, from the tailscale.com Go module (v1.102.5, go.mod),
# `tailscaled` with the CLI embedded (`tailscale` is a symlink to it) and only the features a
# TUN node on a test tailnet needs (cmd/featuretags --min: the CLI, the OS router, the IPN bus,
# LocalAPI permissions by the caller's user),
# and `control` (control.go: tailscale's own testcontrol server with its DERP and STUN servers).
# OUT defaults to <repo>/.cache/tailnet/bin; a build whose inputs (this script, go.mod, go.sum,
# control.go) have not changed is reused. A few minutes on 2 cores the first time.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${1:-$HERE/../../.cache/tailnet/bin}
mkdir -p "$OUT"
cd "$HERE"
stamp=$(cat build.sh go.mod go.sum control.go | sha256sum | cut -c1-16)
if [ -x "$OUT/tailscaled" ] && [ -x "$OUT/control" ] && [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "$OUT"
  exit 0
fi
tags=$(go run tailscale.com/cmd/featuretags --min --add=cli,osrouter,ipnbus,unixsocketidentity)
go build -tags "$tags" -o "$OUT/tailscaled" tailscale.com/cmd/tailscaled
ln -sf tailscaled "$OUT/tailscale"
go build -o "$OUT/control" .
echo "$stamp" >"$OUT/.stamp"
echo "$OUT"
