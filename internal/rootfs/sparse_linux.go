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

// sparseChunk is the granularity at which zero runs are found and punched.
const sparseChunk = 64 << 10

var zeroChunk = make([]byte, sparseChunk)

// punchZeros deallocates every all-zero sparseChunk-aligned chunk of f.
// go-diskfs writes zeroed inode tables and bitmaps eagerly (256 MiB for a
// 4 GiB image); punching them keeps a fresh upper at a few MiB on disk.
func punchZeros(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	buf := make([]byte, sparseChunk)
	var off int64
	for off < size {
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // no data after off
		}
		if err != nil {
			return fmt.Errorf("seek data: %w", err)
		}
		off = data - data%sparseChunk
		n, err := f.ReadAt(buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if n == sparseChunk && bytes.Equal(buf, zeroChunk) {
			if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, sparseChunk); err != nil {
				return fmt.Errorf("punch hole: %w", err)
			}
		}
		off += sparseChunk
	}
	return nil
}

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
