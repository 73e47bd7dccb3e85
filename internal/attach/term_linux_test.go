package attach

import (
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// openPTY returns a pseudo-terminal pair closed at the end of the test.
func openPTY(t *testing.T) (ptmx, tty *os.File) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { ptmx.Close(); tty.Close() })
	return ptmx, tty
}

func TestTerminalRawRestoreSize(t *testing.T) {
	ptmx, tty := openPTY(t)
	if !IsTerminal(tty) {
		t.Fatal("IsTerminal(pty) = false")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if IsTerminal(r) {
		t.Error("IsTerminal(pipe) = true")
	}
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 33, Cols: 101}); err != nil {
		t.Fatal(err)
	}
	// Out is a pipe: the size comes from In.
	term := Terminal{In: tty, Out: w}
	rows, cols, err := term.Size()
	if err != nil || rows != 33 || cols != 101 {
		t.Errorf("Size = %d, %d, %v; want 33, 101", rows, cols, err)
	}
	before, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if before.Lflag&unix.ECHO == 0 {
		t.Fatal("a fresh pty does not echo")
	}
	restore, err := term.Raw()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if raw.Lflag&(unix.ECHO|unix.ICANON|unix.ISIG) != 0 {
		t.Errorf("raw mode lflag = %#x; want no ECHO, ICANON, ISIG", raw.Lflag)
	}
	if err := restore(); err != nil {
		t.Fatal(err)
	}
	after, _ := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if after.Lflag != before.Lflag || after.Iflag != before.Iflag || after.Oflag != before.Oflag {
		t.Errorf("restored termios = %+v; want %+v", after, before)
	}
}

func TestReaderClose(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	rd, err := NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if n, err := rd.Read(buf); err != nil || string(buf[:n]) != "hi" {
		t.Fatalf("Read = %q, %v; want hi", buf[:n], err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := rd.Read(buf)
		got <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := rd.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != io.EOF {
			t.Errorf("Read after Close = %v; want io.EOF", err)
		}
	case <-time.After(testWait):
		t.Fatal("Close did not end the blocked Read")
	}
	if _, err := rd.Read(buf); err != io.EOF {
		t.Errorf("Read of a closed Reader = %v; want io.EOF", err)
	}
	// The file itself is still open and readable.
	if _, err := w.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Read(buf); err != nil || n != 1 {
		t.Errorf("file Read after Reader.Close = %d, %v", n, err)
	}
}

func TestNotifyResize(t *testing.T) {
	ch, stop := NotifyResize()
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGWINCH); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(testWait):
		t.Fatal("no resize after SIGWINCH")
	}
}
