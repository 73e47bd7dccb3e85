package hostmem

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// HelperArg is the first argument that makes a process the helper of
// viaHelper: the binary's main hands such a process to HelperMain.
const HelperArg = "__msb-hostmem"

// helperTimeout bounds the helper's whole run (a Go process start and two
// mounts: tens of milliseconds).
const helperTimeout = 10 * time.Second

// viaHelper makes the RAM file in a helper process (this binary again)
// that runs in a new user and mount namespace, where it may mount tmpfs,
// and hands the open file back over a socket. The file outlives the
// helper and its namespaces.
func viaHelper(mnt string, size int64) (*os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("huge memory: socketpair: %w", err)
	}
	// Our end is non-blocking, so that the runtime's poller bounds the
	// wait for the helper with a deadline.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, fmt.Errorf("huge memory: socketpair: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "hostmem"), os.NewFile(uintptr(fds[1]), "hostmem-helper")
	defer ours.Close()
	cmd := exec.Command("/proc/self/exe", HelperArg, mnt, strconv.FormatInt(size, 10))
	cmd.Env = []string{}
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:                 syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		GidMappingsEnableSetgroups: false,
		Pdeathsig:                  syscall.SIGKILL,
	}
	var stderr tail
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		theirs.Close()
		// EPERM or EINVAL: user namespaces are off or restricted here.
		return nil, fmt.Errorf("%w: helper in a user namespace: %v", ErrUnavailable, err)
	}
	theirs.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	f, rerr := receiveFile(ours, helperTimeout)
	if rerr != nil {
		cmd.Process.Kill()
	}
	werr := <-done
	switch {
	case rerr != nil && werr != nil:
		return nil, fmt.Errorf("%w: helper: %v: %s", ErrUnavailable, werr, stderr.String())
	case rerr != nil:
		return nil, fmt.Errorf("huge memory: helper: %w", rerr)
	}
	return f, nil
}

// receiveFile reads one descriptor sent with SCM_RIGHTS. The helper sends
// exactly one, or closes the socket.
func receiveFile(s *os.File, timeout time.Duration) (*os.File, error) {
	if err := s.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, fmt.Errorf("receive: %w", err)
	}
	rc, err := s.SyscallConn()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	var n, oobn int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC)
		return rerr != unix.EAGAIN
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return nil, fmt.Errorf("receive: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || n != 1 || len(msgs) != 1 {
		return nil, errors.New("receive: no file from the helper")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, errors.New("receive: not one file from the helper")
	}
	return os.NewFile(uintptr(fds[0]), "ram"), nil
}

// HelperMain is the helper process of viaHelper: args are the mount point
// and the size; fd 3 is the socket to send the file on. It returns the
// exit status.
func HelperMain(args []string) int {
	if err := helper(args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func helper(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: " + HelperArg + " MOUNTPOINT SIZE")
	}
	size, err := strconv.ParseInt(args[1], 10, 64)
	if err != nil || size <= 0 {
		return fmt.Errorf("size %q", args[1])
	}
	// A mount namespace of this thread's own even here, where viaHelper
	// made one: run by hand as root, the helper must not make the host's
	// mounts private nor mount anything in them.
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("new mount namespace: %w", err)
	}
	if err := mountTmpfs(args[0], size); err != nil {
		return err
	}
	f, err := createFile(args[0], size)
	if err != nil {
		return err
	}
	defer f.Close()
	sock := os.NewFile(3, "hostmem")
	defer sock.Close()
	if err := unix.Sendmsg(int(sock.Fd()), []byte{0}, unix.UnixRights(int(f.Fd())), nil, 0); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

// tail keeps the last 1 KiB written: the helper's error, if any.
type tail struct{ b []byte }

func (t *tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 1024 {
		t.b = t.b[len(t.b)-1024:]
	}
	return len(p), nil
}

func (t *tail) String() string { return string(t.b) }
