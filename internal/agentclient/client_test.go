package agentclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"

	"github.com/msb-go/msb/internal/agentproto"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startRelay serves a fake relay on a Unix socket and dials it.
func startRelay(t *testing.T, offset uint32) (*Client, *fakeAgent) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	agentCh := make(chan *fakeAgent, 1)
	go func() {
		defer ln.Close()
		conn, err := ln.Accept()
		if err != nil {
			close(agentCh)
			return
		}
		a := newFakeAgent(conn)
		agentCh <- a
		if a.greet(true, offset, testReady) != nil {
			conn.Close()
			close(a.done)
			return
		}
		a.run()
	}()
	c, err := Dial(t.Context(), sock)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	a := <-agentCh
	t.Cleanup(func() {
		c.Close()
		<-a.done
	})
	return c, a
}

func TestHandshake(t *testing.T) {
	tests := []struct {
		name   string
		start  func(*testing.T) (*Client, *fakeAgent)
		offset uint32
	}{
		{"direct", startDirect, 0},
		{"relay slot 0", func(t *testing.T) (*Client, *fakeAgent) { return startRelay(t, 0) }, 0},
		{"relay slot 3", func(t *testing.T) (*Client, *fakeAgent) { return startRelay(t, 3*agentproto.IDStep) }, 3 * agentproto.IDStep},
		{"relay slot 15", func(t *testing.T) (*Client, *fakeAgent) { return startRelay(t, 15*agentproto.IDStep) }, 15 * agentproto.IDStep},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, a := tc.start(t)
			if diff := cmp.Diff(testReady, c.Ready()); diff != "" {
				t.Errorf("Ready() (-want +got):\n%s", diff)
			}
			if c.Version() != 1 {
				t.Errorf("Version() = %d; want 1", c.Version())
			}
			for range 3 {
				if _, err := c.Exec(t.Context(), agentproto.ExecRequest{Cmd: "echo"}, nil); err != nil {
					t.Fatal(err)
				}
			}
			a.mu.Lock()
			ids := append([]uint32(nil), a.requestIDs...)
			a.mu.Unlock()
			want := []uint32{tc.offset + 1, tc.offset + 2, tc.offset + 3}
			if diff := cmp.Diff(want, ids); diff != "" {
				t.Errorf("request ids (-want +got):\n%s", diff)
			}
		})
	}
}

// handshakeWith runs NewDirect (or the relay handshake) against a peer
// that writes greeting and then stays silent.
func handshakeWith(ctx context.Context, relay bool, greeting []byte, closeAfter bool) error {
	cc, ac := net.Pipe()
	defer ac.Close()
	go func() {
		ac.Write(greeting)
		if closeAfter {
			ac.Close()
		}
	}()
	c, err := handshake(ctx, cc, relay)
	if err == nil {
		c.Close()
	}
	return err
}

func readyFrame(t *testing.T, id uint32, typ agentproto.Type, ready agentproto.Ready) []byte {
	t.Helper()
	m, err := agentproto.New(id, typ, ready)
	if err != nil {
		t.Fatal(err)
	}
	f, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestHandshakeErrors(t *testing.T) {
	good := readyFrame(t, 0, agentproto.TypeReady, testReady)
	offset := func(o uint32, rest []byte) []byte { return append(binary.BigEndian.AppendUint32(nil, o), rest...) }
	tests := []struct {
		name       string
		relay      bool
		greeting   []byte
		closeAfter bool
		timeout    bool
		want       error
	}{
		{"relay full closes at once", true, nil, true, false, ErrClosed},
		{"eof after offset", true, offset(0, nil), true, false, ErrClosed},
		{"eof mid ready", false, good[:7], true, false, ErrClosed},
		{"offset not a slot", true, offset(5, good), false, false, ErrProtocol},
		{"offset past slot 15", true, offset(16*agentproto.IDStep, good), false, false, ErrProtocol},
		{"first frame not ready", false, readyFrame(t, 0, agentproto.TypeExecStarted, testReady), false, false, ErrProtocol},
		{"ready with id", false, readyFrame(t, 7, agentproto.TypeReady, testReady), false, false, ErrProtocol},
		{"newer agent", false, readyFrame(t, 0, agentproto.TypeReady, agentproto.Ready{ProtocolVersion: 9}), false, false, agentproto.ErrUnsupportedVersion},
		{"huge frame", false, []byte{0xff, 0xff, 0xff, 0xff}, false, false, agentproto.ErrFrameTooLarge},
		{"silent agent", false, nil, false, true, context.DeadlineExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			if tc.timeout {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, 50*time.Millisecond)
				defer cancel()
			}
			err := handshakeWith(ctx, tc.relay, tc.greeting, tc.closeAfter)
			if !errors.Is(err, tc.want) {
				t.Errorf("handshake error = %v; want %v", err, tc.want)
			}
		})
	}
}

func TestDialMissingSocket(t *testing.T) {
	if _, err := Dial(t.Context(), filepath.Join(t.TempDir(), "nope.sock")); err == nil {
		t.Errorf("Dial of a missing socket succeeded; want error")
	}
}

func TestExecCollected(t *testing.T) {
	c, _ := startDirect(t)
	big := strings.Repeat("0123456789abcdef", 20000) // 320 KB through cat
	tests := []struct {
		name  string
		req   agentproto.ExecRequest
		stdin io.Reader
		want  ExecResult
	}{
		{"echo", agentproto.ExecRequest{Cmd: "echo", Args: []string{"hello", "world"}}, nil, ExecResult{Stdout: []byte("hello world\n")}},
		{"stderr and code", agentproto.ExecRequest{Cmd: "stderr", Args: []string{"oops"}}, nil, ExecResult{Stderr: []byte("oops"), ExitCode: 3}},
		{"cat no stdin", agentproto.ExecRequest{Cmd: "cat"}, nil, ExecResult{}},
		{"cat stdin", agentproto.ExecRequest{Cmd: "cat"}, strings.NewReader("line\n"), ExecResult{Stdout: []byte("line\n")}},
		{"cat big stdin", agentproto.ExecRequest{Cmd: "cat"}, strings.NewReader(big), ExecResult{Stdout: []byte(big)}},
		{"yes 1 MiB", agentproto.ExecRequest{Cmd: "yes", Args: []string{"1048576"}}, nil, ExecResult{Stdout: bytes.Repeat([]byte("y"), 1<<20)}},
		{"unknown command", agentproto.ExecRequest{Cmd: "nosuch"}, nil, ExecResult{ExitCode: 127}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.Exec(t.Context(), tc.req, tc.stdin)
			if err != nil {
				t.Fatal(err)
			}
			if got.PID == 0 {
				t.Errorf("PID = 0; want the started pid")
			}
			got.PID = 0
			if diff := cmp.Diff(tc.want, *got, cmpEmptyBytes); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

var cmpEmptyBytes = cmp.Comparer(func(a, b []byte) bool { return bytes.Equal(a, b) })

func TestExecStreamStdin(t *testing.T) {
	c, a := startDirect(t)
	s, err := c.ExecStream(t.Context(), agentproto.ExecRequest{Cmd: "cat"})
	if err != nil {
		t.Fatal(err)
	}
	if s.PID() == 0 {
		t.Errorf("PID() = 0")
	}
	in := make([]byte, 200<<10)
	rand.Read(in)
	var out []byte
	var wg sync.WaitGroup
	wg.Go(func() { out, _ = io.ReadAll(s.Stdout()) })
	if n, err := s.Stdin().Write(in); err != nil || n != len(in) {
		t.Fatalf("Stdin().Write = %d, %v; want %d, nil", n, err, len(in))
	}
	if err := s.Stdin().Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stdin().Close(); err != nil {
		t.Errorf("second Close: %v; want nil", err)
	}
	if _, err := s.Stdin().Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("Write after Close error = %v; want io.ErrClosedPipe", err)
	}
	code, err := s.Wait()
	wg.Wait()
	if err != nil || code != 0 {
		t.Errorf("Wait = %d, %v; want 0, nil", code, err)
	}
	if !bytes.Equal(out, in) {
		t.Errorf("stdout differs from stdin (%d vs %d bytes)", len(out), len(in))
	}
	a.mu.Lock()
	maxStdin := a.maxStdin
	a.mu.Unlock()
	if maxStdin != maxStdinChunk {
		t.Errorf("largest stdin frame = %d bytes; want %d", maxStdin, maxStdinChunk)
	}
	if err := s.Signal(9); !errors.Is(err, ErrSessionFinished) {
		t.Errorf("Signal after exit error = %v; want ErrSessionFinished", err)
	}
}

// TestExecStreamCopy: io.Copy into stdin reads the source straight into
// frames (stdinWriter.ReadFrom) and io.Copy out of stdout hands whole
// chunks over (pipe.WriteTo); the bytes arrive whole either way.
func TestExecStreamCopy(t *testing.T) {
	c, a := startDirect(t)
	s, err := c.ExecStream(t.Context(), agentproto.ExecRequest{Cmd: "cat"})
	if err != nil {
		t.Fatal(err)
	}
	in := make([]byte, 2*stdinCopyChunk+123)
	rand.Read(in)
	var out bytes.Buffer
	var copied int64
	var copyErr error
	var wg sync.WaitGroup
	wg.Go(func() { copied, copyErr = io.Copy(&out, s.Stdout()) })
	// Hide bytes.Reader's WriteTo so that io.Copy uses stdin's ReadFrom.
	if n, err := io.Copy(s.Stdin(), struct{ io.Reader }{bytes.NewReader(in)}); err != nil || n != int64(len(in)) {
		t.Fatalf("io.Copy to stdin = %d, %v; want %d, nil", n, err, len(in))
	}
	boom := errors.New("boom")
	if _, err := io.Copy(s.Stdin(), struct{ io.Reader }{iotest.ErrReader(boom)}); !errors.Is(err, boom) {
		t.Errorf("io.Copy of a failing source = %v; want %v", err, boom)
	}
	if err := s.Stdin().Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(s.Stdin(), struct{ io.Reader }{bytes.NewReader(in)}); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("io.Copy after Close = %v; want io.ErrClosedPipe", err)
	}
	if code, err := s.Wait(); err != nil || code != 0 {
		t.Errorf("Wait = %d, %v; want 0, nil", code, err)
	}
	wg.Wait()
	if copyErr != nil || copied != int64(len(in)) || !bytes.Equal(out.Bytes(), in) {
		t.Errorf("io.Copy from stdout = %d, %v; want the %d bytes sent", copied, copyErr, len(in))
	}
	a.mu.Lock()
	maxStdin := a.maxStdin
	a.mu.Unlock()
	if maxStdin != stdinCopyChunk {
		t.Errorf("largest stdin frame = %d bytes; want %d", maxStdin, stdinCopyChunk)
	}
}

func TestExecRequestOnWire(t *testing.T) {
	c, a := startDirect(t)
	reqs := []agentproto.ExecRequest{
		{Cmd: "echo", Args: []string{"a"}, Env: []string{"K=V"}, Cwd: ptr("/tmp"), User: ptr("nobody"), TTY: true,
			Rlimits: []agentproto.Rlimit{{Resource: "nofile", Soft: 1, Hard: 2}}},
		{Cmd: "echo", Rows: 50, Cols: 132},
	}
	for _, req := range reqs {
		if _, err := c.Exec(t.Context(), req, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Zero sizes go out as the serde defaults.
	want := []agentproto.ExecRequest{reqs[0], reqs[1]}
	want[0].Rows, want[0].Cols = 24, 80
	a.mu.Lock()
	got := append([]agentproto.ExecRequest(nil), a.execs...)
	a.mu.Unlock()
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("requests seen by the agent (-want +got):\n%s", diff)
	}
}

func TestRequestTooLarge(t *testing.T) {
	c, _ := startDirect(t)
	huge := agentproto.ExecRequest{Cmd: "echo", Args: []string{strings.Repeat("x", agentproto.MaxFrameLen)}}
	_, err := c.Exec(t.Context(), huge, nil)
	if !errors.Is(err, agentproto.ErrFrameTooLarge) || errors.Is(err, ErrClosed) {
		t.Errorf("Exec error = %v; want ErrFrameTooLarge, not ErrClosed", err)
	}
	// The connection survives and the id was released.
	if _, err := c.Exec(t.Context(), agentproto.ExecRequest{Cmd: "echo"}, nil); err != nil {
		t.Errorf("Exec after a refused request: %v", err)
	}
	c.mu.Lock()
	live := len(c.subs)
	c.mu.Unlock()
	if live != 0 {
		t.Errorf("%d ids still registered; want 0", live)
	}
}

func TestExecFailed(t *testing.T) {
	c, _ := startDirect(t)
	want := &ExecFailedError{Kind: "not_found", Errno: 2, ErrnoName: "ENOENT", Message: `spawn "fail": No such file or directory (os error 2)`, Stage: "execvp"}
	for _, tc := range []struct {
		name string
		run  func() error
	}{
		{"stream", func() error { _, err := c.ExecStream(t.Context(), agentproto.ExecRequest{Cmd: "fail"}); return err }},
		{"collected", func() error { _, err := c.Exec(t.Context(), agentproto.ExecRequest{Cmd: "fail"}, nil); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			var got *ExecFailedError
			if !errors.As(err, &got) {
				t.Fatalf("error = %v; want *ExecFailedError", err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if !strings.Contains(err.Error(), "ENOENT") {
				t.Errorf("error %q does not name ENOENT", err)
			}
		})
	}
}

func waitSignal(t *testing.T, a *fakeAgent) fakeSignal {
	t.Helper()
	select {
	case s := <-a.signalCh:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("agent got no signal")
		return fakeSignal{}
	}
}

func TestExecCancelKills(t *testing.T) {
	t.Run("stream", func(t *testing.T) {
		c, a := startDirect(t)
		ctx, cancel := context.WithCancel(t.Context())
		s, err := c.ExecStream(ctx, agentproto.ExecRequest{Cmd: "sleep"})
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		if _, err := s.Wait(); !errors.Is(err, context.Canceled) {
			t.Errorf("Wait error = %v; want context.Canceled", err)
		}
		if _, err := io.ReadAll(s.Stdout()); !errors.Is(err, context.Canceled) {
			t.Errorf("Stdout read error = %v; want context.Canceled", err)
		}
		if got := waitSignal(t, a); got != (fakeSignal{s.id, 9}) {
			t.Errorf("agent got %+v; want signal 9 for id %d", got, s.id)
		}
		// The id stays reserved until the agent's exited frame arrives.
		if _, err := c.Exec(t.Context(), agentproto.ExecRequest{Cmd: "echo"}, nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("collected", func(t *testing.T) {
		c, a := startDirect(t)
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := c.Exec(ctx, agentproto.ExecRequest{Cmd: "sleep"}, nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Exec error = %v; want context.DeadlineExceeded", err)
		}
		if got := waitSignal(t, a); got.sig != 9 {
			t.Errorf("agent got signal %d; want 9", got.sig)
		}
	})
	t.Run("already cancelled", func(t *testing.T) {
		c, _ := startDirect(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := c.ExecStream(ctx, agentproto.ExecRequest{Cmd: "echo"}); !errors.Is(err, context.Canceled) {
			t.Errorf("ExecStream error = %v; want context.Canceled", err)
		}
	})
}

func TestSignalAndResize(t *testing.T) {
	c, a := startDirect(t)
	s, err := c.ExecStream(t.Context(), agentproto.ExecRequest{Cmd: "sleep", TTY: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Resize(50, 132); err != nil {
		t.Fatal(err)
	}
	if err := s.Signal(15); err != nil {
		t.Fatal(err)
	}
	if code, err := s.Wait(); err != nil || code != 143 {
		t.Errorf("Wait = %d, %v; want 143, nil", code, err)
	}
	a.mu.Lock()
	resizes := append([]agentproto.ExecResize(nil), a.resizes...)
	a.mu.Unlock()
	if diff := cmp.Diff([]agentproto.ExecResize{{Rows: 50, Cols: 132}}, resizes); diff != "" {
		t.Errorf("resizes (-want +got):\n%s", diff)
	}
	if err := s.Resize(1, 1); !errors.Is(err, ErrSessionFinished) {
		t.Errorf("Resize after exit error = %v; want ErrSessionFinished", err)
	}
}

func TestAgentDisconnect(t *testing.T) {
	c, a := startDirect(t)
	s1, err := c.ExecStream(t.Context(), agentproto.ExecRequest{Cmd: "hang"})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := c.ExecStream(t.Context(), agentproto.ExecRequest{Cmd: "sleep"})
	if err != nil {
		t.Fatal(err)
	}
	statErr := make(chan error, 1)
	go func() { _, err := c.Stat(t.Context(), "/hang"); statErr <- err }()
	buf := make([]byte, 7)
	if _, err := io.ReadFull(s1.Stdout(), buf); err != nil || string(buf) != "partial" {
		t.Fatalf("read partial output = %q, %v", buf, err)
	}
	// Make sure the stat request is in flight before the agent dies.
	for {
		a.mu.Lock()
		n := len(a.requestIDs)
		a.mu.Unlock()
		if n == 3 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	a.conn.Close()

	for i, s := range []*Session{s1, s2} {
		if _, err := s.Wait(); !errors.Is(err, ErrClosed) {
			t.Errorf("session %d Wait error = %v; want ErrClosed", i, err)
		}
		if _, err := io.ReadAll(s.Stdout()); !errors.Is(err, ErrClosed) {
			t.Errorf("session %d Stdout error = %v; want ErrClosed", i, err)
		}
		if err := s.Signal(9); err == nil {
			t.Errorf("session %d Signal after disconnect succeeded", i)
		}
	}
	if err := <-statErr; !errors.Is(err, ErrClosed) {
		t.Errorf("pending Stat error = %v; want ErrClosed", err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done() not closed after disconnect")
	}
	if _, err := c.Stat(t.Context(), "/"); !errors.Is(err, ErrClosed) {
		t.Errorf("Stat after disconnect error = %v; want ErrClosed", err)
	}
	if _, err := c.Exec(t.Context(), agentproto.ExecRequest{Cmd: "echo"}, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Exec after disconnect error = %v; want ErrClosed", err)
	}
	if err := c.Shutdown(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Shutdown after disconnect error = %v; want ErrClosed", err)
	}
}

func TestCloseFailsWaiters(t *testing.T) {
	c, _ := startDirect(t)
	// Unread output fills the stream buffer and blocks the reader; Close
	// must still return and fail the session.
	s, err := c.ExecStream(t.Context(), agentproto.ExecRequest{Cmd: "yes", Args: []string{"2000000"}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := s.Wait(); !errors.Is(err, ErrClosed) {
		t.Errorf("Wait error = %v; want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestBackPressure(t *testing.T) {
	c, a := startDirect(t)
	const total = 4 << 20
	s, err := c.ExecStream(t.Context(), agentproto.ExecRequest{Cmd: "yes", Args: []string{fmt.Sprint(total)}})
	if err != nil {
		t.Fatal(err)
	}
	// Nobody reads: the agent must stall after the bounded buffers fill.
	time.Sleep(100 * time.Millisecond)
	sent := a.stdoutSent.Load()
	// Stream buffer, one 4 KiB frame over it, the decoder's 64 KiB read
	// buffer, and the frame in flight.
	if limit := int64(streamBufLimit + 2*agentproto.MaxExecChunk + 64<<10 + 4096); sent > limit {
		t.Errorf("agent sent %d bytes to a reader that reads nothing; want ≤ %d", sent, limit)
	}
	out, err := io.ReadAll(s.Stdout())
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != total || bytes.Count(out, []byte("y")) != total {
		t.Errorf("read %d bytes; want %d 'y's, none dropped", len(out), total)
	}
	if code, err := s.Wait(); code != 0 || err != nil {
		t.Errorf("Wait = %d, %v; want 0, nil", code, err)
	}
}

func TestConcurrentSessions(t *testing.T) {
	c, _ := startDirect(t)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			want := fmt.Sprintf("session %d", i)
			res, err := c.Exec(t.Context(), agentproto.ExecRequest{Cmd: "echo", Args: []string{want}}, nil)
			if err != nil {
				t.Errorf("session %d: %v", i, err)
				return
			}
			if got := string(res.Stdout); got != want+"\n" {
				t.Errorf("session %d stdout = %q; want %q", i, got, want+"\n")
			}
			in := bytes.Repeat([]byte{byte(i)}, 10000+i)
			res, err = c.Exec(t.Context(), agentproto.ExecRequest{Cmd: "cat"}, bytes.NewReader(in))
			if err != nil {
				t.Errorf("session %d cat: %v", i, err)
				return
			}
			if !bytes.Equal(res.Stdout, in) {
				t.Errorf("session %d cat output mismatched", i)
			}
			if _, err := c.Stat(t.Context(), "/etc/hostname"); err != nil {
				t.Errorf("session %d stat: %v", i, err)
			}
		})
	}
	wg.Wait()
	c.mu.Lock()
	live := len(c.subs)
	c.mu.Unlock()
	if live != 0 {
		t.Errorf("%d session ids still registered after all sessions ended", live)
	}
}

func TestUnknownFramesDropped(t *testing.T) {
	c, _ := startDirect(t)
	res, err := c.Exec(t.Context(), agentproto.ExecRequest{Cmd: "noise"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Stdout) != "ok" || res.ExitCode != 0 {
		t.Errorf("got stdout %q code %d; want \"ok\" 0", res.Stdout, res.ExitCode)
	}
	if _, err := c.Exec(t.Context(), agentproto.ExecRequest{Cmd: "echo"}, nil); err != nil {
		t.Errorf("exec after noise: %v", err)
	}
}

func TestFsOps(t *testing.T) {
	c, _ := startDirect(t)
	ctx := t.Context()
	hostname := agentproto.FsEntry{Path: "/etc/hostname", Kind: "file", Size: 8, Mode: 0o100644, Modified: ptr(int64(1700000000))}

	if got, err := c.Stat(ctx, "/etc/hostname"); err != nil {
		t.Errorf("Stat: %v", err)
	} else if diff := cmp.Diff(hostname, got); diff != "" {
		t.Errorf("Stat (-want +got):\n%s", diff)
	}
	if err := c.Mkdir(ctx, "/data/sub"); err != nil {
		t.Errorf("Mkdir: %v", err)
	}
	if got, err := c.Stat(ctx, "/data/sub"); err != nil || got.Kind != "dir" {
		t.Errorf("Stat of new dir = %+v, %v; want kind dir", got, err)
	}
	if err := c.Copy(ctx, "/etc/hostname", "/data/a"); err != nil {
		t.Errorf("Copy: %v", err)
	}
	if err := c.Rename(ctx, "/data/a", "/data/b"); err != nil {
		t.Errorf("Rename: %v", err)
	}
	list, err := c.List(ctx, "/data")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var names []string
	for _, e := range list {
		names = append(names, e.Path+":"+e.Kind)
	}
	if diff := cmp.Diff([]string{"/data/b:file", "/data/sub:dir"}, names); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	if err := c.Remove(ctx, "/data/b"); err != nil {
		t.Errorf("Remove: %v", err)
	}
	if err := c.RemoveDir(ctx, "/data"); err != nil {
		t.Errorf("RemoveDir: %v", err)
	}
	if got, err := c.List(ctx, "/etc"); err != nil || len(got) != 1 {
		t.Errorf("List(/etc) = %v, %v; want 1 entry", got, err)
	}

	errTests := []struct {
		name    string
		run     func() error
		wantMsg string
	}{
		{"stat missing", func() error { _, err := c.Stat(ctx, "/nope"); return err }, "stat /nope: stat: " + enoent},
		{"list missing", func() error { _, err := c.List(ctx, "/nope"); return err }, "list /nope: read_dir: " + enoent},
		{"remove missing", func() error { return c.Remove(ctx, "/nope") }, "remove /nope: remove: " + enoent},
		{"remove dir missing", func() error { return c.RemoveDir(ctx, "/data") }, "remove dir /data: remove_dir: " + enoent},
		{"copy missing", func() error { return c.Copy(ctx, "/nope", "/x") }, "copy /nope -> /x: copy: " + enoent},
		{"rename missing", func() error { return c.Rename(ctx, "/nope", "/x") }, "rename /nope -> /x: rename: " + enoent},
		{"read missing", func() error { _, err := c.ReadFile(ctx, "/nope"); return err }, "read /nope: open: " + enoent},
	}
	for _, tc := range errTests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			var fe *FsError
			if !errors.As(err, &fe) {
				t.Fatalf("error = %v; want *FsError", err)
			}
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("errors.Is(%v, fs.ErrNotExist) = false", err)
			}
			if err.Error() != tc.wantMsg {
				t.Errorf("error = %q; want %q", err, tc.wantMsg)
			}
		})
	}
}

func TestFsErrorUnwrap(t *testing.T) {
	tests := []struct {
		msg  string
		want error
	}{
		{"stat: No such file or directory (os error 2)", fs.ErrNotExist},
		{"stat: no such file or directory", fs.ErrNotExist},
		{"mkdir: File exists (os error 17)", fs.ErrExist},
		{"create: Permission denied (os error 13)", fs.ErrPermission},
		{"remove: operation not permitted", fs.ErrPermission},
		{"copy: Is a directory (os error 21)", nil},
	}
	for _, tc := range tests {
		t.Run(tc.msg, func(t *testing.T) {
			if got := (&FsError{Message: tc.msg}).Unwrap(); got != tc.want {
				t.Errorf("Unwrap() = %v; want %v", got, tc.want)
			}
		})
	}
}

func TestFileStreaming(t *testing.T) {
	c, a := startDirect(t)
	ctx := t.Context()
	data := make([]byte, 10<<20)
	rand.Read(data)
	mode := uint32(0o600)
	if err := c.WriteFile(ctx, "/big", &mode, bytes.NewReader(data)); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	a.mu.Lock()
	maxChunk, gotMode := a.maxFsData, a.modes["/big"]
	a.mu.Unlock()
	if maxChunk == 0 || maxChunk > agentproto.MaxDataChunk {
		t.Errorf("largest fs.data chunk = %d; want 1 … %d", maxChunk, agentproto.MaxDataChunk)
	}
	if gotMode == nil || *gotMode != mode {
		t.Errorf("agent got mode %v; want %o", gotMode, mode)
	}
	r, err := c.ReadFile(ctx, "/big")
	if err != nil {
		t.Fatalf("ReadFile: %v", err)
	}
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	r.Close()
	if n != int64(len(data)) || !bytes.Equal(h.Sum(nil), sha256Sum(data)) {
		t.Errorf("read back %d bytes with a different checksum; want %d identical bytes", n, len(data))
	}

	t.Run("empty file", func(t *testing.T) {
		if err := c.WriteFile(ctx, "/empty", nil, bytes.NewReader(nil)); err != nil {
			t.Fatal(err)
		}
		r, err := c.ReadFile(ctx, "/empty")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if b, err := io.ReadAll(r); err != nil || len(b) != 0 {
			t.Errorf("ReadAll = %q, %v; want empty, nil", b, err)
		}
	})
	t.Run("write refused", func(t *testing.T) {
		err := c.WriteFile(ctx, "/ro/x", nil, bytes.NewReader(make([]byte, 3<<20)))
		if !errors.Is(err, fs.ErrPermission) {
			t.Errorf("WriteFile error = %v; want fs.ErrPermission", err)
		}
	})
	t.Run("source error", func(t *testing.T) {
		boom := errors.New("boom")
		err := c.WriteFile(ctx, "/partial", nil, io.MultiReader(bytes.NewReader([]byte("abc")), errReader{boom}))
		if !errors.Is(err, boom) {
			t.Errorf("WriteFile error = %v; want boom", err)
		}
	})
	t.Run("close early", func(t *testing.T) {
		r, err := c.ReadFile(ctx, "/big")
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 10)
		if _, err := io.ReadFull(r, buf); err != nil {
			t.Fatal(err)
		}
		r.Close()
		if _, err := r.Read(buf); !errors.Is(err, ErrSessionFinished) {
			t.Errorf("Read after Close error = %v; want ErrSessionFinished", err)
		}
		// The rest of the file is discarded without stalling others.
		if _, err := c.Stat(ctx, "/big"); err != nil {
			t.Errorf("Stat after abandoned read: %v", err)
		}
	})
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func TestShutdown(t *testing.T) {
	c, a := startDirect(t)
	if err := c.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection still open after shutdown")
	}
	a.mu.Lock()
	hit := a.shutdownHit
	a.mu.Unlock()
	if !hit {
		t.Errorf("agent did not get core.shutdown on id 0")
	}
}

type nopHandler struct{}

func (nopHandler) handle(agentproto.Message, agentproto.RawFrame) {}
func (nopHandler) fail(error)                                     {}

func TestIDAllocation(t *testing.T) {
	for _, slot := range []uint32{0, 1, 15} {
		t.Run(fmt.Sprintf("slot %d", slot), func(t *testing.T) {
			offset := slot * agentproto.IDStep
			first, last := offset+1, offset+agentproto.IDStep-1
			c := &Client{subs: map[uint32]handler{}, offset: offset, next: last - 1}
			// first+1 is busy: allocation must skip it after wrapping.
			c.subs[first+1] = nopHandler{}
			var got []uint32
			for range 4 {
				id, err := c.register(nopHandler{})
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, id)
			}
			want := []uint32{last - 1, last, first, first + 2}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ids (-want +got):\n%s", diff)
			}
			for _, id := range got {
				if id == 0 || id/agentproto.IDStep != slot {
					t.Errorf("id %d outside slot %d", id, slot)
				}
			}
		})
	}
}

func TestIDWraparoundOnWire(t *testing.T) {
	c, a := startRelay(t, 2*agentproto.IDStep)
	last := uint32(3*agentproto.IDStep - 1)
	c.mu.Lock()
	c.next = last
	c.mu.Unlock()
	for range 2 {
		if _, err := c.Exec(t.Context(), agentproto.ExecRequest{Cmd: "echo"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	a.mu.Lock()
	ids := append([]uint32(nil), a.requestIDs...)
	a.mu.Unlock()
	if diff := cmp.Diff([]uint32{last, 2*agentproto.IDStep + 1}, ids); diff != "" {
		t.Errorf("ids (-want +got):\n%s", diff)
	}
}

// cancelAfter returns data from r and cancels ctx once n bytes have been read.
type cancelAfter struct {
	r      io.Reader
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n -= k
	if c.n <= 0 {
		c.cancel()
	}
	return k, err
}

func TestFsCancel(t *testing.T) {
	c, _ := startDirect(t)
	liveIDs := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.subs)
	}
	t.Run("pending call", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
		defer cancel()
		if _, err := c.Stat(ctx, "/hang"); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Stat error = %v; want context.DeadlineExceeded", err)
		}
		// The agent never answers, so the id must stay reserved.
		if n := liveIDs(); n != 1 {
			t.Errorf("%d ids registered; want 1 (the unanswered stat)", n)
		}
	})
	t.Run("read", func(t *testing.T) {
		if err := c.WriteFile(t.Context(), "/f", nil, bytes.NewReader(make([]byte, 5<<20))); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		r, err := c.ReadFile(ctx, "/f")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := io.ReadFull(r, make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
		cancel()
		if _, err := io.ReadAll(r); !errors.Is(err, context.Canceled) {
			t.Errorf("read after cancel error = %v; want context.Canceled", err)
		}
	})
	t.Run("write", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		src := &cancelAfter{r: bytes.NewReader(make([]byte, 5<<20)), n: 1, cancel: cancel}
		if err := c.WriteFile(ctx, "/partial", nil, src); !errors.Is(err, context.Canceled) {
			t.Errorf("WriteFile error = %v; want context.Canceled", err)
		}
		// The stream was ended, so the agent stored what it got.
		if _, err := c.Stat(t.Context(), "/partial"); err != nil {
			t.Errorf("Stat of the partial file: %v", err)
		}
	})
	t.Run("already cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		for name, run := range map[string]func() error{
			"stat":  func() error { _, err := c.Stat(ctx, "/"); return err },
			"read":  func() error { _, err := c.ReadFile(ctx, "/f"); return err },
			"write": func() error { return c.WriteFile(ctx, "/g", nil, bytes.NewReader(nil)) },
		} {
			if err := run(); !errors.Is(err, context.Canceled) {
				t.Errorf("%s error = %v; want context.Canceled", name, err)
			}
		}
	})
}

func TestAbort(t *testing.T) {
	c, a := startDirect(t)
	s, err := c.ExecStream(t.Context(), agentproto.ExecRequest{Cmd: "hang"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Signal(9); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, a)
	select {
	case <-s.Done():
		t.Fatal("hang ended after a signal; the test needs a session that does not")
	case <-time.After(20 * time.Millisecond):
	}
	errGiveUp := errors.New("give up")
	s.Abort(errGiveUp)
	<-s.Done()
	if _, err := s.Wait(); !errors.Is(err, errGiveUp) {
		t.Errorf("Wait error = %v; want the Abort error", err)
	}
	out, err := io.ReadAll(s.Stdout())
	if string(out) != "partial" || !errors.Is(err, errGiveUp) {
		t.Errorf("Stdout = %q, %v; want the buffered output, then the Abort error", out, err)
	}
	s.Abort(errors.New("second")) // a no-op
	if _, err := s.Wait(); !errors.Is(err, errGiveUp) {
		t.Errorf("Wait after a second Abort = %v; want the first error", err)
	}
}
