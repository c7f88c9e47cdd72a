#!/usr/bin/env bash
# Prints the Alloy config for Kubernetes: kubernetes.alloy (pod discovery and log files)
# followed by the compose lab's `loki.process "service_json"` and `loki.write "lab"` blocks,
# cut verbatim from deploy/alloy/config.alloy. One pipeline text for both labs; the Alloy
# chart takes the result as its config:
#
#   deploy/kubernetes/logstack/alloy-config.sh > alloy.config
#   helm install alloy grafana/alloy --version 1.11.1 -n taillab-logs \
#     -f deploy/kubernetes/logstack/alloy-values.yaml --set-file alloy.configMap.content=alloy.config
#
# The chart passes the content through Helm's `tpl`, so a `{{` in it would be read as a
# template: this script refuses such a config. Exit 2 with one line on stderr on any error.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
compose_config="$here/../../alloy/config.alloy"

die() { printf 'alloy-config: %s\n' "$*" >&2; exit 2; }
[ -r "$compose_config" ] || die "cannot read $compose_config"

# A top-level block: from its opening line to the first `}` in column one.
block() {
  local out
  out="$(awk -v head="$1 {" '
    $0 == head { on = 1 }
    on { print }
    on && /^}/ { exit }
  ' "$compose_config")"
  [ -n "$out" ] || die "deploy/alloy/config.alloy has no top-level line '$1 {'"
  [ "$(printf '%s\n' "$out" | tail -n1)" = "}" ] || die "block '$1' in deploy/alloy/config.alloy is not closed in column one"
  printf '%s\n' "$out"
}

config="$(
  cat "$here/kubernetes.alloy"
  printf '\n// ---- from deploy/alloy/config.alloy, verbatim (alloy-config.sh) ----\n\n'
  block 'loki.process "service_json"'
  printf '\n'
  block 'loki.write "lab"'
)"
case "$config" in
  *'{{'*) die "the config contains '{{', which the Alloy chart's tpl would read as a template" ;;
esac
printf '%s\n' "$config"
