package rootfs

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

func TestCreateUpper(t *testing.T) {
	tests := []struct {
		name     string
		size     int64
		wantSize int64
		wantErr  bool
	}{
		{name: "default", size: 0, wantSize: DefaultUpperSize},
		{name: "64MiB", size: 64 << 20, wantSize: 64 << 20},
		{name: "too small", size: 1 << 20, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "upper.ext4")
			err := CreateUpper(t.Context(), img, tt.size)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("CreateUpper(%d) = nil; want error", tt.size)
				}
				if _, err := os.Stat(img); !os.IsNotExist(err) {
					t.Errorf("stat after failure: %v; want not exist", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("CreateUpper: %v", err)
			}
			if _, err := os.Stat(img + ".tmp"); !os.IsNotExist(err) {
				t.Errorf("stat .tmp: %v; want not exist", err)
			}
			fi, err := os.Stat(img)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() != tt.wantSize {
				t.Errorf("size = %d; want %d", fi.Size(), tt.wantSize)
			}
			if used := allocatedBytes(t, img); used > 8<<20 {
				t.Errorf("allocated %d bytes; want a sparse image (<8 MiB)", used)
			}
			e2fsckClean(t, img)
			for _, d := range []string{"upper", "work"} {
				out := debugfs(t, img, "stat /"+d)
				if !regexp.MustCompile(`Type: directory\s+Mode:\s+0755`).MatchString(out) {
					t.Errorf("stat /%s: got\n%s\nwant a 0755 directory", d, out)
				}
				if !regexp.MustCompile(`User:\s+0\s+Group:\s+0`).MatchString(out) {
					t.Errorf("stat /%s: got\n%s\nwant owner 0:0", d, out)
				}
			}
		})
	}
}

func TestCopyUpper(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "upper.ext4")
	if err := CreateUpper(t.Context(), src, 64<<20); err != nil {
		t.Fatalf("CreateUpper: %v", err)
	}
	// A marker in a region go-diskfs leaves as a hole (past all metadata):
	// the copy must carry data written after creation, as a guest would.
	marker := []byte("msb-copy-upper-marker")
	f, err := os.OpenFile(src, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	const markerOff = 48 << 20
	if _, err := f.WriteAt(marker, markerOff); err != nil {
		t.Fatal(err)
	}
	f.Close()

	tests := []struct {
		name    string
		src     string
		cancel  bool
		wantErr bool
	}{
		{name: "copy", src: src},
		{name: "missing source", src: filepath.Join(dir, "missing"), wantErr: true},
		{name: "directory source", src: dir, wantErr: true},
		{name: "cancelled", src: src, cancel: true, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			if tt.cancel {
				cancel()
			}
			defer cancel()
			dst := filepath.Join(t.TempDir(), "copy.ext4")
			err := CopyUpper(ctx, tt.src, dst)
			if _, serr := os.Stat(dst + ".tmp"); !os.IsNotExist(serr) {
				t.Errorf("stat .tmp: %v; want not exist", serr)
			}
			if tt.wantErr {
				if err == nil {
					t.Fatalf("CopyUpper(%s) = nil; want error", tt.src)
				}
				if _, serr := os.Stat(dst); !os.IsNotExist(serr) {
					t.Errorf("stat dst: %v; want not exist", serr)
				}
				return
			}
			if err != nil {
				t.Fatalf("CopyUpper: %v", err)
			}
			a, err := os.ReadFile(tt.src)
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(dst)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a, b) {
				t.Fatalf("copy differs from source (%d vs %d bytes)", len(b), len(a))
			}
			if got, limit := allocatedBytes(t, dst), allocatedBytes(t, tt.src)+(1<<20); got > limit {
				t.Errorf("copy allocates %d bytes; want at most %d (sparse)", got, limit)
			}
			e2fsckClean(t, dst)
		})
	}
}
