package boot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/msb-go/msb/internal/guestmem"
)

// fakeBzImage builds a bzImage with setup_sects setup sectors and the given
// protected-mode payload, with header fields set as a 6.1 kernel sets them.
func fakeBzImage(payload []byte, edit func(b []byte)) []byte {
	const setupSects = 4
	b := make([]byte, (setupSects+1)*512+len(payload))
	le := binary.LittleEndian
	b[offSetupSects] = setupSects
	le.PutUint32(b[offSyssize:], uint32((len(payload)+15)/16))
	le.PutUint16(b[offBootFlag:], bootFlagMagic)
	b[offJump] = 0xeb
	b[offJump+1] = byte(hdrEnd - offHeader)
	le.PutUint32(b[offHeader:], headerMagic)
	le.PutUint16(b[offVersion:], 0x020f)
	b[offLoadflags] = loadedHigh
	le.PutUint32(b[offCode32Start:], 0x100000)
	le.PutUint32(b[offInitrdAddrMax:], 0x7fffffff)
	le.PutUint32(b[offKernelAlign:], 0x200000)
	b[offRelocatable] = 1
	le.PutUint16(b[offXLoadflags:], xlfKernel64)
	le.PutUint32(b[offCmdlineSize:], 2047)
	// A 2 MiB preferred address keeps the tests' guests small; real
	// kernels ask for 16 MiB (TestRuntimeStart).
	le.PutUint64(b[offPrefAddress:], 0x200000)
	le.PutUint32(b[offInitSize:], uint32(len(payload)))
	copy(b[(setupSects+1)*512:], payload)
	if edit != nil {
		edit(b)
	}
	// Pad so syssize*16 always fits.
	return append(b, make([]byte, 16)...)
}

var bzImageTests = []struct {
	name    string
	edit    func(b []byte)
	wantErr error
}{
	{"valid", nil, nil},
	{"setup_sects 0 means 4", func(b []byte) { b[offSetupSects] = 0 }, nil},
	{"no boot flag", func(b []byte) { b[offBootFlag] = 0 }, ErrNotBzImage},
	{"no HdrS", func(b []byte) { b[offHeader] = 'X' }, ErrNotBzImage},
	{"protocol 2.11", func(b []byte) { binary.LittleEndian.PutUint16(b[offVersion:], 0x020b) }, ErrUnsupportedKernel},
	{"no 64-bit entry", func(b []byte) { binary.LittleEndian.PutUint16(b[offXLoadflags:], 0) }, ErrUnsupportedKernel},
	{"zImage", func(b []byte) { b[offLoadflags] = 0 }, ErrUnsupportedKernel},
	{"setup_sects 200", func(b []byte) { b[offSetupSects] = 200 }, ErrBadKernel},
	{"syssize 0", func(b []byte) { binary.LittleEndian.PutUint32(b[offSyssize:], 0) }, ErrBadKernel},
	{"cmdline_size 0", func(b []byte) { binary.LittleEndian.PutUint32(b[offCmdlineSize:], 0) }, ErrBadKernel},
	{"header shorter than fields read", func(b []byte) { b[offJump+1] = 0x10 }, ErrBadKernel},
}

func TestParseBzImage(t *testing.T) {
	payload := bytes.Repeat([]byte{0x90}, 1000)
	for _, tc := range bzImageTests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ParseBzImage(fakeBzImage(payload, tc.edit))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("ParseBzImage() error = %v; want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if h.SetupSects != 4 || h.SyssizeBytes != 1008 || h.CmdlineSize != 2047 || h.Version != 0x020f || len(h.Raw) != hdrEnd-hdrStart {
				t.Errorf("ParseBzImage() = %+v; want setup_sects 4, syssize 1008 bytes, cmdline_size 2047, version 0x20f, %d raw bytes", h, hdrEnd-hdrStart)
			}
		})
	}
	t.Run("header past input", func(t *testing.T) {
		b := fakeBzImage(payload, func(b []byte) { b[offJump+1] = 0xff })[:0x280]
		if _, err := ParseBzImage(b); !errors.Is(err, ErrBadKernel) {
			t.Errorf("ParseBzImage(header end 0x301, 0x280 bytes) error = %v; want ErrBadKernel", err)
		}
	})
	t.Run("short", func(t *testing.T) {
		if _, err := ParseBzImage(make([]byte, hdrEnd-1)); !errors.Is(err, ErrNotBzImage) {
			t.Errorf("ParseBzImage(short) error = %v; want ErrNotBzImage", err)
		}
	})
}

func FuzzParseBzImage(f *testing.F) {
	payload := bytes.Repeat([]byte{0x90}, 64)
	for _, tc := range bzImageTests {
		f.Add(fakeBzImage(payload, tc.edit)[:1024])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseBzImage(b)
		if err != nil {
			return
		}
		if h.SetupSects == 0 || h.SetupSects > maxSetupSects || len(h.Raw) < hdrEnd-hdrStart || int64(hdrStart+len(h.Raw)) > h.KernelOffset() {
			t.Fatalf("ParseBzImage accepted inconsistent header %+v", h)
		}
		// Whatever parses must load without panicking.
		mem, err := guestmem.New(guestmem.Region{Base: 0, Data: make([]byte, 4<<20)})
		if err != nil {
			t.Fatal(err)
		}
		LoadBzImage(mem, bytes.NewReader(b), int64(len(b)))
	})
}

func TestRuntimeStart(t *testing.T) {
	tests := []struct {
		name        string
		relocatable bool
		load        guestmem.Addr
		pref, align uint64
		want        guestmem.Addr
	}{
		// Debian 6.1 cloud kernel: relocatable, 16 MiB, 2 MiB aligned.
		{"relocatable moves up to pref", true, 0x100000, 0x1000000, 0x200000, 0x1000000},
		{"relocatable above pref aligns up", true, 0x1100000, 0x1000000, 0x200000, 0x1200000},
		{"relocatable already aligned", true, 0x1200000, 0x1000000, 0x200000, 0x1200000},
		{"not relocatable runs at pref", false, 0x100000, 0x1000000, 0x200000, 0x1000000},
		{"bad alignment ignored", true, 0x100001, 0, 0x3000, 0x100001},
		{"alignment overflow", true, ^guestmem.Addr(0) - 1, 0, 0x200000, ^guestmem.Addr(0) - 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &SetupHeader{Relocatable: tc.relocatable, PrefAddress: tc.pref, KernelAlign: uint32(tc.align)}
			if got := runtimeStart(h, tc.load); got != tc.want {
				t.Errorf("runtimeStart(load %v) = %v; want %v", tc.load, got, tc.want)
			}
		})
	}
}

func newMem(t testing.TB, size int) *guestmem.Memory {
	t.Helper()
	mem, err := guestmem.New(guestmem.Region{Base: 0, Data: make([]byte, size)})
	if err != nil {
		t.Fatal(err)
	}
	return mem
}

func TestLoadBzImage(t *testing.T) {
	payload := bytes.Repeat([]byte{0xab}, 4096)
	img := fakeBzImage(payload, nil)
	t.Run("loads at 1 MiB", func(t *testing.T) {
		mem := newMem(t, 4<<20)
		k, err := LoadBzImage(mem, bytes.NewReader(img), int64(len(img)))
		if err != nil {
			t.Fatalf("LoadBzImage: %v", err)
		}
		if k.Entry != KernelAddr+0x200 || k.Start != KernelAddr || k.End < KernelAddr+4096 || k.PVH || k.Header == nil {
			t.Errorf("LoadBzImage() = %+v; want entry %v, start %v, end ≥ start+4096, !PVH, header", k, KernelAddr+0x200, KernelAddr)
		}
		got := make([]byte, len(payload))
		if err := mem.ReadAt(got, KernelAddr); err != nil || !bytes.Equal(got, payload) {
			t.Errorf("kernel at %v differs from payload (err %v)", KernelAddr, err)
		}
	})
	t.Run("end covers init_size at the runtime address", func(t *testing.T) {
		mem := newMem(t, 4<<20)
		img := fakeBzImage(payload, func(b []byte) { binary.LittleEndian.PutUint32(b[offInitSize:], 0x180000) })
		k, err := LoadBzImage(mem, bytes.NewReader(img), int64(len(img)))
		if err != nil {
			t.Fatalf("LoadBzImage: %v", err)
		}
		if want := guestmem.Addr(0x200000 + 0x180000); k.End != want {
			t.Errorf("End = %v; want %v (pref_address + init_size)", k.End, want)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		mem := newMem(t, 4<<20)
		short := img[:len(img)-1000]
		if _, err := LoadBzImage(mem, bytes.NewReader(short), int64(len(short))); !errors.Is(err, ErrBadKernel) {
			t.Errorf("LoadBzImage(truncated) error = %v; want ErrBadKernel", err)
		}
	})
	t.Run("init_size beyond memory", func(t *testing.T) {
		mem := newMem(t, 2<<20)
		big := fakeBzImage(payload, func(b []byte) { binary.LittleEndian.PutUint32(b[offInitSize:], 64<<20) })
		if _, err := LoadBzImage(mem, bytes.NewReader(big), int64(len(big))); !errors.Is(err, ErrNoRoom) {
			t.Errorf("LoadBzImage(init_size 64 MiB, 2 MiB RAM) error = %v; want ErrNoRoom", err)
		}
	})
	t.Run("empty", func(t *testing.T) {
		mem := newMem(t, 2<<20)
		if _, err := LoadBzImage(mem, bytes.NewReader(nil), 0); !errors.Is(err, ErrNotBzImage) {
			t.Errorf("LoadBzImage(empty) error = %v; want ErrNotBzImage", err)
		}
	})
}
