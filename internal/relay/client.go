package relay

// The client side: one reader and one bounded writer per socket client, id
// range checks, session bookkeeping and cleanup when a client leaves.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/msb-go/msb/internal/agentproto"
)

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
	// The lowest free slot whose ids the guest no longer holds; failing
	// that, the lowest free slot (the orphans' ids stay refused, see
	// forward).
	slot, fallback := -1, -1
	for i, c := range r.clients {
		if c != nil {
			continue
		}
		if fallback < 0 {
			fallback = i
		}
		if r.slotOrphans[i] == 0 {
			slot = i
			break
		}
	}
	if slot < 0 && fallback >= 0 {
		slot = fallback
		r.log.Info("relay: every free slot has sessions of a departed client open in the guest; their ids stay reserved",
			"slot", slot, "orphans", r.slotOrphans[slot])
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
		raw:    rawConn(conn),
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
	raw    syscall.RawConn // conn's descriptor, for tryEnqueue's direct write; nil if none

	// active is the set of session ids this client opened. Guarded by
	// Relay.mu.
	active map[uint32]struct{}

	// mu protects the guest→client queue and its state.
	mu     sync.Mutex
	queue  []queuedFrame // the head is being written
	queued int           // charge of queue (bytes + overhead)
	dead   bool
	reason string // why the client was disconnected
	// greeted is set once the writer has sent the handshake: frames may
	// be written directly from then on.
	greeted bool

	wake     chan struct{} // capacity 1: queue is non-empty
	gone     chan struct{} // closed by kick
	goneOnce sync.Once
}

// queuedFrame is a guest frame queued for a client; shared is set when the
// exec.log tap reads the frame too (see sharedFrame).
type queuedFrame struct {
	f      agentproto.RawFrame
	shared *sharedFrame
	off    int // bytes of f already written (by tryEnqueue's direct write)
}

// done gives the frame back once it is written: to the exec.log tap if it
// shares it, else to the pool.
func (q queuedFrame) done() {
	if q.shared != nil {
		q.shared.release()
	} else {
		agentproto.PutBulk(q.f)
	}
}

// kick disconnects the client: it closes the connection, which ends both of
// its goroutines; readLoop then frees the slot and kills the sessions. kick
// never blocks, so the guest reader may call it.
func (c *relayClient) kick(reason string) {
	c.goneOnce.Do(func() {
		c.mu.Lock()
		c.dead = true
		c.r.queuedTotal.Add(-int64(c.queued))
		c.queue, c.queued = nil, 0
		c.reason = reason
		c.mu.Unlock()
		c.r.signalDrained()
		close(c.gone)
		c.conn.Close()
	})
}

// directWriteMax is the largest frame tryEnqueue writes itself: control
// frames and small output, whose latency matters more than overlap.
const directWriteMax = 16 << 10

// tryEnqueue queues a frame of the given charge for the client if it fits
// under the per-client and total caps; a small frame for an idle client is
// written straight away instead, as far as the socket takes it. gone reports a disconnected client
// (the frame is dropped). The guest reader calls it, and a client's own
// reader for the relay's refusals (see refuseHeld); the caps can thus be
// overshot by at most one refusal (a few hundred bytes) per client.
func (c *relayClient) tryEnqueue(f agentproto.RawFrame, shared *sharedFrame, cost int) (ok, gone bool) {
	o := &c.r.opts
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return false, true
	}
	total := c.r.queuedTotal.Load()
	if (c.queued > 0 && c.queued+cost > o.ClientQueueBytes) || (total > 0 && total+int64(cost) > int64(o.TotalQueueBytes)) {
		c.mu.Unlock()
		return false, false
	}
	off := 0
	if len(c.queue) == 0 && c.greeted && c.raw != nil && len(f) <= directWriteMax {
		// Nothing is queued, so the writer is idle: write the frame
		// from here, without waking the writer goroutine and waiting
		// for it to run (~40 µs of every exec round trip on a 2-core
		// machine). Only as much as the socket takes without blocking,
		// so a slow client still stalls no one but itself; the rest is
		// queued. c.mu, held, keeps the writer and the other caller
		// (refuseHeld) out. Bulk frames still go through the writer, so
		// that copying one to the socket overlaps reading the next.
		n, err := writeNow(c.raw, f)
		if err != nil {
			c.mu.Unlock()
			c.kick("write failed")
			return false, true
		}
		if n == len(f) {
			c.mu.Unlock()
			queuedFrame{f: f, shared: shared}.done()
			return true, false
		}
		off = n
	}
	c.queue = append(c.queue, queuedFrame{f: f, shared: shared, off: off})
	c.queued += cost
	if t := c.r.queuedTotal.Add(int64(cost)); t > c.r.peakQueued.Load() {
		c.r.peakQueued.Store(t)
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return true, false
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
	c.mu.Lock()
	c.greeted = true
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var q queuedFrame
		if len(c.queue) > 0 {
			q = c.queue[0]
		}
		c.mu.Unlock()
		f := q.f
		if f == nil {
			select {
			case <-c.wake:
				continue
			case <-c.gone:
				return
			}
		}
		if _, err := c.conn.Write(f[q.off:]); err != nil {
			c.kick("write failed")
			return
		}
		c.mu.Lock()
		if !c.dead && len(c.queue) > 0 {
			c.queue[0] = queuedFrame{}
			c.queue = c.queue[1:]
			cost := len(f) + frameOverhead
			c.queued -= cost
			c.r.queuedTotal.Add(-int64(cost))
			if len(c.queue) == 0 {
				c.queue = nil
			}
		}
		c.mu.Unlock()
		// Written and out of the queue: the writer is done with f. An
		// exec output frame may still be the tap's to log.
		q.done()
		c.r.signalDrained()
	}
}

// readLoop forwards the client's frames to the guest until the client leaves
// or misbehaves, then cleans up after it.
func (c *relayClient) readLoop() {
	defer c.r.wg.Done()
	defer c.cleanup()
	for {
		f, err := agentproto.ReadRawFrameBulk(c.conn)
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
		held, err := c.startSession(id, m)
		if err != nil {
			c.violation("bad session start", err)
			return errViolation
		}
		if held {
			return c.refuseHeld(id, m.Type)
		}
	} else if c.heldByOrphan(id) {
		// A frame for a session the guest still holds for a departed
		// client: it was not this client's, so it must not reach it
		// (the session start was refused, see refuseHeld).
		r.log.Debug("relay: dropping client frame for an id a departed client still holds", "slot", c.slot, "id", id, "type", m.Type)
		return nil
	}
	// Before the send: once the frame is queued the guest may answer
	// before this goroutine runs again, and whoever sees the answer must
	// see the activity too.
	r.touch()
	if err := r.sendGuest(f); err != nil {
		c.kick("guest unavailable")
		return err
	}
	if m.Type == agentproto.TypeShutdown && r.opts.OnShutdown != nil {
		r.opts.OnShutdown()
	}
	return nil
}

// startSession records a session the client opens. held reports an id
// whose session is still open in the guest (a departed client's, or this
// client's own); nothing is recorded then.
func (c *relayClient) startSession(id uint32, m agentproto.Message) (held bool, err error) {
	r := c.r
	s := &relaySession{owner: c}
	if m.Type == agentproto.TypeExecRequest {
		var req agentproto.ExecRequest
		if err := m.Decode(&req); err != nil {
			return false, err
		}
		s.exec, s.tty = true, req.TTY
	} else {
		var req agentproto.FsRequest
		if err := m.Decode(&req); err != nil {
			return false, err
		}
		s.fsRead = req.Op.Kind == agentproto.FsRead
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sessions[id] != nil {
		// Still open in the guest, for a departed client or for this
		// one: replacing it would hand the new session's frames to the
		// old one in the guest (and leave the old one unaborted when the
		// client leaves).
		return true, nil
	}
	if len(c.active) >= r.opts.MaxClientSessions {
		return false, fmt.Errorf("more than %d open sessions", r.opts.MaxClientSessions)
	}
	if s.exec {
		r.nextLogID++
		s.logID = r.nextLogID
		r.execSessions++
	}
	r.sessions[id] = s
	c.active[id] = struct{}{}
	return false, nil
}

// heldByOrphan reports whether id belongs to a session a departed client
// left open in the guest.
func (c *relayClient) heldByOrphan(id uint32) bool {
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	s := c.r.sessions[id]
	return s != nil && s.owner != c
}

// refuseHeld answers a session start on an id whose session is still open
// with the terminal error the guest would give, without involving the guest.
// The client stays connected: agentclient numbers its sessions from the
// start of its range, so it cannot know about a departed client's.
func (c *relayClient) refuseHeld(id uint32, t agentproto.Type) error {
	r := c.r
	msg := fmt.Sprintf("session id %d is still held by an open session (of a departed client, or this client's own); retry with another id", id)
	r.log.Info("relay: refusing a session start on an id whose session is still open", "slot", c.slot, "id", id)
	var (
		m   agentproto.Message
		err error
	)
	if t == agentproto.TypeExecRequest {
		m, err = agentproto.New(id, agentproto.TypeExecFailed, agentproto.ExecFailed{Kind: agentproto.FailOther, Message: msg})
	} else {
		m, err = agentproto.New(id, agentproto.TypeFsResponse, agentproto.FsResponse{Error: &msg})
	}
	if err != nil {
		return err
	}
	f, err := m.Marshal()
	if err != nil {
		return err
	}
	// The client's own reader goroutine waits here, so a client that does
	// not read its answers slows only itself.
	for {
		ok, gone := c.tryEnqueue(f, nil, len(f)+frameOverhead)
		if ok {
			return nil
		}
		if gone {
			return ErrRelayClosed
		}
		select {
		case <-c.gone:
			return ErrRelayClosed
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// cleanup kills the client's sessions and then frees its slot. The kills are
// queued before the slot can be reused, so they cannot hit a new occupant's
// sessions with the same ids. The sessions stay tracked as orphans until the
// guest ends them.
func (c *relayClient) cleanup() {
	r := c.r
	r.mu.Lock()
	ids := make([]uint32, 0, len(c.active))
	now := time.Now()
	for id := range c.active {
		ids = append(ids, id)
		if s := r.sessions[id]; s != nil && s.owner == c {
			s.owner, s.orphanedAt = nil, now
			r.orphans++
			r.slotOrphans[c.slot]++
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
