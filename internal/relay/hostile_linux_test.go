package relay

// A lying guest: the fake guest of relay_linux_test.go made to send what
// agentd never would, and agentd itself for the departed-write case
// (security review finding 6). Every test here tries to break one rule of
// the relay's doc comment.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msb-go/msb/internal/agent"
	"github.com/msb-go/msb/internal/agentproto"
	"github.com/msb-go/msb/internal/launch"
)

// raw writes b on the guest stream, whole, between the fake's own frames.
func (g *fakeGuest) raw(b []byte) { _ = g.enc.WriteRaw(b) }

// lieFrame encodes a frame with the given flags, whatever its type.
func lieFrame(t testing.TB, id uint32, typ agentproto.Type, payload any, flags agentproto.Flags) []byte {
	t.Helper()
	m, err := agentproto.New(id, typ, payload)
	if err != nil {
		t.Fatal(err)
	}
	f, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	f[8] = byte(flags)
	return f
}

// frameOf builds a frame from an arbitrary body.
func frameOf(id uint32, flags agentproto.Flags, body []byte) []byte {
	f := binary.BigEndian.AppendUint32(nil, uint32(agentproto.MinFrameLen+len(body)))
	f = binary.BigEndian.AppendUint32(f, id)
	f = append(f, byte(flags))
	return append(f, body...)
}

// unknownTypeFrame is a well-formed envelope with a wire name nobody knows.
func unknownTypeFrame(t testing.TB, id uint32) []byte {
	t.Helper()
	body, err := agentproto.Marshal(struct {
		V uint8  `cbor:"v"`
		T string `cbor:"t"`
		P []byte `cbor:"p"`
	}{1, "core.evil", []byte{0xa0}})
	if err != nil {
		t.Fatal(err)
	}
	return frameOf(id, 0, body)
}

// sessionOpen reports whether the relay still tracks session id.
func (e *relayEnv) sessionOpen(id uint32) bool {
	e.relay.mu.Lock()
	defer e.relay.mu.Unlock()
	return e.relay.sessions[id] != nil
}

// slotFree reports whether the slot of offset has no client; a departed
// client's slot is freed just after its kills are queued.
func (e *relayEnv) slotFree(offset uint32) bool {
	e.relay.mu.Lock()
	defer e.relay.mu.Unlock()
	return e.relay.clients[offset/agentproto.IDStep] == nil
}

func data(s string) agentproto.ExecData { return agentproto.ExecData{Data: []byte(s)} }

// TestRelayLyingGuest: each lie is dropped and logged; the session it aims
// at keeps the state its real messages gave it; neither the client it aims
// at nor a bystander sees it, and both are served afterwards.
func TestRelayLyingGuest(t *testing.T) {
	const (
		execID  = 1 // a's "sleep" session
		writeID = 2 // a's Write session (never answered)
		statID  = 3 // a's Stat session (never answered)
	)
	tests := []struct {
		name string
		// lie returns the frames the guest sends; a is the client the
		// lie aims at and b a bystander.
		lie  func(t *testing.T, a, b *testClient) []byte
		log  string
		open []uint32 // a's sessions (offsets) that must still be open
	}{
		{"undecodable body", func(t *testing.T, a, b *testClient) []byte {
			return frameOf(a.offset+execID, 0, []byte{0xff, 0xfe, 0x00})
		}, "undecodable frame", []uint32{execID}},
		{"unknown type", func(t *testing.T, a, b *testClient) []byte {
			return unknownTypeFrame(t, a.offset+execID)
		}, "undecodable frame", []uint32{execID}},
		{"host-only type", func(t *testing.T, a, b *testClient) []byte {
			return lieFrame(t, a.offset+execID, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "x"}, agentproto.FlagSessionStart)
		}, "unexpected message type", []uint32{execID}},
		{"ready again", func(t *testing.T, a, b *testClient) []byte {
			return lieFrame(t, 0, agentproto.TypeReady, agentproto.Ready{}, 0)
		}, "unexpected message type", nil},
		{"terminal flag on output", func(t *testing.T, a, b *testClient) []byte {
			return lieFrame(t, a.offset+execID, agentproto.TypeExecStdout, data("lie"), agentproto.FlagTerminal)
		}, "flags do not match type", []uint32{execID}},
		{"exited without the terminal flag", func(t *testing.T, a, b *testClient) []byte {
			return lieFrame(t, a.offset+execID, agentproto.TypeExecExited, agentproto.ExecExited{}, 0)
		}, "flags do not match type", []uint32{execID}},
		{"session-start flag on output", func(t *testing.T, a, b *testClient) []byte {
			return lieFrame(t, a.offset+execID, agentproto.TypeExecStdout, data("lie"), agentproto.FlagSessionStart)
		}, "flags do not match type", []uint32{execID}},
		{"fs response to an exec session", func(t *testing.T, a, b *testClient) []byte {
			return lieFrame(t, a.offset+execID, agentproto.TypeFsResponse, agentproto.FsResponse{OK: true}, agentproto.FlagTerminal)
		}, "message type does not match the session", []uint32{execID}},
		{"exit of an fs session", func(t *testing.T, a, b *testClient) []byte {
			return lieFrame(t, a.offset+writeID, agentproto.TypeExecExited, agentproto.ExecExited{}, agentproto.FlagTerminal)
		}, "message type does not match the session", []uint32{writeID}},
		{"file data on a write session", func(t *testing.T, a, b *testClient) []byte {
			return lieFrame(t, a.offset+writeID, agentproto.TypeFsData, agentproto.FsData{Data: []byte("not asked for")}, 0)
		}, "message type does not match the session", []uint32{writeID}},
		{"file data on a stat session", func(t *testing.T, a, b *testClient) []byte {
			return lieFrame(t, a.offset+statID, agentproto.TypeFsData, agentproto.FsData{Data: []byte("/etc/shadow")}, 0)
		}, "message type does not match the session", []uint32{statID}},
		{"answer to a request never made", func(t *testing.T, a, b *testClient) []byte {
			return lieFrame(t, a.offset+50, agentproto.TypeFsResponse, agentproto.FsResponse{OK: true}, agentproto.FlagTerminal)
		}, "frame for no open session", nil},
		{"output on the bystander's range", func(t *testing.T, a, b *testClient) []byte {
			return lieFrame(t, b.offset+1, agentproto.TypeExecStdout, data("lie"), 0)
		}, "frame for no open session", nil},
		{"output on a vacant slot", func(t *testing.T, a, b *testClient) []byte {
			return lieFrame(t, 15*agentproto.IDStep+1, agentproto.TypeExecStdout, data("lie"), 0)
		}, "frame for no open session", nil},
		{"id past the last slot", func(t *testing.T, a, b *testClient) []byte {
			return lieFrame(t, 0xFFFFFFFF, agentproto.TypeExecExited, agentproto.ExecExited{}, agentproto.FlagTerminal)
		}, "frame for no open session", nil},
		{"many lies in a row", func(t *testing.T, a, b *testClient) []byte {
			var all []byte
			for i := range 1000 {
				all = append(all, lieFrame(t, a.offset+execID, agentproto.TypeExecStdout, data(strconv.Itoa(i)), agentproto.FlagTerminal)...)
			}
			return all
		}, "suppressed", []uint32{execID}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newRelayEnv(t, RelayOptions{})
			a := env.dial(t)
			b := env.dial(t)
			a.send(a.offset+execID, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "sleep"})
			if m := a.recv(); m.Type != agentproto.TypeExecStarted {
				t.Fatalf("got %s; want exec.started", m.Type)
			}
			a.send(a.offset+writeID, agentproto.TypeFsRequest, agentproto.FsRequest{Op: agentproto.FsOp{Kind: agentproto.FsWrite, Path: "/held/f"}})
			a.send(a.offset+statID, agentproto.TypeFsRequest, agentproto.FsRequest{Op: agentproto.FsOp{Kind: agentproto.FsStat, Path: "/hang"}})
			env.guest.waitFor(t, "the stat request", func(m agentproto.Message) bool { return m.ID == a.offset+statID })

			// The write returns once the relay has read every byte, and
			// the relay routes in stream order, so a leaked frame would
			// reach a before the answers below.
			env.guest.raw(tc.lie(t, a, b))

			// exec fails the test on any frame for another id.
			if out, _, _ := a.exec(a.offset+10, "echo", "a"); out != "out:a" {
				t.Errorf("victim exec = %q; want out:a", out)
			}
			if out, _, _ := b.exec(b.offset+10, "echo", "b"); out != "out:b" {
				t.Errorf("bystander exec = %q; want out:b", out)
			}
			for _, id := range tc.open {
				if !env.sessionOpen(a.offset + id) {
					t.Errorf("session %d ended by the lie; want it open", id)
				}
			}
			if !strings.Contains(env.logs.String(), tc.log) {
				t.Errorf("log does not mention %q:\n%s", tc.log, env.logs.String())
			}
			// The real end still ends the session.
			a.send(a.offset+execID, agentproto.TypeExecSignal, agentproto.ExecSignal{Signal: 15})
			if m := a.recv(); m.Type != agentproto.TypeExecExited || m.ID != a.offset+execID {
				t.Errorf("after signal got %s id %d; want exec.exited id %d", m.Type, m.ID, a.offset+execID)
			}
			eventually(t, "the exec session to end", func() bool { return !env.sessionOpen(a.offset + execID) })
		})
	}
}

// TestRelayLyingGuestLogRateLimited: a flood of lies logs a bounded number
// of lines.
func TestRelayLyingGuestLogRateLimited(t *testing.T) {
	env := newRelayEnv(t, RelayOptions{})
	a := env.dial(t)
	var all []byte
	for range 5000 {
		all = append(all, lieFrame(t, a.offset+99, agentproto.TypeExecStdout, data("x"), 0)...)
	}
	start := time.Now()
	env.guest.raw(all)
	if out, _, _ := a.exec(a.offset+1, "echo", "a"); out != "out:a" {
		t.Errorf("exec = %q; want out:a", out)
	}
	// At most a burst per started second of the flood.
	limit := guestWarnBurst * (int(time.Since(start)/guestWarnEvery) + 1)
	if n := strings.Count(env.logs.String(), "dropping guest frame"); n < 1 || n > limit {
		t.Errorf("%d log lines for 5000 lies; want between 1 and %d", n, limit)
	}
}

// TestRelayGuestFramingLies: a length prefix out of bounds, or a stream that
// ends inside a frame, ends the guest stream (it cannot be resynchronised):
// the relay reports it, disconnects the clients and does not panic.
func TestRelayGuestFramingLies(t *testing.T) {
	tests := []struct {
		name  string
		bytes []byte
	}{
		{"length over 4 MiB", []byte{0x00, 0x40, 0x00, 0x01, 0, 0, 0, 1, 0}},
		{"length 0xffffffff", []byte{0xff, 0xff, 0xff, 0xff}},
		{"length under 5", []byte{0, 0, 0, 4, 0, 0, 0, 1}},
		{"frame cut short", []byte{0, 0, 0x10, 0, 0, 0, 0, 1, 0, 0xa3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newRelayEnv(t, RelayOptions{})
			a := env.dial(t)
			// net.Pipe is synchronous and the relay stops reading at the
			// framing error: write from a goroutine the close unblocks.
			wrote := make(chan struct{})
			go func() {
				defer close(wrote)
				env.guest.raw(tc.bytes)
			}()
			if tc.name == "frame cut short" {
				<-wrote
			} else {
				select {
				case <-env.relay.guestDone:
				case <-time.After(testWait):
					t.Fatal("the relay did not give up on the guest stream")
				}
			}
			env.guest.conn.Close()
			<-wrote
			a.expectClosed()
			err := <-env.serveErr
			env.serveErr <- err // for the cleanup
			if !errors.Is(err, ErrGuestClosed) {
				t.Errorf("Serve = %v; want ErrGuestClosed", err)
			}
			if !strings.Contains(env.logs.String(), "guest stream ended") {
				t.Errorf("log does not mention the end of the guest stream:\n%s", env.logs.String())
			}
		})
	}
}

// TestRelayDepartedWriteNotTakenOver is the proof of concept of security
// review finding 6, against the real agentd: client A starts an fs write
// and leaves; client B gets A's slot and writes with the same id. B's
// chunks must land in B's file only, and A's partial file is removed.
func TestRelayDepartedWriteNotTakenOver(t *testing.T) {
	dir := t.TempDir()
	hostEnd, guestEnd := net.Pipe()
	served := make(chan error, 1)
	go func() { served <- agent.Serve(context.Background(), guestEnd, agent.ServeOptions{}) }()
	env := serveRelay(t, RelayOptions{}, hostEnd, func() {
		guestEnd.Close()
		<-served
	})
	fileA, fileB := filepath.Join(dir, "a"), filepath.Join(dir, "b")

	a := env.dial(t)
	id := a.offset + 1
	a.send(id, agentproto.TypeFsRequest, agentproto.FsRequest{Op: agentproto.FsOp{Kind: agentproto.FsWrite, Path: fileA}})
	a.send(id, agentproto.TypeFsData, agentproto.FsData{Data: []byte("A-1 ")})
	// agentd handles frames in order: once the stat is answered, the
	// write is open and has A-1.
	a.send(id+1, agentproto.TypeFsRequest, agentproto.FsRequest{Op: agentproto.FsOp{Kind: agentproto.FsStat, Path: fileA}})
	if m := a.recv(); m.ID != id+1 || m.Type != agentproto.TypeFsResponse {
		t.Fatalf("got %s id %d; want the stat's fs.response", m.Type, m.ID)
	}
	a.conn.Close()

	eventually(t, "the guest to end A's write", func() bool { return !env.sessionOpen(id) && env.slotFree(a.offset) })
	b := env.dial(t)
	if b.offset != a.offset {
		t.Fatalf("B got offset %d; want A's slot (offset %d)", b.offset, a.offset)
	}
	b.send(id, agentproto.TypeFsRequest, agentproto.FsRequest{Op: agentproto.FsOp{Kind: agentproto.FsWrite, Path: fileB}})
	b.send(id, agentproto.TypeFsData, agentproto.FsData{Data: []byte("B-1")})
	b.send(id, agentproto.TypeFsData, agentproto.FsData{})
	m := b.recv()
	var resp agentproto.FsResponse
	if err := m.Decode(&resp); err != nil || m.ID != id || !resp.OK {
		t.Fatalf("B's write: %s id %d %+v (%v); want ok", m.Type, m.ID, resp, err)
	}
	if got, err := os.ReadFile(fileB); err != nil || string(got) != "B-1" {
		t.Errorf("B's file = %q, %v; want B-1", got, err)
	}
	if got, err := os.ReadFile(fileA); !os.IsNotExist(err) {
		t.Errorf("A's partial file = %q, %v; want it removed", got, err)
	}
}

// TestRelayDepartedWriteHeldByGuest: the same case against a guest that
// ignores the abort (as agentd 0.4.4 did) and keeps A's write open, with B
// forced into A's slot because every other slot is taken. The relay refuses
// B's session start on the held id itself and drops B's data for it.
func TestRelayDepartedWriteHeldByGuest(t *testing.T) {
	env := newRelayEnv(t, RelayOptions{})
	a := env.dial(t)
	id := a.offset + 1
	a.send(id, agentproto.TypeFsRequest, agentproto.FsRequest{Op: agentproto.FsOp{Kind: agentproto.FsWrite, Path: "/held/a"}})
	a.send(id, agentproto.TypeFsData, agentproto.FsData{Data: []byte("A-1 ")})
	if out, _, _ := a.exec(id+1, "echo", "a"); out != "out:a" {
		t.Fatalf("exec = %q; want out:a", out)
	}
	a.conn.Close()
	env.guest.waitFor(t, "the abort of A's write", isKill(id))
	eventually(t, "A's slot to be freed", func() bool { return env.slotFree(a.offset) })

	// A's slot is still quarantined: new clients go elsewhere.
	for range agentproto.MaxClients - 1 {
		if c := env.dial(t); c.offset == a.offset {
			t.Fatalf("a client got A's slot while the guest holds its write")
		}
	}
	b := env.dial(t)
	if b.offset != a.offset {
		t.Fatalf("B got offset %d; want A's slot (offset %d), the only free one", b.offset, a.offset)
	}
	b.send(id, agentproto.TypeFsRequest, agentproto.FsRequest{Op: agentproto.FsOp{Kind: agentproto.FsWrite, Path: "/held/b"}})
	b.send(id, agentproto.TypeFsData, agentproto.FsData{Data: []byte("B-1")})
	b.send(id, agentproto.TypeFsData, agentproto.FsData{})
	m := b.recv()
	var resp agentproto.FsResponse
	if err := m.Decode(&resp); err != nil || m.ID != id || m.Type != agentproto.TypeFsResponse || resp.OK ||
		resp.Error == nil || !strings.Contains(*resp.Error, "still held by an open session") {
		t.Fatalf("B's write on the held id: %s id %d %+v (%v); want the relay's refusal", m.Type, m.ID, resp, err)
	}
	// With the next id it works.
	b.send(id+2, agentproto.TypeFsRequest, agentproto.FsRequest{Op: agentproto.FsOp{Kind: agentproto.FsWrite, Path: "/held/b"}})
	b.send(id+2, agentproto.TypeFsData, agentproto.FsData{Data: []byte("B-2")})
	b.send(id+2, agentproto.TypeFsData, agentproto.FsData{})
	if m := b.recv(); m.ID != id+2 || m.Type != agentproto.TypeFsResponse {
		t.Fatalf("got %s id %d; want the response to B's second write", m.Type, m.ID)
	}
	env.guest.mu.Lock()
	fa, fb := string(env.guest.files["/held/a"]), string(env.guest.files["/held/b"])
	env.guest.mu.Unlock()
	if fa != "A-1 " || fb != "B-2" {
		t.Errorf("guest files: a=%q b=%q; want a=%q b=%q", fa, fb, "A-1 ", "B-2")
	}
}

// TestRelayNeverEndingSessionsGoIdle: a guest that never ends a departed
// client's session (and lies about its end with flag bits) keeps it counted
// as active only for OrphanGrace, so the idle timeout still fires; its id
// stays reserved all the same.
func TestRelayNeverEndingSessionsGoIdle(t *testing.T) {
	const grace = time.Second
	env := newRelayEnv(t, RelayOptions{OrphanGrace: grace})
	a := env.dial(t)
	id := a.offset + 1
	a.send(id, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "deaf"})
	a.recv()
	// Neither frame may end the session: the flags do not match the types.
	env.guest.raw(lieFrame(t, id, agentproto.TypeExecStdout, data("x"), agentproto.FlagTerminal))
	env.guest.raw(lieFrame(t, id, agentproto.TypeExecExited, agentproto.ExecExited{}, 0))
	if out, _, _ := a.exec(id+1, "echo", "a"); out != "out:a" {
		t.Fatalf("exec = %q; want out:a", out)
	}
	if n := env.relay.ActiveSessions(); n != 1 {
		t.Fatalf("ActiveSessions = %d with the client connected; want 1", n)
	}
	left := time.Now()
	a.conn.Close()
	env.guest.waitFor(t, "the kill", isKill(id))
	if n := env.relay.ActiveSessions(); n != 1 && time.Since(left) < grace {
		t.Errorf("ActiveSessions = %d within the grace; want 1 (the kill may still take effect)", n)
	}
	eventually(t, "the orphan to stop counting", func() bool { return env.relay.ActiveSessions() == 0 })
	if time.Since(left) < grace {
		t.Errorf("orphan stopped counting after %v; want at least the grace %v", time.Since(left), grace)
	}
	hb, _ := env.relay.Activity()
	if !launch.Idle(hb.LastActivity.Add(time.Minute), &hb, time.Minute) {
		t.Errorf("Idle(%+v) = false a minute after the last activity; want true", hb)
	}
	if !env.sessionOpen(id) {
		t.Errorf("the orphan's id was released; want it reserved while the guest holds it")
	}
}

// liveHeap returns the heap in use by live objects after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestRelayFloodMemoryBounded: a guest flooding output towards clients that
// never read makes the relay hold at most TotalQueueBytes (the old relay
// queued up to 64 MiB per client); the guest is made to wait, and after the
// stall timeout the stalled clients are disconnected one by one (logged) and
// a client that reads is served again.
func TestRelayFloodMemoryBounded(t *testing.T) {
	const (
		total   = 16 << 20
		stall   = 2 * time.Second
		stalled = 3
	)
	// One client may fill the whole total, so the total cap is what binds.
	env := newRelayEnv(t, RelayOptions{ClientQueueBytes: total, TotalQueueBytes: total, StallTimeout: stall})
	good := env.dial(t)
	base := liveHeap()
	var floods []*testClient
	for range stalled {
		c := env.dial(t)
		c.send(c.offset+1, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "flood"})
		floods = append(floods, c)
	}
	// Wait for the queues to reach the cap (the guest is held back from
	// then on), then sample the live heap before the first stall timeout.
	full := time.Now()
	eventually(t, "the queues to reach the total cap", func() bool {
		return env.relay.peakQueued.Load() > total-2*(agentproto.MaxExecChunk+256)
	})
	var peak uint64
	for range 3 {
		peak = max(peak, liveHeap())
		time.Sleep(50 * time.Millisecond)
	}
	if time.Since(full) > stall {
		t.Logf("sampling ended %v after the floods started; the stall timeout may have fired", time.Since(full))
	}
	grew := int64(peak) - int64(base)
	t.Logf("live heap grew by %.1f MiB under a flood to %d stalled clients (total cap %d MiB); peak queued %.1f MiB",
		float64(grew)/(1<<20), stalled, total>>20, float64(env.relay.peakQueued.Load())/(1<<20))
	if q := env.relay.peakQueued.Load(); q > total {
		t.Errorf("peak queued = %d; want at most the total cap %d", q, total)
	}
	// Slack for in-flight frames (one being read, one per client being
	// written) and test bookkeeping.
	if limit := int64(total + 12<<20); grew > limit {
		t.Errorf("live heap grew by %d bytes; want at most %d", grew, limit)
	}
	start := time.Now()
	if out, _, _ := good.exec(good.offset+1, "echo", "ok"); out != "out:ok" {
		t.Errorf("good client exec = %q; want out:ok", out)
	}
	t.Logf("the reading client waited %v behind %d stalled clients (stall timeout %v)", time.Since(start).Round(time.Millisecond), stalled, stall)
	// The stalled clients go one by one, each after a stall timeout of its
	// own, so the last kill may come stalled × stall after the queues
	// filled; the wait allows that plus the usual margin.
	for _, c := range floods {
		env.guest.waitWithin(t, time.Until(full.Add(stalled*stall+testWait)), "kill of a stalled flood", isKill(c.offset+1))
		c.expectClosed()
	}
	if !strings.Contains(env.logs.String(), "did not drain within the stall timeout") {
		t.Errorf("log does not give the reason for the disconnects:\n%s", env.logs.String())
	}
}

// TestRelayGiBThroughStdout: 1 GiB of exec output (256 MiB under the race
// detector) reaches a reading client whole, with the relay's queue under its
// cap and the heap far below the volume.
func TestRelayGiBThroughStdout(t *testing.T) {
	volume := 1 << 30
	if raceEnabled {
		volume = 256 << 20
	}
	env := newRelayEnv(t, RelayOptions{})
	a := env.dial(t)
	frames := volume / agentproto.MaxExecChunk
	var (
		peak     atomic.Uint64
		stop     = make(chan struct{})
		sampling sync.WaitGroup
	)
	sampling.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	start := time.Now()
	a.send(a.offset+1, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "bulk", Args: []string{strconv.Itoa(frames)}})
	got := 0
	for {
		m := a.recv()
		if m.Type == agentproto.TypeExecExited {
			break
		}
		var d agentproto.ExecData
		if m.Type == agentproto.TypeExecStdout && m.Decode(&d) == nil {
			got += len(d.Data)
		}
	}
	elapsed := time.Since(start)
	close(stop)
	sampling.Wait()
	t.Logf("%d MiB through stdout in %v (%.0f MiB/s); peak heap in use %.1f MiB; peak queued %.1f MiB",
		got>>20, elapsed.Round(time.Millisecond), float64(got)/(1<<20)/elapsed.Seconds(),
		float64(peak.Load())/(1<<20), float64(env.relay.peakQueued.Load())/(1<<20))
	if want := frames * agentproto.MaxExecChunk; got != want {
		t.Errorf("client got %d bytes; want %d", got, want)
	}
	if q := env.relay.peakQueued.Load(); q > int64(env.relay.opts.ClientQueueBytes) {
		t.Errorf("peak queued = %d; want at most the client cap %d", q, env.relay.opts.ClientQueueBytes)
	}
	if p := peak.Load(); p > 128<<20 {
		t.Errorf("peak heap in use = %d bytes; want well under 128 MiB", p)
	}
}

// TestRelaySixteenExecClients: every slot runs an exec at once and each
// gets exactly its own output.
func TestRelaySixteenExecClients(t *testing.T) {
	env := newRelayEnv(t, RelayOptions{})
	const lines = 256 // 1 MiB each
	var want bytes.Buffer
	for i := range lines {
		want.Write(numberedLine(i))
	}
	clients := make([]*testClient, agentproto.MaxClients)
	for i := range clients {
		clients[i] = env.dial(t)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(clients))
	for _, c := range clients {
		wg.Go(func() {
			id := c.offset + 1
			m, err := agentproto.New(id, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "lines", Args: []string{strconv.Itoa(lines)}})
			if err == nil {
				err = c.enc.Encode(m)
			}
			if err != nil {
				errs <- err
				return
			}
			var out bytes.Buffer
			c.conn.SetReadDeadline(time.Now().Add(4 * testWait))
			for {
				m, err := c.dec.Decode()
				if err != nil {
					errs <- fmt.Errorf("slot %d: %w", c.offset/agentproto.IDStep, err)
					return
				}
				if m.ID != id {
					errs <- fmt.Errorf("slot %d got a frame for id %d", c.offset/agentproto.IDStep, m.ID)
					return
				}
				if m.Type == agentproto.TypeExecExited {
					break
				}
				var d agentproto.ExecData
				if m.Type == agentproto.TypeExecStdout && m.Decode(&d) == nil {
					out.Write(d.Data)
				}
			}
			if !bytes.Equal(out.Bytes(), want.Bytes()) {
				errs <- fmt.Errorf("slot %d got %d bytes; want its %d in order", c.offset/agentproto.IDStep, out.Len(), want.Len())
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// FuzzRelayRoute feeds the guest-frame router arbitrary frame sequences
// against a fixed set of sessions (exec, fs Read, Write and Stat of one
// client, an exec of a second, and an orphan of a departed third). Each
// record of the input is [id selector][flags][type selector][length][body…];
// a type selector past the known types sends the body as the raw envelope.
// After each frame: at most one client got it, only the owner of an open
// session of a kind that takes that type, byte for byte, with flags that
// match the type; a terminal type ended the session; the counters agree
// with the session table.
func FuzzRelayRoute(f *testing.F) {
	f.Add([]byte{1, 0, 3, 0})                  // exec.stdout on the exec session
	f.Add([]byte{1, 1, 5, 0, 1, 1, 3, 0})      // exited, then output after the end
	f.Add([]byte{1, 1, 3, 0})                  // stdout with the terminal flag
	f.Add([]byte{1, 0, 5, 0})                  // exited without the terminal flag
	f.Add([]byte{2, 0, 8, 0, 2, 1, 9, 0})      // read: data, response
	f.Add([]byte{3, 0, 8, 0, 4, 0, 8, 0})      // data on a write and on a stat
	f.Add([]byte{6, 0, 3, 0, 6, 1, 5, 0})      // the orphan's output and end
	f.Add([]byte{7, 0, 3, 0, 0, 0, 0, 0})      // no session; ready on id 0
	f.Add([]byte{1, 0, 200, 3, 0xff, 0xff, 0}) // garbage envelope
	f.Add([]byte{5, 2, 1, 0, 5, 0, 10, 0})     // host-only types from the guest
	f.Fuzz(func(t *testing.T, data []byte) {
		hostEnd, guestEnd := net.Pipe()
		defer guestEnd.Close()
		r := NewRelay(hostEnd, RelayOptions{ClientQueueBytes: 1 << 30, TotalQueueBytes: 1 << 30, StallTimeout: time.Hour})
		defer r.Close()
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		newClient := func(slot int) *relayClient {
			c1, c2 := net.Pipe()
			conns = append(conns, c1, c2)
			c := &relayClient{r: r, slot: slot, offset: uint32(slot) * agentproto.IDStep, conn: c1,
				active: map[uint32]struct{}{}, wake: make(chan struct{}, 1), gone: make(chan struct{})}
			r.mu.Lock()
			r.clients[slot] = c
			r.mu.Unlock()
			return c
		}
		open := func(c *relayClient, id uint32, typ agentproto.Type, payload any) {
			m, err := agentproto.New(id, typ, payload)
			if err != nil {
				t.Fatal(err)
			}
			if held, err := c.startSession(id, m); held || err != nil {
				t.Fatalf("startSession(%d) = %v, %v", id, held, err)
			}
		}
		fsOp := func(k agentproto.FsOpKind) agentproto.FsRequest {
			return agentproto.FsRequest{Op: agentproto.FsOp{Kind: k, Path: "/x"}}
		}
		a, b, gone := newClient(0), newClient(1), newClient(2)
		open(a, 1, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "x"})
		open(a, 2, agentproto.TypeFsRequest, fsOp(agentproto.FsRead))
		open(a, 3, agentproto.TypeFsRequest, fsOp(agentproto.FsWrite))
		open(a, 4, agentproto.TypeFsRequest, fsOp(agentproto.FsStat))
		open(b, agentproto.IDStep+1, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "x", TTY: true})
		open(gone, 2*agentproto.IDStep+1, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "x"})
		// As cleanup does, without the kill frames.
		r.mu.Lock()
		for id := range gone.active {
			s := r.sessions[id]
			s.owner, s.orphanedAt = nil, time.Now()
			r.orphans++
			r.slotOrphans[gone.slot]++
		}
		gone.active = map[uint32]struct{}{}
		r.clients[gone.slot] = nil
		r.mu.Unlock()

		ids := []uint32{0, 1, 2, 3, 4, agentproto.IDStep + 1, 2*agentproto.IDStep + 1, 7, 0xFFFFFFFF}
		clients := []*relayClient{a, b}
		for len(data) >= 4 {
			id := ids[int(data[0])%len(ids)]
			flags := agentproto.Flags(data[1])
			sel := int(data[2])
			n := min(int(data[3]), len(data)-4)
			body := data[4 : 4+n]
			data = data[4+n:]
			var fr agentproto.RawFrame
			if sel < len(agentproto.Types) {
				m := agentproto.Message{ID: id, Type: agentproto.Types[sel], Payload: body}
				var err error
				if fr, err = m.Marshal(); err != nil {
					t.Fatal(err)
				}
				fr[8] = byte(flags)
			} else {
				fr = frameOf(id, flags, body)
			}

			r.mu.Lock()
			s := r.sessions[id]
			var before relaySession
			if s != nil {
				before = relaySession{owner: s.owner, exec: s.exec, fsRead: s.fsRead}
			}
			r.mu.Unlock()
			queued := make([]int, len(clients))
			for i, c := range clients {
				queued[i] = len(c.queue)
			}

			r.route(fr)

			got := 0
			for i, c := range clients {
				switch d := len(c.queue) - queued[i]; {
				case d == 0:
					continue
				case d > 1:
					t.Fatalf("one frame queued %d times", d)
				}
				got++
				if !bytes.Equal(c.queue[len(c.queue)-1].f, fr) {
					t.Fatalf("client got altered bytes")
				}
				if s == nil || before.owner != c {
					t.Fatalf("slot %d got id %d, which it has no open session on", c.slot, id)
				}
				m, err := fr.Message()
				if err != nil {
					t.Fatalf("forwarded an undecodable frame: %v", err)
				}
				if fr.Flags() != m.Type.Flags() || !before.accepts(m.Type) {
					t.Fatalf("forwarded %s with flags %#x to a session (exec %v, read %v)", m.Type, fr.Flags(), before.exec, before.fsRead)
				}
			}
			if got > 0 || s != nil {
				r.mu.Lock()
				still := r.sessions[id] != nil
				r.mu.Unlock()
				m, err := fr.Message()
				ended := err == nil && fr.Flags() == m.Type.Flags() && m.Type.Flags()&agentproto.FlagTerminal != 0 && before.accepts(m.Type)
				if still == ended {
					t.Fatalf("session %d open = %v after %x; want ended = %v", id, still, fr[:min(len(fr), 16)], ended)
				}
			}

			r.mu.Lock()
			execs, orphans := 0, 0
			var perSlot [agentproto.MaxClients]int
			for id, s := range r.sessions {
				if s.exec {
					execs++
				}
				if s.owner == nil {
					orphans++
					perSlot[slotOf(id)]++
				} else if _, ok := s.owner.active[id]; !ok {
					t.Fatalf("session %d missing from its owner's active set", id)
				}
			}
			if execs != r.execSessions || orphans != r.orphans || perSlot != r.slotOrphans {
				t.Fatalf("counters exec %d orphans %d per slot %v; table has %d, %d, %v", r.execSessions, r.orphans, r.slotOrphans, execs, orphans, perSlot)
			}
			r.mu.Unlock()
		}
	})
}

func TestRateLimit(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	var l rateLimit
	type event struct {
		at             time.Time
		wantOK         bool
		wantSuppressed int
	}
	var events []event
	for i := range guestWarnBurst {
		events = append(events, event{ms(i), true, 0})
	}
	events = append(events,
		event{ms(20), false, 0},  // burst used up
		event{ms(999), false, 0}, // still inside the second
		event{ms(1000), true, 2}, // a new second: logged, with the count
		event{ms(1001), true, 0},
	)
	for i, e := range events {
		n, ok := l.allow(e.at)
		if ok != e.wantOK || n != e.wantSuppressed {
			t.Errorf("event %d at %v: allow = %d, %v; want %d, %v", i, e.at.Sub(t0), n, ok, e.wantSuppressed, e.wantOK)
		}
	}
}

// TestRelayOwnOpenIDRefused: a client that starts a session on one of its
// own ids still open is refused by the relay (the old relay replaced the
// session, leaving the guest's one unaborted when the client left).
func TestRelayOwnOpenIDRefused(t *testing.T) {
	env := newRelayEnv(t, RelayOptions{})
	a := env.dial(t)
	id := a.offset + 1
	a.send(id, agentproto.TypeFsRequest, agentproto.FsRequest{Op: agentproto.FsOp{Kind: agentproto.FsWrite, Path: "/held/one"}})
	a.send(id, agentproto.TypeFsRequest, agentproto.FsRequest{Op: agentproto.FsOp{Kind: agentproto.FsWrite, Path: "/held/two"}})
	m := a.recv()
	var resp agentproto.FsResponse
	if err := m.Decode(&resp); err != nil || m.ID != id || resp.OK || resp.Error == nil || !strings.Contains(*resp.Error, "still held by an open session") {
		t.Fatalf("second start on an open id: %s id %d %+v (%v); want the relay's refusal", m.Type, m.ID, resp, err)
	}
	a.conn.Close()
	// The first write is the one aborted, and the guest never saw the second.
	env.guest.waitFor(t, "the abort of the first write", isKill(id))
	for _, m := range env.guest.received() {
		var req agentproto.FsRequest
		if m.Type == agentproto.TypeFsRequest && m.Decode(&req) == nil && req.Op.Path == "/held/two" {
			t.Errorf("the guest received the refused request")
		}
	}
}
