#!/usr/bin/env bash
# Container checks (issue 5): builds the same Dockerfiles and compose file a user runs, starts
# the api fleet and the canary as real containers, drives them with the loadgen container and
# asserts what the lab promises. Stops and removes everything it started, also on failure.
#
#   bash deploy/ci/containers.sh
#
# Needs root on a Debian bookworm machine; docker-up.sh installs and starts what is missing.
# The assertions are the `labcheck` binary's subcommands, built here with the host's cargo;
# this script is the glue that starts things and hands their output to them.
# Knobs (environment): CANARY_HTTP_PORT / CONSOLE_PORT (host ports, default 8080 / 6669),
# CI_LOAD_DURATION (default 20s), CI_BASELINE_DURATION (default 10s), CI_OOM_LIMIT (the
# canary's memory limit while it is driven out of memory on purpose, default 96m).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"

project=taillab-ci         # never touches a lab a person is running under the default name
bad_project=taillab-ci-badinput
out="$repo/out/ci"
console_port="${CONSOLE_PORT:-6669}"
http_port="${CANARY_HTTP_PORT:-8080}"
load_duration="${CI_LOAD_DURATION:-20s}"
baseline_duration="${CI_BASELINE_DURATION:-10s}"
oom_limit="${CI_OOM_LIMIT:-96m}"
export CONSOLE_PORT="$console_port" CANARY_HTTP_PORT="$http_port"

t0=$SECONDS
step() { printf '\n[containers] %s (t=%ss)\n' "$*" "$((SECONDS - t0))"; }
fail() { printf '[containers] FAIL: %s\n' "$*" >&2; exit 1; }
compose() { docker compose -p "$project" "$@"; }
labcheck() { cargo run --quiet --locked -p labcheck --bin labcheck -- "$@"; }

cleanup() {
  local rc=$?
  if [ "$rc" != 0 ] && docker info >/dev/null 2>&1; then
    echo "[containers] failed (exit $rc); last log lines:" >&2
    compose logs --tail 20 --no-color >&2 2>/dev/null || true
  fi
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    compose down -v --remove-orphans >/dev/null 2>&1 || true
    docker compose -p "$bad_project" down -v --remove-orphans >/dev/null 2>&1 || true
  fi
  exit "$rc"
}
trap cleanup EXIT

step "engine, Compose v2 and base images"
bash "$here/docker-up.sh"

step "labcheck: the checks, built on the host"
cargo build --quiet --locked -p labcheck --bin labcheck

step "static checks: compose file, defaults when .env lacks a value"
compose config -q
defaults="$(env -u API_REPLICAS -u SLOW_DISK_MS -u LOADGEN_RATE -u LOADGEN_MIX \
  -u CANARY_MEMORY_LIMIT -u TOKIO_CONSOLE_RETENTION docker compose -p "$project" --env-file /dev/null config --format json)"
labcheck compose-defaults - <<<"$defaults"

step "docker compose build"
build_start=$SECONDS
compose build api canary loadgen
echo "build: $((SECONDS - build_start)) s"
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' 'taillab/*'
for image in taillab/service:release taillab/service:canary taillab/loadgen:local; do
  user="$(docker image inspect -f '{{.Config.User}}' "$image")"
  case "$user" in ""|root|0|0:*) fail "$image runs as root" ;; esac
done
for image in taillab/service:release taillab/service:canary; do
  [ "$(docker image inspect -f '{{if .Config.Healthcheck}}yes{{end}}' "$image")" = yes ] \
    || fail "$image has no healthcheck"
done
release_bytes="$(docker image inspect -f '{{.Size}}' taillab/service:release)"
[ "$release_bytes" -le $((40 * 1000 * 1000)) ] || fail "release image is $release_bytes bytes (> 40 MB)"
echo "ok: non-root images, healthchecks, release image $((release_bytes / 1000000)) MB"

step "bad input: an invalid SLOW_DISK_MS stops the replica with one line in its logs"
SLOW_DISK_MS=abc API_REPLICAS=1 docker compose -p "$bad_project" up -d --no-build --no-deps api
for _ in $(seq 1 30); do
  state="$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$(docker compose -p "$bad_project" ps -aq api)")"
  [ "${state%% *}" = exited ] && break
  sleep 1
done
[ "$state" = "exited 2" ] || fail "bad SLOW_DISK_MS: container state '$state', expected 'exited 2'"
bad_log="$(docker compose -p "$bad_project" logs --no-log-prefix --no-color api | sed 's/\x1b\[[0-9;]*[A-Za-z]//g')"
printf '  %s\n' "$bad_log"
[ "$(printf '%s\n' "$bad_log" | grep -c .)" = 1 ] || fail "expected exactly one log line"
grep -q "invalid value 'abc'" <<<"$bad_log" || fail "the log line does not name the bad value"
docker compose -p "$bad_project" down -v >/dev/null 2>&1
echo "ok: exit code 2 and one error line"

step "up: api fleet and canary, waiting for their healthchecks"
compose up -d --no-build --wait --wait-timeout 120 api canary
mapfile -t api_ids < <(compose ps -q api)
api_hosts=()
for id in "${api_ids[@]}"; do api_hosts+=("$(docker inspect -f '{{.Config.Hostname}}' "$id")"); done
echo "api replicas: ${api_hosts[*]}"
[ "${#api_hosts[@]}" = 3 ] || fail "expected 3 api replicas, found ${#api_hosts[@]}"

step "canary: HTTP and the console on the host's loopback"
# python3, not curl (CI machines have only the former): one GET, glue rather than a check.
health="$(python3 -c 'import sys,urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
  "http://127.0.0.1:$http_port/healthz")"
echo "  $health"
grep -q '"flavor":"canary"' <<<"${health// /}" || fail "127.0.0.1:$http_port is not the canary"
labcheck console "127.0.0.1:$console_port" 15s --short-locations \
  || fail "the canary's console did not answer, or shows long task locations"
canary_id="$(compose ps -q canary)"
limits="$(docker inspect -f '{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.RestartPolicy.Name}}' "$canary_id")"
[ "$limits" = "$((512 * 1024 * 1024)) $((512 * 1024 * 1024)) unless-stopped" ] \
  || fail "canary memory, memory+swap, restart policy: '$limits'"
echo "  canary container: memory, memory+swap, restart policy: $limits"
for id in "${api_ids[@]}"; do
  [ -z "$(docker port "$id")" ] || fail "api replica $id publishes ports: $(docker port "$id")"
done
# From inside the lab network: every replica answers HTTP but has nothing on the console port.
compose exec -T canary bash -c '
  for ip in $(getent ahostsv4 api | cut -d" " -f1 | sort -u); do
    (exec 3<>"/dev/tcp/$ip/8080") 2>/dev/null || { echo "api $ip: no HTTP"; exit 1; }
    if (exec 3<>"/dev/tcp/$ip/6669") 2>/dev/null; then echo "api $ip: console port open"; exit 1; fi
    echo "  api $ip: http open, 6669 closed"
  done' || fail "a release replica exposes a console port"
echo "ok: console on the canary only"

mkdir -p "$out"
rm -f "$out"/*.json
loadgen() {  # $1: report name, then extra `docker compose run` options
  local name="$1"; shift
  compose run --rm --no-deps -T --user "$(id -u):$(id -g)" -v "$out:/out" \
    -e LOADGEN_ROUNDS=1 "$@" loadgen --no-progress --output "/out/$name.json"
}

step "loadgen baseline: the victim alone ($baseline_duration)"
loadgen baseline -e LOADGEN_MIX=orders=100 -e LOADGEN_DURATION="$baseline_duration"

step "loadgen default scenario: the victim beside /config/sync ($load_duration)"
loadgen loaded -e LOADGEN_MIX=orders=99,config_sync=1 -e LOADGEN_DURATION="$load_duration"

step "assert: every replica and the canary served requests"
labcheck fleet "$out/loaded.json" "${api_hosts[@]}"

step "assert: the victim's tail beside /config/sync"
labcheck tail "$out/baseline.json" "$out/loaded.json" 5

step "assert: the slowest request_ids are in the fleet's JSON logs"
ok=
for _ in 1 2 3 4 5; do
  compose logs --no-log-prefix --no-color api > "$out/api.log"
  if labcheck slowest "$out/loaded.json" "$out/api.log"; then ok=1; break; fi
  sleep 2  # the non-blocking writer may still hold the last lines
done
[ -n "$ok" ] || fail "slowest request_ids missing from the api logs"

step "assert: the watchdog names every /config/sync request in the fleet's logs while it blocks, with its culprit stack"
labcheck watchdog "$out/api.log" 250ms

step "assert: loadgen names config_sync as the top suspect (the culprit in one screen)"
labcheck suspects "$out/loaded.json"

step "canary: churned past a $oom_limit memory limit, killed, restarted; the fleet goes on"
since="$(date +%s)"
# Without culprit stacks: symbolizing the canary's debug info alone takes ~110 MiB, over this limit.
CANARY_MEMORY_LIMIT="$oom_limit" CANARY_BLOCKED_STACKS=false \
  compose up -d --no-build --no-deps --wait --wait-timeout 60 canary
canary_id="$(compose ps -q canary)"
python3 "$here/churn.py" "$http_port" "$canary_id" 90 || fail "the canary was not restarted under churn"
# `--until` counts whole seconds: wait out the current one so the kill's event is inside it.
sleep 1
ooms="$(docker events --since "$since" --until "$(( $(date +%s) + 1 ))" --filter "container=$canary_id" \
  --filter event=oom --format '{{.Action}}' | grep -c oom || true)"
[ "$ooms" -ge 1 ] || fail "no OOM event for the canary: it restarted for another reason"
for _ in $(seq 1 60); do
  [ "$(docker inspect -f '{{.State.Health.Status}}' "$canary_id")" = healthy ] && break
  sleep 1
done
[ "$(docker inspect -f '{{.State.Health.Status}}' "$canary_id")" = healthy ] \
  || fail "the canary did not come back healthy after its OOM kill"
for id in "${api_ids[@]}"; do
  [ "$(docker inspect -f '{{.State.Running}} {{.RestartCount}}' "$id")" = "true 0" ] \
    || fail "api replica $id was disturbed by the canary's OOM kill"
done
echo "ok: $ooms OOM kill(s), canary restarted and healthy again, fleet untouched"

step "down"
compose down -v --remove-orphans
printf '\n[containers] all container checks passed in %ss\n' "$((SECONDS - t0))"
