#!/usr/bin/env python3
"""Turn the raw files of one `make bench` run (scripts/bench.sh) into results.md.

usage: report.py RUN_DIR OUT.md
RUN_DIR holds meta.tsv, runs.tsv, mem.tsv, checks.tsv, counters.tsv and problems.txt.
"""
import os
import sys

NAMES = {
    "origin": "origin direct (baseline)",
    "portico": "Portico",
    "nginx": "nginx",
    "nginx-nobuf": "nginx, proxy_buffering off",
    "haproxy": "HAProxy",
}
PEERS = [("nginx", "nginx"), ("nginx-nobuf", "nginx (buffering off)"), ("haproxy", "HAProxy")]

SCENARIOS = [
    # id, title, what it measures, columns to show, columns to ratio
    ("s1", "1. Small responses: 13-byte body, 50 keep-alive connections",
     ["rps", "p50", "p99", "max"], ["rps", "p50", "p99"]),
    ("s2", "2. Large responses: 1 MiB body, 10 keep-alive connections",
     ["mbps", "rps", "p50", "p99"], ["mbps", "p99"]),
    ("s2b", "2b. Medium responses: 100 KiB body, 50 keep-alive connections",
     ["mbps", "rps", "p50", "p99"], ["mbps", "p99"]),
    ("s3", "3. New connection per request (Connection: close), 50 connections, 13-byte body",
     ["rps", "p50", "p99"], ["rps", "p99"]),
    ("s4", "4. Error path: origin port refuses connections, 50 keep-alive connections",
     ["rps", "p50", "p99", "rbytes"], ["rps", "p99"]),
]
HEAD = {
    "rps": "req/s", "mbps": "MB/s", "p50": "p50 ms", "p99": "p99 ms", "max": "max ms",
    "rbytes": "bytes/resp",
}
BETTER_HIGH = {"rps", "mbps"}


def read_tsv(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    if not rows:
        return []
    header, rows = rows[0], rows[1:]
    return [dict(zip(header, r)) for r in rows]


def metrics(r):
    secs = int(r["duration_us"]) / 1e6
    n = int(r["requests"])
    return {
        "rps": n / secs,
        "mbps": int(r["bytes"]) / secs / 1e6,
        "p50": int(r["p50_us"]) / 1000,
        "p99": int(r["p99_us"]) / 1000,
        "max": int(r["max_us"]) / 1000,
        "rbytes": int(r["bytes"]) / n if n else 0,
    }


def fmt(key, v):
    if key in ("rps", "rbytes"):
        return "{:,.0f}".format(v)
    if key == "mbps":
        return "{:,.1f}".format(v)
    return "{:.2f}".format(v)


def errors_text(scen, r):
    sock = {k: int(r["err_" + k]) for k in ("connect", "read", "write", "timeout")}
    status = int(r["err_status"])
    parts = ["%s %d" % (k, v) for k, v in sock.items() if v]
    if scen == "s4":
        unexpected = int(r["requests"]) - status
        if unexpected:
            parts.append("%d not 4xx/5xx" % unexpected)
    elif status:
        parts.append("%d non-2xx" % status)
    return ", ".join(parts) if parts else "0"


def main():
    run, out = sys.argv[1], sys.argv[2]
    meta = {m["key"]: m["value"] for m in read_tsv(os.path.join(run, "meta.tsv"))}
    runs = read_tsv(os.path.join(run, "runs.tsv"))
    mem = read_tsv(os.path.join(run, "mem.tsv"))
    checks = read_tsv(os.path.join(run, "checks.tsv"))
    counters = read_tsv(os.path.join(run, "counters.tsv"))
    problems = []
    if os.path.exists(os.path.join(run, "problems.txt")):
        with open(os.path.join(run, "problems.txt")) as f:
            problems = [line.rstrip("\n") for line in f if line.strip()]

    o = []
    o.append("# Portico loopback benchmark")
    o.append("")
    o.append("%s on `%s` (%s), kernel %s, %s CPUs." % (
        meta.get("date", "?"), meta.get("host", "?"), meta.get("cpu", "?"),
        meta.get("kernel", "?"), meta.get("ncpu", "?")))
    o.append("")
    o.append("Portico %s (%s), %s, %s, %s. Each run: `wrk -t1 -d%ss`, "
             "proxies pinned to CPU 0 with one worker, origin nginx and wrk pinned to CPU 1." % (
                 meta.get("portico", "?"), meta.get("git", "?"), meta.get("nginx", "?"),
                 meta.get("haproxy", "?"), meta.get("wrk", "?"), meta.get("seconds", "?")))
    o.append("")
    o.append("Ratios are Portico ÷ the other server: above 1 is better for Portico in req/s and "
             "MB/s, worse in latency. *proxy CPU* is the CPU time of the proxy process under test "
             "over the run (100% = its core saturated); *CPU 1* is origin + wrk, which share the "
             "other core (near 100% means the load generator side, not the proxy, was the limit); "
             "*others* is CPU used by unrelated processes during the run (should be ~0%).")
    o.append("")

    by = {}
    for r in runs:
        by.setdefault(r["scenario"], {})[r["target"]] = r
        # Self-check: every response carries at least its body (past 2 GiB the count comes
        # from wrk's text, 3-4 significant digits: hence the 1%).
        body = {"s2": 1048576, "s2b": 102400}.get(r["scenario"], 0)
        if int(r["bytes"]) < 0.99 * int(r["requests"]) * body:
            problems.append("bench bug: %s %s counted %s bytes for %s responses of %d bytes" % (
                r["scenario"], r["target"], r["bytes"], r["requests"], body))

    for sid, title, cols, ratio_cols in SCENARIOS:
        rows = by.get(sid)
        if not rows:
            continue
        o.append("## " + title)
        o.append("")
        o.append("| server | " + " | ".join(HEAD[c] for c in cols) +
                 " | proxy CPU | CPU 1 (origin+wrk) | others | errors |")
        o.append("|---|" + "---:|" * len(cols) + "---:|---:|---:|---|")
        for t in ["origin", "portico", "nginx", "nginx-nobuf", "haproxy"]:
            r = rows.get(t)
            if not r:
                continue
            m = metrics(r)
            pcpu = "—" if t == "origin" else "%.0f%%" % float(r["proxy_cpu"])
            c1 = float(r["origin_cpu"]) + float(r["wrk_cpu"])
            name = NAMES[t] + (" (static 502)" if sid == "s4" and t == "origin" else "")
            o.append("| %s | %s | %s | %.0f%% | %.0f%% | %s |" % (
                name, " | ".join(fmt(c, m[c]) for c in cols), pcpu, c1,
                float(r.get("other_cpu", 0)), errors_text(sid, r)))
        o.append("")
        if "portico" in rows:
            pm = metrics(rows["portico"])
            o.append("| ratio | " + " | ".join(HEAD[c] for c in ratio_cols) + " |")
            o.append("|---|" + "---:|" * len(ratio_cols))
            for peer, label in PEERS:
                if peer not in rows:
                    continue
                qm = metrics(rows[peer])
                cells = []
                for c in ratio_cols:
                    cells.append("%.2f" % (pm[c] / qm[c]) if qm[c] else "—")
                o.append("| Portico / %s | %s |" % (label, " | ".join(cells)))
            o.append("")

    if mem:
        o.append("## 5. Memory (RSS of the process serving the traffic)")
        o.append("")
        o.append("| server | RSS fresh | RSS with 1000 idle keep-alive clients | per connection "
                 "| connections still open | peak RSS during scenario 2 |")
        o.append("|---|---:|---:|---:|---:|---:|")
        vals = {}
        for r in mem:
            t = r["target"]
            start, idle = int(r["rss_start_kib"]), int(r["rss_idle_kib"])
            hwm = int(r["hwm_s2_kib"]) if r.get("hwm_s2_kib", "") not in ("", "-") else 0
            vals[t] = (idle, hwm)
            o.append("| %s | %.1f MiB | %.1f MiB | %.1f KiB | %s | %s |" % (
                NAMES[t], start / 1024, idle / 1024, (idle - start) / 1000.0,
                r["open_at_end"], "%.1f MiB" % (hwm / 1024) if hwm else "—"))
        o.append("")
        if "portico" in vals:
            o.append("| ratio | RSS with 1000 idle clients | peak RSS during scenario 2 |")
            o.append("|---|---:|---:|")
            for peer, label in PEERS:
                if peer in vals:
                    pi, ph = vals["portico"]
                    qi, qh = vals[peer]
                    o.append("| Portico / %s | %s | %s |" % (
                        label, "%.2f" % (pi / qi) if qi else "—",
                        "%.2f" % (ph / qh) if qh and ph else "—"))
            o.append("")
        o.append("nginx: the worker process (the master, idle, is not counted). "
                 "Peak = VmHWM, reset (`/proc/PID/clear_refs`) just before scenario 2.")
        o.append("")

    if checks:
        o.append("## Checks (before the load, and bodies again after scenario 2b)")
        o.append("")
        o.append("| server | path | status | body bytes | note |")
        o.append("|---|---|---:|---:|---|")
        for c in checks:
            o.append("| %s | `%s` | %s | %s | %s |" % (NAMES.get(c["target"], c["target"]),
                                                    c["path"], c["status"], c["size"], c["note"]))
        o.append("")

    if counters:
        o.append("## Portico counters per scenario (from its /metrics)")
        o.append("")
        names = []
        for c in counters:
            if c["counter"] not in names:
                names.append(c["counter"])
        scen = []
        for c in counters:
            if c["scenario"] not in scen:
                scen.append(c["scenario"])
        table = {(c["scenario"], c["counter"]): c["delta"] for c in counters}
        o.append("| counter | " + " | ".join(scen) + " |")
        o.append("|---|" + "---:|" * len(scen))
        for n in names:
            o.append("| `%s` | %s |" % (n, " | ".join(table.get((s, n), "") for s in scen)))
        o.append("")

    warnings = []
    if os.path.exists(os.path.join(run, "warnings.txt")):
        with open(os.path.join(run, "warnings.txt")) as f:
            warnings = [line.rstrip("\n") for line in f if line.strip()]
    if warnings:
        o.append("## Disturbed runs")
        o.append("")
        for w in warnings:
            o.append("- " + w)
        o.append("")

    o.append("## Problems")
    o.append("")
    if problems:
        for p in problems:
            o.append("- " + p)
    else:
        o.append("None: every expected 2xx was a 2xx, no socket errors, no process died.")
    o.append("")

    with open(out, "w") as f:
        f.write("\n".join(o))
    return 0


if __name__ == "__main__":
    sys.exit(main())
