package boot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/msb-go/msb/internal/guestmem"
)

// Offsets of struct setup_header fields inside the kernel file and inside
// boot_params, which are the same (Documentation/arch/x86/boot.rst, "The
// Real-Mode Kernel Header").
const (
	hdrStart          = 0x1f1 // setup_sects: start of struct setup_header
	offSetupSects     = 0x1f1
	offSyssize        = 0x1f4
	offBootFlag       = 0x1fe
	offJump           = 0x200 // 2-byte jump; its displacement bounds the header
	offHeader         = 0x202
	offVersion        = 0x206
	offTypeOfLoader   = 0x210
	offLoadflags      = 0x211
	offCode32Start    = 0x214
	offRamdiskImage   = 0x218
	offRamdiskSize    = 0x21c
	offHeapEndPtr     = 0x224
	offCmdLinePtr     = 0x228
	offInitrdAddrMax  = 0x22c
	offKernelAlign    = 0x230
	offRelocatable    = 0x234
	offXLoadflags     = 0x236
	offCmdlineSize    = 0x238
	offPrefAddress    = 0x258
	offInitSize       = 0x260
	hdrEnd            = 0x268 // end of the fields this loader reads
	bootFlagMagic     = 0xaa55
	headerMagic       = 0x53726448 // "HdrS"
	minVersion        = 0x020c     // 2.12: xloadflags, needed for XLF_KERNEL_64
	loadedHigh        = 1 << 0
	canUseHeap        = 1 << 7
	xlfKernel64       = 1 << 0
	startup64Offset   = 0x200 // 64-bit entry is 0x200 past the protected-mode kernel
	maxSetupSects     = 64    // the real-mode part is at most 32 KiB
	typeOfLoaderOther = 0xff  // "undefined" boot loader id
)

// SetupHeader is the subset of struct setup_header the loader needs,
// validated by ParseBzImage.
type SetupHeader struct {
	SetupSects    uint8
	SyssizeBytes  uint64 // syssize * 16: size of the protected-mode kernel
	Version       uint16
	Loadflags     uint8
	XLoadflags    uint16
	InitrdAddrMax uint32
	KernelAlign   uint32
	Relocatable   bool
	CmdlineSize   uint32 // maximum command line length, without the NUL
	PrefAddress   uint64
	InitSize      uint32 // memory the kernel needs from its load address
	// Raw is the header as found in the file, from offset 0x1f1 to the end
	// given by the jump at 0x200; it is copied into boot_params.
	Raw []byte
}

// KernelOffset is the file offset of the protected-mode kernel.
func (h *SetupHeader) KernelOffset() int64 { return (int64(h.SetupSects) + 1) * 512 }

// ParseBzImage validates the setup header at the start of a bzImage (the
// first 0x268 bytes or more; extra bytes are ignored) and returns it. The
// input is untrusted: any inconsistency is an error.
func ParseBzImage(b []byte) (*SetupHeader, error) {
	if len(b) < hdrEnd {
		return nil, fmt.Errorf("parse bzimage: %d bytes: %w", len(b), ErrNotBzImage)
	}
	le := binary.LittleEndian
	if le.Uint16(b[offBootFlag:]) != bootFlagMagic || le.Uint32(b[offHeader:]) != headerMagic {
		return nil, fmt.Errorf("parse bzimage: no boot flag or HdrS magic: %w", ErrNotBzImage)
	}
	h := &SetupHeader{
		SetupSects:    b[offSetupSects],
		SyssizeBytes:  uint64(le.Uint32(b[offSyssize:])) * 16,
		Version:       le.Uint16(b[offVersion:]),
		Loadflags:     b[offLoadflags],
		XLoadflags:    le.Uint16(b[offXLoadflags:]),
		InitrdAddrMax: le.Uint32(b[offInitrdAddrMax:]),
		KernelAlign:   le.Uint32(b[offKernelAlign:]),
		Relocatable:   b[offRelocatable] != 0,
		CmdlineSize:   le.Uint32(b[offCmdlineSize:]),
		PrefAddress:   le.Uint64(b[offPrefAddress:]),
		InitSize:      le.Uint32(b[offInitSize:]),
	}
	if h.SetupSects == 0 {
		h.SetupSects = 4 // boot.rst: "If this field is 0, the real value is 4."
	}
	switch {
	case h.Version < minVersion:
		return nil, fmt.Errorf("parse bzimage: boot protocol %d.%02d (need 2.12): %w", h.Version>>8, h.Version&0xff, ErrUnsupportedKernel)
	case h.XLoadflags&xlfKernel64 == 0:
		return nil, fmt.Errorf("parse bzimage: no 64-bit entry (XLF_KERNEL_64): %w", ErrUnsupportedKernel)
	case h.Loadflags&loadedHigh == 0:
		return nil, fmt.Errorf("parse bzimage: not loaded high (zImage): %w", ErrUnsupportedKernel)
	case h.SetupSects > maxSetupSects:
		return nil, fmt.Errorf("parse bzimage: setup_sects %d: %w", h.SetupSects, ErrBadKernel)
	case h.SyssizeBytes == 0:
		return nil, fmt.Errorf("parse bzimage: syssize 0: %w", ErrBadKernel)
	case h.CmdlineSize == 0:
		return nil, fmt.Errorf("parse bzimage: cmdline_size 0: %w", ErrBadKernel)
	}
	// The jump at 0x200 skips the header; its target bounds the header
	// length (boot.rst: "the length of the header is … 0x0202 + the
	// byte value at offset 0x0201").
	end := offHeader + int(b[offJump+1])
	if end < hdrEnd || end > len(b) {
		return nil, fmt.Errorf("parse bzimage: header end %#x: %w", end, ErrBadKernel)
	}
	h.Raw = append([]byte(nil), b[hdrStart:end]...)
	return h, nil
}

// LoadBzImage loads the protected-mode part of a bzImage of size bytes at
// KernelAddr and returns where to enter it through the 64-bit boot
// protocol.
func LoadBzImage(mem *guestmem.Memory, r io.ReaderAt, size int64) (*Kernel, error) {
	hb := make([]byte, 1024)
	n, err := r.ReadAt(hb, 0)
	if n < hdrEnd {
		if err == nil || errors.Is(err, io.EOF) {
			err = ErrNotBzImage
		}
		return nil, fmt.Errorf("load bzimage: read header: %w", err)
	}
	h, err := ParseBzImage(hb[:n])
	if err != nil {
		return nil, fmt.Errorf("load bzimage: %w", err)
	}
	off := h.KernelOffset()
	if size < off || uint64(size-off) < h.SyssizeBytes {
		return nil, fmt.Errorf("load bzimage: %d bytes, header says %d: %w", size, uint64(off)+h.SyssizeBytes, ErrBadKernel)
	}
	payload := uint64(size - off)
	dst, err := mem.Slice(KernelAddr, payload)
	if err != nil {
		return nil, fmt.Errorf("load bzimage: %d bytes at %v: %w", payload, KernelAddr, ErrNoRoom)
	}
	// The kernel decompresses itself to its runtime start address and
	// needs init_size bytes of memory from there before it reads the
	// memory map; nothing else may be placed in that range.
	rt := runtimeStart(h, KernelAddr)
	end, ok := rt.Add(uint64(h.InitSize))
	if !ok {
		return nil, fmt.Errorf("load bzimage: runtime start %v + init_size %#x: %w", rt, h.InitSize, ErrBadKernel)
	}
	if _, err := mem.Slice(rt, uint64(end-rt)); err != nil {
		return nil, fmt.Errorf("load bzimage: init_size %#x at runtime start %v: %w", h.InitSize, rt, ErrNoRoom)
	}
	if n, err := r.ReadAt(dst, off); uint64(n) < payload {
		return nil, fmt.Errorf("load bzimage: read kernel: %w", err)
	}
	return &Kernel{
		Entry:  KernelAddr + startup64Offset,
		Start:  KernelAddr,
		End:    max(KernelAddr+guestmem.Addr(payload), end),
		Header: h,
	}, nil
}

// runtimeStart is where a kernel loaded at load runs after decompressing
// itself, per boot.rst ("init_size"): a relocatable kernel moves up to
// pref_address and aligns to kernel_alignment; another one always runs at
// pref_address.
func runtimeStart(h *SetupHeader, load guestmem.Addr) guestmem.Addr {
	pref := guestmem.Addr(h.PrefAddress)
	if !h.Relocatable {
		return pref
	}
	a := max(load, pref)
	if align := guestmem.Addr(h.KernelAlign); align > 1 && align&(align-1) == 0 {
		if up, ok := a.Add(uint64(align - 1)); ok {
			a = up &^ (align - 1)
		}
	}
	return a
}
