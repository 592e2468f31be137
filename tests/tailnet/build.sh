#!/usr/bin/env bash
# tests/tailnet/build.sh [OUT]: builds tailscaled, tailscale (v1.102.5, from the tailscale.com Go
# module) and `control` (tailscale's own testcontrol server with its DERP and STUN servers) into
# OUT (default: <repo>/.cache/tailnet/bin). About 10 minutes on 2 cores the first time.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${1:-$HERE/../../.cache/tailnet/bin}
mkdir -p "$OUT"
cd "$HERE"
go build -o "$OUT/control" .
go build -o "$OUT/" tailscale.com/cmd/tailscaled tailscale.com/cmd/tailscale
echo "$OUT"
