#!/usr/bin/env bash
# Measures what one service instance writes for the log stack under the lab's own load: the
# numbers docs/scale-out.md ("Sizing") multiplies up to a fleet. It runs the real service and
# loadgen on loopback (debug builds: the lines are the same in every build), with the lab's
# defaults (WORKERS=2, RUST_LOG=info, loadgen's mix orders=99,config_sync=1) and a pod-like
# INSTANCE, then reads the service's stdout:
#   requests        access lines ("request finished"), one per request
#   lines/request   every line written while the load ran, per request
#   bytes/line      the line as Loki stores it (without the newline); also the longest
#   SM bytes/line   structured metadata as Alloy attaches it (request_id, route, status,
#                   latency_ms: name + value), which Loki counts toward the ingestion rate
# Settings (environment): RATE (default 200), DURATION (default 20s), MIX (default the lab's).
# Prints a Markdown table. Needs cargo and jq.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

RATE="${RATE:-200}"
DURATION="${DURATION:-20s}"
MIX="${MIX:-orders=99,config_sync=1}"
die() { printf 'log-volume: %s\n' "$*" >&2; exit 2; }
command -v jq >/dev/null 2>&1 || die "jq is needed"

cargo build --quiet -p service -p loadgen
bin="$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)/debug"

work="$(mktemp -d)"
trap 'kill "$svc" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

LISTEN_ADDR=127.0.0.1:0 LOG_FORMAT=json RUST_LOG=info WORKERS=2 SLOW_DISK_MS=300 \
  DEPENDENCY_MS=5 INSTANCE=api-7d9f8c6b5-x2k4q "$bin/service" >"$work/out.jsonl" 2>"$work/err" &
svc=$!
addr=""
for _ in $(seq 100); do
  addr="$(jq -r 'select(.fields.message == "listening") | .fields.addr' "$work/out.jsonl" 2>/dev/null | head -n1)"
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || die "the service did not start: $(head -c 300 "$work/err")"
start_lines=$(wc -l <"$work/out.jsonl")

"$bin/loadgen" "http://$addr" --rate "$RATE" --mix "$MIX" --duration "$DURATION" --rounds 1 \
  >"$work/report.txt" 2>&1 || die "loadgen failed: $(tail -n 3 "$work/report.txt")"
sleep 1
kill -TERM "$svc"
wait "$svc" || true

tail -n +"$((start_lines + 1))" "$work/out.jsonl" | grep -v '"message":"stopped"' >"$work/load.jsonl" || true
# Bytes as written (jq re-serialising a line could change its length), newlines left out.
bytes=$(( $(wc -c <"$work/load.jsonl") - $(wc -l <"$work/load.jsonl") ))
longest=$(LC_ALL=C awk '{ if (length($0) > m) m = length($0) } END { print m + 0 }' "$work/load.jsonl")
jq -rs --arg rate "$RATE" --arg duration "$DURATION" --arg mix "$MIX" --argjson bytes "$bytes" --argjson longest "$longest" '
  def sm(l): [ ["request_id", (l.request_id // l.span.request_id)],
               ["route", l.fields.route], ["status", l.fields.status],
               ["latency_ms", l.fields.latency_ms] ]
             | map(select(.[1] != null) | (.[0] | length) + (.[1] | tostring | length)) | add // 0;
  (map(select(.fields.message == "request finished")) | length) as $req
  | (map(sm(.)) | add) as $sm
  | (map(select(.fields.message == "request finished" and .fields.route == "/api/orders/{id}")) | length) as $orders
  | "| load | requests | lines | lines/request | bytes/line | longest line | SM bytes/line | bytes/request (line + SM) |",
    "|---|---|---|---|---|---|---|---|",
    "| \($mix) at \($rate)/s for \($duration) | \($req) (\($orders) orders) | \(length) | \((length / $req * 100 | round) / 100) | \(($bytes / length) | round) | \($longest) | \(($sm / length) | round) | \((($bytes + $sm) / $req) | round) |"
' "$work/load.jsonl"
