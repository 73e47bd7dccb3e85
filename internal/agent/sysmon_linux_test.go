package agent

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRelaxSysmon finds the runtime's sysmon thread and gives it the slack
// (root only: another thread's slack needs CAP_SYS_NICE), and leaves the
// calling thread's alone: a command forked from it must not inherit it.
func TestRelaxSysmon(t *testing.T) {
	tid, ok := sysmonTID()
	if !ok {
		t.Fatal("no thread of this process found asleep in nanosleep; sysmon should be one")
	}
	if tid == os.Getpid() {
		t.Fatalf("sysmon's thread is the main thread %d", tid)
	}
	if os.Geteuid() != 0 {
		t.Skip("setting another thread's timer slack needs CAP_SYS_NICE (root)")
	}
	self := slackOf(t, "self")
	relaxSysmon()
	if got := slackOf(t, strconv.Itoa(tid)); got != int64(sysmonSlack) {
		t.Errorf("sysmon's timer slack = %d ns; want %d", got, sysmonSlack)
	}
	if got := slackOf(t, "self"); got != self {
		t.Errorf("the process's own slack changed %d -> %d; want it left alone", self, got)
	}
}

func slackOf(t *testing.T, who string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + who + "/timerslack_ns")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCommandsKeepDefaultSlack starts a command from a thread that carries
// sysmon's slack, as a thread sysmon started does: without withDefaultSlack
// the command inherits it, with it the command gets the default.
func TestCommandsKeepDefaultSlack(t *testing.T) {
	cat, err := exec.LookPath("cat")
	if err != nil {
		t.Skip("no cat")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(sysmonSlack), 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	defer unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(defaultSlack.Load()), 0, 0, 0)
	slack := func(start func(func() ([]byte, error)) ([]byte, error)) string {
		out, err := start(func() ([]byte, error) { return exec.Command(cat, "/proc/self/timerslack_ns").Output() })
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	plain := func(f func() ([]byte, error)) ([]byte, error) { return f() }
	if got, want := slack(plain), strconv.FormatInt(int64(sysmonSlack), 10); got != want {
		t.Fatalf("a command started plainly from this thread has slack %s; want the thread's %s (inheritance, which the guard exists for)", got, want)
	}
	if got, want := slack(withDefaultSlack[[]byte]), strconv.FormatUint(defaultSlack.Load(), 10); got != want {
		t.Errorf("a command started through withDefaultSlack has slack %s; want %s", got, want)
	}
}
