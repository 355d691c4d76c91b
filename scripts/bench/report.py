#!/usr/bin/env python3
"""Turn the raw files of one `make bench` run (scripts/bench.sh) into results.md.

usage: report.py RUN_DIR OUT.md
RUN_DIR holds meta.tsv, runs.tsv (one row per load run), side.SCENARIO.tsv (what the hooks
measured beside a run), syscalls.tsv, h2.tsv, mem.tsv, checks.tsv, counters.tsv, log-cost.md,
warnings.txt and problems.txt. Every figure is the median over the rounds, with min-max beside it;
a ratio is taken within each round (both servers measured minutes apart) before the median.
"""
import os
import statistics
import sys

NAMES = {
    "origin": "origin direct (baseline)",
    "sink": "upload sink direct (baseline)",
    "portico": "Portico",
    "nginx": "nginx",
    "nginx-nobuf": "nginx, buffering off",
    "haproxy": "HAProxy",
    "portico-w2": "Portico, workers = 2",
    "haproxy-w2": "HAProxy, nbthread 2",
    "portico-log": "Portico, JSON access log",
}
ORDER = ["origin", "sink", "portico", "nginx", "nginx-nobuf", "haproxy", "portico-w2",
         "haproxy-w2"]

# id, title, main metric. The baseline is the origin (the sink for uploads).
SCENARIOS = [
    ("s1", "1. Small responses: 13-byte body, 64 keep-alive connections", "rps"),
    ("s1b", "1b. Small responses: 13-byte body, 256 keep-alive connections", "rps"),
    ("s2", "2. GET 1 MiB, 16 keep-alive connections", "mibps"),
    ("s2c", "2c. POST 1 MiB (upload), 16 keep-alive connections, to the sink", "up_mibps"),
    ("s2b", "2b. GET 100 KiB, 50 keep-alive connections (one run)", "mibps"),
    ("s3", "3. New connection per request (Connection: close), 50 connections", "rps"),
    ("s4", "4. Error path: the origin port refuses connections, 50 keep-alive connections",
     "rps"),
    ("s4b", "4b. Error path: an injected 503 (Portico `[fault]` `status = 503`; nginx "
     "`return 503`; HAProxy `http-request return status 503`), 50 keep-alive connections", "rps"),
    ("s8", "8. Two workers (Portico `workers = 2`, HAProxy `nbthread 2`) on both CPUs, "
     "256 keep-alive connections", "rps"),
]
HEAD = {"rps": "req/s", "mibps": "MiB/s", "up_mibps": "MiB/s uploaded"}
ERRORS_EXPECTED = {"s4", "s4b"}
# A run during which other processes used more than this % of a CPU is disturbed (bench.sh
# repeats it once while its budget lasts, and lists those it kept).
DISTURBED = 10.0


def read_tsv(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    if not rows:
        return []
    return [dict(zip(rows[0], r)) for r in rows[1:]]


def read_side(path, names):
    """A side file of bench.sh: no header; fixed columns, then key=value columns (pace's)."""
    rows = []
    for line in read_lines(path):
        cells = line.split("\t")
        row = dict(zip(names, cells))
        for c in cells[len(names):]:
            k, _, v = c.partition("=")
            row[k] = v
        rows.append(row)
    return rows


def read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def med(vals):
    return statistics.median(vals) if vals else None


def spread(vals, f):
    """median (min-max) of vals formatted with f; one value alone, or '—'."""
    if not vals:
        return "—"
    if len(vals) == 1:
        return f(vals[0])
    return "%s (%s–%s)" % (f(med(vals)), f(min(vals)), f(max(vals)))


def f0(v):
    return "{:,.0f}".format(v)


def f1(v):
    return "{:,.1f}".format(v)


def f2(v):
    return "{:.2f}".format(v)


class Runs:
    """The load runs of runs.tsv, by scenario, target and round."""

    def __init__(self, rows, upload_bytes):
        self.by = {}
        for r in rows:
            self.by.setdefault(r["scenario"], {}).setdefault(r["target"], {})[r["round"]] = r
        self.upload_bytes = upload_bytes

    def metric(self, r, key):
        secs = float(r["duration_us"]) / 1e6
        n = float(r["requests"])
        if key == "rps":
            return n / secs
        if key == "mibps":
            return float(r["bytes"]) / secs / 1048576
        if key == "up_mibps":
            return n * self.upload_bytes / secs / 1048576
        if key == "cpu_us":   # CPU time of the proxy per request, in microseconds
            return float(r["proxy_cpu"]) / 100 * secs / n * 1e6 if n else 0
        if key == "rps_cpu":  # requests per CPU-second of the proxy: its capacity
            cpu = float(r["proxy_cpu"]) / 100 * secs
            return n / cpu if cpu else 0
        if key in ("p50", "p99"):
            return float(r[key + "_us"]) / 1000
        return float(r[key])

    def targets(self, scen):
        rows = self.by.get(scen, {})
        return [t for t in ORDER if t in rows] + sorted(t for t in rows if t not in ORDER)

    def values(self, scen, target, key):
        rounds = self.by.get(scen, {}).get(target, {})
        return [self.metric(rounds[k], key) for k in sorted(rounds, key=int)]

    def pairs(self, scen_a, a, scen_b, b):
        """The rounds with both runs: those where neither was disturbed (other processes above
        DISTURBED % of a CPU), or all of them when every round was; and how many were clean."""
        ra = self.by.get(scen_a, {}).get(a, {})
        rb = self.by.get(scen_b, {}).get(b, {})
        common = sorted(set(ra) & set(rb), key=int)
        clean = [k for k in common if float(ra[k]["other_cpu"]) <= DISTURBED and
                 float(rb[k]["other_cpu"]) <= DISTURBED]
        return [(ra[k], rb[k]) for k in (clean or common)], len(clean), len(common)

    def ratios(self, scen_a, a, scen_b, b, key):
        """Per-round ratio a / b (same round), over the rounds pairs() keeps."""
        out = []
        for x, y in self.pairs(scen_a, a, scen_b, b)[0]:
            vb = self.metric(y, key)
            if vb:
                out.append(self.metric(x, key) / vb)
        return out

    def errors(self, scen, target):
        n = 0
        for r in self.by.get(scen, {}).get(target, {}).values():
            n += sum(int(r["err_" + k]) for k in ("connect", "read", "write", "timeout"))
            status = int(r["err_status"])
            n += int(r["requests"]) - status if scen in ERRORS_EXPECTED else status
        return n


def verdict(vals, ok):
    if not vals:
        return "not measured"
    return "**met**" if ok(med(vals)) else "not met"


def summary(o, runs, per, h2, mem, side2c, side4c, meta):
    """The issue-12 targets, each with Portico's figure (median, min-max) and a verdict."""
    rows = []

    def clean(scen_a, a, scen_b, b):
        _, k, n = runs.pairs(scen_a, a, scen_b, b)
        if not n:
            return "—"
        return "%d/%d" % (k, n) if k else "0/%d: all disturbed" % n

    def dagger(scen_a, a, scen_b, b):
        _, k, n = runs.pairs(scen_a, a, scen_b, b)
        return " †" if n and not k else ""

    def ratio_row(text, scen, key, limit, higher=True, nginx=True):
        v = runs.ratios(scen, "portico", scen, "haproxy", key)
        n = runs.ratios(scen, "portico", scen, "nginx", key) if nginx else []
        eff = runs.ratios(scen, "portico", scen, "haproxy", "rps_cpu") if key == "rps" else []
        ok = (lambda m: m >= limit) if higher else (lambda m: m <= limit)
        rows.append((text, spread(v, f2), clean(scen, "portico", scen, "haproxy"),
                     spread(eff, f2), spread(n, f2) if n else "—",
                     verdict(v, ok) + dagger(scen, "portico", scen, "haproxy")))

    ratio_row("Small, 64 conns: req/s ≥ 1.15× HAProxy", "s1", "rps", 1.15)
    ratio_row("Small, 64 conns: p99 ≤ HAProxy's (ratio ≤ 1)", "s1", "p99", 1.0, higher=False)
    ratio_row("Small, 256 conns: req/s ≥ 1.15× HAProxy", "s1b", "rps", 1.15)
    ratio_row("Small, 256 conns: p99 ≤ HAProxy's (ratio ≤ 1)", "s1b", "p99", 1.0, higher=False)

    def clean_values(scen, t, key):
        rounds = runs.by.get(scen, {}).get(t, {})
        ok = [r for r in rounds.values() if float(r["other_cpu"]) <= DISTURBED]
        return [runs.metric(r, key) for r in (ok or rounds.values())]

    cpu = clean_values("s1", "portico", "cpu_us")
    rows.append(("Small, 64 conns: ≤ 14 µs proxy CPU per request (µs; HAProxy, nginx)",
                 spread(cpu, f1) + " µs", clean("s1", "portico", "s1", "portico"), "—",
                 "HAProxy %s, nginx %s" % (spread(clean_values("s1", "haproxy", "cpu_us"), f1),
                                           spread(clean_values("s1", "nginx", "cpu_us"), f1)),
                 verdict(cpu, lambda m: m <= 14) + dagger("s1", "portico", "s1", "portico")))

    def calls(t):
        return per.get(t, {}).get("total", [])
    sc = calls("portico")
    rows.append(("≤ 4 system calls per keep-alive request (1c; HAProxy, nginx)", spread(sc, f2),
                 "—", "—", "HAProxy %s, nginx %s" % (spread(calls("haproxy"), f2),
                                                    spread(calls("nginx"), f2)),
                 verdict(sc, lambda m: m <= 4)))

    ratio_row("Error path, refused origin: req/s ≥ 1.15× HAProxy", "s4", "rps", 1.15)
    ratio_row("Error path, injected 503 fault: req/s ≥ 1.15× HAProxy", "s4b", "rps", 1.15)
    with_errors = runs.ratios("s4c1", "portico", "s4c0", "portico", "rps")
    hap = runs.ratios("s4c1", "haproxy", "s4c0", "haproxy", "rps")
    rates = [float(r.get("rate", 0)) for r in side4c if r.get("target") == "portico"]
    rows.append(("Healthy route beside %s errors/s: no slowdown (req/s with ÷ without "
                 "≥ 0.95; HAProxy's)" % f0(float(meta.get("error_rate", 0))),
                 spread(with_errors, f2) + (" at %s errors/s" % spread(rates, f0) if rates else ""),
                 clean("s4c1", "portico", "s4c0", "portico"), "—",
                 "HAProxy %s" % spread(hap, f2), verdict(with_errors, lambda m: m >= 0.95) + dagger("s4c1", "portico", "s4c0", "portico")))
    ratio_row("New connection per request: req/s ≥ 1.1× HAProxy", "s3", "rps", 1.1)
    ratio_row("GET 1 MiB: MiB/s ≥ 1.5× HAProxy", "s2", "mibps", 1.5)
    up = runs.ratios("s2c", "portico", "s2c", "sink", "up_mibps")
    rows.append(("POST 1 MiB: upload MiB/s ≥ 0.85× direct (HAProxy, nginx buffering off: "
                 "÷ direct)", spread(up, f2), clean("s2c", "portico", "s2c", "sink"), "—",
                 "HAProxy %s, nginx %s" % (
                     spread(runs.ratios("s2c", "haproxy", "s2c", "sink", "up_mibps"), f2),
                     spread(runs.ratios("s2c", "nginx-nobuf", "s2c", "sink", "up_mibps"), f2)),
                 verdict(up, lambda m: m >= 0.85) + dagger("s2c", "portico", "s2c", "sink")))
    rise = [(int(r["peak_kib"]) - int(r["rss_before_kib"])) / 1024 for r in side2c
            if r.get("target") == "portico"]
    rows.append(("Uploads streamed, never buffered whole: peak RSS rise during 2c "
                 "< 8 MiB (16 bodies of 1 MiB in flight)", spread(rise, f1) + " MiB", "—", "—",
                 "—", verdict(rise, lambda m: m < 8)))
    idle = {r["target"]: (int(r["rss_idle_kib"]) - int(r["rss_start_kib"])) /
            float(meta.get("idle_conns", 1000)) for r in mem}
    pv = [idle["portico"]] if "portico" in idle else []
    rows.append(("≤ 1 KiB RSS per idle keep-alive client (5, one measurement; HAProxy, nginx)",
                 spread(pv, f2) + " KiB", "—", "—",
                 "HAProxy %s, nginx %s" % (spread([idle["haproxy"]] if "haproxy" in idle else [],
                                                  f2),
                                           spread([idle["nginx"]] if "nginx" in idle else [], f2)),
                 verdict(pv, lambda m: m <= 1.0)))
    hv = h2_ratios(h2, "haproxy")
    rows.append(("HTTP/2 over TLS (h2load), HTTP/1.1 to the origin: req/s ≥ HAProxy",
                 spread(hv, f2), "—", spread(h2_ratios(h2, "haproxy", "rps_cpu"), f2),
                 spread(h2_ratios(h2, "nginx"), f2), verdict(hv, lambda m: m >= 1.0)))
    w2 = runs.ratios("s8", "portico-w2", "s1b", "portico", "rps")
    rows.append(("workers = 2 ÷ workers = 1, small, 256 conns: scales (> 1; HAProxy "
                 "nbthread 2 ÷ 1)", spread(w2, f2), clean("s8", "portico-w2", "s1b", "portico"),
                 spread(runs.ratios("s8", "portico-w2", "s1b", "portico", "rps_cpu"), f2),
                 "HAProxy %s" % spread(runs.ratios("s8", "haproxy-w2", "s1b", "haproxy", "rps"),
                                       f2),
                 verdict(w2, lambda m: m > 1.0) + dagger("s8", "portico-w2", "s1b", "portico")))

    o.append("## Issue 12 targets")
    o.append("")
    o.append("*Portico*: its figure, median (min–max) over the rounds; a ratio is Portico ÷ "
             "HAProxy unless the target says otherwise, taken within each round. *Clean rounds*: "
             "rounds in which neither run was disturbed by other processes (> %.0f%% of a CPU); "
             "the figure uses only those, or every round when none was clean. *Per CPU-second*: "
             "the same ratio in requests per CPU-second of the proxy, which CPU taken by other "
             "processes moves much less than req/s. *vs nginx / peers*: the ratio against nginx, "
             "or the peers' own figures. †: every round of this figure was disturbed: the verdict "
             "is on noise; the per-CPU-second ratio is the better guide." % DISTURBED)
    o.append("")
    o.append("| target | Portico | clean rounds | per CPU-second | vs nginx / peers | verdict |")
    o.append("|---|---:|---:|---:|---:|---|")
    for r in rows:
        o.append("| %s | %s | %s | %s | %s | %s |" % r)
    o.append("")
    cpu_perf = [t for t in ("portico", "haproxy", "nginx") if "cpu_ms" in per.get(t, {})]
    if cpu_perf:
        o.append("CPU per request under `perf stat` (scenario 1c, task-clock, counted so "
                 "slightly slowed): " + ", ".join(
                     "%s %s µs" % (NAMES[t], spread(per[t]["cpu_ms"], f1)) for t in cpu_perf) +
                 ".")
        o.append("")


def h2_ratios(h2, peer, key="req_s"):
    """Per-round Portico ÷ peer in scenario 7: req/s, or ("rps_cpu") req per CPU-second."""
    by = {}
    for r in h2:
        v = float(r["req_s"])
        if key == "rps_cpu":
            v = v / (float(r["proxy_cpu"]) / 100) if float(r["proxy_cpu"]) else 0
        by.setdefault(r["round"], {})[r["target"]] = v
    return [v["portico"] / v[peer] for k, v in sorted(by.items())
            if "portico" in v and v.get(peer)]


def scenario_tables(o, runs):
    for sid, title, key in SCENARIOS:
        targets = runs.targets(sid)
        if not targets:
            continue
        base = "sink" if sid == "s2c" else "origin"
        o.append("## " + title)
        o.append("")
        o.append("| server | %s | p50 ms | p99 ms | proxy CPU %% | CPU µs/req | CPU 1 %% "
                 "| CPU 1 µs/req | others %% | errors |" % HEAD[key])
        o.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for t in targets:
            cpu = runs.values(sid, t, "proxy_cpu")
            c1 = [a + b for a, b in zip(runs.values(sid, t, "origin_cpu"),
                                        runs.values(sid, t, "wrk_cpu"))]
            # the load side's CPU per request: what this server made the origin and wrk spend
            c1_us = [c / 100 / r * 1e6 for c, r in zip(c1, runs.values(sid, t, "rps")) if r]
            proxy = t not in ("origin", "sink")
            o.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |" % (
                NAMES.get(t, t), spread(runs.values(sid, t, key), f0 if key == "rps" else f1),
                f2(med(runs.values(sid, t, "p50"))), f2(med(runs.values(sid, t, "p99"))),
                f0(med(cpu)) if proxy else "—",
                f1(med(runs.values(sid, t, "cpu_us"))) if proxy else "—",
                f0(med(c1)), f1(med(c1_us)), f0(med(runs.values(sid, t, "other_cpu"))),
                runs.errors(sid, t)))
        o.append("")
        lines = []
        for peer in ("haproxy", "nginx", "nginx-nobuf", base):
            if peer == "portico" or peer not in targets:
                continue
            for me in ("portico", "portico-w2"):
                if me not in targets:
                    continue
                v = runs.ratios(sid, me, sid, peer, key)
                p = runs.ratios(sid, me, sid, peer, "p99")
                lines.append("| %s ÷ %s | %s | %s |" % (NAMES[me], NAMES[peer].split(" (")[0],
                                                       spread(v, f2), spread(p, f2)))
        if lines:
            o.append("| ratio | %s | p99 |" % HEAD[key])
            o.append("|---|---:|---:|")
            o.extend(lines)
            o.append("")


def syscall_per_request(sys_rows):
    """target -> counter -> [per round: calls per request, or µs of CPU for cpu_ms]."""
    per = {}
    for r in sys_rows:
        n = float(r["requests"])
        v = float(r["count"]) / n
        if r["counter"] == "cpu_ms":
            v = float(r["count"]) * 1000 / n
        per.setdefault(r["target"], {}).setdefault(r["counter"], []).append(v)
    return per


def syscall_table(o, per, meta):
    if not per:
        return
    o.append("## 1c. System calls per keep-alive request (fixed request count)")
    o.append("")
    o.append("`h2load --h1 -n %s -c 64` on `/small` per proxy per round; the proxy's system calls "
             "counted by %s over exactly that run, divided by the %s requests. Medians over the "
             "rounds; only calls made at least 0.01 times per request." % (
                 meta.get("syscall_requests", "?"),
                 "`perf stat` (tracepoints `raw_syscalls:sys_enter`, `syscalls:sys_enter_*`)"
                 if meta.get("syscall_method") == "perf" else "`strace -c -f`",
                 meta.get("syscall_requests", "?")))
    o.append("")
    targets = [t for t in ("portico", "nginx", "haproxy") if t in per]
    counters = sorted({c for t in targets for c in per[t] if c not in ("total", "cpu_ms")
                       and med(per[t][c]) >= 0.01})
    o.append("| system call | " + " | ".join(NAMES[t] for t in targets) + " |")
    o.append("|---|" + "---:|" * len(targets))
    for c in counters:
        o.append("| `%s` | %s |" % (c, " | ".join(
            f2(med(per[t][c])) if c in per[t] else "—" for t in targets)))
    o.append("| **all** | %s |" % " | ".join(
        "**%s**" % spread(per[t].get("total", []), f2) for t in targets))
    if any("cpu_ms" in per[t] for t in targets):
        o.append("| CPU µs per request (under perf) | %s |" % " | ".join(
            spread(per[t].get("cpu_ms", []), f1) for t in targets))
    o.append("")


def side_tables(o, runs, side2, side2c, side4c, meta):
    if side2 or side2c:
        o.append("## Peak RSS during 2 and 2c (VmHWM, reset just before each run), bodies, "
                 "retransmissions")
        o.append("")
        o.append("| server | 2: GET 1 MiB, peak rise | 2c: POST 1 MiB, peak rise | 2c: bodies "
                 "the sink got whole / answered | 2c: bodies that differed | 2c: TCP segments "
                 "retransmitted per run |")
        o.append("|---|---:|---:|---:|---:|---:|")
        for t in ("sink", "portico", "nginx", "nginx-nobuf", "haproxy"):
            r2 = [(int(r["peak_kib"]) - int(r["rss_before_kib"])) / 1024 for r in side2
                  if r["target"] == t]
            rc = [r for r in side2c if r["target"] == t]
            rise = [(int(r["peak_kib"]) - int(r["rss_before_kib"])) / 1024 for r in rc]
            retrans = [int(r["retrans"]) for r in rc if "retrans" in r]
            if not r2 and not rc:
                continue
            proxy = t != "sink"
            o.append("| %s | %s | %s | %s / %s | %s | %s |" % (
                NAMES[t], spread(r2, f1) + " MiB" if r2 else "—",
                spread(rise, f1) + " MiB" if rise and proxy else "—",
                f0(sum(int(r["bodies_ok"]) for r in rc)), f0(sum(int(r["requests"]) for r in rc)),
                sum(int(r["bodies_bad"]) for r in rc), spread(retrans, f0) if retrans else "—"))
        o.append("")
        o.append("Retransmitted segments are the whole machine's (`RetransSegs` of /proc/net/snmp) "
                 "over the run. On loopback a retransmission is a segment that arrived out of "
                 "order rather than one lost, unless /proc/net/softnet_stat counts drops "
                 "(docs/BENCHMARKS.md, *Uploads on this VM's loopback*).")
        o.append("")
    if side4c or runs.targets("s4c0"):
        o.append("## 4c. Healthy route with and without %s errors/s beside it" %
                 f0(float(meta.get("error_rate", 0))))
        o.append("")
        o.append("wrk: `/small`, 64 keep-alive connections; beside it `pace` sends `GET /err/x` "
                 "(refused origin) at a fixed rate on 32 more connections.")
        o.append("")
        o.append("| server | req/s alone | req/s beside the errors | with ÷ without | p99 ms "
                 "alone | p99 ms beside | errors/s served | error responses not 5xx |")
        o.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for t in runs.targets("s4c0"):
            ps = [r for r in side4c if r["target"] == t]
            o.append("| %s | %s | %s | %s | %s | %s | %s | %d |" % (
                NAMES[t], spread(runs.values("s4c0", t, "rps"), f0),
                spread(runs.values("s4c1", t, "rps"), f0),
                spread(runs.ratios("s4c1", t, "s4c0", t, "rps"), f2),
                f2(med(runs.values("s4c0", t, "p99"))), f2(med(runs.values("s4c1", t, "p99"))),
                spread([float(r["rate"]) for r in ps], f0),
                sum(int(r["responses"]) - int(r["s5xx"]) for r in ps)))
        o.append("")


def h2_table(o, h2):
    if not h2:
        return
    o.append("## 7. HTTP/2 over TLS (h2load), HTTP/1.1 to the origin")
    o.append("")
    o.append("`h2load -c 10 -m 10 -t 1` (10 connections of 10 streams), `/small`, TLS with ALPN "
             "h2 terminated by the proxy.")
    o.append("")
    o.append("| server | req/s | mean ms | proxy CPU % | failed |")
    o.append("|---|---:|---:|---:|---:|")
    for t in ("portico", "nginx", "haproxy"):
        rs = [r for r in h2 if r["target"] == t]
        if rs:
            o.append("| %s | %s | %s | %s | %d |" % (
                NAMES[t], spread([float(r["req_s"]) for r in rs], f0),
                f2(med([float(r["mean_ms"]) for r in rs])),
                f0(med([float(r["proxy_cpu"]) for r in rs])),
                sum(int(r["failed"]) for r in rs)))
    o.append("")
    o.append("| ratio | req/s |")
    o.append("|---|---:|")
    for peer in ("haproxy", "nginx"):
        o.append("| Portico ÷ %s | %s |" % (NAMES[peer], spread(h2_ratios(h2, peer), f2)))
    o.append("")


def mem_table(o, mem, meta):
    if not mem:
        return
    n = float(meta.get("idle_conns", 1000))
    o.append("## 5. RSS with %d idle keep-alive clients (one measurement, fresh processes)" % n)
    o.append("")
    o.append("| server | RSS fresh | RSS with the idle clients | per connection | still open |")
    o.append("|---|---:|---:|---:|---:|")
    for r in mem:
        start, idle = int(r["rss_start_kib"]), int(r["rss_idle_kib"])
        o.append("| %s | %.1f MiB | %.1f MiB | %.2f KiB | %s |" % (
            NAMES.get(r["target"], r["target"]), start / 1024, idle / 1024, (idle - start) / n,
            r["open_at_end"]))
    o.append("")


def main():
    run, out = sys.argv[1], sys.argv[2]
    meta = {m["key"]: m["value"] for m in read_tsv(os.path.join(run, "meta.tsv"))}
    runs = Runs(read_tsv(os.path.join(run, "runs.tsv")), int(meta.get("upload_bytes", 1048576)))
    peak = ["round", "target", "rss_before_kib", "peak_kib"]
    side2 = read_side(os.path.join(run, "side.s2.tsv"), peak)
    side2c = read_side(os.path.join(run, "side.s2c.tsv"),
                       peak + ["requests", "bodies_ok", "bodies_bad", "body_bytes"])
    side4c = read_side(os.path.join(run, "side.s4c1.tsv"), ["round", "target"])
    h2 = read_tsv(os.path.join(run, "h2.tsv"))
    mem = read_tsv(os.path.join(run, "mem.tsv"))
    problems = read_lines(os.path.join(run, "problems.txt"))
    warnings = read_lines(os.path.join(run, "warnings.txt"))

    o = ["# Portico loopback benchmark", ""]
    o.append("%s on `%s` (%s), kernel %s, %s CPUs; load average %s at the start, %s at the end "
             "(%s minutes)." % (
                 meta.get("date", "?"), meta.get("host", "?"), meta.get("cpu", "?"),
                 meta.get("kernel", "?"), meta.get("ncpu", "?"), meta.get("load_start", "?"),
                 meta.get("load_end", "?"), meta.get("minutes", "?")))
    o.append("")
    o.append("Portico %s (%s), %s, %s, %s, h2load %s. %s interleaved rounds of `wrk -t1 "
             "-d%ss` per server and scenario; proxies pinned to CPU 0 with one worker, origin, "
             "sink and load generators on CPU 1." % (
                 meta.get("portico", "?"), meta.get("git", "?"), meta.get("nginx", "?"),
                 meta.get("haproxy", "?"), meta.get("wrk", "?"), meta.get("h2load", "?"),
                 meta.get("rounds", "?"), meta.get("seconds", "?")))
    o.append("")
    per = syscall_per_request(read_tsv(os.path.join(run, "syscalls.tsv")))
    summary(o, runs, per, h2, mem, side2c, side4c, meta)
    o.append("Columns below: figures are medians over the rounds (min–max for the main one). "
             "*proxy CPU %*: CPU time of the proxy process over the run (100 = its core "
             "saturated); *CPU µs/req*: that time per request; *CPU 1 %*: origin (or sink) + load "
             "generator, which share the other core (near 100: the load side was the limit); "
             "*CPU 1 µs/req*: that time per request, what serving through this server cost the "
             "load side; "
             "*others %*: CPU used by unrelated processes (should be ~0); *errors*: socket "
             "errors and unexpected statuses, summed over the rounds.")
    o.append("")
    scenario_tables(o, runs)
    syscall_table(o, per, meta)
    side_tables(o, runs, side2, side2c, side4c, meta)
    h2_table(o, h2)
    mem_table(o, mem, meta)
    log_cost = os.path.join(run, "log-cost.md")
    if os.path.exists(log_cost):
        with open(log_cost) as f:
            o.append(f.read().rstrip("\n"))
        o.append("")

    checks = read_tsv(os.path.join(run, "checks.tsv"))
    if checks:
        o.append("## Checks (before the load; bodies again after it)")
        o.append("")
        o.append("| server | path | status | body bytes | note |")
        o.append("|---|---|---:|---:|---|")
        for c in checks:
            o.append("| %s | `%s` | %s | %s | %s |" % (NAMES.get(c["target"], c["target"]),
                                                    c["path"], c["status"], c["size"], c["note"]))
        o.append("")

    counters = read_tsv(os.path.join(run, "counters.tsv"))
    if counters:
        names, scen = [], []
        for c in counters:
            if c["counter"] not in names:
                names.append(c["counter"])
            if c["scenario"] not in scen:
                scen.append(c["scenario"])
        table = {}
        for c in counters:   # summed over the rounds
            k = (c["scenario"], c["counter"])
            table[k] = table.get(k, 0) + int(c["delta"])
        o.append("## Portico counters per scenario (from its /metrics, summed over the rounds)")
        o.append("")
        o.append("| counter | " + " | ".join(scen) + " |")
        o.append("|---|" + "---:|" * len(scen))
        for n in names:
            o.append("| `%s` | %s |" % (n, " | ".join(
                str(table[(s, n)]) if (s, n) in table else "" for s in scen)))
        o.append("")

    if warnings:
        o.append("## Disturbed runs")
        o.append("")
        o.extend("- " + w for w in warnings)
        o.append("")
    o.append("## Problems")
    o.append("")
    if problems:
        o.extend("- " + p for p in problems)
    else:
        o.append("None: every expected 2xx was a 2xx, no socket errors, no process died.")
    o.append("")

    with open(out, "w") as f:
        f.write("\n".join(o))
    return 0


if __name__ == "__main__":
    sys.exit(main())
