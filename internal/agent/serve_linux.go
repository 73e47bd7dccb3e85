package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/msb-go/msb/internal/agentproto"
)

// Sizing of the bounded queues (better than 0.4.4, whose output channel was
// unbounded and whose stdin writes stalled the whole loop).
const (
	// outQueueLen is the number of frames queued for the console writer.
	// Producers (session output readers, fs readers) block when it is full,
	// which is the back-pressure towards the children.
	outQueueLen = 64
	// stdinQueueBytes bounds the stdin bytes buffered for one session whose
	// child does not read, stdinPoolBytes those of all sessions together.
	// Only past these bounds does the console reader wait for a child to
	// read (a session with an empty queue always gets its next frame in):
	// there is no flow control on the console, so the only alternatives
	// would be dropping bytes or unbounded memory. A session holds more than
	// two maximum-size frames.
	stdinQueueBytes = 8 << 20
	stdinPoolBytes  = 32 << 20
	// shutdownGrace is how long core.shutdown waits after SIGTERM.
	shutdownGrace = 2 * time.Second
	// lingerAfterExit is how long output readers wait for more data once
	// the child has exited: a background grandchild that keeps the pipe
	// open must not hold the session open forever.
	lingerAfterExit = 200 * time.Millisecond
	// teardownFlush bounds how long Serve waits for the last frames of
	// killed sessions before it closes conn.
	teardownFlush = 2 * time.Second
	// readBufSize is the read loop's buffer (see readLoop).
	readBufSize = 4 << 10
)

// capabilities are announced in core.ready by every Serve; the ones that
// depend on the caller (CapVsock) are added by capabilitiesFor.
var capabilities = []string{agentproto.CapExecPTY, agentproto.CapFs, agentproto.CapFsMeta, agentproto.CapExecRoot}

// capabilitiesFor returns the capabilities Serve announces with opts. A
// fresh slice, so that the shared one is never appended to.
func capabilitiesFor(opts ServeOptions) []string {
	caps := append([]string(nil), capabilities...)
	if opts.Upgrades != nil {
		caps = append(caps, agentproto.CapVsock)
	}
	return caps
}

// ServeOptions configures Serve. The zero value serves with an empty default
// environment, root as the default user, no heartbeat and no shutdown action.
type ServeOptions struct {
	// Env is the default environment of every exec ("K=V"); the request's
	// env overlays it.
	Env []string
	// DefaultUser is the exec user when a request names none
	// ("user|uid[:group|gid]"); "" = root.
	DefaultUser string
	// HeartbeatPath is where the heartbeat JSON is written every second
	// ("" = no heartbeat). The temporary file is the same path with a .tmp
	// extension.
	HeartbeatPath string
	// ClockPath, when set, is the host's clock file (runtime share) the
	// heartbeat loop corrects the guest's clock from every few seconds.
	ClockPath string
	// Shutdown is called on core.shutdown after the sessions have been
	// terminated. PID 1 passes sync + remount read-only + reboot.
	Shutdown func()
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
	// InitTime is the CLOCK_BOOTTIME reading when agentd started; zero
	// means the time Serve was called.
	InitTime time.Duration
	// InitStages, when set, go into core.ready (agentproto.Ready): when
	// each step of the init before Serve ended.
	InitStages []agentproto.InitStage
	// Upgrades, when not nil, delivers connections from the host's vsock
	// listener (agentproto.AgentVsockPort); Serve then advertises
	// agentproto.CapVsock. The first connection received is adopted: the
	// frame stream moves onto it and the console is no longer read from
	// nor written to (see agentproto.CapVsock). Later ones are closed.
	// The caller must only send connections that come from the host, and
	// must not block forever on a send: Serve stops receiving when it
	// returns.
	Upgrades <-chan io.ReadWriteCloser

	// Account files, for tests; "" = /etc/passwd and /etc/group.
	passwdFile, groupFile string
	// reapOrphans makes a non-PID-1 Serve reap every child, for tests
	// that make the test process a child subreaper.
	reapOrphans bool
}

// Serve speaks the agent protocol on conn: it writes core.ready, then reads
// and dispatches frames until conn reaches EOF (nil), ctx is cancelled
// (ctx.Err()), the stream is corrupt (an error) or core.shutdown has been
// handled (nil). Before returning it kills every remaining session and
// reaps it, and closes conn.
//
// Once a connection from opts.Upgrades has been adopted, it takes conn's
// place in all of the above: its end ends Serve, while conn's end no longer
// does. Both are closed before Serve returns.
func Serve(ctx context.Context, conn io.ReadWriteCloser, opts ServeOptions) error {
	s := newServer(conn, opts)
	return s.run(ctx)
}

type server struct {
	opts ServeOptions
	log  *slog.Logger
	conn io.ReadWriteCloser  // the console
	enc  *agentproto.Encoder // used by writeLoop only, after ready

	out    chan outFrame
	reaper *reaper
	stdin  *stdinPool

	// wg counts the goroutines that may send on out (sessions, fs ops).
	wg sync.WaitGroup

	// mu protects sessions and writes.
	mu       sync.Mutex
	sessions map[uint32]*session
	writes   map[uint32]*fsWrite

	// dispatchMu serialises the read loops' dispatch calls and protects
	// upgraded. dispatch was written for a single reader; during a
	// transport upgrade the console reader may still be inside dispatch
	// when the new reader starts, and adopt takes dispatchMu to wait for
	// it.
	dispatchMu sync.Mutex
	upgraded   bool // the console is no longer dispatched from

	// connMu protects upConn and closed.
	connMu sync.Mutex
	upConn io.ReadWriteCloser // the adopted upgrade connection, if any
	closed bool               // closeConn was called

	lastActivity atomic.Int64 // unix nanoseconds
}

func newServer(conn io.ReadWriteCloser, opts ServeOptions) *server {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.passwdFile == "" {
		opts.passwdFile = passwdPath
	}
	if opts.groupFile == "" {
		opts.groupFile = groupPath
	}
	return &server{
		opts:     opts,
		log:      log,
		conn:     conn,
		enc:      agentproto.NewEncoder(conn),
		out:      make(chan outFrame, outQueueLen),
		stdin:    newStdinPool(stdinPoolBytes),
		sessions: map[uint32]*session{},
		writes:   map[uint32]*fsWrite{},
	}
}

// closeConn closes the console and the adopted connection, if any; a
// connection adopted later is closed at once. It is idempotent.
func (s *server) closeConn() {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.conn.Close()
	if s.upConn != nil {
		s.upConn.Close()
	}
}

func (s *server) run(ctx context.Context) (err error) {
	initTime := s.opts.InitTime
	if initTime == 0 {
		initTime = bootTime()
	}
	s.touch()
	ready, err := agentproto.New(0, agentproto.TypeReady, agentproto.Ready{
		BootTimeNs:      0,
		InitTimeNs:      uint64(initTime),
		ReadyTimeNs:     uint64(bootTime()),
		ProtocolVersion: agentproto.ProtocolVersion,
		Capabilities:    capabilitiesFor(s.opts),
		InitStages:      s.opts.InitStages,
	})
	if err != nil {
		s.closeConn()
		return fmt.Errorf("serve: %w", err)
	}
	if err := s.enc.Encode(ready); err != nil {
		s.closeConn()
		return fmt.Errorf("serve: write ready: %w", err)
	}

	// As PID 1 every orphan of the VM is re-parented to agentd, so it must
	// reap every child, not only its sessions.
	s.reaper = startReaper(os.Getpid() == 1 || s.opts.reapOrphans)
	defer s.reaper.close()
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		s.writeLoop()
	}()
	hbStop, hbDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(hbDone)
		s.heartbeatLoop(hbStop)
	}()
	// Cancellation closes conn and kills the children, which also frees a
	// console reader waiting for a full stdin queue.
	stopCtx := context.AfterFunc(ctx, func() {
		s.closeConn()
		s.killAll(killSignal)
	})

	// The console reader ends Serve until a connection is adopted; from
	// then on the adopted connection's reader does.
	consoleDone := make(chan error, 1)
	go func() { consoleDone <- s.readLoop(s.conn, true) }()
	var upDone <-chan error
	upgrades := s.opts.Upgrades
	consoleEnded := false
serve:
	for {
		select {
		case err = <-consoleDone:
			consoleEnded = true
			if upDone == nil {
				break serve
			}
			consoleDone = nil
			if err != nil {
				s.log.Debug("console reader ended after the transport upgrade", "err", err)
			}
		case conn, ok := <-upgrades:
			if !ok {
				upgrades = nil
				continue
			}
			if upDone != nil {
				// Only the first connection is the agent channel.
				s.log.Warn("closing an extra upgrade connection")
				conn.Close()
				continue
			}
			upDone = s.adopt(conn)
		case err = <-upDone:
			break serve
		}
	}
	stopCtx()
	if ctx.Err() != nil {
		err = ctx.Err()
	}

	// Teardown: nobody is left to talk to, so the children go first. The
	// last frames get teardownFlush to reach the peer; then conn is closed
	// so that a writer blocked on a dead peer gives up.
	s.killAll(killSignal)
	s.closeWrites()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		s.wg.Wait()
	}()
	flush := time.NewTimer(teardownFlush)
	defer flush.Stop()
	select {
	case <-drained:
	case <-flush.C:
		s.closeConn()
	}
	<-drained
	close(s.out)
	select {
	case <-writerDone:
	case <-flush.C:
		s.closeConn()
		<-writerDone
	}
	s.closeConn()
	if !consoleEnded {
		// After an upgrade the console reader may still be running; it
		// has been closed. A console whose read close(2) does not wake is
		// not waited for forever: it only discards.
		select {
		case <-consoleDone:
		case <-time.After(teardownFlush):
			s.log.Warn("console reader did not end after close")
		}
	}
	close(hbStop)
	<-hbDone
	return err
}

// adopt moves the frame stream onto conn (transport upgrade) and returns the
// channel on which conn's read loop reports its end. The console reader
// dispatches nothing from here on; the writer switches at a frame boundary,
// so frames queued before still go to the console, in order.
func (s *server) adopt(conn io.ReadWriteCloser) <-chan error {
	done := make(chan error, 1)
	s.connMu.Lock()
	closed := s.closed
	if !closed {
		s.upConn = conn
	}
	s.connMu.Unlock()
	if closed {
		// Serve is tearing down (or the console writer failed): there is
		// nothing left to move.
		conn.Close()
		done <- nil
		return done
	}
	s.dispatchMu.Lock()
	s.upgraded = true
	s.dispatchMu.Unlock()
	s.log.Debug("transport upgrade: frame stream moved to the new connection")
	s.out <- outFrame{switchTo: conn}
	go func() { done <- s.readLoop(conn, false) }()
	return done
}

// errShutdown ends the read loop after core.shutdown has been handled.
var errShutdown = errors.New("shutdown")

// readLoop reads and dispatches the frames of conn until it ends. For the
// console, frames read once a connection has been adopted are discarded:
// the host promised to send nothing more there.
func (s *server) readLoop(conn io.Reader, console bool) error {
	// A small buffer: bufio reads a frame's body straight into the frame
	// once its own buffer is empty and the rest is at least its size, so
	// only the first few KiB after a header are copied twice. With 64 KiB
	// the buffer swallowed whole stdin frames, and copying them out was a
	// third of agentd's CPU in a TCG guest (256 MiB of exec stdin:
	// 62 → 77 MiB/s).
	br := bufio.NewReaderSize(conn, readBufSize)
	warned := false
	for {
		raw, err := agentproto.ReadRawFrameBulk(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			if errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// A stream socket (vsock, or a unix socket in tests) whose
			// peer closed with our frames still unread reports a reset:
			// the host is gone all the same, as with EOF.
			if errors.Is(err, syscall.ECONNRESET) {
				return nil
			}
			return fmt.Errorf("read frame: %w", err)
		}
		s.dispatchMu.Lock()
		if console && s.upgraded {
			s.dispatchMu.Unlock()
			if !warned {
				warned = true
				s.log.Warn("discarding console frames after the transport upgrade (host protocol violation)", "id", raw.ID())
			}
			agentproto.PutBulk(raw)
			continue
		}
		s.touch()
		m, err := raw.Message()
		if err != nil {
			s.dispatchMu.Unlock()
			// The frame was consumed whole, so the stream is still in
			// sync; a frame we cannot decode is skipped.
			s.log.Warn("skip undecodable frame", "id", raw.ID(), "err", err)
			continue
		}
		err = s.dispatch(m, raw)
		s.dispatchMu.Unlock()
		if m.Type == agentproto.TypeFsData {
			// fsData is done with the frame: the data is in the file.
			agentproto.PutBulk(raw)
		}
		if err != nil {
			if errors.Is(err, errShutdown) {
				return nil
			}
			return err
		}
	}
}

// dispatch handles message m, read from frame raw. An exec.stdin frame
// belongs to the session's stdin queue from here on; everything else stays
// the caller's.
func (s *server) dispatch(m agentproto.Message, raw agentproto.RawFrame) error {
	switch m.Type {
	case agentproto.TypeExecRequest:
		s.startExec(m)
	case agentproto.TypeExecStdin:
		data, err := m.Data()
		if err != nil {
			s.log.Warn("bad stdin frame", "id", m.ID, "err", err)
			return nil
		}
		if ss := s.session(m.ID); ss != nil {
			ss.stdin.push(data, raw)
		} else {
			agentproto.PutBulk(raw)
		}
	case agentproto.TypeExecResize:
		var r agentproto.ExecResize
		if err := m.Decode(&r); err != nil {
			s.log.Warn("bad resize frame", "id", m.ID, "err", err)
			return nil
		}
		if ss := s.session(m.ID); ss != nil {
			ss.resize(r.Rows, r.Cols)
		}
	case agentproto.TypeExecSignal:
		var sig agentproto.ExecSignal
		if err := m.Decode(&sig); err != nil {
			s.log.Warn("bad signal frame", "id", m.ID, "err", err)
			return nil
		}
		if ss := s.session(m.ID); ss != nil {
			ss.signal(sig.Signal)
		} else {
			// The relay signals every session of a client that left;
			// for a write that means abort (better than 0.4.4, which
			// left the file open for the id's next user).
			s.abortWrite(m.ID)
		}
	case agentproto.TypeFsRequest:
		s.startFs(m)
	case agentproto.TypeFsData:
		s.fsData(m)
	case agentproto.TypeShutdown:
		s.shutdown()
		return errShutdown
	default:
		s.log.Warn("ignore unexpected frame", "id", m.ID, "type", m.Type)
	}
	return nil
}

// send encodes payload and queues the frame for the console writer,
// blocking while the queue is full. The payload is encoded before send
// returns, so the caller may reuse its buffers.
func (s *server) send(id uint32, t agentproto.Type, payload any) {
	m, err := agentproto.New(id, t, payload)
	if err == nil {
		var f agentproto.RawFrame
		if f, err = m.Marshal(); err == nil {
			s.out <- outFrame{f: f}
			return
		}
	}
	// Only a host invariant can fail here: every payload is ours.
	s.log.Error("encode frame", "id", id, "type", t, "err", err)
}

// sendData queues a data message (exec output, fs.data) whose data sits at
// buf[DataHeadroom:DataHeadroom+n]. The frame is built in place, so buf
// belongs to the writer from here on, unless the data is small: then it is
// copied out (the caller learns through the result that it may reuse buf),
// so that a trickle of small reads does not queue a large buffer each.
func (s *server) sendData(id uint32, t agentproto.Type, buf []byte, n int) (reuse bool) {
	var f agentproto.RawFrame
	var err error
	if reuse = n < len(buf)/4; reuse {
		f, err = agentproto.DataFrame(id, t, buf[agentproto.DataHeadroom:agentproto.DataHeadroom+n])
	} else {
		f, err = agentproto.PutDataFrame(buf, id, t, n)
	}
	if err != nil {
		s.log.Error("encode frame", "id", id, "type", t, "err", err)
		return true
	}
	if reuse {
		s.out <- outFrame{f: f}
	} else {
		s.out <- outFrame{f: f, buf: buf}
	}
	return reuse
}

// outFrame is a frame queued for the console writer, with the buffer it
// lives in when the writer is to recycle it (agentproto.PutBulk). A
// non-nil switchTo carries no frame: it tells the writer to write every
// later frame to switchTo instead (transport upgrade).
type outFrame struct {
	f        agentproto.RawFrame
	buf      []byte
	switchTo io.ReadWriteCloser
}

// writeLoop is the only writer of conn, and then of the adopted connection.
// After a write error it keeps draining out so that producers never block
// on a dead console.
func (s *server) writeLoop() {
	var werr error
	for o := range s.out {
		if o.switchTo != nil {
			s.enc = agentproto.NewEncoder(o.switchTo)
			// A failed console does not doom the new stream.
			werr = nil
			continue
		}
		if werr == nil {
			if werr = s.enc.WriteRaw(o.f); werr != nil {
				s.log.Warn("console write", "err", werr)
				s.closeConn()
			}
		}
		agentproto.PutBulk(o.buf)
	}
}

func (s *server) touch() { s.lastActivity.Store(time.Now().UnixNano()) }

func (s *server) session(id uint32) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[id]
}

func (s *server) activeSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// idInUse reports whether id names a running exec or fs write session.
// Preconditions: s.mu is held.
func (s *server) idInUse(id uint32) bool {
	_, a := s.sessions[id]
	_, b := s.writes[id]
	return a || b
}

// shutdown handles core.shutdown: SIGTERM every session's process group,
// wait up to shutdownGrace, SIGKILL the rest, then call opts.Shutdown.
func (s *server) shutdown() {
	s.killAll(termSignal)
	deadline := time.After(shutdownGrace)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
wait:
	for s.activeSessions() > 0 {
		select {
		case <-deadline:
			break wait
		case <-tick.C:
		}
	}
	s.killAll(killSignal)
	s.closeWrites()
	if s.opts.Shutdown != nil {
		s.opts.Shutdown()
	}
}

func (s *server) killAll(sig int32) {
	s.mu.Lock()
	list := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		list = append(list, ss)
	}
	s.mu.Unlock()
	for _, ss := range list {
		ss.signal(sig)
	}
}
