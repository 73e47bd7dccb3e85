package rootfs

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestImageWriter checks that what goes through the buffer, around it and
// across a seek back lands in the file as written.
func TestImageWriter(t *testing.T) {
	type op struct {
		write int   // bytes to write, or
		seek  int64 // offset to seek to, when write is 0
	}
	tests := []struct {
		name string
		ops  []op
	}{
		{name: "small writes", ops: []op{{write: 10}, {write: 4086}, {write: 1}}},
		{name: "fills the buffer", ops: []op{{write: imageWriterBuf - 1}, {write: 2}, {write: 3}}},
		{name: "large write after small", ops: []op{{write: 100}, {write: imageWriterBuf + 5}, {write: 7}}},
		{name: "past writeback marks", ops: []op{{write: 256 << 10}, {write: 4096}, {write: writebackEvery}, {write: writebackEvery + 1}}},
		{name: "seek back and rewrite", ops: []op{{write: 3 * 4096}, {seek: 0}, {write: 1024}, {seek: 8192}, {write: 10}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Create(filepath.Join(t.TempDir(), "img"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			w := newImageWriter(f)
			var want []byte
			var pos int64
			next := byte(1)
			for _, o := range tc.ops {
				if o.write == 0 {
					if got, err := w.Seek(o.seek, io.SeekStart); err != nil || got != o.seek {
						t.Fatalf("Seek(%d) = %d, %v", o.seek, got, err)
					}
					pos = o.seek
					continue
				}
				p := bytes.Repeat([]byte{next}, o.write)
				next++
				if n, err := w.Write(p); err != nil || n != len(p) {
					t.Fatalf("Write(%d bytes) = %d, %v", len(p), n, err)
				}
				if end := pos + int64(len(p)); end > int64(len(want)) {
					want = append(want, make([]byte, end-int64(len(want)))...)
				}
				copy(want[pos:], p)
				pos += int64(len(p))
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("file has %d bytes, differing from the %d written", len(got), len(want))
			}
		})
	}
}

// TestImageWriterError checks that a failed write sticks.
func TestImageWriterError(t *testing.T) {
	f, err := os.Open(os.DevNull) // read-only: writes fail
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := newImageWriter(f)
	if _, err := w.Write(make([]byte, imageWriterBuf+1)); err == nil {
		t.Fatal("large write to a read-only file succeeded")
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("write after a failed write succeeded")
	}
	if err := w.Flush(); err == nil {
		t.Error("Flush after a failed write succeeded")
	}
}
