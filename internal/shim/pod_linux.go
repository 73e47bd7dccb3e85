package shim

import (
	"errors"

	"golang.org/x/sys/unix"
)

// bindMount binds the tree at src (with its submounts) onto dst.
func bindMount(src, dst string) error {
	return unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, "")
}

// unmountBind detaches the mount at dir; a directory with nothing mounted
// on it is not an error.
func unmountBind(dir string) error {
	err := unix.Unmount(dir, unix.MNT_DETACH)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}
