package vmm

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/msb-go/msb/internal/virtio/virtionet"
)

// streamBackend carries Ethernet frames over a stream socket, each frame
// preceded by its length as a 4-byte big-endian integer — the framing of
// QEMU's stream/socket netdev, which machine.Net specifies so that both
// backends talk to the same host network stack.
//
// A reader goroutine, owned by the backend and stopped by Close, decodes
// frames into a bounded channel; ReadFrame takes from it, so cancelling a
// ReadFrame never leaves the stream in the middle of a frame.
type streamBackend struct {
	conn io.ReadWriteCloser

	// wmu serialises frame writes and protects wbuf.
	wmu  sync.Mutex
	wbuf []byte

	frames chan []byte
	done   chan struct{} // closed when the reader returns
	// err is the reader's terminal error, readable after done is closed.
	err error
}

// Frame bounds: a frame larger than maxStreamFrame means the peer is
// broken (the largest is a TSO frame from the guest: the largest IP packet
// behind an Ethernet header), and the queue bounds buffered memory to
// streamQueue*maxStreamFrame.
const (
	maxStreamFrame = 65535 + 14
	streamQueue    = 64
)

// ErrFrameTooBig reports a length prefix beyond maxStreamFrame.
var ErrFrameTooBig = errors.New("stream frame too big")

var _ virtionet.Backend = (*streamBackend)(nil)

func newStreamBackend(conn io.ReadWriteCloser) *streamBackend {
	s := &streamBackend{conn: conn, frames: make(chan []byte, streamQueue), done: make(chan struct{})}
	go s.read()
	return s
}

func (s *streamBackend) read() {
	defer close(s.done)
	// Buffered: two read(2) calls per frame (length, then body) cost more
	// than the copy.
	r := bufio.NewReaderSize(s.conn, 64<<10)
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			s.err = err
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > maxStreamFrame {
			s.err = fmt.Errorf("frame of %d bytes: %w", n, ErrFrameTooBig)
			return
		}
		f := make([]byte, n)
		if _, err := io.ReadFull(r, f); err != nil {
			s.err = err
			return
		}
		s.frames <- f
	}
}

// WriteFrame implements virtionet.Backend.
func (s *streamBackend) WriteFrame(ctx context.Context, frame []byte) error {
	if len(frame) > maxStreamFrame {
		return fmt.Errorf("write frame of %d bytes: %w", len(frame), ErrFrameTooBig)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.wbuf = binary.BigEndian.AppendUint32(s.wbuf[:0], uint32(len(frame)))
	s.wbuf = append(s.wbuf, frame...)
	if _, err := s.conn.Write(s.wbuf); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	return nil
}

// ReadFrame implements virtionet.Backend. A frame longer than frame is
// dropped, as the interface requires.
func (s *streamBackend) ReadFrame(ctx context.Context, frame []byte) (int, error) {
	for {
		select {
		case f := <-s.frames:
			if len(f) > len(frame) {
				continue
			}
			return copy(frame, f), nil
		case <-s.done:
			// Deliver what was decoded before the stream ended.
			select {
			case f := <-s.frames:
				if len(f) <= len(frame) {
					return copy(frame, f), nil
				}
				continue
			default:
			}
			return 0, fmt.Errorf("read frame: %w", s.err)
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// Close closes the connection and waits for the reader, draining the queue
// so that a reader blocked on a full queue can observe the closed stream.
func (s *streamBackend) Close() error {
	err := s.conn.Close()
	for {
		select {
		case <-s.frames:
		case <-s.done:
			return err
		}
	}
}
