#!/usr/bin/env python3
"""Writes docs/benchmarks.md from what bench/macro.sh measured (its WORK directory and
environment). Not meant to be run by hand: bench/macro.sh calls it last."""

import glob
import json
import os
import platform
import re
import statistics
import subprocess
from pathlib import Path

ENV = os.environ
WORK = Path(ENV["WORK"])
ROOT = Path(__file__).resolve().parent.parent


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "?"


def lock_version(name):
    text = (ROOT / "Cargo.lock").read_text()
    found = re.findall(r'name = "%s"\nversion = "([^"]+)"' % re.escape(name), text)
    return ", ".join(found) or "-"


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def mem_total_gib():
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal"):
            return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "?"


def verdict(ok):
    return "met" if ok else "**not met**"


# --- throughput ---------------------------------------------------------------------------------
runs = {}
for line in (WORK / "throughput.txt").read_text().split("\n"):
    if line.strip():
        name, _round, rps, p99, cpu, bad = line.split()
        runs.setdefault(name, []).append((float(rps), float(p99), float(cpu), int(bad)))
median = {
    name: tuple(statistics.median(r[i] for r in rs) for i in range(3)) + (sum(r[3] for r in rs),)
    for name, rs in runs.items()
}
describe = {
    "off": "release, `RUST_LOG=off`",
    "info-stdout": "release, `RUST_LOG=info`, JSON to stdout (→ /dev/null)",
    "info-files": "release, `RUST_LOG=info`, JSON to stdout (→ /dev/null) and rolling files (`LOG_DIR`)",
    "canary": "canary (`--features console`), `RUST_LOG=info`, stdout → /dev/null",
    "watchdog-off": "release, `RUST_LOG=info`, `LONG_POLL_MS=0` (watchdog off)",
}


def ratio(a, b):
    return median[a][0] / median[b][0] if a in median and b in median else float("nan")


ratios = [
    ("info JSON / off", ratio("info-stdout", "off"), 0.85),
    ("rolling files / off", ratio("info-files", "off"), None),
    ("canary / release (both info; issue 18's goal)", ratio("canary", "info-stdout"), 0.5),
    ("watchdog on / off (both info)", ratio("info-stdout", "watchdog-off"), 0.97),
]

# --- detection ----------------------------------------------------------------------------------
detections = []
for line in (WORK / "detection.txt").read_text().split("\n"):
    if line.strip():
        rid, latency, elapsed, threshold = line.split()
        detections.append((rid, latency, elapsed, threshold))
found = [float(d[1]) for d in detections if d[1] != "none"]
threshold_ms = 40

# --- memory -------------------------------------------------------------------------------------
canary_rss = [line.split() for line in (WORK / "canary-rss.txt").read_text().split("\n") if line.strip()]


# --- reproduction -------------------------------------------------------------------------------
def victim(path):
    report = json.loads(Path(path).read_text().split("\n")[0])
    for row in report["routes"]:
        if row["route"] == "orders":
            stats = row["stats"]
            return stats["latency"]["corrected"], stats["requests"], stats["errors"], report
    raise SystemExit(f"no orders row in {path}")


bug, bug_n, bug_err, bug_report = victim(WORK / "repro-bug.json")
fix, fix_n, fix_err, _ = victim(WORK / "repro-fix.json")

# --- criterion ----------------------------------------------------------------------------------
micro = {}
for bench in glob.glob(str(Path(ENV["TARGET"]) / "criterion" / "**" / "new" / "benchmark.json"), recursive=True):
    meta = json.loads(Path(bench).read_text())
    estimates = json.loads((Path(bench).parent / "estimates.json").read_text())
    micro[meta["full_id"]] = (
        estimates["mean"]["point_estimate"],
        estimates["mean"]["confidence_interval"]["lower_bound"],
        estimates["mean"]["confidence_interval"]["upper_bound"],
    )


def ns(value):
    return f"{value / 1000:.2f} µs" if value >= 1000 else f"{value:.2f} ns"


micro_rows = [
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
request_rows = [
    ("lab/no_request_tracing", "the lab's app, `REQUEST_TRACING=false`, watchdog off: the baseline"),
    ("lab/off", "the lab's wiring, `RUST_LOG=off` (watchdog on)"),
    ("lab/info", "the lab's wiring, `RUST_LOG=info`: one JSON access line"),
    ("article/off", "the article's wiring, `RUST_LOG=off`"),
    ("article/info", "the article's wiring, `RUST_LOG=info`: one JSON line from the handler"),
]

# --- the document -------------------------------------------------------------------------------
md = []
w = md.append
w("# Benchmarks: what the lab's observability costs")
w("")
w("Generated by `bench/macro.sh` (issues 8, 9 and 10); rerun it to reproduce every number here. "
  "Absolute numbers are this machine's; compare the ratios. The reference figures the goals come "
  "from are in the shared `measured-anchors` notes (the article's wiring cost 0.45× of `RUST_LOG=off`).")
w("")
w("## Machine and versions")
w("")
w(f"- CPU: {cpu_model()}, `nproc` = {os.cpu_count()}, memory {mem_total_gib()}; kernel {platform.release()}")
w(f"- load average (1, 5, 15 min) before: {ENV['LOAD_BEFORE']}; after: {ENV['LOAD_AFTER']}; "
  f"build processes running (cargo, rustc, docker builds) before: {ENV['BUSY_BEFORE']}, after: {ENV['BUSY_AFTER']}")
w(f"- {sh('rustc', '-V')}; {sh('wrk', '-v').splitlines()[0] if sh('wrk', '-v') else 'wrk ?'}")
w("- crates: " + "; ".join(f"{c} {lock_version(c)}" for c in [
    "actix-web", "actix-http", "tokio", "tracing", "tracing-subscriber", "tracing-appender",
    "tracing-actix-web", "console-subscriber", "criterion"]))
w(f"- commit: `{sh('git', '-C', str(ROOT), 'rev-parse', '--short', 'HEAD')}`"
  + (" (with uncommitted changes)" if sh('git', '-C', str(ROOT), 'status', '--porcelain', '--untracked-files=no') else ""))
w(f"- settings: RUNS={ENV['RUNS']} DURATION={ENV['DURATION']} s WARMUP={ENV['WARMUP']} s "
  f"CONNECTIONS={ENV['CONNECTIONS']} HOLD={ENV['HOLD']} s LONG={ENV['LONG']} s CHURN={ENV['CHURN']} s REPRO={ENV['REPRO']} s")
w("")
w("## Throughput of the victim route")
w("")
w(f"`/api/orders/1`, `DEPENDENCY_MS=0`, one worker on CPU 0, `wrk -t1 -c{ENV['CONNECTIONS']}` on CPU 1, "
  f"{ENV['DURATION']} s per run after a {ENV['WARMUP']} s warm-up, fresh server per run, configurations "
  f"alternated, median of {ENV['RUNS']}. CPU per request: the whole service process (writer threads included).")
w("")
w("| configuration | req/s | p99 | server CPU per request | errors (all runs) | runs (req/s) |")
w("|---|---|---|---|---|---|")
for name in ["off", "info-stdout", "info-files", "canary", "watchdog-off"]:
    if name in median:
        rps, p99, cpu, bad = median[name]
        each = ", ".join(f"{r[0] / 1000:.1f} k" for r in runs[name])
        w(f"| {describe[name]} | {rps / 1000:.1f} k | {p99:.2f} ms | {cpu:.2f} µs | {bad} | {each} |")
w("")
w("| ratio (req/s) | value | goal | |")
w("|---|---|---|---|")
for label, value, goal in ratios:
    if goal is None:
        w(f"| {label} | {value:.2f} | – | |")
    else:
        w(f"| {label} | {value:.2f} | ≥ {goal} | {verdict(value >= goal)} |")
w("")
w("## Blocking watchdog: time to the first warning")
w("")
w("`LONG_POLL_MS=40`. Ten requests `GET /cpu/inline?ms=300` (the CPU-bound bug) with known ids. "
  "The block starts at the handler's `burning cpu` line (logged just before the loop); the "
  "watchdog's first `worker blocked` line for the same `request_id` ends the interval; "
  "`elapsed_ms` is the watchdog's own figure (time since the poll began). "
  f"Goal: ≤ threshold + 10 ms = {threshold_ms + 10} ms.")
w("")
w("| request | block start → warning | elapsed_ms in the warning | threshold_ms |")
w("|---|---|---|---|")
for rid, latency, elapsed, threshold in detections:
    w(f"| {rid} | {latency} ms | {elapsed} | {threshold} |")
if found:
    w("")
    w(f"Median {statistics.median(found):.1f} ms, max {max(found):.1f} ms: "
      f"goal {verdict(max(found) <= threshold_ms + 10 and len(found) == len(detections))}"
      + ("" if len(found) == len(detections) else f" ({len(detections) - len(found)} blocks never warned)") + ".")
w("")
w("## Memory")
w("")
w(f"| what | VmRSS |")
w("|---|---|")
w(f"| release, idle after start | {int(ENV['RSS_IDLE']) / 1024:.1f} MiB |")
w(f"| release, under 10 000 keep-alive connections (`wrk -c10000`, {ENV['HOLD']} s: {float(ENV['HOLD_RPS']) / 1000:.1f} k req/s, p99 {float(ENV['HOLD_P99']):.1f} ms, {ENV['HOLD_BAD']} errors) | {int(ENV['RSS_10K']) / 1024:.1f} MiB (peak {int(ENV['HWM_10K']) / 1024:.1f} MiB) |")
for seconds, kib in canary_rss:
    w(f"| canary after {seconds} s of loadgen at 500 req/s (keep-alive) | {int(kib) / 1024:.1f} MiB |")
w("")
w(f"Connection churn: `wrk -c8 -H 'Connection: close'` for {ENV['CHURN']} s, a new connection (so a new "
  "tokio task) per request; stopped early if RSS passes 3 GiB.")
w("")
w("| build | requests | peak VmRSS during | VmRSS 12 s after | |")
w("|---|---|---|---|---|")
for line in (WORK / "churn.txt").read_text().split("\n"):
    if line.strip():
        name, requests, peak, after, capped = line.split()
        label = {"release": "release", "canary": "canary (console, its defaults: retention 10 s)",
                 "canary-retention-2s": "canary, `TOKIO_CONSOLE_RETENTION=2s`"}[name]
        w(f"| {label} | {requests} | {int(peak) / 1024:.1f} MiB | {int(after) / 1024:.1f} MiB | {'capped at 3 GiB' if capped != '0' else ''} |")
w("")
w("The fault test `ten_thousand_held_connections_get_no_errors_and_bounded_memory` "
  "(`service/tests/faults/connections.rs`) also prints the RSS of a debug build holding 10 000 "
  "connections with a request in flight on each.")
w("")
w("## The lab's reproduction")
w("")
w(f"Victim p99 (CO-corrected, from loadgen's report) at 200 req/s for {ENV['REPRO']} s, one run each, "
  "the service with its defaults (two workers, `DEPENDENCY_MS=5`, `SLOW_DISK_MS=300`):")
w("")
w("| mix | victim requests | errors | p50 | p99 | p99.9 | max |")
w("|---|---|---|---|---|---|---|")
for mix, lat, n, err in [("orders=99,config_sync=1 (bug)", bug, bug_n, bug_err), ("orders=99,config_async=1 (fix)", fix, fix_n, fix_err)]:
    if lat:
        w(f"| {mix} | {n} | {err} | {lat['p50_ms']:.1f} ms | {lat['p99_ms']:.1f} ms | {lat['p99_9_ms']:.1f} ms | {lat['max_ms']:.1f} ms |")
if bug and fix:
    w("")
    w(f"Ratio of the victim's p99, bug / fix: **{bug['p99_ms'] / fix['p99_ms']:.1f}×**.")
w("")
w("## Micro-benchmarks (criterion)")
w("")
if micro:
    w("`service/benches/telemetry.rs`, built from `telemetry::json_layer` and `watchdog::layer` "
      "with a lossless non-blocking writer into `io::sink()`, the whole process pinned to CPU 0 "
      "(so the writer thread shares the CPU, as in a one-worker container). Mean and its 95 % interval.")
    w("")
    w("| benchmark | what | mean | 95 % interval | goal |")
    w("|---|---|---|---|---|")
    for bench_id, what, goal in micro_rows:
        if bench_id in micro:
            mean, lo, hi = micro[bench_id]
            g = "–" if goal is None else f"≤ {ns(goal)}: {verdict(mean <= goal)}"
            w(f"| `{bench_id}` | {what} | {ns(mean)} | {ns(lo)} – {ns(hi)} | {g} |")
    a = micro.get("poll/enter_exit/with_watchdog")
    b = micro.get("poll/enter_exit/without_watchdog")
    if a and b:
        w("")
        w(f"The watchdog's cost per poll (enter + exit): {ns(a[0] - b[0])} "
          f"({ns(a[0])} with, {ns(b[0])} without).")
    if all(k in micro for k, _ in request_rows):
        w("")
        w("### Per request, in process (criterion)")
        w("")
        w("`service/benches/request.rs`: `GET /api/orders/1` (`DEPENDENCY_MS=0`) through the real "
          "actix-web app with `actix_web::test`, no sockets, so the kernel's TCP work (about 7 µs "
          "of the 9–10 µs a request costs over loopback here, and bimodal) does not drown the "
          "tracing cost. Lab: `startup::app` with `telemetry::request_layers`, exactly what the "
          "binary installs; article: `service/benches/article/wiring.rs`. Pinned to CPU 0, the "
          "log writer thread included.")
        w("")
        w("| case | what | mean | 95 % interval |")
        w("|---|---|---|---|")
        for bench_id, what in request_rows:
            mean, lo, hi = micro[bench_id]
            w(f"| `{bench_id}` | {what} | {ns(mean)} | {ns(lo)} – {ns(hi)} |")
        m = {k: micro[k][0] for k, _ in request_rows}
        w("")
        w(f"Tracing's cost per request: the lab {ns(m['lab/off'] - m['lab/no_request_tracing'])} "
          f"with nothing emitted and {ns(m['lab/info'] - m['lab/off'])} more for the JSON access "
          f"line; the article {ns(m['article/info'] - m['article/off'])} for its one line, "
          f"**{(m['article/info'] - m['article/off']) / (m['lab/info'] - m['lab/off']):.0f}×** the lab's.")
else:
    w("Not run this time (`MICRO=0`).")
w("")
def include(switch, doc, title, intro, first_line):
    """A benchmark script's own page, from its line starting with `first_line`, under `title`
    (its own headings one level down), when its `macro.sh` switch is on and the page exists."""
    page = ROOT / "docs" / doc
    if ENV.get(switch, "1") != "1" or not page.exists():
        return
    w(f"## {title}")
    w("")
    w(intro)
    w("")
    body = page.read_text().split("\n")
    start = next(i for i, line in enumerate(body) if line.startswith(first_line))
    w("\n".join("#" + line if line.startswith("## ") else line for line in body[start:]).rstrip())
    w("")


include("WIRING", "wiring-benchmark.md", "The lab's wiring against the article's, over TCP (issue 10)",
        "`python3 bench/wiring.py` (also run by `bench/macro.sh`; its own copy is "
        "`docs/wiring-benchmark.md`). Both services with one worker pinned to CPU 0, wrk on CPU 1, "
        "the same run, configurations alternated, medians. Goals: `info` ≥ 0.85× `off`, `off` ≥ "
        "0.95× the same service without request tracing, p99 at `info` ≤ 1.2× p99 at `off`.",
        "Machine:")
include("CANARY", "canary-benchmark.md", "The canary against the release build (issue 18)",
        "`python3 bench/canary.py` (also run by `bench/macro.sh`; its own copy is "
        "`docs/canary-benchmark.md`). Goals: canary / release ≥ 0.5 pinned and ≥ 0.8 unpinned; RSS "
        "under the lab's default load flat after the retention window (last minute within ±10 % of "
        "the second); peak RSS under 10 s of churn ≤ 512 MiB.",
        "Machine:")
include("STACKS", "stacks-benchmark.md",
        "Culprit stacks: frame pointers and the time to the line (issue 14)",
        "`python3 bench/stacks.py` (also run by `bench/macro.sh`; its own copy is "
        "`docs/stacks-benchmark.md`). Goals: frame pointers cost at most 3 % on the victim route; "
        "the `worker blocked` line with its stack within the threshold + 15 ms.",
        "## Frame pointers")
soak_doc = ROOT / "docs" / "soak-benchmark.md"
if ENV.get("SOAK", "1") == "1" and soak_doc.exists():
    # bench/soak.py's page, its title one level down.
    body = soak_doc.read_text().rstrip().split("\n")
    w("#" + body[0])
    w("\n".join(body[1:]))
    w("")
w("## Commands")
w("")
w("```")
for command in (WORK / "commands.txt").read_text().split("\n"):
    if command.strip():
        w(command)
w("```")
w("")
w("## Fault tests")
w("")
w("`cargo test -p service --test faults` (`service/tests/faults/`; needs `ulimit -n` ≥ 11 000):")
w("")
for test, checks in [
    ("burst", "100 000 events from 4 threads through `telemetry::json_layer` and a lossless "
     "non-blocking writer into a file: every line present, in order per thread; the same through a "
     "256-line queue (the emitters wait, nothing is lost); the lossy mode's drop counter equals "
     "exactly what is missing."),
    ("log_files", "`LOG_DIR` below a regular file, or a regular file itself (root cannot write there "
     "either): exit 2 and exactly one stderr line, `error: … LOG_DIR …` naming the directory, nothing "
     "on stdout. The log file removed while running, and the log file on a full disk (`/dev/full`): "
     "the service keeps answering and keeps its stdout lines; the full disk is reported once on "
     "stderr, and SIGTERM still ends stdout with `stopped`."),
    ("malformed_http", "a single 64 KB header and 1 024 headers (431 from the service's 16 KiB "
     "limit), a 256 KB header (closed by actix-http), a 10 KB path, 5 000 path segments, invalid "
     "UTF-8 raw and percent-encoded in the path: 4xx or a closed connection, then a normal 200 from "
     "the victim; a client trickling headers byte by byte is cut off (408) while others are served."),
    ("connections", "10 000 connections held at once, each with a victim request in flight: every "
     "one answered 200; the service's RSS printed and bounded (< idle + 64 KiB per connection, "
     "256 KiB for the canary)."),
    ("sigterm", "SIGTERM during a 32-connection burst: exit 0; stdout (a file) and the rolling log "
     "file end with a complete JSON line, `stopped`, with no partial or non-JSON line, and hold the "
     "same number of lines."),
]:
    w(f"- **{test}**: {checks}")
w("")
w("Known limit, not a test failure: removing the log file raises no error on Linux (the open "
  "descriptor writes on to the unlinked file) and tracing-appender does not reopen it, so those "
  "lines are lost until the next daily file; stdout is unaffected.")
w("")
notes = ROOT / "bench" / "benchmarks-notes.md"
if notes.exists():
    w(notes.read_text().rstrip())
    w("")
# The callgrind section is bench/callgrind.py's (its own, slower run): carried over as it is.
previous = Path(ENV["OUT"]).read_text() if Path(ENV["OUT"]).exists() else ""
begin, end = "<!-- callgrind: begin -->", "<!-- callgrind: end -->"
if begin in previous and end in previous:
    w(begin + previous.split(begin, 1)[1].split(end, 1)[0] + end)
    w("")
Path(ENV["OUT"]).write_text("\n".join(md))
