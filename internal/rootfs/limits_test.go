package rootfs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{"0", 0, false},
		{"4096", 4096, false},
		{"512K", 512 << 10, false},
		{"64MiB", 64 << 20, false},
		{"16g", 16 << 30, false},
		{" 1T ", 1 << 40, false},
		{"", 0, true},
		{"G", 0, true},
		{"-1", 0, true},
		{"+5", 0, true},
		{"1.5G", 0, true},
		{"9000000T", 0, true},
		{"12X", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "512K", "64MiB", "1T", "-1", "9223372036854775807", "8388608T"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err == nil && n < 0 {
			t.Fatalf("ParseSize(%q) = %d; want non-negative", s, n)
		}
	})
}

func TestLimitsFromEnv(t *testing.T) {
	t.Setenv(EnvMaxInodes, "1000")
	t.Setenv(EnvMaxBytes, "2G")
	t.Setenv(EnvMaxFileBytes, "")
	t.Setenv(EnvMaxMetadata, "64M")
	t.Setenv(EnvMinFree, "0")
	got, err := LimitsFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	want := Limits{MaxInodes: 1000, MaxBytes: 2 << 30, MaxMetadata: 64 << 20}
	if got != want {
		t.Errorf("LimitsFromEnv() = %+v; want %+v", got, want)
	}
	t.Setenv(EnvMaxBytes, "lots")
	if _, err := LimitsFromEnv(); err == nil || !strings.Contains(err.Error(), EnvMaxBytes) {
		t.Errorf("LimitsFromEnv(bad) = %v; want an error naming %s", err, EnvMaxBytes)
	}
}

// peakHeap samples HeapAlloc until stop is called and returns the largest
// growth over the value at the start.
func peakHeap() (stop func() uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	peak := base
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak - base
	}
}

// TestInodeCostCoversHeap measures the heap an implied directory really
// costs and checks inodeCost charges at least that much.
func TestInodeCostCoversHeap(t *testing.T) {
	const n = 20000
	b := &layerBuilder{root: newDir(0o755), lim: Limits{}.withDefaults()}
	parts := make([]string, 0, n)
	for i := range n {
		parts = append(parts, strconv.Itoa(i%10)) // short names: the fixed cost dominates
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	// 100 chains of 200 levels, as a directory bomb builds them.
	for i := 0; i < n; i += 200 {
		chain := append([]string{"x" + strconv.Itoa(i)}, parts[i+1:i+200]...)
		if _, err := b.resolve(chain, 0, true); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	runtime.KeepAlive(b)
	t.Logf("heap per implied directory: %.0f B; charged %d B", per, inodeCost)
	if per > inodeCost {
		t.Errorf("an implied directory costs %.0f B of heap; inodeCost charges only %d", per, inodeCost)
	}
	if b.inodes != n {
		t.Errorf("counted %d inodes; want %d", b.inodes, n)
	}
}

// dirBomb is the review's proof of concept: 500 entries
// x<i>/a/a/.../a/f, 2000 levels deep, each implying 2000 directories, in a
// gzipped layer.
func dirBomb(tb testing.TB) []byte {
	tb.Helper()
	deep := strings.Repeat("a/", 2000)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for i := range 500 {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: "x" + strconv.Itoa(i) + "/" + deep + "f", Mode: 0o644, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func TestDirectoryBomb(t *testing.T) {
	bomb := dirBomb(t)
	for _, tt := range []struct {
		name    string
		lim     Limits
		env     string
		maxHeap uint64
	}{
		// The metadata budget must bound the real heap: with a small
		// budget the builder stops within 1.5 times it.
		{"metadata budget", Limits{MaxMetadata: 32 << 20}, EnvMaxMetadata, 48 << 20},
		{"inode cap", Limits{MaxInodes: 50000}, EnvMaxInodes, 48 << 20},
		{"defaults", Limits{}, EnvMaxMetadata, DefaultMaxMetadata * 5 / 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.lim == (Limits{}) && testing.Short() {
				t.Skip("the default budget lets the bomb use 256 MiB of heap")
			}
			zr, err := gzip.NewReader(bytes.NewReader(bomb))
			if err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(t.TempDir(), "bomb.erofs")
			stop := peakHeap()
			start := time.Now()
			err = BuildFromLayersLimited(t.Context(), []io.Reader{zr}, dst, tt.lim)
			took := time.Since(start)
			grew := stop()
			t.Logf("%d B gzipped layer: failed after %v, peak heap growth %.1f MiB: %v", len(bomb), took, float64(grew)/(1<<20), err)
			var le *LimitError
			if !errors.As(err, &le) || le.Env != tt.env || !errors.Is(err, ErrTooLarge) {
				t.Fatalf("BuildFromLayersLimited(bomb) = %v; want a LimitError naming %s", err, tt.env)
			}
			if !strings.Contains(err.Error(), tt.env) {
				t.Errorf("error %q does not name %s", err, tt.env)
			}
			if grew > tt.maxHeap {
				t.Errorf("peak heap grew by %d B; want at most %d", grew, tt.maxHeap)
			}
			if took > 30*time.Second {
				t.Errorf("took %v to refuse the bomb; want it to fail fast", took)
			}
		})
	}
}

// zstdZeroBomb returns a zstd frame holding a tar whose only file, "zero",
// is size bytes of zeros. Zeros are RLE blocks of 128 KiB (4 bytes each),
// produced lazily, so the stream is size/32768 bytes and never in memory.
func zstdZeroBomb(tb testing.TB, size int64) io.Reader {
	tb.Helper()
	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "zero", Mode: 0o644, Size: size}); err != nil {
		tb.Fatal(err)
	}
	tw.Flush()
	// RFC 8878 §3.1.1: magic, frame header descriptor 0 (no size, no
	// checksum, window descriptor follows), window descriptor 2^20 (0x50).
	frame := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x50}
	raw := hdr.Bytes() // the tar header as one raw block
	frame = appendBlockHeader(frame, false, 0, len(raw))
	frame = append(frame, raw...)
	const rle = 128 << 10
	return io.MultiReader(bytes.NewReader(frame), &rleBlocks{left: size, block: rle})
}

// appendBlockHeader appends a zstd block header (RFC 8878 §3.1.1.2):
// last flag, type (0 raw, 1 RLE), 21-bit size.
func appendBlockHeader(b []byte, last bool, typ, size int) []byte {
	v := uint32(size)<<3 | uint32(typ)<<1
	if last {
		v |= 1
	}
	var le [4]byte
	binary.LittleEndian.PutUint32(le[:], v)
	return append(b, le[:3]...)
}

type rleBlocks struct {
	left  int64
	block int64
	pend  []byte
}

func (r *rleBlocks) Read(p []byte) (int, error) {
	if len(r.pend) == 0 {
		if r.left <= 0 {
			return 0, io.EOF
		}
		n := min(r.left, r.block)
		r.left -= n
		// The tar's zero padding and end blocks are zeros too, but the
		// builder must never get that far.
		r.pend = append(appendBlockHeader(r.pend[:0], r.left == 0, 1, int(n)), 0)
	}
	n := copy(p, r.pend)
	r.pend = r.pend[n:]
	return n, nil
}

func diskUse(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}

func TestZstdZeroBomb(t *testing.T) {
	const tib = 1 << 40
	zr, err := zstd.NewReader(zstdZeroBomb(t, tib), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(128<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	dir := t.TempDir()
	start := time.Now()
	err = BuildFromLayers(t.Context(), []io.Reader{zr}, filepath.Join(dir, "bomb.erofs"))
	var le *LimitError
	if !errors.As(err, &le) || le.Env != EnvMaxFileBytes {
		t.Fatalf("BuildFromLayers(1 TiB of zeros) = %v; want a LimitError naming %s", err, EnvMaxFileBytes)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("refusing took %v", took)
	}
	if use := diskUse(t, dir); use > 1<<20 {
		t.Errorf("%d B written to disk refusing the bomb; want none", use)
	}
}

// TestZstdZeroFileSparse lets a (smaller) zero bomb through and checks the
// spool keeps it as a hole.
func TestZstdZeroFileSparse(t *testing.T) {
	const size = 256 << 20
	zr, err := zstd.NewReader(zstdZeroBomb(t, size), zstd.WithDecoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	if _, err := tr.Next(); err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(t.TempDir(), "spool")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("x"), 0); err != nil { // an unaligned start
		t.Fatal(err)
	}
	n, err := spoolSparse(f, 4096, tr, size)
	if err != nil || n != size {
		t.Fatalf("spoolSparse = %d, %v; want %d, nil", n, err, size)
	}
	fi, _ := f.Stat()
	if fi.Size() != 4096+size {
		t.Errorf("spool size %d; want %d", fi.Size(), 4096+size)
	}
	use := fi.Sys().(*syscall.Stat_t).Blocks * 512
	t.Logf("%d MiB of zeros spooled into %d B of disk", size>>20, use)
	if use > 1<<20 {
		t.Errorf("spool uses %d B of disk for %d B of zeros; want it sparse", use, size)
	}
}

func TestSpoolSparseContent(t *testing.T) {
	data := make([]byte, 3*spoolChunk+100)
	copy(data[5000:], "hello")
	copy(data[2*spoolChunk+7:], "world")
	data[len(data)-1] = 9
	for _, tail := range []int{0, 1} { // ends in data, ends in a hole
		in := data[:len(data)-tail]
		if tail == 1 {
			in = append(append([]byte(nil), in[:len(in)-8192]...), make([]byte, 8192)...)
		}
		f, err := os.CreateTemp(t.TempDir(), "spool")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := spoolSparse(f, 8192, bytes.NewReader(in), int64(len(in))); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(in))
		if _, err := f.ReadAt(got, 8192); err != nil {
			t.Fatalf("read back: %v", err)
		}
		if !bytes.Equal(got, in) {
			t.Errorf("spooled content differs from input")
		}
		if _, err := spoolSparse(f, 0, bytes.NewReader(in[:10]), 20); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("spoolSparse(short) = %v; want io.ErrUnexpectedEOF", err)
		}
		f.Close()
	}
}

func TestBuildLimits(t *testing.T) {
	files := func(n int, size int) []te {
		var es []te
		for i := range n {
			es = append(es, tFile("d/f"+strconv.Itoa(i), strings.Repeat("z", size)))
		}
		return es
	}
	for _, tt := range []struct {
		name    string
		entries []te
		lim     Limits
		env     string // "" for success
	}{
		{"within limits", files(10, 100), Limits{MaxInodes: 11, MaxBytes: 1000, MaxFileBytes: 100}, ""},
		{"inodes", files(11, 1), Limits{MaxInodes: 11}, EnvMaxInodes},
		// An upper layer rewriting every file (chown -R) counts each once.
		{"rewrites", append(append(files(10, 1), files(10, 2)...), files(10, 3)...), Limits{MaxInodes: 11, MaxMetadata: 11*inodeCost + 200}, ""},
		{"total bytes", files(11, 100), Limits{MaxBytes: 1000}, EnvMaxBytes},
		{"file bytes", files(1, 101), Limits{MaxFileBytes: 100}, EnvMaxFileBytes},
		{"metadata", files(10, 1), Limits{MaxMetadata: 10 * inodeCost}, EnvMaxMetadata},
		{"free space", files(1, 10), Limits{MinFree: 1 << 62}, EnvMinFree},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "img.erofs")
			err := BuildFromLayersLimited(t.Context(), []io.Reader{bytes.NewReader(mkTar(t, tt.entries...))}, dst, tt.lim)
			if tt.env == "" {
				if err != nil {
					t.Fatalf("BuildFromLayersLimited = %v; want success", err)
				}
				return
			}
			var le *LimitError
			if !errors.As(err, &le) || le.Env != tt.env {
				t.Fatalf("BuildFromLayersLimited = %v; want a LimitError naming %s", err, tt.env)
			}
			msg := err.Error()
			for _, want := range []string{tt.env, strconv.FormatInt(le.Value, 10)} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not name %q", msg, want)
				}
			}
		})
	}
}
