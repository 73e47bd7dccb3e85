package rootfs

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestDataFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		size int
	}{
		{name: "empty", size: 0},
		{name: "small", size: 100},
		{name: "larger than one read", size: 3*32<<10 + 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := bytes.Repeat([]byte("0123456789abcdef"), tc.size/16+1)[:tc.size]
			p := filepath.Join(dir, tc.name)
			if err := os.WriteFile(p, want, 0o644); err != nil {
				t.Fatal(err)
			}
			d, err := openData(p)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(d)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("ReadAll = %d bytes, %v; want %d bytes, nil", len(got), err, len(want))
			}
			if err := d.Close(); err != nil {
				t.Errorf("Close = %v", err)
			}
			if err := d.Close(); err != nil {
				t.Errorf("second Close = %v; want nil", err)
			}
			if _, err := d.Read(make([]byte, 1)); !errors.Is(err, fs.ErrClosed) {
				t.Errorf("Read after Close = %v; want fs.ErrClosed", err)
			}
		})
	}
	if _, err := openData(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("openData(missing) = %v; want fs.ErrNotExist", err)
	}
	// A symlink where the walk saw a regular file (swapped in between) is
	// refused, not followed.
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "swapped")); err != nil {
		t.Fatal(err)
	}
	if d, err := openData(filepath.Join(dir, "swapped")); !errors.Is(err, unix.ELOOP) {
		if d != nil {
			d.Close()
		}
		t.Errorf("openData(symlink) = %v; want ELOOP", err)
	}
}
