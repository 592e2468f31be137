#!/usr/bin/env python3
"""Draws benches/ceiling/run's results.json as PNG files (matplotlib).

  plot.py RESULTS.json OUTDIR

ceiling.png (GB per relay CPU-second by frame size and direction), curves-cpu.png (relay
CPU-seconds per GB against active connections), curves-rss.png (RSS per idle connection against
connections), latency.png (p50/p99 at half the proxy's ceiling), rewrite.png (Metadata rewrite
time and peak heap against response size). Medians; bars and whiskers span min–max of the
undisturbed rounds.
"""
import json
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"proxy": "#1f77b4", "proxy-logwarn": "#aec7e8", "floor": "#2ca02c", "stunnel": "#7f7f7f",
          "grepplabs": "#ff7f0e", "grepplabs-tuned": "#ffbb78", "kroxylicious": "#d62728",
          "kroxylicious-tuned": "#ff9896", "direct": "#9467bd"}


def stats(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def ceiling(res, out):
    rows = [x for x in res.get("ceiling", []) if "error" not in x and not x.get("disturbed")]
    if not rows:
        return
    sizes = res["settings"]["sizes"]
    groups = [(m, s) for s in sizes for m in ("produce", "fetch")]
    relays = list(dict.fromkeys(x["relay"] for x in rows))
    fig, ax = plt.subplots(figsize=(11, 5))
    width = 0.8 / len(relays)
    for i, k in enumerate(relays):
        xs, ys, lo, hi = [], [], [], []
        for g, (m, s) in enumerate(groups):
            st = stats([x.get("gb_per_core_s") for x in rows if x["relay"] == k and x["mode"] == m and x["size"] == s])
            if st:
                xs.append(g + i * width)
                ys.append(st[0])
                lo.append(st[0] - st[1])
                hi.append(st[2] - st[0])
        ax.bar(xs, ys, width, yerr=[lo, hi], label=k, color=COLORS.get(k))
    ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))])
    ax.set_xticklabels(["%s\n%s" % (m, s) for m, s in groups])
    ax.set_yscale("log")
    ax.set_ylabel("GB per relay CPU-second (= GB/s per core)")
    ax.set_title("Ceiling per core: relay pinned to one core, fake mutual-TLS broker, loopback")
    ax.legend(fontsize=8, ncol=3)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "ceiling.png"), dpi=110)


def curves(res, out):
    act = [x for x in res.get("active", []) if "error" not in x and not x.get("disturbed") and x.get("cpu_s_per_gb")]
    idle = [x for x in res.get("idle", []) if "error" not in x and "rss_per_connection" in x]
    if act:
        fig, ax = plt.subplots(1, 2, figsize=(11, 4.5))
        for k in dict.fromkeys(x["relay"] for x in act):
            ns = sorted({x["n"] for x in act if x["relay"] == k})
            cpu = [stats([x["cpu_s_per_gb"] for x in act if x["relay"] == k and x["n"] == n])[0] for n in ns]
            rss = [stats([x["relay_rss"] / 2**20 for x in act if x["relay"] == k and x["n"] == n])[0] for n in ns]
            ax[0].plot(ns, cpu, "o-", label=k, color=COLORS.get(k))
            ax[1].plot(ns, rss, "o-", label=k, color=COLORS.get(k))
        ax[0].set_xscale("log")
        ax[0].set_xlabel("active connections (16 KiB produce, 1 in flight each)")
        ax[0].set_ylabel("relay CPU-seconds per GB")
        ax[1].set_xscale("log")
        ax[1].set_yscale("log")
        ax[1].set_xlabel("active connections")
        ax[1].set_ylabel("relay RSS, MiB")
        for a in ax:
            a.grid(alpha=0.3, which="both")
            a.legend(fontsize=8)
        fig.suptitle("Cost against connections (active)")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "curves-cpu.png"), dpi=110)
    if idle:
        fig, ax = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
        for j, kind in enumerate(("silent", "one_request")):
            for k in dict.fromkeys(x["relay"] for x in idle):
                sel = [x for x in idle if x["relay"] == k and x["kind"] == kind and x["n"] >= 100]
                ns = sorted({x["n"] for x in sel})
                kib = [stats([x["rss_per_connection"] / 1024 for x in sel if x["n"] == n])[0] for n in ns]
                ax[j].plot(ns, kib, "o-", label=k, color=COLORS.get(k))
            ax[j].set_xscale("log")
            ax[j].set_yscale("symlog", linthresh=1)
            ax[j].set_xlabel("idle connections")
            ax[j].set_title({"silent": "connected, sent nothing",
                             "one_request": "one request (ApiVersions), then idle"}[kind])
            ax[j].grid(alpha=0.3, which="both")
            ax[j].axhline(8, color="k", ls=":", lw=1)
            ax[j].legend(fontsize=8)
        ax[0].set_ylabel("relay RSS per connection, KiB (dotted: 8 KiB target)")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "curves-rss.png"), dpi=110)


def latency(res, out):
    lat = [x for x in res.get("latency", []) if "error" not in x and not x.get("disturbed") and x.get("latency")]
    if not lat:
        return
    keys = list(dict.fromkeys(x["relay"] for x in lat))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for j, q in enumerate(("p50_us", "p99_us")):
        ys, lo, hi = [], [], []
        for k in keys:
            st = stats([x["latency"][q] for x in lat if x["relay"] == k])
            ys.append(st[0])
            lo.append(st[0] - st[1])
            hi.append(st[2] - st[0])
        ax.bar([i + j * 0.4 for i in range(len(keys))], ys, 0.4, yerr=[lo, hi], label=q.split("_")[0])
    ax.set_xticks([i + 0.2 for i in range(len(keys))])
    ax.set_xticklabels(keys, rotation=20, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("round trip, µs")
    ax.set_title("16 KiB produce at %s requests/s (half the proxy's ceiling)" % res.get("latency_rate"))
    ax.legend()
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "latency.png"), dpi=110)


def rewrite(res, out):
    rw = res.get("rewrite")
    if not isinstance(rw, list):
        return
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.5))
    for brokers in sorted({x["brokers"] for x in rw}):
        sel = sorted((x for x in rw if x["brokers"] == brokers), key=lambda x: x["bytes"])
        ax[0].plot([x["bytes"] for x in sel], [x["median_us"] for x in sel], "o-", label="%d brokers" % brokers)
        ax[1].plot([x["bytes"] for x in sel], [x["peak_heap_bytes"] / 1024 for x in sel], "o-",
                   label="%d brokers" % brokers)
    b = [x["bytes"] for x in rw]
    lo, hi = min(b), max(b)
    ref = min(x["median_us"] / x["bytes"] for x in rw)
    ax[0].plot([lo, hi], [ref * lo, ref * hi], "k:", lw=1, label="linear")
    ax[1].plot([lo, hi], [lo / 1024, hi / 1024], "k:", lw=1, label="1 × response size")
    for a in ax:
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel("Metadata v12 response bytes (1,000 and 100,000 partitions)")
        a.grid(alpha=0.3, which="both")
        a.legend(fontsize=8)
    ax[0].set_ylabel("rewrite time, µs (median)")
    ax[1].set_ylabel("peak heap during the rewrite, KiB")
    fig.suptitle("Metadata rewrite against cluster size")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "rewrite.png"), dpi=110)


def main():
    with open(sys.argv[1]) as f:
        res = json.load(f)
    out = sys.argv[2]
    os.makedirs(out, exist_ok=True)
    for f in (ceiling, curves, latency, rewrite):
        try:
            f(res, out)
        except Exception as e:  # noqa: BLE001
            print("plot %s failed: %s" % (f.__name__, e), file=sys.stderr)
    print("plots in %s" % out)


if __name__ == "__main__":
    main()
