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

// rawConn returns conn's descriptor access for writeNow, or nil when conn
// has none (a net.Pipe in tests): its frames then always go through the
// writer goroutine.
func rawConn(conn any) syscall.RawConn {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// writeNow writes as much of f to rc as the socket takes without blocking.
// A full socket buffer is not an error: n tells how much went out and the
// caller queues the rest.
func writeNow(rc syscall.RawConn, f []byte) (n int, err error) {
	var werr error
	if err := rc.Write(func(fd uintptr) bool {
		for n < len(f) {
			m, e := unix.Write(int(fd), f[n:])
			if m > 0 {
				n += m
			}
			if e == unix.EINTR {
				continue
			}
			if e != nil || m <= 0 {
				werr = e
				break
			}
		}
		// Done either way: never wait for the socket here.
		return true
	}); err != nil {
		return n, err
	}
	if werr == unix.EAGAIN {
		werr = nil
	}
	return n, werr
}
