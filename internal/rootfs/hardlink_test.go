package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestPatchHardlinksErrors(t *testing.T) {
	// A valid image with /f and /d/g to aim bad link maps at.
	valid := filepath.Join(t.TempDir(), "valid.erofs")
	if err := BuildFromLayers(t.Context(), layerReaders(t, [][]te{{tFile("f", "f"), tFile("d/g", "g")}}), valid); err != nil {
		t.Fatalf("BuildFromLayers: %v", err)
	}
	fsckCheck(t, valid)
	tests := []struct {
		name  string
		image string // "" = the valid image
		links map[string]string
	}{
		{name: "zeros", image: string(make([]byte, 8192)), links: map[string]string{"/a": "/b"}},
		{name: "short", image: "erofs", links: map[string]string{"/a": "/b"}},
		{name: "missing primary", links: map[string]string{"/f": "/nope"}},
		{name: "missing secondary", links: map[string]string{"/nope": "/f"}},
		{name: "through a file", links: map[string]string{"/f/x": "/d/g"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := valid
			if tt.image != "" {
				img = filepath.Join(t.TempDir(), "bad.erofs")
				if err := os.WriteFile(img, []byte(tt.image), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			f, err := os.OpenFile(img, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			err = patchHardlinks(f, tt.links)
			if err == nil {
				t.Fatalf("patchHardlinks(%v) = nil; want error", tt.links)
			}
			if tt.image == "" && !errors.Is(err, errBadImage) {
				t.Errorf("patchHardlinks(%v) = %v; want errBadImage", tt.links, err)
			}
		})
	}
}
