"""What the lab's tracing wiring costs per request over TCP, next to the article's (issue 10).

Each configuration runs fresh: one worker pinned to CPU 0, wrk pinned to CPU 1, the victim
route with zero dependency latency, a warm-up discarded, configurations alternated, the median
of the runs kept. Server CPU per request: utime + stime of the whole process (the log writer
included) from /proc over the measured window. `macro` runs the same measurement as part of
the full suite.
"""

import os
import shutil
import sys
import tempfile

from bench.harness import proc, stats

PAGE = "wiring-benchmark.md"
BASE = {"WORKERS": "1", "DEPENDENCY_MS": "0"}
# (name, binary, environment, what it is); "@tmp" is a fresh directory per run.
CONFIGS = [
    ("article, RUST_LOG=off", "article", {"RUST_LOG": "off"}, "the article's wiring, nothing emitted"),
    ("article, info JSON", "article", {"RUST_LOG": "info"}, "the article's wiring, one JSON line per request"),
    ("lab, no request tracing", "service", {"RUST_LOG": "off", "REQUEST_TRACING": "false", "LONG_POLL_MS": "0"}, "baseline: no root span, ids, access line or watchdog"),
    ("lab, RUST_LOG=off, no watchdog", "service", {"RUST_LOG": "off", "LONG_POLL_MS": "0"}, "request tracing without the watchdog, nothing emitted"),
    ("lab, RUST_LOG=off", "service", {"RUST_LOG": "off"}, "the lab's wiring (watchdog on), nothing emitted"),
    ("lab, info JSON", "service", {"RUST_LOG": "info"}, "the lab's wiring: one access line per request"),
    ("lab, info JSON, files too", "service", {"RUST_LOG": "info", "LOG_DIR": "@tmp"}, "as above, also to rolling files"),
]
KEYS = ("rate", "p99_ms", "cpu_us", "user_us")


def run_once(binary, env, settings):
    tmp = None
    if "@tmp" in env.values():
        tmp = tempfile.mkdtemp(prefix="wiring-logs-")
        env = {k: tmp if v == "@tmp" else v for k, v in env.items()}
    try:
        with proc.Server(binary, {**BASE, **env}, cpu=proc.SERVER_CPU) as server:
            r = proc.measured_wrk(server, settings["duration_s"], settings["warmup_s"],
                                  settings["connections"], check=True)
        return {k: r[k] for k in KEYS}
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def measure(binaries, runs=5, duration=5, warmup=2, connections=32):
    """The wiring comparison's raw results and medians (the JSON of docs/bench/wiring.json)."""
    proc.require("wrk", "taskset")
    settings = {"runs": runs, "duration_s": duration, "warmup_s": warmup, "connections": connections}
    configs = {name: (binaries[kind], env) for name, kind, env, _ in CONFIGS}
    load_before = proc.loadavg(1)

    def one(name):
        result = run_once(*configs[name], settings)
        print(f"wiring {name}: {result}", file=sys.stderr)
        return result

    results = stats.alternate(runs, list(configs), one)
    load_after = proc.loadavg(1)
    rows = []
    for name, _, _, what in CONFIGS:
        rows.append({"name": name, "what": what, "median": stats.medians(results[name], KEYS),
                     "runs": results[name]})
    return {"machine": {"cpus": os.cpu_count(), "cpu": proc.cpu_model(),
                        "kernel": os.uname().release,
                        "load_before": load_before, "load_after": load_after},
            "settings": settings, "configs": rows, "summary": summarise(rows)}


def summarise(rows):
    """Ratios (with goals) and the extra CPU per request of `info` over `off`."""
    m = {row["name"]: row["median"] for row in rows}
    r = lambda a, b, key="rate": stats.ratio(m[a][key], m[b][key])
    return {
        "ratios": [
            {"label": "lab info / lab off, req/s", "value": r("lab, info JSON", "lab, RUST_LOG=off"), "goal": [">=", 0.85]},
            {"label": "lab off / no request tracing, req/s", "value": r("lab, RUST_LOG=off", "lab, no request tracing"), "goal": [">=", 0.95]},
            {"label": "lab p99 info / p99 off", "value": r("lab, info JSON", "lab, RUST_LOG=off", "p99_ms"), "goal": ["<=", 1.2]},
            {"label": "article info / article off, req/s", "value": r("article, info JSON", "article, RUST_LOG=off"), "goal": None},
            {"label": "lab info / article info, req/s", "value": r("lab, info JSON", "article, info JSON"), "goal": None},
        ],
        "extra_cpu_us": {
            "lab": m["lab, info JSON"]["cpu_us"] - m["lab, RUST_LOG=off"]["cpu_us"],
            "article": m["article, info JSON"]["cpu_us"] - m["article, RUST_LOG=off"]["cpu_us"],
        },
    }


def body(d):
    """From the machine line to the last sentence: the page's body, and the `wiring` block of
    docs/benchmarks.md."""
    m, s = d["machine"], d["settings"]
    lines = [f"Machine: {m['cpus']} CPUs ({m['cpu']}), kernel {m['kernel']}; load average "
             f"{m['load_before']} before, {m['load_after']} after; {s['runs']} runs of "
             f"{s['duration_s']} s, wrk -t1 -c{s['connections']}, medians.", "",
             "| configuration | req/s | p99 | server CPU per request | of which user space | runs (req/s) | what it is |",
             "|---|---|---|---|---|---|---|"]
    for row in d["configs"]:
        med = row["median"]
        runs = ", ".join(f"{r['rate'] / 1000:.1f} k" for r in row["runs"])
        lines.append(f"| {row['name']} | {med['rate']:,.0f} | {med['p99_ms'] * 1000:.0f} µs | "
                     f"{med['cpu_us']:.2f} µs | {med['user_us']:.2f} µs | {runs} | {row['what']} |")
    lines += ["", "| ratio | value | goal |", "|---|---|---|"]
    for ratio in d["summary"]["ratios"]:
        goal = ratio["goal"]
        if goal is None:
            text = "–"
        else:
            op, bound = goal
            met = ratio["value"] >= bound if op == ">=" else ratio["value"] <= bound
            text = f"{'≥' if op == '>=' else '≤'} {bound}: {stats.verdict(met)}"
        lines.append(f"| {ratio['label']} | {ratio['value']:.2f} | {text} |")
    extra = d["summary"]["extra_cpu_us"]
    lines += ["", f"Extra server CPU per request for `info` logging over `off`: lab "
              f"{extra['lab']:.2f} µs, article {extra['article']:.2f} µs."]
    return "\n".join(lines)


def render(d):
    return ("# The lab's tracing wiring against the article's\n\n"
            "Written by `python3 -m bench wiring` from `docs/bench/wiring.json` (the whole file; "
            "do not edit by hand). One actix worker pinned to CPU 0, wrk pinned to CPU 1, "
            "`GET /api/orders/1` with `DEPENDENCY_MS=0`, JSON to stdout (`/dev/null`), fresh "
            "server per run, warm-up discarded, runs alternated.\n\n" + body(d) + "\n")


def add_arguments(parser):
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5, help="seconds measured per run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds discarded before each run")
    parser.add_argument("--connections", type=int, default=32)


def run(args, store):
    binaries = proc.build("service", "article", skip=args.no_build)
    return measure(binaries, args.runs, args.duration, args.warmup, args.connections)
