package sandbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/procfs"
)

// errGone: the recorded sandbox process has exited, or its pid now names
// another process.
var errGone = errors.New("process is gone")

// proc is a sandbox process as stop and remove see it: not necessarily a
// child of this process, named by pid and start time (procfs.StartTime,
// recorded with the run) and, where the kernel has pidfds (Linux 5.3+),
// pinned by one, so no signal reaches a process that took over the pid.
type proc struct {
	pid   int
	start int64 // clock ticks after boot; 0 unknown
	fd    int   // pidfd, or -1 without pidfd support
}

// pollStep bounds one wait for the process to exit between checks of ctx.
const pollStep = 20 * time.Millisecond

// openProc returns the process pid if it is still the one that started at
// start, else errGone.
func openProc(pid int, start int64) (*proc, error) {
	fd, err := pidfdOpen(pid)
	switch {
	case err == nil:
	case errors.Is(err, unix.ESRCH):
		return nil, errGone
	case errors.Is(err, errors.ErrUnsupported), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EPERM):
		fd = -1 // no pidfds (old kernel, other OS, or a seccomp filter): kill(2) after a start-time check
	default:
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	// Checked after the pidfd pins a process: the one it pins started no
	// later than now, so if the pid's process still has the recorded start
	// time, that is the one the pidfd refers to.
	if !procfs.Alive(pid, start) {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, errGone
	}
	return &proc{pid: pid, start: start, fd: fd}, nil
}

func (p *proc) close() {
	if p.fd >= 0 {
		unix.Close(p.fd)
		p.fd = -1
	}
}

// signal sends sig; a process that has exited meanwhile is not an error.
func (p *proc) signal(sig unix.Signal) error {
	var err error
	switch {
	case p.fd >= 0:
		err = pidfdSendSignal(p.fd, sig)
	case !procfs.Alive(p.pid, p.start):
		return nil
	default:
		err = unix.Kill(p.pid, sig)
	}
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signal process %d: %w", p.pid, err)
	}
	return nil
}

// wait reports whether the process exits (a zombie counts) within timeout;
// it returns false early when ctx is done.
func (p *proc) wait(ctx context.Context, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		step := min(time.Until(deadline), pollStep)
		if p.exited(max(step, 0)) {
			return true
		}
		if ctx.Err() != nil || !time.Now().Before(deadline) {
			return false
		}
	}
}

// exited waits up to d for the process to exit and reports whether it has.
func (p *proc) exited(d time.Duration) bool {
	if p.fd >= 0 {
		if done, err := pidfdExited(p.fd, d); err == nil {
			return done
		}
	}
	if !procfs.Alive(p.pid, p.start) {
		return true
	}
	time.Sleep(d)
	return !procfs.Alive(p.pid, p.start)
}
