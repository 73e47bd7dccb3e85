package virtiorng

import (
	"bytes"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/msb-go/msb/internal/virtio"
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
			mem, err := virtiotest.NewMemory(0x10000, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			drv, err := mem.NewDriver(16)
			if err != nil {
				t.Fatal(err)
			}
			q, err := drv.Queue(virtio.CommonFeatures)
			if err != nil {
				t.Fatal(err)
			}
			d := New()
			defer d.Close()
			var irq virtiotest.Interrupt
			if err := d.Activate(mem.Memory, virtio.CommonFeatures, []*virtio.Queue{q}, &irq); err != nil {
				t.Fatal(err)
			}
			var bufs []virtiotest.Buf
			for _, n := range tc.bufs {
				bufs = append(bufs, virtiotest.Writable(n))
			}
			if tc.readable {
				bufs = append(bufs, virtiotest.Readable([]byte{1, 2, 3}))
			}
			head, err := drv.AddChain(bufs...)
			if err != nil {
				t.Fatal(err)
			}
			d.QueueNotify(0)
			used, err := drv.WaitUsed(1, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if used[0].ID != uint32(head) || used[0].Len != tc.want {
				t.Fatalf("used = %+v; want id %d len %d", used[0], head, tc.want)
			}
			got, err := drv.Written(head, used[0].Len)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) >= 16 && bytes.Equal(got[:16], make([]byte, 16)) {
				t.Errorf("entropy starts with 16 zero bytes: %x", got[:16])
			}
			if irq.UsedCount(0) == 0 {
				t.Errorf("no used buffer notification")
			}
		})
	}
}

func TestBadAvailIdxNeedsReset(t *testing.T) {
	mem, err := virtiotest.NewMemory(0x10000, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	drv, err := mem.NewDriver(16)
	if err != nil {
		t.Fatal(err)
	}
	q, err := drv.Queue(virtio.CommonFeatures)
	if err != nil {
		t.Fatal(err)
	}
	d := New()
	defer d.Close()
	var irq virtiotest.Interrupt
	if err := d.Activate(mem.Memory, virtio.CommonFeatures, []*virtio.Queue{q}, &irq); err != nil {
		t.Fatal(err)
	}
	if err := drv.SetAvailIdx(1000); err != nil {
		t.Fatal(err)
	}
	d.QueueNotify(0)
	deadline := time.Now().Add(5 * time.Second)
	for irq.ResetErr() == nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if irq.ResetErr() == nil {
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
