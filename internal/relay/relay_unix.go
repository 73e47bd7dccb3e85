//go:build unix

package relay

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// shutdownSocket shuts down v's descriptor if it is a socket. A blocking
// read on a socket is not woken by close(2) from another thread, but it is
// by shutdown(2); for a non-socket the call fails harmlessly.
func shutdownSocket(v any) {
	sc, ok := v.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) { _ = unix.Shutdown(int(fd), unix.SHUT_RDWR) })
}
