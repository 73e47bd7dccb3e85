//go:build linux

package vhostuser

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/guestmem"
	"github.com/msb-go/msb/internal/virtio"
	"github.com/msb-go/msb/internal/virtio/virtiotest"
)

// echoDevice is a tiny two-queue device: each chain's readable bytes come
// back upper-cased in its writable buffers.
type echoDevice struct {
	virtio.Base

	mu          sync.Mutex
	activations int
	resets      int
	features    uint64
	config      [8]byte
}

var _ virtio.Device = (*echoDevice)(nil)

func newEchoDevice() *echoDevice {
	d := &echoDevice{}
	d.Init([]uint16{16, 16}, nil) // ReadConfig/WriteConfig are its own
	return d
}

func (d *echoDevice) Type() uint32     { return 0xfe }
func (d *echoDevice) Features() uint64 { return virtio.CommonFeatures }

func (d *echoDevice) ReadConfig(off uint64, p []byte) {
	clear(p)
	d.mu.Lock()
	defer d.mu.Unlock()
	if off < uint64(len(d.config)) {
		copy(p, d.config[off:])
	}
}

func (d *echoDevice) WriteConfig(off uint64, p []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off < uint64(len(d.config)) {
		copy(d.config[off:], p)
	}
}

func (d *echoDevice) Activate(_ *guestmem.Memory, features uint64, queues []*virtio.Queue, irq virtio.Interrupt) error {
	d.mu.Lock()
	d.activations++
	d.features = features
	d.mu.Unlock()
	echo := func(c virtio.Chain, err error) uint32 {
		if err != nil {
			return 0
		}
		b := make([]byte, c.Readable.Len())
		c.Readable.CopyTo(b, 0)
		return uint32(c.Writable.CopyFrom(bytes.ToUpper(b), 0))
	}
	for i, q := range queues {
		d.Serve(i, q, irq, echo)
	}
	return nil
}

func (d *echoDevice) Reset() {
	d.Base.Reset()
	d.mu.Lock()
	d.resets++
	d.mu.Unlock()
}

func (d *echoDevice) counts() (activations, resets int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.activations, d.resets
}

// Guest memory layout of the fake front-end: one memfd region.
const (
	memSize  = 1 << 20
	guestPA  = 0x100000
	userBase = 0x7f1200000000
)

// frontend plays QEMU: it owns one end of the socket and the guest memory.
type frontend struct {
	t     *testing.T
	conn  *net.UnixConn
	memfd *os.File
	mem   *virtiotest.Memory
	mmap  []byte
	done  chan error // Serve's result
	dev   *echoDevice
}

// countFDs returns how many descriptors the process has open.
func countFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// checkFDs fails the test at cleanup if the process holds more
// descriptors than when it was called.
func checkFDs(t *testing.T) {
	before := countFDs(t)
	t.Cleanup(func() {
		// The runtime may open its poller lazily; give closes a moment.
		deadline := time.Now().Add(2 * time.Second)
		for {
			n := countFDs(t)
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("open descriptors: %d before, %d after", before, n)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func socketPair(t testing.TB) (a, b *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]*net.UnixConn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c.(*net.UnixConn)
	}
	return conns[0], conns[1]
}

// newFrontend starts Serve on a socketpair with an echoDevice and maps a
// sealed memfd as guest memory.
func newFrontend(t *testing.T) *frontend {
	t.Helper()
	checkFDs(t)
	fc, bc := socketPair(t)
	f := &frontend{t: t, conn: fc, done: make(chan error, 1), dev: newEchoDevice()}
	fd, err := unix.MemfdCreate("vhostuser-test", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		t.Fatal(err)
	}
	f.memfd = os.NewFile(uintptr(fd), "memfd")
	if err := unix.Ftruncate(fd, memSize); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW); err != nil {
		t.Fatal(err)
	}
	if f.mmap, err = unix.Mmap(fd, 0, memSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		t.Fatal(err)
	}
	if f.mem, err = virtiotest.WrapMemory(guestPA, f.mmap); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { f.done <- Serve(ctx, bc, f.dev, nil) }()
	t.Cleanup(func() {
		cancel()
		f.conn.Close()
		select {
		case <-f.done:
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after the front-end closed")
		}
		f.dev.Close()
		unix.Munmap(f.mmap)
		f.memfd.Close()
	})
	return f
}

// send writes one request with descriptors.
func (f *frontend) send(req, flags uint32, payload []byte, fds ...int) {
	f.t.Helper()
	b := make([]byte, headerSize, headerSize+len(payload))
	binary.LittleEndian.PutUint32(b[0:], req)
	binary.LittleEndian.PutUint32(b[4:], VHOST_USER_VERSION|flags)
	binary.LittleEndian.PutUint32(b[8:], uint32(len(payload)))
	b = append(b, payload...)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := f.conn.WriteMsgUnix(b, oob, nil); err != nil {
		f.t.Fatalf("send %s: %v", requestName(req), err)
	}
}

// reply reads the reply to req.
func (f *frontend) reply(req uint32) []byte {
	f.t.Helper()
	f.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var h [headerSize]byte
	if _, err := readAll(f.conn, h[:]); err != nil {
		f.t.Fatalf("reply to %s: %v", requestName(req), err)
	}
	if got := binary.LittleEndian.Uint32(h[0:]); got != req {
		f.t.Fatalf("reply to %s is for %s", requestName(req), requestName(got))
	}
	if flags := binary.LittleEndian.Uint32(h[4:]); flags != VHOST_USER_VERSION|VHOST_USER_REPLY_MASK {
		f.t.Fatalf("reply to %s: flags %#x", requestName(req), flags)
	}
	p := make([]byte, binary.LittleEndian.Uint32(h[8:]))
	if _, err := readAll(f.conn, p); err != nil {
		f.t.Fatalf("reply to %s: %v", requestName(req), err)
	}
	return p
}

func readAll(c *net.UnixConn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := c.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// get sends a request that has a reply and returns the reply's u64.
func (f *frontend) get(req uint32, payload []byte) uint64 {
	f.t.Helper()
	f.send(req, 0, payload)
	p := f.reply(req)
	if len(p) != 8 {
		f.t.Fatalf("%s reply of %d bytes", requestName(req), len(p))
	}
	return binary.LittleEndian.Uint64(p)
}

// set sends a request with NEED_REPLY and returns the REPLY_ACK status
// (0 is success).
func (f *frontend) set(req uint32, payload []byte, fds ...int) uint64 {
	f.t.Helper()
	f.send(req, VHOST_USER_NEED_REPLY, payload, fds...)
	p := f.reply(req)
	if len(p) != 8 {
		f.t.Fatalf("%s ack of %d bytes", requestName(req), len(p))
	}
	return binary.LittleEndian.Uint64(p)
}

func (f *frontend) mustSet(req uint32, payload []byte, fds ...int) {
	f.t.Helper()
	if st := f.set(req, payload, fds...); st != 0 {
		f.t.Fatalf("%s: ack status %d", requestName(req), st)
	}
}

// serveErr waits for Serve to end and returns its error.
func (f *frontend) serveErr() error {
	f.t.Helper()
	select {
	case err := <-f.done:
		f.done <- err // for cleanup
		return err
	case <-time.After(5 * time.Second):
		f.t.Fatal("Serve still running")
		return nil
	}
}

func u64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

func state(i, n uint32) []byte { return vringState{i, n}.bytes() }

func memTablePayload(rs ...memRegion) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(rs)))
	b = binary.LittleEndian.AppendUint32(b, 0)
	for _, r := range rs {
		for _, v := range []uint64{r.GuestPhys, r.Size, r.UserAddr, r.MmapOffset} {
			b = binary.LittleEndian.AppendUint64(b, v)
		}
	}
	return b
}

func addrPayload(a vringAddr) []byte {
	b := binary.LittleEndian.AppendUint32(nil, a.Index)
	b = binary.LittleEndian.AppendUint32(b, a.Flags)
	for _, v := range []uint64{a.Desc, a.Used, a.Avail, a.Log} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return b
}

// user converts a guest physical address of the fake guest memory into the
// front-end user address the protocol carries.
func user(a guestmem.Addr) uint64 { return uint64(a) - guestPA + userBase }

func eventfd(t testing.TB) int {
	t.Helper()
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// waitEventfd waits until fd is signalled and consumes the count.
func waitEventfd(t testing.TB, fd int) bool {
	t.Helper()
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(pfd, 5000)
	if err != nil || n == 0 {
		return false
	}
	var b [8]byte
	_, err = unix.Read(fd, b[:])
	return err == nil
}

func signal(t testing.TB, fd int) {
	t.Helper()
	if _, err := unix.Write(fd, binary.NativeEndian.AppendUint64(nil, 1)); err != nil {
		t.Fatal(err)
	}
}

// negotiate runs the feature and memory part of QEMU's start sequence.
func (f *frontend) negotiate() {
	f.t.Helper()
	feat := f.get(VHOST_USER_GET_FEATURES, nil)
	if feat&(1<<VHOST_USER_F_PROTOCOL_FEATURES) == 0 || feat&(1<<virtio.VIRTIO_F_VERSION_1) == 0 {
		f.t.Fatalf("GET_FEATURES = %#x; want PROTOCOL_FEATURES and VERSION_1", feat)
	}
	pf := f.get(VHOST_USER_GET_PROTOCOL_FEATURES, nil)
	// The echo device is not virtio-fs, so CONFIG is offered.
	if want := uint64(protocolFeatures | 1<<VHOST_USER_PROTOCOL_F_CONFIG); pf != want {
		f.t.Fatalf("GET_PROTOCOL_FEATURES = %#x; want %#x", pf, want)
	}
	f.send(VHOST_USER_SET_PROTOCOL_FEATURES, 0, u64(1<<VHOST_USER_PROTOCOL_F_REPLY_ACK))
	f.mustSet(VHOST_USER_SET_OWNER, nil)
	f.mustSet(VHOST_USER_SET_FEATURES, u64(feat))
	f.mustSet(VHOST_USER_SET_MEM_TABLE, memTablePayload(memRegion{GuestPhys: guestPA, Size: memSize, UserAddr: userBase}), int(f.memfd.Fd()))
}

// rings is what the fake guest set up for each queue.
type rings struct {
	drv        []*virtiotest.Driver
	kick, call []int
}

// startRings runs the ring part of QEMU's start sequence (vhost_dev_start:
// each ring's num, base, addr, kick and call, then enable all).
func (f *frontend) startRings(r *rings, bases ...uint16) {
	f.t.Helper()
	for i := range 2 {
		if len(r.drv) <= i {
			d, err := f.mem.NewDriver(16)
			if err != nil {
				f.t.Fatal(err)
			}
			r.drv = append(r.drv, d)
		}
		d := r.drv[i]
		f.mustSet(VHOST_USER_SET_VRING_NUM, state(uint32(i), 16))
		var base uint16
		if i < len(bases) {
			base = bases[i]
		}
		f.mustSet(VHOST_USER_SET_VRING_BASE, state(uint32(i), uint32(base)))
		f.mustSet(VHOST_USER_SET_VRING_ADDR, addrPayload(vringAddr{Index: uint32(i), Desc: user(d.Desc), Used: user(d.Used), Avail: user(d.Avail)}))
		kick, call := eventfd(f.t), eventfd(f.t)
		r.kick, r.call = append(r.kick, kick), append(r.call, call)
		f.mustSet(VHOST_USER_SET_VRING_KICK, u64(uint64(i)), kick)
		f.mustSet(VHOST_USER_SET_VRING_CALL, u64(uint64(i)), call)
	}
	if a, _ := f.dev.counts(); a != 0 && len(bases) == 0 {
		f.t.Fatalf("device activated before the rings were enabled")
	}
	for i := range 2 {
		f.mustSet(VHOST_USER_SET_VRING_ENABLE, state(uint32(i), 1))
	}
}

// echo sends msg through queue q and checks the device's answer and the
// call eventfd.
func (f *frontend) echo(r *rings, q int, msg string) {
	f.t.Helper()
	d := r.drv[q]
	// VIRTIO_F_EVENT_IDX is negotiated: ask for a notification when the
	// device uses the next buffer (§2.7.10).
	idx, err := d.UsedIdx()
	if err != nil {
		f.t.Fatal(err)
	}
	if err := d.SetUsedEvent(idx); err != nil {
		f.t.Fatal(err)
	}
	head, err := d.AddChain(virtiotest.Readable([]byte(msg)), virtiotest.Writable(64))
	if err != nil {
		f.t.Fatal(err)
	}
	signal(f.t, r.kick[q])
	if !waitEventfd(f.t, r.call[q]) {
		f.t.Fatalf("queue %d: no call eventfd signal", q)
	}
	used, err := d.WaitUsed(1, 5*time.Second)
	if err != nil {
		f.t.Fatal(err)
	}
	got, err := d.Written(head, used[0].Len)
	if err != nil {
		f.t.Fatal(err)
	}
	if want := bytes.ToUpper([]byte(msg)); used[0].ID != uint32(head) || !bytes.Equal(got, want) {
		f.t.Fatalf("queue %d: used %+v %q; want head %d %q", q, used[0], got, head, want)
	}
}

func TestHandshakeAndRequests(t *testing.T) {
	f := newFrontend(t)
	f.negotiate()
	var r rings
	f.startRings(&r)
	if a, _ := f.dev.counts(); a != 1 {
		t.Fatalf("activations = %d; want 1", a)
	}
	f.dev.mu.Lock()
	if want := virtio.CommonFeatures; f.dev.features != want {
		t.Errorf("device features = %#x; want %#x (without PROTOCOL_FEATURES)", f.dev.features, want)
	}
	f.dev.mu.Unlock()
	f.echo(&r, 1, "hello")
	f.echo(&r, 0, "hiprio")
	f.echo(&r, 1, "again")

	// GET_CONFIG / SET_CONFIG reach the device's config space.
	f.mustSet(VHOST_USER_SET_CONFIG, configMsg{Offset: 2, Data: []byte("tag")}.bytes())
	f.send(VHOST_USER_GET_CONFIG, 0, configMsg{Offset: 0, Data: make([]byte, 8)}.bytes())
	if got, want := f.reply(VHOST_USER_GET_CONFIG), (configMsg{Offset: 0, Data: []byte("\x00\x00tag\x00\x00\x00")}).bytes(); !bytes.Equal(got, want) {
		t.Errorf("GET_CONFIG = %q; want %q", got, want)
	}
	if got := f.get(VHOST_USER_GET_QUEUE_NUM, nil); got != 2 {
		t.Errorf("GET_QUEUE_NUM = %d; want 2", got)
	}

	// Stop as QEMU does (disable, then GET_VRING_BASE per ring): the
	// device is reset and each ring reports where it stopped.
	for i := range 2 {
		f.mustSet(VHOST_USER_SET_VRING_ENABLE, state(uint32(i), 0))
	}
	var bases []uint16
	for i, want := range []uint32{1, 2} {
		f.send(VHOST_USER_GET_VRING_BASE, 0, state(uint32(i), 0))
		got, err := parseVringState(VHOST_USER_GET_VRING_BASE, f.reply(VHOST_USER_GET_VRING_BASE))
		if err != nil || got != (vringState{uint32(i), want}) {
			t.Fatalf("GET_VRING_BASE(%d) = %+v, %v; want base %d", i, got, err, want)
		}
		bases = append(bases, uint16(got.Num))
	}
	if a, rs := f.dev.counts(); a != 1 || rs != 1 {
		t.Fatalf("after stop: activations %d resets %d; want 1, 1", a, rs)
	}

	// Restart at the saved bases (a guest reboot or a VM resume) and go
	// on where the rings stopped.
	r.kick, r.call = nil, nil
	f.startRings(&r, bases...)
	if a, _ := f.dev.counts(); a != 2 {
		t.Fatalf("activations after restart = %d; want 2", a)
	}
	f.echo(&r, 1, "resumed")

	// Disconnecting resets the device.
	f.conn.Close()
	if err := f.serveErr(); err != nil {
		t.Fatalf("Serve after disconnect = %v; want nil", err)
	}
	if _, rs := f.dev.counts(); rs != 2 {
		t.Errorf("resets after disconnect = %d; want 2", rs)
	}
}

func TestServeContextCancel(t *testing.T) {
	checkFDs(t)
	fc, bc := socketPair(t)
	defer fc.Close()
	dev := newEchoDevice()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, bc, dev, nil) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Serve = %v; want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve ignored cancellation")
	}
}

func TestPollingKick(t *testing.T) {
	f := newFrontend(t)
	f.negotiate()
	var r rings
	f.startRings(&r)
	// Replace ring 1's kick with NOFD: the back-end polls the ring.
	f.mustSet(VHOST_USER_SET_VRING_KICK, u64(1|VHOST_USER_VRING_NOFD_MASK))
	d := r.drv[1]
	if _, err := d.AddChain(virtiotest.Readable([]byte("poll")), virtiotest.Writable(8)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.WaitUsed(1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

type fsTyped struct{ echoDevice }

func (*fsTyped) Type() uint32 { return virtio.VIRTIO_ID_FS }

// TestConfigNotOfferedToVirtioFS: QEMU's vhost-user-fs-device warns about a
// back-end offering CONFIG; vhost-user-vsock-device needs it.
func TestConfigNotOfferedToVirtioFS(t *testing.T) {
	if offeredProtocolFeatures(&fsTyped{})&(1<<VHOST_USER_PROTOCOL_F_CONFIG) != 0 {
		t.Error("CONFIG offered for virtio-fs")
	}
	if offeredProtocolFeatures(&echoDevice{})&(1<<VHOST_USER_PROTOCOL_F_CONFIG) == 0 {
		t.Error("CONFIG not offered for a device with a config space")
	}
}
