package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// DigestAlgorithm names the upper's integrity digest in manifests.
const DigestAlgorithm = "msb-sparse-sha256-v1"

// BlockSize is the unit of the sparse digest and of archive extents.
const BlockSize = 4096

// MaxUpperBytes caps the logical size of an upper image msb accepts from a
// manifest or archive (1 TiB): far above any real upper (4 GiB by
// default), low enough that offsets stay far from int64 overflow.
const MaxUpperBytes = 1 << 40

// digestMagic starts the hashed stream so a v1 digest can never equal a
// plain SHA-256 of some file.
const digestMagic = "msb-sparse-sha256-v1\n"

// Digest returns the msb-sparse-sha256-v1 digest of the file at path, as
// "sha256:<hex>". The digest is defined on the file's bytes, never on how
// they are stored:
//
//   - the file of size S is cut into blocks of 4096 bytes at offsets 0,
//     4096, …; the last block is shorter when S is not a multiple of 4096;
//   - a block is zero when every byte in it is 0 (a hole reads as zeros, so
//     a hole and an allocated block of zeros are the same);
//   - the digest is SHA-256 over "msb-sparse-sha256-v1\n", then S and 4096
//     as 8-byte big-endian integers, then for every non-zero block in
//     increasing offset order its offset (8-byte big-endian) followed by
//     its bytes.
//
// So the hash covers the data extents and, through the offsets, the hole
// layout; a dense copy and a sparse copy of the same bytes have the same
// digest, and changing any byte changes it. Holes are skipped with
// SEEK_DATA/SEEK_HOLE, so a mostly-empty 4 GiB upper costs only its data
// to hash.
func Digest(ctx context.Context, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("digest %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("digest %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("digest %s: not a regular file", path)
	}
	d := newDigester(fi.Size())
	if err := scanBlocks(ctx, f, fi.Size(), func(off int64, b []byte) error { d.block(off, b); return nil }); err != nil {
		return "", fmt.Errorf("digest %s: %w", path, err)
	}
	return d.sum(), nil
}

// digester computes the v1 digest from the non-zero blocks of a file of a
// known size, fed in increasing offset order.
type digester struct {
	h   hash.Hash
	buf [8]byte
}

func newDigester(size int64) *digester {
	d := &digester{h: sha256.New()}
	io.WriteString(d.h, digestMagic)
	d.u64(uint64(size))
	d.u64(BlockSize)
	return d
}

func (d *digester) u64(v uint64) {
	binary.BigEndian.PutUint64(d.buf[:], v)
	d.h.Write(d.buf[:])
}

// block adds one non-zero block; the caller guarantees off is a multiple of
// BlockSize, offsets increase and b is the whole block.
func (d *digester) block(off int64, b []byte) {
	d.u64(uint64(off))
	d.h.Write(b)
}

func (d *digester) sum() string { return "sha256:" + hex.EncodeToString(d.h.Sum(nil)) }

// scanBlocks calls fn for every non-zero block of f (of size size) in
// increasing offset order. It reads only the file's data regions
// (SEEK_DATA/SEEK_HOLE), widened to block boundaries; where the file system
// cannot report them it reads the whole file. b is only valid during fn.
func scanBlocks(ctx context.Context, f *os.File, size int64, fn func(off int64, b []byte) error) error {
	buf := make([]byte, 256*BlockSize)
	var next int64 // every block below next has been handled
	for next < size {
		if err := ctx.Err(); err != nil {
			return err
		}
		start, end, err := dataRegion(f, next, size)
		if err != nil {
			return err
		}
		if start >= size {
			return nil
		}
		start = max(start-start%BlockSize, next)
		end = min(end+(BlockSize-end%BlockSize)%BlockSize, size)
		for off := start; off < end; {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := min(int64(len(buf)), end-off)
			if _, err := f.ReadAt(buf[:n], off); err != nil {
				return fmt.Errorf("read at %d: %w", off, err)
			}
			for i := int64(0); i < n; i += BlockSize {
				b := buf[i:min(i+BlockSize, n)]
				if !isZero(b) {
					if err := fn(off+i, b); err != nil {
						return err
					}
				}
			}
			off += n
		}
		next = end
	}
	return nil
}

// dataRegion returns the first data region at or after off, [start, end);
// start >= size when only a hole remains.
func dataRegion(f *os.File, off, size int64) (start, end int64, err error) {
	fd := int(f.Fd())
	start, err = unix.Seek(fd, off, unix.SEEK_DATA)
	switch {
	case errors.Is(err, unix.ENXIO):
		return size, size, nil
	case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP):
		return off, size, nil // no hole reporting: treat the rest as data
	case err != nil:
		return 0, 0, fmt.Errorf("seek data: %w", err)
	}
	end, err = unix.Seek(fd, start, unix.SEEK_HOLE)
	if err != nil {
		return 0, 0, fmt.Errorf("seek hole: %w", err)
	}
	return start, min(end, size), nil
}

var zeroBlock [BlockSize]byte

func isZero(b []byte) bool {
	for len(b) >= BlockSize {
		if string(b[:BlockSize]) != string(zeroBlock[:]) {
			return false
		}
		b = b[BlockSize:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
