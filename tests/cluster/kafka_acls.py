#!/usr/bin/env python3
"""kafka_acls.py: create ACLs with one CreateAcls request (v2), Python 3 stdlib only.

Used by cluster.sh to set up the test cluster's ACLs without paying a JVM start per ACL.
Each ACL is one argument  RESOURCE_TYPE:PATTERN_TYPE:NAME:PRINCIPAL:OPERATION[:HOST[:PERMISSION]]
e.g.  topic:prefixed:svc.:User:service:read   (the principal is "User:service").

    kafka_acls.py --ca CA --cert CERT --key KEY b-1.msk.test:9094 topic:prefixed:svc.:User:service:read ...

Exit status 0 when the broker accepted every ACL.
"""
import argparse
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafka_ping  # noqa: E402

RESOURCE = {"topic": 2, "group": 3, "cluster": 4, "transactional-id": 5, "transactionalid": 5,
            "delegation-token": 6, "user": 7}
PATTERN = {"literal": 3, "prefixed": 4}
OPERATION = {"all": 2, "read": 3, "write": 4, "create": 5, "delete": 6, "alter": 7, "describe": 8,
             "cluster-action": 9, "describe-configs": 10, "alter-configs": 11, "idempotent-write": 12}
PERMISSION = {"deny": 2, "allow": 3}


def _uvarint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _cstr(s):
    b = s.encode()
    return _uvarint(len(b) + 1) + b


def parse_acl(spec):
    parts = spec.split(":")
    if len(parts) < 6:
        raise SystemExit("bad ACL %r: RESOURCE_TYPE:PATTERN_TYPE:NAME:PRINCIPAL_TYPE:PRINCIPAL:OPERATION[:HOST[:PERMISSION]]" % spec)
    rtype, ptype, name, pt, pn, op = parts[:6]
    host = parts[6] if len(parts) > 6 else "*"
    perm = parts[7] if len(parts) > 7 else "allow"
    return (RESOURCE[rtype.lower()], name, PATTERN[ptype.lower()], "%s:%s" % (pt, pn), host,
            OPERATION[op.lower()], PERMISSION[perm.lower()])


def create_acls(host, port, ctx, acls, timeout=10.0):
    """Sends CreateAcls v2 (flexible); returns a list of (error_code, error_message) per ACL."""
    import socket
    raw = socket.create_connection((host, port), timeout=timeout)
    with raw, ctx.wrap_socket(raw, server_hostname=host) as sock:
        sock.settimeout(timeout)
        cid = 0x4B55
        client_id = b"kafka-acls-py"
        # request header v2: api_key, api_version, correlation_id, client_id (int16 string), tags
        msg = struct.pack(">hhih", 30, 2, cid, len(client_id)) + client_id + b"\x00"
        msg += _uvarint(len(acls) + 1)
        for rtype, name, ptype, principal, h, op, perm in acls:
            msg += struct.pack(">b", rtype) + _cstr(name) + struct.pack(">b", ptype)
            msg += _cstr(principal) + _cstr(h) + struct.pack(">bb", op, perm) + b"\x00"
        msg += b"\x00"
        sock.sendall(struct.pack(">i", len(msg)) + msg)
        size = struct.unpack(">i", kafka_ping._read_exact(sock, 4))[0]
        data = kafka_ping._read_exact(sock, size)
    pos = 0

    def uvarint():
        nonlocal pos
        shift = val = 0
        while True:
            b = data[pos]
            pos += 1
            val |= (b & 0x7F) << shift
            if not b & 0x80:
                return val
            shift += 7

    def skip_tags():
        nonlocal pos
        for _ in range(uvarint()):
            uvarint()
            pos += uvarint()

    if struct.unpack_from(">i", data, 0)[0] != cid:
        raise kafka_ping.PingError("correlation id mismatch")
    pos = 4
    skip_tags()          # response header v1
    pos += 4             # throttle_time_ms
    results = []
    for _ in range(uvarint() - 1):
        code = struct.unpack_from(">h", data, pos)[0]
        pos += 2
        n = uvarint() - 1
        msg_txt = None if n < 0 else data[pos:pos + n].decode()
        pos += max(n, 0)
        skip_tags()
        results.append((code, msg_txt))
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", metavar="HOST:PORT")
    ap.add_argument("acls", nargs="+")
    ap.add_argument("--ca")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--timeout", type=float, default=10.0)
    a = ap.parse_args(argv)
    host, port = kafka_ping.parse_target(a.target)
    acls = [parse_acl(s) for s in a.acls]
    ctx = kafka_ping.make_context(a.ca, a.cert, a.key)
    results = create_acls(host, port, ctx, acls, a.timeout)
    failed = 0
    for spec, (code, text) in zip(a.acls, results):
        if code != 0:
            failed += 1
            print("ACL %s: error %d %s" % (spec, code, text or ""), file=sys.stderr)
    if len(results) != len(acls):
        print("broker answered %d results for %d ACLs" % (len(results), len(acls)), file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
