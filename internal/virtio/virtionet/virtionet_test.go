package virtionet

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/msb-go/msb/internal/virtio"
	"github.com/msb-go/msb/internal/virtio/virtiotest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// chanBackend is a Backend over channels.
type chanBackend struct {
	toGuest   chan []byte
	fromGuest chan []byte
}

func newChanBackend() *chanBackend {
	return &chanBackend{toGuest: make(chan []byte, 16), fromGuest: make(chan []byte, 16)}
}

func (b *chanBackend) WriteFrame(ctx context.Context, f []byte) error {
	select {
	case b.fromGuest <- bytes.Clone(f):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *chanBackend) ReadFrame(ctx context.Context, f []byte) (int, error) {
	select {
	case fr := <-b.toGuest:
		return copy(f, fr), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

var mac = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}

func ethFrame(n int, seed byte) []byte {
	f := make([]byte, n)
	for i := range f {
		f[i] = byte(i) + seed
	}
	return f
}

func netHdr(flags, gso byte) []byte {
	h := make([]byte, HeaderSize)
	h[0], h[1] = flags, gso
	return h
}

type rig struct {
	*virtiotest.Rig
	dev *Device
	be  *chanBackend
}

// plainFeatures are the device's features without the transmit offloads.
const plainFeatures = virtio.CommonFeatures | 1<<VIRTIO_NET_F_MAC | 1<<VIRTIO_NET_F_STATUS | 1<<VIRTIO_NET_F_MTU

func newRig(t *testing.T) rig { return newRigFeatures(t, 0) }

// newRigFeatures negotiates features (zero: all the device offers).
func newRigFeatures(t *testing.T, features uint64) rig {
	t.Helper()
	be := newChanBackend()
	dev, err := New(Config{Backend: be, MAC: mac})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	return rig{Rig: virtiotest.NewRig(t, dev, virtiotest.Options{MemoryBytes: 2 << 20, Features: features}), dev: dev, be: be}
}

// tcpFrame returns an Ethernet frame carrying an IPv4 TCP segment with
// payload bytes, whose TCP checksum field holds only the pseudo-header sum
// (what a driver leaves for NEEDS_CSUM), and the offsets the header names.
func tcpFrame(payload int) (f []byte, csumStart, csumOffset uint16) {
	const eth, ip, tcp = 14, 20, 20
	f = ethFrame(eth+ip+tcp+payload, 7)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	binary.BigEndian.PutUint16(f[eth+2:], uint16(ip+tcp+payload))
	f[eth+9] = 6 // TCP
	var pseudo [12]byte
	copy(pseudo[:8], f[eth+12:eth+20])
	pseudo[9] = 6
	binary.BigEndian.PutUint16(pseudo[10:], uint16(tcp+payload))
	binary.BigEndian.PutUint16(f[eth+ip+16:], onesSum(pseudo[:]))
	return f, eth + ip, 16
}

// tcpChecksumOK reports whether f's TCP checksum is right, pseudo-header
// included.
func tcpChecksumOK(f []byte) bool {
	const eth, ip = 14, 20
	seg := f[eth+ip:]
	pseudo := make([]byte, 12, 12+len(seg)+1)
	copy(pseudo[:8], f[eth+12:eth+20])
	pseudo[9] = 6
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(seg)))
	return onesSum(append(pseudo, seg...)) == 0xffff
}

func csumHdr(gso byte, start, offset uint16) []byte {
	h := netHdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, gso)
	binary.LittleEndian.PutUint16(h[6:], start)
	binary.LittleEndian.PutUint16(h[8:], offset)
	return h
}

func TestTransmitOffload(t *testing.T) {
	small, start, off := tcpFrame(100)
	big, _, _ := tcpFrame(60000)
	odd, _, _ := tcpFrame(101)
	tests := []struct {
		name     string
		features uint64 // zero: everything offered
		hdr      []byte
		frame    []byte
		sent     bool
	}{
		{"checksum completed", 0, csumHdr(0, start, off), small, true},
		{"checksum of odd length", 0, csumHdr(0, start, off), odd, true},
		{"tso4 frame passed whole", 0, csumHdr(VIRTIO_NET_HDR_GSO_TCPV4, start, off), big, true},
		{"tso with ecn", 0, csumHdr(VIRTIO_NET_HDR_GSO_TCPV4|VIRTIO_NET_HDR_GSO_ECN, start, off), big, true},
		{"tso-sized frame without gso", 0, csumHdr(0, start, off), big, false},
		{"tso without needs_csum", 0, netHdr(0, VIRTIO_NET_HDR_GSO_TCPV4), big, false},
		{"ecn without gso", 0, csumHdr(VIRTIO_NET_HDR_GSO_ECN, start, off), small, false},
		{"udp gso", 0, csumHdr(3, start, off), small, false},
		{"csum_offset past the end", 0, csumHdr(0, start, uint16(len(small))-start-1), small, false},
		{"csum_start past the end", 0, csumHdr(0, uint16(len(small)), 0), small, false},
		{"tso not negotiated", plainFeatures | 1<<VIRTIO_NET_F_CSUM, csumHdr(VIRTIO_NET_HDR_GSO_TCPV4, start, off), big, false},
		{"csum not negotiated", plainFeatures, csumHdr(0, start, off), small, false},
		{"ecn not negotiated", plainFeatures | 1<<VIRTIO_NET_F_CSUM | 1<<VIRTIO_NET_F_HOST_TSO4, csumHdr(VIRTIO_NET_HDR_GSO_TCPV4|VIRTIO_NET_HDR_GSO_ECN, start, off), big, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRigFeatures(t, tc.features)
			r.Do(txQueue, virtiotest.Readable(tc.hdr), virtiotest.Readable(tc.frame))
			var got []byte
			select {
			case got = <-r.be.fromGuest:
			default:
			}
			if (got != nil) != tc.sent {
				t.Fatalf("frame sent = %v; want %v (stats %+v)", got != nil, tc.sent, r.dev.Stats())
			}
			if got == nil {
				return
			}
			if len(got) != len(tc.frame) {
				t.Errorf("sent %d bytes; want %d", len(got), len(tc.frame))
			}
			if !tcpChecksumOK(got) {
				t.Errorf("TCP checksum of the sent frame is wrong")
			}
		})
	}
}

func TestTransmit(t *testing.T) {
	tests := []struct {
		name string
		bufs []virtiotest.Buf
		want []byte // nil: dropped
	}{
		{"frame", []virtiotest.Buf{virtiotest.Readable(append(netHdr(0, 0), ethFrame(60, 1)...))}, ethFrame(60, 1)},
		{"header and frame split", []virtiotest.Buf{virtiotest.Readable(netHdr(0, 0)[:5]), virtiotest.Readable(netHdr(0, 0)[5:]), virtiotest.Readable(ethFrame(1514, 2))}, ethFrame(1514, 2)},
		{"vlan-sized frame", []virtiotest.Buf{virtiotest.Readable(netHdr(0, 0)), virtiotest.Readable(ethFrame(1518, 3))}, ethFrame(1518, 3)},
		{"too long", []virtiotest.Buf{virtiotest.Readable(netHdr(0, 0)), virtiotest.Readable(ethFrame(1519, 3))}, nil},
		{"too short", []virtiotest.Buf{virtiotest.Readable(netHdr(0, 0)), virtiotest.Readable(ethFrame(13, 3))}, nil},
		{"short header", []virtiotest.Buf{virtiotest.Readable(netHdr(0, 0)[:10])}, nil},
		{"needs csum not negotiated", []virtiotest.Buf{virtiotest.Readable(netHdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0)), virtiotest.Readable(ethFrame(60, 1))}, nil},
		{"gso not negotiated", []virtiotest.Buf{virtiotest.Readable(netHdr(0, 1)), virtiotest.Readable(ethFrame(60, 1))}, nil},
		{"writable after readable is fine", []virtiotest.Buf{virtiotest.Readable(netHdr(0, 0)), virtiotest.Readable(ethFrame(60, 4)), virtiotest.Writable(4)}, ethFrame(60, 4)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRigFeatures(t, plainFeatures)
			if rp := r.Do(txQueue, tc.bufs...); rp.Len != 0 {
				t.Errorf("used = %+v; want len 0", rp.Used)
			}
			var got []byte
			select {
			case got = <-r.be.fromGuest:
			default:
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("backend got (-want +got):\n%s", diff)
			}
			st := r.dev.Stats()
			if tc.want == nil && st.TxDropped != 1 || tc.want != nil && st.TxFrames != 1 {
				t.Errorf("stats = %+v", st)
			}
		})
	}
}

func TestReceive(t *testing.T) {
	r := newRig(t)
	frames := [][]byte{ethFrame(60, 1), ethFrame(1514, 2)}
	for _, f := range frames {
		r.be.toGuest <- f
	}
	// Frames wait for buffers; post them afterwards.
	time.Sleep(10 * time.Millisecond)
	var heads []uint16
	for range frames {
		heads = append(heads, r.Push(rxQueue, virtiotest.Writable(HeaderSize+1000), virtiotest.Writable(600)))
	}
	for i, rp := range r.WaitUsed(rxQueue, len(frames)) {
		if rp.ID != uint32(heads[i]) {
			t.Errorf("used[%d].ID = %d; want %d", i, rp.ID, heads[i])
		}
		got := rp.Data()
		wantHdr := make([]byte, HeaderSize)
		binary.LittleEndian.PutUint16(wantHdr[10:], 1)
		if diff := cmp.Diff(append(wantHdr, frames[i]...), got); diff != "" {
			t.Errorf("frame %d (-want +got):\n%s", i, diff)
		}
	}
	if r.IRQ.UsedCount(rxQueue) == 0 {
		t.Errorf("no used buffer notification on rx")
	}
	// A buffer too small for the frame drops the frame, not the device.
	r.be.toGuest <- ethFrame(1000, 9)
	if rp := r.Do(rxQueue, virtiotest.Writable(100)); rp.Len != 0 {
		t.Errorf("small buffer used = %+v; want len 0", rp.Used)
	}
	if st := r.dev.Stats(); st.RxFrames != 2 || st.RxDropped != 1 {
		t.Errorf("stats = %+v; want 2 rx, 1 dropped", st)
	}
}

// TestHeaderLength checks both header layouts on both queues: 12 bytes
// with VERSION_1 (the native VMM), 10 without it or MRG_RXBUF (a legacy
// driver: Linux behind QEMU's legacy virtio-mmio, served over vhost-user).
// A device that assumed the wrong one would shift every frame by 2 bytes.
func TestHeaderLength(t *testing.T) {
	tests := []struct {
		name     string
		features uint64
		hdrLen   int
	}{
		{"version 1", plainFeatures, HeaderSize},
		{"legacy", plainFeatures &^ (1 << virtio.VIRTIO_F_VERSION_1), LegacyHeaderSize},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRigFeatures(t, tc.features)
			frame := ethFrame(200, 5)
			r.Do(txQueue, virtiotest.Readable(append(make([]byte, tc.hdrLen), frame...)))
			var got []byte
			select {
			case got = <-r.be.fromGuest:
			default:
			}
			if diff := cmp.Diff(frame, got); diff != "" {
				t.Errorf("transmitted frame (-want +got):\n%s", diff)
			}

			r.be.toGuest <- frame
			rp := r.Do(rxQueue, virtiotest.Writable(uint32(HeaderSize+len(frame))))
			want := make([]byte, tc.hdrLen)
			if tc.hdrLen == HeaderSize {
				binary.LittleEndian.PutUint16(want[10:], 1) // num_buffers
			}
			if diff := cmp.Diff(append(want, frame...), rp.Data()); diff != "" {
				t.Errorf("received buffer (-want +got):\n%s", diff)
			}
		})
	}
}

// flushBackend records, for each Flush, how many frames had been written.
type flushBackend struct {
	*chanBackend
	mu      sync.Mutex
	written int
	flushes []int
}

func (b *flushBackend) WriteFrame(ctx context.Context, f []byte) error {
	b.mu.Lock()
	b.written++
	b.mu.Unlock()
	return b.chanBackend.WriteFrame(ctx, f)
}

func (b *flushBackend) Flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushes = append(b.flushes, b.written)
}

// TestTransmitFlushes: a Flusher backend is flushed once the chains the
// driver made available are handed over, not after each of them, so the
// host stack can merge a batch.
func TestTransmitFlushes(t *testing.T) {
	be := &flushBackend{chanBackend: newChanBackend()}
	dev, err := New(Config{Backend: be, MAC: mac})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	r := virtiotest.NewRig(t, dev, virtiotest.Options{MemoryBytes: 2 << 20, Features: plainFeatures})
	for i := range 3 {
		r.Push(txQueue, virtiotest.Readable(append(netHdr(0, 0), ethFrame(60, byte(i))...)))
	}
	r.Notify(txQueue)
	r.WaitUsed(txQueue, 3)
	deadline := time.Now().Add(5 * time.Second)
	for {
		be.mu.Lock()
		flushes := slices.Clone(be.flushes)
		be.mu.Unlock()
		if len(flushes) > 0 && flushes[len(flushes)-1] == 3 {
			// Every flush came after a drain: never between the three
			// frames of one notification unless the device saw them in
			// two drains (an activation drain may precede the notify).
			for _, n := range flushes {
				if n != 0 && n != 3 {
					t.Errorf("flushes after %v frames; want after 0 or all 3", flushes)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("flushes after %v frames; want one after all 3", flushes)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestConfig(t *testing.T) {
	be := newChanBackend()
	if _, err := New(Config{MAC: mac}); !errors.Is(err, ErrConfig) {
		t.Errorf("New(no backend) = %v; want ErrConfig", err)
	}
	if _, err := New(Config{Backend: be, MAC: mac[:3]}); !errors.Is(err, ErrConfig) {
		t.Errorf("New(short MAC) = %v; want ErrConfig", err)
	}
	d, err := New(Config{Backend: be, MAC: mac, MTU: 9000})
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, configSize)
	d.ReadConfig(0, b)
	want := append(append([]byte{}, mac...), 1, 0, 0, 0, 0x28, 0x23)
	if diff := cmp.Diff(want, b); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	want64 := uint64(1<<VIRTIO_NET_F_MAC | 1<<VIRTIO_NET_F_CSUM | 1<<VIRTIO_NET_F_HOST_TSO4 | 1<<VIRTIO_NET_F_HOST_TSO6)
	if f := d.Features(); f&want64 != want64 || f&(1<<VIRTIO_NET_F_GUEST_CSUM) != 0 || f&(1<<VIRTIO_NET_F_MRG_RXBUF) != 0 {
		t.Errorf("features = %#x; want MAC, CSUM and HOST_TSO4/6, nothing on receive", f)
	}
}

// FuzzNetHeader sends a transmit chain made of a fuzzed header and a frame
// of frameLen bytes, under the features the native VMM negotiates (12-byte
// header) or a legacy driver's (10 bytes, no VERSION_1: QEMU's legacy
// virtio-mmio over vhost-user): the device must not panic and may pass on
// only frames with a valid header and size.
func FuzzNetHeader(f *testing.F) {
	f.Add(netHdr(0, 0), uint16(60), false)
	f.Add(netHdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0), uint16(60), false)
	f.Add(netHdr(0, 1), uint16(60), false)
	f.Add(netHdr(0, 0)[:10], uint16(0), false)
	f.Add(netHdr(0, 0), uint16(1519), false)
	f.Add(netHdr(0, 0), uint16(13), false)
	f.Add(csumHdr(VIRTIO_NET_HDR_GSO_TCPV4, 34, 16), uint16(9000), false)
	f.Add(csumHdr(0, 34, 16), uint16(100), false)
	f.Add(csumHdr(0, 200, 16), uint16(100), false)
	f.Add(netHdr(0, 0)[:10], uint16(60), true)
	f.Add(csumHdr(VIRTIO_NET_HDR_GSO_TCPV4, 34, 16)[:10], uint16(9000), true)
	f.Fuzz(func(t *testing.T, hdr []byte, frameLen uint16, legacy bool) {
		be := newChanBackend()
		dev, err := New(Config{Backend: be, MAC: mac})
		if err != nil {
			t.Fatal(err)
		}
		drv, q := virtiotest.NewQueue(t, 256<<10, 4, dev.Features())
		if len(hdr) > 64 {
			hdr = hdr[:64]
		}
		bufs := []virtiotest.Buf{virtiotest.Readable(hdr)}
		if frameLen > 0 {
			bufs = append(bufs, virtiotest.Readable(ethFrame(int(frameLen), 0)))
		}
		if len(hdr) == 0 && frameLen == 0 {
			return
		}
		c, err := virtiotest.PopChain(t, drv, q, bufs...)
		features := dev.Features()
		if legacy {
			features &^= 1 << virtio.VIRTIO_F_VERSION_1
		}
		hdrLen := headerLen(features)
		dev.transmit(context.Background(), c, err, features, hdrLen)
		var got []byte
		select {
		case got = <-be.fromGuest:
		default:
		}
		// The header may continue into the frame's descriptor (§2.7.4:
		// framing is independent of descriptor boundaries).
		all := append(bytes.Clone(hdr), ethFrame(int(frameLen), 0)...)
		h, err := parseHeader(all[:min(len(all), hdrLen)], features)
		total := len(all) - hdrLen
		limit := 1518
		if h.gsoType != VIRTIO_NET_HDR_GSO_NONE {
			limit = maxTSOFrame
		}
		wantSent := err == nil && total >= ethHeader && total <= limit
		if wantSent && h.flags&VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
			wantSent = int(h.csumStart) < total && int(h.csumOffset) <= total-int(h.csumStart)-2
		}
		if (got != nil) != wantSent {
			t.Fatalf("sent = %v; want %v (hdr %x, frame %d)", got != nil, wantSent, hdr, frameLen)
		}
	})
}
