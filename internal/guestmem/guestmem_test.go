package guestmem

import (
	"errors"
	"math"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mustNew(t testing.TB, regions ...Region) *Memory {
	t.Helper()
	m, err := New(regions...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		regions []Region
		wantErr error
	}{
		{"none", nil, nil},
		{"one", []Region{{Base: 0, Data: make([]byte, 16)}}, nil},
		{"adjacent", []Region{{Base: 16, Data: make([]byte, 16)}, {Base: 0, Data: make([]byte, 16)}}, nil},
		{"top of address space", []Region{{Base: math.MaxUint64 - 15, Data: make([]byte, 16)}}, nil},
		{"empty", []Region{{Base: 0, Data: nil}}, ErrBadRegion},
		{"wraps", []Region{{Base: math.MaxUint64 - 14, Data: make([]byte, 16)}}, ErrBadRegion},
		{"overlap", []Region{{Base: 0, Data: make([]byte, 16)}, {Base: 15, Data: make([]byte, 16)}}, ErrBadRegion},
		{"same base", []Region{{Base: 0x1000, Data: make([]byte, 1)}, {Base: 0x1000, Data: make([]byte, 1)}}, ErrBadRegion},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.regions...)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("New() error = %v; want %v", err, tc.wantErr)
			}
		})
	}
}

func TestRegionsSortedCopy(t *testing.T) {
	a := Region{Base: 0x2000, Data: make([]byte, 8)}
	b := Region{Base: 0x1000, Data: make([]byte, 8)}
	m := mustNew(t, a, b)
	got := m.Regions()
	if len(got) != 2 || got[0].Base != 0x1000 || got[1].Base != 0x2000 {
		t.Fatalf("Regions() bases = %v; want [0x1000 0x2000]", got)
	}
	got[0].Base = 0x9000
	if m.Regions()[0].Base != 0x1000 {
		t.Fatalf("Regions() returned internal slice; mutation leaked")
	}
	if got, want := m.Size(), uint64(16); got != want {
		t.Fatalf("Size() = %d; want %d", got, want)
	}
}

func TestSlice(t *testing.T) {
	m := mustNew(t,
		Region{Base: 0x1000, Data: make([]byte, 0x100)},
		Region{Base: 0x1100, Data: make([]byte, 0x100)}, // adjacent
		Region{Base: math.MaxUint64 - 0xff, Data: make([]byte, 0x100)},
	)
	tests := []struct {
		name    string
		a       Addr
		n       uint64
		wantLen int
		wantErr bool
	}{
		{"start", 0x1000, 4, 4, false},
		{"whole region", 0x1000, 0x100, 0x100, false},
		{"end of region", 0x10fc, 4, 4, false},
		{"crosses adjacent regions", 0x10fe, 4, 0, true},
		{"before memory", 0xfff, 1, 0, true},
		{"hole", 0x3000, 1, 0, true},
		{"past end", 0x11ff, 2, 0, true},
		{"huge length", 0x1000, math.MaxUint64, 0, true},
		{"length wraps", 0x1010, math.MaxUint64 - 0x8, 0, true},
		{"top of address space", math.MaxUint64 - 3, 4, 4, false},
		{"top plus one", math.MaxUint64 - 3, 5, 0, true},
		{"zero length inside", 0x1010, 0, 0, false},
		{"zero length at end", 0x1200, 0, 0, false},
		{"zero length in hole", 0x5000, 0, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := m.Slice(tc.a, tc.n)
			if gotErr := err != nil; gotErr != tc.wantErr {
				t.Fatalf("Slice(%v, %d) error = %v; want error %v", tc.a, tc.n, err, tc.wantErr)
			}
			if err != nil {
				if !errors.Is(err, ErrOutOfBounds) {
					t.Fatalf("Slice(%v, %d) error = %v; want ErrOutOfBounds", tc.a, tc.n, err)
				}
				return
			}
			if len(b) != tc.wantLen || cap(b) != tc.wantLen {
				t.Fatalf("Slice(%v, %d) len,cap = %d,%d; want %d", tc.a, tc.n, len(b), cap(b), tc.wantLen)
			}
		})
	}
}

func TestSliceAliases(t *testing.T) {
	data := make([]byte, 16)
	m := mustNew(t, Region{Base: 0x100, Data: data})
	b, err := m.Slice(0x104, 2)
	if err != nil {
		t.Fatal(err)
	}
	b[0] = 0xaa
	if data[4] != 0xaa {
		t.Fatalf("data[4] = %#x; want 0xaa (slice must alias)", data[4])
	}
}

func TestReadWriteAt(t *testing.T) {
	m := mustNew(t,
		Region{Base: 0x0, Data: make([]byte, 8)},
		Region{Base: 0x8, Data: make([]byte, 8)},
		Region{Base: 0x20, Data: make([]byte, 8)},
	)
	tests := []struct {
		name    string
		a       Addr
		n       int
		wantErr bool
	}{
		{"within", 0x2, 4, false},
		{"across adjacent", 0x6, 6, false},
		{"all contiguous", 0x0, 16, false},
		{"into hole", 0xe, 4, true},
		{"from hole", 0x18, 4, true},
		{"empty", 0x3, 0, false},
		{"top", math.MaxUint64, 2, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := make([]byte, tc.n)
			for i := range in {
				in[i] = byte(i + 1)
			}
			err := m.WriteAt(in, tc.a)
			if gotErr := err != nil; gotErr != tc.wantErr {
				t.Fatalf("WriteAt(%v, %d) error = %v; want error %v", tc.a, tc.n, err, tc.wantErr)
			}
			out := make([]byte, tc.n)
			err = m.ReadAt(out, tc.a)
			if gotErr := err != nil; gotErr != tc.wantErr {
				t.Fatalf("ReadAt(%v, %d) error = %v; want error %v", tc.a, tc.n, err, tc.wantErr)
			}
			if err == nil {
				if diff := cmp.Diff(in, out); diff != "" {
					t.Fatalf("round trip mismatch (-wrote +read):\n%s", diff)
				}
			}
		})
	}
}

func TestWriteAtNoPartialEffect(t *testing.T) {
	data := make([]byte, 8)
	m := mustNew(t, Region{Base: 0, Data: data})
	if err := m.WriteAt([]byte{1, 2, 3, 4}, 6); !errors.Is(err, ErrOutOfBounds) {
		t.Fatalf("WriteAt error = %v; want ErrOutOfBounds", err)
	}
	if diff := cmp.Diff(make([]byte, 8), data); diff != "" {
		t.Fatalf("failed write changed memory (-want +got):\n%s", diff)
	}
}

func TestIntegers(t *testing.T) {
	data := make([]byte, 16)
	m := mustNew(t, Region{Base: 0x1000, Data: data})
	if err := m.Write16(0x1000, 0x0102); err != nil {
		t.Fatal(err)
	}
	if err := m.Write32(0x1002, 0x03040506); err != nil {
		t.Fatal(err)
	}
	if err := m.Write64(0x1006, 0x0708090a0b0c0d0e); err != nil {
		t.Fatal(err)
	}
	want := []byte{0x02, 0x01, 0x06, 0x05, 0x04, 0x03, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, 0x09, 0x08, 0x07, 0, 0}
	if diff := cmp.Diff(want, data); diff != "" {
		t.Fatalf("little-endian layout mismatch (-want +got):\n%s", diff)
	}
	if v, err := m.Read16(0x1000); err != nil || v != 0x0102 {
		t.Fatalf("Read16 = %#x, %v; want 0x102", v, err)
	}
	if v, err := m.Read32(0x1002); err != nil || v != 0x03040506 {
		t.Fatalf("Read32 = %#x, %v; want 0x3040506", v, err)
	}
	if v, err := m.Read64(0x1006); err != nil || v != 0x0708090a0b0c0d0e {
		t.Fatalf("Read64 = %#x, %v; want 0x708090a0b0c0d0e", v, err)
	}
	// Out of bounds on every width.
	if _, err := m.Read16(0x100f); !errors.Is(err, ErrOutOfBounds) {
		t.Errorf("Read16(end-1) error = %v; want ErrOutOfBounds", err)
	}
	if _, err := m.Read32(0x100d); !errors.Is(err, ErrOutOfBounds) {
		t.Errorf("Read32(end-3) error = %v; want ErrOutOfBounds", err)
	}
	if _, err := m.Read64(0x1009); !errors.Is(err, ErrOutOfBounds) {
		t.Errorf("Read64(end-7) error = %v; want ErrOutOfBounds", err)
	}
	if err := m.Write16(0x100f, 1); !errors.Is(err, ErrOutOfBounds) {
		t.Errorf("Write16(end-1) error = %v; want ErrOutOfBounds", err)
	}
	if err := m.Write32(0x100d, 1); !errors.Is(err, ErrOutOfBounds) {
		t.Errorf("Write32(end-3) error = %v; want ErrOutOfBounds", err)
	}
	if err := m.Write64(0x1009, 1); !errors.Is(err, ErrOutOfBounds) {
		t.Errorf("Write64(end-7) error = %v; want ErrOutOfBounds", err)
	}
}

func TestAtomics16(t *testing.T) {
	data := make([]byte, 16)
	m := mustNew(t, Region{Base: 0x1000, Data: data})
	for _, a := range []Addr{0x1000, 0x1002, 0x1004, 0x100e} {
		if err := m.StoreRelease16(a, 0xbeef); err != nil {
			t.Fatalf("StoreRelease16(%v): %v", a, err)
		}
		if v, err := m.LoadAcquire16(a); err != nil || v != 0xbeef {
			t.Fatalf("LoadAcquire16(%v) = %#x, %v; want 0xbeef", a, v, err)
		}
		if v, _ := m.Read16(a); v != 0xbeef {
			t.Fatalf("Read16(%v) = %#x; want 0xbeef (little endian)", a, v)
		}
	}
	// The neighbouring half-word must survive.
	if err := m.Write16(0x1006, 0x1234); err != nil {
		t.Fatal(err)
	}
	if err := m.StoreRelease16(0x1004, 0x5678); err != nil {
		t.Fatal(err)
	}
	if v, _ := m.Read16(0x1006); v != 0x1234 {
		t.Fatalf("neighbour = %#x; want 0x1234", v)
	}
	errTests := []struct {
		name string
		a    Addr
		want error
	}{
		{"odd", 0x1001, ErrUnaligned},
		{"outside", 0x2000, ErrOutOfBounds},
		{"last byte", 0x100f, ErrUnaligned},
	}
	for _, tc := range errTests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := m.LoadAcquire16(tc.a); !errors.Is(err, tc.want) {
				t.Errorf("LoadAcquire16(%v) error = %v; want %v", tc.a, err, tc.want)
			}
			if err := m.StoreRelease16(tc.a, 1); !errors.Is(err, tc.want) {
				t.Errorf("StoreRelease16(%v) error = %v; want %v", tc.a, err, tc.want)
			}
		})
	}
}

func TestAtomicsMisalignedBacking(t *testing.T) {
	// A region whose Data starts 2 bytes into a word: the first half-word's
	// containing word lies outside the region and must be refused.
	backing := make([]byte, 16)
	m := mustNew(t, Region{Base: 0, Data: backing[2:10]})
	if _, err := m.LoadAcquire16(0); !errors.Is(err, ErrUnaligned) {
		t.Fatalf("LoadAcquire16(0) error = %v; want ErrUnaligned", err)
	}
	if err := m.StoreRelease16(2, 7); err != nil {
		t.Fatalf("StoreRelease16(2): %v", err)
	}
	if v, _ := m.Read16(2); v != 7 {
		t.Fatalf("Read16(2) = %d; want 7", v)
	}
	odd := mustNew(t, Region{Base: 0, Data: backing[1:9]})
	if _, err := odd.LoadAcquire16(2); !errors.Is(err, ErrUnaligned) {
		t.Fatalf("LoadAcquire16 on odd host address error = %v; want ErrUnaligned", err)
	}
}

// TestAtomicsConcurrent checks under -race that the two halves of one word
// can be updated concurrently without losing either update.
func TestAtomicsConcurrent(t *testing.T) {
	m := mustNew(t, Region{Base: 0, Data: make([]byte, 8)})
	const n = 1000
	var wg sync.WaitGroup
	for _, a := range []Addr{0, 2} {
		wg.Go(func() {
			for i := range n {
				if err := m.StoreRelease16(a, uint16(i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, a := range []Addr{0, 2} {
		if v, _ := m.LoadAcquire16(a); v != n-1 {
			t.Errorf("LoadAcquire16(%v) = %d; want %d", a, v, n-1)
		}
	}
}

func TestAddrAdd(t *testing.T) {
	if s, ok := Addr(10).Add(5); !ok || s != 15 {
		t.Errorf("Add(10,5) = %v,%v; want 0xf,true", s, ok)
	}
	if _, ok := Addr(math.MaxUint64).Add(1); ok {
		t.Errorf("Add(max,1) ok = true; want false")
	}
}

func FuzzSlice(f *testing.F) {
	f.Add(uint64(0x1000), uint64(4))
	f.Add(uint64(0x10fe), uint64(4))
	f.Add(uint64(math.MaxUint64-3), uint64(5))
	f.Add(uint64(0x1010), uint64(math.MaxUint64-8))
	m := mustNew(f,
		Region{Base: 0x1000, Data: make([]byte, 0x100)},
		Region{Base: 0x1100, Data: make([]byte, 0x100)},
		Region{Base: math.MaxUint64 - 0xff, Data: make([]byte, 0x100)},
	)
	f.Fuzz(func(t *testing.T, a, n uint64) {
		b, err := m.Slice(Addr(a), n)
		if err == nil && uint64(len(b)) != n {
			t.Fatalf("Slice(%#x, %d) len = %d", a, n, len(b))
		}
		buf := make([]byte, min(n, 512))
		_ = m.ReadAt(buf, Addr(a))
		_, _ = m.LoadAcquire16(Addr(a))
	})
}

func BenchmarkLoadAcquire16(b *testing.B) {
	m := mustNew(b, Region{Base: 0x1000, Data: make([]byte, 4096)})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.LoadAcquire16(0x1802); err != nil {
			b.Fatal(err)
		}
	}
}

func TestAppendSlices(t *testing.T) {
	m := mustNew(t,
		Region{Base: 0x0, Data: make([]byte, 8)},
		Region{Base: 0x8, Data: make([]byte, 8)},
		Region{Base: 0x20, Data: make([]byte, 8)},
	)
	tests := []struct {
		name    string
		a       Addr
		n       uint64
		want    []int // lengths
		wantErr bool
	}{
		{"within", 0x2, 4, []int{4}, false},
		{"across adjacent", 0x6, 6, []int{2, 4}, false},
		{"zero", 0x6, 0, nil, false},
		{"into hole", 0xe, 4, nil, true},
		{"wraps", 0x2, math.MaxUint64, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := m.AppendSlices(nil, tc.a, tc.n)
			if gotErr := err != nil; gotErr != tc.wantErr {
				t.Fatalf("AppendSlices(%v, %d) error = %v; want error %v", tc.a, tc.n, err, tc.wantErr)
			}
			var lens []int
			for _, b := range got {
				lens = append(lens, len(b))
			}
			if diff := cmp.Diff(tc.want, lens); diff != "" {
				t.Fatalf("AppendSlices(%v, %d) lengths (-want +got):\n%s", tc.a, tc.n, diff)
			}
		})
	}
}
