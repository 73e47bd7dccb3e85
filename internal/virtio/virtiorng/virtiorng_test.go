package virtiorng

import (
	"bytes"
	"testing"

	"go.uber.org/goleak"

	"github.com/msb-go/msb/internal/virtio/virtiotest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestFill(t *testing.T) {
	tests := []struct {
		name     string
		bufs     []uint32
		readable bool
		want     uint32
	}{
		{"one buffer", []uint32{64}, false, 64},
		{"scattered", []uint32{3, 5, 7}, false, 15},
		{"capped per request", []uint32{MaxBytesPerRequest, 4096}, false, MaxBytesPerRequest},
		{"readable only", nil, true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := New()
			defer d.Close()
			r := virtiotest.NewRig(t, d, virtiotest.Options{})
			var bufs []virtiotest.Buf
			for _, n := range tc.bufs {
				bufs = append(bufs, virtiotest.Writable(n))
			}
			if tc.readable {
				bufs = append(bufs, virtiotest.Readable([]byte{1, 2, 3}))
			}
			rp := r.Do(0, bufs...)
			if rp.Len != tc.want {
				t.Fatalf("used = %+v; want len %d", rp.Used, tc.want)
			}
			got := rp.Data()
			if len(got) >= 16 && bytes.Equal(got[:16], make([]byte, 16)) {
				t.Errorf("entropy starts with 16 zero bytes: %x", got[:16])
			}
			if r.IRQ.UsedCount(0) == 0 {
				t.Errorf("no used buffer notification")
			}
		})
	}
}

func TestBadAvailIdxNeedsReset(t *testing.T) {
	d := New()
	defer d.Close()
	r := virtiotest.NewRig(t, d, virtiotest.Options{})
	if err := r.Drivers[0].SetAvailIdx(1000); err != nil {
		t.Fatal(err)
	}
	r.Notify(0)
	if r.WaitNeedsReset() == nil {
		t.Fatal("NeedsReset not called for avail idx 1000 ahead")
	}
}

func TestNotifyBeforeActivateAndAfterReset(t *testing.T) {
	d := New()
	d.QueueNotify(0) // must not block or panic
	d.Reset()
	d.QueueNotify(0)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

// FuzzRngRequest hands the device guest-shaped chains (readable bytes, a
// split into buffers, a writable length): it never reports more bytes than
// the chain can hold nor more than MaxBytesPerRequest.
func FuzzRngRequest(f *testing.F) {
	f.Add([]byte{}, uint16(0), uint32(64))
	f.Add([]byte{1, 2, 3}, uint16(1), uint32(0))
	f.Add([]byte{}, uint16(0), uint32(MaxBytesPerRequest+4096))
	f.Fuzz(func(t *testing.T, rd []byte, split uint16, wlen uint32) {
		d := New()
		defer d.Close()
		drv, q := virtiotest.NewQueue(t, 256<<10, 8, d.Features())
		if len(rd) > 16<<10 {
			rd = rd[:16<<10]
		}
		wlen %= 128 << 10
		bufs := virtiotest.SplitBufs(rd, int(split), wlen)
		if len(bufs) == 0 {
			return
		}
		c, err := virtiotest.PopChain(t, drv, q, bufs...)
		n := d.handle(c, err)
		if uint64(n) > c.Writable.Len() || n > MaxBytesPerRequest {
			t.Fatalf("used len %d; writable %d, cap %d", n, c.Writable.Len(), MaxBytesPerRequest)
		}
	})
}
