package agent

import (
	"sync"

	"github.com/msb-go/msb/internal/agentproto"
)

// stdinPool bounds the stdin bytes buffered across all sessions, and its
// mutex guards every stdinQueue of a server (stdin is not a hot path, and
// one lock makes the two bounds easy to check together).
type stdinPool struct {
	limit int

	// mu protects used and the fields of every queue of the pool; cond
	// signals any change of them.
	mu   sync.Mutex
	cond sync.Cond
	used int
}

func newStdinPool(limit int) *stdinPool {
	p := &stdinPool{limit: limit}
	p.cond.L = &p.mu
	return p
}

// stdinQueue is one session's bounded stdin buffer between the console
// reader (push) and the session's stdin writer goroutine (pop). It never
// drops bytes while the child lives: push waits while the session's
// buffered bytes would exceed its limit or all sessions' bytes the pool's.
// A chunk for an empty queue is always taken, so a session whose child
// reads always makes progress however full the others are. Once the
// consumer is gone (the child exited or its stdin broke) pushes are
// discarded, because nobody can receive them.
type stdinQueue struct {
	pool  *stdinPool
	limit int

	// Protected by pool.mu.
	chunks []stdinChunk
	size   int
	eof    bool // EOF requested (empty stdin frame)
	dead   bool // consumer gone
}

// stdinChunk is queued stdin data and the frame it lives in, which goes
// back to the bulk pool (agentproto.PutBulk) once the data is written or
// discarded: a 256 MiB io.Copy into stdin otherwise allocated (and zeroed)
// a fresh 256 KiB buffer for every frame agentd read.
type stdinChunk struct {
	data  []byte
	frame []byte // nil, or a pooled buffer the queue owns
}

func newStdinQueue(limit int, pool *stdinPool) *stdinQueue {
	return &stdinQueue{pool: pool, limit: limit}
}

// push appends b, or requests EOF when b is empty. It blocks while the queue
// is non-empty and b would not fit into the queue's or the pool's limit.
// frame, when not nil, is the pooled frame b lives in: the queue owns it
// from here on and gives it back once b has been popped and released, or
// discarded.
func (q *stdinQueue) push(b, frame []byte) {
	p := q.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	if q.dead || q.eof {
		agentproto.PutBulk(frame)
		return
	}
	if len(b) == 0 {
		q.eof = true
		p.cond.Broadcast()
		agentproto.PutBulk(frame)
		return
	}
	for q.size > 0 && !q.dead && (q.size+len(b) > q.limit || p.used+len(b) > p.limit) {
		p.cond.Wait()
	}
	if q.dead {
		agentproto.PutBulk(frame)
		return
	}
	q.chunks = append(q.chunks, stdinChunk{data: b, frame: frame})
	q.size += len(b)
	p.used += len(b)
	p.cond.Broadcast()
}

// pop returns the next chunk, or eof once EOF was requested and every chunk
// was returned. ok is false once the queue was killed. The caller gives the
// chunk back with release once it is done with c.data.
func (q *stdinQueue) pop() (c stdinChunk, eof, ok bool) {
	p := q.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(q.chunks) == 0 && !q.eof && !q.dead {
		p.cond.Wait()
	}
	switch {
	case q.dead:
		return stdinChunk{}, false, false
	case len(q.chunks) > 0:
		c = q.chunks[0]
		q.chunks[0] = stdinChunk{}
		q.chunks = q.chunks[1:]
		q.size -= len(c.data)
		p.used -= len(c.data)
		p.cond.Broadcast()
		return c, false, true
	default:
		return stdinChunk{}, true, true
	}
}

// popBatch is pop for up to len(buf) chunks: it waits as pop does, then
// takes every chunk queued, at most len(buf), into buf. n is how many; eof
// and ok are pop's, and eof comes only once no chunk is left.
func (q *stdinQueue) popBatch(buf []stdinChunk) (n int, eof, ok bool) {
	p := q.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(q.chunks) == 0 && !q.eof && !q.dead {
		p.cond.Wait()
	}
	switch {
	case q.dead:
		return 0, false, false
	case len(q.chunks) > 0:
		n = copy(buf, q.chunks)
		for i := range n {
			q.size -= len(buf[i].data)
			p.used -= len(buf[i].data)
			q.chunks[i] = stdinChunk{}
		}
		q.chunks = q.chunks[n:]
		p.cond.Broadcast()
		return n, false, true
	default:
		return 0, true, true
	}
}

// release gives back the frame of a popped chunk.
func (c stdinChunk) release() { agentproto.PutBulk(c.frame) }

// kill discards the buffered bytes and every later push, and wakes all
// waiters.
func (q *stdinQueue) kill() {
	p := q.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	q.dead = true
	p.used -= q.size
	for _, c := range q.chunks {
		c.release()
	}
	q.chunks = nil
	q.size = 0
	p.cond.Broadcast()
}

// buffered returns the number of bytes queued in q and in the whole pool.
func (q *stdinQueue) buffered() (queue, pool int) {
	q.pool.mu.Lock()
	defer q.pool.mu.Unlock()
	return q.size, q.pool.used
}
