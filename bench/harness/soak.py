"""Overload and soak of the release binary (issue 21): does a lock route under more load than
it can serve shed it, and does the service's memory stay flat under the lab's mixed load?

Each run gets a fresh service with the lab's defaults (two workers, SLOW_DISK_MS=300,
DEPENDENCY_MS=5, RUST_LOG=info), loadgen open loop, nothing pinned (as in the compose lab):

1. overload: `--rate 10 --mix lock_tokio=1`. One lock serves one request per 300 ms hold, so
   rate × hold is 3. Counts the answers, the longest one, the access lines written after
   loadgen had finished (work for clients that had gone; the probe's own line excluded), a
   probe of `/lock/tokio` after the load, and RSS.
2. soak: `--rate 1000 --mix orders=98,config_async=1,lock_tokio=1`, RSS every 5 s; "flat after
   the first minute": every sample from 60 s on within 1 MiB of the one at 60 s.
"""

import http.client
import os
import json
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.harness import proc, stats

PAGE = "soak-benchmark.md"
SETTLE_S = 60
SAMPLE_S = 5
SOAK_RATE = 1000
SOAK_MIX = "orders=98,config_async=1,lock_tokio=1"
PROBE_ID = "soak-probe"
ENV = {"WORKERS": "2", "INSTANCE": "soak", "RUST_LOG": "info"}


def probe(port, path, timeout=120):
    """One GET on a fresh connection, with request id PROBE_ID: (status, seconds)."""
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", path, headers={"x-request-id": PROBE_ID})
    status = conn.getresponse().status
    conn.close()
    return status, time.monotonic() - start


def drive(loadgen, server, rate, mix, seconds, output, samples=None):
    """Runs loadgen to the end; with `samples`, appends the server's RSS every SAMPLE_S s."""
    p = proc.loadgen(loadgen, server.url, ["--rate", str(rate), "--mix", mix, "--duration",
                                           f"{seconds}s", "--rounds", "1"], output)
    start, next_sample = time.monotonic(), SAMPLE_S
    while p.poll() is None:
        if samples is not None and time.monotonic() - start >= next_sample:
            samples.append(server.rss_kib())
            next_sample += SAMPLE_S
        time.sleep(0.2)
    return proc.report(output)


def overload(binary, loadgen, seconds, work):
    log_path = work / "overload.jsonl"
    with open(log_path, "w") as stdout:
        server = proc.Server(binary, ENV, stdout=stdout)
        rss_before = server.rss_kib()
        rep = drive(loadgen, server, 10, "lock_tokio=1", seconds, work / "overload.json")
        finished = time.time()
        rss_end = server.rss_kib()
        status, probe_s = probe(server.port, "/lock/tokio")
        time.sleep(10)
        rss_after = server.rss_kib()
        server.stop(timeout=30)
    s = proc.route_stats(rep, "lock_tokio")
    late_lines = 0
    for raw in open(log_path):
        line = json.loads(raw)
        fields = line.get("fields", {})
        if (fields.get("message") == "request finished" and fields.get("route") == "/lock/tokio"
                and line.get("span", {}).get("request_id") != PROBE_ID):
            at = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()
            late_lines += at > finished
    return {"requests": s["requests"], "2xx": s["status_classes"]["2xx"],
            "5xx": s["status_classes"]["5xx"], "timeouts": s["errors_by_kind"]["timeout"],
            "max_ms": (s["latency"]["actual"] or {}).get("max_ms"), "late_lines": late_lines,
            "probe_status": status, "probe_ms": probe_s * 1000,
            "rss_kib": [rss_before, rss_end, rss_after]}


def soak(binary, loadgen, seconds, work):
    server = proc.Server(binary, ENV)
    samples = []
    rep = drive(loadgen, server, SOAK_RATE, SOAK_MIX, seconds, work / "soak.json", samples)
    time.sleep(10)
    after = server.rss_kib()
    server.stop(timeout=30)
    at_settle, low, high = stats.settled([((i + 1) * SAMPLE_S, kib) for i, kib in enumerate(samples)],
                                         SETTLE_S)
    routes = {}
    for route in ("orders", "config_async", "lock_tokio"):
        s = proc.route_stats(rep, route)
        corrected = s["latency"]["corrected"] or {}
        routes[route] = {"requests": s["requests"], "2xx": s["status_classes"]["2xx"],
                         "5xx": s["status_classes"]["5xx"], "timeouts": s["errors_by_kind"]["timeout"],
                         "p50_ms": corrected.get("p50_ms"), "p99_ms": corrected.get("p99_ms"),
                         "max_ms": corrected.get("max_ms")}
    return {"rss_kib": samples, "at_settle_kib": at_settle, "settled_min_kib": low,
            "settled_max_kib": high, "end_kib": samples[-1] if samples else None, "after_kib": after,
            "flat": stats.flat(at_settle, low, high, 1024),
            "achieved_rate": rep["total"]["achieved_rate"], "late_sends": rep["total"]["late_sends"],
            "routes": routes}


def measure(binaries, baseline=None, overload_s=60, soak_s=180):
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    builds = [("this build", binaries["service"])]
    if baseline:
        builds.append(("baseline", Path(baseline).resolve()))
    rev, dirty = proc.commit()
    load_before, busy_before = proc.loadavg(), proc.busy()
    results = []
    try:
        for name, binary in builds:
            proc.log(f"{name}: overload, {overload_s} s")
            o = overload(binary, binaries["loadgen"], overload_s, work)
            proc.log(f"{name}: soak, {soak_s} s at {SOAK_RATE} req/s")
            results.append({"name": name, "overload": o,
                            "soak": soak(binary, binaries["loadgen"], soak_s, work)})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"machine": {"cpus": os.cpu_count(), "load_before": load_before,
                        "load_after": proc.loadavg(), "busy_before": busy_before,
                        "busy_after": proc.busy()},
            "commit": rev, "dirty": dirty, "baseline": baseline,
            "settings": {"overload_s": overload_s, "soak_s": soak_s, "sample_s": SAMPLE_S,
                         "settle_s": SETTLE_S, "soak_rate": SOAK_RATE, "soak_mix": SOAK_MIX},
            "builds": results}


def mib(kib):
    return "–" if kib is None else f"{kib / 1024:.1f} MiB"


def ms(value):
    return "–" if value is None else f"{value:.1f} ms"


def render(d, level=1):
    """The page; `level` 2 for the `soak` block of docs/benchmarks.md."""
    m, s = d["machine"], d["settings"]
    md = []
    w = md.append
    w("#" * level + " Overload and soak (issue 21)")
    w("")
    w("Generated by `python3 -m bench soak` from `docs/bench/soak.json`; rerun it to reproduce. "
      "The release binary with the "
      "lab's defaults (two workers, `SLOW_DISK_MS=300`, `DEPENDENCY_MS=5`, `RUST_LOG=info`, stdout "
      "to a file in the overload run and to /dev/null in the soak), loadgen open loop on the same "
      "machine, nothing pinned.")
    w("")
    w(f"Machine: {m['cpus']} CPUs, shared with other builds: load average (1, 5, 15 min) "
      f"{m['load_before']} before, {m['load_after']} after; build processes (cargo, rustc, cc, ld) running "
      f"{m['busy_before']} before, {m['busy_after']} after. Commit `{d['commit']}`"
      f"{' (with uncommitted changes)' if d['dirty'] else ''}"
      + (f"; baseline: `{d['baseline']}`" if d["baseline"] else "") + ".")
    w("")
    w(f"**Overload**: `loadgen URL --rate 10 --mix lock_tokio=1 --duration {s['overload_s']}s` "
      "(rate × hold = 10 × 0.3 s = 3 per lock). Then a probe `GET /lock/tokio` on a fresh "
      "connection; RSS before, at the end of the load, and 10 s after.")
    w("")
    w("| build | requests | 200 | 503 | client timeouts (10 s) | longest answer | `/lock/tokio` access lines after loadgen ended (probe excluded) | probe after the load | RSS before → end → 10 s after |")
    w("|---|---|---|---|---|---|---|---|---|")
    for b in d["builds"]:
        o = b["overload"]
        w(f"| {b['name']} | {o['requests']} | {o['2xx']} | {o['5xx']} | {o['timeouts']} | "
          f"{ms(o['max_ms'])} | {o['late_lines']} | {o['probe_status']} in {o['probe_ms']:.0f} ms | "
          f"{' → '.join(mib(k) for k in o['rss_kib'])} |")
    w("")
    w(f"**Soak**: `loadgen URL --rate {s['soak_rate']} --mix {s['soak_mix']} --duration {s['soak_s']}s`, VmRSS "
      f"every {s['sample_s']} s. Flat after the first minute: every sample from {s['settle_s']} s on within "
      "1 MiB of the one at 60 s.")
    w("")
    w("| build | achieved rate | late sends | RSS at 60 s | min – max after 60 s | at the end | 10 s after | flat after 60 s |")
    w("|---|---|---|---|---|---|---|---|")
    for b in d["builds"]:
        k = b["soak"]
        verdict = "–" if k["flat"] is None else ("yes" if k["flat"] else "**no**")
        rate = "–" if k["achieved_rate"] is None else f"{k['achieved_rate']:.0f} req/s"
        w(f"| {b['name']} | {rate} | {k['late_sends']} | {mib(k['at_settle_kib'])} | "
          f"{mib(k['settled_min_kib'])} – {mib(k['settled_max_kib'])} | {mib(k['end_kib'])} | "
          f"{mib(k['after_kib'])} | {verdict} |")
    w("")
    w("| build | route | requests | 200 | 503 | timeouts | p50 | p99 | max |")
    w("|---|---|---|---|---|---|---|---|---|")
    for b in d["builds"]:
        for route, r in b["soak"]["routes"].items():
            w(f"| {b['name']} | {route} | {r['requests']} | {r['2xx']} | {r['5xx']} | {r['timeouts']} | "
              f"{ms(r['p50_ms'])} | {ms(r['p99_ms'])} | {ms(r['max_ms'])} |")
    w("")
    w(f"RSS over the soak (MiB, every {s['sample_s']} s):")
    w("")
    for b in d["builds"]:
        w(f"- {b['name']}: " + ", ".join(f"{kib / 1024:.1f}" for kib in b["soak"]["rss_kib"]))
    return "\n".join(md) + "\n"


def add_arguments(parser):
    parser.add_argument("--overload", type=int, default=60, help="seconds of the overload run")
    parser.add_argument("--soak", type=int, default=180, help="seconds of the soak")
    parser.add_argument("--baseline", help="an older service binary to run the same way")
    parser.add_argument("--service", help="a given service binary instead of building one")
    parser.add_argument("--loadgen", help="a given loadgen binary instead of building one")


def run(args, store):
    binaries = {}
    if not args.service:
        binaries.update(proc.build("service", skip=args.no_build))
    if not args.loadgen:
        binaries.update(proc.build("loadgen", skip=args.no_build))
    binaries.update({k: Path(v) for k, v in (("service", args.service), ("loadgen", args.loadgen)) if v})
    return measure(binaries, args.baseline, args.overload, args.soak)
