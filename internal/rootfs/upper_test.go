package rootfs

import (
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
			if used := allocatedBytes(t, img); used > 256<<20 {
				t.Errorf("allocated %d bytes; want a sparse image (<256 MiB)", used)
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
