#!/usr/bin/env bash
# setup.sh installs the Debian packages msb's build and tests need: QEMU (the
# e2e harness), the kernel source and its build tools, and the test oracles.
# Idempotent: packages already present are not touched, and apt-get update runs
# only when something is missing.
set -euo pipefail

pkgs=(
  qemu-system-x86            # e2e harness: QEMU microvm under TCG
  linux-source-6.1 flex bison bc libelf-dev libssl-dev xz-utils make gcc cpio  # guest kernel build
  busybox-static             # demo rootfs and test userland
  erofs-utils e2fsprogs      # fsck.erofs / e2fsck oracles, mkfs.erofs bench peer
  docker-registry skopeo     # image e2e: local registry and an independent OCI client
  debootstrap                # image e2e: Debian+python3 test image (scripts/images/debian-python.sh)
)

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
