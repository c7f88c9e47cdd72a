#!/usr/bin/env bash
# What the lab's observability costs a real request, and what its watchdog and its bug cost
# (issues 8 and 9). Writes docs/benchmarks.md: the machine, the versions, every command, the
# tables and the ratios against their goals.
#
#   bench/macro.sh                         # the recorded numbers (about 20 minutes)
#   RUNS=1 DURATION=3 WARMUP=1 HOLD=5 LONG=8 CHURN=3 REPRO=5 MICRO=0 WIRING=0 CANARY=0 OUT=/tmp/b.md bench/macro.sh  # a quick look
#
# Method: each configuration runs fresh — the service with one worker pinned to CPU 0
# (`taskset -c 0`), wrk pinned to CPU 1, the victim route /api/orders/1 with DEPENDENCY_MS=0 —
# a warm-up discarded, configurations alternated round by round, the median of RUNS kept.
# Server CPU per request is utime+stime of the whole service process (writer threads
# included) from /proc/<pid>/stat over the measured window, divided by the requests wrk counted.
#
# Needs: a Rust toolchain, python3, taskset (util-linux), wrk (installed with apt if missing).
# Run it on a quiet machine: it records the load average and any running build in the output.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-10}    # seconds measured per run
WARMUP=${WARMUP:-2}         # seconds of load discarded before each run
CONNECTIONS=${CONNECTIONS:-32}
HOLD=${HOLD:-15}            # seconds under 10 000 keep-alive connections
LONG=${LONG:-120}           # seconds of the canary's long run (console retention)
CHURN=${CHURN:-10}          # seconds of connection churn per build
REPRO=${REPRO:-30}          # seconds of each loadgen run (the lab's reproduction)
MICRO=${MICRO:-1}           # 0 skips the criterion benchmarks
WIRING=${WIRING:-1}         # 0 skips bench/wiring.py (the article's wiring against the lab's)
CANARY=${CANARY:-1}         # 0 skips bench/canary.py (the canary against the release build)
OUT=${OUT:-docs/benchmarks.md}
TARGET=${CARGO_TARGET_DIR:-target}
WORK=$(mktemp -d)
SERVER_PID=
trap 'stop_server; rm -rf "$WORK"' EXIT

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# --- tools and builds -------------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
  log "installing wrk"
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
command -v taskset >/dev/null || { echo "error: taskset (util-linux) is missing" >&2; exit 2; }

COMMANDS=()
run_logged() { COMMANDS+=("$*"); log "$*"; "$@"; }
# The release and canary binaries share a path in the target dir; keep a copy of each.
BIN=$TARGET/macro-bin
mkdir -p "$BIN"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "building (target dir $TARGET)"
  run_logged cargo build --release -q -p service
  cp "$TARGET/release/service" "$BIN/service-release"
  run_logged cargo build --release -q -p service --features console
  cp "$TARGET/release/service" "$BIN/service-canary"
  run_logged cargo build --release -q -p loadgen
  cp "$TARGET/release/loadgen" "$BIN/loadgen"
else
  COMMANDS+=("cargo build --release -p service" "cargo build --release -p service --features console" "cargo build --release -p loadgen")
fi
RELEASE=$BIN/service-release
CANARY_BIN=$BIN/service-canary
LOADGEN=$BIN/loadgen
CLK_TCK=$(getconf CLK_TCK)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_server BINARY STDOUT [VAR=value ...]: starts the service pinned to CPU 0 with one worker
# and zero dependency latency; sets SERVER_PID and PORT, returns once /healthz answers.
start_server() {
  local bin=$1 stdout=$2
  shift 2
  PORT=$(free_port)
  env -i PATH="$PATH" LISTEN_ADDR="127.0.0.1:$PORT" WORKERS=1 DEPENDENCY_MS=0 RUST_LOG=info \
    INSTANCE=bench TOKIO_CONSOLE_BIND="127.0.0.1:$(free_port)" "$@" \
    taskset -c 0 "$bin" >"$stdout" 2>>"$WORK/stderr" &
  SERVER_PID=$!
  local tries=0
  until LISTEN_ADDR="127.0.0.1:$PORT" "$bin" healthcheck 2>/dev/null; do
    tries=$((tries + 1))
    if [ $tries -gt 500 ] || ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "error: the service did not come up; stderr:" >&2
      cat "$WORK/stderr" >&2
      exit 1
    fi
    sleep 0.02
  done
}

stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  fi
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# wrk_run SECONDS CONNECTIONS [extra wrk args]: wrk pinned to CPU 1 against the victim; prints
# "req_per_s p99_ms requests".
wrk_run() {
  local seconds=$1 conns=$2
  shift 2
  taskset -c 1 wrk -t1 -c"$conns" -d"${seconds}s" --latency "$@" \
    "http://127.0.0.1:$PORT/api/orders/1" >"$WORK/wrk.txt" 2>&1 || true
  python3 - "$WORK/wrk.txt" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
def ms(value, unit):
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
p99 = re.search(r"\s99%\s+([\d.]+)(us|ms|s)\b", text)
n = re.search(r"(\d+) requests in", text)
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
bad = (int(errors.group(1)) if errors else 0) + (sum(map(int, sock.groups())) if sock else 0)
if not (rps and p99 and n):
    sys.exit("cannot parse wrk output:\n" + text)
print(rps.group(1), f"{ms(*p99.groups()):.3f}", n.group(1), bad)
EOF
}

# --- 1. throughput per configuration ----------------------------------------------------------
# name|binary|stdout|settings
CONFIGS=(
  "off|$RELEASE|/dev/null|RUST_LOG=off"
  "info-stdout|$RELEASE|/dev/null|RUST_LOG=info"
  "info-files|$RELEASE|/dev/null|RUST_LOG=info LOG_DIR=$WORK/logs"
  "canary|$CANARY_BIN|/dev/null|RUST_LOG=info"
  "watchdog-off|$RELEASE|/dev/null|RUST_LOG=info LONG_POLL_MS=0"
)
: >"$WORK/throughput.txt"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
busy() { { pgrep -x cargo || true; pgrep -x rustc || true; pgrep -f 'buildkit/executor/runc' || true; } | wc -l; }
BUSY_BEFORE=$(busy)
for round in $(seq 1 "$RUNS"); do
  for entry in "${CONFIGS[@]}"; do
    IFS='|' read -r name bin stdout settings <<<"$entry"
    rm -rf "$WORK/logs"
    # shellcheck disable=SC2086 # settings are VAR=value words
    start_server "$bin" "$stdout" $settings
    wrk_run "$WARMUP" "$CONNECTIONS" >/dev/null
    before=$(cpu_ticks "$SERVER_PID")
    read -r rps p99 requests bad < <(wrk_run "$DURATION" "$CONNECTIONS")
    after=$(cpu_ticks "$SERVER_PID")
    stop_server
    cpu_us=$(python3 -c "print(f'{($after - $before) / $CLK_TCK / $requests * 1e6:.2f}')")
    echo "$name $round $rps $p99 $cpu_us $bad" >>"$WORK/throughput.txt"
    log "round $round $name: $rps req/s, p99 $p99 ms, $cpu_us us CPU/request, $bad errors"
  done
done
COMMANDS+=("per run: env -i LISTEN_ADDR=127.0.0.1:PORT WORKERS=1 DEPENDENCY_MS=0 <settings> taskset -c 0 service >/dev/null")
COMMANDS+=("per run: taskset -c 1 wrk -t1 -c$CONNECTIONS -d${WARMUP}s (discarded), then taskset -c 1 wrk -t1 -c$CONNECTIONS -d${DURATION}s --latency http://127.0.0.1:PORT/api/orders/1")

# --- 2. watchdog detection latency ------------------------------------------------------------
# The block starts when /cpu/inline logs "burning cpu" (just before its loop); the watchdog's
# first "worker blocked" line for that request id says when it was noticed.
start_server "$RELEASE" "$WORK/watchdog.jsonl" RUST_LOG=info LONG_POLL_MS=40
for i in 1 2 3 4 5 6 7 8 9 10; do
  python3 - "$PORT" "detect-$i" <<'EOF'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
c.request("GET", "/cpu/inline?ms=300", headers={"x-request-id": sys.argv[2]})
assert c.getresponse().status == 200
EOF
done
stop_server
COMMANDS+=("detection: LONG_POLL_MS=40 service; 10 x GET /cpu/inline?ms=300 with x-request-id detect-N; compare the 'burning cpu' and first 'worker blocked' timestamps of each id")
python3 - "$WORK/watchdog.jsonl" >"$WORK/detection.txt" <<'EOF'
import json, sys
from datetime import datetime
def ts(line):
    return datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()
start, seen = {}, {}
for raw in open(sys.argv[1]):
    line = json.loads(raw)
    rid = (line.get("span") or {}).get("request_id") or line["fields"].get("request_id")
    msg = line["fields"].get("message")
    if msg == "burning cpu":
        start[rid] = ts(line)
    elif msg == "worker blocked" and rid not in seen:
        seen[rid] = (ts(line), line["fields"].get("elapsed_ms"), line["fields"].get("threshold_ms"))
for rid in sorted(start, key=lambda r: int(r.split("-")[1])):
    if rid in seen:
        t, elapsed, threshold = seen[rid]
        print(rid, f"{(t - start[rid]) * 1000:.1f}", elapsed, threshold)
    else:
        print(rid, "none", "-", "-")
EOF

# --- 3. memory --------------------------------------------------------------------------------
start_server "$RELEASE" /dev/null RUST_LOG=info
LISTEN_ADDR="127.0.0.1:$PORT" "$RELEASE" healthcheck
RSS_IDLE=$(rss_kib "$SERVER_PID")
read -r HOLD_RPS HOLD_P99 _ HOLD_BAD < <(wrk_run "$HOLD" 10000 --timeout 10s)
RSS_10K=$(rss_kib "$SERVER_PID")
HWM_10K=$(hwm_kib "$SERVER_PID")
stop_server
COMMANDS+=("memory: RUST_LOG=info service; VmRSS idle, then taskset -c 1 wrk -t1 -c10000 -d${HOLD}s --timeout 10s --latency (ulimit -n 65536)")

# The canary through a longer run at the lab's pace (loadgen, 500 req/s of the victim on
# keep-alive connections): RSS over time, for console-subscriber's retention.
start_server "$CANARY_BIN" /dev/null RUST_LOG=info
: >"$WORK/canary-rss.txt"
echo "0 $(rss_kib "$SERVER_PID")" >>"$WORK/canary-rss.txt"
taskset -c 1 "$LOADGEN" "http://127.0.0.1:$PORT" --rate 500 --mix orders=1 --duration "${LONG}s" \
  --rounds 1 --no-progress --output "$WORK/canary-long.json" >/dev/null 2>&1 &
LOADGEN_PID=$!
for step in 1 2 3 4; do
  sleep "$((LONG / 4))"
  echo "$((step * LONG / 4)) $(rss_kib "$SERVER_PID")" >>"$WORK/canary-rss.txt"
done
wait "$LOADGEN_PID" || true
stop_server
COMMANDS+=("canary memory: service --features console (default retention); taskset -c 1 loadgen --rate 500 --mix orders=1 --duration ${LONG}s; VmRSS every $((LONG / 4)) s")

# Connection churn (a new connection, so a new tokio task, per request) for CHURN seconds:
# release, canary, and canary with a short console retention. Stopped early if RSS passes 3 GiB.
: >"$WORK/churn.txt"
for entry in "release|$RELEASE|" "canary|$CANARY_BIN|" "canary-retention-2s|$CANARY_BIN|TOKIO_CONSOLE_RETENTION=2s"; do
  IFS='|' read -r name bin settings <<<"$entry"
  # shellcheck disable=SC2086
  start_server "$bin" /dev/null RUST_LOG=info $settings
  taskset -c 1 wrk -t1 -c8 -d"${CHURN}s" -H 'Connection: close' "http://127.0.0.1:$PORT/api/orders/1" >"$WORK/wrk-churn.txt" 2>&1 &
  WRK_PID=$!
  peak=0
  while kill -0 "$WRK_PID" 2>/dev/null; do
    rss=$(rss_kib "$SERVER_PID")
    [ "$rss" -gt "$peak" ] && peak=$rss
    if [ "$rss" -gt $((3 * 1024 * 1024)) ]; then kill "$WRK_PID"; echo "capped" >>"$WORK/wrk-churn.txt"; fi
    sleep 0.5
  done
  wait "$WRK_PID" 2>/dev/null || true
  requests=$(awk '/requests in/ {print $1}' "$WORK/wrk-churn.txt")
  capped=$(grep -c capped "$WORK/wrk-churn.txt" || true)
  sleep 12
  echo "$name ${requests:-0} $peak $(rss_kib "$SERVER_PID") $capped" >>"$WORK/churn.txt"
  stop_server
done
COMMANDS+=("churn: taskset -c 1 wrk -t1 -c8 -d${CHURN}s -H 'Connection: close' http://127.0.0.1:PORT/api/orders/1 against release, canary, canary with TOKIO_CONSOLE_RETENTION=2s; peak VmRSS, and VmRSS 12 s after the load")

# --- 4. the lab's reproduction ----------------------------------------------------------------
# The victim's p99 under the default scenario (orders=99,config_sync=1 at 200 req/s) versus the
# same with the fixed route in place of the bug; the service with its defaults (two workers,
# DEPENDENCY_MS=5, SLOW_DISK_MS=300), no pinning.
repro() {
  local mix=$1 out=$2
  PORT=$(free_port)
  env -i PATH="$PATH" LISTEN_ADDR="127.0.0.1:$PORT" INSTANCE=bench "$RELEASE" >/dev/null 2>>"$WORK/stderr" &
  SERVER_PID=$!
  until LISTEN_ADDR="127.0.0.1:$PORT" "$RELEASE" healthcheck 2>/dev/null; do sleep 0.02; done
  "$LOADGEN" "http://127.0.0.1:$PORT" --rate 200 --mix "$mix" --duration "${REPRO}s" \
    --rounds 1 --no-progress --output "$out" >/dev/null
  stop_server
}
repro orders=99,config_sync=1 "$WORK/repro-bug.json"
repro orders=99,config_async=1 "$WORK/repro-fix.json"
COMMANDS+=("reproduction: service (defaults: WORKERS=nproc, DEPENDENCY_MS=5, SLOW_DISK_MS=300); loadgen http://127.0.0.1:PORT --rate 200 --mix orders=99,config_sync=1 --duration ${REPRO}s --rounds 1 --output bug.json; the same with --mix orders=99,config_async=1")
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
BUSY_AFTER=$(busy)

# --- 5. micro-benchmarks ----------------------------------------------------------------------
if [ "$MICRO" = 1 ]; then
  run_logged taskset -c 0 cargo bench -q -p service --bench telemetry -- --noplot >"$WORK/criterion.txt" 2>&1
  run_logged taskset -c 0 cargo bench -q -p service --bench request -- --noplot >>"$WORK/criterion.txt" 2>&1
fi

# --- 6. the lab's wiring against the article's (issue 10) -------------------------------------
# bench/wiring.py writes docs/wiring-benchmark.md; the renderer copies its tables in here.
if [ "$WIRING" = 1 ]; then
  run_logged python3 bench/wiring.py
fi

# --- 7. the canary against the release build (issue 18) --------------------------------------
# bench/canary.py writes docs/canary-benchmark.md; the renderer copies its tables in here.
if [ "$CANARY" = 1 ]; then
  run_logged python3 bench/canary.py
fi

# --- the document -----------------------------------------------------------------------------
export WORK OUT RUNS DURATION WARMUP CONNECTIONS HOLD LONG CHURN REPRO MICRO WIRING CANARY TARGET CLK_TCK
export LOAD_BEFORE LOAD_AFTER BUSY_BEFORE BUSY_AFTER RSS_IDLE RSS_10K HWM_10K HOLD_RPS HOLD_P99 HOLD_BAD
printf '%s\n' "${COMMANDS[@]}" >"$WORK/commands.txt"
python3 bench/render_benchmarks.py
log "wrote $OUT"
# Keep the raw results (re-render with the same environment: WORK=<dir> … python3 bench/render_benchmarks.py).
rm -rf "$TARGET/macro-last" && cp -r "$WORK" "$TARGET/macro-last"
