#!/usr/bin/env bash
# build.sh builds msb's guest kernel (an uncompressed x86-64 vmlinux with a PVH
# entry) from Debian's linux-source-6.1 and scripts/kernel/msb.config, and
# prints the path of the cached vmlinux on stdout.
#
# Cache: ${MSB_CACHE:-~/.cache/msb}/kernel/<hash>/vmlinux, where <hash> covers
# the kernel's real inputs: the config fragment, any patches beside it
# (scripts/kernel/*.patch), the kernel source package version and $recipe
# (bump it when a change to this script changes the kernel it builds). Editing
# the script otherwise keeps the cache. A changed input that still yields the
# same final .config from the same source adopts the existing build instead of
# compiling again.
#
# Every run (build or hit) pins the result: kernel/current holds
# "<hash> <sha256 of vmlinux>", and msb boots only the pinned, verified
# kernel (internal/guestkernel), never the newest directory.
# MSB_KERNEL_NO_BUILD=1 fails instead of compiling when nothing cached fits.
# Progress goes to stderr; the build log is kept beside the cache entry.
set -euo pipefail
umask 022 # nothing in the cache may be writable by others: msb refuses it

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
recipe=2
# shellcheck source=../lib/cache.sh
. "$root/scripts/lib/cache.sh"
cache=$(msb_cache_root kernel)
tarball=/usr/src/linux-source-6.1.tar.xz

if [ ! -f "$tarball" ]; then
  "$root/scripts/setup.sh" demo
fi
srcver=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || echo unknown)
hash=$( { cat "$here/msb.config"; for p in "$here"/*.patch; do [ -f "$p" ] && cat "$p"; done; echo "$srcver recipe=$recipe"; } | sha256sum | cut -c1-16)
out="$cache/kernel/$hash"

# pin records $out as the kernel to boot, with its hash, atomically.
pin() {
  local sum
  sum=$(sha256sum "$out/vmlinux" | cut -d' ' -f1)
  printf '%s %s\n' "$hash" "$sum" >"$cache/kernel/current.tmp.$$"
  mv -f "$cache/kernel/current.tmp.$$" "$cache/kernel/current"
}

if [ -f "$out/vmlinux" ] && [ -f "$cache/kernel/current" ] && [ "$(cut -d' ' -f1 "$cache/kernel/current")" = "$hash" ]; then
  echo "$out/vmlinux"
  exit 0
fi

mkdir -p -m 0700 "$cache"
mkdir -p "$cache/kernel"
# One build at a time per cache: a second caller waits, then finds the result.
exec 9>"$cache/kernel/.lock"
flock 9
if [ -f "$out/vmlinux" ]; then
  pin
  echo "$out/vmlinux"
  exit 0
fi

work=$(mktemp -d "$cache/kernel/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
log="$work/build.log"
start=$(date +%s)
echo "kernel: extracting linux-source $srcver" >&2
tar -xf "$tarball" -C "$work"
src=$(echo "$work"/linux-source-*)
cd "$src"
for p in "$here"/*.patch; do
  [ -f "$p" ] || continue
  echo "kernel: applying $(basename "$p")" >&2
  patch -p1 --forward --quiet <"$p" >>"$log" 2>&1 || { tail -20 "$log" >&2; echo "kernel: $(basename "$p") does not apply" >&2; exit 1; }
done

echo "kernel: configuring (tinyconfig + msb.config)" >&2
make -s ARCH=x86_64 tinyconfig >>"$log" 2>&1
scripts/kconfig/merge_config.sh -m .config "$here/msb.config" >>"$log" 2>&1
make -s ARCH=x86_64 olddefconfig >>"$log" 2>&1

# Every symbol the fragment asks for must survive olddefconfig; a dependency
# Kconfig silently dropped would otherwise surface as a missing guest feature.
bad=0
while IFS= read -r line; do
  case "$line" in
    CONFIG_*=n) sym=${line%%=*}
      if grep -q "^$sym=" .config; then echo "kernel: $sym should be off, got $(grep "^$sym=" .config)" >&2; bad=1; fi ;;
    CONFIG_*=*) sym=${line%%=*}
      if ! grep -qx "$line" .config; then echo "kernel: want $line, got $(grep "^$sym=" .config || echo "$sym unset")" >&2; bad=1; fi ;;
    "# CONFIG_"*" is not set") sym=${line#\# }; sym=${sym%% *}
      if grep -q "^$sym=" .config; then echo "kernel: $sym should be off, got $(grep "^$sym=" .config)" >&2; bad=1; fi ;;
  esac
done < "$here/msb.config"
if [ "$bad" -ne 0 ]; then
  echo "kernel: msb.config does not survive olddefconfig (see above); fix its dependencies" >&2
  exit 1
fi

# The same final .config from the same source and no patches builds the same
# kernel: adopt an existing build (one made under an older cache key) rather
# than spend minutes compiling it again.
for d in "$cache"/kernel/*/; do
  d=${d%/}
  [ -f "$d/vmlinux" ] && [ -f "$d/config" ] && [ -f "$d/build.json" ] || continue
  ls "$here"/*.patch >/dev/null 2>&1 && break
  if cmp -s .config "$d/config" && grep -q "\"source\":\"$srcver\"" "$d/build.json"; then
    echo "kernel: same config and source as $d; reusing its vmlinux" >&2
    mkdir -p "$out.tmp"
    cp "$d/vmlinux" "$d/config" "$d/build.json" "$out.tmp/"
    [ -f "$d/build.log" ] && cp "$d/build.log" "$out.tmp/"
    rm -rf "$out"
    mv "$out.tmp" "$out"
    pin
    echo "$out/vmlinux"
    exit 0
  fi
done

if [ -n "${MSB_KERNEL_NO_BUILD:-}" ]; then
  echo "kernel: no cached build matches ($out) and MSB_KERNEL_NO_BUILD is set" >&2
  exit 1
fi
jobs=$(nproc)
echo "kernel: building vmlinux with -j$jobs (about 6 min on 2 cores; log: $log)" >&2
make ARCH=x86_64 -j"$jobs" vmlinux >>"$log" 2>&1 &
mk=$!
# Progress every 30 s: the files compiled so far of about 1080 (the count
# this config gave with linux-source 6.1; an estimate, not a promise).
ticks=0
while kill -0 "$mk" 2>/dev/null; do
  sleep 1
  ticks=$((ticks + 1))
  if [ $((ticks % 30)) -eq 0 ]; then
    echo "kernel: $(grep -c '^  CC ' "$log" || true) of ~1080 files compiled, $(( $(date +%s) - start )) s" >&2
  fi
done
if ! wait "$mk"; then
  tail -40 "$log" >&2
  echo "kernel: build failed" >&2
  exit 1
fi
end=$(date +%s)

mkdir -p "$out.tmp"
cp vmlinux "$out.tmp/vmlinux"
cp .config "$out.tmp/config"
cp "$log" "$out.tmp/build.log"
printf '{"source":"%s","seconds":%d,"bytes":%d}\n' "$srcver" $((end - start)) "$(stat -c %s vmlinux)" >"$out.tmp/build.json"
rm -rf "$out"
mv "$out.tmp" "$out"
pin
echo "kernel: built in $((end - start)) s: $out/vmlinux" >&2
echo "$out/vmlinux"
