package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/agentproto"
)

// testClient is a minimal host side of the agent protocol for tests: it
// reads the ready frame, then routes frames by id to per-id channels.
type testClient struct {
	tb    testing.TB
	conn  net.Conn
	enc   *agentproto.Encoder
	ready agentproto.Ready

	mu     sync.Mutex
	subs   map[uint32]chan agentproto.Message
	nextID uint32

	readDone  chan struct{}
	serveDone chan struct{}
	serveErr  error
}

// socketpair returns two connected stream sockets.
func socketpair(tb testing.TB) (net.Conn, net.Conn) {
	tb.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatalf("socketpair: %v", err)
	}
	conv := func(fd int, name string) net.Conn {
		f := os.NewFile(uintptr(fd), name)
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			tb.Fatalf("file conn: %v", err)
		}
		return c
	}
	return conv(fds[0], "host"), conv(fds[1], "guest")
}

// startServe runs Serve on one end of a socketpair and connects a
// testClient to the other end. Cleanup closes the client and waits for
// Serve to return.
func startServe(tb testing.TB, opts ServeOptions) *testClient {
	tb.Helper()
	hostConn, guestConn := socketpair(tb)
	c := &testClient{
		tb:        tb,
		conn:      hostConn,
		enc:       agentproto.NewEncoder(hostConn),
		subs:      map[uint32]chan agentproto.Message{},
		readDone:  make(chan struct{}),
		serveDone: make(chan struct{}),
	}
	go func() {
		defer close(c.serveDone)
		c.serveErr = Serve(context.Background(), guestConn, opts)
	}()
	dec := agentproto.NewDecoder(hostConn)
	m, err := dec.Decode()
	if err != nil {
		tb.Fatalf("read ready: %v", err)
	}
	if m.Type != agentproto.TypeReady || m.ID != 0 {
		tb.Fatalf("first frame = %s id %d; want core.ready id 0", m.Type, m.ID)
	}
	if err := m.Decode(&c.ready); err != nil {
		tb.Fatalf("decode ready: %v", err)
	}
	go c.readLoop(dec)
	tb.Cleanup(func() {
		c.conn.Close()
		if err := c.waitServe(10 * time.Second); err != nil {
			tb.Errorf("Serve: %v", err)
		}
	})
	return c
}

func (c *testClient) waitServe(d time.Duration) error {
	select {
	case <-c.serveDone:
		return c.serveErr
	case <-time.After(d):
		return errors.New("Serve did not return")
	}
}

func (c *testClient) readLoop(dec *agentproto.Decoder) {
	defer close(c.readDone)
	defer func() {
		c.mu.Lock()
		for id, ch := range c.subs {
			close(ch)
			delete(c.subs, id)
		}
		c.mu.Unlock()
	}()
	for {
		m, err := dec.Decode()
		if err != nil {
			return
		}
		c.mu.Lock()
		ch := c.subs[m.ID]
		if ch != nil && m.Flags()&agentproto.FlagTerminal != 0 {
			delete(c.subs, m.ID)
		}
		c.mu.Unlock()
		if ch == nil {
			continue
		}
		ch <- m
		if m.Flags()&agentproto.FlagTerminal != 0 {
			close(ch)
		}
	}
}

// start sends a session-opening request and returns the channel of its
// replies (closed after the terminal frame).
func (c *testClient) start(t agentproto.Type, payload any) (uint32, <-chan agentproto.Message) {
	c.tb.Helper()
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	c.mu.Unlock()
	return id, c.startID(id, t, payload)
}

// startID is start with a caller-chosen id.
func (c *testClient) startID(id uint32, t agentproto.Type, payload any) <-chan agentproto.Message {
	c.tb.Helper()
	c.mu.Lock()
	ch := make(chan agentproto.Message, 1024)
	c.subs[id] = ch
	c.mu.Unlock()
	c.send(id, t, payload)
	return ch
}

func (c *testClient) send(id uint32, t agentproto.Type, payload any) {
	c.tb.Helper()
	m, err := agentproto.New(id, t, payload)
	if err != nil {
		c.tb.Fatalf("new %s: %v", t, err)
	}
	if err := c.enc.Encode(m); err != nil {
		c.tb.Fatalf("send %s: %v", t, err)
	}
}

// execResult is a collected exec session.
type execResult struct {
	pid    uint32
	stdout []byte
	stderr []byte
	code   int32
	failed *agentproto.ExecFailed
}

// collect reads an exec session to its end.
func collect(tb testing.TB, ch <-chan agentproto.Message, timeout time.Duration) execResult {
	tb.Helper()
	var r execResult
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-ch:
			if !ok {
				tb.Fatalf("session ended without a terminal frame")
			}
			switch m.Type {
			case agentproto.TypeExecStarted:
				var s agentproto.ExecStarted
				mustDecode(tb, m, &s)
				r.pid = s.PID
			case agentproto.TypeExecStdout, agentproto.TypeExecStderr:
				var d agentproto.ExecData
				mustDecode(tb, m, &d)
				if len(d.Data) > agentproto.MaxExecChunk {
					tb.Errorf("chunk of %d bytes; want ≤ %d", len(d.Data), agentproto.MaxExecChunk)
				}
				if m.Type == agentproto.TypeExecStdout {
					r.stdout = append(r.stdout, d.Data...)
				} else {
					r.stderr = append(r.stderr, d.Data...)
				}
			case agentproto.TypeExecExited:
				var e agentproto.ExecExited
				mustDecode(tb, m, &e)
				r.code = e.Code
				return r
			case agentproto.TypeExecFailed:
				var f agentproto.ExecFailed
				mustDecode(tb, m, &f)
				r.failed = &f
				return r
			default:
				tb.Fatalf("unexpected frame %s", m.Type)
			}
		case <-deadline:
			tb.Fatalf("session did not end within %v (so far: stdout %q stderr %q)", timeout, r.stdout, r.stderr)
		}
	}
}

// waitStarted reads frames until exec.started and returns the pid.
func waitStarted(tb testing.TB, ch <-chan agentproto.Message) uint32 {
	tb.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			tb.Fatalf("session closed before started")
		}
		if m.Type != agentproto.TypeExecStarted {
			if m.Type == agentproto.TypeExecFailed {
				var f agentproto.ExecFailed
				mustDecode(tb, m, &f)
				tb.Fatalf("exec failed: %+v", f)
			}
			tb.Fatalf("first frame %s; want core.exec.started", m.Type)
		}
		var s agentproto.ExecStarted
		mustDecode(tb, m, &s)
		return s.PID
	case <-time.After(10 * time.Second):
		tb.Fatalf("no started frame")
	}
	return 0
}

func mustDecode(tb testing.TB, m agentproto.Message, v any) {
	tb.Helper()
	if err := m.Decode(v); err != nil {
		tb.Fatalf("decode %s: %v", m.Type, err)
	}
}

// exec runs a request to its end.
func (c *testClient) exec(req agentproto.ExecRequest) execResult {
	c.tb.Helper()
	_, ch := c.start(agentproto.TypeExecRequest, req)
	return collect(c.tb, ch, 30*time.Second)
}

// fs runs a non-streaming fs op and returns its response.
func (c *testClient) fs(op agentproto.FsOp) agentproto.FsResponse {
	c.tb.Helper()
	_, ch := c.start(agentproto.TypeFsRequest, agentproto.FsRequest{Op: op})
	resp, _ := readFsResponse(c.tb, ch)
	return resp
}

// readFsResponse collects fs.data frames and the final response.
func readFsResponse(tb testing.TB, ch <-chan agentproto.Message) (agentproto.FsResponse, []byte) {
	tb.Helper()
	var data []byte
	for {
		select {
		case m, ok := <-ch:
			if !ok {
				tb.Fatalf("fs session ended without a response")
			}
			switch m.Type {
			case agentproto.TypeFsData:
				var d agentproto.FsData
				mustDecode(tb, m, &d)
				if len(d.Data) > agentproto.MaxDataChunk {
					tb.Errorf("fs.data chunk of %d bytes; want ≤ %d", len(d.Data), agentproto.MaxDataChunk)
				}
				data = append(data, d.Data...)
			case agentproto.TypeFsResponse:
				var r agentproto.FsResponse
				mustDecode(tb, m, &r)
				return r, data
			default:
				tb.Fatalf("unexpected frame %s", m.Type)
			}
		case <-time.After(30 * time.Second):
			tb.Fatalf("no fs response")
		}
	}
}

func strp(s string) *string { return &s }

func errText(r agentproto.FsResponse) string {
	if r.Error == nil {
		return "<nil>"
	}
	return *r.Error
}

func (r execResult) String() string {
	return fmt.Sprintf("code %d stdout %q stderr %q failed %+v", r.code, r.stdout, r.stderr, r.failed)
}
