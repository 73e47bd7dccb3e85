package sandbox

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/msb-go/msb/internal/home"
)

// TestFreshUpperFromTemplate checks that uppers are copies of one cached
// template per size, so that only the first create formats ext4.
func TestFreshUpperFromTemplate(t *testing.T) {
	h, err := home.At(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := provisioner{home: h}
	const size = 64 << 20
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.ext4"), filepath.Join(dir, "b.ext4")
	for _, path := range []string{a, b} {
		if err := p.freshUpper(context.Background(), path, size); err != nil {
			t.Fatalf("freshUpper(%s): %v", path, err)
		}
	}
	tmpls, err := filepath.Glob(filepath.Join(h.CacheDir(), "upper", "*.ext4"))
	if err != nil || len(tmpls) != 1 {
		t.Fatalf("templates = %v, %v; want one", tmpls, err)
	}
	want, err := os.ReadFile(tmpls[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{a, b} {
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != size || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, equal to the template: %v; want a %d-byte copy", path, len(got), bytes.Equal(got, want), size)
		}
	}
}
