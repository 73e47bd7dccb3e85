package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer for one writing process and a polling test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestCLILogsFollowRotation: `msb logs -f` prints every line of a command
// whose output makes the sandbox process rotate exec.log (10 MiB) twice,
// once each and in order.
func TestCLILogsFollowRotation(t *testing.T) {
	c := newCLI(t)
	rootfs := busyboxRootfs(t)
	c.must(0, "create", "--rootfs", rootfs, "--name", "rotor")
	defer c.must(0, "rm", "-f", "rotor")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	follow := exec.CommandContext(ctx, c.bin, "logs", "-f", "--source", "stdout", "rotor")
	follow.Env = c.env
	out := &lockedBuffer{}
	follow.Stdout = out
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer follow.Wait()
	defer cancel()

	const n = 2000000 // about 14 MB of text, more in exec.log's JSON
	c.must(0, "exec", "rotor", "--", "sh", "-c", "seq 1 "+strconv.Itoa(n)+" >/dev/stdout")
	last := "\n" + strconv.Itoa(n) + "\n"
	for !strings.HasSuffix(out.String(), last) && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	cancel()

	var want strings.Builder
	for i := 1; i <= n; i++ {
		want.WriteString(strconv.Itoa(i))
		want.WriteByte('\n')
	}
	if got := out.String(); got != want.String() {
		lines := strings.Split(got, "\n")
		t.Errorf("msb logs -f printed %d bytes in %d lines; want %d bytes (first %q, last %q)",
			len(got), len(lines), want.Len(), lines[0], lines[max(0, len(lines)-2)])
	}
	if _, err := os.Stat(filepath.Join(c.home, "sandboxes", "rotor", "logs", "exec.log.1")); err != nil {
		t.Errorf("exec.log did not rotate: %v", err)
	}
}
