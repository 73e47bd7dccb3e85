package agentproto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Bulk transfers (fs.data of a file read or write) move in frames of about
// BulkChunk bytes. Allocating a fresh buffer for each such frame on each
// hop costs more than copying it: the runtime zeroes every new buffer and
// the kernel faults its pages in again once the scavenger has returned
// them. Their buffers are recycled instead, by the code that owns a frame
// from its read to its last use (the relay, agentd's writer and file
// writes); everything else keeps allocating and leaves frames to the GC.

// BulkChunk is the data size of a bulk frame: the fs.data chunk agentd
// reads and the client writes. Each hop (agentd, relay, client) reads a
// whole frame before passing it on, and a Unix socket buffers about 200 KiB,
// so smaller frames overlap better across the hops: on the host path
// 256 KiB moved a 256 MiB read at 455–650 MB/s where 1 MiB frames gave
// 150–190 (512 KiB: 390–450), with less CPU.
const BulkChunk = 256 << 10

// bulkBufSize is the size of a pooled buffer: a whole bulk frame.
const bulkBufSize = DataHeadroom + BulkChunk

// bulkMin is the smallest frame ReadRawFrameBulk reads into a pooled bulk
// buffer. Below it frames go into half-size buffers (halfMin) or are
// allocated to size, so that a queue of small frames never pins a pooled
// buffer each (queues are charged by length, so a pooled frame holds at
// most 4/3 of its charge).
const bulkMin = bulkBufSize * 3 / 4

// halfBufSize is the size of a half bulk buffer, for frames of half a
// chunk: a program writing 128 KiB at a time (cat, cp) into a pipe agentd
// drains as fast as it fills gives exec output frames of that size, about
// half of the frames of a bulk stdout; allocated to size, each cost every
// hop a zeroed buffer (twice on ReadRawFrame's first-128-KiB path).
const halfBufSize = DataHeadroom + BulkChunk/2

// halfMin is the smallest frame read into a half bulk buffer.
const halfMin = halfBufSize * 3 / 4

// quarterBufSize is the size of a quarter bulk buffer, for frames of a
// pipe's worth: a host writing exec stdin from a pipe reads 64 KiB at a
// time and sends frames of that size. Allocated to size, each cost agentd
// in a TCG guest a zeroed 64 KiB (makeslice was 17 % of its CPU on 256 MiB
// of stdin).
const quarterBufSize = DataHeadroom + BulkChunk/4

// quarterMin is the smallest frame read into a quarter bulk buffer.
const quarterMin = quarterBufSize * 3 / 4

var bulkPool = sync.Pool{New: func() any {
	b := make([]byte, bulkBufSize)
	return &b
}}

var halfPool = sync.Pool{New: func() any {
	b := make([]byte, halfBufSize)
	return &b
}}

var quarterPool = sync.Pool{New: func() any {
	b := make([]byte, quarterBufSize)
	return &b
}}

// GetBulk returns a buffer for one bulk frame (DataHeadroom+BulkChunk
// bytes). Give it back with PutBulk once nothing refers to it.
func GetBulk() []byte { return *(bulkPool.Get().(*[]byte)) }

// PutBulk recycles the buffer of b if b starts a bulk, half or quarter buffer
// (from GetBulk, or a frame from ReadRawFrameBulk); anything else is left
// to the GC. The caller must be the last user of b and of every slice of
// it.
func PutBulk(b []byte) {
	switch cap(b) {
	case bulkBufSize:
		b = b[:bulkBufSize]
		bulkPool.Put(&b)
	case halfBufSize:
		b = b[:halfBufSize]
		halfPool.Put(&b)
	case quarterBufSize:
		b = b[:quarterBufSize]
		quarterPool.Put(&b)
	}
}

// IsBulk reports whether f lives in a pooled buffer (see PutBulk): whoever
// keeps a slice of it past its owner's last use must copy it.
func IsBulk(f RawFrame) bool {
	return cap(f) == bulkBufSize || cap(f) == halfBufSize || cap(f) == quarterBufSize
}

// ReadRawFrameBulk is ReadRawFrame for a reader that owns each frame until
// its last use: a frame of at least 3/4 of a bulk or of a half bulk buffer
// is read into a pooled buffer of that size, which its owner gives back
// with PutBulk(f). Frames that are never given back are simply collected.
func ReadRawFrameBulk(r io.Reader) (RawFrame, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	total := 4 + int(n)
	var f []byte
	switch {
	case n < MinFrameLen || total > bulkBufSize:
		return readFrameRest(r, hdr)
	case total >= bulkMin:
		f = GetBulk()
	case total >= halfMin && total <= halfBufSize:
		f = *(halfPool.Get().(*[]byte))
	case total >= quarterMin && total <= quarterBufSize:
		f = *(quarterPool.Get().(*[]byte))
	default:
		return readFrameRest(r, hdr)
	}
	// A lying length prefix costs one pooled buffer for as long as the
	// read lasts, and nothing more: the buffer goes back on error.
	f = f[:total]
	copy(f, hdr[:])
	if _, err := io.ReadFull(r, f[4:]); err != nil {
		PutBulk(f)
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return RawFrame(f), nil
}

// readFrameRest reads the frame whose length prefix hdr was read already.
func readFrameRest(r io.Reader, hdr [4]byte) (RawFrame, error) {
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxFrameLen {
		return nil, fmt.Errorf("%w: length %d", ErrFrameTooLarge, n)
	}
	if n < MinFrameLen {
		return nil, fmt.Errorf("%w: length %d", ErrFrameTooShort, n)
	}
	total := 4 + int(n)
	// Start small: a peer must send the first 128 KiB of what it
	// announces before we allocate the rest, so a lying prefix on a short
	// stream costs 128 KiB, and one that is followed by 128 KiB costs at
	// most MaxFrameLen for as long as this one read lasts. Growing
	// straight to the full size (rather than doubling) copies at most
	// 128 KiB of a larger frame once; exec output frames (MaxExecChunk of
	// data) fit in the first allocation.
	const initial = 128 << 10
	f := make([]byte, 4, min(total, initial))
	copy(f, hdr[:])
	for len(f) < total {
		if len(f) == cap(f) {
			nf := make([]byte, len(f), total)
			copy(nf, f)
			f = nf
		}
		k, err := io.ReadFull(r, f[len(f):cap(f)])
		f = f[:len(f)+k]
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return RawFrame(f), nil
}
