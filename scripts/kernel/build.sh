#!/usr/bin/env bash
# build.sh builds msb's guest kernel (an uncompressed x86-64 vmlinux with a PVH
# entry) from Debian's linux-source-6.1 and scripts/kernel/msb.config, and
# prints the path of the cached vmlinux on stdout.
#
# Cache: ${MSB_CACHE:-~/.cache/msb}/kernel/<hash>/vmlinux, where <hash> covers
# the config fragment, this script and the kernel source package version, so a
# changed input rebuilds and an unchanged one is an instant cache hit.
# Progress goes to stderr; the build log is kept beside the cache entry.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${MSB_CACHE:-$HOME/.cache/msb}
tarball=/usr/src/linux-source-6.1.tar.xz

if [ ! -f "$tarball" ]; then
  "$root/scripts/setup.sh"
fi
srcver=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || echo unknown)
hash=$( { cat "$here/msb.config" "$here/build.sh"; echo "$srcver"; } | sha256sum | cut -c1-16)
out="$cache/kernel/$hash"
if [ -f "$out/vmlinux" ]; then
  echo "$out/vmlinux"
  exit 0
fi

mkdir -p "$cache/kernel"
# One build at a time per cache: a second caller waits, then finds the result.
exec 9>"$cache/kernel/.lock"
flock 9
if [ -f "$out/vmlinux" ]; then
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

jobs=$(nproc)
echo "kernel: building vmlinux with -j$jobs (about 8 min on 2 cores; log: $log)" >&2
if ! make ARCH=x86_64 -j"$jobs" vmlinux >>"$log" 2>&1; then
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
echo "kernel: built in $((end - start)) s: $out/vmlinux" >&2
echo "$out/vmlinux"
