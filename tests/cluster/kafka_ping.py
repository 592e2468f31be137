#!/usr/bin/env python3
"""kafka_ping.py: is a Kafka broker ready over (mutual) TLS?  Python 3 stdlib only.

Opens TLS to each HOST:PORT (SNI + hostname verification against --ca), presents the client
certificate (--cert/--key) if given, sends a Metadata request (v1, request header v1, no topics)
and checks that the response lists at least --expect-brokers brokers. Prints one line per target:

    b-1.msk.test:9094 ok brokers=1:b-1.msk.test:9094,2:b-2.msk.test:9094,3:b-3.msk.test:9094 controller=2

Exit status 0 when every target is ready, 1 otherwise. With --wait SECONDS it retries (every
--interval seconds) until all targets are ready or the time is up; the last error per target is
printed on failure.

Example:
    kafka_ping.py --ca certs-dev/ca.pem --cert certs-dev/admin.pem --key certs-dev/admin.key \\
        --expect-brokers 3 --wait 60 b-1.msk.test:9094 b-2.msk.test:9094
"""
import argparse
import socket
import ssl
import struct
import sys
import time


class PingError(Exception):
    pass


def _read_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise PingError("connection closed by broker after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


class _Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise PingError("truncated Metadata response")
        val = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return val[0] if len(val) == 1 else val

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n]
        self.pos += n
        return s.decode("utf-8")


def metadata_v1(host, port, ctx, timeout, client_id="kafka-ping"):
    """Returns (brokers [(node_id, host, port, rack)], controller_id)."""
    raw = socket.create_connection((host, port), timeout=timeout)
    try:
        sock = ctx.wrap_socket(raw, server_hostname=host) if ctx else raw
        with sock:
            sock.settimeout(timeout)
            cid = 0x4B54
            cid_bytes = client_id.encode()
            body = struct.pack(">hhih", 3, 1, cid, len(cid_bytes)) + cid_bytes
            body += struct.pack(">i", 0)  # topics: empty array = no topics, brokers only
            sock.sendall(struct.pack(">i", len(body)) + body)
            size = struct.unpack(">i", _read_exact(sock, 4))[0]
            if size <= 0 or size > 16 << 20:
                raise PingError("implausible response size %d (not a Kafka broker?)" % size)
            r = _Reader(_read_exact(sock, size))
            if r.take(">i") != cid:
                raise PingError("correlation id mismatch")
            brokers = []
            for _ in range(r.take(">i")):
                node = r.take(">i")
                bhost = r.string()
                bport = r.take(">i")
                rack = r.string()
                brokers.append((node, bhost, bport, rack))
            controller = r.take(">i")
            return brokers, controller
    finally:
        raw.close()


def make_context(ca, cert, key, key_password=None, verify=True):
    if ca is None and not verify:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=ca)
        ctx.check_hostname = verify
    if cert:
        ctx.load_cert_chain(cert, key, password=key_password)
    return ctx


def parse_target(t):
    host, _, port = t.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit("bad target %r, expected HOST:PORT" % t)
    return host, int(port)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("targets", nargs="+", metavar="HOST:PORT")
    ap.add_argument("--ca", help="CA file (PEM) to verify the broker; default: system roots")
    ap.add_argument("--cert", help="client certificate chain (PEM)")
    ap.add_argument("--key", help="client private key (PEM)")
    ap.add_argument("--key-password", help="passphrase of an encrypted --key")
    ap.add_argument("--plaintext", action="store_true", help="no TLS")
    ap.add_argument("--expect-brokers", type=int, default=1, help="minimum number of brokers listed")
    ap.add_argument("--timeout", type=float, default=5.0, help="per-connection timeout, seconds")
    ap.add_argument("--wait", type=float, default=0.0, help="retry for up to this many seconds")
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args(argv)

    ctx = None if a.plaintext else make_context(a.ca, a.cert, a.key, a.key_password)
    pending = {t: "not tried" for t in a.targets}
    deadline = time.monotonic() + a.wait
    while True:
        for t in list(pending):
            host, port = parse_target(t)
            try:
                brokers, controller = metadata_v1(host, port, ctx, a.timeout)
                if len(brokers) < a.expect_brokers:
                    raise PingError("lists %d broker(s), expected %d" % (len(brokers), a.expect_brokers))
                if not a.quiet:
                    desc = ",".join("%d:%s:%d" % (n, h, p) for n, h, p, _ in sorted(brokers))
                    print("%s ok brokers=%s controller=%d" % (t, desc, controller), flush=True)
                del pending[t]
            except (OSError, ssl.SSLError, PingError, ValueError) as e:
                pending[t] = "%s: %s" % (type(e).__name__, e)
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(a.interval)
    for t, err in pending.items():
        print("%s NOT READY %s" % (t, err), file=sys.stderr, flush=True)
    return 1 if pending else 0


if __name__ == "__main__":
    sys.exit(main())
