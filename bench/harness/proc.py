"""The mechanisms every benchmark shares: release builds, the service on a free port, pinned
wrk runs, loadgen runs, and what /proc says about a process or the machine."""

import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness.pages import ROOT

TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
# The release and canary builds share target/release/service: each build is copied here.
BIN = TARGET / "bench-bin"
TICKS = os.sysconf("SC_CLK_TCK")
# Server on CPU 0, client on CPU 1 for every pinned run.
SERVER_CPU, CLIENT_CPU = 0, 1
VICTIM = "/api/orders/1"

# name -> (cargo arguments, built file under the target dir, extra environment)
BUILDS = {
    "service": (["-p", "service", "--bin", "service"], "release/service", {}),
    "canary": (["-p", "service", "--bin", "service", "--features", "console"], "release/service", {}),
    "article": (["-p", "service", "--example", "article_wiring"], "release/examples/article_wiring", {}),
    "loadgen": (["-p", "loadgen"], "release/loadgen", {}),
    # Without frame pointers: RUSTFLAGS replaces .cargo/config.toml's flags, own target dir.
    "service-nofp": (["-p", "service", "--bin", "service", "--target-dir", str(TARGET / "nofp")],
                     "nofp/release/service", {"RUSTFLAGS": "--cfg tokio_unstable"}),
}


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def build(*names, skip=False):
    """Release builds of `names` (keys of BUILDS), each copied to target/bench-bin/NAME;
    returns {name: path}. With `skip`, the copies already there."""
    paths = {}
    for name in names:
        args, built, env = BUILDS[name]
        copy = BIN / name
        if not skip:
            log(f"cargo build --release {' '.join(args)}")
            subprocess.run(["cargo", "build", "--release", "-q", *args], cwd=ROOT, check=True,
                           env={**os.environ, **env})
            BIN.mkdir(parents=True, exist_ok=True)
            shutil.copy2(TARGET / built, copy)
        elif not copy.exists():
            sys.exit(f"error: {copy} is missing (run without --no-build once)")
        paths[name] = copy
    return paths


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cpu):
    return ["taskset", "-c", str(cpu)] if cpu is not None else []


class Server:
    """The service (or the article's example) listening on a free loopback port.

    `env` is the whole environment besides PATH and LISTEN_ADDR; `cpu` pins it; `prefix` runs
    it under another program (valgrind). With `wait`, returns once the port accepts a
    connection; callgrind opens its one connection itself instead."""

    def __init__(self, binary, env, cpu=None, prefix=(), stdout=subprocess.DEVNULL, wait=True,
                 deadline_s=20):
        self.port = free_port()
        self.binary = Path(binary)
        full = {"PATH": os.environ["PATH"], "LISTEN_ADDR": f"127.0.0.1:{self.port}", **env}
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([*prefix, *pinned(cpu), str(binary)], env=full, cwd=ROOT,
                                     stdout=stdout, stderr=self._stderr)
        if wait:
            self.wait_listening(deadline_s)

    @property
    def pid(self):
        return self.proc.pid

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def wait_listening(self, deadline_s):
        deadline = time.time() + deadline_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.kill()
                    self._stderr.seek(0)
                    sys.exit(f"error: {self.binary.name} did not come up on port {self.port}:\n"
                             + self._stderr.read().decode(errors="replace"))
                time.sleep(0.05)

    def rss_kib(self):
        return status_kib(self.pid, "VmRSS")

    def cpu(self):
        return cpu_seconds(self.pid)

    def stop(self, timeout=120):
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.kill()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.stop()


def cpu_seconds(pid):
    """(user, system) seconds of the whole process, every thread included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def status_kib(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


def parse_wrk(text):
    """wrk's report: requests, req/s, p99 (ms, with --latency), errors (non-2xx + socket)."""
    n = re.search(r"(\d+) requests in", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not (n and rps):
        raise RuntimeError("cannot parse wrk output:\n" + text)
    p99 = re.search(r"\s99%\s+([\d.]+)(us|ms|s)\b", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "requests": int(n.group(1)),
        "rate": float(rps.group(1)),
        "p99_ms": float(p99.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)] if p99 else None,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "errors": (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0),
    }


def wrk_command(url, seconds, connections, cpu=CLIENT_CPU, extra=(), prefix=()):
    return [*prefix, *pinned(cpu), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
            *extra, url]


def wrk(url, seconds, connections, cpu=CLIENT_CPU, extra=(), prefix=(), check=False):
    """One wrk run (one thread, pinned to `cpu`); with `check`, error responses end the run."""
    out = subprocess.run(wrk_command(url, seconds, connections, cpu, extra, prefix),
                         capture_output=True, text=True).stdout
    result = parse_wrk(out)
    if check and result["non2xx"]:
        sys.exit(f"wrk saw {result['non2xx']} error responses:\n{out}")
    return result


def measured_wrk(server, seconds, warmup, connections, cpu=CLIENT_CPU, check=False):
    """A discarded warm-up, then a measured run with the server's CPU time over it: the wrk
    figures plus `cpu_us` and `user_us` per request."""
    wrk(server.url + VICTIM, warmup, connections, cpu)
    user0, system0 = server.cpu()
    result = wrk(server.url + VICTIM, seconds, connections, cpu, check=check)
    user1, system1 = server.cpu()
    n = max(result["requests"], 1)
    result["cpu_us"] = (user1 - user0 + system1 - system0) / n * 1e6
    result["user_us"] = (user1 - user0) / n * 1e6
    return result


def loadgen(binary, url, args, output, cpu=None, prefix=()):
    """Starts loadgen (`args` after the URL; --no-progress and --output added); returns the
    process. `report(output)` reads its first round."""
    cmd = [*prefix, *pinned(cpu), str(binary), url, *args, "--no-progress", "--output", str(output)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def report(output):
    return json.loads(Path(output).read_text().splitlines()[0])


def route_stats(rep, route):
    return next(r["stats"] for r in rep["routes"] if r["route"] == route)


# --- the machine ----------------------------------------------------------------------------


def loadavg(fields=3):
    return " ".join(Path("/proc/loadavg").read_text().split()[:fields])


def busy():
    """Build processes running now (cargo, rustc, the C toolchain, container builds' runc)."""
    names = {"cargo", "rustc", "cc", "cc1", "cc1plus", "ld", "runc"}
    count = 0
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            count += comm.read_text().strip() in names
        except OSError:
            pass
    return count


def cpu_model():
    found = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    return found.group(1).strip() if found else platform.processor() or "unknown"


def mem_total():
    found = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
    return f"{int(found.group(1)) / 1024 / 1024:.1f} GiB" if found else "?"


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT).stdout.strip()
    except OSError:
        return ""


def commit():
    """(short HEAD, whether tracked files have uncommitted changes)."""
    return (sh("git", "rev-parse", "--short", "HEAD"),
            bool(sh("git", "status", "--porcelain", "--untracked-files=no")))


def lock_version(name):
    text = (ROOT / "Cargo.lock").read_text()
    found = re.findall(r'name = "%s"\nversion = "([^"]+)"' % re.escape(name), text)
    return ", ".join(found) or "-"


def require(*tools):
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        sys.exit(f"error: missing {', '.join(missing)} (Debian packages: wrk, util-linux, valgrind)")
