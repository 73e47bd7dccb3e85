package netstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
)

// FrameLink is the stack's end of an in-process frame path, for a virtio-net
// device in the same process (it has the two methods of virtionet.Backend,
// which this package does not import): WriteFrame hands the stack a frame
// the guest sent, ReadFrame takes the next frame for the guest. It does what
// Serve does over a stream, without the stream: no socket between the
// device and the stack, no length prefixes, and per frame two copies and
// two system calls fewer each way — on a TSO guest's 64 KiB frames, half of
// the sandbox process's own work on the guest→host path (see the
// GuestToHostTCP benchmarks).
//
// A Stack has at most one FrameLink or one Serve at a time. Frames are
// checked exactly as Serve checks them (wellFormed, the counters, ICMP
// echo). Written frames may wait in generic receive offload, to merge with
// the next ones of the same flow, until Flush (virtionet.Flusher: the
// device flushes each time it has drained its transmit queue), as Serve
// flushes before each read that could block.
type FrameLink struct {
	s *Stack
	// ctx ends with Close and with the Stack's Close.
	ctx    context.Context
	cancel context.CancelFunc

	// wmu makes WriteFrame one caller at a time: the GRO state behind
	// deliver belongs to a single injector.
	wmu sync.Mutex

	// mu protects closed and inflight.Add, so that Close, which waits for
	// the calls in progress before another Serve or FrameLink may take
	// the stack, never races a call starting.
	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup
}

// ErrLinked reports a second FrameLink or Serve on a Stack that has one.
var ErrLinked = errors.New("netstack: the stack is already serving a guest")

// FrameLink returns the stack's in-process frame path. Close it to let
// another FrameLink or a Serve take the stack.
func (s *Stack) FrameLink() (*FrameLink, error) {
	if !s.serveMu.TryLock() {
		return nil, ErrLinked
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		s.serveMu.Unlock()
		return nil, fmt.Errorf("netstack: frame link: %w", net.ErrClosed)
	}
	ctx, cancel := context.WithCancel(s.ctx)
	return &FrameLink{s: s, ctx: ctx, cancel: cancel}, nil
}

// enter registers a call with the link and the Stack, so that neither's
// Close tears the NIC down under it; false once either is closed. exit
// ends what enter began.
func (l *FrameLink) enter() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.s.closed {
		return false
	}
	l.s.wg.Add(1)
	l.inflight.Add(1)
	return true
}

func (l *FrameLink) exit() {
	l.inflight.Done()
	l.s.wg.Done()
}

// WriteFrame hands one Ethernet frame from the guest to the stack (a
// malformed one is counted and dropped); it may wait for Flush in GRO.
// frame is not kept.
func (l *FrameLink) WriteFrame(ctx context.Context, frame []byte) error {
	if !l.enter() {
		return fmt.Errorf("netstack: write frame: %w", net.ErrClosed)
	}
	defer l.exit()
	if len(frame) > maxFrameLen {
		l.s.c.malformed.Add(1)
		return nil
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.s.c.g2hPackets.Add(1)
	l.s.c.g2hBytes.Add(uint64(len(frame)))
	l.s.deliver(frame)
	return nil
}

// Flush hands the stack what generic receive offload still holds of the
// frames written so far.
func (l *FrameLink) Flush() {
	if !l.enter() {
		return
	}
	defer l.exit()
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.s.link.flush()
}

// ReadFrame blocks until the stack has a frame for the guest, copies it into
// frame and returns its length. A frame longer than frame is dropped. It
// fails once ctx ends or the link or the Stack is closed.
func (l *FrameLink) ReadFrame(ctx context.Context, frame []byte) (int, error) {
	if !l.enter() {
		return 0, fmt.Errorf("netstack: read frame: %w", net.ErrClosed)
	}
	defer l.exit()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(l.ctx, cancel)
	defer stop()
	for {
		pkt := l.s.chEP.ReadContext(ctx)
		if pkt == nil {
			if l.ctx.Err() != nil {
				return 0, fmt.Errorf("netstack: read frame: %w", net.ErrClosed)
			}
			return 0, ctx.Err()
		}
		n := pkt.Size()
		if n > len(frame) {
			pkt.DecRef()
			continue
		}
		off := 0
		for _, b := range pkt.AsSlices() {
			off += copy(frame[off:], b)
		}
		pkt.DecRef()
		l.s.c.h2gPackets.Add(1)
		l.s.c.h2gBytes.Add(uint64(n))
		return n, nil
	}
}

// Close ends the link: calls in progress return (Close waits for them) and
// later ones fail. The Stack may then be linked or served again.
func (l *FrameLink) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	l.cancel()
	l.inflight.Wait()
	l.s.serveMu.Unlock()
	return nil
}
