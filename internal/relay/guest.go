package relay

// The guest side: the one reader and the one writer of the guest stream,
// and routing of guest frames to the client that owns their session.

import (
	"context"
	"errors"
	"fmt"
	"io"

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
