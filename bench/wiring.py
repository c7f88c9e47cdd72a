#!/usr/bin/env python3
"""What the lab's tracing wiring costs per request, next to the article's wiring (issue 10).

Each configuration runs fresh: the server with one worker pinned to CPU 0, wrk pinned to CPU 1,
the victim route with zero dependency latency, a warm-up discarded, runs alternated, the
median of RUNS kept. Server CPU per request comes from /proc/<pid>/stat (utime + stime of the
whole process, appender thread included) over the measured window.

    python3 bench/wiring.py                 # builds, runs, prints and writes docs/wiring-benchmark.md
    RUNS=1 DURATION=3 python3 bench/wiring.py --no-write   # a quick look

Needs wrk (Debian package `wrk`) and taskset (util-linux).
"""

import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("RUNS", "5"))
DURATION = int(os.environ.get("DURATION", "5"))
WARMUP = int(os.environ.get("WARMUP", "2"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "32"))
TICKS = os.sysconf("SC_CLK_TCK")
SERVICE = ROOT / "target/release/service"
ARTICLE = ROOT / "target/release/examples/article_wiring"

# name -> (binary, environment, what it is)
CONFIGS = {
    "article, RUST_LOG=off": (ARTICLE, {"RUST_LOG": "off"}, "the article's wiring, nothing emitted"),
    "article, info JSON": (ARTICLE, {"RUST_LOG": "info"}, "the article's wiring, one JSON line per request"),
    "lab, no request tracing": (SERVICE, {"RUST_LOG": "off", "REQUEST_TRACING": "false", "LONG_POLL_MS": "0"}, "baseline: no root span, ids, access line or watchdog"),
    "lab, RUST_LOG=off, no watchdog": (SERVICE, {"RUST_LOG": "off", "LONG_POLL_MS": "0"}, "request tracing without the watchdog, nothing emitted"),
    "lab, RUST_LOG=off": (SERVICE, {"RUST_LOG": "off"}, "the lab's wiring (watchdog on), nothing emitted"),
    "lab, info JSON": (SERVICE, {"RUST_LOG": "info"}, "the lab's wiring: one access line per request"),
    "lab, info JSON, files too": (SERVICE, {"RUST_LOG": "info", "LOG_DIR": "@tmp"}, "as above, also to rolling files"),
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, deadline=20):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"server on port {port} did not come up")


def cpu_ticks(pid):
    """(user, system) clock ticks of the whole process, every thread included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def wrk(port, seconds):
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency",
         f"http://127.0.0.1:{port}/api/orders/1"],
        capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99_us = float(p99.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"wrk saw {errors.group(1)} error responses:\n{out}")
    return requests, rate, p99_us


def run_once(binary, env_extra):
    port = free_port()
    env = {"PATH": os.environ["PATH"], "LISTEN_ADDR": f"127.0.0.1:{port}", "WORKERS": "1", "DEPENDENCY_MS": "0"}
    tmp = None
    for key, value in env_extra.items():
        if value == "@tmp":
            tmp = tempfile.mkdtemp(prefix="wiring-logs-")
            value = tmp
        env[key] = value
    server = subprocess.Popen(["taskset", "-c", "0", str(binary)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        wrk(port, WARMUP)
        user0, system0 = cpu_ticks(server.pid)
        requests, rate, p99_us = wrk(port, DURATION)
        user1, system1 = cpu_ticks(server.pid)
        per_request = lambda ticks: ticks / TICKS * 1e6 / requests
        return {"rate": rate, "p99_us": p99_us,
                "cpu_us_per_req": per_request(user1 - user0 + system1 - system0),
                "user_us_per_req": per_request(user1 - user0)}
    finally:
        server.terminate()
        server.wait()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def main():
    write = "--no-write" not in sys.argv
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "service", "--bin", "service",
                    "--example", "article_wiring"], cwd=ROOT, check=True)
    results = {name: [] for name in CONFIGS}
    load_before = Path("/proc/loadavg").read_text().split()[0]
    for run in range(RUNS):
        for name, (binary, env, _) in CONFIGS.items():
            results[name].append(run_once(binary, env))
            print(f"run {run + 1}/{RUNS} {name}: {results[name][-1]}", file=sys.stderr)
    load_after = Path("/proc/loadavg").read_text().split()[0]
    median = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in results.items()}

    lines = ["| configuration | req/s | p99 | server CPU per request | of which user space | runs (req/s) | what it is |",
             "|---|---|---|---|---|---|---|"]
    for name, (_, _, what) in CONFIGS.items():
        m = median[name]
        runs = ", ".join(f"{r['rate'] / 1000:.1f} k" for r in results[name])
        lines.append(f"| {name} | {m['rate']:,.0f} | {m['p99_us']:.0f} µs | {m['cpu_us_per_req']:.2f} µs "
                     f"| {m['user_us_per_req']:.2f} µs | {runs} | {what} |")

    def ratio(a, b, key="rate"):
        return median[a][key] / median[b][key]

    # (what, value, goal as (comparison, bound) or None)
    ratios = [
        ("lab info / lab off, req/s", ratio("lab, info JSON", "lab, RUST_LOG=off"), (">=", 0.85)),
        ("lab off / no request tracing, req/s", ratio("lab, RUST_LOG=off", "lab, no request tracing"), (">=", 0.95)),
        ("lab p99 info / p99 off", ratio("lab, info JSON", "lab, RUST_LOG=off", "p99_us"), ("<=", 1.2)),
        ("article info / article off, req/s", ratio("article, info JSON", "article, RUST_LOG=off"), None),
        ("lab info / article info, req/s", ratio("lab, info JSON", "article, info JSON"), None),
    ]
    extra = {
        "lab": median["lab, info JSON"]["cpu_us_per_req"] - median["lab, RUST_LOG=off"]["cpu_us_per_req"],
        "article": median["article, info JSON"]["cpu_us_per_req"] - median["article, RUST_LOG=off"]["cpu_us_per_req"],
    }
    lines += ["", "| ratio | value | goal |", "|---|---|---|"]
    for label, value, goal in ratios:
        if goal is None:
            verdict = "–"
        else:
            op, bound = goal
            met = value >= bound if op == ">=" else value <= bound
            verdict = f"{'≥' if op == '>=' else '≤'} {bound}: {'met' if met else '**not met**'}"
        lines.append(f"| {label} | {value:.2f} | {verdict} |")
    lines += ["", f"Extra server CPU per request for `info` logging over `off`: lab {extra['lab']:.2f} µs, "
              f"article {extra['article']:.2f} µs."]
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    machine = (f"{os.cpu_count()} CPUs ({cpu.group(1) if cpu else 'unknown'}), kernel {os.uname().release}; "
               f"load average {load_before} before, {load_after} after; {RUNS} runs of {DURATION} s, "
               f"wrk -t1 -c{CONNECTIONS}, medians.")
    table = "\n".join(lines)
    print(table)
    if write:
        doc = ROOT / "docs/wiring-benchmark.md"
        doc.parent.mkdir(exist_ok=True)
        doc.write_text(
            "# The lab's tracing wiring against the article's\n\n"
            "Written by `python3 bench/wiring.py` (the whole file; do not edit by hand). "
            "One actix worker pinned to CPU 0, wrk pinned to CPU 1, `GET /api/orders/1` with "
            "`DEPENDENCY_MS=0`, JSON to stdout (`/dev/null`), fresh server per run, warm-up "
            "discarded, runs alternated.\n\n"
            f"Machine: {machine}\n\n{table}\n")
        print(f"wrote {doc}", file=sys.stderr)


if __name__ == "__main__":
    main()
