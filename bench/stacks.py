#!/usr/bin/env python3
"""Culprit stacks: what they cost, and how soon the line with its stack is written.

Writes docs/stacks-benchmark.md. Three measures, each on release binaries of this checkout:

1. Frame pointers: user-space instructions per request (valgrind's callgrind, exact run after
   run) and pinned throughput (server on CPU 0, wrk on CPU 1) of the victim route, with the
   workspace's frame pointers and without them (a second build with RUSTFLAGS replacing
   `.cargo/config.toml`'s flags by `--cfg tokio_unstable` alone).
2. Block start to `worker blocked` line: `elapsed_ms` of that line for sequential
   `/config/sync` requests (300 ms blocks, 40 ms threshold), with capture on and off; the first
   warning of a process symbolizes cold, the rest hit the cache.
3. Capture + symbolize per warning: the difference of the two medians above.

    python3 bench/stacks.py            # builds both binaries if missing (a few minutes)
"""

import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WITH_FP = os.path.join(ROOT, "target/release/service")
NO_FP_DIR = os.path.join(ROOT, "target/nofp")
NO_FP = os.path.join(NO_FP_DIR, "release/service")
CALLGRIND_REQUESTS = 2000
WRK_RUNS = 3


def build():
    subprocess.run(["cargo", "build", "--release", "-p", "service"], cwd=ROOT, check=True)
    env = dict(os.environ, RUSTFLAGS="--cfg tokio_unstable")
    subprocess.run(
        ["cargo", "build", "--release", "-p", "service", "--target-dir", NO_FP_DIR],
        cwd=ROOT, env=env, check=True,
    )


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, extra, prefix=()):
    port = free_port()
    env = {
        "LISTEN_ADDR": f"127.0.0.1:{port}", "WORKERS": "1", "DEPENDENCY_MS": "0",
        "RUST_LOG": "info", "INSTANCE": "bench", "PATH": os.environ["PATH"],
    }
    env.update(extra)
    proc = subprocess.Popen([*prefix, binary], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit(f"stacks.py: {binary} did not start")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    return out


def sequential(port, path, count):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(count):
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status
    conn.close()


def callgrind(binary, requests):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        proc, port = start(binary, {"RUST_LOG": "off", "BLOCKED_STACKS": "false"},
                           prefix=("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"))
        sequential(port, "/api/orders/1", requests)
        stop(proc)
        for line in open(out):
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    sys.exit("stacks.py: no callgrind total")


def instructions_per_request(binary):
    base = callgrind(binary, 0)
    loaded = callgrind(binary, CALLGRIND_REQUESTS)
    return (loaded - base) / CALLGRIND_REQUESTS


def wrk(binary):
    proc, port = start(binary, {"RUST_LOG": "off"},
                       prefix=("taskset", "-c", "0"))
    sequential(port, "/api/orders/1", 100)
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", "-c32", "-d5s", f"http://127.0.0.1:{port}/api/orders/1"],
        capture_output=True, text=True, check=True,
    ).stdout
    stop(proc)
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    sys.exit("stacks.py: no wrk rate")


def warnings(binary, capture, count=15):
    extra = {"LONG_POLL_MS": "40", "SLOW_DISK_MS": "300",
             "BLOCKED_STACKS": "true" if capture else "false"}
    proc, port = start(binary, extra)
    if capture:
        time.sleep(2)  # the start-up self-test, which also warms the symbol cache
    sequential(port, "/config/sync/app.toml", count)
    out = stop(proc)
    elapsed, stacks = [], []
    for line in out.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        fields = record.get("fields", {})
        if fields.get("message") == "worker blocked":
            elapsed.append(fields["elapsed_ms"])
            stacks.append(fields.get("stack", ""))
    return elapsed, stacks


def verdict(met):
    return "**met**" if met else "**not met**"


def main():
    if not (os.path.exists(WITH_FP) and os.path.exists(NO_FP)) or "--build" in sys.argv:
        build()
    load = os.getloadavg()[0]
    fp_instr = instructions_per_request(WITH_FP)
    nofp_instr = instructions_per_request(NO_FP)
    rates = {"fp": [], "nofp": []}
    for _ in range(WRK_RUNS):
        rates["fp"].append(wrk(WITH_FP))
        rates["nofp"].append(wrk(NO_FP))
    on, on_stacks = warnings(WITH_FP, True)
    off, _ = warnings(WITH_FP, False)
    named = sum("read_config_blocking" in s for s in on_stacks)
    med_fp, med_nofp = statistics.median(rates["fp"]), statistics.median(rates["nofp"])
    doc = f"""# Culprit stacks: measured

Written by `python3 bench/stacks.py` (the numbers below are this run's; rerun it to refresh).
Release binaries of this checkout, one worker, `DEPENDENCY_MS=0`. Load average before the run:
{load:.2f} (2 CPUs; wall-clock figures move with it, instruction counts do not).

## Frame pointers (every build has them, `.cargo/config.toml`)

| | with frame pointers | without | cost |
|---|---|---|---|
| user-space instructions per request, `GET /api/orders/1`, `RUST_LOG=off` (callgrind, {CALLGRIND_REQUESTS} keep-alive requests minus start-up) | {fp_instr:,.0f} | {nofp_instr:,.0f} | {100 * (fp_instr / nofp_instr - 1):+.2f} % |
| pinned throughput, req/s (median of {WRK_RUNS} alternated `wrk -t1 -c32 -d5s` runs) | {med_fp:,.0f} | {med_nofp:,.0f} | {100 * (med_fp / med_nofp - 1):+.2f} % |

Goal: at most 3 % on the victim route: {verdict(fp_instr / nofp_instr - 1 <= 0.03)} by the
instruction count, {verdict(1 - med_fp / med_nofp <= 0.03)} by throughput. Runs, req/s: with {', '.join(f'{r:,.0f}' for r in rates['fp'])};
without {', '.join(f'{r:,.0f}' for r in rates['nofp'])}.

## From block start to the `worker blocked` line

`elapsed_ms` of the `worker blocked` line (measured when the line is written) for
{len(on)} sequential `/config/sync` requests (300 ms blocks), `LONG_POLL_MS=40`:

| | first warning of the process | median of the rest | max |
|---|---|---|---|
| capture on (`stack` in the line) | {on[0]} ms | {statistics.median(on[1:])} ms | {max(on)} ms |
| capture off | {off[0]} ms | {statistics.median(off[1:])} ms | {max(off)} ms |

Goal: the line with its stack within the threshold + 15 ms (55 ms): {verdict(max(on) <= 55)}. Capture + symbolize per
warning, from the medians: {statistics.median(on[1:]) - statistics.median(off[1:])} ms (cached
symbols); the first warning after start-up is symbolized with a cache the self-test has warmed.
{named} of {len(on_stacks)} stacks named `read_config_blocking`.

The checker polls every 5 ms at this threshold, so a line lands 0-5 ms after the threshold
even without capture.
"""
    with open(os.path.join(ROOT, "docs/stacks-benchmark.md"), "w") as f:
        f.write(doc)
    print(doc)


if __name__ == "__main__":
    main()
