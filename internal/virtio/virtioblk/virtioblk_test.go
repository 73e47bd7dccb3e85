package virtioblk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/msb-go/msb/internal/virtio"
	"github.com/msb-go/msb/internal/virtio/virtiotest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memDisk is an in-memory Backend and Discarder.
type memDisk struct {
	mu       sync.Mutex
	data     []byte
	syncs    int
	syncErr  error
	discards [][2]int64
}

func (m *memDisk) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off >= int64(len(m.data)) {
		return 0, io.EOF
	}
	n := copy(p, m.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memDisk) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off+int64(len(p)) > int64(len(m.data)) {
		return 0, errors.New("write past end")
	}
	return copy(m.data[off:], p), nil
}

func (m *memDisk) Sync() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.syncs++
	return m.syncErr
}

func (m *memDisk) Discard(off, n int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.discards = append(m.discards, [2]int64{off, n})
	clear(m.data[off : off+n])
	return nil
}

// noDiscard hides memDisk's Discard method.
type noDiscard struct{ *memDisk }

func (n noDiscard) Discard() {}

const diskSectors = 64

func hdr(typ uint32, sector uint64) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint32(b, typ)
	binary.LittleEndian.PutUint64(b[8:], sector)
	return b
}

func seg(sector uint64, num, flags uint32) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint64(b, sector)
	binary.LittleEndian.PutUint32(b[8:], num)
	binary.LittleEndian.PutUint32(b[12:], flags)
	return b
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i) ^ seed
	}
	return b
}

var (
	R = virtiotest.Readable
	W = virtiotest.Writable
)

type rig struct {
	*virtiotest.Rig
	disk *memDisk
}

func newRig(t *testing.T, cfg Config) rig {
	t.Helper()
	disk := &memDisk{data: pattern(diskSectors*SectorSize, 0x5a)}
	if cfg.Backend == nil {
		cfg.Backend = disk
	}
	cfg.SizeBytes = diskSectors * SectorSize
	dev, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	return rig{Rig: virtiotest.NewRig(t, dev, virtiotest.Options{QueueSize: queueSize}), disk: disk}
}

// do submits one chain and returns the bytes the device wrote.
func (r rig) do(t *testing.T, indirect bool, bufs ...virtiotest.Buf) []byte {
	t.Helper()
	do := r.Do
	if indirect {
		do = r.DoIndirect
	}
	rp := do(0, bufs...)
	// The status is the last writable byte and data starts at the first,
	// so read the whole writable area and report data (used length - 1
	// bytes) followed by the status.
	all := bytes.Join(rp.Writable, nil)
	if rp.Len == 0 {
		return nil
	}
	if int(rp.Len) > len(all) {
		t.Fatalf("used len %d > writable %d", rp.Len, len(all))
	}
	return append(all[:rp.Len-1:rp.Len-1], all[len(all)-1])
}

type reqCase struct {
	name     string
	cfg      Config
	bufs     []virtiotest.Buf
	want     []byte // device-written bytes: data then status
	wantDisk func(d *memDisk) string
}

func okStatus(data ...[]byte) []byte {
	return append(bytes.Join(data, nil), VIRTIO_BLK_S_OK)
}

var orig = pattern(diskSectors*SectorSize, 0x5a)

// unchanged reports whether the disk still holds its initial contents
// (bytes.Equal, because a cmp.Diff of 32 KiB is slow under -race).
func unchanged(d *memDisk) string {
	if bytes.Equal(orig, d.data) {
		return ""
	}
	return "disk contents changed"
}

var reqCases = []reqCase{
	{name: "read one sector", bufs: []virtiotest.Buf{R(hdr(VIRTIO_BLK_T_IN, 3)), W(512), W(1)},
		want: okStatus(orig[3*512 : 4*512])},
	{name: "read scattered and header split", bufs: []virtiotest.Buf{R(hdr(VIRTIO_BLK_T_IN, 1)[:7]), R(hdr(VIRTIO_BLK_T_IN, 1)[7:]), W(100), W(924), W(1)},
		want: okStatus(orig[512 : 3*512])},
	{name: "read last sector", bufs: []virtiotest.Buf{R(hdr(VIRTIO_BLK_T_IN, diskSectors-1)), W(512), W(1)},
		want: okStatus(orig[(diskSectors-1)*512:])},
	{name: "read past end", bufs: []virtiotest.Buf{R(hdr(VIRTIO_BLK_T_IN, diskSectors-1)), W(1024), W(1)},
		want: []byte{VIRTIO_BLK_S_IOERR}},
	{name: "read at capacity", bufs: []virtiotest.Buf{R(hdr(VIRTIO_BLK_T_IN, diskSectors)), W(512), W(1)},
		want: []byte{VIRTIO_BLK_S_IOERR}},
	{name: "read huge sector", bufs: []virtiotest.Buf{R(hdr(VIRTIO_BLK_T_IN, 1<<62)), W(512), W(1)},
		want: []byte{VIRTIO_BLK_S_IOERR}},
	{name: "read partial sector", bufs: []virtiotest.Buf{R(hdr(VIRTIO_BLK_T_IN, 0)), W(100), W(1)},
		want: []byte{VIRTIO_BLK_S_IOERR}},
	{name: "write", bufs: []virtiotest.Buf{R(hdr(VIRTIO_BLK_T_OUT, 2)), R(pattern(1024, 1)), W(1)},
		want: []byte{VIRTIO_BLK_S_OK},
		wantDisk: func(d *memDisk) string {
			return cmp.Diff(pattern(1024, 1), d.data[1024:2048])
		}},
	{name: "write read-only", cfg: Config{ReadOnly: true}, bufs: []virtiotest.Buf{R(hdr(VIRTIO_BLK_T_OUT, 2)), R(pattern(512, 1)), W(1)},
		want: []byte{VIRTIO_BLK_S_IOERR},
		wantDisk: func(d *memDisk) string {
			return unchanged(d)
		}},
	{name: "write past end", bufs: []virtiotest.Buf{R(hdr(VIRTIO_BLK_T_OUT, diskSectors)), R(pattern(512, 1)), W(1)},
		want: []byte{VIRTIO_BLK_S_IOERR},
		wantDisk: func(d *memDisk) string {
			return unchanged(d)
		}},
	{name: "write partial sector", bufs: []virtiotest.Buf{R(hdr(VIRTIO_BLK_T_OUT, 0)), R(pattern(10, 1)), W(1)},
		want: []byte{VIRTIO_BLK_S_IOERR}},
	{name: "flush", bufs: []virtiotest.Buf{R(hdr(VIRTIO_BLK_T_FLUSH, 0)), W(1)},
		want:     []byte{VIRTIO_BLK_S_OK},
		wantDisk: func(d *memDisk) string { return cmp.Diff(1, d.syncs) }},
	{name: "get id", cfg: Config{Serial: "msb-disk-0"}, bufs: []virtiotest.Buf{R(hdr(VIRTIO_BLK_T_GET_ID, 0)), W(20), W(1)},
		want: okStatus([]byte("msb-disk-0"), make([]byte, 10))},
	{name: "get id truncates serial", cfg: Config{Serial: "0123456789abcdefghijKLMNOP"}, bufs: []virtiotest.Buf{R(hdr(VIRTIO_BLK_T_GET_ID, 0)), W(20), W(1)},
		want: okStatus([]byte("0123456789abcdefghij"))},
	{name: "get id short buffer", cfg: Config{Serial: "msb-disk-0"}, bufs: []virtiotest.Buf{R(hdr(VIRTIO_BLK_T_GET_ID, 0)), W(4), W(1)},
		want: okStatus([]byte("msb-"))},
	{name: "discard", bufs: []virtiotest.Buf{R(hdr(VIRTIO_BLK_T_DISCARD, 0)), R(seg(4, 2, 0)), R(seg(10, 1, 0)), W(1)},
		want: []byte{VIRTIO_BLK_S_OK},
		wantDisk: func(d *memDisk) string {
			return cmp.Diff([][2]int64{{4 * 512, 1024}, {10 * 512, 512}}, d.discards)
		}},
	{name: "discard unmap flag", bufs: []virtiotest.Buf{R(hdr(VIRTIO_BLK_T_DISCARD, 0)), R(seg(4, 2, 1)), W(1)},
		want: []byte{VIRTIO_BLK_S_UNSUPP}},
	{name: "discard out of range leaves earlier segments alone", bufs: []virtiotest.Buf{R(hdr(VIRTIO_BLK_T_DISCARD, 0)), R(seg(4, 2, 0)), R(seg(diskSectors-1, 2, 0)), W(1)},
		want:     []byte{VIRTIO_BLK_S_IOERR},
		wantDisk: func(d *memDisk) string { return cmp.Diff([][2]int64(nil), d.discards) }},
	{name: "discard bad length", bufs: []virtiotest.Buf{R(hdr(VIRTIO_BLK_T_DISCARD, 0)), R(make([]byte, 15)), W(1)},
		want: []byte{VIRTIO_BLK_S_UNSUPP}},
	{name: "discard read-only", cfg: Config{ReadOnly: true}, bufs: []virtiotest.Buf{R(hdr(VIRTIO_BLK_T_DISCARD, 0)), R(seg(4, 2, 0)), W(1)},
		want: []byte{VIRTIO_BLK_S_IOERR}},
	{name: "discard unsupported backend", cfg: Config{Backend: noDiscard{&memDisk{data: make([]byte, diskSectors*512)}}},
		bufs: []virtiotest.Buf{R(hdr(VIRTIO_BLK_T_DISCARD, 0)), R(seg(4, 2, 0)), W(1)},
		want: []byte{VIRTIO_BLK_S_UNSUPP}},
	{name: "unknown type", bufs: []virtiotest.Buf{R(hdr(99, 0)), W(1)},
		want: []byte{VIRTIO_BLK_S_UNSUPP}},
	{name: "short header", bufs: []virtiotest.Buf{R(hdr(VIRTIO_BLK_T_IN, 0)[:8]), W(1)},
		want: []byte{VIRTIO_BLK_S_IOERR}},
	{name: "no writable status", bufs: []virtiotest.Buf{R(hdr(VIRTIO_BLK_T_FLUSH, 0))},
		want: nil},
	{name: "readable after writable", bufs: []virtiotest.Buf{R(hdr(VIRTIO_BLK_T_OUT, 0)), W(1), R(pattern(512, 1))},
		want:     []byte{VIRTIO_BLK_S_IOERR},
		wantDisk: func(d *memDisk) string { return unchanged(d) }},
}

func TestRequests(t *testing.T) {
	for _, tc := range reqCases {
		for _, indirect := range []bool{false, true} {
			name := tc.name
			if indirect {
				name += "/indirect"
			}
			t.Run(name, func(t *testing.T) {
				r := newRig(t, tc.cfg)
				got := r.do(t, indirect, tc.bufs...)
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("device wrote (-want +got):\n%s", diff)
				}
				if tc.wantDisk != nil {
					if diff := tc.wantDisk(r.disk); diff != "" {
						t.Errorf("disk state (-want +got):\n%s", diff)
					}
				}
			})
		}
	}
}

func TestRoundTrip(t *testing.T) {
	r := newRig(t, Config{})
	data := pattern(8*512, 0x33)
	if got := r.do(t, false, R(hdr(VIRTIO_BLK_T_OUT, 17)), R(data[:1000]), R(data[1000:]), W(1)); !bytes.Equal(got, []byte{0}) {
		t.Fatalf("write status = %x; want 00", got)
	}
	got := r.do(t, false, R(hdr(VIRTIO_BLK_T_IN, 17)), W(3000), W(8*512-3000), W(1))
	if diff := cmp.Diff(okStatus(data), got); diff != "" {
		t.Fatalf("read back (-want +got):\n%s", diff)
	}
	if r.IRQ.UsedCount(0) == 0 {
		t.Errorf("no used buffer notification")
	}
}

func TestConfigAndFeatures(t *testing.T) {
	tests := []struct {
		name        string
		cfg         Config
		wantRO      bool
		wantDiscard bool
	}{
		{"rw", Config{}, false, true},
		{"ro", Config{ReadOnly: true}, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Backend = &memDisk{}
			tc.cfg.SizeBytes = 10*512 + 100
			d, err := New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			f := d.Features()
			if got := f&(1<<VIRTIO_BLK_F_RO) != 0; got != tc.wantRO {
				t.Errorf("VIRTIO_BLK_F_RO = %v; want %v", got, tc.wantRO)
			}
			if got := f&(1<<VIRTIO_BLK_F_DISCARD) != 0; got != tc.wantDiscard {
				t.Errorf("VIRTIO_BLK_F_DISCARD = %v; want %v", got, tc.wantDiscard)
			}
			if f&(1<<VIRTIO_BLK_F_FLUSH) == 0 || f&(1<<virtio.VIRTIO_F_VERSION_1) == 0 {
				t.Errorf("features %#x lack FLUSH or VERSION_1", f)
			}
			b := make([]byte, 8)
			d.ReadConfig(0, b)
			if got := binary.LittleEndian.Uint64(b); got != 10 {
				t.Errorf("capacity = %d; want 10", got)
			}
			d.ReadConfig(1000, b)
			if !bytes.Equal(b, make([]byte, 8)) {
				t.Errorf("config past end = %x; want zeros", b)
			}
		})
	}
	if _, err := New(Config{}); !errors.Is(err, ErrConfig) {
		t.Errorf("New(no backend) error = %v; want ErrConfig", err)
	}
}

func TestFlushError(t *testing.T) {
	disk := &memDisk{data: make([]byte, 512), syncErr: errors.New("disk on fire")}
	r := newRig(t, Config{Backend: disk})
	if got := r.do(t, false, R(hdr(VIRTIO_BLK_T_FLUSH, 0)), W(1)); !bytes.Equal(got, []byte{VIRTIO_BLK_S_IOERR}) {
		t.Fatalf("flush status = %x; want IOERR", got)
	}
}

// FuzzBlkRequest sends one request built from fuzz input: readable bytes
// split into two descriptors at split, then wlen writable bytes. The
// device must answer without panicking and never write past the disk.
func FuzzBlkRequest(f *testing.F) {
	for _, tc := range reqCases {
		var rd []byte
		var wlen uint16
		for _, b := range tc.bufs {
			if b.Write {
				wlen += uint16(b.Len)
			} else {
				rd = append(rd, b.Data...)
			}
		}
		f.Add(rd, uint16(16), wlen, tc.cfg.ReadOnly)
	}
	f.Fuzz(func(t *testing.T, rd []byte, split, wlen uint16, ro bool) {
		disk := &memDisk{data: make([]byte, diskSectors*SectorSize)}
		dev, err := New(Config{Backend: disk, SizeBytes: uint64(len(disk.data)), ReadOnly: ro, Serial: "fuzz"})
		if err != nil {
			t.Fatal(err)
		}
		drv, q := virtiotest.NewQueue(t, 256<<10, 8, dev.Features())
		if len(rd) > 64<<10 {
			rd = rd[:64<<10]
		}
		bufs := virtiotest.SplitBufs(rd, int(split), uint32(wlen))
		if len(bufs) == 0 {
			return
		}
		c, err := virtiotest.PopChain(t, drv, q, bufs...)
		n := dev.handle(c, err)
		if uint64(n) > c.Writable.Len() {
			t.Fatalf("used len %d > writable %d", n, c.Writable.Len())
		}
		if len(disk.data) != diskSectors*SectorSize {
			t.Fatalf("disk grew to %d", len(disk.data))
		}
	})
}

func BenchmarkRead4K(b *testing.B) {
	disk := &memDisk{data: make([]byte, diskSectors*SectorSize)}
	dev, err := New(Config{Backend: disk, SizeBytes: uint64(len(disk.data))})
	if err != nil {
		b.Fatal(err)
	}
	drv, q := virtiotest.NewQueue(b, 1<<20, 8, dev.Features())
	head, err := drv.AddChain(R(hdr(VIRTIO_BLK_T_IN, 8)), W(4096), W(1))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(4096)
	for b.Loop() {
		c, ok, err := q.Pop()
		if !ok || err != nil {
			b.Fatalf("Pop = %v, %v", ok, err)
		}
		if err := q.Push(c.Head, dev.handle(c, nil)); err != nil {
			b.Fatal(err)
		}
		if err := drv.Publish(head); err != nil {
			b.Fatal(err)
		}
	}
}
