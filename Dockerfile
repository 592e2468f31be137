# kafka-tls-proxy container image: build stage (Rust on Debian bookworm) -> distroless runtime
# (glibc + libgcc + CA certificates, no shell, non-root). The binary needs only libc, libm and
# libgcc_s (TLS is rustls + aws-lc, linked statically).
#
#   docker build -t kafka-tls-proxy .
#   docker run --rm --network host --stop-timeout 30 \
#       -v /etc/kafka-tls-proxy:/etc/kafka-tls-proxy:ro \
#       -e KTP_UPSTREAM=b-1.mycluster.abc123.c2.kafka.eu-west-1.amazonaws.com:9094 \
#       -e KTP_CLIENT_CERT=/etc/kafka-tls-proxy/client.pem -e KTP_CLIENT_KEY=/etc/kafka-tls-proxy/client.key \
#       kafka-tls-proxy
#
# Keep in sync with tests/deploy/docker-build.sh, which CI runs instead of `docker build` (there
# is no Docker engine there): it runs this file's `RUN cargo build` line verbatim, assembles the
# runtime file tree below, and runs the binary from it as user 65532 with only these libraries.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin kafka-tls-proxy

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /src/target/release/kafka-tls-proxy /usr/local/bin/kafka-tls-proxy
USER 65532:65532
# `docker stop` waits 10 s by default before SIGKILL: drain for 8 s unless told otherwise (give
# --stop-timeout 30 and -e KTP_DRAIN_TIMEOUT=25s for longer drains; Nomad passes its own).
ENV KTP_DRAIN_TIMEOUT=8s
# Bootstrap, and brokers 1..9 (node id N -> 9100 + N). The admin port 9644 (/metrics, /healthz,
# /readyz) listens on 127.0.0.1 inside the container unless KTP_ADMIN_ADDRESS says otherwise.
EXPOSE 9092 9101-9109
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/kafka-tls-proxy", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/kafka-tls-proxy"]
CMD ["run"]
