#!/usr/bin/env bash
# busybox-rootfs.sh builds a minimal root directory around Debian's static
# busybox (package busybox-static) and prints its path. The result is cached
# under msb's cache (scripts/lib/cache.sh: $MSB_CACHE, $XDG_CACHE_HOME/msb or
# ~/.cache/msb)/rootfs/busybox/<hash>/, where <hash> covers
# the busybox binary and this script, so running it again is a cheap no-op.
#
# Layout: /bin/busybox plus one symlink per applet (as `busybox --install -s`
# makes them, pointing at /bin/busybox), /etc/{passwd,group,hosts} with root
# and nobody, /tmp (1777), /root (0700), and empty /dev /proc /sys /run.
#
# Run as root for a root-owned tree; otherwise pack it with an owner override
# (rootfs.PackOptions{Owner: &rootfs.Owner{}}).
set -euo pipefail

busybox=/bin/busybox
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [ ! -x "$busybox" ]; then
  "$script_dir/../setup.sh" demo >&2
fi
if [ ! -x "$busybox" ]; then
  echo "busybox-rootfs: $busybox missing; install the Debian package busybox-static" >&2
  exit 1
fi

. "$script_dir/../lib/cache.sh"
cache=$(msb_cache_root busybox-rootfs)
hash=$(cat "$busybox" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)
out=$cache/rootfs/busybox/$hash
if [ -d "$out" ]; then
  printf '%s\n' "$out"
  exit 0
fi

mkdir -p "$cache/rootfs/busybox"
# Build beside the final path and rename, so an interrupted run never leaves
# a partial tree where a later run would take it as complete.
tmp=$(mktemp -d "$cache/rootfs/busybox/.build.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT
umask 022

mkdir -p "$tmp"/{bin,sbin,usr/bin,usr/sbin,etc,dev,proc,sys,run,var}
install -d -m 0700 "$tmp/root"
install -d -m 1777 "$tmp/tmp"
chmod 0755 "$tmp"
cp "$busybox" "$tmp/bin/busybox"
chmod 0755 "$tmp/bin/busybox"

# --list-full prints each applet with its install directory, relative to /.
"$busybox" --list-full | while IFS= read -r applet; do
  case $applet in
    "" | bin/busybox | /* | *..*) continue ;;
  esac
  mkdir -p "$tmp/$(dirname "$applet")"
  if [ ! -e "$tmp/$applet" ] && [ ! -L "$tmp/$applet" ]; then
    ln -s /bin/busybox "$tmp/$applet"
  fi
done

cat >"$tmp/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$tmp/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
cat >"$tmp/etc/hosts" <<'HOSTS'
127.0.0.1 localhost
::1 localhost
HOSTS
chmod 0644 "$tmp/etc/passwd" "$tmp/etc/group" "$tmp/etc/hosts"

if ! mv -T "$tmp" "$out" 2>/dev/null; then
  # Another run finished first; its tree is equivalent.
  [ -d "$out" ] || { echo "busybox-rootfs: cannot create $out" >&2; exit 1; }
fi
trap - EXIT
rm -rf -- "$tmp"
printf '%s\n' "$out"
