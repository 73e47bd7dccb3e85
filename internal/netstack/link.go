package netstack

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

const (
	// frameHeaderLen is the big-endian length that precedes every frame
	// (QEMU's -netdev stream framing, also spoken by the native VMM).
	frameHeaderLen = 4
	// maxFrameLen bounds a frame: the largest IP packet plus an Ethernet
	// header. A longer length cannot be skipped safely (the guest may be
	// lying about it), so it ends the stream.
	maxFrameLen = 65535 + header.EthernetMinimumSize

	// outQueueLen is the stack-to-guest packet queue. Overflow is silent
	// loss that TCP recovers from, so it only needs to absorb a burst: 1024
	// MTU-sized packets (about 1.5 MiB) covers a full default TCP window
	// towards a guest whose stream writer is momentarily stalled, and bounds
	// what a slow guest can pin in host memory.
	outQueueLen = 1024
)

// errFrameTooLong ends a stream whose length prefix exceeds maxFrameLen.
var errFrameTooLong = errors.New("frame length exceeds maximum")

// frameReader reads length-prefixed frames into one buffer of maxFrameLen
// bytes allocated up front, so nothing the guest sends sizes an allocation.
type frameReader struct {
	r   io.Reader
	hdr [frameHeaderLen]byte
	buf []byte
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: r, buf: make([]byte, maxFrameLen)}
}

// next returns the next frame, valid until the following call. A zero-length
// frame is returned as an empty slice (the caller counts it as malformed).
// io.EOF is returned only at a frame boundary.
func (fr *frameReader) next() ([]byte, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(fr.hdr[:])
	if n > maxFrameLen {
		return nil, fmt.Errorf("read frame: length %d: %w", n, errFrameTooLong)
	}
	f := fr.buf[:n]
	if _, err := io.ReadFull(fr.r, f); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read frame: %w", err)
	}
	return f, nil
}

// frameWriter writes packets from a channel endpoint as length-prefixed
// frames. It is used by one goroutine only.
type frameWriter struct {
	w   io.Writer
	buf []byte
}

// write writes pkt as one frame (one Write call, so a datagram-ish conn sees
// whole frames) and returns the frame length.
func (fw *frameWriter) write(pkt *stack.PacketBuffer) (int, error) {
	n := pkt.Size()
	if n > maxFrameLen {
		return 0, nil // cannot happen with our MTU; never send what the peer must reject
	}
	need := frameHeaderLen + n
	if cap(fw.buf) < need {
		fw.buf = make([]byte, need, max(need, 2048))
	}
	b := fw.buf[:frameHeaderLen]
	binary.BigEndian.PutUint32(b, uint32(n))
	for _, s := range pkt.AsSlices() {
		b = append(b, s...)
	}
	fw.buf = b
	if _, err := fw.w.Write(b); err != nil {
		return 0, fmt.Errorf("write frame: %w", err)
	}
	return n, nil
}

// writeLoop moves packets the stack queued on ep to w until ctx ends or w
// fails. sent is called with each frame's length.
func writeLoop(ctx context.Context, ep *channel.Endpoint, w io.Writer, sent func(int)) error {
	fw := &frameWriter{w: w}
	for {
		pkt := ep.ReadContext(ctx)
		if pkt == nil {
			return nil // ctx done
		}
		n, err := fw.write(pkt)
		pkt.DecRef()
		if err != nil {
			return err
		}
		if sent != nil {
			sent(n)
		}
	}
}

// injectFrame hands a copy of an Ethernet frame to the stack behind ep.
func injectFrame(ep *channel.Endpoint, frame []byte) {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		Payload: buffer.MakeWithData(frame),
	})
	ep.InjectInbound(0, pkt) // the ethernet endpoint reads the type itself
	pkt.DecRef()
}
