#!/usr/bin/env python3
"""Overload and soak of the release binary (issue 21): does a lock route under more load than it
can serve shed it, and does the service's memory stay flat under the lab's mixed load?

Two runs, each against a fresh service with the lab's defaults (two workers, SLOW_DISK_MS=300,
DEPENDENCY_MS=5, RUST_LOG=info), loadgen open loop, no CPU pinning (as in the compose lab):

1. overload: `--rate 10 --mix lock_tokio=1` for OVERLOAD_S (60) seconds. One lock serves one
   request per 300 ms hold, so rate x hold is 3. Counts the answers (200 / 503 / client
   timeouts), the longest request, the access lines the service wrote after loadgen had finished
   (work done for clients that had gone; the probe's own line excluded), a probe of
   `/lock/tokio` after the load, and RSS.
2. soak: `--rate 1000 --mix orders=98,config_async=1,lock_tokio=1` for SOAK_S (180) seconds,
   RSS every 5 s; "flat after the first minute" compares every sample after 60 s with the one
   at 60 s.

    python3 bench/soak.py                               # builds, runs, writes docs/soak-benchmark.md
    OVERLOAD_S=10 SOAK_S=30 python3 bench/soak.py --no-write       # a quick look
    BASELINE=path/to/older/service python3 bench/soak.py             # the same runs for an older build too
    SERVICE=path/to/service LOADGEN=path/to/loadgen python3 bench/soak.py   # given binaries, no build

Needs: a Rust toolchain, python3. The machine's load average and running builds are recorded:
the numbers are only as quiet as the machine was.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
OVERLOAD_S = int(os.environ.get("OVERLOAD_S", "60"))
SOAK_S = int(os.environ.get("SOAK_S", "180"))
SETTLE_S = 60  # "after its first minute"
SAMPLE_S = 5
SOAK_RATE = 1000
SOAK_MIX = "orders=98,config_async=1,lock_tokio=1"
OUT = ROOT / "docs" / "soak-benchmark.md"
SERVICE = os.environ.get("SERVICE") or str(TARGET / "release" / "service")
LOADGEN = os.environ.get("LOADGEN") or str(TARGET / "release" / "loadgen")


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def busy():
    """Build processes running now (other work competing for the CPUs)."""
    names = ("cargo", "rustc", "cc1plus", "ld", "cc")
    count = 0
    for stat in Path("/proc").glob("[0-9]*/comm"):
        try:
            count += stat.read_text().strip() in names
        except OSError:
            pass
    return count


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


PROBE_ID = "soak-probe"


def probe(port, path, timeout=120):
    """One GET on a fresh connection, with request id PROBE_ID: (status, seconds)."""
    import http.client

    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", path, headers={"x-request-id": PROBE_ID})
    status = conn.getresponse().status
    conn.close()
    return status, time.monotonic() - start


class Service:
    def __init__(self, binary, stdout):
        self.port = free_port()
        env = {
            "PATH": os.environ["PATH"],
            "LISTEN_ADDR": f"127.0.0.1:{self.port}",
            "WORKERS": "2",
            "INSTANCE": "soak",
            "RUST_LOG": "info",
        }
        # From the repository root, so the default CONFIG_DIR (service/sample-config) is found.
        self.proc = subprocess.Popen([binary], env=env, cwd=ROOT, stdout=stdout,
                                     stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    sys.exit("error: the service did not come up")
                time.sleep(0.05)

    def rss(self):
        return rss_kib(self.proc.pid)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def loadgen(port, rate, mix, seconds, output, samples=None, pid=None):
    """Runs loadgen; with `samples`, appends (t, RSS KiB of pid) every SAMPLE_S seconds."""
    cmd = [LOADGEN, f"http://127.0.0.1:{port}", "--rate", str(rate),
           "--mix", mix, "--duration", f"{seconds}s", "--rounds", "1", "--no-progress",
           "--output", str(output)]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    next_sample = 0.0
    while proc.poll() is None:
        now = time.monotonic() - start
        if samples is not None and now >= next_sample:
            samples.append((round(now), rss_kib(pid)))
            next_sample += SAMPLE_S
        time.sleep(0.2)
    return json.loads(Path(output).read_text().splitlines()[0])


def route_stats(report, route):
    return next(r["stats"] for r in report["routes"] if r["route"] == route)


def overload(binary, work):
    log_path = work / "overload.jsonl"
    with open(log_path, "w") as stdout:
        service = Service(binary, stdout)
        rss_before = service.rss()
        report = loadgen(service.port, 10, "lock_tokio=1", OVERLOAD_S, work / "overload.json")
        finished = time.time()
        rss_end = service.rss()
        status, probe_s = probe(service.port, "/lock/tokio")
        time.sleep(10)
        rss_after = service.rss()
        service.stop()
    stats = route_stats(report, "lock_tokio")
    late_lines = 0
    for raw in open(log_path):
        line = json.loads(raw)
        fields = line.get("fields", {})
        if (fields.get("message") == "request finished" and fields.get("route") == "/lock/tokio"
                and line.get("span", {}).get("request_id") != PROBE_ID):
            at = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()
            late_lines += at > finished
    latency = stats["latency"]["actual"] or {}
    return {
        "requests": stats["requests"],
        "2xx": stats["status_classes"]["2xx"],
        "5xx": stats["status_classes"]["5xx"],
        "timeouts": stats["errors_by_kind"]["timeout"],
        "max_ms": latency.get("max_ms"),
        "late_lines": late_lines,
        "probe": (status, probe_s),
        "rss": (rss_before, rss_end, rss_after),
    }


def soak(binary, work):
    service = Service(binary, subprocess.DEVNULL)
    samples = [(0, service.rss())]
    report = loadgen(service.port, SOAK_RATE, SOAK_MIX, SOAK_S, work / "soak.json",
                     samples=samples, pid=service.proc.pid)
    time.sleep(10)
    after = service.rss()
    service.stop()
    samples = [s for s in samples if s[0] > 0]
    settled = [kib for t, kib in samples if t >= SETTLE_S]
    at_settle = settled[0] if settled else None
    routes = {}
    for route in ("orders", "config_async", "lock_tokio"):
        stats = route_stats(report, route)
        corrected = stats["latency"]["corrected"] or {}
        routes[route] = (stats["requests"], stats["status_classes"]["2xx"],
                         stats["status_classes"]["5xx"], stats["errors_by_kind"]["timeout"],
                         corrected.get("p50_ms"), corrected.get("p99_ms"), corrected.get("max_ms"))
    return {
        "samples": samples,
        "at_settle": at_settle,
        "settled_max": max(settled) if settled else None,
        "settled_min": min(settled) if settled else None,
        "end": samples[-1][1] if samples else None,
        "after": after,
        "achieved": report["total"]["achieved_rate"],
        "late_sends": report["total"]["late_sends"],
        "routes": routes,
    }


def mib(kib):
    return "–" if kib is None else f"{kib / 1024:.1f} MiB"


def ms(value):
    return "–" if value is None else f"{value:.1f} ms"


def main():
    write = "--no-write" not in sys.argv
    if os.environ.get("SKIP_BUILD") != "1" and not os.environ.get("SERVICE"):
        log("building the release service and loadgen")
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "service", "-p", "loadgen"],
                       cwd=ROOT, check=True)
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    builds = [("this build", work / "service")]
    shutil.copy(SERVICE, builds[0][1])
    if os.environ.get("BASELINE"):
        builds.append(("baseline", Path(os.environ["BASELINE"]).resolve()))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    load_before, busy_before = loadavg(), busy()
    results = {}
    for name, binary in builds:
        log(f"{name}: overload, {OVERLOAD_S} s")
        results[name] = {"overload": overload(str(binary), work)}
        log(f"{name}: soak, {SOAK_S} s at {SOAK_RATE} req/s")
        results[name]["soak"] = soak(str(binary), work)
    load_after, busy_after = loadavg(), busy()
    shutil.rmtree(work, ignore_errors=True)

    md = []
    w = md.append
    w("# Overload and soak (issue 21)")
    w("")
    w("Generated by `python3 bench/soak.py`; rerun it to reproduce. The release binary with the "
      "lab's defaults (two workers, `SLOW_DISK_MS=300`, `DEPENDENCY_MS=5`, `RUST_LOG=info`, stdout "
      "to a file in the overload run and to /dev/null in the soak), loadgen open loop on the same "
      "machine, nothing pinned.")
    w("")
    w(f"Machine: {os.cpu_count()} CPUs, shared with other builds: load average (1, 5, 15 min) "
      f"{load_before} before, {load_after} after; build processes (cargo, rustc, cc, ld) running "
      f"{busy_before} before, {busy_after} after. Commit `{commit}`"
      f"{' (with uncommitted changes)' if dirty else ''}"
      + (f"; baseline: `{os.environ['BASELINE']}`" if os.environ.get("BASELINE") else "") + ".")
    w("")
    w(f"**Overload**: `loadgen URL --rate 10 --mix lock_tokio=1 --duration {OVERLOAD_S}s` "
      "(rate × hold = 10 × 0.3 s = 3 per lock). Then a probe `GET /lock/tokio` on a fresh "
      "connection; RSS before, at the end of the load, and 10 s after.")
    w("")
    w("| build | requests | 200 | 503 | client timeouts (10 s) | longest answer | `/lock/tokio` access lines after loadgen ended (probe excluded) | probe after the load | RSS before → end → 10 s after |")
    w("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        o = r["overload"]
        status, probe_s = o["probe"]
        w(f"| {name} | {o['requests']} | {o['2xx']} | {o['5xx']} | {o['timeouts']} | "
          f"{ms(o['max_ms'])} | {o['late_lines']} | {status} in {probe_s * 1000:.0f} ms | "
          f"{' → '.join(mib(k) for k in o['rss'])} |")
    w("")
    w(f"**Soak**: `loadgen URL --rate {SOAK_RATE} --mix {SOAK_MIX} --duration {SOAK_S}s`, VmRSS "
      f"every {SAMPLE_S} s. Flat after the first minute: every sample from {SETTLE_S} s on within "
      "1 MiB of the one at 60 s.")
    w("")
    w("| build | achieved rate | late sends | RSS at 60 s | min – max after 60 s | at the end | 10 s after | flat after 60 s |")
    w("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        s = r["soak"]
        flat = None
        if s["at_settle"] is not None:
            flat = (s["settled_max"] - s["at_settle"] <= 1024
                    and s["at_settle"] - s["settled_min"] <= 1024)
        verdict = "–" if flat is None else ("yes" if flat else "**no**")
        rate = "–" if s["achieved"] is None else f"{s['achieved']:.0f} req/s"
        w(f"| {name} | {rate} | {s['late_sends']} | {mib(s['at_settle'])} | "
          f"{mib(s['settled_min'])} – {mib(s['settled_max'])} | {mib(s['end'])} | "
          f"{mib(s['after'])} | {verdict} |")
    w("")
    w("| build | route | requests | 200 | 503 | timeouts | p50 | p99 | max |")
    w("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        for route, (n, ok, shed, timeouts, p50, p99, top) in r["soak"]["routes"].items():
            w(f"| {name} | {route} | {n} | {ok} | {shed} | {timeouts} | {ms(p50)} | {ms(p99)} | "
              f"{ms(top)} |")
    w("")
    w("RSS over the soak (MiB, every 5 s):")
    w("")
    for name, r in results.items():
        series = ", ".join(f"{kib / 1024:.1f}" for _, kib in r["soak"]["samples"])
        w(f"- {name}: {series}")
    w("")
    text = "\n".join(md)
    print(text)
    if write:
        OUT.write_text(text)
        log(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
