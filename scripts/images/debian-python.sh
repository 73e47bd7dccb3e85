#!/usr/bin/env bash
# debian-python.sh builds a minimal Debian bookworm root directory with python3
# (debootstrap --variant=minbase --include=python3) and prints its path. It is
# the test image of the image e2e tests (`msb run localhost:PORT/debian-python
# -- python3 -c 'print(1+1)'`). The result is cached under
# ${MSB_CACHE:-~/.cache/msb}/rootfs/debian-python/<hash>/, where <hash> covers
# this script and the mirror, so running it again is a cheap no-op.
#
# With the argument `testsuite` it also installs CPython's own regression
# tests (libpython3.11-testsuite) for the guest-fidelity tier
# (test/e2e/fidelity_linux_test.go), cached apart as debian-python-testsuite.
#
# Needs root (debootstrap creates device nodes and root-owned files) and the
# Debian package debootstrap (scripts/setup.sh installs it). The mirror is
# DEBIAN_MIRROR, default http://deb.debian.org/debian; packages are verified
# with the keyring debootstrap uses for bookworm.
set -euo pipefail

suite=bookworm
variant=${1:-}
case $variant in
  "") name=debian-python; include=python3 ;;
  testsuite) name=debian-python-testsuite; include=python3,libpython3.11-testsuite ;;
  *) echo "debian-python: unknown variant '$variant' (want: testsuite)" >&2; exit 2 ;;
esac
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [ "$(id -u)" -ne 0 ]; then
  echo "debian-python: debootstrap needs root" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null; then
  "$script_dir/../setup.sh" test >&2
fi
command -v debootstrap >/dev/null || { echo "debian-python: install the Debian package debootstrap" >&2; exit 1; }

cache=${MSB_CACHE:-${HOME:?HOME is not set}/.cache/msb}
hash=$( { cat "${BASH_SOURCE[0]}"; echo "$mirror $variant"; } | sha256sum | cut -c1-16)
out=$cache/rootfs/$name/$hash
if [ -x "$out/usr/bin/python3" ]; then
  printf '%s\n' "$out"
  exit 0
fi

mkdir -p "$cache/rootfs/$name"
# Build beside the final path and rename, so an interrupted run never leaves
# a partial tree where a later run would take it as complete.
tmp=$(mktemp -d "$cache/rootfs/$name/.build.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT
chmod 0755 "$tmp"

debootstrap --variant=minbase --include="$include" "$suite" "$tmp" "$mirror" >&2

# Downloaded packages and indexes are not part of the image.
rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/* "$tmp"/var/log/*.log
[ -x "$tmp/usr/bin/python3" ] || { echo "debian-python: no python3 in the tree" >&2; exit 1; }

if ! mv -T "$tmp" "$out" 2>/dev/null; then
  [ -x "$out/usr/bin/python3" ] || { echo "debian-python: cannot create $out" >&2; exit 1; }
fi
trap - EXIT
rm -rf -- "$tmp"
printf '%s\n' "$out"
