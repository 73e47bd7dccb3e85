package agentproto

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
)

// RawFrame is a whole frame including its 4-byte length prefix. The relay
// routes RawFrames by header without decoding CBOR.
//
// Always obtain a RawFrame from ReadRawFrame or Message.Marshal, which
// guarantee it holds at least a complete header.
type RawFrame []byte

// ID returns the frame's session id.
func (f RawFrame) ID() uint32 { return binary.BigEndian.Uint32(f[4:8]) }

// Flags returns the frame's flag byte as sent; it is not checked against
// the message type.
func (f RawFrame) Flags() Flags { return Flags(f[8]) }

// Message decodes the frame body.
func (f RawFrame) Message() (Message, error) {
	if len(f) < headerLen {
		return Message{}, fmt.Errorf("%w: %d bytes", ErrFrameTooShort, len(f))
	}
	return decodeBody(f.ID(), f[headerLen:])
}

// ReadRawFrame reads one whole frame from r. It returns io.EOF if r ends
// cleanly before the frame, io.ErrUnexpectedEOF if r ends inside it, and
// ErrFrameTooLarge or ErrFrameTooShort for a bad length prefix. Memory
// grows with the bytes actually read, so a lying length prefix on a short
// stream costs little.
func ReadRawFrame(r io.Reader) (RawFrame, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	return readFrameRest(r, hdr)
}

// Encoder writes frames to a stream. It is safe for concurrent use: each
// Encode writes one whole frame with a single Write call.
type Encoder struct {
	mu sync.Mutex // serializes writes to w
	w  io.Writer
}

// NewEncoder returns an Encoder writing to w.
func NewEncoder(w io.Writer) *Encoder { return &Encoder{w: w} }

// Encode writes m as one frame.
func (e *Encoder) Encode(m Message) error {
	f, err := m.Marshal()
	if err != nil {
		return err
	}
	return e.WriteRaw(f)
}

// WriteRaw writes an already encoded frame.
func (e *Encoder) WriteRaw(f RawFrame) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, err := e.w.Write(f); err != nil {
		return fmt.Errorf("agentproto: write frame: %w", err)
	}
	return nil
}

// Decoder reads frames from a stream. It is not safe for concurrent use.
// It buffers its input, so once a Decoder reads from a stream, nothing else
// should.
type Decoder struct {
	r *bufio.Reader
}

// NewDecoder returns a Decoder reading from r.
func NewDecoder(r io.Reader) *Decoder {
	return &Decoder{r: bufio.NewReaderSize(r, 64<<10)}
}

// Decode reads and decodes the next frame. Errors are those of ReadRawFrame,
// or a wrapped decode error (ErrUnknownType for an unknown wire name). After
// a decode error the whole frame has been consumed, so the stream is still
// in sync and Decode may be called again; after a ReadRawFrame error it is
// not.
func (d *Decoder) Decode() (Message, error) {
	f, err := ReadRawFrame(d.r)
	if err != nil {
		return Message{}, err
	}
	return f.Message()
}
