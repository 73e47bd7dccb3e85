package supervisor

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// dialAs connects to the unix socket at path from a thread running as uid
// and gid, and returns the connected descriptor. The thread stays locked and
// dies with the goroutine, so no other code ever runs with its credentials.
func dialAs(path string, uid, gid int) (int, error) {
	type result struct {
		fd  int
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with us
		// Raw syscalls change this thread's credentials only (the libc
		// and Go wrappers change every thread's).
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)); e != 0 {
			done <- result{-1, e}
			return
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
			done <- result{-1, e}
			return
		}
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			done <- result{-1, err}
			return
		}
		if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
			unix.Close(fd)
			done <- result{-1, err}
			return
		}
		done <- result{fd, nil}
	}()
	r := <-done
	return r.fd, r.err
}

// TestNetSockOtherUser tries to take the vhost-user net socket, where QEMU
// gets the guest's network device, from another local user: the socket's
// mode keeps it out, and should the socket be reachable anyway (a home
// directory with loose modes), acceptFront drops the stranger's connection
// and serves the next one, ours.
func TestNetSockOtherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to connect as another user")
	}
	const nobody = 65534
	// Searchable by the stranger all the way down (t.TempDir's own parent
	// is 0700): only the socket's mode and acceptFront stand in its way.
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("socket mode", func(t *testing.T) {
		path := filepath.Join(dir, "net.sock")
		ln, err := listenUnix(path)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		fd, err := dialAs(path, nobody, nobody)
		if err == nil {
			unix.Close(fd)
		}
		if !errors.Is(err, unix.EACCES) {
			t.Fatalf("connect as uid %d: %v; want EACCES", nobody, err)
		}
	})

	t.Run("peer credentials", func(t *testing.T) {
		path := filepath.Join(dir, "open.sock")
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		if err := os.Chmod(path, 0o777); err != nil {
			t.Fatal(err)
		}
		got := make(chan *net.UnixConn, 1)
		go func() {
			c, err := acceptFront(ln)
			if err != nil {
				t.Errorf("acceptFront: %v", err)
			}
			got <- c
		}()
		stranger, err := dialAs(path, nobody, nobody)
		if err != nil {
			t.Fatalf("connect as uid %d: %v", nobody, err)
		}
		defer unix.Close(stranger)
		// The stranger's connection is closed on it, not served.
		if err := unix.SetsockoptTimeval(stranger, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 10}); err != nil {
			t.Fatal(err)
		}
		if n, err := unix.Read(stranger, make([]byte, 1)); n != 0 || err != nil {
			t.Errorf("stranger's read = %d, %v; want 0, nil (closed by acceptFront)", n, err)
		}
		ours, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer ours.Close()
		if _, err := ours.Write([]byte("q")); err != nil {
			t.Fatal(err)
		}
		select {
		case c := <-got:
			if c == nil {
				return
			}
			defer c.Close()
			b := make([]byte, 1)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Read(b); err != nil || b[0] != 'q' {
				t.Errorf("served connection read %q, %v; want ours (q)", b, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("acceptFront returned nothing")
		}
	})
}
