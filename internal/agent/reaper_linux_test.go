package agent

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/agentproto"
)

// TestReapOrphans makes the test process a child subreaper, so that it
// plays PID 1 for orphans: a background process left behind by a session
// is re-parented to it and must be reaped, not left as a zombie.
func TestReapOrphans(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skipf("PR_SET_CHILD_SUBREAPER: %v", err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	c := startServe(t, ServeOptions{Env: []string{"PATH=" + os.Getenv("PATH")}, reapOrphans: true})
	r := c.exec(agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "sleep 0.3 >/dev/null 2>&1 & echo $!"}})
	if r.code != 0 {
		t.Fatalf("got %v", r)
	}
	orphan, err := strconv.Atoi(strings.TrimSpace(string(r.stdout)))
	if err != nil {
		t.Fatalf("orphan pid %q: %v", r.stdout, err)
	}
	// A zombie still answers kill(pid, 0); only a reaped process is gone.
	deadline := time.Now().Add(5 * time.Second)
	for !pidGone(orphan) {
		if time.Now().After(deadline) {
			t.Fatalf("orphan %d not reaped", orphan)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
