#!/usr/bin/env bash
# demo.sh runs one command in a fresh sandbox booted from the busybox demo
# root directory, with msb's own guest kernel, and prints what it printed.
# `make demo` builds everything it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
rootfs=$(scripts/images/busybox-rootfs.sh)
echo "demo: booting a sandbox from $rootfs with bin/vmlinux" >&2
start=$(date +%s%N)
MSB_KERNEL=${MSB_KERNEL:-$PWD/bin/vmlinux} bin/msb run --rootfs "$rootfs" -- sh -c '
  echo "hello from $(hostname): $(uname -srm)"
  echo "root filesystem:"; mount | grep -E " / | /.msb" | sed "s/^/  /"
  echo "cpus: $(grep -c ^processor /proc/cpuinfo), memory: $(grep MemTotal /proc/meminfo | tr -s " " | cut -d" " -f2-)"
  echo "writing a file in the sandbox..."; echo data > /root/note && cat /root/note'
end=$(date +%s%N)
ms=$(( (end - start) / 1000000 ))
printf 'demo: sandbox created, command run and sandbox removed in %d.%03d s\n' $((ms / 1000)) $((ms % 1000)) >&2
