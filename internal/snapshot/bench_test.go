package snapshot

import (
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// benchUpper is a 4 GiB sparse file (the default upper size) holding 32 MiB
// of random data in 32 extents of 1 MiB, spread over the file.
func benchUpper(b *testing.B) (string, int64) {
	b.Helper()
	const size, extents, extent = 4 << 30, 32, 1 << 20
	p := filepath.Join(b.TempDir(), UpperFile)
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, extent)
	rng := rand.NewChaCha8([32]byte{1})
	for i := range extents {
		rng.Read(buf)
		if _, err := f.WriteAt(buf, int64(i)*(size/extents)); err != nil {
			b.Fatal(err)
		}
	}
	return p, extents * extent
}

func BenchmarkCopySparse(b *testing.B) {
	src, data := benchUpper(b)
	dst := filepath.Join(b.TempDir(), "copy")
	b.SetBytes(data)
	for b.Loop() {
		if err := CopySparse(b.Context(), src, dst); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDigest(b *testing.B) {
	src, data := benchUpper(b)
	b.SetBytes(data)
	for b.Loop() {
		if _, err := Digest(b.Context(), src); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExportImport(b *testing.B) {
	src, data := benchUpper(b)
	dir := filepath.Dir(src)
	d, err := Digest(b.Context(), src)
	if err != nil {
		b.Fatal(err)
	}
	m := testManifest()
	m.Upper.SizeBytes, m.Upper.Integrity.Digest = 4<<30, d
	raw, _ := m.Canonical()
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), raw, 0o600); err != nil {
		b.Fatal(err)
	}
	archive := filepath.Join(b.TempDir(), "a.tar.zst")
	out := filepath.Join(b.TempDir(), UpperFile)
	b.SetBytes(data)
	for b.Loop() {
		f, err := os.Create(archive)
		if err != nil {
			b.Fatal(err)
		}
		if err := WriteArchive(b.Context(), dir, f, false); err != nil {
			b.Fatal(err)
		}
		f.Seek(0, io.SeekStart)
		if _, err := ReadArchive(b.Context(), f, out, nil); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
