package launch

import (
	"encoding/base64"
	"encoding/binary"
)

// The exec.log tap encodes every byte of binary exec output as base64, on
// the relay's output path: through encoding/base64 (three lookups and four
// single-byte stores per three bytes) it cost as much CPU as the rest of
// the relay's work on a stream together. appendBase64 encodes six bytes per
// step instead: one 8-byte load, four lookups in a table of character
// pairs (12 bits each) and one 8-byte store.

const stdAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// base64Pairs maps 12 bits to their two characters, the first in the low
// byte (the order of a little-endian store).
var base64Pairs = func() (t [1 << 12]uint16) {
	for i := range t {
		t[i] = uint16(stdAlphabet[i>>6]) | uint16(stdAlphabet[i&0x3f])<<8
	}
	return t
}()

// appendBase64 appends the standard padded base64 encoding of src to dst:
// the same bytes as base64.StdEncoding.AppendEncode.
func appendBase64(dst, src []byte) []byte {
	n := base64.StdEncoding.EncodedLen(len(src))
	dst = grow(dst, n)
	out := dst[len(dst) : len(dst)+n]
	i, j := 0, 0
	// Each step reads 8 bytes and encodes the first 6 of them; the bounds
	// are checked once per step by the slicing.
	for ; len(src)-i >= 8; i, j = i+6, j+8 {
		x := binary.BigEndian.Uint64(src[i : i+8])
		v := uint64(base64Pairs[x>>52]) |
			uint64(base64Pairs[x>>40&0xfff])<<16 |
			uint64(base64Pairs[x>>28&0xfff])<<32 |
			uint64(base64Pairs[x>>16&0xfff])<<48
		binary.LittleEndian.PutUint64(out[j:j+8], v)
	}
	// The tail starts on a 3-byte group boundary (i is a multiple of 6), so
	// encoding it on its own gives the same characters and padding.
	base64.StdEncoding.Encode(out[j:], src[i:])
	return dst[:len(dst)+n]
}

// grow returns b with room for n more bytes.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), 2*cap(b)+n)
	copy(nb, b)
	return nb
}
