#!/usr/bin/env python3
"""What the canary (the `console` build) costs against the release build (issue 18).

Three measurements, each a table with its goal and verdict:

1. Throughput of the victim route (`/api/orders/1`, `DEPENDENCY_MS=0`), canary / release:
   pinned (one worker on CPU 0, wrk on CPU 1) and unpinned (two workers and wrk sharing both
   CPUs, as in compose). Fresh server per run, a warm-up discarded, configurations alternated,
   medians of RUNS.
2. RSS under the lab's default load (loadgen, 500 req/s of the victim on keep-alive
   connections, `DEPENDENCY_MS=5`) for LONG seconds, sampled every 10 s: flat after the
   retention window means the mean of the last minute within ±10 % of the second minute's.
3. Peak RSS under CHURN seconds of connection churn (`wrk -c8 -H 'Connection: close'`: a new
   connection, so a new tokio task, per request), and the bytes each retained task costs.

    python3 bench/canary.py                       # builds, runs, writes docs/canary-benchmark.md
    BEFORE=path/to/old/service python3 bench/canary.py   # also measures an older canary binary
    RUNS=1 DURATION=3 LONG=60 CHURN=3 python3 bench/canary.py --no-write   # a quick look

The machine's load average is recorded beside every throughput run: other work on the machine
moves wall-clock numbers, RSS much less. Needs wrk and taskset; the canary's console port is
never connected to (no client, as when nobody watches the canary).
"""

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("RUNS", "3"))
DURATION = int(os.environ.get("DURATION", "8"))
WARMUP = int(os.environ.get("WARMUP", "2"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "32"))
LONG = int(os.environ.get("LONG", "300"))
CHURN = int(os.environ.get("CHURN", "10"))
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
BIN = TARGET / "canary-bench"
BEFORE = os.environ.get("BEFORE")
# Churn is stopped early past this RSS, so an unbounded canary cannot take the machine down.
CHURN_CAP_KIB = 3 * 1024 * 1024
TICKS = os.sysconf("SC_CLK_TCK")


def sh(*cmd, **kw):
    subprocess.run(cmd, cwd=ROOT, check=True, **kw)


def build():
    """The release and canary binaries share target/release/service: keep a copy of each."""
    BIN.mkdir(parents=True, exist_ok=True)
    for name, features in (("release", []), ("canary", ["--features", "console"])):
        sh("cargo", "build", "--release", "-q", "-p", "service", "--bin", "service", *features)
        shutil.copy2(TARGET / "release/service", BIN / f"service-{name}")
    sh("cargo", "build", "--release", "-q", "-p", "loadgen")
    shutil.copy2(TARGET / "release/loadgen", BIN / "loadgen")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load():
    return Path("/proc/loadavg").read_text().split()[0]


def status_kib(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise SystemExit(f"no {field} for pid {pid}")


class Server:
    """The service with the given settings; `pin` runs it on CPU 0."""

    def __init__(self, binary, env_extra, pin):
        self.port = free_port()
        env = {"PATH": os.environ["PATH"], "LISTEN_ADDR": f"127.0.0.1:{self.port}",
               "RUST_LOG": "info", "INSTANCE": "bench",
               "TOKIO_CONSOLE_BIND": f"127.0.0.1:{free_port()}", **env_extra}
        cmd = (["taskset", "-c", "0"] if pin else []) + [str(binary)]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        end = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.time() > end or self.proc.poll() is not None:
                    raise SystemExit(f"{binary} did not come up: {self.proc.stderr.read().decode()}")
                time.sleep(0.05)

    def rss(self):
        return status_kib(self.proc.pid, "VmRSS")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def wrk(port, seconds, pin, extra=()):
    cmd = (["taskset", "-c", "1"] if pin else []) + [
        "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", *extra,
        f"http://127.0.0.1:{port}/api/orders/1"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"wrk saw {errors.group(1)} error responses:\n{out}")
    return requests, rate


def cpu_seconds(pid):
    """utime + stime of the whole process, every thread included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def throughput(configs):
    """{(config, pinned): [(req/s, load average at the start, server CPU µs per request), ...]}"""
    results = {}
    for run in range(RUNS):
        for pinned in (True, False):
            for name, (binary, env) in configs.items():
                settings = {"WORKERS": "1" if pinned else "2", "DEPENDENCY_MS": "0", **env}
                at = load()
                server = Server(binary, settings, pinned)
                try:
                    wrk(server.port, WARMUP, pinned)
                    cpu = cpu_seconds(server.proc.pid)
                    requests, rate = wrk(server.port, DURATION, pinned)
                    cpu_us = (cpu_seconds(server.proc.pid) - cpu) / requests * 1e6
                finally:
                    server.stop()
                results.setdefault((name, pinned), []).append((rate, at, cpu_us))
                print(f"run {run + 1}/{RUNS} {'pinned' if pinned else 'unpinned'} {name}: "
                      f"{rate:,.0f} req/s, {cpu_us:.1f} µs CPU/request (load {at})", file=sys.stderr)
    return results


def rss_over_time(binaries):
    """Every binary under its own loadgen at once (RSS does not depend on the shared CPU the
    way throughput does); returns {name: [(seconds, KiB), ...]}."""
    servers = {name: Server(binary, {"WORKERS": "1", "DEPENDENCY_MS": "5"}, False)
               for name, binary in binaries.items()}
    loads = [subprocess.Popen([str(BIN / "loadgen"), f"http://127.0.0.1:{s.port}", "--rate", "500",
                               "--mix", "orders=1", "--duration", f"{LONG}s", "--rounds", "1",
                               "--no-progress", "--output", os.devnull],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for s in servers.values()]
    samples = {name: [(0, s.rss())] for name, s in servers.items()}
    start = time.time()
    for t in range(10, LONG + 1, 10):
        time.sleep(max(0, start + t - time.time()))
        for name, s in servers.items():
            samples[name].append((t, s.rss()))
        print(f"rss at {t} s: {', '.join(f'{n} {v[-1][1] / 1024:.1f} MiB' for n, v in samples.items())}",
              file=sys.stderr)
    for p in loads:
        p.wait()
    for s in servers.values():
        s.stop()
    return samples


def churn(name, binary, env):
    """Peak RSS during CHURN s of one connection per request, and RSS 12 s after."""
    server = Server(binary, {"WORKERS": "1", "DEPENDENCY_MS": "0", **env}, True)
    idle = server.rss()
    peak, capped = idle, False
    load_at = load()
    client = subprocess.Popen(
        ["taskset", "-c", "1", "wrk", "-t1", "-c8", f"-d{CHURN}s", "-H", "Connection: close",
         f"http://127.0.0.1:{server.port}/api/orders/1"], stdout=subprocess.PIPE, text=True)
    while client.poll() is None:
        peak = max(peak, server.rss())
        if peak > CHURN_CAP_KIB and not capped:
            capped = True
            client.send_signal(signal.SIGINT)
        time.sleep(0.2)
    peak = max(peak, status_kib(server.proc.pid, "VmHWM"))
    requests = re.search(r"(\d+) requests in", client.stdout.read())
    time.sleep(12)
    after = server.rss()
    server.stop()
    out = {"name": name, "idle": idle, "peak": peak, "after": after, "capped": capped,
           "requests": int(requests.group(1)) if requests else 0, "load": load_at}
    print(f"churn {name}: {out}", file=sys.stderr)
    return out


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def verdict(ok):
    return "met" if ok else "**not met**"


def main():
    write = "--no-write" not in sys.argv
    if os.environ.get("SKIP_BUILD") != "1":
        build()
    release, canary = BIN / "service-release", BIN / "service-canary"
    canaries = {"canary": (canary, {})}
    if BEFORE:
        canaries = {"canary before (issue 18)": (Path(BEFORE), {}), **canaries}
    configs = {"release": (release, {}), **canaries,
               "canary, TOKIO_CONSOLE_RESOURCES=true": (canary, {"TOKIO_CONSOLE_RESOURCES": "true"})}
    load_before = load()
    tp = throughput(configs)
    rss = rss_over_time({name: binary for name, (binary, _) in canaries.items()})
    churns = [churn("release", release, {})] + [churn(n, b, e) for n, (b, e) in canaries.items()]
    load_after = load()

    out = []
    w = out.append
    med = {key: statistics.median(r for r, _, _ in runs) for key, runs in tp.items()}
    cpu = {key: statistics.median(c for _, _, c in runs) for key, runs in tp.items()}
    w("### Throughput of the victim route, canary / release")
    w("")
    w(f"`/api/orders/1`, `DEPENDENCY_MS=0`, wrk -t1 -c{CONNECTIONS}, {DURATION} s per run after a "
      f"{WARMUP} s warm-up, fresh server per run, configurations alternated, median of {RUNS}. "
      "Pinned: one worker on CPU 0, wrk on CPU 1. Unpinned: two workers, wrk and the console's "
      "thread share both CPUs (as in compose). The load average (1 min) at the start of each run "
      "is beside its rate: when other work shares the CPUs, req/s falls with it, while the "
      "server's CPU time per request (utime + stime of the whole process over the run, from "
      "/proc) moves much less, so its ratio is given too.")
    w("")
    w("| configuration | CPUs | req/s (median) | server CPU per request (median) | runs: req/s (load average) |")
    w("|---|---|---|---|---|")
    for pinned in (True, False):
        for name in configs:
            runs = ", ".join(f"{r / 1000:.1f} k ({a})" for r, a, _ in tp[(name, pinned)])
            w(f"| {name} | {'pinned' if pinned else 'unpinned'} | {med[(name, pinned)]:,.0f} | "
              f"{cpu[(name, pinned)]:.1f} µs | {runs} |")
    w("")
    w("| ratio | req/s | release's CPU per request / this one's | goal (req/s) |")
    w("|---|---|---|---|")
    for name in [*canaries, "canary, TOKIO_CONSOLE_RESOURCES=true"]:
        for pinned, goal in ((True, 0.5), (False, 0.8)):
            value = med[(name, pinned)] / med[("release", pinned)]
            by_cpu = cpu[("release", pinned)] / cpu[(name, pinned)]
            goal_text = f"≥ {goal}: {verdict(value >= goal)}" if name == "canary" else "–"
            w(f"| {name} / release, {'pinned' if pinned else 'unpinned'} | {value:.2f} | {by_cpu:.2f} | {goal_text} |")
    w("")
    w("### Canary RSS under the lab's default load")
    w("")
    w(f"loadgen at 500 req/s of the victim on keep-alive connections for {LONG} s, `WORKERS=1`, "
      "`DEPENDENCY_MS=5`, no tokio-console attached; VmRSS every 10 s"
      + (" (both binaries at once, each with its own loadgen)." if BEFORE else "."))
    w("")
    names = list(rss)
    w("| time | " + " | ".join(names) + " |")
    w("|---|" + "---|" * len(names))
    for i in range(0, len(rss[names[0]]), 3):
        w(f"| {rss[names[0]][i][0]} s | " + " | ".join(mib(rss[n][i][1]) for n in names) + " |")
    w("")
    w("| build | mean, second minute | mean, last minute | change | goal: within ±10 % |")
    w("|---|---|---|---|---|")
    for n in names:
        second = [v for t, v in rss[n] if 60 < t <= 120]
        last = [v for t, v in rss[n] if LONG - 60 < t <= LONG]
        if second and last:
            a, b = statistics.mean(second), statistics.mean(last)
            change = b / a - 1
            w(f"| {n} | {mib(a)} | {mib(b)} | {change:+.0%} | "
              f"{verdict(abs(change) <= 0.10) if n == 'canary' else '–'} |")
    w("")
    w("### Connection churn")
    w("")
    w(f"`wrk -t1 -c8 -d{CHURN}s -H 'Connection: close'` (one new connection, so one new task, per "
      "request), the service with one worker on CPU 0, wrk on CPU 1; stopped early past 3 GiB. "
      "Bytes per task: (peak − idle) / requests, every task of the run being still retained at "
      "its end when the retention is at least the run's length.")
    w("")
    w("| build | requests | idle | peak VmRSS | VmRSS 12 s after | bytes per task | load average | goal: peak ≤ 512 MiB |")
    w("|---|---|---|---|---|---|---|---|")
    for c in churns:
        per_task = (c["peak"] - c["idle"]) * 1024 / c["requests"] if c["requests"] else 0
        goal = verdict(c["peak"] <= 512 * 1024) if c["name"] == "canary" else "–"
        w(f"| {c['name']}{' (stopped at 3 GiB)' if c['capped'] else ''} | {c['requests']} | "
          f"{mib(c['idle'])} | {mib(c['peak'])} | {mib(c['after'])} | "
          f"{per_task / 1024:.1f} KiB | {c['load']} | {goal} |")
    w("")
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    machine = (f"{os.cpu_count()} CPUs ({cpu.group(1) if cpu else 'unknown'}), kernel {os.uname().release}; "
               f"load average {load_before} before, {load_after} after.")
    body = "\n".join(out)
    print(body)
    if write:
        doc = ROOT / "docs/canary-benchmark.md"
        doc.write_text(
            "# The canary against the release build\n\n"
            "Written by `python3 bench/canary.py` (the whole file; do not edit by hand).\n\n"
            f"Machine: {machine}\n\n{body}\n")
        print(f"wrote {doc}", file=sys.stderr)


if __name__ == "__main__":
    main()
