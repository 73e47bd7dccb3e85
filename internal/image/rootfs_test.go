package image

import (
	"errors"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestRootfsCompressions builds images whose layers are gzip, zstd and
// uncompressed tars; the decompressor is chosen by magic number.
func TestRootfsCompressions(t *testing.T) {
	reg := newTestRegistry(t, false)
	base := tarLayer(t, map[string]string{"a": "gzip"})
	zl, err := tarball.LayerFromOpener(tarOpener(t, map[string]string{"z": "zstd"}), tarball.WithCompression(compression.ZStd),
		tarball.WithMediaType(types.OCILayerZStd))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := random.Layer(100, types.OCIUncompressedLayer)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, base, zl, raw)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Host + "/comp/img:v"
	push(t, ref, img)
	s := newStore(t, Options{})
	pulled, err := s.Pull(t.Context(), ref, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	path, err := s.Rootfs(t.Context(), pulled)
	if err != nil {
		t.Fatalf("Rootfs: %v", err)
	}
	fsckEROFS(t, path)
	for name, want := range map[string]string{"a": "gzip", "z": "zstd"} {
		if got, err := readEROFS(t, path, name); err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
}

// TestRootfsDiffIDMismatch: a config whose diff_id does not match the
// layer's content yields no rootfs.
func TestRootfsDiffIDMismatch(t *testing.T) {
	reg := newTestRegistry(t, false)
	img := testImage(t)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs[1] = v1.Hash{Algorithm: "sha256", Hex: repeat64("0")}
	bad, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Host + "/diff/img:v"
	push(t, ref, bad)
	s := newStore(t, Options{})
	pulled, err := s.Pull(t.Context(), ref, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rootfs(t.Context(), pulled); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("Rootfs with a wrong diff_id = %v; want ErrDigestMismatch", err)
	}
	p, _ := s.rootfsPath(pulled.ManifestDigest)
	if fileExists(p) {
		t.Errorf("rootfs %s kept after a diff_id mismatch", p)
	}
}

func fileExists(p string) bool { return exists(p) }

// TestRootfsRepeatedLayer: a manifest may list one blob twice; it is fetched
// once and applied twice.
func TestRootfsRepeatedLayer(t *testing.T) {
	reg := newTestRegistry(t, false)
	l := tarLayer(t, map[string]string{"same": "x"})
	img, err := mutate.AppendLayers(empty.Image, l, tarLayer(t, map[string]string{"mid": "y"}), l)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Host + "/rep/img:v"
	push(t, ref, img)
	d, _ := l.Digest()
	reg.reset()
	s := newStore(t, Options{})
	pulled, err := s.Pull(t.Context(), ref, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := reg.count("GET", d.String()); n != 1 {
		t.Errorf("repeated blob fetched %d times; want 1", n)
	}
	path, err := s.Rootfs(t.Context(), pulled)
	if err != nil {
		t.Fatalf("Rootfs: %v", err)
	}
	fsckEROFS(t, path)
	if got, err := readEROFS(t, path, "same"); err != nil || got != "x" {
		t.Errorf("same = %q, %v; want x", got, err)
	}
}
