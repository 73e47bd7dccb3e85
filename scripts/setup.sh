#!/usr/bin/env bash
# setup.sh installs the Debian packages msb needs, by profile:
#   setup.sh demo  what `make demo` needs: QEMU, the kernel source and its
#                  build tools, busybox for the demo rootfs;
#   setup.sh test  (the default) that and the tests' oracles and peers.
# A fresh machine's first `make demo` installs only the first set, so it
# does not wait for a registry, skopeo and debootstrap it never runs.
# Idempotent: packages already present are not touched, and apt-get update runs
# only when something is missing.
set -euo pipefail

profile=${1:-test}
pkgs=(
  qemu-system-x86            # the QEMU backend (microvm; TCG here, KVM where real)
  linux-source-6.1 flex bison bc libelf-dev libssl-dev xz-utils make gcc cpio patch  # guest kernel build
  busybox-static             # demo rootfs and test userland
)
case "$profile" in
  demo) ;;
  test)
    pkgs+=(
      erofs-utils e2fsprogs      # fsck.erofs / e2fsck oracles, mkfs.erofs bench peer
      docker-registry skopeo     # image e2e: local registry and an independent OCI client
      debootstrap                # image e2e: Debian+python3 test image (scripts/images/debian-python.sh)
      containerd                 # shim e2e: a private containerd and its ctr drive containerd-shim-msb-v2
    ) ;;
  *) echo "setup: unknown profile $profile (want demo or test)" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing packages: ${missing[*]}" >&2
  echo "setup: run as root, or install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
