package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/msb-go/msb/internal/agentproto"
	"github.com/msb-go/msb/internal/launch"
)

// Relay defaults (reference §1.4 where it has a number; the queue caps are
// ours: 0.4.4 queues without bound).
const (
	DefaultClientQueueBytes  = 8 << 20
	DefaultTotalQueueBytes   = 32 << 20
	DefaultStallTimeout      = 5 * time.Second
	DefaultOrphanGrace       = 10 * time.Second
	DefaultGuestQueueFrames  = 256
	DefaultMaxClientSessions = 4096
	// maxOrphans bounds the sessions of departed clients kept only so that
	// their late output is not handed to the slot's next occupant and their
	// ids are not reused while the guest may still hold them.
	maxOrphans = 4096
	// frameOverhead is what a queued frame costs beyond its bytes (slice
	// header, allocation rounding); it is charged against the queue caps so
	// that a flood of tiny frames is bounded as well as one of big ones.
	frameOverhead = 64
)

// killSignal is what a departed client's sessions receive (reference §3.4).
// agentd treats it as an abort for an fs write session: it closes and
// removes the partial file and answers with a terminal fs.response.
const killSignal = 9

// RelayOptions configures a Relay. The zero value is usable.
type RelayOptions struct {
	// ExecLog receives the output of every exec session and the started
	// marker; nil disables the tap.
	ExecLog *launch.ExecLog
	// OnShutdown is called (from a client's goroutine) after a client's
	// core.shutdown has been queued for the guest; nil ignores it.
	OnShutdown func()
	// Logger reports client violations, lying guest frames and
	// disconnects; nil discards.
	Logger *slog.Logger

	// ClientQueueBytes caps the guest→client bytes queued for one client
	// (default 8 MiB; at least one maximal frame). TotalQueueBytes caps
	// those of all clients together (default 32 MiB; at least
	// ClientQueueBytes). Each frame is charged its length plus a small
	// fixed overhead. When a frame would exceed either cap the relay stops
	// reading from the guest (back-pressure: agentd's writers, and so the
	// guest's processes, block) until the writers make room. Frames are
	// never dropped for a connected client.
	ClientQueueBytes int
	TotalQueueBytes  int
	// StallTimeout bounds how long the guest reader waits for room for one
	// frame (default 5 s). When it passes, the client the frame is for is
	// disconnected if its own queue is the one over its cap, else the
	// client with the largest queue is; the reason is logged and the
	// client's sessions are killed. A stalled client thus holds up the
	// others for at most StallTimeout.
	StallTimeout time.Duration
	// OrphanGrace is how long the exec sessions of a departed client still
	// count as active (default 10 s): long enough for the kill to take
	// effect, short enough that a guest that never ends them cannot keep
	// the sandbox from going idle.
	OrphanGrace time.Duration
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
	if o.ClientQueueBytes <= 0 {
		o.ClientQueueBytes = DefaultClientQueueBytes
	}
	o.ClientQueueBytes = max(o.ClientQueueBytes, 4+agentproto.MaxFrameLen+frameOverhead)
	if o.TotalQueueBytes <= 0 {
		o.TotalQueueBytes = DefaultTotalQueueBytes
	}
	o.TotalQueueBytes = max(o.TotalQueueBytes, o.ClientQueueBytes)
	if o.StallTimeout <= 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	if o.OrphanGrace <= 0 {
		o.OrphanGrace = DefaultOrphanGrace
	}
	if o.GuestQueueFrames <= 0 {
		o.GuestQueueFrames = DefaultGuestQueueFrames
	}
	if o.MaxClientSessions <= 0 {
		o.MaxClientSessions = DefaultMaxClientSessions
	}
}

// Relay multiplexes up to agentproto.MaxClients socket clients onto the guest
// agent's byte stream (reference §3.4). It routes frames by their id and
// decodes CBOR to validate frames in both directions, track sessions and tap
// exec output into exec.log.
//
// Each client owns the id range slot·IDStep+1 … slot·IDStep+IDStep−1. Unlike
// the reference, the relay enforces this: a client that sends a foreign id, id
// 0 with anything but core.shutdown, a guest-only message type, flags that do
// not match the type, or a malformed frame is disconnected, and its sessions
// are killed.
//
// The guest is not trusted either. Session state follows the decoded message
// type, never the header's flag bits. A guest frame that cannot be decoded,
// has flags that do not match its type, has a host-only type, or belongs to
// no open session of a matching kind (exec or fs) is dropped and logged (at a
// bounded rate), so clients only ever see answers to what they asked.
//
// The ids of a departed client's sessions stay reserved (orphans) until the
// guest ends them: a new client is given a slot without orphans when there is
// one, and a session start on an id an orphan still holds is refused by the
// relay itself, so a new client's frames never reach a session of the old
// one.
//
// Guest output is queued per client under per-client and total byte caps;
// when a frame does not fit, the relay stops reading from the guest until it
// does (see RelayOptions.StallTimeout for the bound on that wait).
//
// Methods are safe for concurrent use.
type Relay struct {
	guest io.ReadWriter // the console; see upConn for the upgraded stream
	opts  RelayOptions
	log   *slog.Logger

	toGuest   chan agentproto.RawFrame
	tapq      chan tapItem  // exec output for exec.log; nil without ExecLog
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

	// queuedTotal is the charge of every client's queue. Only the guest
	// reader adds to it (under the client's mu), so a check followed by an
	// add cannot overshoot the cap.
	queuedTotal atomic.Int64
	// peakQueued is the high-water mark of queuedTotal (for tests and
	// diagnostics; racing updates may miss a peak by one frame).
	peakQueued atomic.Int64
	// drained (capacity 1) is signalled whenever queued bytes are freed,
	// waking the guest reader if it waits for room.
	drained chan struct{}

	// guestWarn rate-limits the log of lying guest frames. Used by the
	// guest reader that routes (under routeMu).
	guestWarn rateLimit

	// routeMu is held by a guest reader while it routes a frame. route and
	// deliver were written for a single reader; across a transport
	// upgrade the console reader may still be routing when the upgraded
	// stream's reader starts, and this keeps them from overlapping.
	routeMu sync.Mutex
	// upgraded is set by Upgrade: the console reader routes nothing from
	// then on.
	upgraded atomic.Bool
	// upgradeCh hands writeGuest the upgraded stream (capacity 1).
	upgradeCh chan io.Writer
	// consoleWritten is set once writeGuest has written a frame to the
	// console, so that Upgrade can warn that the precondition was broken.
	consoleWritten atomic.Bool

	// mu protects the fields below. Lock order: Relay.mu before client.mu.
	mu           sync.Mutex
	closed       bool
	clients      [agentproto.MaxClients]*relayClient
	sessions     map[uint32]*relaySession
	orphans      int
	slotOrphans  [agentproto.MaxClients]int // orphans per id slot
	execSessions int                        // exec sessions, orphans included
	nextLogID    uint64
	upConn       io.ReadWriteCloser // the upgraded guest stream, nil before Upgrade
	readers      int                // guest readers running; the last closes tapq
}

// relaySession is one open session (opened by a SESSION_START frame).
type relaySession struct {
	// Guarded by Relay.mu.
	owner      *relayClient // nil once the client left (an orphan)
	orphanedAt time.Time    // when owner left

	// Immutable after creation.
	exec   bool // an exec session; else an fs session
	fsRead bool // an fs Read, the only fs op the guest answers with data
	tty    bool
	logID  uint64

	// carry holds an incomplete UTF-8 sequence at the end of the last
	// stdout (0) or stderr (1) chunk, so a character split across chunks
	// is logged whole. Written by the tap goroutine only; the guest
	// reader may read it once tapPending is zero.
	carry [2][]byte
	// tapPending counts this session's items queued for the tap and not
	// yet written: the guest reader adds, the tap goroutine subtracts
	// once an item is done.
	tapPending atomic.Int32
}

// accepts reports whether a guest frame of type t belongs to a session of
// s's kind.
func (s *relaySession) accepts(t agentproto.Type) bool {
	switch t {
	case agentproto.TypeExecStarted, agentproto.TypeExecStdout, agentproto.TypeExecStderr,
		agentproto.TypeExecExited, agentproto.TypeExecFailed:
		return s.exec
	case agentproto.TypeFsData:
		// Only a Read streams file data to the host; data on any other
		// session (a Write, a Stat) is something nobody asked for.
		return s.fsRead
	case agentproto.TypeFsResponse:
		return !s.exec
	}
	return false
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
		drained:   make(chan struct{}, 1),
		sessions:  make(map[uint32]*relaySession),
		upgradeCh: make(chan io.Writer, 1),
		readers:   1,
	}
	r.wg.Add(2)
	if r.opts.ExecLog != nil {
		r.tapq = make(chan tapItem, tapQueueLen)
		r.wg.Add(1)
		go r.runTap()
	}
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

// ActiveSessions returns the number of exec sessions still open in the
// guest whose client is connected, plus those of departed clients for
// OrphanGrace after the client left: a guest that never ends a killed
// session cannot keep the sandbox from going idle.
func (r *Relay) ActiveSessions() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.execSessions
	if r.orphans == 0 {
		return n
	}
	now := time.Now()
	for _, s := range r.sessions {
		if s.exec && s.owner == nil && now.Sub(s.orphanedAt) >= r.opts.OrphanGrace {
			n--
		}
	}
	return n
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
// io.Closer) and the upgraded stream (see Upgrade), and waits for the relay's goroutines. It is idempotent.
func (r *Relay) Close() error {
	var err error
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		clients := r.clients
		up := r.upConn
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
		if up != nil {
			shutdownSocket(up)
			if uerr := up.Close(); err == nil {
				err = uerr
			}
		}
		r.wg.Wait()
	})
	if err != nil {
		return fmt.Errorf("close relay: %w", err)
	}
	return nil
}
