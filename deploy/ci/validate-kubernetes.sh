#!/usr/bin/env bash
# Static checks of deploy/kubernetes/ that need no cluster, no chart and no image registry:
#   1. both kustomizations (app, profiled) render with kustomize;
#   2. every rendered object validates, strictly (unknown fields are errors), against the
#      Kubernetes API schemas of the oldest and the newest version the manifests claim:
#      1.30 (preStop's sleep action is on by default from there) and 1.37 (kubernetes-validate);
#   3. the Loki values files type-check against the chart schema excerpt in
#      deploy/kubernetes/logstack/schema/ (check-jsonschema);
#   4. alloy-config.sh assembles the Alloy config, and only where the Alloy image happens to
#      be in the local store (never pulled), `alloy validate` checks it.
# The label contract, the pipeline text and the chart's render rules are labcheck's
# kubernetes tests (`cargo test -p labcheck --test kubernetes`, part of the workspace tests).
#
# Tools: kustomize (Debian's package, from trixie under CI=true; or kubectl's built-in
# `kubectl kustomize`), and a venv with the pinned deploy/ci/kubernetes-requirements.txt under
# $K8S_VALIDATE_STATE (default /var/tmp/lab-k8s-validate), reused when already there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

log() { printf '[validate-kubernetes] %s\n' "$*" >&2; }
die() { printf '[validate-kubernetes] error: %s\n' "$*" >&2; exit 1; }

state="${K8S_VALIDATE_STATE:-/var/tmp/lab-k8s-validate}"
versions=(1.30.0 1.37.0)
mkdir -p "$state"

# --- kustomize -----------------------------------------------------------------------------
kustomize_build() {
  if command -v kustomize >/dev/null 2>&1; then
    kustomize build "$1"
  else
    kubectl kustomize "$1"
  fi
}

if ! command -v kustomize >/dev/null 2>&1 && ! command -v kubectl >/dev/null 2>&1; then
  [ "${CI:-}" = true ] || die "neither kustomize nor kubectl on this machine (Debian: apt-get install -t trixie kustomize)"
  if [ ! -e /etc/apt/sources.list.d/lab-trixie.sources ]; then
    # deploy/ci/docker-up.sh adds the pinned trixie source (with Compose v2 and buildx, which
    # the container checks need anyway); every step there is skipped when already done.
    log "no trixie apt source yet: deploy/ci/docker-up.sh"
    bash deploy/ci/docker-up.sh
  fi
  log "installing kustomize (Debian trixie)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t trixie kustomize >/dev/null
fi
if command -v kustomize >/dev/null 2>&1; then
  log "kustomize: $(command -v kustomize) (version: $(kustomize version 2>/dev/null | head -n1))"
else
  log "kubectl kustomize ($(kubectl version --client 2>/dev/null | grep -i kustomize | head -n1))"
fi

rendered="$state/rendered"
rm -rf "$rendered"
mkdir -p "$rendered"
for k in app profiled; do
  log "kustomize build deploy/kubernetes/$k"
  kustomize_build "deploy/kubernetes/$k" > "$rendered/$k.yaml"
  n=$(grep -c '^kind: ' "$rendered/$k.yaml" || true)
  [ "$n" -gt 0 ] || die "deploy/kubernetes/$k rendered no object"
  # Every namespaced object lands in the lab's namespace.
  if grep -E '^  namespace: ' "$rendered/$k.yaml" | grep -vqx '  namespace: taillab'; then
    die "deploy/kubernetes/$k renders an object outside the namespace taillab"
  fi
  log "  $n objects"
done
grep -q 'shareProcessNamespace: true' "$rendered/profiled.yaml" \
  || die "the profiled overlay did not patch the canary's pod"

# --- the pinned Python tools ---------------------------------------------------------------
venv="$state/venv"
req="deploy/ci/kubernetes-requirements.txt"
if ! cmp -s "$req" "$venv/requirements.txt" 2>/dev/null; then
  log "venv with $req (in $venv)"
  rm -rf "$venv"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    # Debian's python3 keeps venv (ensurepip) in a package of its own.
    [ "${CI:-}" = true ] || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    log "installing python3-venv"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$req"
  cp "$req" "$venv/requirements.txt"
fi

# --- API schemas -----------------------------------------------------------------------------
for v in "${versions[@]}"; do
  for k in app profiled; do
    log "kubernetes-validate --strict -k $v: $k"
    "$venv/bin/kubernetes-validate" --strict --quiet -k "$v" "$rendered/$k.yaml"
  done
done

# --- chart values ------------------------------------------------------------------------------
schema=deploy/kubernetes/logstack/schema/loki-values.schema.excerpt.json
log "check-jsonschema: Loki values against $schema"
"$venv/bin/check-jsonschema" --schemafile "$schema" \
  deploy/kubernetes/logstack/loki-values.yaml deploy/kubernetes/logstack/loki-values-s3.yaml

# --- the Alloy config ------------------------------------------------------------------------
log "alloy-config.sh"
bash deploy/kubernetes/logstack/alloy-config.sh > "$rendered/config.alloy"
alloy="grafana/alloy:$(awk '/^image:/ { f = 1; next } f && /^  tag:/ { print $2; exit }' deploy/kubernetes/logstack/alloy-values.yaml)"
if command -v docker >/dev/null 2>&1 && docker image inspect "$alloy" >/dev/null 2>&1; then
  log "alloy validate with $alloy"
  docker run --rm -v "$rendered:/etc/alloy:ro" "$alloy" validate /etc/alloy/config.alloy
else
  log "not in the local store, not pulled: $alloy (config checked by labcheck only)"
fi

log "ok"
