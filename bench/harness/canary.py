"""What the canary (the `console` build) costs against the release build (issue 18).

1. Throughput of the victim route, canary / release: pinned (one worker on CPU 0, wrk on
   CPU 1) and unpinned (two workers and wrk sharing both CPUs, as in compose); fresh server
   per run, a warm-up discarded, configurations alternated, medians. The load average at the
   start of each run is kept beside it.
2. RSS under the lab's default load (loadgen, 500 req/s of the victim on keep-alive
   connections) every 10 s: flat after the retention window means the last minute's mean
   within ±10 % of the second minute's.
3. Peak RSS under connection churn (`wrk -c8 -H 'Connection: close'`: a new task per
   request), and what each retained task costs. Stopped early past 3 GiB.

The canary's console port is never connected to (as when nobody watches the canary).
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import proc, stats

PAGE = "canary-benchmark.md"
CHURN_CAP_KIB = 3 * 1024 * 1024
BEFORE = "canary before (issue 18)"
RESOURCES = "canary, TOKIO_CONSOLE_RESOURCES=true"


def server_env(extra):
    return {"RUST_LOG": "info", "INSTANCE": "bench",
            "TOKIO_CONSOLE_BIND": f"127.0.0.1:{proc.free_port()}", **extra}


def throughput(configs, s):
    """{(name, pinned): [{rate, load, cpu_us}, ...]}, every run alternated."""
    keys = [(name, pinned) for pinned in (True, False) for name in configs]

    def one(key):
        name, pinned = key
        binary, env = configs[name]
        at = proc.loadavg(1)
        settings = {"WORKERS": "1" if pinned else "2", "DEPENDENCY_MS": "0", **env}
        cpu = proc.CLIENT_CPU if pinned else None
        with proc.Server(binary, server_env(settings), cpu=proc.SERVER_CPU if pinned else None) as server:
            r = proc.measured_wrk(server, s["duration_s"], s["warmup_s"], s["connections"], cpu=cpu,
                                  check=True)
        print(f"canary {'pinned' if pinned else 'unpinned'} {name}: {r['rate']:,.0f} req/s, "
              f"{r['cpu_us']:.1f} µs CPU/request (load {at})", file=sys.stderr)
        return {"rate": r["rate"], "load": at, "cpu_us": r["cpu_us"]}

    return stats.alternate(s["runs"], keys, one)


def rss_over_time(binaries, loadgen, long_s):
    """Every binary under its own loadgen at once; {name: [(seconds, KiB), ...]} every 10 s."""
    servers = {name: proc.Server(b, server_env({"WORKERS": "1", "DEPENDENCY_MS": "5"}))
               for name, b in binaries.items()}
    loads = [proc.loadgen(loadgen, s.url, ["--rate", "500", "--mix", "orders=1", "--duration",
                                           f"{long_s}s", "--rounds", "1"], os.devnull)
             for s in servers.values()]
    samples = {name: [(0, s.rss_kib())] for name, s in servers.items()}
    start = time.time()
    for t in range(10, long_s + 1, 10):
        time.sleep(max(0, start + t - time.time()))
        for name, s in servers.items():
            samples[name].append((t, s.rss_kib()))
    for p in loads:
        p.wait()
    for s in servers.values():
        s.stop()
    return samples


def churn(name, binary, env, seconds, after_s=12):
    """Peak RSS during `seconds` of one connection per request, and RSS `after_s` later."""
    with proc.Server(binary, server_env({"WORKERS": "1", "DEPENDENCY_MS": "0", **env}),
                     cpu=proc.SERVER_CPU) as server:
        idle = server.rss_kib()
        peak, capped, load_at = idle, False, proc.loadavg(1)
        client = subprocess.Popen(proc.wrk_command(server.url + proc.VICTIM, seconds, 8,
                                                   extra=("-H", "Connection: close")),
                                  stdout=subprocess.PIPE, text=True)
        while client.poll() is None:
            peak = max(peak, server.rss_kib())
            if peak > CHURN_CAP_KIB and not capped:
                capped = True
                client.send_signal(signal.SIGINT)
            time.sleep(0.2)
        peak = max(peak, proc.status_kib(server.pid, "VmHWM"))
        try:
            requests = proc.parse_wrk(client.stdout.read())["requests"]
        except RuntimeError:
            requests = 0
        time.sleep(after_s)
        after = server.rss_kib()
    out = {"name": name, "requests": requests, "idle_kib": idle, "peak_kib": peak,
           "after_kib": after, "capped": capped, "load": load_at}
    print(f"churn {name}: {out}", file=sys.stderr)
    return out


def measure(binaries, before=None, runs=3, duration=8, warmup=2, connections=32, long_s=300,
            churn_s=10):
    proc.require("wrk", "taskset")
    s = {"runs": runs, "duration_s": duration, "warmup_s": warmup, "connections": connections,
         "long_s": long_s, "churn_s": churn_s}
    canaries = {"canary": (binaries["canary"], {})}
    if before:
        canaries = {BEFORE: (Path(before), {}), **canaries}
    configs = {"release": (binaries["service"], {}), **canaries,
               RESOURCES: (binaries["canary"], {"TOKIO_CONSOLE_RESOURCES": "true"})}
    load_before = proc.loadavg(1)
    tp = throughput(configs, s)
    rss = rss_over_time({n: b for n, (b, _) in canaries.items()}, binaries["loadgen"], long_s)
    churns = [churn("release", binaries["service"], {}, churn_s)] + [
        churn(n, b, e, churn_s) for n, (b, e) in canaries.items()]
    rows = []
    for pinned in (True, False):
        for name in configs:
            runs_ = tp[(name, pinned)]
            rows.append({"name": name, "pinned": pinned, "runs": runs_,
                         "median": stats.medians(runs_, ("rate", "cpu_us"))})
    return {"machine": {"cpus": os.cpu_count(), "cpu": proc.cpu_model(), "kernel": os.uname().release,
                        "load_before": load_before, "load_after": proc.loadavg(1)},
            "settings": s, "throughput": rows,
            "rss": {"names": list(rss), "samples": rss, "both_at_once": bool(before)},
            "churn": churns, "summary": summarise(rows, rss, churns, long_s)}


def summarise(rows, rss, churns, long_s):
    med = {(r["name"], r["pinned"]): r["median"] for r in rows}
    ratios = []
    for name in [n for n, p in med if p and n != "release"]:
        for pinned, goal in ((True, 0.5), (False, 0.8)):
            ratios.append({"name": name, "pinned": pinned,
                           "rate": stats.ratio(med[(name, pinned)]["rate"], med[("release", pinned)]["rate"]),
                           "by_cpu": stats.ratio(med[("release", pinned)]["cpu_us"], med[(name, pinned)]["cpu_us"]),
                           "goal": goal if name == "canary" else None})
    flatness = []
    for name, samples in rss.items():
        second = stats.mean_between(samples, 60, 120)
        last = stats.mean_between(samples, long_s - 60, long_s)
        if second and last:
            flatness.append({"name": name, "second_minute_kib": second, "last_minute_kib": last,
                             "change": stats.change(second, last)})
    per_task = {c["name"]: stats.bytes_per_task_kib(c["idle_kib"], c["peak_kib"], c["requests"])
                for c in churns}
    return {"ratios": ratios, "flatness": flatness, "churn_kib_per_task": per_task}


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def body(d):
    """From the machine line on: the page's body and the `canary` block of docs/benchmarks.md."""
    m, s, summary = d["machine"], d["settings"], d["summary"]
    out = [f"Machine: {m['cpus']} CPUs ({m['cpu']}), kernel {m['kernel']}; load average "
           f"{m['load_before']} before, {m['load_after']} after.", ""]
    w = out.append
    w("### Throughput of the victim route, canary / release")
    w("")
    w(f"`/api/orders/1`, `DEPENDENCY_MS=0`, wrk -t1 -c{s['connections']}, {s['duration_s']} s per run after a "
      f"{s['warmup_s']} s warm-up, fresh server per run, configurations alternated, median of {s['runs']}. "
      "Pinned: one worker on CPU 0, wrk on CPU 1. Unpinned: two workers, wrk and the console's "
      "thread share both CPUs (as in compose). The load average (1 min) at the start of each run "
      "is beside its rate: when other work shares the CPUs, req/s falls with it, while the "
      "server's CPU time per request (utime + stime of the whole process over the run, from "
      "/proc) moves much less, so its ratio is given too.")
    w("")
    w("| configuration | CPUs | req/s (median) | server CPU per request (median) | runs: req/s (load average) |")
    w("|---|---|---|---|---|")
    for row in d["throughput"]:
        runs = ", ".join(f"{r['rate'] / 1000:.1f} k ({r['load']})" for r in row["runs"])
        w(f"| {row['name']} | {'pinned' if row['pinned'] else 'unpinned'} | {row['median']['rate']:,.0f} | "
          f"{row['median']['cpu_us']:.1f} µs | {runs} |")
    w("")
    w("| ratio | req/s | release's CPU per request / this one's | goal (req/s) |")
    w("|---|---|---|---|")
    for r in summary["ratios"]:
        goal = "–" if r["goal"] is None else f"≥ {r['goal']}: {stats.verdict(r['rate'] >= r['goal'])}"
        w(f"| {r['name']} / release, {'pinned' if r['pinned'] else 'unpinned'} | {r['rate']:.2f} | "
          f"{r['by_cpu']:.2f} | {goal} |")
    w("")
    w("### Canary RSS under the lab's default load")
    w("")
    w(f"loadgen at 500 req/s of the victim on keep-alive connections for {s['long_s']} s, `WORKERS=1`, "
      "`DEPENDENCY_MS=5`, no tokio-console attached; VmRSS every 10 s"
      + (" (both binaries at once, each with its own loadgen)." if d["rss"]["both_at_once"] else "."))
    w("")
    names = d["rss"]["names"]
    w("| time | " + " | ".join(names) + " |")
    w("|---|" + "---|" * len(names))
    series = {n: dict((t, kib) for t, kib in d["rss"]["samples"][n]) for n in names}
    for t, _ in d["rss"]["samples"][names[0]]:
        if t % 30 == 0:
            w(f"| {t} s | " + " | ".join(mib(series[n][t]) for n in names) + " |")
    w("")
    w("| build | mean, second minute | mean, last minute | change | goal: within ±10 % |")
    w("|---|---|---|---|---|")
    for f in summary["flatness"]:
        w(f"| {f['name']} | {mib(f['second_minute_kib'])} | {mib(f['last_minute_kib'])} | "
          f"{f['change']:+.0%} | {stats.verdict(abs(f['change']) <= 0.10) if f['name'] == 'canary' else '–'} |")
    w("")
    w("### Connection churn")
    w("")
    w(f"`wrk -t1 -c8 -d{s['churn_s']}s -H 'Connection: close'` (one new connection, so one new task, per "
      "request), the service with one worker on CPU 0, wrk on CPU 1; stopped early past 3 GiB. "
      "Bytes per task: (peak − idle) / requests, every task of the run being still retained at "
      "its end when the retention is at least the run's length.")
    w("")
    w("| build | requests | idle | peak VmRSS | VmRSS 12 s after | bytes per task | load average | goal: peak ≤ 512 MiB |")
    w("|---|---|---|---|---|---|---|---|")
    for c in d["churn"]:
        goal = stats.verdict(c["peak_kib"] <= 512 * 1024) if c["name"] == "canary" else "–"
        w(f"| {c['name']}{' (stopped at 3 GiB)' if c['capped'] else ''} | {c['requests']} | "
          f"{mib(c['idle_kib'])} | {mib(c['peak_kib'])} | {mib(c['after_kib'])} | "
          f"{summary['churn_kib_per_task'][c['name']]:.1f} KiB | {c['load']} | {goal} |")
    return "\n".join(out)


def render(d):
    return ("# The canary against the release build\n\n"
            "Written by `python3 -m bench canary` from `docs/bench/canary.json` (the whole file; "
            "do not edit by hand).\n\n" + body(d) + "\n")


def add_arguments(parser):
    parser.add_argument("--before", help="an older canary binary to measure beside this one")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8, help="seconds measured per run")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--long", type=int, default=300, help="seconds of the RSS run (a multiple of 10)")
    parser.add_argument("--churn", type=int, default=10, help="seconds of connection churn")


def run(args, store):
    binaries = proc.build("service", "canary", "loadgen", skip=args.no_build)
    return measure(binaries, args.before, args.runs, args.duration, args.warmup, args.connections,
                   args.long, args.churn)
