#!/usr/bin/env bash
# Throughput benchmark of loadgen against wrk and oha, and loadgen's highest steady open-loop
# rate, all against the service's /healthz. Writes docs/loadgen-benchmark.md.
#
# Method (as in the lab's measured anchors): the service runs with one actix worker pinned to
# CPU 0 (WORKERS=1 DEPENDENCY_MS=0 RUST_LOG=off, taskset -c 0), the load generator is pinned to
# CPU 1; every closed-loop run gets a fresh server and a 2 s wrk warm-up that is discarded; the
# three tools alternate, REPS times, and the table reports medians. Same connection count for
# every tool. Needs: wrk (Debian package `wrk`), oha (`cargo install oha --locked`), curl,
# python3, taskset.
#
# Knobs (environment): CONNECTIONS (32), SECONDS_PER_RUN (10), REPS (3), PORT (18090),
# OPEN_SECONDS (5), SERVER_CPU (0), CLIENT_CPU (1), CARGO_TARGET_DIR.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$(pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
CONNECTIONS=${CONNECTIONS:-32}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
REPS=${REPS:-3}
PORT=${PORT:-18090}
OPEN_SECONDS=${OPEN_SECONDS:-5}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
OUT=$ROOT/docs/loadgen-benchmark.md
URL=http://127.0.0.1:$PORT/healthz
WORK=$(mktemp -d)
SERVER_PID=

for tool in wrk oha curl python3 taskset; do
    command -v "$tool" >/dev/null || { echo "compare.sh: $tool is not installed" >&2; exit 2; }
done

cleanup() {
    if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "building release service and loadgen..." >&2
cargo build --release -q -p service -p loadgen
SERVICE=$TARGET_DIR/release/service
LOADGEN=$TARGET_DIR/release/loadgen

start_server() {
    LISTEN_ADDR=127.0.0.1:$PORT WORKERS=1 DEPENDENCY_MS=0 RUST_LOG=off \
        taskset -c "$SERVER_CPU" "$SERVICE" >/dev/null 2>&1 &
    SERVER_PID=$!
    local deadline=$((SECONDS + 20))
    until curl -fsS "$URL" >/dev/null 2>&1; do
        if ((SECONDS > deadline)); then echo "service did not start" >&2; exit 1; fi
        sleep 0.1
    done
}

stop_server() {
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

run_wrk() {
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" "$URL" >"$WORK/wrk.txt"
    awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt"
}

run_oha() {
    taskset -c "$CLIENT_CPU" oha -c "$CONNECTIONS" -z "${SECONDS_PER_RUN}s" --no-tui \
        --output-format json "$URL" >"$WORK/oha.json"
    json "$WORK/oha.json" "d['summary']['requestsPerSec']"
}

run_loadgen() {
    taskset -c "$CLIENT_CPU" "$LOADGEN" "http://127.0.0.1:$PORT" --connections "$CONNECTIONS" \
        --duration "${SECONDS_PER_RUN}s" --mix healthz=1 --slowest 0 --no-progress \
        --output "$WORK/lg.json" >/dev/null
    json "$WORK/lg.json" "d['total']['requests'] / d['elapsed_s']"
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
declare -a WRK OHA LG
for rep in $(seq "$REPS"); do
    for tool in wrk oha loadgen; do
        start_server
        taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d2s "$URL" >/dev/null
        case $tool in
            wrk) v=$(run_wrk); WRK+=("$v") ;;
            oha) v=$(run_oha); OHA+=("$v") ;;
            loadgen) v=$(run_loadgen); LG+=("$v") ;;
        esac
        stop_server
        printf 'rep %s %-8s %10.0f req/s\n' "$rep" "$tool" "$v" >&2
    done
done
M_WRK=$(median "${WRK[@]}"); M_OHA=$(median "${OHA[@]}"); M_LG=$(median "${LG[@]}")

# Open loop: the highest rate held within ±2 % with under 1 % late sends. A ladder up to the
# first failure, then three bisection steps between the last pass and that failure.
try_rate() {
    local rate=$1
    taskset -c "$CLIENT_CPU" "$LOADGEN" "http://127.0.0.1:$PORT" --rate "$rate" \
        --duration "${OPEN_SECONDS}s" --mix healthz=1 --slowest 0 --no-progress \
        --output "$WORK/open.json" >/dev/null
    json "$WORK/open.json" "'%.0f %.0f %.4f %.3f' % (d['requested_rate'], d['total']['achieved_rate'] or 0, d['total']['late_sends'] / max(d['total']['requests'], 1), d['total']['latency']['corrected']['p99_ms'])"
}
OPEN_ROWS=()
BEST=0
FAIL=0
probe_rate() {
    local r a late p99 ok
    read -r r a late p99 < <(try_rate "$1")
    ok=$(python3 -c "print('yes' if abs($a-$r)/$r <= 0.02 and $late < 0.01 else 'no')")
    OPEN_ROWS+=("| $r | $a | $(python3 -c "print(f'{$late*100:.2f}')") % | $p99 | $ok |")
    echo "open $r req/s: achieved $a, late $late, p99 $p99 ms -> $ok" >&2
    [[ $ok == yes ]]
}
start_server
taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d2s "$URL" >/dev/null
for rate in 10000 20000 30000 40000 50000 60000 70000 80000 90000 100000; do
    if probe_rate "$rate"; then BEST=$rate; else FAIL=$rate; break; fi
done
if ((FAIL > 0)); then
    lo=$BEST; hi=$FAIL
    for _ in 1 2 3; do
        mid=$(((lo + hi) / 2))
        if probe_rate "$mid"; then lo=$mid; BEST=$mid; else hi=$mid; fi
    done
fi
stop_server
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
{
    echo "# loadgen benchmark"
    echo
    echo "Written by \`loadgen/bench/compare.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'). Re-run it to refresh;"
    echo "absolute numbers are this machine's, compare the ratios."
    echo
    echo "- machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), kernel $(uname -r)"
    echo "- tools: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $(oha --version), loadgen $("$LOADGEN" --version | cut -d' ' -f2), $(rustc --version | cut -d' ' -f1-2)"
    echo "- load average before / after: $LOAD_BEFORE / $LOAD_AFTER (other work on the machine shows up here)"
    echo "- service: \`LISTEN_ADDR=127.0.0.1:$PORT WORKERS=1 DEPENDENCY_MS=0 RUST_LOG=off taskset -c $SERVER_CPU service\`, fresh per closed-loop run, 2 s wrk warm-up discarded"
    echo
    echo "## Closed loop, $CONNECTIONS connections, ${SECONDS_PER_RUN} s, generator pinned to CPU $CLIENT_CPU (median of $REPS, runs alternated)"
    echo
    echo "| tool | command | req/s (median) | runs | ratio to wrk |"
    echo "|---|---|---|---|---|"
    echo "| wrk | \`taskset -c $CLIENT_CPU wrk -t1 -c$CONNECTIONS -d${SECONDS_PER_RUN}s $URL\` | $(printf '%.0f' "$M_WRK") | $(printf '%.0f ' "${WRK[@]}")| 1.00 |"
    echo "| oha | \`taskset -c $CLIENT_CPU oha -c $CONNECTIONS -z ${SECONDS_PER_RUN}s --no-tui --output-format json $URL\` | $(printf '%.0f' "$M_OHA") | $(printf '%.0f ' "${OHA[@]}")| $(ratio "$M_OHA" "$M_WRK") |"
    echo "| loadgen | \`taskset -c $CLIENT_CPU loadgen http://127.0.0.1:$PORT --connections $CONNECTIONS --duration ${SECONDS_PER_RUN}s --mix healthz=1\` | $(printf '%.0f' "$M_LG") | $(printf '%.0f ' "${LG[@]}")| $(ratio "$M_LG" "$M_WRK") |"
    echo
    echo "loadgen / oha = $(ratio "$M_LG" "$M_OHA"); loadgen / wrk = $(ratio "$M_LG" "$M_WRK") (goal: ≥ 1 and ≥ 0.8)."
    echo "loadgen's figure is requests / elapsed wall time of the round (including the drain), like wrk's."
    echo
    echo "## Open loop: highest rate held within ±2 % with < 1 % late sends"
    echo
    echo "\`taskset -c $CLIENT_CPU loadgen http://127.0.0.1:$PORT --rate R --duration ${OPEN_SECONDS}s --mix healthz=1\`"
    echo "(in-flight cap 256, late = sent more than 2 ms after its planned time), one server for the whole ladder."
    echo
    echo "**Highest rate held: $BEST req/s.**"
    echo
    echo "| requested req/s | achieved req/s | late sends | corrected p99 ms | held |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${OPEN_ROWS[@]}"
} >"$OUT"
echo "wrote $OUT" >&2
