"""User-space instructions per request, counted by valgrind's callgrind (issue 20).

Each configuration's release binary runs under `valgrind --tool=callgrind` with one worker and
`DEPENDENCY_MS=0`; one keep-alive connection sends REQUESTS sequential `GET /api/orders/1`, then
the server gets SIGTERM and callgrind writes its total (every thread: workers, the log writer,
the watchdog). The same run with 0 requests, its connection held idle for as long as the
requests took, is subtracted (start-up, shutdown and the timers that tick regardless), and the
difference divided by REQUESTS. Instruction counts do not depend on what else the machine runs,
so unlike the wall-clock benchmarks they repeat to a fraction of a percent on a shared machine.

Raw counts: docs/callgrind.json, one entry per `--label` (a label's newest run replaces the
older); the `callgrind` block of docs/benchmarks.md is rendered from every label in it.
`stacks` counts with the same `instructions()`.
"""

import os
import re
import socket
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import proc

BLOCK = "callgrind"

# The watchdog is on (default LONG_POLL_MS) unless said. Its stack capture is off: callgrind
# (3.19) aborts on the signal it sends to a worker at start-up, and the victim route never
# blocks, so no stack would be taken per request anyway.
LAB = {"BLOCKED_STACKS": "false"}
BASE = {"WORKERS": "1", "DEPENDENCY_MS": "0"}
# name -> (binary: "service" or "article", environment)
CONFIGS = {
    "lab, no request tracing": ("service", {**LAB, "RUST_LOG": "off", "REQUEST_TRACING": "false", "LONG_POLL_MS": "0"}),
    "lab, RUST_LOG=off": ("service", {**LAB, "RUST_LOG": "off"}),
    "lab, RUST_LOG=info": ("service", {**LAB, "RUST_LOG": "info"}),
    "article, RUST_LOG=off": ("article", {"RUST_LOG": "off"}),
    "article, RUST_LOG=info": ("article", {"RUST_LOG": "info"}),
}
# (what, minuend, subtrahend, goal)
DIFFERENCES = [
    ("lab: `info` − `off` (the access line)", "lab, RUST_LOG=info", "lab, RUST_LOG=off", 5000),
    ("lab: `off` − no request tracing", "lab, RUST_LOG=off", "lab, no request tracing", 1000),
    ("article: `info` − `off`", "article, RUST_LOG=info", "article, RUST_LOG=off", None),
]


def connect(port, deadline):
    """The one client connection, opened as soon as the server listens. Refused attempts never
    reach the server, so every run sees exactly one connection."""
    while time.time() < deadline:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=60)
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"the server on port {port} did not come up")


def send(sock, requests, path=proc.VICTIM):
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    buffer = b""
    for _ in range(requests):
        sock.sendall(request)
        while b"\r\n\r\n" not in buffer:
            buffer += recv(sock)
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"unexpected response: {head[:80]!r}")
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
        while len(buffer) < length:
            buffer += recv(sock)
        buffer = buffer[length:]


def recv(sock):
    data = sock.recv(65536)
    if not data:
        raise SystemExit("the server closed the connection")
    return data


def instructions(binary, env, requests, idle_s=0.0):
    """Total user-space instructions of one run of `binary` (environment `env` besides PATH
    and LISTEN_ADDR) serving `requests` requests (or, with none, holding its connection idle
    for `idle_s`), and how long the serving took."""
    with tempfile.TemporaryDirectory(prefix="callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        server = proc.Server(binary, env, wait=False,
                             prefix=("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"))
        try:
            with connect(server.port, time.time() + 120) as sock:
                started = time.monotonic()
                send(sock, requests)
                time.sleep(max(0.0, idle_s - (time.monotonic() - started)))
                took = time.monotonic() - started
            if server.stop() != 0:
                raise SystemExit(f"{Path(binary).name} exited with {server.proc.returncode}")
        finally:
            server.kill()
        totals = re.search(r"^(?:summary|totals):\s*(\d+)", out.read_text(), re.M)
        return int(totals.group(1)), took


def per_request(binary, env, requests):
    """{idle, busy, per_request}: a run with `requests` minus an idle run as long."""
    # The idle run lasts as long as the busy one: the timers that tick whatever the load (the
    # watchdog's heartbeat and checker) then cancel out, and the server has long installed
    # its SIGTERM handler when the signal comes.
    busy, took = instructions(binary, env, requests)
    idle, _ = instructions(binary, env, 0, idle_s=max(took, 1.0))
    return {"idle": idle, "busy": busy, "per_request": round((busy - idle) / requests)}


def measure(binaries, requests):
    result = {}
    for name, (kind, env) in CONFIGS.items():
        result[name] = per_request(binaries[kind], {**BASE, **env}, requests)
        print(f"{name}: {result[name]['per_request']} instructions/request "
              f"({result[name]['busy']} with {requests} requests, {result[name]['idle']} with none)",
              file=sys.stderr)
    return result


def render(raw):
    """The `callgrind` block of docs/benchmarks.md, every label a column."""
    labels = list(raw)
    requests = raw[labels[-1]]["requests"] if labels else 3000
    lines = [
        "## Instructions per request (callgrind, issue 20)",
        "",
        f"`python3 -m bench callgrind --label LABEL`: the release binary under "
        f"`valgrind --tool=callgrind` (`WORKERS=1`, `DEPENDENCY_MS=0`, the watchdog on), one "
        f"keep-alive connection sending {requests} sequential `GET /api/orders/1`, minus the same "
        "run with 0 requests (its connection idle as long), divided by the number of requests; every thread counted (worker, log "
        "writer, watchdog; `BLOCKED_STACKS=false` where the binary has that setting, as "
        "callgrind aborts on the stack capture's start-up signal). Baseline: `REQUEST_TRACING=false`, `LONG_POLL_MS=0`. Article: "
        "`service/examples/article_wiring.rs`. Instruction counts are immune to the other work "
        "on this shared machine (the wall-clock tables above are not); a run repeats to a few tenths "
        "of a percent, a difference of two configurations to about ±50 instructions.",
        "",
        "| configuration | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
    ]
    for name in CONFIGS:
        cells = [f"{raw[l]['counts'][name]['per_request']:,}" if name in raw[l]["counts"] else "–"
                 for l in labels]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for what, a, b, goal in DIFFERENCES:
        cells = []
        for l in labels:
            counts = raw[l]["counts"]
            if a in counts and b in counts:
                diff = counts[a]["per_request"] - counts[b]["per_request"]
                mark = "" if goal is None else (" (met)" if diff <= goal else " (**not met**)")
                cells.append(f"{diff:+,}{mark}")
            else:
                cells.append("–")
        goal_text = "" if goal is None else f", goal ≤ {goal:,}"
        lines.append(f"| {what}{goal_text} | " + " | ".join(cells) + " |")
    lines += ["", "Runs: " + "; ".join(f"{l}: commit `{raw[l]['commit']}`, {raw[l]['date']}"
                                        for l in labels) + "."]
    return "\n".join(lines)


def add_arguments(parser):
    parser.add_argument("--label", default="latest", help="the column these counts go in")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--commit", help="the commit the binaries were built from (default: HEAD)")
    parser.add_argument("--requests", type=int, default=int(os.environ.get("REQUESTS", "3000")),
                        help="requests per measured run (env REQUESTS; default 3000)")


def run(args, store):
    """Builds (unless --no-build), measures, records under --label, rewrites the block. With
    --no-build the binaries come from RELEASE_DIR (default target/release), e.g. a saved
    build of another commit."""
    proc.require("valgrind")
    if args.no_build:
        release = Path(os.environ.get("RELEASE_DIR", proc.TARGET / "release"))
        binaries = {"service": release / "service", "article": release / "examples/article_wiring"}
    else:
        binaries = proc.build("service", "article")
    counts = measure(binaries, args.requests)
    if args.no_write:
        return None
    raw = store.load("callgrind") or {}
    rev, dirty = proc.commit()
    raw[args.label] = {"commit": args.commit or rev + (" (with uncommitted changes)" if dirty else ""),
                       "date": time.strftime("%Y-%m-%d"), "requests": args.requests,
                       "counts": counts}
    return raw
