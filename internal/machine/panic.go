package machine

import (
	"bytes"
	"sync"
)

// PanicWatcher is an io.Writer that scans a guest console for the kernel's
// panic message without keeping the output. Both backends run the guest
// with panic=-1, so a panic ends the VM like a clean reboot does; the console
// is the only place that tells them apart. Safe for concurrent use.
type PanicWatcher struct {
	mu    sync.Mutex
	tail  []byte // the last len(panicMarker)-1 bytes, for a marker split across writes
	found bool
}

var panicMarker = []byte("Kernel panic - not syncing")

func (w *PanicWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.found {
		return len(p), nil
	}
	buf := append(w.tail, p...)
	if bytes.Contains(buf, panicMarker) {
		w.found = true
	}
	if keep := len(panicMarker) - 1; len(buf) > keep {
		buf = buf[len(buf)-keep:]
	}
	w.tail = append(w.tail[:0], buf...)
	return len(p), nil
}

// Panicked reports whether the console showed a kernel panic.
func (w *PanicWatcher) Panicked() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.found
}
