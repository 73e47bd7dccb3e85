package agent

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// reaper collects the exit status of Serve's children. With all set (agentd
// is PID 1, so every orphan in the VM is re-parented to it) it waits for any
// child and discards the statuses of processes that are not sessions;
// otherwise it waits only for the pids it started, so that it never steals
// the children of the process hosting Serve (tests).
type reaper struct {
	all  bool
	sigc chan os.Signal
	stop chan struct{}
	done chan struct{}

	// mu protects waiting. spawn holds it across fork and registration so
	// that a child reaped right after fork is always found.
	mu      sync.Mutex
	waiting map[int]chan unix.WaitStatus
}

// reapPoll is a fallback in case a SIGCHLD is missed.
const reapPoll = time.Second

func startReaper(all bool) *reaper {
	r := &reaper{
		all:     all,
		sigc:    make(chan os.Signal, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		waiting: map[int]chan unix.WaitStatus{},
	}
	signal.Notify(r.sigc, syscall.SIGCHLD)
	go r.loop()
	return r
}

// spawn runs start (which forks) and registers the pid it returns. The
// returned channel receives the child's wait status once.
func (r *reaper) spawn(start func() (int, error)) (int, <-chan unix.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := start()
	if err != nil {
		return 0, nil, err
	}
	ch := make(chan unix.WaitStatus, 1)
	r.waiting[pid] = ch
	return pid, ch, nil
}

func (r *reaper) loop() {
	defer close(r.done)
	t := time.NewTicker(reapPoll)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-r.sigc:
		case <-t.C:
		}
		r.reap()
	}
}

func (r *reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ws unix.WaitStatus
	if r.all {
		for {
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil || pid <= 0 {
				return
			}
			r.deliver(pid, ws)
		}
	}
	for pid := range r.waiting {
		for {
			got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
			if err == unix.EINTR {
				continue
			}
			if err == unix.ECHILD {
				// Someone else reaped it; report a kill so the session
				// ends instead of hanging.
				r.deliver(pid, unix.WaitStatus(unix.SIGKILL))
			} else if got == pid {
				r.deliver(pid, ws)
			}
			break
		}
	}
}

// deliver hands ws to the session waiting for pid, if any.
// Preconditions: r.mu is held.
func (r *reaper) deliver(pid int, ws unix.WaitStatus) {
	if ch, ok := r.waiting[pid]; ok {
		ch <- ws
		delete(r.waiting, pid)
	}
}

func (r *reaper) close() {
	signal.Stop(r.sigc)
	close(r.stop)
	<-r.done
}
