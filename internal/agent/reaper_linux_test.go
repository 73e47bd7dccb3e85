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

func TestStdinQueue(t *testing.T) {
	q := newStdinQueue(10)
	q.push([]byte("12345678"))
	pushed := make(chan struct{})
	go func() {
		defer close(pushed)
		q.push([]byte("abcd")) // 8+4 > 10: waits for a pop
	}()
	select {
	case <-pushed:
		t.Fatal("push past the limit did not wait")
	case <-time.After(50 * time.Millisecond):
	}
	if b, eof, ok := q.pop(); string(b) != "12345678" || eof || !ok {
		t.Fatalf("pop = %q %v %v", b, eof, ok)
	}
	<-pushed
	q.push(nil) // EOF
	if b, eof, ok := q.pop(); string(b) != "abcd" || eof || !ok {
		t.Fatalf("pop = %q %v %v", b, eof, ok)
	}
	if _, eof, ok := q.pop(); !eof || !ok {
		t.Fatalf("pop after EOF = eof %v ok %v; want EOF", eof, ok)
	}

	// A chunk larger than the limit still passes when the queue is empty,
	// and kill releases a waiting push.
	q = newStdinQueue(4)
	q.push([]byte("too big"))
	if got := q.buffered(); got != 7 {
		t.Errorf("buffered = %d; want 7", got)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		q.push([]byte("x"))
	}()
	time.Sleep(20 * time.Millisecond)
	q.kill()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("kill did not release push")
	}
	if _, _, ok := q.pop(); ok {
		t.Errorf("pop after kill: ok; want !ok")
	}
}
