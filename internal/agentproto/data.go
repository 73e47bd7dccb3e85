package agentproto

import (
	"encoding/binary"
	"fmt"
)

// The bulk of the protocol's bytes travel in data messages (exec stdin,
// stdout and stderr, fs.data): a payload {"data": bytes} inside the
// envelope's "p" byte string. Encoding them through the generic CBOR path
// copies the data twice and decoding copies it twice more, on each of the
// three hops (agent, relay, client). The functions here build and parse
// the canonical encoding of those messages by hand, placing the data once
// and reading it in place; any other encoding still goes through the CBOR
// decoder, so the wire format and what decodes are unchanged
// (TestDataFastPathMatchesDecoder, FuzzFastPaths).

// DataHeadroom is the most bytes a data frame needs in front of its data:
// length prefix, id, flags, the envelope up to "p"'s byte-string head and
// the payload up to the data's byte-string head. PutDataFrame expects the
// data at buf[DataHeadroom:].
const DataHeadroom = 64

// dataKey is the CBOR text "data", the only key of ExecData.
var dataKey = [5]byte{0x64, 'd', 'a', 't', 'a'}

// isDataType reports whether t carries an ExecData payload.
func isDataType(t Type) bool {
	switch t {
	case TypeExecStdin, TypeExecStdout, TypeExecStderr, TypeFsData:
		return true
	}
	return false
}

// dataHeader appends the bytes of a data frame of type t that come before
// n bytes of data.
func dataHeader(b []byte, id uint32, t Type, n int) []byte {
	payload := 1 + len(dataKey) + headLen(uint64(n)) + n
	size := MinFrameLen + envelopeLen(len(t), payload)
	b = binary.BigEndian.AppendUint32(b, uint32(size))
	b = binary.BigEndian.AppendUint32(b, id)
	b = append(b, byte(t.Flags()))
	b = append(b, 0xa3, 0x61, 'v')
	b = appendHead(b, cborUint, Version)
	b = append(b, 0x61, 't')
	b = appendHead(b, cborText, uint64(len(t)))
	b = append(b, t...)
	b = append(b, 0x61, 'p')
	b = appendHead(b, cborBytes, uint64(payload))
	b = append(b, 0xa1)
	b = append(b, dataKey[:]...)
	return appendHead(b, cborBytes, uint64(n))
}

// checkData reports why n bytes of data cannot form a frame of type t.
func checkData(t Type, n int) error {
	if !isDataType(t) {
		return fmt.Errorf("agentproto: %s is not a data message", t)
	}
	if n < 0 || n > MaxFrameLen-DataHeadroom {
		return fmt.Errorf("%w: %d bytes of data", ErrFrameTooLarge, n)
	}
	return nil
}

// PutDataFrame turns buf, whose bytes buf[DataHeadroom:DataHeadroom+n] are
// the data, into a frame of type t (a data type) by writing its header just
// in front of the data, and returns the frame: a slice of buf. A reader can
// thus read straight into a frame's buffer and send it without a copy. The
// frame equals Message.Marshal's for the same message.
func PutDataFrame(buf []byte, id uint32, t Type, n int) (RawFrame, error) {
	if err := checkData(t, n); err != nil {
		return nil, err
	}
	if len(buf) < DataHeadroom+n {
		return nil, fmt.Errorf("agentproto: data frame buffer of %d bytes for %d bytes of data", len(buf), n)
	}
	var scratch [DataHeadroom]byte
	h := dataHeader(scratch[:0], id, t, n)
	start := DataHeadroom - len(h)
	copy(buf[start:], h)
	return RawFrame(buf[start : DataHeadroom+n]), nil
}

// DataFrame encodes a data message of type t with data as one frame, in one
// allocation and one copy of data.
func DataFrame(id uint32, t Type, data []byte) (RawFrame, error) {
	if err := checkData(t, len(data)); err != nil {
		return nil, err
	}
	f := dataHeader(make([]byte, 0, DataHeadroom+len(data)), id, t, len(data))
	return RawFrame(append(f, data...)), nil
}

// Data returns the data of a data message (exec stdin/stdout/stderr,
// fs.data). A payload in the canonical encoding is read in place: the
// result aliases m.Payload. Any other encoding is decoded as ExecData. An
// empty payload gives nil.
func (m Message) Data() ([]byte, error) {
	if d, ok := parseData(m.Payload); ok {
		return d, nil
	}
	var d ExecData
	if err := m.Decode(&d); err != nil {
		return nil, err
	}
	return d.Data, nil
}

// parseData reads the canonical ExecData encoding, a map of one pair
// "data" → byte string, filling p exactly. ok is false for anything else.
func parseData(p []byte) (data []byte, ok bool) {
	if len(p) < 1+len(dataKey) || p[0] != 0xa1 || [5]byte(p[1:6]) != dataKey {
		return nil, false
	}
	n, rest, ok := byteString(p[6:])
	if !ok || n != len(rest) {
		return nil, false
	}
	return rest, true
}

// byteString reads a definite-length byte-string head from b and returns
// the string's length and the bytes after the head.
func byteString(b []byte) (n int, rest []byte, ok bool) {
	if len(b) == 0 || b[0]>>5 != cborBytes>>5 {
		return 0, nil, false
	}
	return headArg(b)
}

// headArg reads the argument of the CBOR head at b[0] (any major type,
// definite lengths up to 32 bits) and returns it with the bytes after the
// head.
func headArg(b []byte) (n int, rest []byte, ok bool) {
	ai := b[0] & 0x1f
	switch {
	case ai < 24:
		return int(ai), b[1:], true
	case ai == 24 && len(b) >= 2:
		return int(b[1]), b[2:], true
	case ai == 25 && len(b) >= 3:
		return int(binary.BigEndian.Uint16(b[1:3])), b[3:], true
	case ai == 26 && len(b) >= 5:
		return int(binary.BigEndian.Uint32(b[1:5])), b[5:], true
	}
	return 0, nil, false
}

// parseEnvelope reads the canonical envelope {"v": uint, "t": text,
// "p": bytes}, in that order, filling body exactly, in place. ok is false
// for anything else, which the CBOR decoder then handles. The type is not
// checked here.
func parseEnvelope(body []byte) (t string, payload []byte, ok bool) {
	// map(3), "v", a uint below 24
	if len(body) < 4 || body[0] != 0xa3 || body[1] != 0x61 || body[2] != 'v' || body[3] > 23 {
		return "", nil, false
	}
	b := body[4:]
	if len(b) < 3 || b[0] != 0x61 || b[1] != 't' || b[2]>>5 != cborText>>5 {
		return "", nil, false
	}
	n, b, ok := headArg(b[2:])
	if !ok || n > len(b) {
		return "", nil, false
	}
	t, b = string(b[:n]), b[n:]
	if len(b) < 3 || b[0] != 0x61 || b[1] != 'p' {
		return "", nil, false
	}
	n, b, ok = byteString(b[2:])
	if !ok || n != len(b) {
		return "", nil, false
	}
	return t, b, true
}
