//go:build !linux

package supervisor

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// socketpair returns a connected pair of Unix stream sockets, both
// close-on-exec. Without SOCK_CLOEXEC the flag is set after creation, under
// ForkLock so that no concurrent fork inherits the pair (as package net
// does).
func socketpair() ([2]int, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return fds, err
	}
	syscall.CloseOnExec(fds[0])
	syscall.CloseOnExec(fds[1])
	return fds, nil
}

// peerUID is the user id of c's peer (LOCAL_PEERCRED).
func peerUID(c *net.UnixConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	uid, uerr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) {
		var cred *unix.Xucred
		if cred, uerr = unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED); uerr == nil {
			uid = int(cred.Uid)
		}
	}); err != nil {
		return -1, err
	}
	return uid, uerr
}
