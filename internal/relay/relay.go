package relay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/msb-go/msb/internal/agentproto"
	"github.com/msb-go/msb/internal/launch"
)

// Relay defaults (reference §1.4 where it has a number).
const (
	DefaultClientQueueFrames = 64
	DefaultClientQueueBytes  = 64 << 20
	DefaultStallTimeout      = 5 * time.Second
	DefaultGuestQueueFrames  = 256
	DefaultMaxClientSessions = 4096
	// maxOrphans bounds the sessions of departed clients kept only so that
	// their late output is not handed to the slot's next occupant.
	maxOrphans = 4096
)

// killSignal is what a departed client's sessions receive (reference §3.4).
const killSignal = 9

// RelayOptions configures a Relay. The zero value is usable.
type RelayOptions struct {
	// ExecLog receives the output of every exec session and the started
	// marker; nil disables the tap.
	ExecLog *launch.ExecLog
	// OnShutdown is called (from a client's goroutine) after a client's
	// core.shutdown has been queued for the guest; nil ignores it.
	OnShutdown func()
	// Logger reports client violations and disconnects; nil discards.
	Logger *slog.Logger

	// ClientQueueFrames is the per-client guest→client queue length that
	// counts as full (default 64); so does an eighth of ClientQueueBytes.
	// A client whose queue stays full for StallTimeout is disconnected.
	ClientQueueFrames int
	// ClientQueueBytes is the hard per-client bound on queued bytes (default
	// 64 MiB, at least one maximal frame); reaching it disconnects the
	// client at once. Frames are never dropped for a connected client.
	// Worst-case queue memory is MaxClients × ClientQueueBytes.
	ClientQueueBytes int
	// StallTimeout defaults to 5 s.
	StallTimeout time.Duration
	// GuestQueueFrames is the host→guest queue length (default 256). When
	// it is full, client readers wait: back-pressure, not loss.
	GuestQueueFrames int
	// MaxClientSessions caps one client's open sessions (default 4096); a
	// client exceeding it is disconnected.
	MaxClientSessions int
}

func (o *RelayOptions) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ClientQueueFrames <= 0 {
		o.ClientQueueFrames = DefaultClientQueueFrames
	}
	if o.ClientQueueBytes <= 0 {
		o.ClientQueueBytes = DefaultClientQueueBytes
	}
	o.ClientQueueBytes = max(o.ClientQueueBytes, 4+agentproto.MaxFrameLen)
	if o.StallTimeout <= 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	if o.GuestQueueFrames <= 0 {
		o.GuestQueueFrames = DefaultGuestQueueFrames
	}
	if o.MaxClientSessions <= 0 {
		o.MaxClientSessions = DefaultMaxClientSessions
	}
}

// Relay multiplexes up to agentproto.MaxClients socket clients onto the guest
// agent's byte stream (reference §3.4). It routes frames by their id and flags
// and decodes CBOR only to validate client frames, track sessions and tap exec
// output into exec.log.
//
// Each client owns the id range slot·IDStep+1 … slot·IDStep+IDStep−1. Unlike
// the reference, the relay enforces this: a client that sends a foreign id, id
// 0 with anything but core.shutdown, a guest-only message type, flags that do
// not match the type, or a malformed frame is disconnected, and its sessions
// are killed. Guest output is queued per client; a client that does not keep
// up is disconnected (and logged) rather than stalling the others or losing
// frames.
//
// Methods are safe for concurrent use.
type Relay struct {
	guest io.ReadWriter
	opts  RelayOptions
	log   *slog.Logger

	toGuest   chan agentproto.RawFrame
	done      chan struct{} // closed by Close
	closeOnce sync.Once
	wg        sync.WaitGroup // every goroutine the relay started

	readyCh    chan struct{} // closed once ready and readyFrame are set
	ready      agentproto.Ready
	readyFrame agentproto.RawFrame
	startOnce  sync.Once

	guestDone chan struct{} // closed when the guest stream failed or ended
	guestOnce sync.Once
	guestErr  error // set before guestDone is closed

	// epoch and activityNs give LastActivity a monotonic clock reading.
	epoch      time.Time
	activityNs atomic.Int64

	// mu protects the fields below. Lock order: Relay.mu before client.mu.
	mu           sync.Mutex
	closed       bool
	clients      [agentproto.MaxClients]*relayClient
	sessions     map[uint32]*relaySession
	orphans      int
	execSessions int
	nextLogID    uint64
}

// relaySession is one open session (opened by a SESSION_START frame).
type relaySession struct {
	// Guarded by Relay.mu.
	owner *relayClient // nil once the client left (an orphan)

	// Immutable after creation.
	exec  bool
	tty   bool
	logID uint64

	// carry holds an incomplete UTF-8 sequence at the end of the last
	// stdout (0) or stderr (1) chunk, so a character split across chunks
	// is logged whole. Used by the guest reader goroutine only.
	carry [2][]byte
}

// NewRelay starts relaying on guest, the agent's console stream. If guest
// implements io.Closer, Close closes it (a socket is shut down first, so a
// blocked read returns); otherwise the caller must end its reads and writes
// for Close to return.
func NewRelay(guest io.ReadWriter, opts RelayOptions) *Relay {
	opts.setDefaults()
	r := &Relay{
		guest:     guest,
		opts:      opts,
		log:       opts.Logger,
		toGuest:   make(chan agentproto.RawFrame, opts.GuestQueueFrames),
		done:      make(chan struct{}),
		readyCh:   make(chan struct{}),
		guestDone: make(chan struct{}),
		epoch:     time.Now(),
		sessions:  make(map[uint32]*relaySession),
	}
	r.wg.Add(2)
	go r.readGuest()
	go r.writeGuest()
	return r
}

func killFrame(id uint32) (agentproto.RawFrame, error) {
	m, err := agentproto.New(id, agentproto.TypeExecSignal, agentproto.ExecSignal{Signal: killSignal})
	if err != nil {
		return nil, err
	}
	return m.Marshal()
}

// WaitReady waits for the guest's core.ready, discarding anything the guest
// sends before it, and writes the exec.log started marker. The raw ready frame
// is cached for client handshakes.
func (r *Relay) WaitReady(ctx context.Context) (agentproto.Ready, error) {
	select {
	case <-r.readyCh:
		// Once ready, always ready, even after Close.
	default:
		if err := r.waitReady(ctx); err != nil {
			return agentproto.Ready{}, err
		}
	}
	r.startOnce.Do(func() {
		if r.opts.ExecLog != nil {
			if err := r.opts.ExecLog.Started(); err != nil {
				r.log.Warn("exec log", "err", err)
			}
		}
	})
	return r.ready, nil
}

func (r *Relay) waitReady(ctx context.Context) error {
	select {
	case <-r.readyCh:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for agent ready: %w", ctx.Err())
	case <-r.guestDone:
		return fmt.Errorf("wait for agent ready: %w", r.guestErr)
	case <-r.done:
		return ErrRelayClosed
	}
}

// LastActivity returns when a client last sent the guest a frame (initially,
// when the relay was created). It is measured on the host clock, so idle
// timeouts do not trust the guest's.
func (r *Relay) LastActivity() time.Time {
	return r.epoch.Add(time.Duration(r.activityNs.Load()))
}

// touch records client activity now. Concurrent clients may race; the
// latest time wins.
func (r *Relay) touch() {
	now := int64(time.Since(r.epoch))
	for {
		old := r.activityNs.Load()
		if now <= old || r.activityNs.CompareAndSwap(old, now) {
			return
		}
	}
}

// ActiveSessions returns the number of exec sessions still open in the guest
// (including those of departed clients until they have exited).
func (r *Relay) ActiveSessions() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.execSessions
}

// Activity reports the relay's view of activity, for a Watcher.
func (r *Relay) Activity() (launch.Heartbeat, bool) {
	return launch.Heartbeat{Timestamp: time.Now(), ActiveSessions: r.ActiveSessions(), LastActivity: r.LastActivity()}, true
}

// Serve accepts clients on ln until ctx is done, the relay is closed, the
// guest stream ends or ln fails, and closes ln before returning. It must be
// called after WaitReady succeeded. Connected clients stay connected after
// Serve returns, until Close.
func (r *Relay) Serve(ctx context.Context, ln net.Listener) error {
	select {
	case <-r.readyCh:
	default:
		ln.Close()
		return ErrNotReady
	}
	stop := make(chan struct{})
	var watch sync.WaitGroup
	watch.Go(func() {
		select {
		case <-ctx.Done():
		case <-r.done:
		case <-r.guestDone:
		case <-stop:
		}
		ln.Close()
	})
	defer watch.Wait()
	defer close(stop)
	for {
		conn, err := ln.Accept()
		if err != nil {
			// Close also ends the guest stream, so check it first.
			select {
			case <-r.done:
				return ErrRelayClosed
			default:
			}
			select {
			case <-r.guestDone:
				return r.guestErr
			default:
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of descriptors: wait for some to free up rather than
				// giving up on every future client.
				select {
				case <-time.After(50 * time.Millisecond):
					continue
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return fmt.Errorf("relay accept: %w", err)
		}
		r.addClient(conn)
	}
}

// Close disconnects every client, closes the guest stream (if it is an
// io.Closer) and waits for the relay's goroutines. It is idempotent.
func (r *Relay) Close() error {
	var err error
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		clients := r.clients
		r.mu.Unlock()
		close(r.done)
		for _, c := range clients {
			if c != nil {
				c.kick("relay closed")
			}
		}
		if cl, ok := r.guest.(io.Closer); ok {
			shutdownSocket(r.guest)
			err = cl.Close()
		}
		r.wg.Wait()
	})
	if err != nil {
		return fmt.Errorf("close relay: %w", err)
	}
	return nil
}

// guestFailed records why the guest stream is unusable (err wraps
// ErrGuestClosed) and disconnects every client: without the guest there is
// nothing to relay.
func (r *Relay) guestFailed(err error) {
	r.guestOnce.Do(func() {
		r.guestErr = err
		close(r.guestDone)
		select {
		case <-r.done:
		default:
			r.log.Warn("relay: guest stream ended", "err", err)
		}
		r.mu.Lock()
		clients := r.clients
		r.mu.Unlock()
		for _, c := range clients {
			if c != nil {
				c.kick("guest stream ended")
			}
		}
	})
}

// readGuest reads the guest's frames: before core.ready it discards them
// (reference §1.3), afterwards it routes them to clients.
func (r *Relay) readGuest() {
	defer r.wg.Done()
	ready := false
	for {
		f, err := agentproto.ReadRawFrame(r.guest)
		if err != nil {
			// A framing error desynchronises the stream for good.
			if errors.Is(err, io.EOF) {
				r.guestFailed(ErrGuestClosed)
			} else {
				r.guestFailed(fmt.Errorf("%w: read: %w", ErrGuestClosed, err))
			}
			return
		}
		if ready {
			r.route(f)
			continue
		}
		if rd, ok := parseReady(f); ok {
			r.ready, r.readyFrame, ready = rd, f, true
			close(r.readyCh)
			continue
		}
		r.log.Debug("relay: discarding frame before ready", "id", f.ID())
	}
}

func parseReady(f agentproto.RawFrame) (agentproto.Ready, bool) {
	if f.ID() != 0 {
		return agentproto.Ready{}, false
	}
	m, err := f.Message()
	if err != nil || m.Type != agentproto.TypeReady {
		return agentproto.Ready{}, false
	}
	var rd agentproto.Ready
	if err := m.Decode(&rd); err != nil {
		return agentproto.Ready{}, false
	}
	return rd, true
}

// writeGuest is the only writer of the guest stream, so frames from
// different clients never interleave.
func (r *Relay) writeGuest() {
	defer r.wg.Done()
	for {
		select {
		case f := <-r.toGuest:
			if _, err := r.guest.Write(f); err != nil {
				r.guestFailed(fmt.Errorf("%w: write: %w", ErrGuestClosed, err))
				return
			}
		case <-r.done:
			return
		case <-r.guestDone:
			return
		}
	}
}

// Shutdown asks agentd to shut down (core.shutdown on id 0, as a client
// would send it). The sandbox process uses it to stop the guest without
// opening a socket of its own, which its seccomp filter forbids.
func (r *Relay) Shutdown(ctx context.Context) error {
	m, err := agentproto.New(0, agentproto.TypeShutdown, nil)
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	f, err := m.Marshal()
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	select {
	case <-r.done:
		return ErrRelayClosed
	default:
	}
	select {
	case r.toGuest <- f:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-r.done:
		return ErrRelayClosed
	case <-r.guestDone:
		return r.guestErr
	}
}

// sendGuest queues f for the guest, waiting while the queue is full.
func (r *Relay) sendGuest(f agentproto.RawFrame) error {
	select {
	case r.toGuest <- f:
		return nil
	case <-r.done:
		return ErrRelayClosed
	case <-r.guestDone:
		return r.guestErr
	}
}

// slotOf maps a guest frame id to its client slot (reference §3.4).
func slotOf(id uint32) int {
	return min(int(id/agentproto.IDStep), agentproto.MaxClients-1)
}

// route delivers a guest frame to the client that owns its session, or, for
// an id without a session, to the client owning the id's slot.
func (r *Relay) route(f agentproto.RawFrame) {
	id := f.ID()
	terminal := f.Flags()&agentproto.FlagTerminal != 0
	r.mu.Lock()
	var target *relayClient
	s := r.sessions[id]
	switch {
	case s != nil:
		// Nil for an orphan: its output must not reach the slot's next
		// occupant, which may reuse the same ids.
		target = s.owner
		if terminal {
			r.endSession(id, s)
		}
	case id != 0:
		target = r.clients[slotOf(id)]
	}
	r.mu.Unlock()
	if s != nil && s.exec && r.opts.ExecLog != nil {
		r.tap(s, f, terminal)
	}
	if target == nil {
		r.log.Debug("relay: dropping guest frame without a client", "id", id)
		return
	}
	target.enqueue(f)
}

// endSession forgets a session.
//
// Preconditions: r.mu is held.
func (r *Relay) endSession(id uint32, s *relaySession) {
	if r.sessions[id] == s {
		delete(r.sessions, id)
	}
	if s.owner != nil {
		delete(s.owner.active, id)
	} else {
		r.orphans--
	}
	if s.exec {
		r.execSessions--
	}
}

// tap copies exec output into exec.log.
func (r *Relay) tap(s *relaySession, f agentproto.RawFrame, terminal bool) {
	if terminal {
		for i := range s.carry {
			r.logExec(s, i, nil, true)
		}
		return
	}
	m, err := f.Message()
	if err != nil {
		return
	}
	var stream int
	switch m.Type {
	case agentproto.TypeExecStdout:
		stream = 0
	case agentproto.TypeExecStderr:
		stream = 1
	default:
		return
	}
	var d agentproto.ExecData
	if err := m.Decode(&d); err != nil {
		return
	}
	r.logExec(s, stream, d.Data, false)
}

// logExec writes data (after any carried partial character) to exec.log,
// holding back a trailing incomplete UTF-8 sequence unless flush is set.
func (r *Relay) logExec(s *relaySession, stream int, data []byte, flush bool) {
	if len(s.carry[stream]) > 0 {
		data = append(s.carry[stream], data...)
		s.carry[stream] = nil
	}
	if !flush {
		var tail []byte
		data, tail = splitUTF8Tail(data)
		if len(tail) > 0 {
			s.carry[stream] = append([]byte(nil), tail...)
		}
	}
	if len(data) == 0 {
		return
	}
	src := launch.SourceStdout
	switch {
	case s.tty:
		src = launch.SourceOutput
	case stream == 1:
		src = launch.SourceStderr
	}
	if err := r.opts.ExecLog.Write(src, s.logID, data); err != nil {
		r.log.Debug("exec log", "err", err)
	}
}

// splitUTF8Tail splits off an incomplete (but so far valid-looking) UTF-8
// sequence at the end of b.
func splitUTF8Tail(b []byte) (complete, tail []byte) {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax+1; i-- {
		c := b[i]
		if c < utf8.RuneSelf {
			return b, nil
		}
		if utf8.RuneStart(c) {
			if utf8.FullRune(b[i:]) {
				return b, nil
			}
			return b[:i], b[i:]
		}
	}
	return b, nil
}

// addClient takes a newly accepted connection into the lowest free slot, or
// closes it at once when all slots are taken (reference §3.4).
func (r *Relay) addClient(conn net.Conn) {
	r.mu.Lock()
	// guestFailed closes guestDone before it snapshots the clients under
	// r.mu, so a client added here is either refused or kicked by it.
	guestGone := false
	select {
	case <-r.guestDone:
		guestGone = true
	default:
	}
	if r.closed || guestGone {
		r.mu.Unlock()
		conn.Close()
		return
	}
	slot := -1
	for i, c := range r.clients {
		if c == nil {
			slot = i
			break
		}
	}
	if slot < 0 {
		r.mu.Unlock()
		r.log.Warn("relay: all client slots taken; closing new connection", "max", agentproto.MaxClients)
		conn.Close()
		return
	}
	c := &relayClient{
		r:      r,
		slot:   slot,
		offset: uint32(slot) * agentproto.IDStep,
		conn:   conn,
		active: make(map[uint32]struct{}),
		wake:   make(chan struct{}, 1),
		gone:   make(chan struct{}),
	}
	r.clients[slot] = c
	// Add under r.mu while !r.closed, so it happens before Close's Wait.
	r.wg.Add(2)
	r.mu.Unlock()
	r.log.Debug("relay: client connected", "slot", slot)
	go c.readLoop()
	go c.writeLoop()
}

// relayClient is one connected socket client.
type relayClient struct {
	r      *Relay
	slot   int
	offset uint32
	conn   net.Conn

	// active is the set of session ids this client opened. Guarded by
	// Relay.mu.
	active map[uint32]struct{}

	// mu protects the guest→client queue and its state.
	mu        sync.Mutex
	queue     []agentproto.RawFrame // the head is being written
	queued    int                   // bytes in queue
	fullGen   int                   // bumped each time the queue becomes full
	fullTimer *time.Timer           // pending stall check while full
	dead      bool
	reason    string // why the client was disconnected

	wake     chan struct{} // capacity 1: queue is non-empty
	gone     chan struct{} // closed by kick
	goneOnce sync.Once
}

// kick disconnects the client: it closes the connection, which ends both of
// its goroutines; readLoop then frees the slot and kills the sessions. kick
// never blocks, so the guest reader may call it.
func (c *relayClient) kick(reason string) {
	c.goneOnce.Do(func() {
		c.mu.Lock()
		c.dead = true
		c.queue, c.queued = nil, 0
		if c.fullTimer != nil {
			c.fullTimer.Stop()
			c.fullTimer = nil
		}
		c.reason = reason
		c.mu.Unlock()
		close(c.gone)
		c.conn.Close()
	})
}

// enqueue queues a guest frame for the client. It never blocks: a client
// that cannot take it is disconnected instead.
func (c *relayClient) enqueue(f agentproto.RawFrame) {
	o := &c.r.opts
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return
	}
	if c.queued+len(f) > o.ClientQueueBytes {
		queued := c.queued
		c.mu.Unlock()
		c.r.log.Warn("relay: disconnecting client: output queue over its byte limit; killing its sessions",
			"slot", c.slot, "queued_bytes", queued, "limit", o.ClientQueueBytes)
		c.kick("output queue over byte limit")
		return
	}
	c.queue = append(c.queue, f)
	c.queued += len(f)
	if c.full() && c.fullTimer == nil {
		c.fullGen++
		gen := c.fullGen
		c.fullTimer = time.AfterFunc(o.StallTimeout, func() { c.stalled(gen) })
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// full reports whether the queue counts as full for the stall timeout.
//
// Preconditions: c.mu is held.
func (c *relayClient) full() bool {
	o := &c.r.opts
	return len(c.queue) >= o.ClientQueueFrames || c.queued >= o.ClientQueueBytes/8
}

// stalled disconnects the client if its queue has stayed full since
// generation gen began.
func (c *relayClient) stalled(gen int) {
	c.mu.Lock()
	still := !c.dead && c.fullGen == gen && c.fullTimer != nil && c.full()
	n := len(c.queue)
	c.mu.Unlock()
	if !still {
		return
	}
	c.r.log.Warn("relay: disconnecting client: output queue full too long; killing its sessions",
		"slot", c.slot, "queued_frames", n, "stall_timeout", c.r.opts.StallTimeout)
	c.kick("output queue full too long")
}

// writeLoop writes the handshake, then queued guest frames, to the client.
func (c *relayClient) writeLoop() {
	defer c.r.wg.Done()
	hs := make([]byte, 4, 4+len(c.r.readyFrame))
	binary.BigEndian.PutUint32(hs, c.offset)
	hs = append(hs, c.r.readyFrame...)
	if _, err := c.conn.Write(hs); err != nil {
		c.kick("handshake write failed")
		return
	}
	for {
		c.mu.Lock()
		var f agentproto.RawFrame
		if len(c.queue) > 0 {
			f = c.queue[0]
		}
		c.mu.Unlock()
		if f == nil {
			select {
			case <-c.wake:
				continue
			case <-c.gone:
				return
			}
		}
		if _, err := c.conn.Write(f); err != nil {
			c.kick("write failed")
			return
		}
		c.mu.Lock()
		if !c.dead && len(c.queue) > 0 {
			c.queue[0] = nil
			c.queue = c.queue[1:]
			c.queued -= len(f)
			if len(c.queue) == 0 {
				c.queue = nil
			}
			if !c.full() && c.fullTimer != nil {
				c.fullTimer.Stop()
				c.fullTimer = nil
			}
		}
		c.mu.Unlock()
	}
}

// readLoop forwards the client's frames to the guest until the client leaves
// or misbehaves, then cleans up after it.
func (c *relayClient) readLoop() {
	defer c.r.wg.Done()
	defer c.cleanup()
	for {
		f, err := agentproto.ReadRawFrame(c.conn)
		if err != nil {
			select {
			case <-c.gone:
			default:
				if !errors.Is(err, io.EOF) {
					c.violation("unreadable frame", err)
				}
				c.kick("disconnected")
			}
			return
		}
		if err := c.forward(f); err != nil {
			return
		}
	}
}

// errViolation marks a client protocol violation.
var errViolation = errors.New("client protocol violation")

func (c *relayClient) violation(what string, err error) {
	c.r.log.Warn("relay: disconnecting client: protocol violation; killing its sessions",
		"slot", c.slot, "violation", what, "err", err)
	c.kick(what)
}

// hostTypes are the message types a client may send.
var hostTypes = map[agentproto.Type]bool{
	agentproto.TypeShutdown:    true,
	agentproto.TypeExecRequest: true,
	agentproto.TypeExecStdin:   true,
	agentproto.TypeExecResize:  true,
	agentproto.TypeExecSignal:  true,
	agentproto.TypeFsRequest:   true,
	agentproto.TypeFsData:      true,
}

// inRange reports whether id lies in the client's own range.
func (c *relayClient) inRange(id uint32) bool {
	return id > c.offset && id-c.offset < agentproto.IDStep
}

// forward validates one client frame, updates session tracking and queues it
// for the guest. A non-nil error means the client was disconnected.
func (c *relayClient) forward(f agentproto.RawFrame) error {
	r := c.r
	m, err := f.Message()
	if err != nil {
		c.violation("undecodable frame", err)
		return errViolation
	}
	id := f.ID()
	switch {
	case !hostTypes[m.Type]:
		c.violation("guest-only message type", fmt.Errorf("%s", m.Type))
		return errViolation
	case f.Flags() != m.Type.Flags():
		c.violation("flags do not match type", fmt.Errorf("%s with flags %#x", m.Type, f.Flags()))
		return errViolation
	case (id == 0) != (m.Type == agentproto.TypeShutdown):
		c.violation("id 0 is only for core.shutdown", fmt.Errorf("%s with id %d", m.Type, id))
		return errViolation
	case id != 0 && !c.inRange(id):
		c.violation("id outside the client's range", fmt.Errorf("id %d, range %d-%d", id, c.offset+1, c.offset+agentproto.IDStep-1))
		return errViolation
	}
	if f.Flags()&agentproto.FlagSessionStart != 0 {
		if err := c.startSession(id, m); err != nil {
			c.violation("bad session start", err)
			return errViolation
		}
	}
	if err := r.sendGuest(f); err != nil {
		c.kick("guest unavailable")
		return err
	}
	r.touch()
	if m.Type == agentproto.TypeShutdown && r.opts.OnShutdown != nil {
		r.opts.OnShutdown()
	}
	return nil
}

// startSession records a session the client opens.
func (c *relayClient) startSession(id uint32, m agentproto.Message) error {
	r := c.r
	s := &relaySession{owner: c}
	if m.Type == agentproto.TypeExecRequest {
		var req agentproto.ExecRequest
		if err := m.Decode(&req); err != nil {
			return err
		}
		s.exec, s.tty = true, req.TTY
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old := r.sessions[id]; old != nil {
		// An id reused while its session is open, by this client or by
		// the slot's previous occupant: the new session replaces it.
		r.endSession(id, old)
	}
	if len(c.active) >= r.opts.MaxClientSessions {
		return fmt.Errorf("more than %d open sessions", r.opts.MaxClientSessions)
	}
	if s.exec {
		r.nextLogID++
		s.logID = r.nextLogID
		r.execSessions++
	}
	r.sessions[id] = s
	c.active[id] = struct{}{}
	return nil
}

// cleanup kills the client's sessions and then frees its slot. The kills are
// queued before the slot can be reused, so they cannot hit a new occupant's
// sessions with the same ids. The sessions stay tracked as orphans until the
// guest ends them.
func (c *relayClient) cleanup() {
	r := c.r
	r.mu.Lock()
	ids := make([]uint32, 0, len(c.active))
	for id := range c.active {
		ids = append(ids, id)
		if s := r.sessions[id]; s != nil && s.owner == c {
			s.owner = nil
			r.orphans++
		}
	}
	c.active = map[uint32]struct{}{}
	r.trimOrphans()
	r.mu.Unlock()
	if len(ids) > 0 {
		r.log.Info("relay: client left; killing its sessions", "slot", c.slot, "sessions", len(ids), "reason", c.reason)
	}
	for _, id := range ids {
		f, err := killFrame(id)
		if err != nil {
			r.log.Error("relay: encode kill", "id", id, "err", err)
			continue
		}
		if r.sendGuest(f) != nil {
			break
		}
	}
	r.mu.Lock()
	if r.clients[c.slot] == c {
		r.clients[c.slot] = nil
	}
	r.mu.Unlock()
}

// trimOrphans forgets orphans beyond maxOrphans (sessions the guest never
// ended, such as abandoned fs writes).
//
// Preconditions: r.mu is held.
func (r *Relay) trimOrphans() {
	if r.orphans <= maxOrphans {
		return
	}
	for id, s := range r.sessions {
		if s.owner == nil {
			r.endSession(id, s)
			if r.orphans <= maxOrphans {
				return
			}
		}
	}
}
