#!/usr/bin/env bash
# tests/deploy/docker-build.sh: the Dockerfile's build, without a Docker engine (CI has none).
#
#  1. checks the Dockerfile still has the shape this script mirrors (builder, distroless runtime,
#     non-root USER, exec-form HEALTHCHECK calling the binary, ENTRYPOINT, EXPOSE);
#  2. runs the Dockerfile's `RUN cargo build ...` line verbatim (cargo build --release --locked);
#  3. assembles the runtime image's file tree in a temp dir: the binary, the CA bundle, and only
#     the shared libraries that gcr.io/distroless/cc-debian12 has (glibc, libgcc_s, libssl);
#     fails if the binary needs any other library;
#  4. runs the binary inside that tree (chroot) as uid/gid 65532, like the image's USER:
#     --version, --help, and `healthcheck` against a stub admin server answering /readyz with
#     200 (exit 0 expected), 503 (exit 1) and against a closed port (exit 1).
#
# Usage: tests/deploy/docker-build.sh   (as root, for chroot). Exit 0 = everything above held.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)
[ -d "$HOME/.cargo/bin" ] && PATH="$HOME/.cargo/bin:$PATH"
DOCKERFILE=$REPO/Dockerfile
BIN_IN_IMAGE=/usr/local/bin/kafka-tls-proxy
IMAGE_UID=65532

fail() { echo "docker-build: FAIL: $*" >&2; exit 1; }
ok() { echo "docker-build: ok: $*"; }

# ---------------------------------------------------------------- 1. the Dockerfile's shape
[ -f "$DOCKERFILE" ] || fail "no Dockerfile"
froms=$(grep -c '^FROM ' "$DOCKERFILE")
[ "$froms" -ge 2 ] || fail "Dockerfile is not multi-stage ($froms FROM lines)"
grep -q '^FROM rust:[^ ]*bookworm AS build$' "$DOCKERFILE" || fail "builder stage is not rust:*bookworm AS build"
runtime=$(grep '^FROM ' "$DOCKERFILE" | tail -1 | awk '{print $2}')
[ "$runtime" = "gcr.io/distroless/cc-debian12:nonroot" ] ||
  fail "runtime image is $runtime; this script's library allowlist is for gcr.io/distroless/cc-debian12:nonroot"
grep -q "^USER $IMAGE_UID:$IMAGE_UID\$" "$DOCKERFILE" || fail "USER $IMAGE_UID:$IMAGE_UID missing"
grep -q "CMD \[\"$BIN_IN_IMAGE\", \"healthcheck\"\]" "$DOCKERFILE" || fail "HEALTHCHECK does not run $BIN_IN_IMAGE healthcheck"
grep -q "^ENTRYPOINT \[\"$BIN_IN_IMAGE\"\]\$" "$DOCKERFILE" || fail "ENTRYPOINT is not [\"$BIN_IN_IMAGE\"]"
grep -q '^EXPOSE 9092 ' "$DOCKERFILE" || fail "EXPOSE 9092 (bootstrap) missing"
grep -q "^COPY --from=build /src/target/release/kafka-tls-proxy $BIN_IN_IMAGE\$" "$DOCKERFILE" ||
  fail "the runtime stage does not copy the release binary to $BIN_IN_IMAGE"
grep -q '^COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt$' "$DOCKERFILE" ||
  fail "the runtime stage does not copy the CA bundle"
# Everything the build stage copies must exist (a missing one breaks `docker build`).
while read -r src; do
  [ -e "$REPO/$src" ] || fail "Dockerfile copies $src, which does not exist"
done < <(awk '/^FROM .* AS build/{b=1; next} /^FROM /{b=0} b && /^COPY / && !/--from/ {for (i=2; i<NF; i++) print $i}' "$DOCKERFILE")
# Every target path Cargo.toml names must be inside what the build stage copies (cargo refuses
# to load a manifest whose [[bench]]/[[test]]/[[bin]] file is missing).
copied=$(awk '/^FROM .* AS build/{b=1; next} /^FROM /{b=0} b && /^COPY / && !/--from/ {for (i=2; i<NF; i++) print $i}' "$DOCKERFILE")
while read -r target; do
  top=${target%%/*}
  grep -qx "$top" <<<"$copied" || fail "Cargo.toml names $target, but the Dockerfile does not copy $top"
done < <(sed -n 's/^path *= *"\([^"]*\)".*/\1/p' Cargo.toml)
# ... and .dockerignore must not hide them.
if [ -f .dockerignore ]; then
  for src in $copied; do
    ! grep -qx "$src" .dockerignore || fail ".dockerignore excludes $src, which the build needs"
  done
fi
ok "Dockerfile: multi-stage, $runtime, USER $IMAGE_UID, HEALTHCHECK/ENTRYPOINT $BIN_IN_IMAGE"

# ---------------------------------------------------------------- 2. the build, verbatim
build_cmd=$(sed -n 's/^RUN \(cargo build .*\)$/\1/p' "$DOCKERFILE")
[ -n "$build_cmd" ] || fail "no 'RUN cargo build' line in the Dockerfile"
case "$build_cmd" in *--release*--locked*|*--locked*--release*) ;; *) fail "build is not --release --locked: $build_cmd" ;; esac
echo "docker-build: $build_cmd"
t0=$(date +%s)
$build_cmd
ok "built in $(( $(date +%s) - t0 )) s"
BIN=$REPO/target/release/kafka-tls-proxy
[ -x "$BIN" ] || fail "$BIN missing after the build"

# ---------------------------------------------------------------- 3. the runtime file tree
ROOT=$(mktemp -d /tmp/ktp-image.XXXXXX)
chmod 0755 "$ROOT"
STUB_PID=
cleanup() { [ -n "$STUB_PID" ] && kill "$STUB_PID" 2>/dev/null; rm -rf "$ROOT"; }
trap cleanup EXIT
install -D -m 0755 "$BIN" "$ROOT$BIN_IN_IMAGE"
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
mkdir -p "$ROOT/tmp" && chmod 1777 "$ROOT/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%s:%s:nonroot:/home/nonroot:/sbin/nologin\n' $IMAGE_UID $IMAGE_UID >"$ROOT/etc/passwd"

# Libraries of distroless cc-debian12 (base: glibc, libssl3, ca-certificates; cc: + libgcc_s,
# libstdc++, libgomp). Anything else the binary links would be missing at run time.
ALLOWED='^(ld-linux-x86-64\.so\.2|ld-linux-aarch64\.so\.1|libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|libresolv\.so\.2|libnss_[a-z]+\.so\.2|libgcc_s\.so\.1|libstdc\+\+\.so\.6|libgomp\.so\.1|libssl\.so\.3|libcrypto\.so\.3|linux-vdso\.so\.1)$'
needed=$(ldd "$BIN" | awk '{print $1}')
for lib in $needed; do
  name=$(basename "$lib")
  [[ $name =~ $ALLOWED ]] || fail "the binary needs $name, which $runtime does not have (ldd: $(ldd "$BIN" | tr '\n' ' '))"
done
ldd "$BIN" | awk '/=> \// {print $3} /^[ \t]*\/lib/ {print $1}' | while read -r path; do
  install -D -m 0755 "$(readlink -f "$path")" "$ROOT$path"
done
ok "ldd: $(echo $needed | tr ' ' ',') — all in $runtime"

# ---------------------------------------------------------------- 4. run it like the image does
in_image() { chroot --userspec=$IMAGE_UID:$IMAGE_UID "$ROOT" "$BIN_IN_IMAGE" "$@"; }
[ "$(id -u)" = 0 ] || fail "needs root (chroot)"
version=$(in_image --version) || fail "--version failed in the runtime tree"
[[ $version == kafka-tls-proxy\ * ]] || fail "--version printed: $version"
ok "--version as uid $IMAGE_UID: $version"
help=$(in_image --help) || fail "--help failed in the runtime tree"
for flag in --upstream --client-cert --client-key --bind-address --admin-address --drain-timeout; do
  grep -q -- "$flag" <<<"$help" || fail "--help lacks $flag"
done
ok "--help as uid $IMAGE_UID lists the flags"

# healthcheck: a stub admin server on loopback answers /readyz with the status in a file.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
STATUS=$ROOT/tmp/status
echo 200 >"$STATUS"
python3 - "$PORT" "$STATUS" <<'PY' &
import http.server, sys
port, status_file = int(sys.argv[1]), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = int(open(status_file).read()) if self.path == "/readyz" else 404
        body = b"ready\n" if code == 200 else b"not ready\n"
        self.send_response(code); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
PY
STUB_PID=$!
for _ in $(seq 50); do python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 0.2)" 2>/dev/null && break; sleep 0.1; done
# Exactly the image's HEALTHCHECK command; the admin address comes from the environment, as in a
# container started with -e KTP_ADMIN_ADDRESS=... (default 127.0.0.1:9644).
hc() { local rc=0; KTP_ADMIN_ADDRESS=$1 timeout 10 chroot --userspec=$IMAGE_UID:$IMAGE_UID "$ROOT" "$BIN_IN_IMAGE" healthcheck >/dev/null 2>&1 || rc=$?; echo "$rc"; }
rc=$(hc "127.0.0.1:$PORT"); [ "$rc" = 0 ] || fail "healthcheck against a ready /readyz (200) exited $rc, expected 0"
echo 503 >"$STATUS"
rc=$(hc "127.0.0.1:$PORT"); [ "$rc" = 1 ] || fail "healthcheck against an unready /readyz (503) exited $rc, expected 1"
kill "$STUB_PID"; wait "$STUB_PID" 2>/dev/null || true; STUB_PID=
rc=$(hc "127.0.0.1:$PORT"); [ "$rc" = 1 ] || fail "healthcheck against a closed admin port exited $rc, expected 1"
ok "healthcheck as uid $IMAGE_UID: 200 -> 0, 503 -> 1, closed port -> 1"
echo "docker-build: passed"
