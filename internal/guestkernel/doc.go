// Package guestkernel locates msb's guest kernel and builds the initramfs the
// guest boots with: a newc cpio archive holding agentd as /init, plus an
// optional archives appended to it: per-boot configuration (/msb/boot.env), so
// long or secret values never travel on the kernel command line, the
// sandbox's scripts (/msb/scripts) and the certificates the guest must trust
// (/msb/tls, WriteTLSCerts).
//
// The kernel itself is built by scripts/kernel/build.sh from Debian's
// linux-source-6.1 with scripts/kernel/msb.config and cached under
// ~/.cache/msb/kernel/<hash>/vmlinux; build.sh pins it in kernel/current
// (directory and SHA-256) and Locate boots only the pinned, verified build.
package guestkernel
