package netstack

import (
	"bufio"
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
// Reads go through a buffer of readBatch bytes: two read(2) calls per frame
// (header, then body) were a third of the stack's CPU time.
type frameReader struct {
	r   *bufio.Reader
	hdr [frameHeaderLen]byte
	buf []byte
}

// readBatch is the stream read buffer: several MTU-sized frames per
// syscall when the guest sends fast.
const readBatch = 64 << 10

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, readBatch), buf: make([]byte, maxFrameLen)}
}

// buffered reports whether a whole frame is already buffered, so that next
// will not block.
func (fr *frameReader) buffered() bool {
	if fr.r.Buffered() < frameHeaderLen {
		return false // and Peek would block
	}
	h, err := fr.r.Peek(frameHeaderLen)
	if err != nil {
		return false
	}
	return uint64(fr.r.Buffered()-frameHeaderLen) >= uint64(binary.BigEndian.Uint32(h))
}

// next returns the next frame, valid until the following call. A zero-length
// frame is returned as an empty slice (the caller counts it as malformed).
// io.EOF is returned only at a frame boundary. A frame already whole in the
// read buffer is returned in place, saving a copy per frame.
func (fr *frameReader) next() ([]byte, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(fr.hdr[:])
	if n > maxFrameLen {
		return nil, fmt.Errorf("read frame: length %d: %w", n, errFrameTooLong)
	}
	if int(n) <= fr.r.Buffered() {
		f, _ := fr.r.Peek(int(n)) // cannot fail: n bytes are buffered
		fr.r.Discard(int(n))      // the slice stays valid until the next read
		return f, nil
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

// writeBatch is how many bytes of queued frames writeLoop gathers into one
// Write: one syscall per MTU-sized frame would cost more than the copy.
const writeBatch = 64 << 10

// appendFrame appends pkt to b as one length-prefixed frame.
func appendFrame(b []byte, pkt *stack.PacketBuffer) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(pkt.Size()))
	for _, s := range pkt.AsSlices() {
		b = append(b, s...)
	}
	return b
}

// writeLoop moves packets the stack queued on ep to w until ctx ends or w
// fails, batching whatever is already queued into one Write. sent is called
// with each frame's length.
func writeLoop(ctx context.Context, ep *channel.Endpoint, w io.Writer, sent func(int)) error {
	buf := make([]byte, 0, writeBatch+frameHeaderLen+maxFrameLen)
	for {
		pkt := ep.ReadContext(ctx)
		if pkt == nil {
			return nil // ctx done
		}
		buf = buf[:0]
		for pkt != nil {
			if n := pkt.Size(); n <= maxFrameLen { // always, with our MTU
				buf = appendFrame(buf, pkt)
				if sent != nil {
					sent(n)
				}
			}
			pkt.DecRef()
			if len(buf) >= writeBatch {
				break
			}
			pkt = ep.Read()
		}
		if _, err := w.Write(buf); err != nil {
			return fmt.Errorf("write frames: %w", err)
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
