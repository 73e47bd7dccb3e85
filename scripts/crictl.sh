#!/usr/bin/env bash
# crictl.sh builds crictl (the CRI's command-line client, sigs.k8s.io/
# cri-tools) from the Go module proxy and prints the directory holding it.
# The shim's CRI e2e test drives a pod through it as the kubelet would
# (TestShimCRI; make test passes the directory as MSB_CRICTL_BIN).
#
# Cache: ${MSB_CACHE:-~/.cache/msb}/crictl/<version>/bin. Idempotent: a
# complete build is reused. A static binary (CGO_ENABLED=0); about a minute
# on 2 cores; progress on stderr.
set -euo pipefail
umask 022

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=lib/cache.sh
. "$root/scripts/lib/cache.sh"
cache=$(msb_cache_root crictl)
cache=$cache/crictl

# The newest cri-tools the module proxy serves here (checked 2026-12-05).
ver=v1.37.0
out=$cache/$ver/bin
if [ ! -x "$out/crictl" ]; then
  echo "crictl: building crictl $ver from the Go module proxy, about a minute" >&2
  mkdir -p "$cache/$ver"
  tmp=$(mktemp -d "$cache/$ver/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  # Outside the module: `go install pkg@version` resolves cri-tools' own
  # dependency graph, not msb's.
  (cd "$tmp" && CGO_ENABLED=0 GOBIN="$tmp/bin" GOFLAGS= \
    go install -trimpath "sigs.k8s.io/cri-tools/cmd/crictl@$ver")
  rm -rf "$out"
  mv "$tmp/bin" "$out"
  echo "crictl: $("$out/crictl" --version)" >&2
fi
echo "$out"
