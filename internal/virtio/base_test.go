package virtio_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/msb-go/msb/internal/virtio"
)

func TestBaseConfig(t *testing.T) {
	var b virtio.Base
	b.Init([]uint16{8, 16}, []byte{1, 2, 3, 4})
	tests := []struct {
		offset uint64
		n      int
		want   []byte
	}{
		{0, 4, []byte{1, 2, 3, 4}},
		{2, 4, []byte{3, 4, 0, 0}},
		{4, 2, []byte{0, 0}},
		{1 << 63, 2, []byte{0, 0}},
	}
	for _, tc := range tests {
		got := []byte{0xff, 0xff, 0xff, 0xff}[:tc.n]
		b.ReadConfig(tc.offset, got)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ReadConfig(%d, %d bytes) (-want +got):\n%s", tc.offset, tc.n, diff)
		}
	}
	b.WriteConfig(0, []byte{9})
	got := make([]byte, 1)
	if b.ReadConfig(0, got); got[0] != 1 {
		t.Errorf("config[0] after WriteConfig = %d; want 1 (read-only)", got[0])
	}
	sizes := b.QueueMaxSizes()
	sizes[0] = 0
	if diff := cmp.Diff([]uint16{8, 16}, b.QueueMaxSizes()); diff != "" {
		t.Errorf("QueueMaxSizes after the caller changed its copy (-want +got):\n%s", diff)
	}
}

// TestBaseLifecycle runs two activations: notifications outside one are
// ignored, QueueNotify reaches the activation's kick, and Reset waits for
// the goroutines after cancelling their context.
func TestBaseLifecycle(t *testing.T) {
	var b virtio.Base
	b.Init([]uint16{4, 4}, nil)
	b.QueueNotify(0) // before any activation: ignored
	for round := range 2 {
		kick := b.Kick(1)
		woken, stopped := make(chan struct{}), make(chan struct{})
		b.Go(func(ctx context.Context) {
			defer close(stopped)
			select {
			case <-kick:
				close(woken)
			case <-ctx.Done():
				return
			}
			<-ctx.Done()
		})
		b.QueueNotify(-1)
		b.QueueNotify(2)
		b.QueueNotify(1)
		select {
		case <-woken:
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: QueueNotify(1) did not wake the goroutine", round)
		}
		b.Reset()
		select {
		case <-stopped:
		default:
			t.Fatalf("round %d: Reset returned before the goroutine", round)
		}
		b.QueueNotify(1) // after Reset: ignored
		if len(kick) != 0 {
			t.Errorf("round %d: QueueNotify after Reset reached the old kick", round)
		}
	}
	b.Serve(0, nil, nil, nil) // a queue the driver did not enable
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b.Wait()
}
