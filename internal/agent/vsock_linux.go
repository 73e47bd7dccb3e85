package agent

// The guest end of the transport upgrade (agentproto.CapVsock): agentd
// listens on agentproto.AgentVsockPort and hands the host's connections to
// Serve, which adopts the first one.

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// vsockBufferSize is the receive buffer of the agent's vsock connection.
// virtio-vsock credit-based flow control advertises the receive buffer as
// the sender's window, and the kernel default (256 KiB) is a fraction of
// the bandwidth-delay product of bulk copies into the guest.
const vsockBufferSize = 4 << 20

// vsockListener is a listening AF_VSOCK socket in the Go poller, so that
// Close wakes a pending accept.
type vsockListener struct {
	f  *os.File
	rc syscall.RawConn
}

// listenVsock listens on vsock port for connections to any of the guest's
// CIDs. It fails when the VM has no vsock device (EAFNOSUPPORT, ENODEV).
func listenVsock(port uint32) (*vsockListener, error) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("vsock socket: %w", err)
	}
	// Accepted sockets inherit the listener's buffer sizes; acceptLoop
	// sets them again in case a kernel does not.
	setVsockBuffer(fd)
	if err := unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: port}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vsock bind port %d: %w", port, err)
	}
	if err := unix.Listen(fd, 4); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vsock listen: %w", err)
	}
	f := os.NewFile(uintptr(fd), "vsock-listener")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("vsock listener: %w", err)
	}
	return &vsockListener{f: f, rc: rc}, nil
}

// accept waits for a connection and returns its descriptor (close-on-exec,
// blocking) and the peer's address.
func (l *vsockListener) accept() (int, unix.Sockaddr, error) {
	var (
		nfd  int
		sa   unix.Sockaddr
		aerr error
	)
	err := l.rc.Read(func(fd uintptr) bool {
		nfd, sa, aerr = unix.Accept4(int(fd), unix.SOCK_CLOEXEC)
		return aerr != unix.EAGAIN
	})
	if err != nil {
		return -1, nil, err
	}
	if aerr != nil {
		return -1, nil, aerr
	}
	return nfd, sa, nil
}

func (l *vsockListener) Close() error { return l.f.Close() }

// setVsockBuffer raises fd's vsock buffer to vsockBufferSize. The maximum
// goes first: the kernel refuses a size above it. Errors are ignored: the
// default buffer is slower, not wrong.
func setVsockBuffer(fd int) {
	_ = unix.SetsockoptUint64(fd, unix.AF_VSOCK, unix.SO_VM_SOCKETS_BUFFER_MAX_SIZE, vsockBufferSize)
	_ = unix.SetsockoptUint64(fd, unix.AF_VSOCK, unix.SO_VM_SOCKETS_BUFFER_SIZE, vsockBufferSize)
}

// hostPeer reports whether a vsock peer with CID cid is the host. Only the
// host may take over the agent channel: a guest process connecting over
// loopback (VMADDR_CID_LOCAL, or the guest's own CID) must not, or it
// could run commands as the agent and read every session's output.
func hostPeer(cid uint32) bool {
	return cid == unix.VMADDR_CID_HOST
}

// acceptLoop accepts connections with accept and sends those from the host
// on upgrades, ready for reading and writing, until accept fails for good
// or stop is closed. Other peers are closed at once. Serve adopts only the
// first connection; the listener stays open nonetheless, so that a later
// connection is refused by Serve (and logged) rather than by the kernel.
func acceptLoop(accept func() (int, unix.Sockaddr, error), upgrades chan<- io.ReadWriteCloser, stop <-chan struct{}, log *slog.Logger) {
	for {
		fd, sa, err := accept()
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNABORTED) ||
				errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) || errors.Is(err, unix.ENOMEM) || errors.Is(err, unix.ENOBUFS) {
				// Transient: the peer gave up, or descriptors or memory
				// are short for now.
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				continue
			}
			log.Warn("vsock accept failed; no more transport upgrades", "err", err)
			return
		}
		vm, ok := sa.(*unix.SockaddrVM)
		if !ok || !hostPeer(vm.CID) {
			var cid any = "unknown"
			if ok {
				cid = vm.CID
			}
			log.Warn("rejecting vsock connection from a peer other than the host", "cid", cid)
			unix.Close(fd)
			continue
		}
		setVsockBuffer(fd)
		if err := unix.SetNonblock(fd, true); err != nil {
			// A blocking descriptor would work, but Close could not wake
			// its reader; refuse rather than risk a hung teardown.
			log.Warn("vsock connection", "err", err)
			unix.Close(fd)
			continue
		}
		// Non-blocking, so os.NewFile puts it in the poller: deadlines
		// and Close-wakes-Read work as for any socket.
		conn := os.NewFile(uintptr(fd), "vsock")
		select {
		case upgrades <- conn:
		case <-stop:
			conn.Close()
			return
		}
	}
}

// startVsock listens on port and starts acceptLoop. It returns the channel
// for ServeOptions.Upgrades and a function that stops the loop and closes
// the listener, or an error when the VM has no vsock.
func startVsock(port uint32, log *slog.Logger) (<-chan io.ReadWriteCloser, func(), error) {
	l, err := listenVsock(port)
	if err != nil {
		return nil, nil, err
	}
	upgrades := make(chan io.ReadWriteCloser)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		acceptLoop(l.accept, upgrades, stop, log)
	}()
	return upgrades, func() {
		close(stop)
		l.Close()
		<-done
	}, nil
}
