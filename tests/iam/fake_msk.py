"""A stand-in for Amazon MSK's IAM port, for tests/iam.rs (no AWS, loopback only).

The AWS_MSK_IAM signature is checked with botocore (AWS's Python SDK core), an implementation
independent of the proxy's (the Rust SDK's aws-sigv4): the expected signature is recomputed with
botocore's SigV4QueryAuth over the same request, credentials, region and time as the payload
claims, exactly as aws-msk-iam-sasl-signer-python signs its tokens.

Modes:
  fake_msk.py check
      reads JSON lines {"payload": {...}, "secret": "...", "token": null|"...", "region": "...",
      "host": "..."} and writes one JSON line per input: {"ok": bool, "reason": "..."}.
  fake_msk.py serve --cert PEM --key PEM --region R --host H --events FILE
                    [--session-ms 15000] [--credential-seconds 20]
      serves, on 127.0.0.1, a TLS Kafka listener (ApiVersions, SaslHandshake AWS_MSK_IAM,
      SaslAuthenticate, Metadata v12; a session that has expired, or none, closes the connection
      at the next request, as MSK does) and an HTTP listener that plays both the ECS container
      credentials endpoint (GET /ecs) and EC2 IMDSv2 (PUT /latest/api/token, then GET
      /latest/meta-data/iam/security-credentials/[ROLE]). Every credentials answer is a new
      access key expiring --credential-seconds later. Writes {"kafka": PORT, "http": PORT} on
      stdout once listening, and one JSON line per event to FILE.
"""

import argparse
import datetime
import http.server
import json
import secrets
import socket
import ssl
import struct
import sys
import threading
import time

from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
import botocore.auth

PAYLOAD_VERSION = "2020_10_22"
EXPECTED_KEYS = {
    "version", "host", "user-agent", "action", "x-amz-algorithm", "x-amz-credential",
    "x-amz-date", "x-amz-signedheaders", "x-amz-expires", "x-amz-signature",
}


def verify(payload, secret, token, region, host, now=None):
    """Checks an AWS_MSK_IAM payload; returns (ok, reason)."""
    if not isinstance(payload, dict):
        return False, "payload is not an object"
    keys = set(payload)
    want = EXPECTED_KEYS | ({"x-amz-security-token"} if token is not None else set())
    if keys != want:
        return False, f"keys {sorted(keys ^ want)} differ"
    if payload["version"] != PAYLOAD_VERSION:
        return False, "version"
    if payload["host"] != host:
        return False, f"host {payload['host']!r} is not {host!r}"
    if payload["action"] != "kafka-cluster:Connect":
        return False, "action"
    if payload["x-amz-algorithm"] != "AWS4-HMAC-SHA256":
        return False, "algorithm"
    if payload["x-amz-signedheaders"] != "host":
        return False, "signed headers"
    if token is not None and payload["x-amz-security-token"] != token:
        return False, "security token"
    access_key, date, scope_region, service, terminator = payload["x-amz-credential"].split("/")
    signed_at = datetime.datetime.strptime(payload["x-amz-date"], "%Y%m%dT%H%M%SZ")
    if date != signed_at.strftime("%Y%m%d") or service != "kafka-cluster" or terminator != "aws4_request":
        return False, "credential scope"
    if scope_region != region:
        return False, f"region {scope_region!r} is not {region!r}"
    if now is not None:
        age = (now - signed_at).total_seconds()
        if not -300 <= age <= int(payload["x-amz-expires"]):
            return False, f"signed {age:.0f} s ago, outside its validity"

    # botocore signs the same request at the same time with the same credentials.
    request = AWSRequest(method="GET", url=f"https://{host}/",
                         params={"Action": "kafka-cluster:Connect"})
    signer = SigV4QueryAuth(Credentials(access_key, secret, token), "kafka-cluster", region,
                            expires=int(payload["x-amz-expires"]))
    original = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda *a, **k: signed_at
    try:
        signer.add_auth(request)
    finally:
        botocore.auth.get_current_datetime = original
    query = dict(part.split("=", 1) for part in request.url.split("?", 1)[1].split("&"))
    expected = query["X-Amz-Signature"]
    if payload["x-amz-signature"] != expected:
        return False, f"signature {payload['x-amz-signature']} is not botocore's {expected}"
    return True, "signature matches botocore's"


def check_mode():
    for line in sys.stdin:
        if not line.strip():
            continue
        case = json.loads(line)
        ok, reason = verify(case["payload"], case["secret"], case.get("token"), case["region"],
                            case["host"])
        print(json.dumps({"ok": ok, "reason": reason}), flush=True)


# ------------------------------------------------------------------ serve mode

class Events:
    def __init__(self, path):
        self.file = open(path, "a", encoding="utf-8")
        self.lock = threading.Lock()

    def log(self, **event):
        event["t"] = round(time.time(), 3)
        with self.lock:
            self.file.write(json.dumps(event) + "\n")
            self.file.flush()


class Issuer:
    """Hands out a new access key per credentials request and remembers every secret."""

    def __init__(self, lifetime, events):
        self.lifetime = lifetime
        self.events = events
        self.keys = {}
        self.count = 0
        self.lock = threading.Lock()

    def issue(self, source):
        with self.lock:
            self.count += 1
            key = f"ASIAFAKE{self.count:08d}"
            secret = secrets.token_urlsafe(30)
            token = "FwoGZXIvYXdzE" + secrets.token_urlsafe(60) + "/+="
            self.keys[key] = (secret, token)
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=self.lifetime)
        # The test checks that none of these reach the proxy's log.
        self.events.log(event="issued", key=key, source=source, secret=secret, token=token)
        return {
            "AccessKeyId": key,
            "SecretAccessKey": secret,
            "Token": token,
            "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    def lookup(self, key):
        with self.lock:
            return self.keys.get(key)


def http_handler(issuer, events):
    imds_tokens = set()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, code, body, content_type="application/json", headers=None):
            data = body.encode() if isinstance(body, str) else body
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self):
            events.log(event="http", method="PUT", path=self.path)
            if self.path == "/latest/api/token" and self.headers.get("x-aws-ec2-metadata-token-ttl-seconds"):
                token = secrets.token_hex(16)
                imds_tokens.add(token)
                ttl = self.headers.get("x-aws-ec2-metadata-token-ttl-seconds")
                self.reply(200, token, "text/plain", {"x-aws-ec2-metadata-token-ttl-seconds": ttl})
            else:
                self.reply(400, "bad token request", "text/plain")

        def do_GET(self):
            events.log(event="http", method="GET", path=self.path)
            if self.path == "/ecs":
                self.reply(200, json.dumps(issuer.issue("ecs")))
                return
            prefix = "/latest/meta-data/iam/security-credentials/"
            if self.path.startswith(prefix):
                if self.headers.get("x-aws-ec2-metadata-token") not in imds_tokens:
                    self.reply(401, "", "text/plain")
                    return
                role = self.path[len(prefix):]
                if role == "":
                    self.reply(200, "fake-role", "text/plain")
                elif role == "fake-role":
                    creds = issuer.issue("imds")
                    creds.update({"Code": "Success", "Type": "AWS-HMAC",
                                  "LastUpdated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")})
                    self.reply(200, json.dumps(creds))
                else:
                    self.reply(404, "", "text/plain")
                return
            self.reply(404, "", "text/plain")

    return Handler


def uvarint(data, pos):
    shift = value = 0
    while True:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def put_uvarint(value):
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def compact_string(s):
    if s is None:
        return b"\x00"
    data = s.encode()
    return put_uvarint(len(data) + 1) + data


FLEXIBLE_FROM = {18: 3, 17: 99, 36: 2, 3: 9}


class Connection(threading.Thread):
    counter = 0
    counter_lock = threading.Lock()

    def __init__(self, sock, server):
        super().__init__(daemon=True)
        self.sock = sock
        self.server = server
        with Connection.counter_lock:
            Connection.counter += 1
            self.id = Connection.counter
        self.expiry = None  # monotonic deadline of the session
        self.auths = 0
        self.mechanism_ok = False

    def read_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def send(self, correlation_id, flexible_header, body):
        header = struct.pack(">i", correlation_id) + (b"\x00" if flexible_header else b"")
        frame = header + body
        self.sock.sendall(struct.pack(">i", len(frame)) + frame)

    def run(self):
        events = self.server.events
        try:
            self.sock = self.server.context.wrap_socket(self.sock, server_side=True)
            while True:
                size = struct.unpack(">i", self.read_exact(4))[0]
                if not 0 < size <= 1 << 20:
                    events.log(event="bad_frame", conn=self.id, size=size)
                    return
                frame = self.read_exact(size)
                key, version, correlation_id, client_len = struct.unpack(">hhih", frame[:10])
                pos = 10 + max(client_len, 0)
                flexible = version >= FLEXIBLE_FROM.get(key, 99)
                if flexible:
                    tags, pos = uvarint(frame, pos)
                    for _ in range(tags):
                        _, pos = uvarint(frame, pos)
                        length, pos = uvarint(frame, pos)
                        pos += length
                body = frame[pos:]
                if not self.handle(key, version, correlation_id, flexible, body):
                    return
        except (EOFError, ConnectionError, ssl.SSLError, OSError):
            return
        finally:
            events.log(event="closed", conn=self.id, auths=self.auths)
            try:
                self.sock.close()
            except OSError:
                pass

    def handle(self, key, version, correlation_id, flexible, body):
        events = self.server.events
        if key == 18:  # ApiVersions: always answered, header v0
            apis = [(0, 3, 9), (3, 0, 12), (17, 0, 1), (18, 0, 3), (36, 0, 2)]
            if version >= 3:
                out = struct.pack(">h", 0) + put_uvarint(len(apis) + 1)
                for k, lo, hi in apis:
                    out += struct.pack(">hhh", k, lo, hi) + b"\x00"
                out += struct.pack(">i", 0) + b"\x00"
            else:
                out = struct.pack(">hi", 0, len(apis))
                for k, lo, hi in apis:
                    out += struct.pack(">hhh", k, lo, hi)
                if version >= 1:
                    out += struct.pack(">i", 0)
            self.send(correlation_id, False, out)
            return True
        if key == 17:  # SaslHandshake
            (length,) = struct.unpack(">h", body[:2])
            mechanism = body[2:2 + length].decode()
            ok = mechanism == "AWS_MSK_IAM"
            self.mechanism_ok = ok
            out = struct.pack(">hi", 0 if ok else 33, 1) + struct.pack(">h", 11) + b"AWS_MSK_IAM"
            self.send(correlation_id, False, out)
            events.log(event="handshake", conn=self.id, mechanism=mechanism)
            return True
        if key == 36:  # SaslAuthenticate
            if version >= 2:
                length, pos = uvarint(body, 0)
                auth = body[pos:pos + length - 1]
            else:
                (length,) = struct.unpack(">i", body[:4])
                auth = body[4:4 + length]
            return self.authenticate(version, correlation_id, auth)
        # Anything else needs a live session.
        if self.expiry is None or time.monotonic() > self.expiry:
            events.log(event="expired" if self.expiry else "unauthenticated", conn=self.id, api_key=key)
            return False
        if key == 3 and version == 12:
            port = self.server.kafka_port
            out = struct.pack(">i", 0) + put_uvarint(2)
            out += struct.pack(">i", 1) + compact_string(self.server.host) + struct.pack(">i", port)
            out += compact_string(None) + b"\x00"
            out += compact_string("fake-msk-cluster") + struct.pack(">i", 1) + put_uvarint(1) + b"\x00"
            self.send(correlation_id, True, out)
            events.log(event="metadata", conn=self.id)
            return True
        events.log(event="unsupported", conn=self.id, api_key=key, version=version)
        return False

    def authenticate(self, version, correlation_id, auth):
        server = self.server
        error, message, ok, reason, key = 58, None, False, "", None
        try:
            payload = json.loads(auth)
            key = payload.get("x-amz-credential", "").split("/")[0]
            known = server.issuer.lookup(key)
            if not self.mechanism_ok:
                reason = "no SaslHandshake for AWS_MSK_IAM first"
            elif known is None:
                reason = f"unknown access key {key}"
            else:
                ok, reason = verify(payload, known[0], known[1], server.region, server.host,
                                    now=datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None))
        except (ValueError, AttributeError) as e:
            reason = f"payload is not JSON: {e}"
        self.auths += 1
        server.events.log(event="auth", conn=self.id, n=self.auths, key=key, ok=ok, reason=reason)
        if ok:
            error = 0
            self.expiry = time.monotonic() + server.session_ms / 1000
            answer = json.dumps({"version": PAYLOAD_VERSION, "request-id": secrets.token_hex(8)}).encode()
        else:
            message = f"[{secrets.token_hex(4)}]: Access denied ({reason})"
            answer = b""
        if version >= 2:
            out = struct.pack(">h", error) + compact_string(message)
            out += put_uvarint(len(answer) + 1) + answer + struct.pack(">q", server.session_ms if ok else 0) + b"\x00"
            self.send(correlation_id, True, out)
        else:
            out = struct.pack(">h", error)
            out += struct.pack(">h", -1) if message is None else struct.pack(">h", len(message)) + message.encode()
            out += struct.pack(">i", len(answer)) + answer
            if version >= 1:
                out += struct.pack(">q", server.session_ms if ok else 0)
            self.send(correlation_id, False, out)
        self.mechanism_ok = False
        return ok


class Server:
    pass


def serve_mode(args):
    server = Server()
    server.events = Events(args.events)
    server.issuer = Issuer(args.credential_seconds, server.events)
    server.region = args.region
    server.host = args.host
    server.session_ms = args.session_ms

    http_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http_handler(server.issuer, server.events))
    threading.Thread(target=http_server.serve_forever, daemon=True).start()

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    server.kafka_port = listener.getsockname()[1]
    print(json.dumps({"kafka": server.kafka_port, "http": http_server.server_address[1]}), flush=True)
    server.context = context
    while True:
        sock, _ = listener.accept()
        Connection(sock, server).start()


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    sub.add_parser("check")
    serve = sub.add_parser("serve")
    serve.add_argument("--cert", required=True)
    serve.add_argument("--key", required=True)
    serve.add_argument("--region", required=True)
    serve.add_argument("--host", required=True)
    serve.add_argument("--events", required=True)
    serve.add_argument("--session-ms", type=int, default=15000)
    serve.add_argument("--credential-seconds", type=int, default=20)
    args = parser.parse_args()
    if args.mode == "check":
        check_mode()
    else:
        serve_mode(args)


if __name__ == "__main__":
    main()
