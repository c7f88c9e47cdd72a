#!/usr/bin/env bash
# Brings up what the container checks need on a Debian bookworm machine that reaches Debian's
# package archive and the crate registry but no container image registry:
#   1. Docker Engine (bookworm's docker.io), Compose v2 and buildx (from trixie, pinned low);
#   2. a running dockerd;
#   3. local stand-ins for the base images our Dockerfiles name, built only when the tag is
#      neither in the local store nor pullable.
# Every step is skipped when its result is already there, so a second run takes seconds.
# Stand-ins never change the project's Dockerfiles: they only carry the exact tags those name.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
state="${DOCKER_UP_STATE:-/var/tmp/lab-docker-up}"
mkdir -p "$state"

log() { printf '[docker-up] %s\n' "$*" >&2; }
die() { printf '[docker-up] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (installs packages and starts dockerd)"

apt_updated=
apt_update() {
  if [ -z "$apt_updated" ]; then
    apt-get update -qq
    apt_updated=1
  fi
}

# --- 1. Engine, Compose v2, buildx -------------------------------------------------------
if ! command -v dockerd >/dev/null 2>&1; then
  log "installing docker.io"
  apt_update
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi

# The trixie source reuses the URI of the machine's own bookworm entry (deb822 or one-line),
# so whatever mirror this machine is set up with is used; none is named here.
bookworm_uri() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    awk '
      /^[[:space:]]*$/ { if (uri && bw && !sec) { print uri; exit } uri=""; bw=0; sec=0; next }
      /^URIs:/ { uri=$2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) { if ($i == "bookworm") bw=1; if ($i ~ /security/) sec=1 } }
      END { if (uri && bw && !sec) print uri }
    ' "$f" | head -n1
  done
  if [ -e /etc/apt/sources.list ]; then
    awk '$1 == "deb" && $0 !~ /security/ {
           for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i ~ /:\/\//) { if ($(i+1) == "bookworm") print $i; break }
         }' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true
  fi
}

has_compose_v2() { docker compose version 2>/dev/null | grep -q 'v\?2\.'; }
has_buildx() { docker buildx version >/dev/null 2>&1; }

if ! has_compose_v2 || ! has_buildx; then
  if [ ! -e /etc/apt/sources.list.d/lab-trixie.sources ]; then
    uri="$(bookworm_uri | head -n1)"
    [ -n "$uri" ] || die "found no bookworm entry in the apt sources to derive a trixie source from"
    log "adding a trixie apt source (pinned to priority 100) from the bookworm entry"
    cat > /etc/apt/sources.list.d/lab-trixie.sources <<SRC
Types: deb
URIs: $uri
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    cat > /etc/apt/preferences.d/lab-trixie <<'PIN'
# Only what is asked for with -t trixie comes from trixie; nothing else upgrades.
Package: *
Pin: release n=trixie
Pin-Priority: 100
PIN
    apt_updated=
  fi
  log "installing Compose v2 and buildx from trixie"
  apt_update
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t trixie docker-compose docker-buildx >/dev/null
  has_compose_v2 || die "docker compose v2 still missing after install"
fi

# --- 2. The engine -----------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (log: $state/dockerd.log)"
  # setsid: the daemon outlives this script and is not in its process group.
  setsid dockerd >"$state/dockerd.log" 2>&1 < /dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { tail -n 20 "$state/dockerd.log" >&2; die "dockerd did not come up in 60 s"; }
fi
log "engine up: $(docker version --format 'server {{.Server.Version}}, client {{.Client.Version}}') / $(docker compose version --short)"

# --- 3. Base images ----------------------------------------------------------------------
# The tags come from the `ARG *_IMAGE=<default>` lines of the project's Dockerfiles.
base_images() {
  find "$repo/deploy" -name '*Dockerfile*' -not -path '*/ci/*' -print0 \
    | xargs -0 -r sed -n 's/^ARG [A-Z_]*IMAGE=\([^[:space:]]*\).*/\1/p' | sort -u
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

try_pull() {
  # A registry-less machine fails fast; the timeout guards against a hanging resolver.
  timeout 60 docker pull -q "$1" >/dev/null 2>&1
}

standin_debian() {  # $1: tag, $2: suite
  local tag="$1" suite="$2" root
  command -v debootstrap >/dev/null 2>&1 || { apt_update; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
  root="$(mktemp -d "$state/rootfs.XXXXXX")"
  log "building stand-in $tag with debootstrap (minbase, $suite)"
  debootstrap --variant=minbase "$suite" "$root" >"$state/debootstrap.log" 2>&1 \
    || { tail -n 20 "$state/debootstrap.log" >&2; die "debootstrap failed"; }
  # Trim what the official slim image leaves out too.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
         "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
  tar -C "$root" -c . | docker import -c 'CMD ["bash"]' - "$tag" >/dev/null
  rm -rf "$root"
}

standin_rust() {  # $1: tag (rust:<version>-slim-bookworm or similar)
  local tag="$1" ctx tc_name tc_dir base
  base="debian:bookworm-slim"
  ensure_image "$base"
  # The machine's default toolchain, located at run time.
  tc_name="$(rustup default 2>/dev/null | awk '{print $1}')"
  tc_dir="$(rustup toolchain list -v | awk -v n="$tc_name" '$1 == n { print $NF }')"
  [ -d "$tc_dir" ] || die "cannot locate the host toolchain ($tc_name)"
  log "building stand-in $tag from the host toolchain $tc_name ($("$tc_dir/bin/rustc" --version))"
  ctx="$(mktemp -d "$state/rust-ctx.XXXXXX")"
  mkdir -p "$ctx/toolchain" "$ctx/ca-certificates"
  # Hard links when the toolchain shares a file system with the context, copies otherwise.
  cp -al "$tc_dir/." "$ctx/toolchain/" 2>/dev/null || cp -a "$tc_dir/." "$ctx/toolchain/"
  rm -rf "$ctx/toolchain/share/doc"
  cp "$(command -v rustup)" "$ctx/rustup"
  # This machine's extra certificate authorities (needed for cargo's TLS here); stand-in only.
  cp /usr/local/share/ca-certificates/*.crt "$ctx/ca-certificates/" 2>/dev/null || true
  cp "$here/rust-standin.Dockerfile" "$ctx/Dockerfile"
  DOCKER_BUILDKIT=1 docker build -q --build-arg BASE_IMAGE="$base" -t "$tag" "$ctx" >/dev/null
  rm -rf "$ctx"
}

ensure_image() {
  local tag="$1"
  have_image "$tag" && return 0
  if try_pull "$tag"; then log "pulled $tag"; return 0; fi
  case "$tag" in
    debian:bookworm-slim|debian:bookworm) standin_debian "$tag" bookworm ;;
    rust:*bookworm*) standin_rust "$tag" ;;
    *) log "warning: no stand-in recipe for $tag; builds naming it will fail here" ;;
  esac
}

for image in $(base_images); do
  ensure_image "$image"
done
log "base images ready: $(base_images | tr '\n' ' ')"
