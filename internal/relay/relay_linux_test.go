package relay

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/msb-go/msb/internal/agentproto"
	"github.com/msb-go/msb/internal/launch"
)

const testWait = 5 * time.Second

// fakeGuest plays agentd on the guest end of the relay's stream:
//   - exec.request "echo ARGS": started, stdout "out:ARGS", stderr "err:ARGS"
//     (not for tty), exited 0
//   - "sleep": started only; a later exec.signal ends it with exited 128+sig
//   - "deaf": started only, and signals are ignored
//   - "count N": started, N stdout frames "i\n", exited 0
//   - "flood": started, then 4 KiB stdout frames until signalled
//   - "lines N": started, N numbered 4 KiB stdout frames, exited 0
//   - "bulk N": started, N 4 KiB stdout frames, exited 0
//   - "utf8": stdout "h\xc3" then "\xa9llo" (é split across chunks), exited 0
//   - fs.request: fs.response ok, unless the path is "/hang", or a Write
//     under "/held/": that opens a write session as agentd 0.4.4 has it
//     (fs.data appends to files[path], empty data answers ok, signals are
//     ignored, so it never ends for a client that left)
//   - fs.data for any other id: fs.response "unknown write session: <id>"
//
// Every message it receives is recorded.
type fakeGuest struct {
	conn net.Conn
	enc  *agentproto.Encoder
	wg   sync.WaitGroup

	mu      sync.Mutex
	got     []agentproto.Message
	changed chan struct{} // closed and replaced whenever got grows
	floods  map[uint32]chan struct{}
	deaf    map[uint32]bool
	writes  map[uint32]string // open "/held/" write sessions by id
	files   map[string][]byte // what those writes received
}

func newFakeGuest(conn net.Conn) *fakeGuest {
	return &fakeGuest{
		conn:    conn,
		enc:     agentproto.NewEncoder(conn),
		changed: make(chan struct{}),
		floods:  map[uint32]chan struct{}{},
		deaf:    map[uint32]bool{},
		writes:  map[uint32]string{},
		files:   map[string][]byte{},
	}
}

func (g *fakeGuest) send(id uint32, typ agentproto.Type, payload any) {
	m, err := agentproto.New(id, typ, payload)
	if err != nil {
		panic(err)
	}
	_ = g.enc.Encode(m)
}

func (g *fakeGuest) sendReady() {
	// Junk before ready must be discarded by the relay.
	g.send(5, agentproto.TypeExecStdout, agentproto.ExecData{Data: []byte("early")})
	g.send(0, agentproto.TypeReady, agentproto.Ready{ReadyTimeNs: 42, ProtocolVersion: 1, Capabilities: []string{"fs"}})
}

// serve runs until the stream ends. It records each message as it arrives
// and hands it, in order, to a handler goroutine: like agentd, the reader
// never waits on the guest's own output, so a handler blocked sending into a
// relay that is holding the guest back (flow control, over a net.Pipe with
// no buffer) cannot stop the relay's later frames — a kill of a flood, say —
// from being read.
func (g *fakeGuest) serve() {
	var (
		qmu     sync.Mutex
		queue   []agentproto.Message
		done    bool
		pending = make(chan struct{}, 1)
	)
	g.wg.Go(func() {
		for {
			qmu.Lock()
			for len(queue) == 0 && !done {
				qmu.Unlock()
				<-pending
				qmu.Lock()
			}
			if len(queue) == 0 {
				qmu.Unlock()
				return
			}
			m := queue[0]
			queue = queue[1:]
			qmu.Unlock()
			g.handle(m)
		}
	})
	push := func(m *agentproto.Message) {
		qmu.Lock()
		if m != nil {
			queue = append(queue, *m)
		} else {
			done = true
		}
		qmu.Unlock()
		select {
		case pending <- struct{}{}:
		default:
		}
	}
	dec := agentproto.NewDecoder(g.conn)
	for {
		m, err := dec.Decode()
		if err != nil {
			g.mu.Lock()
			for _, stop := range g.floods {
				close(stop)
			}
			g.floods = map[uint32]chan struct{}{}
			g.mu.Unlock()
			push(nil)
			return
		}
		g.mu.Lock()
		g.got = append(g.got, m)
		close(g.changed)
		g.changed = make(chan struct{})
		g.mu.Unlock()
		push(&m)
	}
}

func (g *fakeGuest) handle(m agentproto.Message) {
	switch m.Type {
	case agentproto.TypeExecRequest:
		var req agentproto.ExecRequest
		if err := m.Decode(&req); err != nil {
			return
		}
		g.send(m.ID, agentproto.TypeExecStarted, agentproto.ExecStarted{PID: 100})
		args := strings.Join(req.Args, " ")
		switch req.Cmd {
		case "echo":
			g.send(m.ID, agentproto.TypeExecStdout, agentproto.ExecData{Data: []byte("out:" + args)})
			if !req.TTY {
				g.send(m.ID, agentproto.TypeExecStderr, agentproto.ExecData{Data: []byte("err:" + args)})
			}
			g.send(m.ID, agentproto.TypeExecExited, agentproto.ExecExited{Code: 0})
		case "count":
			n, _ := strconv.Atoi(args)
			for i := range n {
				g.send(m.ID, agentproto.TypeExecStdout, agentproto.ExecData{Data: []byte(strconv.Itoa(i) + "\n")})
			}
			g.send(m.ID, agentproto.TypeExecExited, agentproto.ExecExited{Code: 0})
		case "bulk":
			n, _ := strconv.Atoi(args)
			chunk := bytes.Repeat([]byte("x"), agentproto.MaxExecChunk)
			for range n {
				g.send(m.ID, agentproto.TypeExecStdout, agentproto.ExecData{Data: chunk})
			}
			g.send(m.ID, agentproto.TypeExecExited, agentproto.ExecExited{Code: 0})
		case "lines":
			n, _ := strconv.Atoi(args)
			for i := range n {
				g.send(m.ID, agentproto.TypeExecStdout, agentproto.ExecData{Data: numberedLine(i)})
			}
			g.send(m.ID, agentproto.TypeExecExited, agentproto.ExecExited{Code: 0})
		case "deaf":
			g.mu.Lock()
			g.deaf[m.ID] = true
			g.mu.Unlock()
		case "utf8":
			g.send(m.ID, agentproto.TypeExecStdout, agentproto.ExecData{Data: []byte("h\xc3")})
			g.send(m.ID, agentproto.TypeExecStdout, agentproto.ExecData{Data: []byte("\xa9llo")})
			g.send(m.ID, agentproto.TypeExecExited, agentproto.ExecExited{Code: 0})
		case "flood":
			stop := make(chan struct{})
			g.mu.Lock()
			g.floods[m.ID] = stop
			g.mu.Unlock()
			chunk := bytes.Repeat([]byte("x"), agentproto.MaxExecChunk)
			g.wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					g.send(m.ID, agentproto.TypeExecStdout, agentproto.ExecData{Data: chunk})
				}
			})
		}
	case agentproto.TypeExecSignal:
		var sig agentproto.ExecSignal
		if err := m.Decode(&sig); err != nil {
			return
		}
		g.mu.Lock()
		if stop, ok := g.floods[m.ID]; ok {
			close(stop)
			delete(g.floods, m.ID)
		}
		_, writing := g.writes[m.ID]
		deaf := g.deaf[m.ID] || writing
		g.mu.Unlock()
		if deaf {
			return
		}
		g.send(m.ID, agentproto.TypeExecExited, agentproto.ExecExited{Code: 128 + sig.Signal})
	case agentproto.TypeFsRequest:
		var req agentproto.FsRequest
		if err := m.Decode(&req); err != nil || req.Op.Path == "/hang" {
			return
		}
		if req.Op.Kind == agentproto.FsWrite && strings.HasPrefix(req.Op.Path, "/held/") {
			g.mu.Lock()
			g.writes[m.ID] = req.Op.Path
			g.mu.Unlock()
			return
		}
		g.send(m.ID, agentproto.TypeFsResponse, agentproto.FsResponse{OK: true})
	case agentproto.TypeFsData:
		var d agentproto.FsData
		if err := m.Decode(&d); err != nil {
			return
		}
		g.mu.Lock()
		path, ok := g.writes[m.ID]
		if ok {
			g.files[path] = append(g.files[path], d.Data...)
			if len(d.Data) == 0 {
				delete(g.writes, m.ID)
			}
		}
		g.mu.Unlock()
		if ok {
			if len(d.Data) == 0 {
				g.send(m.ID, agentproto.TypeFsResponse, agentproto.FsResponse{OK: true})
			}
			return
		}
		msg := fmt.Sprintf("unknown write session: %d", m.ID)
		g.send(m.ID, agentproto.TypeFsResponse, agentproto.FsResponse{Error: &msg})
	}
}

// numberedLine is line i of the "lines" command: 4 KiB ending in i.
// lineSize is the size of a numbered line: the tests' volumes are stated in
// 4 KiB lines, independent of the chunk size agentd happens to use.
const lineSize = 4096

func numberedLine(i int) []byte {
	b := bytes.Repeat([]byte("."), lineSize)
	tail := fmt.Appendf(nil, " %d\n", i)
	copy(b[len(b)-len(tail):], tail)
	return b
}

// waitFor waits until the guest has received a message matching pred.
func (g *fakeGuest) waitFor(t *testing.T, what string, pred func(agentproto.Message) bool) agentproto.Message {
	t.Helper()
	return g.waitWithin(t, testWait, what, pred)
}

// waitWithin is waitFor with its own time limit.
func (g *fakeGuest) waitWithin(t *testing.T, d time.Duration, what string, pred func(agentproto.Message) bool) agentproto.Message {
	t.Helper()
	deadline := time.After(d)
	seen := 0
	for {
		g.mu.Lock()
		got, changed := g.got, g.changed
		g.mu.Unlock()
		for ; seen < len(got); seen++ {
			if pred(got[seen]) {
				return got[seen]
			}
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("guest never received %s", what)
		}
	}
}

func (g *fakeGuest) received() []agentproto.Message {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]agentproto.Message(nil), g.got...)
}

func isKill(id uint32) func(agentproto.Message) bool {
	return func(m agentproto.Message) bool {
		if m.Type != agentproto.TypeExecSignal || m.ID != id {
			return false
		}
		var s agentproto.ExecSignal
		return m.Decode(&s) == nil && s.Signal == 9
	}
}

// logBuffer is a concurrency-safe sink for slog text output.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type relayEnv struct {
	relay    *Relay
	guest    *fakeGuest
	sock     string
	logs     *logBuffer
	serveErr chan error
}

// newRelayEnv starts a relay on a fake guest, waits for ready and serves a
// unix socket. Cleanup stops everything and checks for leaked goroutines.
func newRelayEnv(t testing.TB, opts RelayOptions) *relayEnv {
	t.Helper()
	hostEnd, guestEnd := net.Pipe()
	g := newFakeGuest(guestEnd)
	g.wg.Go(func() {
		g.sendReady()
		g.serve()
	})
	env := serveRelay(t, opts, hostEnd, func() {
		guestEnd.Close()
		g.wg.Wait()
	})
	env.guest = g
	if ready, err := env.relay.WaitReady(t.Context()); err != nil || ready.ReadyTimeNs != 42 || ready.ProtocolVersion != 1 {
		t.Fatalf("WaitReady = %+v, %v; want the guest's ready", ready, err)
	}
	return env
}

// serveRelay starts a relay on hostEnd, waits for ready and serves a unix
// socket. Cleanup closes the relay, then calls stopGuest, and checks for
// leaked goroutines.
func serveRelay(t testing.TB, opts RelayOptions, hostEnd net.Conn, stopGuest func()) *relayEnv {
	t.Helper()
	leakOpt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leakOpt) })

	// Unix socket paths are limited to 108 bytes; t.TempDir can be longer.
	dir, err := os.MkdirTemp("", "msbrelay")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}

	logs := &logBuffer{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	r := NewRelay(hostEnd, opts)
	ctx, cancel := context.WithCancel(context.Background())
	env := &relayEnv{relay: r, sock: sock, logs: logs, serveErr: make(chan error, 1)}
	t.Cleanup(func() {
		cancel()
		if err := r.Close(); err != nil {
			t.Errorf("Close = %v", err)
		}
		if err := <-env.serveErr; !errors.Is(err, context.Canceled) && !errors.Is(err, ErrRelayClosed) && !errors.Is(err, ErrGuestClosed) {
			t.Errorf("Serve = %v; want context.Canceled or ErrRelayClosed", err)
		}
		stopGuest()
	})

	rctx, rcancel := context.WithTimeout(ctx, testWait)
	defer rcancel()
	if _, err := r.WaitReady(rctx); err != nil {
		t.Fatalf("WaitReady = %v", err)
	}
	go func() { env.serveErr <- r.Serve(ctx, ln) }()
	return env
}

type testClient struct {
	t      testing.TB
	conn   net.Conn
	offset uint32
	ready  agentproto.RawFrame
	enc    *agentproto.Encoder
	dec    *agentproto.Decoder
}

// dial connects and reads the handshake.
func (e *relayEnv) dial(t testing.TB) *testClient {
	t.Helper()
	c, err := e.tryDial(t)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return c
}

func (e *relayEnv) tryDial(t testing.TB) (*testClient, error) {
	t.Helper()
	conn, err := net.Dial("unix", e.sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetReadDeadline(time.Now().Add(testWait))
	var off [4]byte
	if _, err := io.ReadFull(conn, off[:]); err != nil {
		conn.Close()
		return nil, err
	}
	ready, err := agentproto.ReadRawFrame(conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetReadDeadline(time.Time{})
	return &testClient{
		t: t, conn: conn, offset: binary.BigEndian.Uint32(off[:]), ready: ready,
		enc: agentproto.NewEncoder(conn), dec: agentproto.NewDecoder(conn),
	}, nil
}

func (c *testClient) send(id uint32, typ agentproto.Type, payload any) {
	c.t.Helper()
	m, err := agentproto.New(id, typ, payload)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.enc.Encode(m); err != nil {
		c.t.Fatalf("send %s: %v", typ, err)
	}
}

func (c *testClient) recv() agentproto.Message {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(testWait))
	m, err := c.dec.Decode()
	if err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	return m
}

// exec runs a command on session id and returns stdout+stderr text and the
// exit code.
func (c *testClient) exec(id uint32, cmd string, args ...string) (stdout, stderr string, code int32) {
	c.t.Helper()
	c.send(id, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: cmd, Args: args})
	var outB, errB strings.Builder
	for {
		m := c.recv()
		if m.ID != id {
			c.t.Fatalf("got frame for id %d; want only %d", m.ID, id)
		}
		switch m.Type {
		case agentproto.TypeExecStdout, agentproto.TypeExecStderr:
			var d agentproto.ExecData
			if err := m.Decode(&d); err != nil {
				c.t.Fatal(err)
			}
			if m.Type == agentproto.TypeExecStdout {
				outB.Write(d.Data)
			} else {
				errB.Write(d.Data)
			}
		case agentproto.TypeExecExited:
			var e agentproto.ExecExited
			if err := m.Decode(&e); err != nil {
				c.t.Fatal(err)
			}
			return outB.String(), errB.String(), e.Code
		}
	}
}

// expectClosed reads until the relay closes the connection.
func (c *testClient) expectClosed() {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(testWait))
	_, err := io.Copy(io.Discard, c.conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("connection still open after %v", testWait)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRelayHandshake(t *testing.T) {
	env := newRelayEnv(t, RelayOptions{})
	a := env.dial(t)
	b := env.dial(t)
	if a.offset != 0 || b.offset != agentproto.IDStep {
		t.Errorf("offsets = %d, %d; want 0, %d", a.offset, b.offset, agentproto.IDStep)
	}
	want, err := agentproto.New(0, agentproto.TypeReady, agentproto.Ready{ReadyTimeNs: 42, ProtocolVersion: 1, Capabilities: []string{"fs"}})
	if err != nil {
		t.Fatal(err)
	}
	wantFrame, err := want.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.ready, wantFrame) {
		t.Errorf("handshake ready frame = %x; want the guest's bytes %x", a.ready, wantFrame)
	}
}

func TestRelayServeBeforeReady(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	hostEnd, guestEnd := net.Pipe()
	defer guestEnd.Close()
	r := NewRelay(hostEnd, RelayOptions{})
	defer r.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Serve(t.Context(), ln); !errors.Is(err, ErrNotReady) {
		t.Errorf("Serve before ready = %v; want ErrNotReady", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := r.WaitReady(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitReady without ready = %v; want DeadlineExceeded", err)
	}
}

func TestRelayWaitReadyGuestGone(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	hostEnd, guestEnd := net.Pipe()
	r := NewRelay(hostEnd, RelayOptions{})
	defer r.Close()
	guestEnd.Close()
	if _, err := r.WaitReady(t.Context()); !errors.Is(err, ErrGuestClosed) {
		t.Errorf("WaitReady after guest EOF = %v; want ErrGuestClosed", err)
	}
}

// TestRelayCloseUnblocksBlockingSocket checks that Close returns even when
// the guest is a blocking-mode socket file (as a socketpair handed to QEMU
// is), where close(2) alone does not wake a blocked read.
func TestRelayCloseUnblocksBlockingSocket(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	host := os.NewFile(uintptr(fds[0]), "host")
	peer := os.NewFile(uintptr(fds[1]), "peer")
	defer peer.Close()
	r := NewRelay(host, RelayOptions{})
	time.Sleep(20 * time.Millisecond) // let the reader block in read(2)
	done := make(chan error, 1)
	go func() { done <- r.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close = %v", err)
		}
	case <-time.After(testWait):
		t.Fatal("Close blocked on a blocking socket read")
	}
}

func TestRelayTwoClientsConcurrent(t *testing.T) {
	env := newRelayEnv(t, RelayOptions{})
	clients := []*testClient{env.dial(t), env.dial(t)}
	const perClient = 20
	var wg sync.WaitGroup
	for ci, c := range clients {
		wg.Go(func() {
			for i := range uint32(perClient) {
				id := c.offset + 1 + i
				arg := fmt.Sprintf("c%d-%d", ci, i)
				out, errOut, code := c.exec(id, "echo", arg)
				if out != "out:"+arg || errOut != "err:"+arg || code != 0 {
					t.Errorf("client %d exec %d = %q, %q, %d; want out:%s, err:%s, 0", ci, i, out, errOut, code, arg, arg)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := env.relay.ActiveSessions(); n != 0 {
		t.Errorf("ActiveSessions after all exited = %d; want 0", n)
	}
}

func TestRelaySeventeenthClientClosed(t *testing.T) {
	env := newRelayEnv(t, RelayOptions{})
	var clients []*testClient
	for i := range agentproto.MaxClients {
		c := env.dial(t)
		if want := uint32(i) * agentproto.IDStep; c.offset != want {
			t.Fatalf("client %d offset = %d; want %d", i, c.offset, want)
		}
		clients = append(clients, c)
	}
	if c, err := env.tryDial(t); err == nil {
		t.Fatalf("17th client got a handshake with offset %d; want the connection closed", c.offset)
	}
	// The lowest freed slot is reused.
	clients[3].conn.Close()
	eventually(t, "slot 3 to be reused", func() bool {
		c, err := env.tryDial(t)
		if err != nil {
			return false
		}
		if c.offset != 3*agentproto.IDStep {
			t.Fatalf("new client offset = %d; want %d", c.offset, 3*agentproto.IDStep)
		}
		return true
	})
	// The last slot still works: its range ends just below 16·IDStep.
	last := clients[15]
	if out, _, _ := last.exec(last.offset+agentproto.IDStep-1, "echo", "top"); out != "out:top" {
		t.Errorf("slot 15 exec = %q; want out:top", out)
	}
}

func TestRelayDisconnectKillsSessions(t *testing.T) {
	env := newRelayEnv(t, RelayOptions{})
	a := env.dial(t)
	b := env.dial(t)
	ids := []uint32{b.offset + 1, b.offset + 2}
	for _, id := range ids {
		b.send(id, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "sleep"})
		if m := b.recv(); m.Type != agentproto.TypeExecStarted {
			t.Fatalf("got %s; want started", m.Type)
		}
	}
	fsID := b.offset + 3
	b.send(fsID, agentproto.TypeFsRequest, agentproto.FsRequest{Op: agentproto.FsOp{Kind: agentproto.FsWrite, Path: "/hang"}})
	env.guest.waitFor(t, "fs request", func(m agentproto.Message) bool { return m.ID == fsID })
	// a's own session must survive b's departure.
	a.send(a.offset+1, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "sleep"})
	a.recv()
	if n := env.relay.ActiveSessions(); n != 3 {
		t.Errorf("ActiveSessions = %d; want 3", n)
	}

	b.conn.Close()
	for _, id := range append(ids, fsID) {
		env.guest.waitFor(t, fmt.Sprintf("kill for %d", id), isKill(id))
	}
	eventually(t, "b's exec sessions to end", func() bool { return env.relay.ActiveSessions() == 1 })
	for _, m := range env.guest.received() {
		if isKill(a.offset + 1)(m) {
			t.Errorf("a's session was killed when b left")
		}
	}
	// a still works, and the orphans' late frames did not leak anywhere.
	if out, _, _ := a.exec(a.offset+2, "echo", "still"); out != "out:still" {
		t.Errorf("a exec = %q; want out:still", out)
	}
}

// TestRelayOrphanOutputNotDelivered checks that output of a departed
// client's still-running session does not reach the next client in its
// slot, which uses the same ids.
func TestRelayOrphanOutputNotDelivered(t *testing.T) {
	env := newRelayEnv(t, RelayOptions{})
	env.dial(t)
	b := env.dial(t)
	orphan := b.offset + 1
	b.send(orphan, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "deaf"})
	b.recv()
	b.conn.Close()
	env.guest.waitFor(t, "kill of the orphan", isKill(orphan))
	// Slot 1 holds an orphan, so new clients go to the other free slots
	// first (and stay connected); once they are taken, one lands in slot 1.
	var c *testClient
	eventually(t, "slot 1 to be reused", func() bool {
		var err error
		c, err = env.tryDial(t)
		return err == nil && c.offset == b.offset
	})
	env.guest.send(orphan, agentproto.TypeExecStdout, agentproto.ExecData{Data: []byte("leak")})
	// exec fails the test if any frame for another id arrives first.
	if out, _, _ := c.exec(c.offset+2, "echo", "mine"); out != "out:mine" {
		t.Errorf("exec = %q; want out:mine", out)
	}
	if n := env.relay.ActiveSessions(); n != 1 {
		t.Errorf("ActiveSessions = %d; want 1 (the orphan still runs)", n)
	}
	// Once the orphan ends, its id is free for the new client.
	env.guest.send(orphan, agentproto.TypeExecExited, agentproto.ExecExited{Code: 137})
	eventually(t, "the orphan to end", func() bool { return !env.sessionOpen(orphan) })
	if out, _, _ := c.exec(orphan, "echo", "reuse"); out != "out:reuse" {
		t.Errorf("exec on the reused id = %q; want out:reuse", out)
	}
}

func TestRelaySessionLimit(t *testing.T) {
	env := newRelayEnv(t, RelayOptions{MaxClientSessions: 2})
	a := env.dial(t)
	for i := range uint32(2) {
		a.send(a.offset+1+i, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "sleep"})
		a.recv()
	}
	a.send(a.offset+3, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "sleep"})
	a.expectClosed()
	for i := range uint32(2) {
		env.guest.waitFor(t, "kill", isKill(a.offset+1+i))
	}
	for _, m := range env.guest.received() {
		if m.ID == a.offset+3 {
			t.Errorf("guest received %s for the session over the limit", m.Type)
		}
	}
	if !strings.Contains(env.logs.String(), "more than 2 open sessions") {
		t.Errorf("log does not mention the session limit:\n%s", env.logs.String())
	}
}

// TestRelayAnswerWithoutSessionDropped: the guest's answer to a frame that
// opened no session (here fs.data without a request) is not passed on: the
// relay forwards only frames of sessions a client opened (better than 0.4.4,
// which routed any id to its slot).
func TestRelayAnswerWithoutSessionDropped(t *testing.T) {
	env := newRelayEnv(t, RelayOptions{})
	env.dial(t)
	b := env.dial(t)
	id := b.offset + 7
	b.send(id, agentproto.TypeFsData, agentproto.FsData{Data: []byte("x")})
	env.guest.waitFor(t, "the stray fs.data", func(m agentproto.Message) bool { return m.ID == id })
	// exec fails the test if a frame for another id arrives first.
	if out, _, _ := b.exec(b.offset+8, "echo", "next"); out != "out:next" {
		t.Errorf("exec = %q; want out:next", out)
	}
	if !strings.Contains(env.logs.String(), "frame for no open session") {
		t.Errorf("log does not mention the dropped frame:\n%s", env.logs.String())
	}
}

// badFrame builds raw client bytes for the malicious-client table.
func badFrame(t *testing.T, id uint32, typ agentproto.Type, payload any, mutate func([]byte) []byte) []byte {
	t.Helper()
	m, err := agentproto.New(id, typ, payload)
	if err != nil {
		t.Fatal(err)
	}
	f, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		return mutate(f)
	}
	return f
}

func TestRelayMaliciousClient(t *testing.T) {
	evil := agentproto.ExecRequest{Cmd: "evil"}
	tests := []struct {
		name  string
		bytes func(t *testing.T, bad *testClient) []byte
		log   string
	}{
		{"foreign id", func(t *testing.T, bad *testClient) []byte {
			return badFrame(t, 1, agentproto.TypeExecRequest, evil, nil)
		}, "id outside the client's range"},
		{"id at own offset", func(t *testing.T, bad *testClient) []byte {
			return badFrame(t, bad.offset, agentproto.TypeExecRequest, evil, nil)
		}, "id outside the client's range"},
		{"id 0 exec", func(t *testing.T, bad *testClient) []byte {
			return badFrame(t, 0, agentproto.TypeExecRequest, evil, nil)
		}, "id 0 is only for core.shutdown"},
		{"shutdown with session id", func(t *testing.T, bad *testClient) []byte {
			return badFrame(t, bad.offset+5, agentproto.TypeShutdown, nil, nil)
		}, "id 0 is only for core.shutdown"},
		{"guest-only type", func(t *testing.T, bad *testClient) []byte {
			return badFrame(t, 1, agentproto.TypeExecStdout, agentproto.ExecData{Data: []byte("spoof")}, nil)
		}, "guest-only message type"},
		{"flags do not match", func(t *testing.T, bad *testClient) []byte {
			return badFrame(t, bad.offset+5, agentproto.TypeExecRequest, evil, func(f []byte) []byte { f[8] = 0; return f })
		}, "flags do not match type"},
		{"terminal flag on stdin", func(t *testing.T, bad *testClient) []byte {
			return badFrame(t, bad.offset+1, agentproto.TypeExecStdin, agentproto.ExecData{}, func(f []byte) []byte { f[8] = 1; return f })
		}, "flags do not match type"},
		{"garbage body", func(t *testing.T, bad *testClient) []byte {
			return []byte{0, 0, 0, 8, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff}
		}, "undecodable frame"},
		{"unknown type", func(t *testing.T, bad *testClient) []byte {
			return badFrame(t, bad.offset+5, agentproto.TypeExecRequest, evil, func(f []byte) []byte {
				return bytes.Replace(f, []byte("core.exec.request"), []byte("core.exec.evilxxx"), 1)
			})
		}, "undecodable frame"},
		{"oversize length", func(t *testing.T, bad *testClient) []byte {
			return []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0}
		}, "unreadable frame"},
		{"too short length", func(t *testing.T, bad *testClient) []byte {
			return []byte{0, 0, 0, 2, 0, 0}
		}, "unreadable frame"},
		{"bad exec request payload", func(t *testing.T, bad *testClient) []byte {
			m := agentproto.Message{ID: bad.offset + 5, Type: agentproto.TypeExecRequest, Payload: []byte{0x82, 0x01}}
			f, err := m.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			return f
		}, "bad session start"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newRelayEnv(t, RelayOptions{})
			good := env.dial(t)
			bad := env.dial(t)
			sleepID := bad.offset + 1
			bad.send(sleepID, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "sleep"})
			if m := bad.recv(); m.Type != agentproto.TypeExecStarted {
				t.Fatalf("got %s; want started", m.Type)
			}
			// The good client is mid-session while the bad one misbehaves.
			good.send(good.offset+1, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "sleep"})
			good.recv()

			if _, err := bad.conn.Write(tc.bytes(t, bad)); err != nil {
				t.Fatal(err)
			}
			bad.expectClosed()
			env.guest.waitFor(t, "kill of the bad client's session", isKill(sleepID))

			if out, _, code := good.exec(good.offset+2, "echo", "fine"); out != "out:fine" || code != 0 {
				t.Errorf("good client exec = %q, %d; want out:fine, 0", out, code)
			}
			for _, m := range env.guest.received() {
				var req agentproto.ExecRequest
				if m.Type == agentproto.TypeExecRequest && m.Decode(&req) == nil && req.Cmd == "evil" {
					t.Errorf("guest received the bad client's request (id %d)", m.ID)
				}
				if isKill(good.offset + 1)(m) {
					t.Errorf("good client's session was killed")
				}
			}
			if !strings.Contains(env.logs.String(), tc.log) {
				t.Errorf("log does not mention %q:\n%s", tc.log, env.logs.String())
			}
		})
	}
}

func TestRelayShutdown(t *testing.T) {
	var calls atomic.Int32
	env := newRelayEnv(t, RelayOptions{OnShutdown: func() { calls.Add(1) }})
	a := env.dial(t)
	b := env.dial(t)

	// A shutdown with a session id is a violation and triggers nothing.
	if _, err := b.conn.Write(badFrame(t, b.offset+1, agentproto.TypeShutdown, nil, nil)); err != nil {
		t.Fatal(err)
	}
	b.expectClosed()
	if n := calls.Load(); n != 0 {
		t.Errorf("OnShutdown called %d times for a bad shutdown; want 0", n)
	}

	a.send(0, agentproto.TypeShutdown, nil)
	env.guest.waitFor(t, "core.shutdown", func(m agentproto.Message) bool {
		return m.ID == 0 && m.Type == agentproto.TypeShutdown
	})
	eventually(t, "OnShutdown", func() bool { return calls.Load() == 1 })
}

func TestRelayActivity(t *testing.T) {
	env := newRelayEnv(t, RelayOptions{})
	start := env.relay.LastActivity()
	if time.Since(start) > testWait {
		t.Fatalf("initial LastActivity = %v; want about now", start)
	}
	a := env.dial(t)
	time.Sleep(10 * time.Millisecond)
	// Guest output is not activity.
	if got := env.relay.LastActivity(); !got.Equal(start) {
		t.Errorf("LastActivity moved to %v without client input", got)
	}
	a.send(a.offset+1, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "sleep"})
	a.recv()
	after := env.relay.LastActivity()
	if !after.After(start) {
		t.Errorf("LastActivity = %v after a client frame; want after %v", after, start)
	}
	hb, ok := env.relay.Activity()
	if !ok || hb.ActiveSessions != 1 || !hb.LastActivity.Equal(after) {
		t.Errorf("Activity = %+v, %v; want 1 session, last activity %v", hb, ok, after)
	}
	a.send(a.offset+1, agentproto.TypeExecSignal, agentproto.ExecSignal{Signal: 15})
	a.recv()
	if n := env.relay.ActiveSessions(); n != 0 {
		t.Errorf("ActiveSessions after exit = %d; want 0", n)
	}
}

// execLogRelay returns a relay over the fake guest that taps exec output
// into an exec.log at path; the log is closed after the relay.
func execLogRelay(t *testing.T) (env *relayEnv, path string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "exec.log")
	el, err := launch.OpenExecLog(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { el.Close() })
	return newRelayEnv(t, RelayOptions{ExecLog: el}), path
}

func TestRelayExecLogTap(t *testing.T) {
	env, path := execLogRelay(t)
	a := env.dial(t)
	b := env.dial(t)
	a.exec(a.offset+1, "echo", "one")
	b.send(b.offset+1, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "echo", Args: []string{"two"}, TTY: true})
	for m := b.recv(); m.Type != agentproto.TypeExecExited; m = b.recv() {
	}
	a.exec(a.offset+2, "utf8")
	// fs traffic is not exec output.
	a.send(a.offset+3, agentproto.TypeFsRequest, agentproto.FsRequest{Op: agentproto.FsOp{Kind: agentproto.FsStat, Path: "/"}})
	a.recv()

	got, err := launch.ReadExecLog([]string{path}, launch.ExecLogFilter{Sources: launch.AllSources})
	if err != nil {
		t.Fatal(err)
	}
	type rec struct {
		Source launch.Source
		ID     uint64
		Data   string
	}
	var gotRecs []rec
	for _, r := range got {
		gotRecs = append(gotRecs, rec{r.Source, r.ID, r.Data})
	}
	want := []rec{
		{launch.SourceSystem, 0, launch.MarkerStarted},
		{launch.SourceStdout, 1, "out:one"},
		{launch.SourceStderr, 1, "err:one"},
		{launch.SourceOutput, 2, "out:two"},
		{launch.SourceStdout, 3, "h"},
		{launch.SourceStdout, 3, "éllo"},
	}
	if diff := cmp.Diff(want, gotRecs); diff != "" {
		t.Errorf("exec.log mismatch (-want +got):\n%s", diff)
	}
}

// TestRelayExecLogBeforeExit: exec.log is written by a goroutine of its
// own, yet a session's output is in it by the time its client gets the
// exit (msb exec, then msb logs, must show the output).
func TestRelayExecLogBeforeExit(t *testing.T) {
	env, path := execLogRelay(t)
	a := env.dial(t)
	for i := range 30 {
		arg := strconv.Itoa(i)
		a.exec(a.offset+1+uint32(i), "echo", arg)
		got, err := launch.ReadExecLog([]string{path}, launch.ExecLogFilter{Sources: launch.AllSources})
		if err != nil {
			t.Fatal(err)
		}
		var last []string
		for _, r := range got[max(0, len(got)-2):] {
			last = append(last, r.Data)
		}
		if want := []string{"out:" + arg, "err:" + arg}; !slices.Equal(last, want) {
			t.Fatalf("exec %d: last records of exec.log after its exit = %q; want %q", i, last, want)
		}
	}
}

func TestSplitUTF8Tail(t *testing.T) {
	tests := []struct{ in, complete, tail string }{
		{"", "", ""},
		{"abc", "abc", ""},
		{"h\xc3", "h", "\xc3"},
		{"h\xc3\xa9", "h\xc3\xa9", ""},
		{"\xe2\x9c", "", "\xe2\x9c"},
		{"a\xf0\x9f\x98", "a", "\xf0\x9f\x98"},
		{"a\xff", "a\xff", ""},
		{"a\x80\x80\x80", "a\x80\x80\x80", ""},
	}
	for _, tc := range tests {
		c, tail := splitUTF8Tail([]byte(tc.in))
		if string(c) != tc.complete || string(tail) != tc.tail {
			t.Errorf("splitUTF8Tail(%q) = %q, %q; want %q, %q", tc.in, c, tail, tc.complete, tc.tail)
		}
	}
}

// TestRelayBackpressureNoLoss checks that a client that pauses but keeps up
// within the stall timeout gets every frame, in order, while the relay's
// queue stays under its cap (the guest is made to wait instead).
func TestRelayBackpressureNoLoss(t *testing.T) {
	env := newRelayEnv(t, RelayOptions{ClientQueueBytes: 1, TotalQueueBytes: 1, StallTimeout: testWait})
	a := env.dial(t)
	// 16 MiB of numbered 4 KiB lines: four times the clamped cap.
	const n = 4096
	a.send(a.offset+1, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "lines", Args: []string{strconv.Itoa(n)}})
	time.Sleep(200 * time.Millisecond) // let the queue fill
	var out bytes.Buffer
	for {
		m := a.recv()
		if m.Type == agentproto.TypeExecExited {
			break
		}
		var d agentproto.ExecData
		if m.Type == agentproto.TypeExecStdout && m.Decode(&d) == nil {
			out.Write(d.Data)
		}
	}
	var want bytes.Buffer
	for i := range n {
		want.Write(numberedLine(i))
	}
	if !bytes.Equal(out.Bytes(), want.Bytes()) {
		t.Errorf("got %d bytes of output; want all %d frames in order (%d bytes)", out.Len(), n, want.Len())
	}
	limit := int64(env.relay.opts.ClientQueueBytes)
	if peak := env.relay.peakQueued.Load(); peak > limit || peak < limit/2 {
		t.Errorf("peak queued = %d bytes; want the queue filled to near its cap %d, never past it", peak, limit)
	}
}

// TestRelaySlowClient: a client that stops reading while its session floods
// is disconnected after the stall timeout, with the reason logged, and the
// other client is served again.
func TestRelaySlowClient(t *testing.T) {
	env := newRelayEnv(t, RelayOptions{StallTimeout: 100 * time.Millisecond})
	good := env.dial(t)
	slow := env.dial(t)
	floodID := slow.offset + 1
	// slow never reads again.
	slow.send(floodID, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "flood"})
	env.guest.waitFor(t, "kill of the slow client's flood", isKill(floodID))
	if want := "its output queue did not drain within the stall timeout"; !strings.Contains(env.logs.String(), want) {
		t.Errorf("log does not mention %q:\n%s", want, env.logs.String())
	}
	if out, _, _ := good.exec(good.offset+1, "echo", "ok"); out != "out:ok" {
		t.Errorf("good client exec = %q; want out:ok", out)
	}
	slow.expectClosed()
}

func TestRelayGuestEOF(t *testing.T) {
	env := newRelayEnv(t, RelayOptions{})
	a := env.dial(t)
	env.guest.conn.Close()
	a.expectClosed()
	env.expectGuestClosed(t, "the guest stream ended")
}

// expectGuestClosed waits for Serve to return ErrGuestClosed after what
// (for the failure message), and puts the error back for the cleanup.
func (env *relayEnv) expectGuestClosed(t *testing.T, what string) {
	t.Helper()
	select {
	case err := <-env.serveErr:
		if !errors.Is(err, ErrGuestClosed) {
			t.Errorf("Serve = %v; want ErrGuestClosed", err)
		}
		env.serveErr <- err // for cleanup
	case <-time.After(testWait):
		t.Fatalf("Serve did not return after %s", what)
	}
}

func TestRelayClientAfterCloseRejected(t *testing.T) {
	env := newRelayEnv(t, RelayOptions{})
	a := env.dial(t)
	if err := env.relay.Close(); err != nil {
		t.Fatal(err)
	}
	a.expectClosed()
	if _, err := env.relay.WaitReady(t.Context()); err != nil {
		// Ready stays cached after Close.
		t.Errorf("WaitReady after Close = %v; want the cached ready", err)
	}
}

// FuzzRelayClient feeds arbitrary client bytes through a relay: whatever a
// client sends, the relay must not panic, must keep serving a second client,
// and must not forward frames outside the sender's range.
func FuzzRelayClient(f *testing.F) {
	seed := func(id uint32, typ agentproto.Type, payload any) []byte {
		m, err := agentproto.New(id, typ, payload)
		if err != nil {
			f.Fatal(err)
		}
		fr, err := m.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		return fr
	}
	f.Add(seed(1, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "echo"}))
	f.Add(seed(0, agentproto.TypeShutdown, nil))
	f.Add(seed(agentproto.IDStep+1, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "evil"}))
	f.Add([]byte{0, 0, 0, 8, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		env := newRelayEnv(t, RelayOptions{})
		a := env.dial(t)
		b := env.dial(t)
		if _, err := a.conn.Write(data); err != nil {
			return
		}
		a.conn.Close()
		if out, _, _ := b.exec(b.offset+1, "echo", "b"); out != "out:b" {
			t.Fatalf("second client exec = %q; want out:b", out)
		}
		for _, m := range env.guest.received() {
			if m.ID >= agentproto.IDStep && m.ID != b.offset+1 {
				t.Errorf("guest received %s id %d from client 0", m.Type, m.ID)
			}
		}
	})
}

// BenchmarkRelayExecOutput measures guest→client throughput of 4 KiB exec
// output frames through the relay (fake guest on a net.Pipe, client on a
// unix socket), with and without the exec.log tap.
func BenchmarkRelayExecOutput(b *testing.B) {
	const frames = 256
	for _, tap := range []bool{false, true} {
		b.Run(fmt.Sprintf("tap=%v", tap), func(b *testing.B) {
			var opts RelayOptions
			if tap {
				el, err := launch.OpenExecLog(filepath.Join(b.TempDir(), "exec.log"), 0)
				if err != nil {
					b.Fatal(err)
				}
				defer el.Close()
				opts.ExecLog = el
			}
			env := newRelayEnv(b, opts)
			c := env.dial(b)
			b.SetBytes(frames * agentproto.MaxExecChunk)
			b.ReportAllocs()
			id := c.offset
			for b.Loop() {
				id++
				if out, _, _ := c.exec(id, "bulk", strconv.Itoa(frames)); len(out) != frames*agentproto.MaxExecChunk {
					b.Fatalf("got %d bytes; want %d", len(out), frames*agentproto.MaxExecChunk)
				}
			}
		})
	}
}

// TestRelayCloseWithStuckGuest checks that Close returns while a guest that
// stopped reading has the host→guest queue full and a client blocked on it.
func TestRelayCloseWithStuckGuest(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir, err := os.MkdirTemp("", "msbrelay")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("unix", filepath.Join(dir, "agent.sock"))
	if err != nil {
		t.Fatal(err)
	}
	hostEnd, guestEnd := net.Pipe()
	defer guestEnd.Close()
	r := NewRelay(hostEnd, RelayOptions{GuestQueueFrames: 4})
	g := newFakeGuest(guestEnd)
	go g.send(0, agentproto.TypeReady, agentproto.Ready{})
	if _, err := r.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- r.Serve(t.Context(), ln) }()

	conn, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stdin, err := agentproto.New(1, agentproto.TypeExecStdin, agentproto.ExecData{Data: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	frame, err := stdin.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for range 64 {
			if _, err := conn.Write(frame); err != nil {
				return
			}
		}
	}()
	// The guest reads nothing, so the queue (4) plus the frame being
	// written fill up and the client's reader blocks.
	eventually(t, "the guest queue to fill", func() bool { return len(r.toGuest) == cap(r.toGuest) })

	closed := make(chan error, 1)
	go func() { closed <- r.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close = %v", err)
		}
	case <-time.After(testWait):
		t.Fatal("Close blocked with a stuck guest")
	}
	if err := <-serveErr; !errors.Is(err, ErrRelayClosed) {
		t.Errorf("Serve = %v; want ErrRelayClosed", err)
	}
	<-writerDone
}

// FuzzRelayGuest feeds arbitrary guest bytes after ready: the relay must not
// panic or leak, and a client only ever receives frames from its own id range
// before it sees EOF.
func FuzzRelayGuest(f *testing.F) {
	seed := func(id uint32, typ agentproto.Type, payload any) []byte {
		m, err := agentproto.New(id, typ, payload)
		if err != nil {
			f.Fatal(err)
		}
		fr, err := m.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		return fr
	}
	f.Add(seed(1, agentproto.TypeExecStdout, agentproto.ExecData{Data: []byte("hi")}))
	f.Add(seed(agentproto.IDStep+1, agentproto.TypeExecExited, agentproto.ExecExited{}))
	f.Add(seed(0xFFFFFFFF, agentproto.TypeFsResponse, agentproto.FsResponse{OK: true}))
	f.Add(seed(0, agentproto.TypeReady, agentproto.Ready{}))
	f.Add([]byte{0, 0, 0, 5, 0, 0, 0, 1, 1})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 100, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		env := newRelayEnv(t, RelayOptions{})
		a := env.dial(t)
		b := env.dial(t)
		errs := make(chan error, 2)
		for _, c := range []*testClient{a, b} {
			go func() {
				c.conn.SetReadDeadline(time.Now().Add(testWait))
				for {
					f, err := agentproto.ReadRawFrame(c.conn)
					if err != nil {
						errs <- nil
						return
					}
					if id := f.ID(); slotOf(id) != int(c.offset/agentproto.IDStep) {
						errs <- fmt.Errorf("client at offset %d got id %d", c.offset, id)
						return
					}
				}
			}()
		}
		// net.Pipe is synchronous and the relay stops reading at a framing
		// error, so write from a goroutine that Close unblocks.
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			_, _ = env.guest.conn.Write(data)
		}()
		select {
		case <-wrote:
		case <-env.relay.guestDone:
		}
		env.guest.conn.Close()
		<-wrote
		for range 2 {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	})
}

// TestRelayShutdownFromHost: the sandbox process stops the guest through the relay
// itself (it may not open sockets once confined), and the guest sees the
// same core.shutdown a client would send.
func TestRelayShutdownFromHost(t *testing.T) {
	env := newRelayEnv(t, RelayOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if _, err := env.relay.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := env.relay.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	env.guest.waitFor(t, "core.shutdown", func(m agentproto.Message) bool {
		return m.ID == 0 && m.Type == agentproto.TypeShutdown
	})
	if err := env.relay.Close(); err != nil {
		t.Fatal(err)
	}
	if err := env.relay.Shutdown(ctx); !errors.Is(err, ErrRelayClosed) {
		t.Errorf("Shutdown after Close = %v; want ErrRelayClosed", err)
	}
}
