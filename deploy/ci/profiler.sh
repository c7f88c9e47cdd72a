#!/usr/bin/env bash
# Profiler check (issue 7): with the canary running under load from the loadgen container, the
# profiler container records one window and must, within a time bound, write flamegraphs whose
# *content* shows what the lab claims:
#   offcpu.svg  the /config/sync handler's blocking path (load_config_sync -> std::thread::sleep
#               -> clock_nanosleep), carrying most of that handler's off-CPU time (from the
#               folded file);
#   oncpu.svg   /cpu/inline's burn_cpu, while the blocking sleep is absent or negligible there;
#   trace.txt   perf trace's slow clock_nanosleep.
# Also the bad-input paths: no capabilities, no target process. Removes what it started.
#
#   bash deploy/ci/profiler.sh
#
# Knobs (environment): PROFILE_WINDOW_SECS (default 5), PROFILER_BOUND_SECS (default 120),
# CANARY_HTTP_PORT / CONSOLE_PORT (host ports, default 18080 / 16669 here).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"

project=taillab-prof
window="${PROFILE_WINDOW_SECS:-5}"
bound="${PROFILER_BOUND_SECS:-120}"
export PROFILE_WINDOW_SECS="$window"
export CANARY_HTTP_PORT="${CANARY_HTTP_PORT:-18080}" CONSOLE_PORT="${CONSOLE_PORT:-16669}"
out="$repo/out"

t0=$SECONDS
step() { printf '\n[profiler] %s (t=%ss)\n' "$*" "$((SECONDS - t0))"; }
fail() { printf '[profiler] FAIL: %s\n' "$*" >&2; exit 1; }
compose() { docker compose -p "$project" --profile profile "$@"; }

scratch=$(mktemp -d)
cleanup() {
  local rc=$?
  if [ "$rc" != 0 ] && docker info >/dev/null 2>&1; then
    compose logs --tail 20 --no-color canary >&2 2>/dev/null || true
  fi
  if docker info >/dev/null 2>&1; then
    docker rm -f "$project-load" >/dev/null 2>&1 || true
    compose down -v --remove-orphans >/dev/null 2>&1 || true
  fi
  rm -rf "$scratch"
  exit "$rc"
}
trap cleanup EXIT

step "engine, Compose v2 and base images"
bash "$here/docker-up.sh"

step "build canary, loadgen, then the profiler (it copies the canary's binary)"
compose build canary loadgen
compose build profiler
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' 'taillab/*'

step "start the canary"
compose up -d --no-deps canary
canary_id=$(compose ps -q canary)
deadline=$((SECONDS + 90))
until [ "$(docker inspect -f '{{.State.Health.Status}}' "$canary_id")" = healthy ]; do
  [ $SECONDS -lt $deadline ] || fail "canary not healthy within 90 s"
  sleep 1
done

step "bad input: no capabilities, no target process (one line, non-zero, no SVG)"
expect_refusal() {  # $1: what the line must mention; the rest: docker run arguments
  local mention="$1" rc=0 err
  shift
  mkdir -p "$scratch/bad" && rm -f "$scratch/bad"/*
  err=$(docker run --rm -v "$scratch/bad:/out" "$@" taillab/profiler:local 2>&1 >/dev/null) || rc=$?
  printf '  exit %s: %s\n' "$rc" "$err"
  [ "$rc" != 0 ] || fail "profiler succeeded where it should refuse ($mention)"
  [ "$(printf '%s\n' "$err" | wc -l)" = 1 ] || fail "expected one line, got: $err"
  case "$err" in *"$mention"*) ;; *) fail "expected '$mention' in: $err" ;; esac
  [ -z "$(ls -A "$scratch/bad")" ] || fail "refused run left files: $(ls -A "$scratch/bad")"
}
expect_refusal "CAP_SYS_ADMIN" --pid "container:$canary_id"
expect_refusal "no process named 'service'" --cap-add SYS_ADMIN --cap-add SYSLOG

step "load on the canary: orders, /config/sync and /cpu/inline"
compose run -d --no-deps --name "$project-load" \
  -e LOADGEN_TARGETS=http://canary:8080 -e LOADGEN_RATE=40 \
  -e LOADGEN_MIX=orders=85,config_sync=5,cpu_inline=10 \
  -e LOADGEN_DURATION=$((window + 60))s -e LOADGEN_ROUNDS=1 -e LOADGEN_WAIT=30s \
  loadgen >/dev/null
sleep 3

step "profile ${window}s (bound ${bound}s)"
mkdir -p "$out"
rm -f "$out"/oncpu.svg "$out"/offcpu.svg "$out"/oncpu.folded "$out"/offcpu.folded "$out"/trace.txt
started=$SECONDS
timeout "$bound" docker compose -p "$project" --profile profile run --rm --no-deps profiler \
  || fail "profiler run failed or exceeded ${bound}s"
took=$((SECONDS - started))
echo "profiler run: ${took}s for a ${window}s window"
docker rm -f "$project-load" >/dev/null 2>&1 || true

step "assert the flamegraphs' content"
python3 - "$out" <<'PY'
import html, pathlib, re, sys

out = pathlib.Path(sys.argv[1])

def svg_frames(name):
    text = (out / name).read_text()
    assert text.rstrip().endswith("</svg>"), f"{name} is not a complete SVG"
    # inferno writes one <title>frame (count …)</title> per rectangle.
    return [html.unescape(t) for t in re.findall(r"<title>(.*?)</title>", text, re.S)]

def folded(name):
    rows = []
    for line in (out / name).read_text().splitlines():
        stack, count = line.rsplit(" ", 1)
        rows.append((stack, int(count)))
    assert rows, f"{name} is empty"
    return rows

def has(frames, needle):
    return any(needle in f for f in frames)

SLEEP = ("std::thread::functions::sleep", "nanosleep")

# --- off-CPU ---
off_svg = svg_frames("offcpu.svg")
assert has(off_svg, "load_config_sync"), "offcpu.svg: no load_config_sync frame"
assert has(off_svg, "std::thread::functions::sleep") or has(off_svg, "nanosleep"), \
    "offcpu.svg: no std::thread::sleep / nanosleep frame"
off = folded("offcpu.folded")
handler = sum(c for s, c in off if "load_config_sync" in s)
blocking = sum(c for s, c in off if "load_config_sync" in s and any(k in s for k in SLEEP))
total = sum(c for _, c in off)
assert handler > 0, "no off-CPU time under load_config_sync"
share = blocking / handler
print(f"off-CPU: load_config_sync {handler/1e3:.0f} ms, of which the sleep {blocking/1e3:.0f} ms "
      f"({share:.0%}); all stacks {total/1e3:.0f} ms")
assert share >= 0.8, f"the blocking sleep carries only {share:.0%} of the handler's off-CPU time"

# --- on-CPU ---
on_svg = svg_frames("oncpu.svg")
assert has(on_svg, "burn_cpu"), "oncpu.svg: no burn_cpu frame"
on = folded("oncpu.folded")
on_total = sum(c for _, c in on)
burn = sum(c for s, c in on if "burn_cpu" in s)
sleep_on = sum(c for s, c in on if "load_config_sync" in s and any(k in s for k in SLEEP))
# Counts are perf's sample periods (cpu-clock nanoseconds), so compare shares.
print(f"on-CPU: burn_cpu {burn / on_total:.1%}, load_config_sync's sleep {sleep_on / on_total:.1%}")
assert burn >= 0.05 * on_total, f"burn_cpu is only {burn / on_total:.1%} of on-CPU time"
assert sleep_on <= 0.02 * on_total, f"the sleep shows on-CPU: {sleep_on / on_total:.1%}"

# --- perf trace ---
trace = (out / "trace.txt").read_text()
slow = [l for l in trace.splitlines() if "clock_nanosleep" in l]
print(f"perf trace: {len(slow)} clock_nanosleep lines")
assert slow, "trace.txt: no slow clock_nanosleep"

leftovers = [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
assert not leftovers, f"temporary files left in out/: {leftovers}"
print("ok: flamegraph content as expected")
PY
[ "$took" -le "$bound" ] || fail "profiler took ${took}s, bound ${bound}s"
step "profiler check passed"
