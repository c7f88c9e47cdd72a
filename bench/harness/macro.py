"""What the lab's observability costs a real request, and what its watchdog and its bug cost
(issues 8, 9 and 10): the full suite behind docs/benchmarks.md.

Throughput: each configuration runs fresh, one worker pinned to CPU 0, wrk pinned to CPU 1,
the victim route with `DEPENDENCY_MS=0`, a warm-up discarded, configurations alternated round
by round, medians kept; server CPU per request from /proc over the measured window. Then the
watchdog's detection latency, memory (idle, 10 000 held connections, the canary over a long
run, connection churn), the lab's reproduction (loadgen, bug against fix), criterion's
micro-benchmarks and the wiring comparison; unless skipped, the canary, stacks and soak
benchmarks run too and write their own JSON. Run it on a quiet machine: the load average and
running builds are recorded with the results.
"""

import glob
import http.client
import json
import os
import platform
import resource
import shutil
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.harness import canary, proc, soak, stacks, stats, wiring

BLOCKS = ("macro", "wiring", "commands")
SUITE = ("micro", "wiring", "canary", "stacks", "soak")
BASE = {"WORKERS": "1", "DEPENDENCY_MS": "0", "RUST_LOG": "info", "INSTANCE": "bench"}
# (name, build, settings, what it is)
CONFIGS = [
    ("off", "service", {"RUST_LOG": "off"}, "release, `RUST_LOG=off`"),
    ("info-stdout", "service", {}, "release, `RUST_LOG=info`, JSON to stdout (→ /dev/null)"),
    ("info-files", "service", {"LOG_DIR": "@tmp"}, "release, `RUST_LOG=info`, JSON to stdout (→ /dev/null) and rolling files (`LOG_DIR`)"),
    ("canary", "canary", {}, "canary (`--features console`), `RUST_LOG=info`, stdout → /dev/null"),
    ("watchdog-off", "service", {"LONG_POLL_MS": "0"}, "release, `RUST_LOG=info`, `LONG_POLL_MS=0` (watchdog off)"),
]
# (label, numerator, denominator, goal)
RATIOS = [
    ("info JSON / off", "info-stdout", "off", 0.85),
    ("rolling files / off", "info-files", "off", None),
    ("canary / release (both info; issue 18's goal)", "canary", "info-stdout", 0.5),
    ("watchdog on / off (both info)", "info-stdout", "watchdog-off", 0.97),
]
CHURN = [
    ("release", "service", {}, "release"),
    ("canary", "canary", {}, "canary (console, its defaults: retention 10 s)"),
    ("canary-retention-2s", "canary", {"TOKIO_CONSOLE_RETENTION": "2s"}, "canary, `TOKIO_CONSOLE_RETENTION=2s`"),
]
THRESHOLD_MS = 40
CRATES = ["actix-web", "actix-http", "tokio", "tracing", "tracing-subscriber", "tracing-appender",
          "tracing-actix-web", "console-subscriber", "criterion"]
# `service/benches/telemetry.rs`: (id, what, goal in ns)
MICRO_ROWS = [
    ("event/filtered_out/static_info", "`debug!` rejected by `RUST_LOG=info`", 10),
    ("event/filtered_out/span_directive", "`debug!` rejected by `info,[cpu_inline]=debug` (span-based; a variant, not the default)", None),
    ("event/emitted/no_span", "`info!` with 3 fields → JSON → non-blocking writer → sink", 1000),
    ("event/emitted/in_request_span", "the same inside the request span (span fields in the line)", 1000),
    ("span/enter_exit", "enter + exit the request span (one poll); only the JSON layer tracks it", None),
    ("span/create_enter_exit_close", "the request span's whole life: create, enter, exit, close (no close line: the access line reports the request)", None),
    ("poll/enter_exit/without_watchdog", "enter + exit of a handler's span, JSON layer only", None),
    ("poll/enter_exit/with_watchdog", "enter + exit of a handler's span, JSON layer + watchdog", None),
    ("poll/enter_exit/watchdog_only", "enter + exit of a handler's span, registry + watchdog", None),
    ("poll/request_frame", "the watchdog's bookkeeping for one poll of a request (reported by the middleware)", None),
]
# `service/benches/request.rs`: one whole request through the real app, in process.
REQUEST_ROWS = [
    ("lab/no_request_tracing", "the lab's app, `REQUEST_TRACING=false`, watchdog off: the baseline"),
    ("lab/off", "the lab's wiring, `RUST_LOG=off` (watchdog on)"),
    ("lab/info", "the lab's wiring, `RUST_LOG=info`: one JSON access line"),
    ("article/off", "the article's wiring, `RUST_LOG=off`"),
    ("article/info", "the article's wiring, `RUST_LOG=info`: one JSON line from the handler"),
]


def env(settings, work):
    e = {**BASE, "TOKIO_CONSOLE_BIND": f"127.0.0.1:{proc.free_port()}", **settings}
    return {k: str(work / "logs") if v == "@tmp" else v for k, v in e.items()}


def throughput(binaries, s, work):
    def one(name):
        _, build, settings, _ = next(c for c in CONFIGS if c[0] == name)
        shutil.rmtree(work / "logs", ignore_errors=True)
        with proc.Server(binaries[build], env(settings, work), cpu=proc.SERVER_CPU) as server:
            r = proc.measured_wrk(server, s["duration_s"], s["warmup_s"], s["connections"])
        proc.log(f"{name}: {r['rate']:.0f} req/s, p99 {r['p99_ms']:.3f} ms, {r['cpu_us']:.2f} µs CPU/request")
        return {"rps": r["rate"], "p99_ms": r["p99_ms"], "cpu_us": r["cpu_us"], "errors": r["errors"]}

    runs = stats.alternate(s["runs"], [c[0] for c in CONFIGS], one)
    rows = [{"name": n, "label": label, "runs": runs[n],
             "median": stats.medians(runs[n], ("rps", "p99_ms", "cpu_us")),
             "errors": sum(r["errors"] for r in runs[n])} for n, _, _, label in CONFIGS]
    med = {r["name"]: r["median"]["rps"] for r in rows}
    ratios = [{"label": label, "value": stats.ratio(med[a], med[b]), "goal": goal}
              for label, a, b, goal in RATIOS]
    return rows, ratios


def detection(binary, work):
    """The block starts when /cpu/inline logs `burning cpu` (just before its loop); the
    watchdog's first `worker blocked` line for that request id says when it was noticed."""
    log_path = work / "watchdog.jsonl"
    with open(log_path, "w") as out:
        with proc.Server(binary, env({"LONG_POLL_MS": str(THRESHOLD_MS)}, work), cpu=proc.SERVER_CPU,
                         stdout=out) as server:
            for i in range(1, 11):
                c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
                c.request("GET", "/cpu/inline?ms=300", headers={"x-request-id": f"detect-{i}"})
                assert c.getresponse().status == 200
                c.close()
    ts = lambda line: datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()
    start, seen = {}, {}
    for raw in open(log_path):
        line = json.loads(raw)
        rid = (line.get("span") or {}).get("request_id") or line["fields"].get("request_id")
        msg = line["fields"].get("message")
        if msg == "burning cpu":
            start[rid] = ts(line)
        elif msg == "worker blocked" and rid not in seen:
            seen[rid] = (ts(line), line["fields"].get("elapsed_ms"), line["fields"].get("threshold_ms"))
    blocks = []
    for rid in sorted(start, key=lambda r: int(r.split("-")[1])):
        t, elapsed, threshold = seen.get(rid, (None, None, None))
        blocks.append({"id": rid, "latency_ms": None if t is None else round((t - start[rid]) * 1000, 1),
                       "elapsed_ms": elapsed, "threshold_ms": threshold})
    found = [b["latency_ms"] for b in blocks if b["latency_ms"] is not None]
    return {"threshold_ms": THRESHOLD_MS, "blocks": blocks,
            "median_ms": stats.median(found) if found else None, "max_ms": max(found) if found else None}


def memory(binaries, s, work):
    with proc.Server(binaries["service"], env({}, work), cpu=proc.SERVER_CPU) as server:
        idle = server.rss_kib()
        hold = proc.wrk(server.url + proc.VICTIM, s["hold_s"], 10000, extra=("--timeout", "10s"))
        rss_10k, hwm_10k = server.rss_kib(), proc.status_kib(server.pid, "VmHWM")
    # The canary through a longer run at the lab's pace: RSS over time (console retention).
    canary_rss = []
    with proc.Server(binaries["canary"], env({}, work), cpu=proc.SERVER_CPU) as server:
        canary_rss.append([0, server.rss_kib()])
        p = proc.loadgen(binaries["loadgen"], server.url, ["--rate", "500", "--mix", "orders=1",
                         "--duration", f"{s['long_s']}s", "--rounds", "1"], work / "canary-long.json",
                         cpu=proc.CLIENT_CPU)
        started = time.monotonic()
        for step in range(1, 5):
            time.sleep(max(0, started + step * s["long_s"] / 4 - time.monotonic()))
            canary_rss.append([step * s["long_s"] // 4, server.rss_kib()])
        p.wait()
    churn = []
    for name, build, settings, label in CHURN:
        c = canary.churn(name, binaries[build], settings, s["churn_s"])
        churn.append({**c, "label": label})
    return {"idle_kib": idle,
            "hold": {"rps": hold["rate"], "p99_ms": hold["p99_ms"], "errors": hold["errors"],
                     "rss_kib": rss_10k, "hwm_kib": hwm_10k},
            "canary_rss": canary_rss, "churn": churn}


def reproduction(binaries, s, work):
    """The victim's p99 under the default scenario against the same with the fixed route; the
    service with its defaults (two workers, DEPENDENCY_MS=5, SLOW_DISK_MS=300), no pinning."""
    rows = []
    for mix, label in (("orders=99,config_sync=1", "orders=99,config_sync=1 (bug)"),
                       ("orders=99,config_async=1", "orders=99,config_async=1 (fix)")):
        with proc.Server(binaries["service"], {"INSTANCE": "bench"}) as server:
            out = work / "repro.json"
            proc.loadgen(binaries["loadgen"], server.url, ["--rate", "200", "--mix", mix, "--duration",
                         f"{s['repro_s']}s", "--rounds", "1"], out).wait()
        st = proc.route_stats(proc.report(out), "orders")
        lat = st["latency"]["corrected"]
        rows.append({"mix": label, "requests": st["requests"], "errors": st["errors"],
                     **{k: lat[k] for k in ("p50_ms", "p99_ms", "p99_9_ms", "max_ms")}})
    return {"rows": rows, "p99_ratio": stats.ratio(rows[0]["p99_ms"], rows[1]["p99_ms"])}


def micro():
    """criterion's mean and 95 % interval (ns) per benchmark id, run pinned to CPU 0."""
    for bench in ("telemetry", "request"):
        subprocess.run(["taskset", "-c", "0", "cargo", "bench", "-q", "-p", "service", "--bench", bench,
                        "--", "--noplot"], cwd=proc.ROOT, check=True, stdout=subprocess.DEVNULL)
    estimates = {}
    for path in glob.glob(str(proc.TARGET / "criterion" / "**" / "new" / "benchmark.json"), recursive=True):
        meta = json.loads(Path(path).read_text())
        e = json.loads((Path(path).parent / "estimates.json").read_text())["mean"]
        estimates[meta["full_id"]] = [e["point_estimate"], e["confidence_interval"]["lower_bound"],
                                      e["confidence_interval"]["upper_bound"]]
    return {"estimates": estimates, "derived": derived(estimates)}


def derived(m):
    """The watchdog's cost per poll and tracing's cost per request, from criterion's means."""
    out = {}
    if "poll/enter_exit/with_watchdog" in m and "poll/enter_exit/without_watchdog" in m:
        out["watchdog_poll_ns"] = m["poll/enter_exit/with_watchdog"][0] - m["poll/enter_exit/without_watchdog"][0]
    if all(k in m for k, _ in REQUEST_ROWS):
        mean = {k: m[k][0] for k, _ in REQUEST_ROWS}
        out["lab_off_ns"] = mean["lab/off"] - mean["lab/no_request_tracing"]
        out["lab_info_ns"] = mean["lab/info"] - mean["lab/off"]
        out["article_info_ns"] = mean["article/info"] - mean["article/off"]
        out["article_over_lab"] = out["article_info_ns"] / out["lab_info_ns"]
    return out


def machine(before, after):
    rev, dirty = proc.commit()
    wrk_v = proc.sh("wrk", "-v")
    return {"cpu": proc.cpu_model(), "nproc": os.cpu_count(), "memory": proc.mem_total(),
            "kernel": platform.release(), "load_before": before[0], "load_after": after[0],
            "busy_before": before[1], "busy_after": after[1], "rustc": proc.sh("rustc", "-V"),
            "wrk": wrk_v.splitlines()[0] if wrk_v else "wrk ?",
            "crates": [[c, proc.lock_version(c)] for c in CRATES], "commit": rev, "dirty": dirty}


def commands(s, skip):
    c, d, w = s["connections"], s["duration_s"], s["warmup_s"]
    out = ["cargo build --release -q -p service --bin service",
           "cargo build --release -q -p service --bin service --features console",
           "cargo build --release -q -p loadgen",
           "per run: env -i LISTEN_ADDR=127.0.0.1:PORT WORKERS=1 DEPENDENCY_MS=0 <settings> taskset -c 0 service >/dev/null",
           f"per run: taskset -c 1 wrk -t1 -c{c} -d{w}s (discarded), then taskset -c 1 wrk -t1 -c{c} -d{d}s --latency http://127.0.0.1:PORT/api/orders/1",
           f"detection: LONG_POLL_MS={THRESHOLD_MS} service; 10 x GET /cpu/inline?ms=300 with x-request-id detect-N; compare the 'burning cpu' and first 'worker blocked' timestamps of each id",
           f"memory: RUST_LOG=info service; VmRSS idle, then taskset -c 1 wrk -t1 -c10000 -d{s['hold_s']}s --timeout 10s --latency (ulimit -n 65536)",
           f"canary memory: service --features console (default retention); taskset -c 1 loadgen --rate 500 --mix orders=1 --duration {s['long_s']}s; VmRSS every {s['long_s'] // 4} s",
           f"churn: taskset -c 1 wrk -t1 -c8 -d{s['churn_s']}s -H 'Connection: close' http://127.0.0.1:PORT/api/orders/1 against release, canary, canary with TOKIO_CONSOLE_RETENTION=2s; peak VmRSS, and VmRSS 12 s after the load",
           f"reproduction: service (defaults: WORKERS=nproc, DEPENDENCY_MS=5, SLOW_DISK_MS=300); loadgen http://127.0.0.1:PORT --rate 200 --mix orders=99,config_sync=1 --duration {s['repro_s']}s --rounds 1 --output bug.json; the same with --mix orders=99,config_async=1"]
    if "micro" not in skip:
        out += ["taskset -c 0 cargo bench -q -p service --bench telemetry -- --noplot",
                "taskset -c 0 cargo bench -q -p service --bench request -- --noplot"]
    out += [f"python3 -m bench {b} --no-build" for b in ("wiring", "canary", "stacks", "soak") if b not in skip]
    return out


def ns(value):
    return f"{value / 1000:.2f} µs" if value >= 1000 else f"{value:.2f} ns"


def render_macro(d):
    """The `macro` block: machine, throughput, detection, memory, reproduction, criterion."""
    m, s = d["machine"], d["settings"]
    md = []
    w = md.append
    w("## Machine and versions")
    w("")
    w(f"- CPU: {m['cpu']}, `nproc` = {m['nproc']}, memory {m['memory']}; kernel {m['kernel']}")
    w(f"- load average (1, 5, 15 min) before: {m['load_before']}; after: {m['load_after']}; "
      f"build processes running (cargo, rustc, docker builds) before: {m['busy_before']}, after: {m['busy_after']}")
    w(f"- {m['rustc']}; {m['wrk']}")
    w("- crates: " + "; ".join(f"{c} {v}" for c, v in m["crates"]))
    w(f"- commit: `{m['commit']}`" + (" (with uncommitted changes)" if m["dirty"] else ""))
    w(f"- settings: RUNS={s['runs']} DURATION={s['duration_s']} s WARMUP={s['warmup_s']} s "
      f"CONNECTIONS={s['connections']} HOLD={s['hold_s']} s LONG={s['long_s']} s CHURN={s['churn_s']} s REPRO={s['repro_s']} s")
    w("")
    w("## Throughput of the victim route")
    w("")
    w(f"`/api/orders/1`, `DEPENDENCY_MS=0`, one worker on CPU 0, `wrk -t1 -c{s['connections']}` on CPU 1, "
      f"{s['duration_s']} s per run after a {s['warmup_s']} s warm-up, fresh server per run, configurations "
      f"alternated, median of {s['runs']}. CPU per request: the whole service process (writer threads included).")
    w("")
    w("| configuration | req/s | p99 | server CPU per request | errors (all runs) | runs (req/s) |")
    w("|---|---|---|---|---|---|")
    for row in d["throughput"]:
        med = row["median"]
        each = ", ".join(f"{r['rps'] / 1000:.1f} k" for r in row["runs"])
        w(f"| {row['label']} | {med['rps'] / 1000:.1f} k | {med['p99_ms']:.2f} ms | {med['cpu_us']:.2f} µs | "
          f"{row['errors']} | {each} |")
    w("")
    w("| ratio (req/s) | value | goal | |")
    w("|---|---|---|---|")
    for r in d["ratios"]:
        if r["goal"] is None:
            w(f"| {r['label']} | {r['value']:.2f} | – | |")
        else:
            w(f"| {r['label']} | {r['value']:.2f} | ≥ {r['goal']} | {stats.verdict(r['value'] >= r['goal'])} |")
    det = d["detection"]
    threshold = det["threshold_ms"]
    w("")
    w("## Blocking watchdog: time to the first warning")
    w("")
    w(f"`LONG_POLL_MS={threshold}`. Ten requests `GET /cpu/inline?ms=300` (the CPU-bound bug) with known ids. "
      "The block starts at the handler's `burning cpu` line (logged just before the loop); the "
      "watchdog's first `worker blocked` line for the same `request_id` ends the interval; "
      "`elapsed_ms` is the watchdog's own figure (time since the poll began). "
      f"Goal: ≤ threshold + 10 ms = {threshold + 10} ms.")
    w("")
    w("| request | block start → warning | elapsed_ms in the warning | threshold_ms |")
    w("|---|---|---|---|")
    for b in det["blocks"]:
        if b["latency_ms"] is None:
            w(f"| {b['id']} | none ms | - | - |")
        else:
            w(f"| {b['id']} | {b['latency_ms']:.1f} ms | {b['elapsed_ms']} | {b['threshold_ms']} |")
    found = [b for b in det["blocks"] if b["latency_ms"] is not None]
    if found:
        missing = len(det["blocks"]) - len(found)
        w("")
        w(f"Median {det['median_ms']:.1f} ms, max {det['max_ms']:.1f} ms: "
          f"goal {stats.verdict(det['max_ms'] <= threshold + 10 and not missing)}"
          + ("" if not missing else f" ({missing} blocks never warned)") + ".")
    mem = d["memory"]
    hold = mem["hold"]
    w("")
    w("## Memory")
    w("")
    w("| what | VmRSS |")
    w("|---|---|")
    w(f"| release, idle after start | {mem['idle_kib'] / 1024:.1f} MiB |")
    w(f"| release, under 10 000 keep-alive connections (`wrk -c10000`, {s['hold_s']} s: {hold['rps'] / 1000:.1f} k req/s, "
      f"p99 {hold['p99_ms']:.1f} ms, {hold['errors']} errors) | {hold['rss_kib'] / 1024:.1f} MiB (peak {hold['hwm_kib'] / 1024:.1f} MiB) |")
    for seconds, kib in mem["canary_rss"]:
        w(f"| canary after {seconds} s of loadgen at 500 req/s (keep-alive) | {kib / 1024:.1f} MiB |")
    w("")
    w(f"Connection churn: `wrk -c8 -H 'Connection: close'` for {s['churn_s']} s, a new connection (so a new "
      "tokio task) per request; stopped early if RSS passes 3 GiB.")
    w("")
    w("| build | requests | peak VmRSS during | VmRSS 12 s after | |")
    w("|---|---|---|---|---|")
    for c in mem["churn"]:
        w(f"| {c['label']} | {c['requests']} | {c['peak_kib'] / 1024:.1f} MiB | {c['after_kib'] / 1024:.1f} MiB | "
          f"{'capped at 3 GiB' if c['capped'] else ''} |")
    w("")
    w("The fault test `ten_thousand_held_connections_get_no_errors_and_bounded_memory` "
      "(`service/tests/faults/connections.rs`) also prints the RSS of a debug build holding 10 000 "
      "connections with a request in flight on each.")
    w("")
    w("## The lab's reproduction")
    w("")
    w(f"Victim p99 (CO-corrected, from loadgen's report) at 200 req/s for {s['repro_s']} s, one run each, "
      "the service with its defaults (two workers, `DEPENDENCY_MS=5`, `SLOW_DISK_MS=300`):")
    w("")
    w("| mix | victim requests | errors | p50 | p99 | p99.9 | max |")
    w("|---|---|---|---|---|---|---|")
    rep = d["reproduction"]
    for r in rep["rows"]:
        w(f"| {r['mix']} | {r['requests']} | {r['errors']} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | "
          f"{r['p99_9_ms']:.1f} ms | {r['max_ms']:.1f} ms |")
    w("")
    w(f"Ratio of the victim's p99, bug / fix: **{rep['p99_ratio']:.1f}×**.")
    w("")
    w("## Micro-benchmarks (criterion)")
    w("")
    if not d["micro"]:
        w("Not run this time (`--skip micro`).")
        return "\n".join(md)
    est, der = d["micro"]["estimates"], d["micro"]["derived"]
    w("`service/benches/telemetry.rs`, built from `telemetry::json_layer` and `watchdog::layer` "
      "with a lossless non-blocking writer into `io::sink()`, the whole process pinned to CPU 0 "
      "(so the writer thread shares the CPU, as in a one-worker container). Mean and its 95 % interval.")
    w("")
    w("| benchmark | what | mean | 95 % interval | goal |")
    w("|---|---|---|---|---|")
    for bench_id, what, goal in MICRO_ROWS:
        if bench_id in est:
            mean, lo, hi = est[bench_id]
            g = "–" if goal is None else f"≤ {ns(goal)}: {stats.verdict(mean <= goal)}"
            w(f"| `{bench_id}` | {what} | {ns(mean)} | {ns(lo)} – {ns(hi)} | {g} |")
    if "watchdog_poll_ns" in der:
        w("")
        w(f"The watchdog's cost per poll (enter + exit): {ns(der['watchdog_poll_ns'])} "
          f"({ns(est['poll/enter_exit/with_watchdog'][0])} with, {ns(est['poll/enter_exit/without_watchdog'][0])} without).")
    if "lab_off_ns" in der:
        w("")
        w("### Per request, in process (criterion)")
        w("")
        w("`service/benches/request.rs`: `GET /api/orders/1` (`DEPENDENCY_MS=0`) through the real "
          "actix-web app with `actix_web::test`, no sockets, so the kernel's TCP work (most of what "
          "a request costs over loopback here, and bimodal; see the gaps below) does not drown the "
          "tracing cost. Lab: `startup::app` with `telemetry::request_layers`, exactly what the "
          "binary installs; article: `service/benches/article/wiring.rs`. Pinned to CPU 0, the "
          "log writer thread included.")
        w("")
        w("| case | what | mean | 95 % interval |")
        w("|---|---|---|---|")
        for bench_id, what in REQUEST_ROWS:
            mean, lo, hi = est[bench_id]
            w(f"| `{bench_id}` | {what} | {ns(mean)} | {ns(lo)} – {ns(hi)} |")
        w("")
        w(f"Tracing's cost per request: the lab {ns(der['lab_off_ns'])} "
          f"with nothing emitted and {ns(der['lab_info_ns'])} more for the JSON access "
          f"line; the article {ns(der['article_info_ns'])} for its one line, "
          f"**{der['article_over_lab']:.0f}×** the lab's.")
    return "\n".join(md)


def render_commands(d):
    return "\n".join(["## Commands", "", "```", *d["commands"], "```"])


def blocks(d):
    return {"macro": render_macro(d), "commands": render_commands(d),
            "wiring": wiring.body(d["wiring"]) if d["wiring"] else "Not run this time (`--skip wiring`)."}


def add_arguments(parser):
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds discarded before each run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--hold", type=int, default=15, help="seconds under 10 000 connections")
    parser.add_argument("--long", type=int, default=120, help="seconds of the canary's long run")
    parser.add_argument("--churn", type=int, default=10, help="seconds of connection churn per build")
    parser.add_argument("--repro", type=int, default=30, help="seconds of each loadgen run")
    parser.add_argument("--skip", default="", help=f"comma-separated parts to skip: {', '.join(SUITE)}")


def run(args, store):
    """The suite; canary, stacks and soak save their own JSON through `store` as they finish."""
    skip = {p for p in args.skip.split(",") if p}
    proc.require("wrk", "taskset")
    # 10 000 held connections: raise the descriptor limit (children inherit it).
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    s = {"runs": args.runs, "duration_s": args.duration, "warmup_s": args.warmup,
         "connections": args.connections, "hold_s": args.hold, "long_s": args.long,
         "churn_s": args.churn, "repro_s": args.repro}
    binaries = proc.build("service", "canary", "loadgen", "article", skip=args.no_build)
    work = Path(tempfile.mkdtemp(prefix="macro-"))
    before = (proc.loadavg(), proc.busy())
    rows, ratios = throughput(binaries, s, work)
    det = detection(binaries["service"], work)
    mem = memory(binaries, s, work)
    rep = reproduction(binaries, s, work)
    after = (proc.loadavg(), proc.busy())
    data = {"machine": machine(before, after), "settings": s, "throughput": rows, "ratios": ratios,
            "detection": det, "memory": mem, "reproduction": rep,
            "micro": None if "micro" in skip else micro(),
            "wiring": None if "wiring" in skip else wiring.measure(binaries),
            "commands": commands(s, skip)}
    for name, module in (("canary", canary), ("stacks", stacks), ("soak", soak)):
        if name not in skip:
            sub = proc.build(*(("service-nofp",) if name == "stacks" else ()), skip=args.no_build)
            store.save(name, module.measure({**binaries, **sub}))
    return data
