package rootfs

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// spoolChunk is how much spoolSparse reads at a time; whole zero blocks of
// it become holes.
const spoolChunk = 64 << 10

// spoolSparse copies exactly n bytes from r into f at off, seeking over
// aligned blocks of zeros instead of writing them, so a layer file of
// zeros (a decompression bomb, or a preallocated database) costs no disk.
// f is extended to off+n even when the copy ends in a hole. It returns the
// bytes consumed from r.
func spoolSparse(f *os.File, off int64, r io.Reader, n int64) (int64, error) {
	buf := make([]byte, spoolChunk)
	var done int64
	for done < n {
		want := min(int64(len(buf)), n-done)
		got, err := io.ReadFull(r, buf[:want])
		p := buf[:got]
		for len(p) > 0 {
			// Whole zero blocks are skipped; anything else (a partial or
			// non-zero block) is written.
			k := min(len(p), sparseBlock)
			pos := off + done
			if k < sparseBlock || !isZero(p[:k]) {
				if _, werr := f.WriteAt(p[:k], pos); werr != nil {
					return done, werr
				}
			}
			done += int64(k)
			p = p[k:]
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				err = fmt.Errorf("%d of %d bytes: %w", done, n, io.ErrUnexpectedEOF)
			}
			return done, err
		}
	}
	fi, err := f.Stat()
	if err != nil {
		return done, err
	}
	if end := off + n; fi.Size() < end {
		if err := f.Truncate(end); err != nil {
			return done, err
		}
	}
	return done, nil
}
