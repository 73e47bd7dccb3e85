package snapshot

import (
	"context"
	"fmt"
	"os"
)

// CopySparse copies the regular file src to dst (created 0600, replaced
// atomically through dst+".tmp") without ever writing its holes: a clone
// (FICLONE) where the file system shares extents, else each data region
// (SEEK_DATA/SEEK_HOLE) copied in the kernel (copy_file_range) or, failing
// that, through a buffer. A 4 GiB upper holding 50 MiB costs 50 MiB.
func CopySparse(ctx context.Context, src, dst string) error {
	if err := copySparse(ctx, src, dst+".tmp"); err != nil {
		_ = os.Remove(dst + ".tmp")
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := os.Rename(dst+".tmp", dst); err != nil {
		_ = os.Remove(dst + ".tmp")
		return fmt.Errorf("copy %s: %w", src, err)
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
	if !cloneFile(out, in) {
		if err := out.Truncate(fi.Size()); err != nil {
			return err
		}
		for off := int64(0); off < fi.Size(); {
			if err := ctx.Err(); err != nil {
				return err
			}
			start, end, err := dataRegion(in, off, fi.Size())
			if err != nil {
				return err
			}
			if start >= end {
				break
			}
			if err := copyRange(out, in, start, end-start); err != nil {
				return fmt.Errorf("copy [%d, %d): %w", start, end, err)
			}
			off = end
		}
	}
	if err := out.Sync(); err != nil {
		return err
	}
	return out.Close()
}

// copyBuffered copies n bytes at off from in to out through a buffer.
func copyBuffered(out, in *os.File, off, n int64) error {
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		m := min(int64(len(buf)), n)
		if _, err := in.ReadAt(buf[:m], off); err != nil {
			return err
		}
		if _, err := out.WriteAt(buf[:m], off); err != nil {
			return err
		}
		off += m
		n -= m
	}
	return nil
}
