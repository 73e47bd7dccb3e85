package e2e

import (
	"bytes"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// ptyScreen collects what msb writes to the pseudo-terminal the test drives.
type ptyScreen struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	more chan struct{}
}

func (s *ptyScreen) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.buf.Write(p)
	s.mu.Unlock()
	select {
	case s.more <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (s *ptyScreen) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// waitFor waits until the screen shows text after byte offset from.
func (s *ptyScreen) waitFor(t *testing.T, from int, text string, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		if got := s.String(); len(got) >= from && strings.Contains(got[from:], text) {
			return
		}
		select {
		case <-s.more:
		case <-deadline:
			t.Fatalf("terminal never showed %q; screen:\n%q", text, s.String())
		}
	}
}

// TestTerm drives one booted guest through the terminal and lifecycle verbs:
// `msb attach` on a pseudo-terminal the test opens (its size and a resize
// seen by `stty size`, detach with Ctrl-] while the sandbox keeps running),
// the terminal restored when msb gets SIGTERM, `msb exec -t` on a terminal, `msb shell` with a script on stdin, `msb restart` keeping a written file,
// and `msb touch` postponing an idle timeout, which then fires.
func TestTerm(t *testing.T) {
	c := newCLI(t)
	rootfs := busyboxRootfs(t)
	// Long enough that the steps before the touch test (each a client of
	// the relay, so activity) never leave a gap of a timeout under TCG.
	const idle = 15 * time.Second
	c.must(0, "create", "--rootfs", rootfs, "--name", "tm", "--idle-timeout", idle.String())

	t.Run("attach", func(t *testing.T) {
		cmd := exec.Command(c.bin, "attach", "tm")
		cmd.Env = c.env
		ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 31, Cols: 97})
		if err != nil {
			t.Fatal(err)
		}
		defer ptmx.Close()
		scr := &ptyScreen{more: make(chan struct{}, 1)}
		go func() { _, _ = io.Copy(scr, ptmx) }()
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		defer func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Kill()
			}
		}()
		// The shell's prompt may come before or after the typed line is
		// echoed; the markers come from the commands' output only.
		start := time.Now()
		if _, err := ptmx.Write([]byte("stty size; echo S1-$((6*7))\r")); err != nil {
			t.Fatal(err)
		}
		scr.waitFor(t, 0, "31 97", time.Minute)
		scr.waitFor(t, 0, "S1-42", time.Minute)
		t.Logf("msb attach: first command's output %v after start", time.Since(start))

		// A resize of the terminal reaches msb as SIGWINCH (the pty is
		// its controlling terminal) and the guest's terminal follows.
		if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 45, Cols: 133}); err != nil {
			t.Fatal(err)
		}
		from := len(scr.String())
		deadline := time.Now().Add(time.Minute)
		for !strings.Contains(scr.String()[from:], "45 133") {
			if time.Now().After(deadline) {
				t.Fatalf("stty size never showed 45 133 after the resize; screen:\n%q", scr.String())
			}
			if _, err := ptmx.Write([]byte("stty size\r")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
		}

		// Ctrl-] detaches: msb exits 0 and says how to get back.
		from = len(scr.String())
		if _, err := ptmx.Write([]byte{0x1d}); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("msb attach after Ctrl-]: %v; screen:\n%q", err, scr.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("msb attach still running after Ctrl-]; screen:\n%q", scr.String())
		}
		scr.waitFor(t, from, "msb attach tm", 10*time.Second)
		if s := c.ls()["tm"]; s.Status != "Running" {
			t.Errorf("after the detach the sandbox is %q; want Running", s.Status)
		}
	})

	t.Run("attach restores the terminal on SIGTERM", func(t *testing.T) {
		cmd := exec.Command(c.bin, "attach", "tm")
		cmd.Env = c.env
		ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
		if err != nil {
			t.Fatal(err)
		}
		defer ptmx.Close()
		defer func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Kill()
			}
		}()
		scr := &ptyScreen{more: make(chan struct{}, 1)}
		go func() { _, _ = io.Copy(scr, ptmx) }()
		// TCGETS on the master reads the terminal msb has (Linux's
		// tty_mode_ioctl uses the slave's settings).
		lflag := func() uint32 {
			tio, err := unix.IoctlGetTermios(int(ptmx.Fd()), unix.TCGETS)
			if err != nil {
				t.Fatal(err)
			}
			return tio.Lflag
		}
		if _, err := ptmx.Write([]byte("echo R-$((2+2))\r")); err != nil {
			t.Fatal(err)
		}
		scr.waitFor(t, 0, "R-4", time.Minute)
		if l := lflag(); l&(unix.ECHO|unix.ICANON) != 0 {
			t.Errorf("terminal not raw while attached: lflag %#x", l)
		}
		if err := cmd.Process.Signal(unix.SIGTERM); err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
			t.Errorf("msb attach after SIGTERM: %v; want exit status 130", err)
		}
		if l := lflag(); l&(unix.ECHO|unix.ICANON) != unix.ECHO|unix.ICANON {
			t.Errorf("terminal not restored after SIGTERM: lflag %#x", l)
		}
		if s := c.ls()["tm"]; s.Status != "Running" {
			t.Errorf("after SIGTERM to msb attach the sandbox is %q; want Running", s.Status)
		}
	})

	t.Run("exec -t on a terminal", func(t *testing.T) {
		cmd := exec.Command(c.bin, "exec", "-t", "tm", "--", "sh", "-c", "stty size; exit 3")
		cmd.Env = c.env
		ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 21, Cols: 71})
		if err != nil {
			t.Fatal(err)
		}
		defer ptmx.Close()
		scr := &ptyScreen{more: make(chan struct{}, 1)}
		go func() { _, _ = io.Copy(scr, ptmx) }()
		err = cmd.Wait()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
			t.Errorf("msb exec -t: %v; want exit status 3", err)
		}
		scr.waitFor(t, 0, "21 71", 10*time.Second)
	})

	t.Run("shell script on stdin", func(t *testing.T) {
		r, err := c.run(t.Context(), []byte("echo from-$((1+2))\nexit 5\n"), "shell", "tm")
		if err != nil {
			t.Fatal(err)
		}
		if r.code != 5 || string(r.stdout) != "from-3\n" {
			t.Errorf("msb shell < script: exit %d, stdout %q; want 5, %q (stderr %q)", r.code, r.stdout, "from-3\n", r.stderr)
		}
	})

	t.Run("restart keeps files", func(t *testing.T) {
		c.must(0, "exec", "tm", "--", "sh", "-c", "echo kept > /root/restart-mark && sync")
		before := c.ls()["tm"].PID
		start := time.Now()
		r := c.must(0, "restart", "tm")
		t.Logf("msb restart took %v (clean stop and boot)", time.Since(start))
		if strings.TrimSpace(string(r.stdout)) != "tm" {
			t.Errorf("restart stdout = %q; want the name", r.stdout)
		}
		after := c.ls()["tm"]
		if after.Status != "Running" || after.PID == 0 || after.PID == before {
			t.Errorf("after restart: %+v; want Running with a new pid (was %d)", after, before)
		}
		if got := string(c.must(0, "exec", "tm", "--", "cat", "/root/restart-mark").stdout); got != "kept\n" {
			t.Errorf("file after restart = %q; want %q", got, "kept\n")
		}
	})

	t.Run("touch postpones the idle stop", func(t *testing.T) {
		// Nothing but touch talks to the sandbox from here: ls reads the
		// store only. Touching every 2 s for 2.5 timeouts keeps it up.
		start := time.Now()
		var lastTouch time.Time
		for time.Since(start) < idle*5/2 {
			c.must(0, "touch", "tm")
			lastTouch = time.Now()
			time.Sleep(2 * time.Second)
			if s := c.ls()["tm"]; s.Status != "Running" {
				t.Fatalf("sandbox %q (%s) %v into the touches, idle timeout %v", s.Status, s.Reason, time.Since(start), idle)
			}
		}
		for {
			s := c.ls()["tm"]
			if s.Status != "Running" {
				if s.Reason != "IdleTimeout" {
					t.Errorf("stopped with reason %q; want IdleTimeout", s.Reason)
				}
				if d := time.Since(lastTouch); d < idle-time.Second {
					t.Errorf("idle stop %v after the last touch; want about %v", d, idle)
				}
				break
			}
			if time.Since(lastTouch) > idle+30*time.Second {
				t.Fatalf("still running %v after the last touch (idle timeout %v)", time.Since(lastTouch), idle)
			}
			time.Sleep(500 * time.Millisecond)
		}
		if r := c.must(1, "touch", "tm"); !strings.Contains(string(r.stderr), "not running") {
			t.Errorf("touch of a stopped sandbox: stderr %q", r.stderr)
		}
	})
}
