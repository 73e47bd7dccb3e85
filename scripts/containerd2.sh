#!/usr/bin/env bash
# containerd2.sh builds a current containerd 2.x — containerd, ctr and
# containerd-shim-runc-v2 — from the Go module proxy, at the version go.mod
# pins for github.com/containerd/containerd/v2 (the shim's own dependency),
# and prints the directory holding the binaries. The shim e2e test runs
# against it next to Debian's containerd 1.6 (TestShimContainerd/v2;
# make test passes the directory as MSB_CONTAINERD2_BIN).
#
# Cache: ${MSB_CACHE:-~/.cache/msb}/containerd2/<version>/bin, with
# containerd2/current pointing at the last one built. Idempotent: a complete
# build is reused. Static binaries (CGO_ENABLED=0), built without the btrfs,
# devmapper and zfs snapshotters, which need cgo and are not used. About a
# minute on 2 cores; progress on stderr.
set -euo pipefail
umask 022

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=lib/cache.sh
. "$root/scripts/lib/cache.sh"
cache=$(msb_cache_root containerd2)
cache=$cache/containerd2

ver=$(cd "$root" && go list -m -f '{{.Version}}' github.com/containerd/containerd/v2)
out=$cache/$ver/bin
bins=(containerd ctr containerd-shim-runc-v2)
complete=1
for b in "${bins[@]}"; do
  [ -x "$out/$b" ] || complete=0
done
if [ $complete -eq 0 ]; then
  echo "containerd2: building containerd $ver (${bins[*]}) from the Go module proxy, about a minute" >&2
  mkdir -p "$cache/$ver"
  tmp=$(mktemp -d "$cache/$ver/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  pkgs=()
  for b in "${bins[@]}"; do
    pkgs+=("github.com/containerd/containerd/v2/cmd/$b@$ver")
  done
  # Outside the module: `go install pkg@version` resolves containerd's own
  # dependency graph, not msb's.
  (cd "$tmp" && CGO_ENABLED=0 GOBIN="$tmp/bin" GOFLAGS= \
    go install -trimpath -tags no_btrfs,no_devmapper,no_zfs "${pkgs[@]}")
  rm -rf "$out"
  mv "$tmp/bin" "$out"
  echo "containerd2: $("$out/containerd" --version)" >&2
fi
ln -sfn "$ver" "$cache/current"
echo "$out"
