#!/usr/bin/env python3
"""Small raw-protocol Kafka clients for the end-to-end benchmark (python3 stdlib only).

  kafkaload.py probe  --target HOST:PORT [--tls ...] --topic T --rate R --seconds S
      One connection, Produce v8 (acks=all, one 1 KiB record per request, partition 0) at a fixed
      rate, one request in flight; prints JSON with the round-trip percentiles in microseconds.
      The Java producer-perf-test reports percentiles in whole milliseconds only, too coarse for
      a 0.5 ms target; this measures each request's round trip with perf_counter_ns.
  kafkaload.py idle   --targets H:P,H:P,... --count N [--window W]
      Opens N plaintext connections round-robin over the targets, sends ApiVersions v3 on each
      and waits for the answer, then prints `READY ok=N failed=F seconds=S` and keeps every
      connection open (idle) until its standard input closes.
  kafkaload.py churn  --targets H:P,... [--tls ...] --seconds S [--threads T]
      Connect, ApiVersions v3, close, as fast as T threads can; prints JSON with the rate.

TLS options (direct to the brokers): --tls --ca FILE --cert FILE --key FILE --server-name NAME
(the name checked in the broker certificate; default the target's host).
"""
import argparse
import json
import resource
import selectors
import socket
import ssl
import struct
import sys
import threading
import time

# ---------------------------------------------------------------- encoding


def str16(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def uvarint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint(n):  # zigzag
    return uvarint((n << 1) ^ (n >> 63))


def compact_str(s):
    b = s.encode()
    return uvarint(len(b) + 1) + b


def frame(body):
    return struct.pack(">i", len(body)) + body


def api_versions_request(correlation_id):
    """ApiVersions v3 (request header v2), as current Java clients send it."""
    body = struct.pack(">hhi", 18, 3, correlation_id) + str16("ktp-bench") + b"\x00"
    body += compact_str("ktp-bench") + compact_str("1.0") + b"\x00"
    return frame(body)


def _crc32c_table():
    poly = 0x82F63B78
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def record_batch(value):
    """A magic v2 record batch holding one record (no key, no headers)."""
    now = int(time.time() * 1000)
    rec = b"\x00" + varint(0) + varint(0) + varint(-1) + varint(len(value)) + value + varint(0)
    rec = varint(len(rec)) + rec
    after_crc = struct.pack(">hiqqqhii", 0, 0, now, now, -1, -1, -1, 1) + rec
    crc = crc32c(after_crc)
    after_len = struct.pack(">ibI", -1, 2, crc) + after_crc
    return struct.pack(">qi", 0, len(after_len)) + after_len


def produce_request_parts(topic, value):
    """Produce v8 (header v1) to partition 0, acks=-1; returns (header-less body) bytes."""
    batch = record_batch(value)
    return (
        struct.pack(">hhi", -1, -1, 30000)  # transactional_id null, acks=all, timeout
        + struct.pack(">i", 1)
        + str16(topic)
        + struct.pack(">i", 1)
        + struct.pack(">i", 0)
        + struct.pack(">i", len(batch))
        + batch
    )


def produce_request(correlation_id, body):
    return frame(struct.pack(">hhi", 0, 8, correlation_id) + str16("ktp-probe") + body)


# ---------------------------------------------------------------- I/O helpers


def parse_target(t):
    host, port = t.rsplit(":", 1)
    return host, int(port)


def tls_context(args):
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.load_cert_chain(args.cert, args.key)
    return ctx


def open_conn(target, args, ctx=None):
    host, port = target
    s = socket.create_connection((host, port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if ctx is not None:
        s = ctx.wrap_socket(s, server_hostname=args.server_name or host)
    return s


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return bytes(buf)


def recv_frame(s):
    (n,) = struct.unpack(">i", recv_exact(s, 4))
    return recv_exact(s, n)


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[i]


# ---------------------------------------------------------------- probe


def cmd_probe(args):
    ctx = tls_context(args) if args.tls else None
    s = open_conn(parse_target(args.target), args, ctx)
    body = produce_request_parts(args.topic, b"\x5a" * args.record_size)
    interval = 1.0 / args.rate
    lat = []
    errors = 0
    corr = 0
    start = time.perf_counter()
    deadline = start + args.seconds
    next_at = start
    while True:
        now = time.perf_counter()
        if now >= deadline:
            break
        if now < next_at:
            time.sleep(next_at - now)
        next_at += interval
        corr += 1
        req = produce_request(corr, body)
        t0 = time.perf_counter_ns()
        s.sendall(req)
        resp = recv_frame(s)
        t1 = time.perf_counter_ns()
        (rcorr,) = struct.unpack(">i", resp[:4])
        if rcorr != corr:
            raise SystemExit("correlation id mismatch: %d != %d" % (rcorr, corr))
        # responses[1]: name(str16), partitions[1]: index int32, error_code int16
        off = 4 + 4
        (nlen,) = struct.unpack(">h", resp[off : off + 2])
        off += 2 + nlen + 4 + 4
        (err,) = struct.unpack(">h", resp[off : off + 2])
        if err != 0:
            errors += 1
        if corr > args.warmup:
            lat.append((t1 - t0) / 1000.0)
    s.close()
    lat.sort()
    out = {
        "requests": len(lat),
        "errors": errors,
        "rate": args.rate,
        "mean_us": sum(lat) / len(lat) if lat else None,
        "p50_us": percentile(lat, 0.50),
        "p90_us": percentile(lat, 0.90),
        "p99_us": percentile(lat, 0.99),
        "p999_us": percentile(lat, 0.999),
        "max_us": lat[-1] if lat else None,
    }
    print(json.dumps(out))


# ---------------------------------------------------------------- idle


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, n)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cmd_idle(args):
    raise_nofile(args.count * 2 + 1024)
    targets = [parse_target(t) for t in args.targets.split(",")]
    sel = selectors.DefaultSelector()
    t0 = time.monotonic()
    opened = 0
    pending = 0
    ok = []
    failed = 0
    bufs = {}
    deadline = t0 + args.timeout

    def start_one(i):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex(targets[i % len(targets)])
        bufs[s] = bytearray()
        sel.register(s, selectors.EVENT_WRITE, "connect")

    while (opened < args.count or pending) and time.monotonic() < deadline:
        while opened < args.count and pending < args.window:
            start_one(opened)
            opened += 1
            pending += 1
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            if key.data == "connect":
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    sel.unregister(s)
                    s.close()
                    failed += 1
                    pending -= 1
                    continue
                s.send(api_versions_request(1))
                sel.modify(s, selectors.EVENT_READ, "read")
            else:
                try:
                    chunk = s.recv(65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    sel.unregister(s)
                    s.close()
                    failed += 1
                    pending -= 1
                    continue
                buf = bufs[s]
                buf += chunk
                if len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">i", buf[:4])[0]:
                    sel.unregister(s)
                    err = struct.unpack(">h", buf[8:10])[0]
                    if err == 0:
                        ok.append(s)
                    else:
                        s.close()
                        failed += 1
                    pending -= 1
                    del bufs[s]
    failed += pending
    print("READY ok=%d failed=%d seconds=%.2f" % (len(ok), failed, time.monotonic() - t0), flush=True)
    sys.stdin.read()  # hold until the harness closes our stdin
    for s in ok:
        s.close()


# ---------------------------------------------------------------- churn


def cmd_churn(args):
    targets = [parse_target(t) for t in args.targets.split(",")]
    ctx = tls_context(args) if args.tls else None
    counts = [0] * args.threads
    errors = [0] * args.threads
    stop = time.monotonic() + args.seconds

    def worker(n):
        i = n
        while time.monotonic() < stop:
            try:
                s = open_conn(targets[i % len(targets)], args, ctx)
                s.sendall(api_versions_request(i))
                resp = recv_frame(s)
                if struct.unpack(">h", resp[4:6])[0] != 0:
                    raise ConnectionError("ApiVersions error")
                s.close()
                counts[n] += 1
            except (OSError, ConnectionError):
                errors[n] += 1
                time.sleep(0.01)
            i += args.threads

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    print(json.dumps({
        "connections": sum(counts),
        "errors": sum(errors),
        "seconds": elapsed,
        "per_second": sum(counts) / elapsed,
        "threads": args.threads,
    }))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)

    def tls_opts(q):
        q.add_argument("--tls", action="store_true")
        q.add_argument("--ca")
        q.add_argument("--cert")
        q.add_argument("--key")
        q.add_argument("--server-name")

    q = sub.add_parser("probe")
    q.add_argument("--target", required=True)
    q.add_argument("--topic", required=True)
    q.add_argument("--rate", type=float, default=200)
    q.add_argument("--seconds", type=float, default=15)
    q.add_argument("--warmup", type=int, default=50)
    q.add_argument("--record-size", type=int, default=1024)
    tls_opts(q)
    q = sub.add_parser("idle")
    q.add_argument("--targets", required=True)
    q.add_argument("--count", type=int, default=10000)
    q.add_argument("--window", type=int, default=200)
    q.add_argument("--timeout", type=float, default=180)
    q = sub.add_parser("churn")
    q.add_argument("--targets", required=True)
    q.add_argument("--seconds", type=float, default=5)
    q.add_argument("--threads", type=int, default=4)
    tls_opts(q)
    args = p.parse_args()
    {"probe": cmd_probe, "idle": cmd_idle, "churn": cmd_churn}[args.cmd](args)


if __name__ == "__main__":
    main()
