#!/usr/bin/env python3
"""Where a process's CPU goes, from a `perf record --call-graph dwarf` file (python3 stdlib).

  perf_summary.py PERF.DATA [--top N]

Each sample is put in one category by its stack: kernel time by the system call it is in
(socket write, socket read, epoll wait, futex), user time by the innermost frame that names a
component (aws-lc crypto, rustls, the allocator, memcpy, tracing, metrics, tokio, the proxy's own
code). Prints the categories, then the heaviest innermost user frames, then for the allocator
and memcpy the proxy/rustls/tokio/bytes frames that call them.
"""
import collections
import re
import subprocess
import sys

KERNEL_SYSCALLS = [
    ("kernel: socket write (writev/send)", re.compile(r"^(__GI___writev|writev|__send|__libc_send|sendto|__libc_write|write)$")),
    ("kernel: socket read (recv/read)", re.compile(r"^(__libc_recv|recv|recvfrom|__libc_read|read|readv)$")),
    ("kernel: epoll_wait (idle/park)", re.compile(r"^epoll_wait$")),
    ("kernel: futex (wake/park threads)", re.compile(r"^syscall$|futex")),
]

USER = [
    ("aws-lc crypto (AES-GCM, ...)", re.compile(r"aws_lc|aes_gcm|gcm_|sha\d")),
    ("allocator (malloc/free)", re.compile(r"_int_malloc|_int_free|malloc|cfree|__libc_free|realloc|mi_|je_")),
    ("memcpy/memmove", re.compile(r"memmove|memcpy|memset")),
    ("tracing (spans, filter)", re.compile(r"tracing|EnvFilter|sharded::Registry")),
    ("metrics", re.compile(r"metrics|ddsketch")),
    ("rustls (record layer, non-crypto)", re.compile(r"rustls")),
    ("kafka-tls-proxy code", re.compile(r"kafka_tls_proxy")),
    ("bytes", re.compile(r"^bytes::|<bytes::")),
    ("tokio runtime / io", re.compile(r"tokio|mio::")),
]

CALLER = re.compile(r"kafka_tls_proxy|rustls|tokio_rustls|bytes::|tokio::io|kafka_protocol")


def stacks(path):
    out = subprocess.run(["perf", "script", "-i", path, "-F", "ip,sym,dso"],
                         capture_output=True, text=True).stdout
    cur = []
    for line in out.splitlines():
        if not line.strip():
            if cur:
                yield cur
            cur = []
            continue
        parts = line.strip().split(None, 1)
        if len(parts) < 2:
            continue
        m = re.match(r"(.*?)\s+\((.*)\)$", parts[1])
        sym, dso = (m.group(1), m.group(2)) if m else (parts[1], "")
        sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
        cur.append((sym, dso))
    if cur:
        yield cur


def classify(st):
    kernel = "kernel" in st[0][1] or st[0][0].startswith("[")
    if kernel:
        for sym, dso in st:
            if "kernel" in dso:
                continue
            for name, rx in KERNEL_SYSCALLS:
                if rx.search(sym):
                    return name, None
            return "kernel: other (page faults, interrupts, ...)", None
        return "kernel: other (page faults, interrupts, ...)", None
    for i, (sym, _) in enumerate(st):
        for name, rx in USER:
            if rx.search(sym):
                return name, i
    return "other user code", 0


def main():
    path = sys.argv[1]
    top = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[2] == "--top" else 15
    cats = collections.Counter()
    leaves = collections.Counter()
    callers = collections.defaultdict(collections.Counter)
    n = 0
    for st in stacks(path):
        n += 1
        cat, i = classify(st)
        cats[cat] += 1
        if i is not None:
            leaves[st[0][0][:100]] += 1
        if cat.startswith("allocator") or cat.startswith("memcpy"):
            for sym, _ in st[1:]:
                if CALLER.search(sym) and "alloc::" not in sym:
                    callers[cat][sym[:110]] += 1
                    break
    if not n:
        print("no samples in %s" % path)
        return
    print("%d samples" % n)
    print("\nby category:")
    for k, v in cats.most_common():
        print("  %5.1f%%  %s" % (100.0 * v / n, k))
    print("\ninnermost user frames:")
    for k, v in leaves.most_common(top):
        print("  %5.1f%%  %s" % (100.0 * v / n, k))
    for cat, c in callers.items():
        print("\n%s, called from:" % cat)
        for k, v in c.most_common(8):
            print("  %5.1f%%  %s" % (100.0 * v / n, k))


if __name__ == "__main__":
    main()
