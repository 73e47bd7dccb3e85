package agent

import "sync"

// stdinQueue is one session's bounded stdin buffer between the console
// reader (push) and the session's stdin writer goroutine (pop). It never
// drops bytes while the child lives: push waits while the buffered bytes
// would exceed the limit. Once the consumer is gone (the child exited or
// stopped reading with an error) pushes are discarded, because nobody can
// receive them.
type stdinQueue struct {
	limit int

	// mu protects the fields below; cond signals changes of them.
	mu     sync.Mutex
	cond   sync.Cond
	chunks [][]byte
	size   int
	eof    bool // EOF requested (empty stdin frame)
	dead   bool // consumer gone
}

func newStdinQueue(limit int) *stdinQueue {
	q := &stdinQueue{limit: limit}
	q.cond.L = &q.mu
	return q
}

// push appends b, or requests EOF when b is empty. It blocks while the queue
// is non-empty and b would not fit.
func (q *stdinQueue) push(b []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.dead || q.eof {
		return
	}
	if len(b) == 0 {
		q.eof = true
		q.cond.Broadcast()
		return
	}
	for q.size > 0 && q.size+len(b) > q.limit && !q.dead {
		q.cond.Wait()
	}
	if q.dead {
		return
	}
	q.chunks = append(q.chunks, b)
	q.size += len(b)
	q.cond.Broadcast()
}

// pop returns the next chunk, or eof once EOF was requested and every chunk
// was returned. ok is false once the queue was killed.
func (q *stdinQueue) pop() (b []byte, eof, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.chunks) == 0 && !q.eof && !q.dead {
		q.cond.Wait()
	}
	switch {
	case q.dead:
		return nil, false, false
	case len(q.chunks) > 0:
		b = q.chunks[0]
		q.chunks[0] = nil
		q.chunks = q.chunks[1:]
		q.size -= len(b)
		q.cond.Broadcast()
		return b, false, true
	default:
		return nil, true, true
	}
}

// kill discards the buffered bytes and every later push, and wakes all
// waiters.
func (q *stdinQueue) kill() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.dead = true
	q.chunks = nil
	q.size = 0
	q.cond.Broadcast()
}

// buffered returns the number of queued bytes.
func (q *stdinQueue) buffered() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.size
}
