package vmm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

func TestStreamBackend(t *testing.T) {
	host, peer := net.Pipe()
	defer peer.Close()
	s := newStreamBackend(host)
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()

	// Guest → host: each frame gets a big-endian length prefix.
	go func() { _ = s.WriteFrame(ctx, []byte("hello")) }()
	got := make([]byte, 9)
	if _, err := io.ReadFull(peer, got); err != nil {
		t.Fatal(err)
	}
	if want := []byte{0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'}; !bytes.Equal(got, want) {
		t.Errorf("peer read % x; want % x", got, want)
	}

	// Host → guest: an oversized frame is dropped, the next delivered.
	go func() {
		var b []byte
		b = binary.BigEndian.AppendUint32(b, 10)
		b = append(b, "0123456789"...)
		b = binary.BigEndian.AppendUint32(b, 3)
		b = append(b, "abc"...)
		peer.Write(b)
	}()
	frame := make([]byte, 8)
	n, err := s.ReadFrame(ctx, frame)
	if err != nil || string(frame[:n]) != "abc" {
		t.Errorf("ReadFrame = %q, %v; want \"abc\" (10-byte frame dropped)", frame[:n], err)
	}

	// Cancellation returns without consuming the stream.
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if _, err := s.ReadFrame(cctx, frame); !errors.Is(err, context.Canceled) {
		t.Errorf("ReadFrame(cancelled) = %v; want context.Canceled", err)
	}
}

func TestStreamBackendRejectsHugeFrame(t *testing.T) {
	host, peer := net.Pipe()
	defer peer.Close()
	s := newStreamBackend(host)
	defer s.Close()
	go peer.Write(binary.BigEndian.AppendUint32(nil, maxStreamFrame+1))
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := s.ReadFrame(ctx, make([]byte, 100)); !errors.Is(err, ErrFrameTooBig) {
		t.Errorf("ReadFrame after huge prefix = %v; want ErrFrameTooBig", err)
	}
	if err := s.WriteFrame(ctx, make([]byte, maxStreamFrame+1)); !errors.Is(err, ErrFrameTooBig) {
		t.Errorf("WriteFrame(huge) = %v; want ErrFrameTooBig", err)
	}
}

func TestStreamBackendCloseUnblocksFullQueue(t *testing.T) {
	host, peer := net.Pipe()
	s := newStreamBackend(host)
	go func() {
		frame := binary.BigEndian.AppendUint32(nil, 1)
		frame = append(frame, 'x')
		for range streamQueue + 10 {
			if _, err := peer.Write(frame); err != nil {
				return
			}
		}
	}()
	time.Sleep(20 * time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked with a full frame queue")
	}
	peer.Close()
}

// byteConn is a stream holding fixed bytes; writes are discarded.
type byteConn struct{ *bytes.Reader }

func (byteConn) Write(p []byte) (int, error) { return len(p), nil }
func (byteConn) Close() error                { return nil }

// FuzzStreamBackend decodes arbitrary bytes as the length-prefixed frame
// stream: frames come out in order, within maxStreamFrame, and a bad or cut
// stream ends in an error, never a panic or a hang.
func FuzzStreamBackend(f *testing.F) {
	var two []byte
	two = binary.BigEndian.AppendUint32(two, 3)
	two = append(two, "abc"...)
	two = binary.BigEndian.AppendUint32(two, 0)
	f.Add(two)
	f.Add(binary.BigEndian.AppendUint32(nil, maxStreamFrame+1))
	f.Add([]byte{0, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newStreamBackend(byteConn{bytes.NewReader(data)})
		defer s.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		buf := make([]byte, maxStreamFrame)
		total := 0
		for {
			n, err := s.ReadFrame(ctx, buf)
			if err != nil {
				if errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("ReadFrame hung on %d bytes", len(data))
				}
				return
			}
			total += 4 + n
			if n > maxStreamFrame || total > len(data) {
				t.Fatalf("frame of %d bytes (total %d) from %d bytes of input", n, total, len(data))
			}
		}
	})
}
