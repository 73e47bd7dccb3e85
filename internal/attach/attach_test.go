package attach

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"
)

const testWait = 5 * time.Second

// fakeSession is a command on a terminal: what it reads from stdin is
// recorded, output is what the test writes to out, and it exits when the
// test calls exit.
type fakeSession struct {
	stdinR *io.PipeReader
	stdinW *io.PipeWriter
	outR   *io.PipeReader
	outW   *io.PipeWriter

	mu      sync.Mutex
	stdin   bytes.Buffer
	eof     bool
	resizes [][2]uint16

	got    chan struct{} // a value per stdin read
	exitCh chan int
}

func newFakeSession() *fakeSession {
	s := &fakeSession{got: make(chan struct{}, 64), exitCh: make(chan int, 1)}
	s.stdinR, s.stdinW = io.Pipe()
	s.outR, s.outW = io.Pipe()
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := s.stdinR.Read(buf)
			s.mu.Lock()
			s.stdin.Write(buf[:n])
			if err != nil {
				s.eof = true
			}
			s.mu.Unlock()
			s.got <- struct{}{}
			if err != nil {
				return
			}
		}
	}()
	return s
}

func (s *fakeSession) Stdin() io.WriteCloser { return s.stdinW }
func (s *fakeSession) Stdout() io.Reader     { return s.outR }

func (s *fakeSession) Resize(rows, cols uint16) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resizes = append(s.resizes, [2]uint16{rows, cols})
	return nil
}

func (s *fakeSession) Wait() (int, error) { return <-s.exitCh, nil }

// exit ends the command with code after its output is closed.
func (s *fakeSession) exit(code int) {
	s.outW.Close()
	s.exitCh <- code
}

func (s *fakeSession) stdinText() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stdin.String(), s.eof
}

// waitStdin waits until the session has read want.
func (s *fakeSession) waitStdin(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(testWait)
	for {
		if got, _ := s.stdinText(); got == want {
			return
		} else if len(got) > len(want) {
			t.Fatalf("session stdin = %q; want %q", got, want)
		}
		select {
		case <-s.got:
		case <-deadline:
			got, _ := s.stdinText()
			t.Fatalf("session stdin = %q; want %q", got, want)
		}
	}
}

// fakeTerm records raw mode and what reaches the screen.
type fakeTerm struct {
	mu       sync.Mutex
	raw      bool
	restored int
	screen   bytes.Buffer
	// afterRestore counts writes to the screen after the restore.
	afterRestore int
}

func (f *fakeTerm) Raw() (func() error, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.raw = true
	return func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.raw = false
		f.restored++
		return nil
	}, nil
}

func (f *fakeTerm) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.raw {
		f.afterRestore++
	}
	return f.screen.Write(p)
}

func (f *fakeTerm) check(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.raw || f.restored != 1 {
		t.Errorf("terminal raw=%v restored %d times; want restored once", f.raw, f.restored)
	}
	if f.afterRestore != 0 {
		t.Errorf("%d writes reached the terminal outside raw mode", f.afterRestore)
	}
}

type runResult struct {
	res Result
	err error
}

// start runs Run in the background with the user's keystrokes coming from
// the returned writer.
func start(ctx context.Context, s *fakeSession, ft *fakeTerm, cfg Config) (*io.PipeWriter, <-chan runResult) {
	inR, inW := io.Pipe()
	cfg.In, cfg.Out, cfg.Raw = inR, ft, ft.Raw
	done := make(chan runResult, 1)
	go func() {
		res, err := Run(ctx, s, cfg)
		inR.Close()
		done <- runResult{res, err}
	}()
	return inW, done
}

func wait(t *testing.T, done <-chan runResult) runResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(testWait):
		t.Fatal("Run did not return")
	}
	return runResult{}
}

func TestRunExit(t *testing.T) {
	s, ft := newFakeSession(), &fakeTerm{}
	in, done := start(t.Context(), s, ft, Config{DetachKeys: []byte{0x1d}})
	if _, err := in.Write([]byte("exit 3\r")); err != nil {
		t.Fatal(err)
	}
	s.waitStdin(t, "exit 3\r")
	if _, err := s.outW.Write([]byte("bye\r\n")); err != nil {
		t.Fatal(err)
	}
	s.exit(3)
	r := wait(t, done)
	if r.err != nil || r.res != (Result{ExitCode: 3}) {
		t.Errorf("Run = %+v, %v; want exit code 3", r.res, r.err)
	}
	if got := ft.screen.String(); got != "bye\r\n" {
		t.Errorf("screen = %q; want %q", got, "bye\r\n")
	}
	ft.check(t)
}

func TestRunDetach(t *testing.T) {
	tests := []struct {
		name      string
		keys      []byte
		typed     []string // successive writes of the user
		forwarded string   // what the command must have read
	}{
		{name: "ctrl-] mid-stream", keys: []byte{0x1d}, typed: []string{"ls\x1dnot sent"}, forwarded: "ls"},
		{name: "two keys, prefix that is not detach forwarded", keys: []byte{0x10, 0x11},
			typed: []string{"a\x10b", "\x10", "\x11"}, forwarded: "a\x10b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, ft := newFakeSession(), &fakeTerm{}
			in, done := start(t.Context(), s, ft, Config{DetachKeys: tc.keys})
			for _, w := range tc.typed {
				if _, err := in.Write([]byte(w)); err != nil {
					t.Fatal(err)
				}
			}
			r := wait(t, done)
			if r.err != nil || !r.res.Detached {
				t.Fatalf("Run = %+v, %v; want detached", r.res, r.err)
			}
			s.waitStdin(t, tc.forwarded)
			if _, eof := s.stdinText(); eof {
				t.Errorf("detaching closed the command's stdin; the caller decides its fate")
			}
			// Output after the detach does not reach the restored terminal.
			go func() { _, _ = s.outW.Write([]byte("late output")) }()
			time.Sleep(50 * time.Millisecond)
			ft.check(t)
			if got := ft.screen.String(); got != "" {
				t.Errorf("screen = %q; want nothing", got)
			}
			s.exit(0)
		})
	}
}

func TestRunNoDetachKeys(t *testing.T) {
	s, ft := newFakeSession(), &fakeTerm{}
	in, done := start(t.Context(), s, ft, Config{})
	if _, err := in.Write([]byte("a\x1db")); err != nil {
		t.Fatal(err)
	}
	s.waitStdin(t, "a\x1db")
	in.Close()
	deadline := time.After(testWait)
	for {
		if _, eof := s.stdinText(); eof {
			break
		}
		select {
		case <-s.got:
		case <-deadline:
			t.Fatal("end of input did not reach the command as EOF")
		}
	}
	s.exit(0)
	if r := wait(t, done); r.err != nil || r.res.Detached {
		t.Errorf("Run = %+v, %v; want exit 0", r.res, r.err)
	}
	ft.check(t)
}

func TestRunResize(t *testing.T) {
	s, ft := newFakeSession(), &fakeTerm{}
	resize := make(chan struct{})
	var mu sync.Mutex
	size := [2]uint16{40, 120}
	cfg := Config{
		Resize: resize,
		Size: func() (uint16, uint16, error) {
			mu.Lock()
			defer mu.Unlock()
			return size[0], size[1], nil
		},
	}
	_, done := start(t.Context(), s, ft, cfg)
	send := func() {
		select {
		case resize <- struct{}{}:
		case <-time.After(testWait):
			t.Fatal("resize not taken")
		}
	}
	send()
	// A send is taken before it is handled: the size may change only once
	// the first resize has reached the session, or it reads the new one.
	for deadline := time.Now().Add(testWait); ; time.Sleep(time.Millisecond) {
		s.mu.Lock()
		n := len(s.resizes)
		s.mu.Unlock()
		if n >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("first resize never reached the session")
		}
	}
	mu.Lock()
	size = [2]uint16{50, 132}
	mu.Unlock()
	send()
	// An unbuffered send is taken before it is handled; one more makes
	// sure the second was handled.
	send()
	s.exit(0)
	wait(t, done)
	s.mu.Lock()
	got := s.resizes
	s.mu.Unlock()
	if len(got) != 3 || got[0] != [2]uint16{40, 120} || got[1] != [2]uint16{50, 132} {
		t.Errorf("resizes = %v; want [40 120] then [50 132] twice", got)
	}
	ft.check(t)
}

func TestRunCancel(t *testing.T) {
	s, ft := newFakeSession(), &fakeTerm{}
	ctx, cancel := context.WithCancel(t.Context())
	_, done := start(ctx, s, ft, Config{})
	cancel()
	r := wait(t, done)
	if !errors.Is(r.err, context.Canceled) {
		t.Errorf("Run = %+v, %v; want context.Canceled", r.res, r.err)
	}
	ft.check(t)
	s.exit(0)
}

func TestRunRawFails(t *testing.T) {
	s := newFakeSession()
	wantErr := errors.New("inappropriate ioctl")
	_, err := Run(t.Context(), s, Config{In: bytes.NewReader(nil), Out: io.Discard,
		Raw: func() (func() error, error) { return nil, wantErr }})
	if !errors.Is(err, wantErr) {
		t.Errorf("Run = %v; want the raw-mode error", err)
	}
	s.exit(0)
}
