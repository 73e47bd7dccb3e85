package rootfs

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// genTree writes files files totalling about total bytes of incompressible
// data, 100 to a directory, with every 50th file a hardlink and every 25th a
// symlink.
func genTree(b *testing.B, dir string, files int, total int64) int64 {
	b.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	avg := total / int64(files)
	buf := make([]byte, 2*avg)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	var written int64
	for i := range files {
		d := filepath.Join(dir, fmt.Sprintf("d%03d", i/100))
		if i%100 == 0 {
			if err := os.MkdirAll(d, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		p := filepath.Join(d, fmt.Sprintf("file-%05d", i))
		switch {
		case i%50 == 49:
			if err := os.Link(filepath.Join(d, fmt.Sprintf("file-%05d", i-1)), p); err != nil {
				b.Fatal(err)
			}
			continue
		case i%25 == 24:
			if err := os.Symlink("../d000/file-00000", p); err != nil {
				b.Fatal(err)
			}
			continue
		}
		n := rng.Int64N(2 * avg)
		off := rng.Int64N(int64(len(buf)) - n + 1)
		if err := os.WriteFile(p, buf[off:off+n], 0o644); err != nil {
			b.Fatal(err)
		}
		written += n
	}
	return written
}

// BenchmarkPackDir packs a generated tree (~5k files, ~100 MiB) with PackDir
// and, as the reference, with mkfs.erofs (uncompressed, erofs-utils).
func BenchmarkPackDir(b *testing.B) {
	src := filepath.Join(b.TempDir(), "src")
	size := genTree(b, src, 5000, 100<<20)
	out := filepath.Join(b.TempDir(), "out.erofs")

	b.Run("PackDir", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			if err := PackDir(b.Context(), src, out, PackOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("mkfs.erofs", func(b *testing.B) {
		bin := requireTool(b, "mkfs.erofs", "erofs-utils")
		b.SetBytes(size)
		for b.Loop() {
			_ = os.Remove(out)
			if o, err := exec.Command(bin, "--quiet", out, src).CombinedOutput(); err != nil {
				b.Fatalf("mkfs.erofs: %v\n%s", err, o)
			}
		}
	})
}

// BenchmarkCompareErofs is the `make compare` row of BenchmarkPackDir:
// PackDir and mkfs.erofs on the same tree, alternating, medians in ms.
func BenchmarkCompareErofs(b *testing.B) {
	bin := requireTool(b, "mkfs.erofs", "erofs-utils")
	src := filepath.Join(b.TempDir(), "src")
	genTree(b, src, 5000, 100<<20)
	out := filepath.Join(b.TempDir(), "out.erofs")
	var msb, peer []float64
	for b.Loop() {
		for range 3 {
			start := time.Now()
			if err := PackDir(b.Context(), src, out, PackOptions{}); err != nil {
				b.Fatal(err)
			}
			msb = append(msb, float64(time.Since(start).Microseconds())/1000)
			_ = os.Remove(out)
			start = time.Now()
			if o, err := exec.Command(bin, "--quiet", out, src).CombinedOutput(); err != nil {
				b.Fatalf("mkfs.erofs: %v\n%s", err, o)
			}
			peer = append(peer, float64(time.Since(start).Microseconds())/1000)
			_ = os.Remove(out)
		}
	}
	slices.Sort(msb)
	slices.Sort(peer)
	b.ReportMetric(msb[len(msb)/2], "msb-ms")
	b.ReportMetric(peer[len(peer)/2], "peer-ms")
}
