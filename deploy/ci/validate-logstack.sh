#!/usr/bin/env bash
# Static checks of the log stack that need the Docker CLI but no image registry:
#   1. `docker compose config -q`: the whole docker-compose.yml is valid, with .env and with
#      every variable at its default;
#   2. every image the resolved file names is pinned (a tag other than `latest`, or a digest);
#   3. only where the images happen to be in the local store (never pulled here): Loki's
#      `-verify-config` and Alloy's `validate` on the lab's configs.
# The cargo side (provisioning, dashboard, queries, the Alloy pipeline against the real
# service's lines) is `cargo test -p labcheck`, part of `cargo test --workspace`.
#
# Without the docker CLI and its compose plugin: under CI=true it runs deploy/ci/docker-up.sh
# first (as the container checks do; every step there is skipped when already done),
# elsewhere it prints SKIP and succeeds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

log() { printf '[validate-logstack] %s\n' "$*" >&2; }

if ! docker compose version >/dev/null 2>&1; then
  if [ "${CI:-}" != true ]; then
    log "SKIP: no docker CLI with the compose plugin on this machine"
    exit 0
  fi
  log "no docker compose: deploy/ci/docker-up.sh"
  bash deploy/ci/docker-up.sh
  docker compose version >/dev/null
fi

log "docker compose config (with .env)"
docker compose config -q

log "docker compose config (every variable at its default)"
docker compose --env-file /dev/null config -q

log "every image pinned"
unpinned=0
while read -r image; do
  [ -n "$image" ] || continue
  case "$image" in
    *@sha256:*) continue ;;
  esac
  name="${image##*/}"
  tag=""
  case "$name" in
    *:*) tag="${name##*:}" ;;
  esac
  if [ -z "$tag" ] || [ "$tag" = latest ]; then
    log "error: image not pinned: $image"
    unpinned=1
  fi
done < <(docker compose config --images)
[ "$unpinned" = 0 ]

image_of() { docker compose config --images | grep -E "^grafana/$1:" | head -n1; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

loki="$(image_of loki)"
if have_image "$loki"; then
  log "loki -verify-config with $loki"
  docker run --rm -v "$PWD/deploy/loki:/etc/loki:ro" "$loki" \
    -config.file=/etc/loki/config.yaml -verify-config
else
  log "not in the local store, not pulled: $loki (config checked by labcheck only)"
fi

alloy="$(image_of alloy)"
if have_image "$alloy"; then
  log "alloy validate with $alloy"
  docker run --rm -v "$PWD/deploy/alloy:/etc/alloy:ro" "$alloy" validate /etc/alloy/config.alloy
else
  log "not in the local store, not pulled: $alloy (config checked by labcheck only)"
fi

log "ok"
