"""loadgen against wrk and oha, and loadgen's highest steady open-loop rate, all against the
service's /healthz (the `loadgen` command; docs/loadgen-benchmark.md).

The service runs with one worker pinned to CPU 0 (`WORKERS=1 DEPENDENCY_MS=0 RUST_LOG=off`),
the load generator on CPU 1; every closed-loop run gets a fresh server and a 2 s wrk warm-up
that is discarded; the three tools alternate and the medians are kept. Same connection count
for every tool. The generator's CPU per request is its user + system time (from wait4), which
does not depend on which side set the pace.

Every process runs under the same real-time policy (`--sched "chrt -f 10"`, needs root; empty
to skip): on a machine that also runs builds in containers (other CPU cgroups, where nice has
no effect) the fair scheduler otherwise measures the neighbours. The kernel's RT throttling
still leaves 5 % to everything else, and every run is bounded in time.
"""

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import proc, stats

PAGE = "loadgen-benchmark.md"
BLOCK = "loadgen"
# loadgen sends a fresh x-request-id with every request and the service echoes it; without one
# the service mints its own. So that the server does the same work for every tool, wrk and oha
# send a (fixed) id of the same length.
RID = "x-request-id: 01a216e2-0000-7000-8000-000000000000"
LADDER = [5000, 10000, 15000, 20000, 25000, 30000, 40000, 50000, 60000, 80000, 100000]


def timed(cmd):
    """Runs `cmd` to the end; (its stdout, user + system seconds)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} exited with {p.returncode}")
    return out.decode(), usage.ru_utime + usage.ru_stime


def closed_loop(tool, url, base_url, loadgen, s, sched, work):
    """One run of `tool`: {rate, cpu_us} (generator CPU µs per request)."""
    c, secs = s["connections"], s["seconds"]
    pin = [*sched, *proc.pinned(proc.CLIENT_CPU)]
    if tool == "wrk":
        out, cpu = timed([*pin, "wrk", "-t1", f"-c{c}", f"-d{secs}s", "-H", RID, url])
        r = proc.parse_wrk(out)
        return {"rate": r["rate"], "cpu_us": stats.per_request_us(cpu, r["requests"])}
    if tool == "oha":
        out, cpu = timed([*pin, "oha", "-c", str(c), "-z", f"{secs}s", "--no-tui", "-H", RID,
                          "--output-format", "json", url])
        d = json.loads(out)
        n = sum(d["statusCodeDistribution"].values())
        return {"rate": d["summary"]["requestsPerSec"], "cpu_us": stats.per_request_us(cpu, n)}
    output = work / "lg.json"
    _, cpu = timed([*pin, str(loadgen), base_url, "--connections", str(c), "--duration", f"{secs}s",
                    "--mix", "healthz=1", "--slowest", "0", "--no-progress", "--output", str(output)])
    d = proc.report(output)
    return {"rate": d["total"]["requests"] / d["elapsed_s"],
            "cpu_us": stats.per_request_us(cpu, d["total"]["requests"])}


def server(binary, sched):
    return proc.Server(binary, {"WORKERS": "1", "DEPENDENCY_MS": "0", "RUST_LOG": "off"},
                       cpu=proc.SERVER_CPU, prefix=sched)


def warm_up(url, connections, sched):
    proc.wrk(url, 2, connections, prefix=sched)


def open_loop(binaries, s, sched, work):
    """The ladder up to the first rate not held, then three bisection steps; a rate counts as
    held when one of two tries holds it (a neighbour's burst can spoil one). Every try is a
    row {requested, achieved, late, p99_ms, held}."""
    rows = []

    def attempt(rate):
        output = work / "open.json"
        p = proc.loadgen(binaries["loadgen"], srv.url, ["--rate", str(rate), "--duration",
                         f"{s['open_seconds']}s", "--mix", "healthz=1", "--slowest", "0"],
                         output, cpu=proc.CLIENT_CPU, prefix=sched)
        p.wait()
        d = proc.report(output)
        t = d["total"]
        row = {"requested": d["requested_rate"], "achieved": t["achieved_rate"] or 0,
               "late": t["late_sends"] / max(t["requests"], 1),
               "p99_ms": t["latency"]["corrected"]["p99_ms"]}
        row["held"] = stats.held(row["requested"], row["achieved"], row["late"])
        rows.append(row)
        print(f"open {rate} req/s: {row}", file=sys.stderr)
        return row["held"]

    def probe(rate):
        return attempt(rate) or attempt(rate)

    best = fail = 0
    with server(binaries["service"], sched) as srv:
        warm_up(srv.url + "/healthz", s["connections"], sched)
        for rate in LADDER:
            if probe(rate):
                best = rate
            else:
                fail = rate
                break
        if fail:
            lo, hi = best, fail
            for _ in range(3):
                mid = (lo + hi) // 2
                if probe(mid):
                    lo = best = mid
                else:
                    hi = mid
    return rows, best


def measure(binaries, connections=32, seconds=10, reps=3, open_seconds=5, sched="chrt -f 10"):
    proc.require("wrk", "oha", "taskset")
    prefix = shlex.split(sched)
    s = {"connections": connections, "seconds": seconds, "reps": reps, "open_seconds": open_seconds}
    work = Path(tempfile.mkdtemp(prefix="loadgen-bench-"))
    load_before = proc.loadavg()
    port = None

    def one(tool):
        nonlocal port
        with server(binaries["service"], prefix) as srv:
            port = srv.port
            url = srv.url + "/healthz"
            warm_up(url, connections, prefix)
            cpu0 = sum(srv.cpu())
            r = closed_loop(tool, url, srv.url, binaries["loadgen"], s, prefix, work)
            r["server_busy_pct"] = round(100 * (sum(srv.cpu()) - cpu0) / seconds)
        print(f"{tool}: {r}", file=sys.stderr)
        return r

    runs = stats.alternate(reps, ["wrk", "oha", "loadgen"], one)
    rows, best = open_loop(binaries, s, prefix, work)
    med = {t: stats.medians(r, ("rate", "cpu_us")) for t, r in runs.items()}
    wrk_v = " ".join(proc.sh("wrk", "-v").splitlines()[0].split()[:2]) if proc.sh("wrk", "-v") else "wrk ?"
    lg_v = proc.sh(str(binaries["loadgen"]), "--version").split()[1:2] or ["?"]
    tools = (f"{wrk_v}, {proc.sh('oha', '--version')}, loadgen {lg_v[0]}, "
             f"{' '.join(proc.sh('rustc', '--version').split()[:2])}")
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": {"cpus": os.cpu_count(), "cpu": proc.cpu_model(), "kernel": os.uname().release,
                        "tools": tools, "load_before": load_before, "load_after": proc.loadavg()},
            "sched": sched, "port": port, "rid": RID,
            "settings": {**s, "server_cpu": proc.SERVER_CPU, "client_cpu": proc.CLIENT_CPU},
            "closed": {t: {"runs": runs[t], "median": med[t]} for t in runs},
            "ratios": {"oha_wrk": stats.ratio(med["oha"]["rate"], med["wrk"]["rate"]),
                       "loadgen_wrk": stats.ratio(med["loadgen"]["rate"], med["wrk"]["rate"]),
                       "loadgen_oha": stats.ratio(med["loadgen"]["rate"], med["oha"]["rate"])},
            "open": rows, "best": best}


def render(d):
    """The `loadgen` block of docs/loadgen-benchmark.md (notes after it are hand-written)."""
    m, s, st = d["machine"], d["settings"], d["settings"]
    port, rid = d["port"], d["rid"]
    url = f"http://127.0.0.1:{port}/healthz"
    cc, sc, c, secs = st["client_cpu"], st["server_cpu"], st["connections"], st["seconds"]
    closed, ratios = d["closed"], d["ratios"]

    def row(tool, command, ratio):
        t = closed[tool]
        runs = "".join(f"{r['rate']:.0f} " for r in t["runs"])
        busy = " ".join(str(r["server_busy_pct"]) for r in t["runs"])
        return (f"| {tool} | `{command}` | {t['median']['rate']:.0f} | {runs}| {busy} | "
                f"{t['median']['cpu_us']:.2f} | {ratio} |")

    lines = [
        "# loadgen benchmark",
        "",
        f"Written by `python3 -m bench loadgen` on {d['date']} (raw results in "
        "`docs/bench/loadgen.json`). Re-run it to refresh;",
        "absolute numbers are this machine's, compare the ratios.",
        "",
        f"- machine: {m['cpus']} CPUs ({m['cpu']}), kernel {m['kernel']}",
        f"- tools: {m['tools']}",
        f"- load average before / after: {m['load_before']} / {m['load_after']} (other work on the machine shows up here)",
        f"- every process below runs under `{d['sched'] or 'the default scheduler'}` (server and tools alike), server on CPU {sc}, generator on CPU {cc}",
        f"- service: `LISTEN_ADDR=127.0.0.1:{port} WORKERS=1 DEPENDENCY_MS=0 RUST_LOG=off taskset -c {sc} service`, fresh per closed-loop run, 2 s wrk warm-up discarded",
        "",
        f"## Closed loop, {c} connections, {secs} s, generator pinned to CPU {cc} (median of {st['reps']}, runs alternated)",
        "",
        "| tool | command | req/s (median) | runs | server CPU busy % per run | generator CPU µs/request (median) | ratio to wrk |",
        "|---|---|---|---|---|---|---|",
        row("wrk", f"taskset -c {cc} wrk -t1 -c{c} -d{secs}s -H '{rid}' {url}", "1.00"),
        row("oha", f"taskset -c {cc} oha -c {c} -z {secs}s --no-tui -H '{rid}' --output-format json {url}",
            f"{ratios['oha_wrk']:.2f}"),
        row("loadgen", f"taskset -c {cc} loadgen http://127.0.0.1:{port} --connections {c} --duration {secs}s --mix healthz=1",
            f"{ratios['loadgen_wrk']:.2f}"),
        "",
        f"loadgen / oha = {ratios['loadgen_oha']:.2f}; loadgen / wrk = {ratios['loadgen_wrk']:.2f} (goal: ≥ 1 and ≥ 0.8).",
        "loadgen's figure is requests / elapsed wall time of the round (including the drain), like wrk's.",
        "wrk and oha send a fixed x-request-id of the same length as loadgen's fresh UUID v7 per request,",
        "so the server echoes an id for every tool instead of minting one for two of them.",
        "Server CPU near 100 % means the one-worker server, not the generator, set the pace: the",
        "tools then tie, and the ratio says only that loadgen is not the bottleneck. The generator's CPU",
        "time per request (user + system, kernel TCP work included) compares the tools' own cost",
        "independently of who set the pace: lower is better.",
        "",
        "## Open loop: highest rate held within ±2 % with < 1 % late sends",
        "",
        f"`taskset -c {cc} loadgen http://127.0.0.1:{port} --rate R --duration {st['open_seconds']}s --mix healthz=1`",
        "(in-flight cap 256, late = sent more than 2 ms after its planned time), one server for the whole",
        "ladder: rungs up to the first rate not held, then three bisection steps. A rate counts as held",
        "when one of two tries holds it (both tries are listed). tokio timers have 1 ms resolution, so",
        "every planned send leaves up to ~1 ms late and the corrected p99 carries that millisecond.",
        "",
        f"**Highest rate held: {d['best']} req/s.**",
        "",
        "| requested req/s | achieved req/s | late sends | corrected p99 ms | held |",
        "|---|---|---|---|---|",
    ]
    for r in d["open"]:
        lines.append(f"| {r['requested']:.0f} | {r['achieved']:.0f} | {r['late'] * 100:.2f} % | "
                     f"{r['p99_ms']:.3f} | {'yes' if r['held'] else 'no'} |")
    return "\n".join(lines)


def add_arguments(parser):
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=10, help="seconds per closed-loop run")
    parser.add_argument("--reps", type=int, default=3, help="closed-loop runs per tool")
    parser.add_argument("--open-seconds", type=int, default=5, help="seconds per open-loop try")
    parser.add_argument("--sched", default="chrt -f 10",
                        help='real-time policy for every process ("" for none; chrt needs root)')


def run(args, store):
    binaries = proc.build("service", "loadgen", skip=args.no_build)
    return measure(binaries, args.connections, args.seconds, args.reps, args.open_seconds, args.sched)
