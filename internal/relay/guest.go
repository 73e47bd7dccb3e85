package relay

// The guest side: the one reader and the one writer of the guest stream,
// and routing of guest frames to the client that owns their session.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/msb-go/msb/internal/agentproto"
)

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

// readGuest reads the console's frames: before core.ready it discards them
// (reference §1.3), afterwards it routes them to clients. After Upgrade it
// discards them (the agent writes nothing more there) and its end no longer
// ends the guest stream.
func (r *Relay) readGuest() {
	defer r.wg.Done()
	ready := false
	discarded := false
	for {
		// Bulk frames come from the pool; the client writer recycles
		// them once written (clientConn.writeLoop).
		f, err := agentproto.ReadRawFrameBulk(r.guest)
		if err != nil {
			if r.readerDone() {
				r.log.Debug("relay: console ended after the transport upgrade", "err", err)
				return
			}
			r.readFailed(err)
			return
		}
		if ready {
			r.routeMu.Lock()
			if r.upgraded.Load() {
				r.routeMu.Unlock()
				if !discarded {
					discarded = true
					r.log.Debug("relay: discarding console frames after the transport upgrade", "id", f.ID())
				}
				agentproto.PutBulk(f)
				continue
			}
			r.route(f)
			r.routeMu.Unlock()
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

// readUpgraded reads the upgraded stream's frames and routes them; its end
// is the guest stream's end.
func (r *Relay) readUpgraded(conn io.Reader) {
	defer r.wg.Done()
	for {
		f, err := agentproto.ReadRawFrameBulk(conn)
		if err != nil {
			r.readerDone()
			r.readFailed(err)
			return
		}
		r.routeMu.Lock()
		r.route(f)
		r.routeMu.Unlock()
	}
}

// readFailed ends the guest stream after its reader's error err.
func (r *Relay) readFailed(err error) {
	// A framing error desynchronises the stream for good.
	if errors.Is(err, io.EOF) {
		r.guestFailed(ErrGuestClosed)
	} else {
		r.guestFailed(fmt.Errorf("%w: read: %w", ErrGuestClosed, err))
	}
}

// readerDone records that a guest reader ended and reports whether the
// relay had been upgraded by then. The last reader closes tapq: the readers
// are its only producers.
func (r *Relay) readerDone() (upgraded bool) {
	r.mu.Lock()
	r.readers--
	last := r.readers == 0
	upgraded = r.upConn != nil
	r.mu.Unlock()
	if last && r.tapq != nil {
		close(r.tapq)
	}
	return upgraded
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
// different clients never interleave. After Upgrade it writes to the
// upgraded stream; the switch is checked before every frame, so every frame
// not yet written when Upgrade returns goes to the new stream, in order.
func (r *Relay) writeGuest() {
	defer r.wg.Done()
	var w io.Writer = r.guest
	console := true
	for {
		select {
		case w = <-r.upgradeCh:
			console = false
			continue
		default:
		}
		select {
		case w = <-r.upgradeCh:
			console = false
		case f := <-r.toGuest:
			if console {
				r.consoleWritten.Store(true)
			}
			if _, err := w.Write(f); err != nil {
				r.guestFailed(fmt.Errorf("%w: write: %w", ErrGuestClosed, err))
				return
			}
			// The writer is a client frame's last user.
			agentproto.PutBulk(f)
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

// guestTypes are the message types the guest may send once ready.
var guestTypes = map[agentproto.Type]bool{
	agentproto.TypeExecStarted: true,
	agentproto.TypeExecStdout:  true,
	agentproto.TypeExecStderr:  true,
	agentproto.TypeExecExited:  true,
	agentproto.TypeExecFailed:  true,
	agentproto.TypeFsData:      true,
	agentproto.TypeFsResponse:  true,
}

// route delivers a guest frame to the client that owns its session. The
// session ends on a frame whose decoded type is terminal; the header's flags
// must agree with the type or the frame is dropped, so a guest cannot end a
// session (or keep it open) by setting or omitting flag bits. Frames for ids
// without an open session of the right kind are dropped: clients only get
// answers to what they asked.
func (r *Relay) route(f agentproto.RawFrame) {
	id := f.ID()
	m, err := f.Message()
	switch {
	case err != nil:
		r.guestViolation("undecodable frame", id, err)
		return
	case !guestTypes[m.Type]:
		r.guestViolation("unexpected message type", id, fmt.Errorf("%s", m.Type))
		return
	case f.Flags() != m.Type.Flags():
		r.guestViolation("flags do not match type", id, fmt.Errorf("%s with flags %#x", m.Type, f.Flags()))
		return
	}
	terminal := m.Type.Flags()&agentproto.FlagTerminal != 0
	r.mu.Lock()
	s := r.sessions[id]
	if s == nil || !s.accepts(m.Type) {
		r.mu.Unlock()
		if s == nil {
			r.guestViolation("frame for no open session", id, fmt.Errorf("%s", m.Type))
		} else {
			r.guestViolation("message type does not match the session", id, fmt.Errorf("%s", m.Type))
		}
		return
	}
	// Nil for an orphan: its output must not reach the slot's next
	// occupant.
	target := s.owner
	if terminal {
		r.endSession(id, s)
	}
	r.mu.Unlock()
	var shared *sharedFrame
	if s.exec && r.tapq != nil {
		shared = r.queueTap(s, f, m, terminal)
	}
	if target == nil {
		r.log.Debug("relay: dropping output of a departed client's session", "id", id)
		shared.release()
		return
	}
	if !r.deliver(target, f, shared) {
		shared.release()
	}
}

// guestViolation logs a dropped guest frame, at most 10 times a second:
// a lying guest must not be able to flood the host's log either.
func (r *Relay) guestViolation(what string, id uint32, err error) {
	if n, ok := r.guestWarn.allow(time.Now()); ok {
		r.log.Warn("relay: dropping guest frame", "violation", what, "id", id, "err", err, "suppressed", n)
	}
}

// rateLimit allows guestWarnBurst events per guestWarnEvery window (a window
// starts with the first event after the last one ended) and counts the ones
// it suppressed, for the next event it allows. Not safe for concurrent use.
type rateLimit struct {
	last       time.Time
	burst      int
	suppressed int
}

const (
	guestWarnBurst = 10
	guestWarnEvery = time.Second
)

// allow reports whether to log an event now and how many were suppressed
// since the last one logged.
func (l *rateLimit) allow(now time.Time) (suppressed int, ok bool) {
	if now.Sub(l.last) >= guestWarnEvery {
		l.burst = 0
	}
	if l.burst >= guestWarnBurst {
		l.suppressed++
		return 0, false
	}
	if l.burst == 0 {
		l.last = now
	}
	l.burst++
	n := l.suppressed
	l.suppressed = 0
	return n, true
}

// deliver queues f for c, waiting while c's queue or the total is at its
// cap: while it waits the guest is not read, which is the back-pressure. A
// wait longer than StallTimeout disconnects the client that holds it up.
// It reports whether f was queued; shared, if not nil, goes with it to the
// client's writer.
func (r *Relay) deliver(c *relayClient, f agentproto.RawFrame, shared *sharedFrame) bool {
	cost := len(f) + frameOverhead
	var timeout <-chan time.Time
	for {
		ok, gone := c.tryEnqueue(f, shared, cost)
		if ok || gone {
			return ok
		}
		if timeout == nil {
			t := time.NewTimer(r.opts.StallTimeout)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-r.drained:
		case <-c.gone:
			return false
		case <-r.done:
			return false
		case <-timeout:
			r.unstall(c, cost)
			timeout = nil
		}
	}
}

// unstall disconnects the client that kept the guest reader waiting for
// room for a frame of cost bytes for c: c itself if its own queue is over
// its cap, else the client with the largest queue.
func (r *Relay) unstall(c *relayClient, cost int) {
	o := &r.opts
	c.mu.Lock()
	own := c.queued+cost > o.ClientQueueBytes
	queued := c.queued
	c.mu.Unlock()
	if own {
		r.log.Warn("relay: disconnecting client: its output queue did not drain within the stall timeout; killing its sessions",
			"slot", c.slot, "queued_bytes", queued, "limit", o.ClientQueueBytes, "stall_timeout", o.StallTimeout)
		c.kick("output queue did not drain")
		return
	}
	r.mu.Lock()
	clients := r.clients
	r.mu.Unlock()
	var worst *relayClient
	worstQueued := 0
	for _, o := range clients {
		if o == nil {
			continue
		}
		o.mu.Lock()
		q := o.queued
		o.mu.Unlock()
		if q > worstQueued {
			worst, worstQueued = o, q
		}
	}
	if worst == nil {
		return
	}
	r.log.Warn("relay: disconnecting client: total output queue did not drain within the stall timeout and this client's queue is the largest; killing its sessions",
		"slot", worst.slot, "queued_bytes", worstQueued, "total_limit", o.TotalQueueBytes, "stall_timeout", o.StallTimeout)
	worst.kick("total output queue did not drain")
}

// signalDrained wakes the guest reader if it waits for queue room.
func (r *Relay) signalDrained() {
	select {
	case r.drained <- struct{}{}:
	default:
	}
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
		r.slotOrphans[slotOf(id)]--
	}
	if s.exec {
		r.execSessions--
	}
}
