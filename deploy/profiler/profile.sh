#!/usr/bin/env bash
# The profiler container's entry point. It runs in the canary's PID namespace
# (compose `pid: "service:canary"`), finds the service there by name, and records one window:
#
#   on-CPU    perf record -F $FREQ -g                              -> oncpu.folded, oncpu.svg
#   off-CPU   perf record -e sched:sched_switch --switch-events
#             --call-graph dwarf, folded by offcpu-fold            -> offcpu.folded, offcpu.svg
#   syscalls  perf trace --duration $TRACE_MS with user stacks     -> trace.txt
#
# The three recordings run side by side over the same window. Every output is written under a
# temporary name and renamed into $OUT_DIR only when complete, so a reader never sees a
# half-written SVG. Any failure exits non-zero with one line on stderr.
#
# Settings (environment):
#   WINDOW_SECS   length of the recording window, seconds              (default 5)
#   TARGET_COMM   process name of the service to profile                (default service)
#   TARGET_PID    profile this pid instead of searching by name (runs outside compose)
#   FREQ          on-CPU sampling frequency, Hz                         (default 99)
#   TRACE_MS      perf trace threshold: syscalls slower than this, ms   (default 50)
#   OUT_DIR       where the results go (a bind mount of ./out)          (default /out)
set -uo pipefail

WINDOW_SECS="${WINDOW_SECS:-5}"
TARGET_COMM="${TARGET_COMM:-service}"
FREQ="${FREQ:-99}"
TRACE_MS="${TRACE_MS:-50}"
OUT_DIR="${OUT_DIR:-/out}"

die() { printf 'profiler: %s\n' "$*" >&2; exit 1; }
log() { printf 'profiler: %s\n' "$*" >&2; }

for n in WINDOW_SECS FREQ TRACE_MS; do
  [[ "${!n}" =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive whole number, got '${!n}'"
done

# --- preconditions, each with its own one-line reason ------------------------------------
command -v perf >/dev/null 2>&1 || die "perf is not installed in this image"
perf --version >/dev/null 2>&1 || die "perf does not run here: $(perf --version 2>&1 | head -n1)"
for tool in offcpu-fold inferno-collapse-perf inferno-flamegraph; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed in this image"
done

# Capabilities from the kernel's view of this process (no libcap tools needed).
cap_eff=$(awk '/^CapEff:/ { print $2 }' /proc/self/status)
has_cap() { (( (0x$cap_eff >> $1) & 1 )); }
has_cap 21 || die "missing CAP_SYS_ADMIN: perf cannot open tracepoints or other processes' events (compose: cap_add: [SYS_ADMIN, SYSLOG])"
has_cap 34 || die "missing CAP_SYSLOG: kernel frames would have no symbols (compose: cap_add: [SYS_ADMIN, SYSLOG])"

# The target: the oldest process named $TARGET_COMM in this PID namespace.
pid="${TARGET_PID:-}"
[ -z "$pid" ] || [ -d "/proc/$pid" ] || die "no process with pid $pid"
[ -n "$pid" ] || for dir in /proc/[0-9]*; do
  [ "$(cat "$dir/comm" 2>/dev/null)" = "$TARGET_COMM" ] || continue
  candidate=${dir#/proc/}
  if [ -z "$pid" ] || [ "$candidate" -lt "$pid" ]; then pid=$candidate; fi
done
[ -n "$pid" ] || die "no process named '$TARGET_COMM' in this PID namespace (is the canary running, and is pid: \"service:canary\" set?)"

# perf resolves user symbols by path inside this container: the same binary must be here.
# (/proc/PID/exe would need CAP_SYS_PTRACE for another uid's process; the maps do not.)
exe=$(awk '$6 ~ /^\// { print $6; exit }' "/proc/$pid/maps" 2>/dev/null) || exe=
[ -n "$exe" ] || die "cannot read /proc/$pid/maps: not allowed to inspect the target"
[ -r "$exe" ] || die "the target's binary $exe is not present in this container at the same path"

# Root here, but not the canary's uid: perf reaches another user's threads through
# CAP_SYS_ADMIN (the kernel's perfmon_capable check), so no CAP_SYS_PTRACE is needed.
work=$(mktemp -d /tmp/profile.XXXXXX) || die "cannot create a work directory"
trap 'rm -rf "$work"' EXIT

mkdir -p "$OUT_DIR" 2>/dev/null && [ -w "$OUT_DIR" ] || die "$OUT_DIR is not writable (bind-mount ./out there)"

# A one-shot probe so that a refused tracepoint fails here with perf's own reason.
if ! probe=$(cd "$work" && perf record -q -o "$work/probe.data" -e sched:sched_switch -p "$pid" -- sleep 0.1 2>&1); then
  die "perf cannot record sched:sched_switch on pid $pid: $(printf '%s' "$probe" | grep -v '^$' | head -n1)"
fi

# --- the window ----------------------------------------------------------------------------
log "recording pid $pid ($exe) for ${WINDOW_SECS}s: on-CPU at ${FREQ} Hz, off-CPU, syscalls over ${TRACE_MS} ms"
started=$SECONDS
# Buffer sizes (-m, pages per CPU) are explicit: the three recorders share root's locked-memory
# allowance (perf_event_mlock_kb per CPU plus RLIMIT_MEMLOCK), and without CAP_IPC_LOCK perf
# trace's default alone is refused. Each recorder times its window with `-- sleep`, which starts
# once perf is attached (attaching takes seconds on a busy machine); `timeout` only guards hangs.
guard=$((WINDOW_SECS + 120))
(cd "$work" && timeout -k 5 "$guard" perf record -q -m 16 -F "$FREQ" -g -p "$pid" \
  -o "$work/on.data" -- sleep "$WINDOW_SECS") >"$work/on.log" 2>&1 & on=$!
(cd "$work" && timeout -k 5 "$guard" perf record -q -m 128 -e sched:sched_switch --switch-events \
  --call-graph dwarf -p "$pid" -o "$work/off.data" -- sleep "$WINDOW_SECS") >"$work/off.log" 2>&1 & off=$!
(cd "$work" && timeout -k 5 "$guard" perf trace -m 32 --duration "$TRACE_MS" --call-graph fp \
  -p "$pid" -o "$work/trace.txt" -- sleep "$WINDOW_SECS") >"$work/trace.log" 2>&1 & tr=$!
wait "$on" || die "on-CPU recording failed: $(grep -v '^$' "$work/on.log" | head -n1)"
wait "$off" || die "off-CPU recording failed: $(grep -v '^$' "$work/off.log" | head -n1)"
wait "$tr" || die "perf trace failed: $(grep -v '^$' "$work/trace.log" | head -n1)"
[ -s "$work/trace.txt" ] || : > "$work/trace.txt"
log "recorded in $((SECONDS - started))s; drawing"

# --- folding and drawing -------------------------------------------------------------------
perf script -i "$work/on.data" 2>"$work/on-script.log" | inferno-collapse-perf > "$work/oncpu.folded" \
  || die "folding the on-CPU profile failed: $(head -n1 "$work/on-script.log")"
perf script -i "$work/off.data" --show-switch-events -F comm,tid,time,event,trace,ip,sym,dso \
  2>"$work/off-script.log" | offcpu-fold > "$work/offcpu.folded" 2>"$work/fold.log" \
  || die "folding the off-CPU profile failed: $(cat "$work/fold.log" "$work/off-script.log" | head -n1)"
log "$(tail -n1 "$work/fold.log")"
[ -s "$work/oncpu.folded" ] || die "the on-CPU profile is empty: was the service busy during the window?"
[ -s "$work/offcpu.folded" ] || die "the off-CPU profile is empty: no thread slept and woke during the window"

inferno-flamegraph --title "on-CPU: $TARGET_COMM (pid $pid), ${WINDOW_SECS}s at ${FREQ} Hz" \
  < "$work/oncpu.folded" > "$work/oncpu.svg" || die "drawing oncpu.svg failed"
inferno-flamegraph --colors io --countname us \
  --title "off-CPU: $TARGET_COMM (pid $pid), ${WINDOW_SECS}s, microseconds off CPU" \
  < "$work/offcpu.folded" > "$work/offcpu.svg" || die "drawing offcpu.svg failed"

# Publish: copy next to the destination, then rename (atomic within one file system).
for f in oncpu.folded offcpu.folded trace.txt oncpu.svg offcpu.svg; do
  cp "$work/$f" "$OUT_DIR/.$f.tmp" && mv -f "$OUT_DIR/.$f.tmp" "$OUT_DIR/$f" \
    || die "cannot write $OUT_DIR/$f"
done
log "wrote $OUT_DIR/{oncpu,offcpu}.svg, their .folded files and trace.txt in $((SECONDS - started))s"
