package agentproto

import (
	"encoding/binary"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Frame and protocol constants (reference §3.1, §3.4).
const (
	// MinFrameLen is the smallest valid value of the length prefix: id and
	// flags with an empty body.
	MinFrameLen = 5
	// MaxFrameLen is the largest allowed value of the length prefix.
	MaxFrameLen = 4 << 20
	// MaxDataChunk is the largest fs.data chunk.
	MaxDataChunk = 3 << 20
	// MaxExecChunk is the stdout/stderr chunk size agentd uses: a bulk
	// chunk, so that a full frame of output travels in pooled buffers on
	// every hop, as fs.data does. It is not enforced on decode.
	MaxExecChunk = BulkChunk
	// Version is the value of the envelope's "v" field.
	Version = 1
	// ProtocolVersion is the newest protocol version this package speaks,
	// negotiated through Ready.ProtocolVersion (see Negotiate).
	ProtocolVersion = 1
	// IDStep is the width of one relay client's id range.
	IDStep = 0xFFFFFFFF / 16
	// MaxClients is the number of relay slots.
	MaxClients = 16
)

// headerLen is the length prefix plus id plus flags.
const headerLen = 4 + MinFrameLen

// Flags is the frame's flag byte. It is derived from the message type.
type Flags uint8

// Flag bits (reference §3.1).
const (
	// FlagTerminal marks the last frame of a session.
	FlagTerminal Flags = 0x01
	// FlagSessionStart marks the frame that opens a session.
	FlagSessionStart Flags = 0x02
	// FlagShutdown marks core.shutdown.
	FlagShutdown Flags = 0x04
)

// Type is a message's wire name (the envelope's "t").
type Type string

// The 14 message types of protocol v1.
const (
	TypeReady       Type = "core.ready"    // guest→host, id 0
	TypeShutdown    Type = "core.shutdown" // host→guest, id 0, empty payload
	TypeExecRequest Type = "core.exec.request"
	TypeExecStarted Type = "core.exec.started"
	TypeExecStdin   Type = "core.exec.stdin" // empty data = EOF
	TypeExecStdout  Type = "core.exec.stdout"
	TypeExecStderr  Type = "core.exec.stderr"
	TypeExecExited  Type = "core.exec.exited"
	TypeExecFailed  Type = "core.exec.failed"
	TypeExecResize  Type = "core.exec.resize"
	TypeExecSignal  Type = "core.exec.signal"
	TypeFsRequest   Type = "core.fs.request"
	TypeFsData      Type = "core.fs.data" // empty data = EOF (host→guest write stream)
	TypeFsResponse  Type = "core.fs.response"
)

// Types lists every known message type in wire-table order.
var Types = []Type{
	TypeReady, TypeShutdown,
	TypeExecRequest, TypeExecStarted, TypeExecStdin, TypeExecStdout, TypeExecStderr,
	TypeExecExited, TypeExecFailed, TypeExecResize, TypeExecSignal,
	TypeFsRequest, TypeFsData, TypeFsResponse,
}

// Valid reports whether t is one of the known wire names.
func (t Type) Valid() bool {
	switch t {
	case TypeReady, TypeShutdown,
		TypeExecRequest, TypeExecStarted, TypeExecStdin, TypeExecStdout, TypeExecStderr,
		TypeExecExited, TypeExecFailed, TypeExecResize, TypeExecSignal,
		TypeFsRequest, TypeFsData, TypeFsResponse:
		return true
	}
	return false
}

// Flags returns the frame flags a message of type t carries.
func (t Type) Flags() Flags {
	switch t {
	case TypeExecExited, TypeExecFailed, TypeFsResponse:
		return FlagTerminal
	case TypeExecRequest, TypeFsRequest:
		return FlagSessionStart
	case TypeShutdown:
		return FlagShutdown
	}
	return 0
}

// Message is one decoded frame.
type Message struct {
	ID      uint32
	Type    Type
	Payload []byte // CBOR-encoded payload (the envelope's "p")
}

// envelope is the frame body. Field order matches the serde struct so that
// encoded bytes equal ciborium's.
type envelope struct {
	V uint8  `cbor:"v"`
	T string `cbor:"t"`
	P []byte `cbor:"p"`
}

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	// Struct fields encode in declaration order (the serde order), which is
	// fixed, so the bytes are deterministic without sorting. Nil slices
	// encode as [] because serde rejects null for a Vec.
	encMode, err = cbor.EncOptions{
		Sort:          cbor.SortNone,
		NilContainers: cbor.NilContainerAsEmpty,
		IndefLength:   cbor.IndefLengthForbidden,
		TagsMd:        cbor.TagsForbidden,
	}.EncMode()
	if err != nil {
		panic(fmt.Sprintf("agentproto: cbor encoder options: %v", err))
	}
	// Limits for hostile input. A frame is at most 4 MiB, so byte and text
	// strings are bounded by it. Arrays are capped at 128 Ki elements: a
	// directory listing fits (an entry needs ≥ 40 bytes, so a 4 MiB frame
	// holds fewer than 105 k), and 128 Ki decoded FsEntry values stay below
	// 10 MiB even when each element is a one-byte empty map. Payloads nest
	// at most 5 levels (FsResponse→data→List→[]→entry).
	decMode, err = cbor.DecOptions{
		MaxNestedLevels:  16,
		MaxArrayElements: 128 << 10,
		MaxMapPairs:      1024,
		IndefLength:      cbor.IndefLengthAllowed,
		TagsMd:           cbor.TagsAllowed,
		// Guest file names need not be UTF-8; Go strings carry any bytes.
		UTF8: cbor.UTF8DecodeInvalid,
	}.DecMode()
	if err != nil {
		panic(fmt.Sprintf("agentproto: cbor decoder options: %v", err))
	}
}

// Marshal encodes v with the protocol's CBOR conventions.
func Marshal(v any) ([]byte, error) {
	b, err := encMode.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("agentproto: encode payload: %w", err)
	}
	return b, nil
}

// Unmarshal decodes CBOR data into v with the protocol's decode limits.
func Unmarshal(data []byte, v any) error {
	if err := decMode.Unmarshal(data, v); err != nil {
		return fmt.Errorf("agentproto: decode payload: %w", err)
	}
	return nil
}

var (
	cborNull     = []byte{0xf6}
	cborEmptyMap = []byte{0xa0}
)

// New builds a message of type t with payload CBOR-encoded. A nil payload
// encodes as null for core.shutdown (serde's unit) and as an empty map (a
// struct with every field defaulted) for the other types.
func New(id uint32, t Type, payload any) (Message, error) {
	if !t.Valid() {
		return Message{}, fmt.Errorf("%w: %q", ErrUnknownType, string(t))
	}
	m := Message{ID: id, Type: t}
	switch {
	case payload == nil && t == TypeShutdown:
		m.Payload = cborNull
	case payload == nil:
		m.Payload = cborEmptyMap
	default:
		p, err := Marshal(payload)
		if err != nil {
			return Message{}, fmt.Errorf("new %s: %w", t, err)
		}
		m.Payload = p
	}
	return m, nil
}

// Flags returns the frame flags derived from m's type.
func (m Message) Flags() Flags { return m.Type.Flags() }

// Decode decodes m's payload into v. An empty payload leaves v unchanged.
func (m Message) Decode(v any) error {
	if len(m.Payload) == 0 {
		return nil
	}
	if err := Unmarshal(m.Payload, v); err != nil {
		return fmt.Errorf("decode %s: %w", m.Type, err)
	}
	return nil
}

// Marshal encodes m as a whole frame, length prefix included.
func (m Message) Marshal() (RawFrame, error) {
	if !m.Type.Valid() {
		return nil, fmt.Errorf("%w: %q", ErrUnknownType, string(m.Type))
	}
	n := MinFrameLen + envelopeLen(len(m.Type), len(m.Payload))
	if n > MaxFrameLen {
		return nil, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n)
	}
	// The envelope is written by hand, in one allocation, rather than
	// through the CBOR encoder, which would copy the payload twice. Its
	// bytes equal what the encoder (and ciborium) produce for envelope;
	// TestGoldenFrames pins them.
	f := make(RawFrame, headerLen, 4+n)
	binary.BigEndian.PutUint32(f[0:4], uint32(n))
	binary.BigEndian.PutUint32(f[4:8], m.ID)
	f[8] = byte(m.Type.Flags())
	f = append(f, 0xa3) // map(3)
	f = append(f, 0x61, 'v')
	f = appendHead(f, cborUint, Version)
	f = append(f, 0x61, 't')
	f = appendHead(f, cborText, uint64(len(m.Type)))
	f = append(f, m.Type...)
	f = append(f, 0x61, 'p')
	f = appendHead(f, cborBytes, uint64(len(m.Payload)))
	f = append(f, m.Payload...)
	return f, nil
}

// CBOR major types (RFC 8949 §3.1) used by the hand-written envelope.
const (
	cborUint  = 0 << 5
	cborBytes = 2 << 5
	cborText  = 3 << 5
)

// appendHead appends the shortest head for major type major and argument
// n (RFC 8949 §3).
func appendHead(b []byte, major byte, n uint64) []byte {
	switch {
	case n < 24:
		return append(b, major|byte(n))
	case n <= 0xff:
		return append(b, major|24, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, major|25), uint16(n))
	case n <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(b, major|26), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, major|27), n)
}

// headLen is the length of appendHead's output for argument n.
func headLen(n uint64) int {
	switch {
	case n < 24:
		return 1
	case n <= 0xff:
		return 2
	case n <= 0xffff:
		return 3
	case n <= 0xffffffff:
		return 5
	}
	return 9
}

// envelopeLen is the encoded size of {"v": Version, "t": t, "p": p}.
func envelopeLen(typeLen, payloadLen int) int {
	return 1 + // map(3)
		2 + headLen(Version) +
		2 + headLen(uint64(typeLen)) + typeLen +
		2 + headLen(uint64(payloadLen)) + payloadLen
}

// decodeBody decodes a frame body (the CBOR envelope).
func decodeBody(id uint32, body []byte) (Message, error) {
	// The canonical encoding (every frame msb and 0.4.4 write) is read in
	// place: Payload aliases the frame.
	if t, p, ok := parseEnvelope(body); ok {
		if !Type(t).Valid() {
			return Message{}, fmt.Errorf("%w: %q", ErrUnknownType, t)
		}
		return Message{ID: id, Type: Type(t), Payload: p}, nil
	}
	var env envelope
	if err := decMode.Unmarshal(body, &env); err != nil {
		return Message{}, fmt.Errorf("agentproto: decode envelope: %w", err)
	}
	// "v" is not checked: 0.4.4 does not check it either, and versions are
	// negotiated through core.ready.
	t := Type(env.T)
	if !t.Valid() {
		return Message{}, fmt.Errorf("%w: %q", ErrUnknownType, env.T)
	}
	return Message{ID: id, Type: t, Payload: env.P}, nil
}
