package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/agentproto"
)

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// upgradeServe is a Serve with an Upgrades channel, seen from the host.
type upgradeServe struct {
	console  net.Conn                // host end of the console
	consoleR chan agentproto.Message // frames read from console after ready
	upgrades chan io.ReadWriteCloser // Serve's Upgrades
	ready    agentproto.Ready        // read from the console
	log      *syncBuffer             // Serve's log
	done     chan error              // Serve's result
	cancel   context.CancelFunc      // cancels Serve's context
}

func startUpgradeServe(t *testing.T) *upgradeServe {
	t.Helper()
	hostConn, guestConn := socketpair(t)
	ctx, cancel := context.WithCancel(context.Background())
	u := &upgradeServe{
		console:  hostConn,
		consoleR: make(chan agentproto.Message, 64),
		upgrades: make(chan io.ReadWriteCloser, 2),
		log:      &syncBuffer{},
		done:     make(chan error, 1),
		cancel:   cancel,
	}
	opts := ServeOptions{
		Env:      []string{"PATH=" + os.Getenv("PATH")},
		Logger:   slog.New(slog.NewTextHandler(u.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Upgrades: u.upgrades,
	}
	go func() { u.done <- Serve(ctx, guestConn, opts) }()
	dec := agentproto.NewDecoder(hostConn)
	m, err := dec.Decode()
	if err != nil {
		t.Fatalf("read ready: %v", err)
	}
	if m.Type != agentproto.TypeReady {
		t.Fatalf("first frame = %s; want core.ready", m.Type)
	}
	mustDecode(t, m, &u.ready)
	consoleDone := make(chan struct{})
	go func() {
		defer close(consoleDone)
		defer close(u.consoleR)
		for {
			m, err := dec.Decode()
			if err != nil {
				return
			}
			u.consoleR <- m
		}
	}()
	t.Cleanup(func() {
		cancel()
		hostConn.Close()
		select {
		case <-u.done:
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return")
		}
		<-consoleDone
	})
	return u
}

// upgrade hands Serve a new connection and returns a test client on its
// host end.
func (u *upgradeServe) upgrade(t *testing.T) *testClient {
	t.Helper()
	hostConn, guestConn := socketpair(t)
	u.upgrades <- guestConn.(io.ReadWriteCloser)
	c := &testClient{
		tb:       t,
		conn:     hostConn,
		enc:      agentproto.NewEncoder(hostConn),
		subs:     map[uint32]chan agentproto.Message{},
		readDone: make(chan struct{}),
	}
	go c.readLoop(agentproto.NewDecoder(hostConn))
	t.Cleanup(func() {
		hostConn.Close()
		<-c.readDone
	})
	return c
}

// consoleQuiet fails t if the agent wrote anything to the console since
// ready.
func (u *upgradeServe) consoleQuiet(t *testing.T) {
	t.Helper()
	select {
	case m, ok := <-u.consoleR:
		if ok {
			t.Errorf("frame %s id %d on the console after the upgrade", m.Type, m.ID)
		}
	default:
	}
}

func (u *upgradeServe) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-u.done:
		u.done <- err // for Cleanup
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("Serve did not return")
		return nil
	}
}

func TestServeVsockCapability(t *testing.T) {
	tests := []struct {
		name     string
		upgrades chan io.ReadWriteCloser
		want     bool
	}{
		{"no listener", nil, false},
		{"listener", make(chan io.ReadWriteCloser), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := startServe(t, ServeOptions{Upgrades: tt.upgrades})
			if got := c.ready.Has(agentproto.CapVsock); got != tt.want {
				t.Errorf("Has(%q) = %v; want %v (capabilities %v)", agentproto.CapVsock, got, tt.want, c.ready.Capabilities)
			}
			if !c.ready.Has(agentproto.CapExecPTY) || !c.ready.Has(agentproto.CapFs) {
				t.Errorf("capabilities = %v; want exec.pty and fs too", c.ready.Capabilities)
			}
		})
	}
	// The shared list must not have been appended to.
	for _, c := range capabilities {
		if c == agentproto.CapVsock {
			t.Errorf("capabilities (shared) = %v; CapVsock leaked into it", capabilities)
		}
	}
}

func TestServeUpgrade(t *testing.T) {
	u := startUpgradeServe(t)
	if !u.ready.Has(agentproto.CapVsock) {
		t.Fatalf("capabilities = %v; want %q", u.ready.Capabilities, agentproto.CapVsock)
	}
	c := u.upgrade(t)

	// Round trips on the new stream.
	if r := c.exec(agentproto.ExecRequest{Cmd: "echo", Args: []string{"over vsock"}}); r.code != 0 || string(r.stdout) != "over vsock\n" {
		t.Fatalf("exec = %v; want code 0 stdout %q", r, "over vsock\n")
	}
	if r := c.fs(agentproto.FsOp{Kind: agentproto.FsStat, Path: "/"}); r.Error != nil {
		t.Fatalf("fs stat / = %s; want success", errText(r))
	}
	u.consoleQuiet(t)

	// A frame on the console after the upgrade is discarded, not run.
	marker := filepath.Join(t.TempDir(), "marker")
	m, err := agentproto.New(77, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "touch", Args: []string{marker}})
	if err != nil {
		t.Fatal(err)
	}
	if err := agentproto.NewEncoder(u.console).Encode(m); err != nil {
		t.Fatalf("write console: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(u.log.String(), "discarding console frames") {
		if time.Now().After(deadline) {
			t.Fatalf("no discard warning; log:\n%s", u.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The new stream still works, and the console request left no trace.
	if r := c.exec(agentproto.ExecRequest{Cmd: "true"}); r.code != 0 {
		t.Fatalf("exec after console frame = %v", r)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat %s = %v; the console request was run", marker, err)
	}
	u.consoleQuiet(t)

	// A second connection is closed at once.
	extraHost, extraGuest := socketpair(t)
	defer extraHost.Close()
	u.upgrades <- extraGuest.(io.ReadWriteCloser)
	extraHost.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := extraHost.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read extra connection = %d, %v; want EOF", n, err)
	}
	if r := c.exec(agentproto.ExecRequest{Cmd: "true"}); r.code != 0 {
		t.Fatalf("exec after extra connection = %v", r)
	}

	// Closing the console no longer ends Serve ...
	u.console.Close()
	select {
	case err := <-u.done:
		t.Fatalf("Serve returned %v after the console closed; want it to go on", err)
	case <-time.After(100 * time.Millisecond):
	}
	if r := c.exec(agentproto.ExecRequest{Cmd: "true"}); r.code != 0 {
		t.Fatalf("exec after console close = %v", r)
	}
	// ... closing the new stream does.
	c.conn.Close()
	if err := u.wait(t); err != nil {
		t.Errorf("Serve = %v; want nil", err)
	}
}

// TestServeUpgradeEndsWithNewStream checks that teardown closes both
// connections and leaves no goroutine behind when the adopted stream ends
// while the console is still open.
func TestServeUpgradeEndsWithNewStream(t *testing.T) {
	opts := []goleak.Option{goleak.IgnoreCurrent(), goleak.IgnoreTopFunction("os/signal.signal_recv"), goleak.IgnoreAnyFunction("os/signal.loop")}
	func() {
		u := startUpgradeServe(t)
		c := u.upgrade(t)
		if r := c.fs(agentproto.FsOp{Kind: agentproto.FsStat, Path: "/"}); r.Error != nil {
			t.Fatalf("fs stat / = %s; want success", errText(r))
		}
		_, ch := c.start(agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "sleep", Args: []string{"100"}})
		waitStarted(t, ch)
		c.conn.Close()
		if err := u.wait(t); err != nil {
			t.Errorf("Serve = %v; want nil", err)
		}
		// Serve closed the console: the host sees its end.
		select {
		case _, ok := <-u.consoleR:
			for ok {
				_, ok = <-u.consoleR
			}
		case <-time.After(10 * time.Second):
			t.Errorf("console still open after Serve returned")
		}
	}()
	goleak.VerifyNone(t, opts...)
}

// TestServeUpgradeShutdown checks that core.shutdown on the new stream ends
// Serve, and that a cancelled context still does after an upgrade.
func TestServeUpgradeShutdown(t *testing.T) {
	tests := []struct {
		name    string
		end     func(u *upgradeServe, c *testClient)
		wantErr error
	}{
		{"shutdown", func(u *upgradeServe, c *testClient) { c.send(0, agentproto.TypeShutdown, nil) }, nil},
		{"cancel", func(u *upgradeServe, c *testClient) { u.cancel() }, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := startUpgradeServe(t)
			c := u.upgrade(t)
			if r := c.exec(agentproto.ExecRequest{Cmd: "true"}); r.code != 0 {
				t.Fatalf("exec = %v", r)
			}
			tt.end(u, c)
			if err := u.wait(t); !errors.Is(err, tt.wantErr) {
				t.Errorf("Serve = %v; want %v", err, tt.wantErr)
			}
			u.consoleQuiet(t)
		})
	}
}

func TestHostPeer(t *testing.T) {
	tests := []struct {
		cid  uint32
		want bool
	}{
		{unix.VMADDR_CID_HOST, true},
		{0, false}, // the hypervisor
		{1, false}, // VMADDR_CID_LOCAL: loopback inside the guest
		{3, false}, // a guest, e.g. this one
		{unix.VMADDR_CID_ANY, false},
	}
	for _, tt := range tests {
		if got := hostPeer(tt.cid); got != tt.want {
			t.Errorf("hostPeer(%d) = %v; want %v", tt.cid, got, tt.want)
		}
	}
}

// TestAcceptLoop feeds acceptLoop fake connections: only the host's reach
// the upgrades channel, the others are closed.
func TestAcceptLoop(t *testing.T) {
	type conn struct {
		sa   unix.Sockaddr
		peer int // our end of the socketpair
		fd   int // the end acceptLoop gets
	}
	conns := []conn{
		{sa: &unix.SockaddrVM{CID: 3, Port: 5000}},
		{sa: &unix.SockaddrVM{CID: 1, Port: 5001}},
		{sa: &unix.SockaddrVM{CID: unix.VMADDR_CID_HOST, Port: 5002}},
		{sa: &unix.SockaddrUnix{Name: "/x"}},
		{sa: &unix.SockaddrVM{CID: unix.VMADDR_CID_HOST, Port: 5003}},
	}
	for i := range conns {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		conns[i].peer, conns[i].fd = fds[0], fds[1]
		defer unix.Close(fds[0])
	}
	stop := make(chan struct{})
	next := 0
	accept := func() (int, unix.Sockaddr, error) {
		if next == len(conns) {
			<-stop
			return -1, nil, os.ErrClosed
		}
		c := conns[next]
		next++
		return c.fd, c.sa, nil
	}
	upgrades := make(chan io.ReadWriteCloser)
	done := make(chan struct{})
	go func() {
		defer close(done)
		acceptLoop(accept, upgrades, stop, slog.New(slog.DiscardHandler))
	}()
	for _, want := range []int{2, 4} {
		select {
		case rw := <-upgrades:
			// The connection is conns[want]'s: what its peer writes
			// arrives.
			if _, err := unix.Write(conns[want].peer, []byte{byte(want)}); err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 1)
			if _, err := io.ReadFull(rw, b); err != nil || b[0] != byte(want) {
				t.Errorf("read upgrade connection = %v, %v; want conns[%d]", b, err, want)
			}
			rw.Close()
		case <-time.After(10 * time.Second):
			t.Fatalf("no connection for conns[%d]", want)
		}
	}
	close(stop)
	<-done
	// Every rejected connection was closed: its peer reads EOF.
	for _, i := range []int{0, 1, 3} {
		n, err := unix.Read(conns[i].peer, make([]byte, 1))
		if n != 0 || err != nil {
			t.Errorf("conns[%d] (%v) peer read = %d, %v; want EOF (closed)", i, conns[i].sa, n, err)
		}
	}
}
