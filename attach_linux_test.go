package msb

import (
	"bufio"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

func TestShell(t *testing.T) {
	sb := agentSandbox(t)
	res, err := sb.Shell(t.Context(), `echo "$0:$1" out; echo err >&2; exit 4`)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(res.Stdout); got != "/bin/sh: out\n" || string(res.Stderr) != "err\n" || res.ExitCode != 4 {
		t.Errorf("Shell = %q, %q, %d; want %q, %q, 4", got, res.Stderr, res.ExitCode, "/bin/sh: out\n", "err\n")
	}
}

// screen collects a session's output and waits for text in it.
type screen struct {
	mu   sync.Mutex
	buf  strings.Builder
	more chan struct{}
}

func newScreen() *screen { return &screen{more: make(chan struct{}, 1)} }

func (s *screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.buf.Write(p)
	s.mu.Unlock()
	select {
	case s.more <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (s *screen) waitFor(t *testing.T, text string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		got := s.buf.String()
		s.mu.Unlock()
		if strings.Contains(got, text) {
			return
		}
		select {
		case <-s.more:
		case <-deadline:
			t.Fatalf("screen never showed %q; got %q", text, got)
		}
	}
}

func TestAttachIO(t *testing.T) {
	sb := agentSandbox(t)
	inR, inW := io.Pipe()
	defer inW.Close()
	scr := newScreen()
	var mu sync.Mutex
	rows, cols := uint16(30), uint16(100)
	size := func() (uint16, uint16, error) {
		mu.Lock()
		defer mu.Unlock()
		return rows, cols, nil
	}
	changed := make(chan struct{}, 1)
	type result struct {
		res AttachResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := sb.Attach(t.Context(), WithAttachIO(inR, scr), WithTermSize(size, changed),
			WithAttachExec(WithExecEnv("PS1", "$ ")))
		done <- result{res, err}
	}()
	type_ := func(s string) {
		if _, err := inW.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	type_("stty size; echo T=$TERM\r")
	scr.waitFor(t, "30 100")
	scr.waitFor(t, "T="+termEnv())
	mu.Lock()
	rows, cols = 41, 133
	mu.Unlock()
	changed <- struct{}{}
	// The resize and the next line race inside the guest only if the
	// resize frame were sent after the keystrokes; it is sent first.
	time.Sleep(100 * time.Millisecond)
	type_("stty size\r")
	scr.waitFor(t, "41 133")
	type_("echo mark; sleep 600\r")
	scr.waitFor(t, "mark")
	type_("\x1d")
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Attach did not return after Ctrl-]")
	}
	if r.err != nil || !r.res.Detached {
		t.Fatalf("Attach = %+v, %v; want detached", r.res, r.err)
	}
}

func TestAttachExitCode(t *testing.T) {
	sb := agentSandbox(t)
	scr := newScreen()
	res, err := sb.Attach(t.Context(), WithAttachIO(strings.NewReader(""), scr),
		WithAttachCommand("sh", "-c", "echo hello; exit 7"), WithDetachKeys(""))
	if err != nil || res != (AttachResult{ExitCode: 7}) {
		t.Fatalf("Attach = %+v, %v; want exit code 7", res, err)
	}
	scr.waitFor(t, "hello")
}

func TestAttachErrors(t *testing.T) {
	sb := agentSandbox(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if _, err := sb.Attach(t.Context(), WithTerminal(r, w)); !errors.Is(err, ErrNotTerminal) {
		t.Errorf("Attach(pipe terminal) = %v; want ErrNotTerminal", err)
	}
	if _, err := sb.Attach(t.Context()); err == nil || !strings.Contains(err.Error(), "no terminal") {
		t.Errorf("Attach() = %v; want a no-terminal error", err)
	}
	_, err = sb.Attach(t.Context(), WithAttachIO(r, w), WithDetachKeys("ctrl-1"))
	if err == nil || !strings.Contains(err.Error(), `no ctrl-1`) {
		t.Errorf("Attach(bad detach keys) = %v; want the parse error", err)
	}
	var ef *ExecFailed
	_, err = sb.Attach(t.Context(), WithAttachIO(r, w), WithAttachCommand("/nonexistent"))
	if !errors.As(err, &ef) || ef.ExitCode() != 127 {
		t.Errorf("Attach(missing command) = %v; want *ExecFailed not_found", err)
	}
}

// TestAttachTerminal attaches a real pseudo-terminal, as the CLI does with
// the user's: raw mode while attached, the size from the terminal, and the
// terminal mode restored after the detach.
func TestAttachTerminal(t *testing.T) {
	sb := agentSandbox(t)
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 27, Cols: 91}); err != nil {
		t.Fatal(err)
	}
	before, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	scr := newScreen()
	go func() { _, _ = io.Copy(scr, bufio.NewReader(ptmx)) }()
	done := make(chan error, 1)
	var res AttachResult
	go func() {
		var err error
		res, err = sb.Attach(t.Context(), WithTerminal(tty, tty), WithDetachKeys("ctrl-p,ctrl-q"))
		done <- err
	}()
	if _, err := ptmx.Write([]byte("stty size\r")); err != nil {
		t.Fatal(err)
	}
	scr.waitFor(t, "27 91")
	raw, _ := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if raw.Lflag&(unix.ECHO|unix.ICANON) != 0 {
		t.Errorf("terminal not in raw mode while attached: lflag %#x", raw.Lflag)
	}
	if _, err := ptmx.Write([]byte("\x10\x11")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil || !res.Detached {
			t.Fatalf("Attach = %+v, %v; want detached", res, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Attach did not return after ctrl-p,ctrl-q")
	}
	after, _ := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if after.Lflag != before.Lflag || after.Iflag != before.Iflag || after.Oflag != before.Oflag {
		t.Errorf("terminal not restored: %+v; want %+v", after, before)
	}
}
