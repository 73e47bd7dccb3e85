#!/usr/bin/env bash
# l1-kernel.sh prepares the L1 kernel of the nested-KVM harness (harness 2 of
# shared/machine.md): Debian's 6.1 cloud kernel, run under QEMU TCG with an
# emulated AMD SVM CPU, plus the modules that give it a real /dev/kvm. It
# prints the cache directory on stdout; that directory holds
#
#   vmlinuz        the Debian cloud kernel (bzImage)
#   modules/*.ko   irqbypass, kvm, kvm-amd and whatever they depend on,
#                  decompressed (busybox insmod and finit_module without
#                  MODULE_INIT_COMPRESSED_FILE want plain ELF)
#   modules.order  the module file names, dependencies first: load in order
#   modules.disk   likewise for virtio-blk over virtio-mmio, loaded only when
#                  a test attaches a disk to L1 (nested.Options.Disks)
#   package        the Debian package name and version it came from
#
# The package is downloaded (apt-get download) and unpacked with dpkg-deb,
# never installed. Cache: ${MSB_CACHE:-~/.cache/msb}/nested/<hash>/, where
# <hash> covers this script and the package version; a hit is instant.
# Progress goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${MSB_CACHE:-$HOME/.cache/msb}/nested
# The L1 guest needs only an initramfs and the serial console (microvm,acpi=on
# gives it ttyS0), so KVM, plus virtio-blk for tests that attach a disk (ext4
# is built into this kernel).
wanted=(kvm-amd)
disk_wanted=(virtio_mmio virtio_blk)

resolve_pkg() {
  apt-cache depends linux-image-cloud-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9].*-cloud-amd64/ { print $2; exit }'
}

pkg=$(resolve_pkg)
if [ -z "$pkg" ]; then
  echo "l1-kernel: apt-cache does not know linux-image-cloud-amd64; running apt-get update" >&2
  apt-get update -qq >&2
  pkg=$(resolve_pkg)
fi
if [ -z "$pkg" ]; then
  echo "l1-kernel: cannot resolve the package behind linux-image-cloud-amd64" >&2
  exit 1
fi
version=$(apt-cache show --no-all-versions "$pkg" | awk '/^Version:/ { print $2; exit }')
hash=$( { cat "$here/l1-kernel.sh"; echo "$pkg $version"; } | sha256sum | cut -c1-16)
out="$cache/$hash"
if [ -f "$out/modules.order" ]; then
  echo "$out"
  exit 0
fi

mkdir -p "$cache"
# One preparation at a time per cache; a second caller waits, then hits.
exec 9>"$cache/.lock"
flock 9
if [ -f "$out/modules.order" ]; then
  echo "$out"
  exit 0
fi

work=$(mktemp -d "$cache/prepare.XXXXXX")
trap 'rm -rf "$work"' EXIT
# apt-get download drops privileges to _apt when it can; let it write here.
chmod 0777 "$work"
echo "l1-kernel: downloading $pkg $version" >&2
# (Its "unsandboxed as root" warning is expected when the cache is under /root.)
(cd "$work" && apt-get download -q "$pkg=$version" 2>&1 | grep -v 'unsandboxed as root' >&2)
deb=$(echo "$work"/*.deb)
dpkg-deb -x "$deb" "$work/x"

kver=$(basename "$(echo "$work"/x/lib/modules/*)")
moddir="$work/x/lib/modules/$kver"
mkdir -p "$work/out/modules"
cp "$work/x/boot/vmlinuz-$kver" "$work/out/vmlinuz"

# find_module NAME prints the path of module NAME (kvm-amd or kvm_amd, .ko
# or compressed) in the unpacked tree.
find_module() {
  local n=$1 alt=${1//-/_} f
  alt2=${1//_/-}
  for f in $(find "$moddir" -name "$n.ko*" -o -name "$alt.ko*" -o -name "$alt2.ko*"); do
    echo "$f"
    return 0
  done
  echo "l1-kernel: module $n not in $pkg" >&2
  return 1
}

# plain SRC DST writes the module as an uncompressed .ko.
plain() {
  case "$1" in
    *.ko) cp "$1" "$2" ;;
    *.ko.xz) xz -dc "$1" >"$2" ;;
    *.ko.zst) zstd -qdc "$1" >"$2" ;;
    *.ko.gz) gzip -dc "$1" >"$2" ;;
    *) echo "l1-kernel: unknown module format $1" >&2; return 1 ;;
  esac
}

# module_depends KO prints the comma-separated depends= field of the module's
# .modinfo section: through modinfo when kmod is installed, else by reading
# the NUL-separated key=value strings out of the ELF file directly.
module_depends() {
  if command -v modinfo >/dev/null; then
    modinfo -F depends "$1"
  else
    tr '\0' '\n' <"$1" | LC_ALL=C grep -a '^depends=' | head -n1 | cut -d= -f2-
  fi
}

# Depth-first over modinfo's depends lists, appending a module after its
# dependencies, so modules.order is a valid load order.
declare -A seen=()
order=()
visit() {
  local name=${1//-/_} src dst deps d
  [ -n "${seen[$name]:-}" ] && return 0
  seen[$name]=1
  src=$(find_module "$1")
  dst="$work/out/modules/$(basename "${src%.ko*}").ko"
  plain "$src" "$dst"
  deps=$(module_depends "$dst")
  for d in ${deps//,/ }; do
    visit "$d"
  done
  order+=("$(basename "$dst")")
}
for m in "${wanted[@]}"; do
  visit "$m"
done
kvm_order=("${order[@]}")
order=()
for m in "${disk_wanted[@]}"; do
  visit "$m"
done
printf '%s\n' "${order[@]}" >"$work/out/modules.disk"
order=("${kvm_order[@]}")
printf '%s\n' "${order[@]}" >"$work/out/modules.order.tmp"
echo "$pkg $version" >"$work/out/package"
mv "$work/out/modules.order.tmp" "$work/out/modules.order"
rm -rf "$out"
mv "$work/out" "$out"
echo "l1-kernel: $pkg $version: vmlinuz + ${order[*]}" >&2
echo "$out"
