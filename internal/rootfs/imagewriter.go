package rootfs

import (
	"io"
	"os"
)

// imageWriterBuf is the write buffer of an imageWriter. go-erofs writes a
// file's data and then its padding to the next block as separate calls, so
// unbuffered a tree of small files costs two write(2)s per file.
const imageWriterBuf = 1 << 20

// writebackEvery is how many bytes an imageWriter writes before it asks
// the kernel to start writing them back: the image is fsynced before it is
// renamed into place, and a writeback started while the rest of the tree
// is still being copied overlaps the disk with the copy instead of
// following it.
const writebackEvery = 8 << 20

// imageWriter is the buffered io.WriteSeeker go-erofs writes an image
// through. Flush must be called before f is used directly again. Not safe
// for concurrent use.
type imageWriter struct {
	f   *os.File
	buf []byte
	off int64 // f's offset: where buf starts
	// synced is the end of the range already handed to startWriteback.
	synced int64
	err    error
}

var _ io.WriteSeeker = (*imageWriter)(nil)

func newImageWriter(f *os.File) *imageWriter {
	return &imageWriter{f: f, buf: make([]byte, 0, imageWriterBuf)}
}

func (w *imageWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n := len(p)
	if len(w.buf)+len(p) > cap(w.buf) {
		if err := w.Flush(); err != nil {
			return 0, err
		}
		if len(p) >= cap(w.buf) {
			// Large writes (go-erofs copies file data 256 KiB at a
			// time) skip the buffer.
			return n, w.writeOut(p)
		}
	}
	w.buf = append(w.buf, p...)
	return n, nil
}

// writeOut writes p at the file's offset and starts writeback of what has
// accumulated since the last time.
func (w *imageWriter) writeOut(p []byte) error {
	k, err := w.f.Write(p)
	w.off += int64(k)
	if err != nil {
		w.err = err
		return err
	}
	if w.off-w.synced >= writebackEvery {
		startWriteback(w.f, w.synced, w.off-w.synced)
		w.synced = w.off
	}
	return nil
}

// Flush writes the buffered bytes to the file.
func (w *imageWriter) Flush() error {
	if w.err != nil {
		return w.err
	}
	if len(w.buf) == 0 {
		return nil
	}
	err := w.writeOut(w.buf)
	w.buf = w.buf[:0]
	return err
}

// Seek flushes and moves the file's offset. The writeback mark stays: a
// rewrite of earlier bytes (go-erofs's superblock) is left to the fsync.
func (w *imageWriter) Seek(offset int64, whence int) (int64, error) {
	if err := w.Flush(); err != nil {
		return 0, err
	}
	off, err := w.f.Seek(offset, whence)
	if err != nil {
		return off, err
	}
	w.off = off
	w.synced = min(w.synced, off)
	return off, nil
}
