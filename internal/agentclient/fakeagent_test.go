package agentclient

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/msb-go/msb/internal/agentproto"
)

// fakeAgent plays agentd (and, with a relay prefix, the relay) on one
// connection. Its loop handles frames in order on one goroutine, as agentd
// does; commands are scripted by ExecRequest.Cmd:
//
//	echo ARGS…   stdout "ARGS…\n", exit 0
//	stderr MSG   stderr MSG, exit 3
//	cat          echo stdin to stdout until EOF, exit 0
//	sleep        wait for a signal s, exit 128+s
//	fail         core.exec.failed not_found
//	yes N        N bytes of stdout in 4096-byte chunks, exit 0
//	hang         stdout "partial", then nothing
//	noise        frames for an unowned id and an unknown type, then exit 0
//
// Files live in memory. Stat of "/hang" never answers; writes under "/ro/"
// fail at once.
type fakeAgent struct {
	conn net.Conn
	enc  *agentproto.Encoder
	done chan struct{}

	// Only the loop goroutine touches these.
	files    map[string][]byte
	dirs     map[string]bool
	sleeping map[uint32]bool
	cats     map[uint32]bool
	writes   map[uint32]*fakeWrite

	// Observations, guarded by mu.
	mu          sync.Mutex
	requestIDs  []uint32
	execs       []agentproto.ExecRequest
	signals     []fakeSignal
	resizes     []agentproto.ExecResize
	maxStdin    int
	maxFsData   int
	shutdownHit bool
	modes       map[string]*uint32

	stdoutSent atomic.Int64 // stdout payload bytes written
	signalCh   chan fakeSignal
}

type fakeWrite struct {
	path string
	buf  []byte
}

type fakeSignal struct {
	id  uint32
	sig int32
}

func newFakeAgent(conn net.Conn) *fakeAgent {
	return &fakeAgent{
		conn:     conn,
		enc:      agentproto.NewEncoder(conn),
		done:     make(chan struct{}),
		files:    map[string][]byte{"/etc/hostname": []byte("sandbox\n")},
		dirs:     map[string]bool{"/": true, "/etc": true},
		sleeping: map[uint32]bool{},
		cats:     map[uint32]bool{},
		writes:   map[uint32]*fakeWrite{},
		modes:    map[string]*uint32{},
		signalCh: make(chan fakeSignal, 100),
	}
}

var testReady = agentproto.Ready{InitTimeNs: 1, ReadyTimeNs: 2, ProtocolVersion: 1, Capabilities: []string{agentproto.CapFs}}

// greet writes the handshake: the relay's id offset (if relay) and the
// ready frame.
func (a *fakeAgent) greet(relay bool, offset uint32, ready agentproto.Ready) error {
	m, err := agentproto.New(0, agentproto.TypeReady, ready)
	if err != nil {
		return err
	}
	f, err := m.Marshal()
	if err != nil {
		return err
	}
	if relay {
		f = append(binary.BigEndian.AppendUint32(nil, offset), f...)
	}
	_, err = a.conn.Write(f)
	return err
}

// run serves frames until the connection ends.
func (a *fakeAgent) run() {
	defer close(a.done)
	defer a.conn.Close()
	dec := agentproto.NewDecoder(a.conn)
	for {
		m, err := dec.Decode()
		if err != nil {
			return
		}
		if err := a.serve(m); err != nil {
			return
		}
	}
}

func (a *fakeAgent) send(id uint32, t agentproto.Type, p any) error {
	m, err := agentproto.New(id, t, p)
	if err != nil {
		return err
	}
	return a.enc.Encode(m)
}

func (a *fakeAgent) serve(m agentproto.Message) error {
	switch m.Type {
	case agentproto.TypeShutdown:
		a.mu.Lock()
		a.shutdownHit = m.ID == 0
		a.mu.Unlock()
		return io.EOF
	case agentproto.TypeExecRequest:
		var req agentproto.ExecRequest
		if err := m.Decode(&req); err != nil {
			return err
		}
		a.mu.Lock()
		a.requestIDs = append(a.requestIDs, m.ID)
		a.execs = append(a.execs, req)
		a.mu.Unlock()
		return a.exec(m.ID, req)
	case agentproto.TypeExecStdin:
		var d agentproto.ExecData
		if err := m.Decode(&d); err != nil {
			return err
		}
		a.mu.Lock()
		a.maxStdin = max(a.maxStdin, len(d.Data))
		a.mu.Unlock()
		if !a.cats[m.ID] {
			return nil
		}
		if len(d.Data) == 0 {
			delete(a.cats, m.ID)
			return a.send(m.ID, agentproto.TypeExecExited, agentproto.ExecExited{Code: 0})
		}
		return a.stdout(m.ID, d.Data)
	case agentproto.TypeExecSignal:
		var s agentproto.ExecSignal
		if err := m.Decode(&s); err != nil {
			return err
		}
		fs := fakeSignal{m.ID, s.Signal}
		a.mu.Lock()
		a.signals = append(a.signals, fs)
		a.mu.Unlock()
		a.signalCh <- fs
		if a.sleeping[m.ID] || a.cats[m.ID] {
			delete(a.sleeping, m.ID)
			delete(a.cats, m.ID)
			return a.send(m.ID, agentproto.TypeExecExited, agentproto.ExecExited{Code: 128 + s.Signal})
		}
		return nil
	case agentproto.TypeExecResize:
		var r agentproto.ExecResize
		if err := m.Decode(&r); err != nil {
			return err
		}
		a.mu.Lock()
		a.resizes = append(a.resizes, r)
		a.mu.Unlock()
		return nil
	case agentproto.TypeFsRequest:
		var req agentproto.FsRequest
		if err := m.Decode(&req); err != nil {
			return err
		}
		a.mu.Lock()
		a.requestIDs = append(a.requestIDs, m.ID)
		a.mu.Unlock()
		return a.fs(m.ID, req.Op)
	case agentproto.TypeFsData:
		var d agentproto.FsData
		if err := m.Decode(&d); err != nil {
			return err
		}
		w := a.writes[m.ID]
		if w == nil {
			return a.fsErr(m.ID, fmt.Sprintf("unknown write session: %d", m.ID))
		}
		a.mu.Lock()
		a.maxFsData = max(a.maxFsData, len(d.Data))
		a.mu.Unlock()
		if len(d.Data) > 0 {
			w.buf = append(w.buf, d.Data...)
			return nil
		}
		delete(a.writes, m.ID)
		a.files[w.path] = w.buf
		return a.send(m.ID, agentproto.TypeFsResponse, agentproto.FsResponse{OK: true})
	}
	return fmt.Errorf("fake agent: unexpected %s", m.Type)
}

func (a *fakeAgent) stdout(id uint32, data []byte) error {
	for len(data) > 0 {
		n := min(len(data), agentproto.MaxExecChunk)
		if err := a.send(id, agentproto.TypeExecStdout, agentproto.ExecData{Data: data[:n]}); err != nil {
			return err
		}
		a.stdoutSent.Add(int64(n))
		data = data[n:]
	}
	return nil
}

func (a *fakeAgent) exec(id uint32, req agentproto.ExecRequest) error {
	if req.Cmd == "fail" {
		return a.send(id, agentproto.TypeExecFailed, agentproto.ExecFailed{
			Kind: agentproto.FailNotFound, Errno: ptr(int32(2)), ErrnoName: ptr("ENOENT"),
			Message: `spawn "fail": No such file or directory (os error 2)`, Stage: ptr("execvp"),
		})
	}
	if err := a.send(id, agentproto.TypeExecStarted, agentproto.ExecStarted{PID: 1000 + id%1000}); err != nil {
		return err
	}
	exited := func(code int32) error {
		return a.send(id, agentproto.TypeExecExited, agentproto.ExecExited{Code: code})
	}
	switch req.Cmd {
	case "echo":
		if err := a.stdout(id, []byte(strings.Join(req.Args, " ")+"\n")); err != nil {
			return err
		}
		return exited(0)
	case "stderr":
		if err := a.send(id, agentproto.TypeExecStderr, agentproto.ExecData{Data: []byte(req.Args[0])}); err != nil {
			return err
		}
		return exited(3)
	case "cat":
		a.cats[id] = true
	case "sleep":
		a.sleeping[id] = true
	case "yes":
		n, err := strconv.Atoi(req.Args[0])
		if err != nil {
			return err
		}
		if err := a.stdout(id, []byte(strings.Repeat("y", n))); err != nil {
			return err
		}
		return exited(0)
	case "hang":
		return a.stdout(id, []byte("partial"))
	case "noise":
		if err := a.send(id+12345, agentproto.TypeExecStdout, agentproto.ExecData{Data: []byte("not yours")}); err != nil {
			return err
		}
		if err := a.send(id+1, agentproto.TypeExecExited, agentproto.ExecExited{Code: 9}); err != nil {
			return err
		}
		if err := a.rawUnknown(id); err != nil {
			return err
		}
		if err := a.stdout(id, []byte("ok")); err != nil {
			return err
		}
		return exited(0)
	default:
		return exited(127)
	}
	return nil
}

// rawUnknown sends a well-framed message with a type this protocol lacks.
func (a *fakeAgent) rawUnknown(id uint32) error {
	body := []byte{0xa3, 0x61, 'v', 0x01, 0x61, 't', 0x68, 'c', 'o', 'r', 'e', '.', 'n', 'e', 'w', 0x61, 'p', 0x41, 0xa0}
	f := binary.BigEndian.AppendUint32(nil, uint32(5+len(body)))
	f = binary.BigEndian.AppendUint32(f, id)
	f = append(f, 0)
	_, err := a.conn.Write(append(f, body...))
	return err
}

func (a *fakeAgent) fsErr(id uint32, msg string) error {
	return a.send(id, agentproto.TypeFsResponse, agentproto.FsResponse{Error: &msg})
}

func (a *fakeAgent) entry(p string) (agentproto.FsEntry, bool) {
	if b, ok := a.files[p]; ok {
		return agentproto.FsEntry{Path: p, Kind: "file", Size: uint64(len(b)), Mode: 0o100644, Modified: ptr(int64(1700000000))}, true
	}
	if a.dirs[p] {
		return agentproto.FsEntry{Path: p, Kind: "dir", Size: 4096, Mode: 0o40755}, true
	}
	return agentproto.FsEntry{}, false
}

const enoent = "No such file or directory (os error 2)"

func (a *fakeAgent) fs(id uint32, op agentproto.FsOp) error {
	ok := func(data *agentproto.FsResultData) error {
		return a.send(id, agentproto.TypeFsResponse, agentproto.FsResponse{OK: true, Data: data})
	}
	switch op.Kind {
	case agentproto.FsStat:
		if op.Path == "/hang" {
			return nil
		}
		e, found := a.entry(op.Path)
		if !found {
			return a.fsErr(id, "stat: "+enoent)
		}
		return ok(&agentproto.FsResultData{Stat: &e})
	case agentproto.FsList:
		if !a.dirs[op.Path] {
			return a.fsErr(id, "read_dir: "+enoent)
		}
		var names []string
		for p := range a.files {
			if path.Dir(p) == op.Path {
				names = append(names, p)
			}
		}
		for p := range a.dirs {
			if p != "/" && path.Dir(p) == op.Path {
				names = append(names, p)
			}
		}
		sort.Strings(names)
		list := []agentproto.FsEntry{}
		for _, n := range names {
			e, _ := a.entry(n)
			list = append(list, e)
		}
		return ok(&agentproto.FsResultData{List: list})
	case agentproto.FsRead:
		b, found := a.files[op.Path]
		if !found {
			return a.fsErr(id, "open: "+enoent)
		}
		for len(b) > 0 {
			n := min(len(b), agentproto.MaxDataChunk)
			if err := a.send(id, agentproto.TypeFsData, agentproto.FsData{Data: b[:n]}); err != nil {
				return err
			}
			b = b[n:]
		}
		return ok(nil)
	case agentproto.FsWrite:
		if strings.HasPrefix(op.Path, "/ro/") {
			return a.fsErr(id, "create: Permission denied (os error 13)")
		}
		a.mu.Lock()
		a.modes[op.Path] = op.Mode
		a.mu.Unlock()
		a.writes[id] = &fakeWrite{path: op.Path}
		return nil // no reply on success
	case agentproto.FsMkdir:
		for p := op.Path; p != "/"; p = path.Dir(p) {
			a.dirs[p] = true
		}
		return ok(nil)
	case agentproto.FsRemove:
		if _, found := a.files[op.Path]; !found {
			return a.fsErr(id, "remove: "+enoent)
		}
		delete(a.files, op.Path)
		return ok(nil)
	case agentproto.FsRemoveDir:
		if !a.dirs[op.Path] {
			return a.fsErr(id, "remove_dir: "+enoent)
		}
		for p := range a.files {
			if strings.HasPrefix(p, op.Path+"/") {
				delete(a.files, p)
			}
		}
		for p := range a.dirs {
			if p == op.Path || strings.HasPrefix(p, op.Path+"/") {
				delete(a.dirs, p)
			}
		}
		return ok(nil)
	case agentproto.FsCopy, agentproto.FsRename:
		b, found := a.files[op.Src]
		if !found {
			return a.fsErr(id, strings.ToLower(string(op.Kind))+": "+enoent)
		}
		a.files[op.Dst] = append([]byte(nil), b...)
		if op.Kind == agentproto.FsRename {
			delete(a.files, op.Src)
		}
		return ok(nil)
	}
	return a.fsErr(id, "unsupported")
}

func ptr[T any](v T) *T { return &v }

// startDirect connects a Client to a fake agent over net.Pipe.
func startDirect(t *testing.T) (*Client, *fakeAgent) {
	t.Helper()
	return startDirectTB(t)
}

func startDirectTB(t testing.TB) (*Client, *fakeAgent) {
	t.Helper()
	cc, ac := net.Pipe()
	a := newFakeAgent(ac)
	go func() {
		if a.greet(false, 0, testReady) == nil {
			a.run()
			return
		}
		ac.Close()
		close(a.done)
	}()
	c, err := NewDirect(t.Context(), cc)
	if err != nil {
		t.Fatalf("NewDirect: %v", err)
	}
	t.Cleanup(func() {
		c.Close()
		<-a.done
	})
	return c, a
}
