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
	// Four steps per iteration (24 bytes in, 32 out): the bounds are
	// checked once for all four, and the loads of one step do not wait
	// for the stores of the one before (13% faster than one step at a
	// time, BenchmarkAppendBase64).
	for ; len(src)-i >= 26; i, j = i+24, j+32 {
		s := src[i : i+26 : i+26]
		o := out[j : j+32 : j+32]
		binary.LittleEndian.PutUint64(o[0:8], encode6(binary.BigEndian.Uint64(s[0:8])))
		binary.LittleEndian.PutUint64(o[8:16], encode6(binary.BigEndian.Uint64(s[6:14])))
		binary.LittleEndian.PutUint64(o[16:24], encode6(binary.BigEndian.Uint64(s[12:20])))
		binary.LittleEndian.PutUint64(o[24:32], encode6(binary.BigEndian.Uint64(s[18:26])))
	}
	// Each step reads 8 bytes and encodes the first 6 of them.
	for ; len(src)-i >= 8; i, j = i+6, j+8 {
		binary.LittleEndian.PutUint64(out[j:j+8], encode6(binary.BigEndian.Uint64(src[i:i+8])))
	}
	// The tail starts on a 3-byte group boundary (i is a multiple of 6), so
	// encoding it on its own gives the same characters and padding.
	base64.StdEncoding.Encode(out[j:], src[i:])
	return dst[:len(dst)+n]
}

// encode6 returns the 8 characters of the top 6 bytes of x (big-endian),
// the first in the low byte.
func encode6(x uint64) uint64 {
	return uint64(base64Pairs[x>>52]) |
		uint64(base64Pairs[x>>40&0xfff])<<16 |
		uint64(base64Pairs[x>>28&0xfff])<<32 |
		uint64(base64Pairs[x>>16&0xfff])<<48
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
