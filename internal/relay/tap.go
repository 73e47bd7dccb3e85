package relay

// The tap: exec session output copied into exec.log as it passes.

import (
	"sync/atomic"
	"unicode/utf8"

	"github.com/msb-go/msb/internal/agentproto"
	"github.com/msb-go/msb/internal/launch"
)

// The tap runs in a goroutine of its own, fed by the guest reader through
// a short queue: formatting and writing exec.log costs about as much CPU as
// the rest of the relay's work on exec output, and done inline it stalled
// reading the guest for every frame. The reader waits for the tap at the
// end of each exec session (and when the queue is full), so exec.log holds
// all of a session's output before its client learns that it ended.

// tapQueueLen is the number of frames queued for the tap: exec output
// frames are at most MaxExecChunk bytes, so about 4 MiB.
const tapQueueLen = 16

// tapItem is one exec output frame, or a session's end, for the tap.
type tapItem struct {
	s        *relaySession
	m        agentproto.Message
	shared   *sharedFrame // the pooled frame m lives in, released once written
	terminal bool
	done     chan struct{} // closed once a terminal item is written
}

// sharedFrame is a pooled exec output frame (agentproto.IsBulk) that the
// client writer and the tap both read: the last of them to finish with it
// gives it back to the pool. It replaced a pooled copy of every such frame
// for the tap, which cost about 5% of a bulk stdout's CPU on the host path.
// Neither user writes to the frame.
type sharedFrame struct {
	f    agentproto.RawFrame
	refs atomic.Int32
}

// release drops one reference to the frame and recycles it with the last.
// A nil *sharedFrame is a frame nobody shares, and releasing it does nothing.
// A reference that is never released (a client's queue dropped when it is
// disconnected) leaves the frame to the GC.
func (sf *sharedFrame) release() {
	if sf != nil && sf.refs.Add(-1) == 0 {
		agentproto.PutBulk(sf.f)
	}
}

// runTap writes queued exec output to exec.log until the guest reader
// closes the queue.
func (r *Relay) runTap() {
	defer r.wg.Done()
	for it := range r.tapq {
		r.tap(it.s, it.m, it.terminal)
		it.shared.release()
		it.s.tapPending.Add(-1)
		if it.done != nil {
			close(it.done)
		}
	}
}

// queueTap hands exec frame f (decoded as m) to the tap, waiting while the
// queue is full and, for a session's last frame, until it is written.
// Called by the guest reader only. If f lives in a pooled buffer (which the
// client writer gives back once the client has it, maybe before the tap is
// done), it returns the frame's share for the client writer: the caller
// passes it on with f, or releases it if f goes to no client.
func (r *Relay) queueTap(s *relaySession, f agentproto.RawFrame, m agentproto.Message, terminal bool) *sharedFrame {
	switch {
	case m.Type == agentproto.TypeExecStdout || m.Type == agentproto.TypeExecStderr:
	case !terminal:
		// core.exec.started: nothing to log.
		return nil
	case s.tapPending.Load() == 0 && len(s.carry[0]) == 0 && len(s.carry[1]) == 0:
		// The tap has written all of this session's output and holds
		// back no partial character: exec.log is complete already, and
		// the exit goes to the client without a hand-off to the tap and
		// back (~200 µs of an exec round trip). The load orders the
		// tap's last carry write before these reads.
		return nil
	}
	it := tapItem{s: s, m: m, terminal: terminal}
	s.tapPending.Add(1)
	if agentproto.IsBulk(f) {
		it.shared = &sharedFrame{f: f}
		it.shared.refs.Store(2)
	}
	if terminal {
		it.done = make(chan struct{})
	}
	r.tapq <- it
	if it.done != nil {
		<-it.done
	}
	return it.shared
}

// tap copies exec output (m, already decoded by route) into exec.log.
// Called by the tap goroutine only: it alone touches the sessions' carry.
func (r *Relay) tap(s *relaySession, m agentproto.Message, terminal bool) {
	if terminal {
		for i := range s.carry {
			r.logExec(s, i, nil, true)
		}
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
	data, err := m.Data()
	if err != nil {
		return
	}
	r.logExec(s, stream, data, false)
}

// logExec writes data (after any carried partial character) to exec.log,
// holding back a trailing incomplete UTF-8 sequence unless flush is set.
func (r *Relay) logExec(s *relaySession, stream int, data []byte, flush bool) {
	head := s.carry[stream]
	if len(data) < utf8.UTFMax-1 && len(head) > 0 {
		// The held-back sequence may end inside data: join the few
		// bytes and look at them whole.
		var buf [2 * utf8.UTFMax]byte
		data = append(append(buf[:0], head...), data...)
		head = nil
	}
	// From here on, any incomplete sequence at the end lies within data
	// (splitUTF8Tail looks at the last UTFMax-1 bytes only).
	var tail []byte
	if !flush {
		data, tail = splitUTF8Tail(data)
	}
	if len(head)+len(data) > 0 {
		src := launch.SourceStdout
		switch {
		case s.tty:
			src = launch.SourceOutput
		case stream == 1:
			src = launch.SourceStderr
		}
		// head goes in front of data without a copy of the chunk.
		if err := r.opts.ExecLog.WriteJoined(src, s.logID, head, data); err != nil {
			r.log.Debug("exec log", "err", err)
		}
	}
	// head is written: its buffer takes the new tail (at most 3 bytes).
	s.carry[stream] = append(s.carry[stream][:0], tail...)
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
