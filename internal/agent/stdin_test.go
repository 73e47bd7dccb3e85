package agent

import (
	"slices"
	"testing"
	"time"
)

// pushAsync pushes b in a goroutine and returns a channel closed once push
// returned.
func pushAsync(q *stdinQueue, b []byte) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		q.push(b, nil)
	}()
	return done
}

func waits(t *testing.T, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
		t.Fatal("push returned; want it to wait")
	case <-time.After(50 * time.Millisecond):
	}
}

func returns(t *testing.T, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("push still waiting")
	}
}

func TestStdinQueue(t *testing.T) {
	t.Run("per-session bound", func(t *testing.T) {
		q := newStdinQueue(10, newStdinPool(100))
		q.push([]byte("12345678"), nil)
		done := pushAsync(q, []byte("abcd")) // 8+4 > 10
		waits(t, done)
		if c, eof, ok := q.pop(); string(c.data) != "12345678" || eof || !ok {
			t.Fatalf("pop = %q %v %v", c.data, eof, ok)
		}
		returns(t, done)
		q.push(nil, nil) // EOF
		if c, eof, ok := q.pop(); string(c.data) != "abcd" || eof || !ok {
			t.Fatalf("pop = %q %v %v", c.data, eof, ok)
		}
		if _, eof, ok := q.pop(); !eof || !ok {
			t.Fatalf("pop after EOF = eof %v ok %v; want EOF", eof, ok)
		}
	})
	t.Run("pool bound and progress of empty queues", func(t *testing.T) {
		pool := newStdinPool(10)
		a := newStdinQueue(100, pool)
		b := newStdinQueue(100, pool)
		a.push([]byte("123456789"), nil)
		done := pushAsync(a, []byte("xy")) // pool: 9+2 > 10
		waits(t, done)
		// b's queue is empty: its chunk is taken although the pool is full.
		returns(t, pushAsync(b, []byte("b1")))
		if q, p := b.buffered(); q != 2 || p != 11 {
			t.Errorf("buffered = %d/%d; want 2/11", q, p)
		}
		// b is not empty now, and the pool is over its bound.
		doneB := pushAsync(b, []byte("b2"))
		waits(t, doneB)
		// Killing a (its child went away) releases its bytes for both.
		a.kill()
		returns(t, done)
		returns(t, doneB)
		if _, p := b.buffered(); p != 4 {
			t.Errorf("pool holds %d bytes; want 4", p)
		}
	})
	t.Run("oversized chunk and kill", func(t *testing.T) {
		q := newStdinQueue(4, newStdinPool(4))
		q.push([]byte("too big"), nil) // an empty queue takes any chunk
		if n, _ := q.buffered(); n != 7 {
			t.Errorf("buffered = %d; want 7", n)
		}
		done := pushAsync(q, []byte("x"))
		waits(t, done)
		q.kill()
		returns(t, done)
		if _, _, ok := q.pop(); ok {
			t.Errorf("pop after kill: ok; want !ok")
		}
		if _, p := q.buffered(); p != 0 {
			t.Errorf("pool holds %d bytes after kill; want 0", p)
		}
	})
}

// TestStdinPopBatch checks that popBatch takes what is queued, in order, up
// to its buffer, frees the bounds it held (a waiting push goes on), and
// reports EOF only once the queue is drained.
func TestStdinPopBatch(t *testing.T) {
	tests := []struct {
		name   string
		pushed []string
		eof    bool
		buf    int
		want   [][]string // each popBatch's chunks, in order
	}{
		{"one call takes all", []string{"a", "bb", "ccc"}, false, 4, [][]string{{"a", "bb", "ccc"}}},
		{"the buffer bounds a call", []string{"a", "bb", "ccc"}, false, 2, [][]string{{"a", "bb"}, {"ccc"}}},
		{"eof after the chunks", []string{"a", "bb"}, true, 4, [][]string{{"a", "bb"}, nil}},
		{"eof alone", nil, true, 4, [][]string{nil}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := newStdinQueue(100, newStdinPool(100))
			for _, p := range tc.pushed {
				q.push([]byte(p), nil)
			}
			if tc.eof {
				q.push(nil, nil)
			}
			buf := make([]stdinChunk, tc.buf)
			for i, want := range tc.want {
				n, eof, ok := q.popBatch(buf)
				if !ok {
					t.Fatalf("call %d: queue dead", i)
				}
				var got []string
				for _, c := range buf[:n] {
					got = append(got, string(c.data))
				}
				if wantEOF := want == nil; eof != wantEOF || !slices.Equal(got, want) {
					t.Errorf("call %d = %q, eof %v; want %q, eof %v", i, got, eof, want, wantEOF)
				}
			}
			if q.size != 0 || q.pool.used != 0 {
				t.Errorf("after draining: queue holds %d bytes, pool %d; want 0", q.size, q.pool.used)
			}
		})
	}
	t.Run("a waiting push goes on", func(t *testing.T) {
		q := newStdinQueue(4, newStdinPool(100))
		q.push([]byte("1234"), nil)
		done := pushAsync(q, []byte("56"))
		waits(t, done)
		buf := make([]stdinChunk, 4)
		if n, _, _ := q.popBatch(buf); n != 1 || string(buf[0].data) != "1234" {
			t.Fatalf("popBatch = %d %q; want 1 \"1234\"", n, buf[0].data)
		}
		returns(t, done)
	})
	t.Run("killed", func(t *testing.T) {
		q := newStdinQueue(4, newStdinPool(100))
		q.push([]byte("12"), nil)
		q.kill()
		if _, _, ok := q.popBatch(make([]stdinChunk, 4)); ok {
			t.Error("popBatch on a killed queue: ok; want not ok")
		}
	})
}
