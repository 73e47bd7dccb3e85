package rootfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// holeSkipper is the file go-diskfs formats the upper image through. It
// drops writes of zeros that land entirely in a hole of the (freshly
// truncated) file: go-diskfs writes the inode tables and journal of a 4 GiB
// image as 256 MiB of zeros, which would make every new upper cost that much
// disk and I/O. Zero writes over existing data are passed through, so the
// result is byte-identical.
type holeSkipper struct {
	*os.File
}

func (h holeSkipper) WriteAt(p []byte, off int64) (int, error) {
	// Split at block boundaries: go-diskfs writes the journal as one buffer
	// whose first block is its superblock and the rest zeros.
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		n := min(len(p)-done, int(sparseBlock-pos%sparseBlock))
		// Extend an aligned piece over following blocks of the same kind
		// (zero or not); a leading partial block stays on its own so that
		// data at the start of its block does not drag a long zero run
		// into being written.
		zero := isZero(p[done : done+n])
		for pos%sparseBlock == 0 && done+n < len(p) {
			m := min(len(p)-done-n, sparseBlock)
			if isZero(p[done+n:done+n+m]) != zero {
				break
			}
			n += m
		}
		chunk := p[done : done+n]
		if !zero || !h.isHole(pos, int64(n)) {
			if _, err := h.File.WriteAt(chunk, pos); err != nil {
				return done, err
			}
		}
		done += n
	}
	return done, nil
}

// isHole reports whether [off, off+n) holds no data.
func (h holeSkipper) isHole(off, n int64) bool {
	next, err := unix.Seek(int(h.Fd()), off, unix.SEEK_DATA)
	return errors.Is(err, unix.ENXIO) || (err == nil && next >= off+n)
}

const sparseBlock = 4096

func isZero(p []byte) bool {
	for len(p) >= len(zeroBlock) {
		if !bytes.Equal(p[:len(zeroBlock)], zeroBlock[:]) {
			return false
		}
		p = p[len(zeroBlock):]
	}
	for _, c := range p {
		if c != 0 {
			return false
		}
	}
	return true
}

var zeroBlock [4096]byte

// CopyUpper copies the upper image src to dst, preserving holes (SEEK_DATA /
// SEEK_HOLE), through dst+".tmp" and a rename. The source must not be in use
// by a running guest.
func CopyUpper(ctx context.Context, src, dst string) error {
	if err := copySparse(ctx, src, dst+".tmp"); err != nil {
		_ = os.Remove(dst + ".tmp")
		return fmt.Errorf("copy upper %s: %w", src, err)
	}
	if err := os.Rename(dst+".tmp", dst); err != nil {
		_ = os.Remove(dst + ".tmp")
		return fmt.Errorf("copy upper %s: %w", src, err)
	}
	return nil
}

func copySparse(ctx context.Context, src, tmp string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	size := fi.Size()
	if err := out.Truncate(size); err != nil {
		return err
	}
	fd := int(in.Fd())
	var off int64
	for off < size {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole remains; Truncate made it
		}
		if err != nil {
			return fmt.Errorf("seek data: %w", err)
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("seek hole: %w", err)
		}
		if _, err := io.Copy(io.NewOffsetWriter(out, data), io.NewSectionReader(in, data, hole-data)); err != nil {
			return err
		}
		off = hole
	}
	if err := out.Sync(); err != nil {
		return err
	}
	return out.Close()
}
