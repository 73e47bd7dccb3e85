//go:build linux

package passthrough

import (
	"strconv"
	"syscall"
	"testing"
)

// BenchmarkCreateStatUnlink creates, stats and unlinks 1000 files through
// the raw protocol per iteration.
func BenchmarkCreateStatUnlink(b *testing.B) {
	r := newRig(b, Options{})
	names := make([]string, 1000)
	for i := range names {
		names[i] = "file" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, name := range names {
			n, fh, e := r.create(rootID, name, syscall.O_RDWR, 0o644)
			if e != 0 {
				b.Fatalf("CREATE: %v", e)
			}
			r.release(fh)
			if _, e := r.getattr(n); e != 0 {
				b.Fatalf("GETATTR: %v", e)
			}
			if e := r.unlink(rootID, name); e != 0 {
				b.Fatalf("UNLINK: %v", e)
			}
			r.forget(n, 1)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(names)), "ns/file")
}

// BenchmarkSequential writes and reads 64 MiB in 128 KiB requests.
func BenchmarkSequential(b *testing.B) {
	const size, chunk = 64 << 20, 128 << 10
	r := newRig(b, Options{})
	_, fh, e := r.create(rootID, "big", syscall.O_RDWR, 0o644)
	if e != 0 {
		b.Fatal(e)
	}
	defer r.release(fh)
	buf := make([]byte, chunk)
	for i := range buf {
		buf[i] = byte(i)
	}
	b.Run("write", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			for off := 0; off < size; off += chunk {
				if w, e := r.write(fh, uint64(off), buf); e != 0 || w != chunk {
					b.Fatalf("WRITE = %d, %v", w, e)
				}
			}
		}
	})
	b.Run("read", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			for off := 0; off < size; off += chunk {
				if d, e := r.read(fh, uint64(off), chunk); e != 0 || len(d) != chunk {
					b.Fatalf("READ = %d, %v", len(d), e)
				}
			}
		}
	})
}
