package agentclient

import (
	"io"
	"sync"
)

// streamBufLimit bounds the unread bytes a stream buffers before the
// connection's reader goroutine blocks. The buffer may exceed it by one
// frame's data (at most agentproto.MaxFrameLen).
const streamBufLimit = 256 << 10

// pipe is a bounded buffer between the connection's reader goroutine
// (write) and a caller (Read). It is an io.Reader.
type pipe struct {
	mu   sync.Mutex
	cond sync.Cond // signalled on every state change; uses mu
	// buf holds unread data.
	buf []byte
	// werr is set when no more data will come: Read returns it after
	// draining buf.
	werr error
	// rerr is set when the consumer is gone: Read returns it at once and
	// writes are discarded.
	rerr error
	// ready is closed at the first write or closeWrite.
	ready     chan struct{}
	readyOnce sync.Once
}

func newPipe() *pipe {
	p := &pipe{ready: make(chan struct{})}
	p.cond.L = &p.mu
	return p
}

func (p *pipe) markReady() { p.readyOnce.Do(func() { close(p.ready) }) }

// write appends b, blocking while the buffer is full. It discards b once
// either side is closed.
func (p *pipe) write(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.buf) >= streamBufLimit && p.werr == nil && p.rerr == nil {
		p.cond.Wait()
	}
	if p.werr != nil || p.rerr != nil || len(b) == 0 {
		return
	}
	p.buf = append(p.buf, b...)
	p.markReady()
	p.cond.Broadcast()
}

// closeWrite ends the stream: Read returns err (io.EOF for a clean end)
// after the buffered data. Only the first call counts.
func (p *pipe) closeWrite(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.werr == nil {
		p.werr = err
	}
	p.markReady()
	p.cond.Broadcast()
}

// closeRead abandons the stream: buffered data is dropped, Read returns err
// and writes are discarded.
func (p *pipe) closeRead(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rerr == nil {
		p.rerr = err
	}
	p.buf = nil
	p.markReady()
	p.cond.Broadcast()
}

// Read implements io.Reader.
func (p *pipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.buf) == 0 && p.werr == nil && p.rerr == nil {
		p.cond.Wait()
	}
	if p.rerr != nil {
		return 0, p.rerr
	}
	if len(p.buf) == 0 {
		return 0, p.werr
	}
	if len(b) == 0 {
		return 0, nil
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	if len(p.buf) == 0 {
		p.buf = nil // let the backing array go
	}
	p.cond.Broadcast()
	return n, nil
}

// buffered reports whether unread data is waiting.
func (p *pipe) buffered() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.buf) > 0
}

// err returns the end-of-stream error once the buffer is drained, or nil.
func (p *pipe) endErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rerr != nil {
		return p.rerr
	}
	if len(p.buf) == 0 {
		return p.werr
	}
	return nil
}

var _ io.Reader = (*pipe)(nil)
