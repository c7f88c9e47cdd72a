#!/usr/bin/env python3
"""User-space instructions per request, counted by valgrind's callgrind (issue 20).

Each configuration's release binary runs under `valgrind --tool=callgrind` with one worker and
`DEPENDENCY_MS=0`; one keep-alive connection sends REQUESTS sequential `GET /api/orders/1`, then
the server gets SIGTERM and callgrind writes its total (every thread: workers, the log writer,
the watchdog). The same run with 0 requests, its connection held idle for as long as the
requests took, is subtracted (start-up, shutdown and the timers that tick regardless), and the
difference divided by REQUESTS. Instruction counts do not depend on what else the machine runs,
so unlike the wall-clock benchmarks they repeat to a fraction of a percent on a shared machine.

    python3 bench/callgrind.py --label after     # builds, measures, records, rewrites the section
    python3 bench/callgrind.py --label before    # e.g. on the commit before a change
    python3 bench/callgrind.py --no-write        # print only
    RELEASE_DIR=DIR python3 bench/callgrind.py --no-build --commit REV --label before
                                                 # binaries built elsewhere (e.g. a saved build)

Raw counts go to docs/callgrind.json (one entry per label, the newest run of a label replacing
the older); the section between the `callgrind` markers in docs/benchmarks.md is rendered from
every label in it. Needs valgrind (Debian package `valgrind`).
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = int(os.environ.get("REQUESTS", "3000"))
RELEASE = Path(os.environ.get("RELEASE_DIR", ROOT / "target/release"))
SERVICE = RELEASE / "service"
ARTICLE = RELEASE / "examples/article_wiring"
RAW = ROOT / "docs/callgrind.json"
DOC = ROOT / "docs/benchmarks.md"
BEGIN, END = "<!-- callgrind: begin -->", "<!-- callgrind: end -->"

# name -> (binary, environment); the watchdog is on (default LONG_POLL_MS) unless said. Its
# stack capture is off: callgrind (3.19) aborts on the signal it sends to a worker at start-up,
# and the victim route never blocks, so no stack would be taken per request anyway.
LAB = {"BLOCKED_STACKS": "false"}
CONFIGS = {
    "lab, no request tracing": (SERVICE, {**LAB, "RUST_LOG": "off", "REQUEST_TRACING": "false", "LONG_POLL_MS": "0"}),
    "lab, RUST_LOG=off": (SERVICE, {**LAB, "RUST_LOG": "off"}),
    "lab, RUST_LOG=info": (SERVICE, {**LAB, "RUST_LOG": "info"}),
    "article, RUST_LOG=off": (ARTICLE, {"RUST_LOG": "off"}),
    "article, RUST_LOG=info": (ARTICLE, {"RUST_LOG": "info"}),
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


def send(sock, requests):
    request = b"GET /api/orders/1 HTTP/1.1\r\nHost: bench\r\n\r\n"
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


def instructions(binary, env_extra, requests, idle_s=0.0):
    """Total user-space instructions of one run of `binary` serving `requests` requests (or,
    with none, holding its connection idle for `idle_s`), and how long the serving took."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"PATH": os.environ["PATH"], "LISTEN_ADDR": f"127.0.0.1:{port}", "WORKERS": "1",
           "DEPENDENCY_MS": "0", **env_extra}
    with tempfile.TemporaryDirectory(prefix="callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", str(binary)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with connect(port, time.time() + 120) as sock:
                started = time.monotonic()
                send(sock, requests)
                time.sleep(max(0.0, idle_s - (time.monotonic() - started)))
                took = time.monotonic() - started
            server.send_signal(signal.SIGTERM)
            if server.wait(timeout=120) != 0:
                raise SystemExit(f"{binary.name} exited with {server.returncode}")
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
        totals = re.search(r"^(?:summary|totals):\s*(\d+)", out.read_text(), re.M)
        return int(totals.group(1)), took


def measure(build):
    if build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "service", "--bin", "service",
                        "--example", "article_wiring"], cwd=ROOT, check=True)
    result = {}
    for name, (binary, env) in CONFIGS.items():
        # The idle run lasts as long as the busy one: the timers that tick whatever the load
        # (the watchdog's heartbeat and checker) then cancel out, and the server has long
        # installed its SIGTERM handler when the signal comes.
        busy, took = instructions(binary, env, REQUESTS)
        idle, _ = instructions(binary, env, 0, idle_s=max(took, 1.0))
        result[name] = {"idle": idle, "busy": busy, "per_request": round((busy - idle) / REQUESTS)}
        print(f"{name}: {result[name]['per_request']} instructions/request "
              f"({busy} with {REQUESTS} requests, {idle} with none)", file=sys.stderr)
    return result


def commit():
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                         text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return rev + (" (with uncommitted changes)" if dirty else "")


def render(raw):
    labels = list(raw)
    lines = [
        "## Instructions per request (callgrind, issue 20)",
        "",
        f"`python3 bench/callgrind.py --label LABEL`: the release binary under "
        f"`valgrind --tool=callgrind` (`WORKERS=1`, `DEPENDENCY_MS=0`, the watchdog on), one "
        f"keep-alive connection sending {REQUESTS} sequential `GET /api/orders/1`, minus the same "
        "run with 0 requests (its connection idle as long), divided by the number of requests; every thread counted (worker, log "
        "writer, watchdog; `BLOCKED_STACKS=false` where the binary has that setting, as "
        "callgrind aborts on the stack capture's start-up signal). Baseline: `REQUEST_TRACING=false`, `LONG_POLL_MS=0`. Article: "
        "`service/examples/article_wiring.rs`. Instruction counts are immune to the other work "
        "on this shared machine (the wall-clock tables above are not) and repeat to about 0.1 %.",
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


def write_section(section):
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    block = f"{BEGIN}\n{section}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text)


def main():
    parser = argparse.ArgumentParser(description="User-space instructions per request (callgrind).")
    parser.add_argument("--label", default="latest", help="the column these counts go in")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--no-build", action="store_true",
                        help="measure the binaries already in RELEASE_DIR (default target/release)")
    parser.add_argument("--commit", help="the commit the binaries were built from (default: HEAD)")
    args = parser.parse_args()
    label = args.label
    counts = measure(not args.no_build)
    if args.no_write:
        return
    raw = json.loads(RAW.read_text()) if RAW.exists() else {}
    raw[label] = {"commit": args.commit or commit(), "date": time.strftime("%Y-%m-%d"), "requests": REQUESTS,
                  "counts": counts}
    RAW.write_text(json.dumps(raw, indent=2) + "\n")
    write_section(render(raw))
    print(f"wrote {RAW} and the callgrind section of {DOC}", file=sys.stderr)


if __name__ == "__main__":
    main()
