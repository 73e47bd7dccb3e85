package agent

import (
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// sysmonSlack is the timer slack given to the Go runtime's sysmon thread.
//
// sysmon sleeps 20 µs between checks while it keeps finding a P in a
// syscall longer than that, and under TCG every copy agentd makes (a 256 KiB
// pipe or socket write) is. Each of those sleeps was a timer interrupt of
// its own: during a 512 MiB exec stdin into a TCG guest the guest took
// ~2600 local timer interrupts a second, and a sample of the guest had 14 %
// of its time in xAPIC register writes (reprogramming the timer, EOIs: MMIO
// exits under TCG). With a slack of one scheduler tick the kernel fires
// those sleeps together with timers that fire anyway. sysmon then notices a
// P stuck in a syscall up to a tick later; agentd's descriptors are polled,
// so that only happens for copies and disk reads, and a tick (4 ms at
// HZ=250) is well below the 10 ms after which it preempts a goroutine.
const sysmonSlack = 4 * time.Millisecond

// relaxSysmon sets sysmon's timer slack (Linux ≥ 4.6, /proc/TID/
// timerslack_ns, CAP_SYS_NICE for another thread). sysmon is the first
// thread runtime.main starts, so it is the process's lowest thread id after
// the main thread's (a static binary has no other thread before it); it is
// taken only if it sleeps where sysmon sleeps. No thread that could fork a
// command may get the slack: children inherit it. Best effort: any doubt
// leaves things alone.
func relaxSysmon() {
	tid, ok := sysmonTID()
	if ok {
		// The slack every command gets (forkDefaultSlack): the process's
		// own, from before sysmon's threads carried another.
		if b, err := os.ReadFile("/proc/self/timerslack_ns"); err == nil {
			if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 {
				defaultSlack.Store(n)
			}
		}
	}
	if !ok {
		return
	}
	_ = os.WriteFile("/proc/"+strconv.Itoa(tid)+"/timerslack_ns", []byte(strconv.FormatInt(int64(sysmonSlack), 10)), 0)
}

// sysmonTID finds sysmon's thread id, waiting briefly for it to be asleep.
func sysmonTID() (int, bool) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0, false
	}
	pid := os.Getpid()
	var tids []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n != pid {
			tids = append(tids, n)
		}
	}
	if len(tids) == 0 {
		return 0, false
	}
	tid := slices.Min(tids)
	for range 50 {
		if asleep(tid) {
			return tid, true
		}
		time.Sleep(100 * time.Microsecond)
	}
	return 0, false
}

// asleep reports whether thread tid of this process is blocked where sysmon
// sleeps: nanosleep(2) between checks, futex(2) while every P is idle (its
// /proc/TID/syscall starts with the syscall's number).
func asleep(tid int) bool {
	b, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(tid) + "/syscall")
	if err != nil {
		return false
	}
	nr, _, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
	return nr == strconv.Itoa(unix.SYS_NANOSLEEP) || nr == strconv.Itoa(unix.SYS_FUTEX)
}

// defaultSlack is the timer slack commands are started with: the process's
// own (the kernel's default, 50 µs, unless agentd was started with another).
var defaultSlack atomic.Uint64

func init() { defaultSlack.Store(50_000) }

// withDefaultSlack runs start, which forks or execs, on a thread whose
// timer slack is defaultSlack. Threads that sysmon starts (it starts Ms
// when it takes a P back from a syscall) inherit its slack, and a process
// inherits the slack of the thread that forked it and keeps it across
// execve: without this a command could run with sysmon's 4 ms, and its
// sleeps and poll timeouts end up to 4 ms late.
func withDefaultSlack[T any](start func() (T, error)) (T, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(defaultSlack.Load()), 0, 0, 0)
	return start()
}
