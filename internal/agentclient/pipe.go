package agentclient

import (
	"io"
	"sync"

	"github.com/msb-go/msb/internal/agentproto"
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
	// chunks holds unread data, n bytes in all. Chunks are kept as
	// delivered, so data is copied once, into the caller's buffer.
	chunks []pipeChunk
	n      int
	// werr is set when no more data will come: Read returns it after
	// draining chunks.
	werr error
	// rerr is set when the consumer is gone: Read returns it at once and
	// writes are discarded.
	rerr error
	// ready is closed at the first write or closeWrite.
	ready     chan struct{}
	readyOnce sync.Once
}

// pipeChunk is delivered data and the frame it lives in. The pipe owns the
// frame and gives it back to the bulk pool once the data is consumed or
// dropped: the reader then reads the next frames into the same buffers
// instead of allocating and zeroing 256 KiB for each.
type pipeChunk struct {
	data  []byte
	frame []byte
}

func (c pipeChunk) release() { agentproto.PutBulk(c.frame) }

func newPipe() *pipe {
	p := &pipe{ready: make(chan struct{})}
	p.cond.L = &p.mu
	return p
}

func (p *pipe) markReady() { p.readyOnce.Do(func() { close(p.ready) }) }

// write queues b, blocking while the buffer is full, and takes ownership
// of b and of frame, the buffer b lives in (nil if there is nothing to give
// back). It discards b once either side is closed.
func (p *pipe) write(b, frame []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.n >= streamBufLimit && p.werr == nil && p.rerr == nil {
		p.cond.Wait()
	}
	if p.werr != nil || p.rerr != nil || len(b) == 0 {
		agentproto.PutBulk(frame)
		return
	}
	p.chunks = append(p.chunks, pipeChunk{data: b, frame: frame})
	p.n += len(b)
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
	for _, c := range p.chunks {
		c.release()
	}
	p.chunks, p.n = nil, 0
	p.markReady()
	p.cond.Broadcast()
}

// Read implements io.Reader.
func (p *pipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.n == 0 && p.werr == nil && p.rerr == nil {
		p.cond.Wait()
	}
	if p.rerr != nil {
		return 0, p.rerr
	}
	if p.n == 0 {
		return 0, p.werr
	}
	n := 0
	for n < len(b) && len(p.chunks) > 0 {
		k := copy(b[n:], p.chunks[0].data)
		n += k
		if k == len(p.chunks[0].data) {
			p.chunks[0].release()
			p.chunks[0] = pipeChunk{} // let the chunk go
			p.chunks = p.chunks[1:]
		} else {
			p.chunks[0].data = p.chunks[0].data[k:]
		}
	}
	p.n -= n
	if len(p.chunks) == 0 {
		p.chunks = nil
	}
	p.cond.Broadcast()
	return n, nil
}

// WriteTo implements io.WriterTo: io.Copy from a stream hands whole
// chunks (up to a frame's data) to w instead of copying them through a
// small buffer. It returns at the end of the stream (nil for a clean end)
// or at w's first error.
func (p *pipe) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		p.mu.Lock()
		for p.n == 0 && p.werr == nil && p.rerr == nil {
			p.cond.Wait()
		}
		if p.rerr != nil {
			p.mu.Unlock()
			return total, p.rerr
		}
		if p.n == 0 {
			err := p.werr
			p.mu.Unlock()
			if err == io.EOF {
				err = nil
			}
			return total, err
		}
		chunk := p.chunks[0]
		p.chunks[0] = pipeChunk{}
		p.chunks = p.chunks[1:]
		if len(p.chunks) == 0 {
			p.chunks = nil
		}
		p.n -= len(chunk.data)
		p.cond.Broadcast()
		p.mu.Unlock()
		// w must not keep chunk.data (io.Writer), so the frame goes
		// back once Write returns.
		k, err := w.Write(chunk.data)
		chunk.release()
		total += int64(k)
		if err == nil && k < len(chunk.data) {
			err = io.ErrShortWrite
		}
		if err != nil {
			return total, err
		}
	}
}

// buffered reports whether unread data is waiting.
func (p *pipe) buffered() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n > 0
}

// endErr returns the end-of-stream error once the buffer is drained, or nil.
func (p *pipe) endErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rerr != nil {
		return p.rerr
	}
	if p.n == 0 {
		return p.werr
	}
	return nil
}

var _ io.Reader = (*pipe)(nil)
