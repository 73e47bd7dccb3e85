package bus

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// recorder is a Device that logs accesses and reads back its name's byte.
type recorder struct {
	name byte
	mu   sync.Mutex
	log  []string
}

func (r *recorder) Read(off uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, fmt.Sprintf("r%#x/%d", off, len(data)))
	for i := range data {
		data[i] = r.name
	}
}

func (r *recorder) Write(off uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, fmt.Sprintf("w%#x=% x", off, data))
}

func TestInsert(t *testing.T) {
	tests := []struct {
		name       string
		base, size uint64
		wantErr    error
	}{
		{"disjoint below", 0x0, 0x10, nil},
		{"adjacent below", 0x3f0, 0x8, nil},
		{"adjacent above", 0x400, 0x10, nil},
		{"overlaps start", 0x3f0, 0x9, ErrOverlap},
		{"overlaps end", 0x3ff, 0x2, ErrOverlap},
		{"inside", 0x3f9, 0x1, ErrOverlap},
		{"covers", 0x300, 0x1000, ErrOverlap},
		{"same base", 0x3f8, 0x8, ErrOverlap},
		{"empty", 0x1000, 0, ErrBadRange},
		{"wraps", ^uint64(0), 2, ErrBadRange},
		{"ends at top", ^uint64(0) - 0xf, 0x10, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b Bus
			if err := b.Insert(&recorder{}, 0x3f8, 8); err != nil {
				t.Fatal(err)
			}
			if err := b.Insert(&recorder{}, tc.base, tc.size); !errors.Is(err, tc.wantErr) {
				t.Errorf("Insert(%#x, %#x) error = %v; want %v", tc.base, tc.size, err, tc.wantErr)
			}
		})
	}
}

func TestDispatch(t *testing.T) {
	var b Bus
	uart, rtc, top := &recorder{name: 'u'}, &recorder{name: 'r'}, &recorder{name: 't'}
	for _, d := range []struct {
		dev        *recorder
		base, size uint64
	}{{uart, 0x3f8, 8}, {rtc, 0x70, 2}, {top, ^uint64(0) - 7, 8}} {
		if err := b.Insert(d.dev, d.base, d.size); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		write   bool
		addr    uint64
		data    []byte
		want    []byte // read result
		wantErr error
	}{
		{"read first byte", false, 0x3f8, make([]byte, 1), []byte{'u'}, nil},
		{"read last byte", false, 0x3ff, make([]byte, 1), []byte{'u'}, nil},
		{"write offset 5", true, 0x3fd, []byte{0x42}, nil, nil},
		{"rtc word", false, 0x70, make([]byte, 2), []byte{'r', 'r'}, nil},
		{"straddles end", false, 0x71, make([]byte, 2), []byte{0xff, 0xff}, ErrNoDevice},
		{"below all", false, 0x10, make([]byte, 4), []byte{0xff, 0xff, 0xff, 0xff}, ErrNoDevice},
		{"gap", true, 0x100, []byte{1}, nil, ErrNoDevice},
		{"after last in gap", false, 0x400, make([]byte, 1), []byte{0xff}, ErrNoDevice},
		{"top of address space", false, ^uint64(0) - 7, make([]byte, 8), bytes.Repeat([]byte{'t'}, 8), nil},
		{"past top", false, ^uint64(0), make([]byte, 2), []byte{0xff, 0xff}, ErrNoDevice},
		{"empty access", false, 0x3f8, nil, nil, ErrNoDevice},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.write {
				err = b.Write(tc.addr, tc.data)
			} else {
				err = b.Read(tc.addr, tc.data)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error = %v; want %v", err, tc.wantErr)
			}
			if !tc.write && !bytes.Equal(tc.data, tc.want) {
				t.Errorf("read % x; want % x", tc.data, tc.want)
			}
		})
	}
	if diff := cmp.Diff([]string{"r0x0/1", "r0x7/1", "w0x5=42"}, uart.log); diff != "" {
		t.Errorf("uart saw (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"r0x0/2"}, rtc.log); diff != "" {
		t.Errorf("rtc saw (-want +got):\n%s", diff)
	}
}

func TestRemove(t *testing.T) {
	var b Bus
	if err := b.Insert(&recorder{}, 0x60, 1); err != nil {
		t.Fatal(err)
	}
	if err := b.Remove(0x61); !errors.Is(err, ErrNoDevice) {
		t.Errorf("Remove(0x61) error = %v; want ErrNoDevice", err)
	}
	if err := b.Remove(0x60); err != nil {
		t.Fatalf("Remove(0x60): %v", err)
	}
	if err := b.Write(0x60, []byte{1}); !errors.Is(err, ErrNoDevice) {
		t.Errorf("Write after Remove error = %v; want ErrNoDevice", err)
	}
}

func TestConcurrentAccess(t *testing.T) {
	var b Bus
	dev := &recorder{name: 1}
	if err := b.Insert(dev, 0x1000, 0x100); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			buf := make([]byte, 4)
			for range 100 {
				if err := b.Read(0x1010, buf); err != nil {
					t.Errorf("Read: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if len(dev.log) != 400 {
		t.Errorf("device saw %d reads; want 400", len(dev.log))
	}
}
