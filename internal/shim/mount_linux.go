package shim

import "golang.org/x/sys/unix"

// unmountFlags detaches lazily so a busy rootfs (a leftover process still
// holding it) does not keep the bundle from being deleted.
const unmountFlags = unix.MNT_DETACH
