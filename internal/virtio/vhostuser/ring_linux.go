//go:build linux

package vhostuser

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/virtio"
)

// pollInterval is how often a ring whose kick was set with NOFD is polled:
// the front-end then never signals available buffers, so the back-end
// notifies the device itself.
const pollInterval = time.Millisecond

// ring is the back-end state of one virtqueue (vhost-user.rst "Ring
// states"): stopped until SET_VRING_KICK starts it, stopped again by
// GET_VRING_BASE; enabled and disabled by SET_VRING_ENABLE.
type ring struct {
	num     uint32 // SET_VRING_NUM; 0 until set
	addr    vringAddr
	hasAddr bool
	// base is the next available ring index: set by SET_VRING_BASE, saved
	// from the queue when the device stops.
	base    uint16
	enabled bool
	started bool
	kick    *kicker // nil when stopped
}

// kicker turns one ring's kick eventfd into Device.QueueNotify calls, or
// polls the ring when the front-end sends no eventfd. It owns its
// goroutine and descriptor; stop releases both.
type kicker struct {
	f    *os.File // nil when polling
	stop chan struct{}
	done chan struct{}
}

// startKicker starts notifying q of dev whenever the eventfd fd is
// signalled (fd < 0: every pollInterval). It takes ownership of fd.
func startKicker(fd, q int, dev virtio.Device) (*kicker, error) {
	k := &kicker{stop: make(chan struct{}), done: make(chan struct{})}
	if fd < 0 {
		go func() {
			defer close(k.done)
			t := time.NewTicker(pollInterval)
			defer t.Stop()
			for {
				select {
				case <-k.stop:
					return
				case <-t.C:
					dev.QueueNotify(q)
				}
			}
		}()
		return k, nil
	}
	// Non-blocking, so reads park in the runtime poller and Close
	// interrupts them.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("kick eventfd: %w", err)
	}
	k.f = os.NewFile(uintptr(fd), "vhost-user-kick-"+strconv.Itoa(q))
	go func() {
		defer close(k.done)
		var buf [8]byte
		for {
			if _, err := k.f.Read(buf[:]); err != nil {
				return // closed by stop; an eventfd read fails no other way
			}
			select {
			case <-k.stop:
				return
			default:
			}
			dev.QueueNotify(q)
		}
	}()
	return k, nil
}

// stop ends the goroutine and closes the eventfd.
func (k *kicker) close() {
	close(k.stop)
	if k.f != nil {
		k.f.Close()
	}
	<-k.done
}

// checkEventfd takes ownership of fd and returns it if it is an eventfd.
// Anything else (a file, a socket) could block or spin the goroutines that
// read kicks or write calls.
func checkEventfd(fd int) (int, error) {
	link, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil || link != "anon_inode:[eventfd]" {
		unix.Close(fd)
		return -1, fmt.Errorf("descriptor is not an eventfd (%s): %w", link, ErrProtocol)
	}
	return fd, nil
}

// interrupt is the virtio.Interrupt the back-end gives its device: used
// buffer notifications write the ring's call eventfd.
type interrupt struct {
	log *slog.Logger

	// mu protects call. Device goroutines hold it for reading while they
	// write an eventfd; the message loop holds it for writing while it
	// replaces or closes one.
	mu   sync.RWMutex
	call []int // per ring; -1 when unset or NOFD

	reported sync.Once
}

var _ virtio.Interrupt = (*interrupt)(nil)

func newInterrupt(n int, log *slog.Logger) *interrupt {
	i := &interrupt{log: log, call: make([]int, n)}
	for q := range i.call {
		i.call[q] = -1
	}
	return i
}

var eventfdOne = binary.NativeEndian.AppendUint64(nil, 1)

// Used implements virtio.Interrupt.
func (i *interrupt) Used(q int) {
	i.mu.RLock()
	defer i.mu.RUnlock()
	if q >= 0 && q < len(i.call) && i.call[q] >= 0 {
		// EAGAIN means the counter is saturated: the front-end has a
		// notification pending anyway.
		_, _ = unix.Write(i.call[q], eventfdOne)
	}
}

// ConfigChanged implements virtio.Interrupt. Without the back-end request
// channel (not offered) there is no way to tell the front-end.
func (i *interrupt) ConfigChanged() {}

// NeedsReset implements virtio.Interrupt. vhost-user has no device status
// the back-end can set (short of the STATUS protocol feature, not offered):
// the broken queue stays stopped until the front-end restarts the device.
func (i *interrupt) NeedsReset(err error) {
	i.reported.Do(func() { i.log.Warn("vhost-user: virtio device needs reset", "err", err) })
}

// setCall replaces ring q's call eventfd (fd < 0: none) and closes the old
// one.
func (i *interrupt) setCall(q, fd int) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if old := i.call[q]; old >= 0 {
		unix.Close(old)
	}
	i.call[q] = fd
}

// closeAll closes every call eventfd.
func (i *interrupt) closeAll() {
	for q := range i.call {
		i.setCall(q, -1)
	}
}
