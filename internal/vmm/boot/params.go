package boot

import (
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/msb-go/msb/internal/guestmem"
	"github.com/msb-go/msb/internal/vmm/kvm"
)

// E820 entry types (ACPI "Address Range Types").
const (
	E820RAM      = 1
	E820Reserved = 2
)

// E820Entry is one range of the BIOS memory map given to the kernel.
type E820Entry struct {
	Addr guestmem.Addr
	Size uint64
	Type uint32
}

// The legacy hole: the EBDA, VGA memory and BIOS ROMs between 639 KiB and
// 1 MiB are never RAM on a PC, and Linux expects them absent from the map.
const (
	ebdaStart  guestmem.Addr = 0x9fc00
	highMemory guestmem.Addr = 0x100000
	lowLimit   guestmem.Addr = 1 << 32
)

// E820 derives the memory map from the guest memory regions: every region
// is RAM, except that the legacy hole [0x9fc00, 0x100000) is left out.
func E820(mem *guestmem.Memory) ([]E820Entry, error) {
	var out []E820Entry
	add := func(start, end guestmem.Addr) {
		if end > start {
			out = append(out, E820Entry{Addr: start, Size: uint64(end - start), Type: E820RAM})
		}
	}
	for _, r := range mem.Regions() {
		start := r.Base
		end := r.Base + guestmem.Addr(r.Size()) // regions never wrap (guestmem.New)
		if start < highMemory {
			add(start, min(end, ebdaStart))
			start = max(start, highMemory)
		}
		add(start, end)
	}
	if len(out) > MaxE820 {
		return nil, fmt.Errorf("e820: %d ranges, room for %d: %w", len(out), MaxE820, ErrNoRoom)
	}
	return out, nil
}

// Config describes what Setup places in guest memory besides the kernel.
type Config struct {
	Cmdline string
	// Initrd, if non-nil, is an initramfs of InitrdSize bytes.
	Initrd     io.ReaderAt
	InitrdSize int64
}

// Entry is the initial vCPU state Setup computed for the boot vCPU.
type Entry struct {
	Regs kvm.Regs
	// LongMode is set for the 64-bit bzImage entry, clear for the 32-bit
	// PVH entry.
	LongMode bool
	// InitrdAddr is where the initrd was placed (0 without one).
	InitrdAddr guestmem.Addr
}

// Sregs applies the segment, control-register and EFER state for this entry
// to s (from VCPU.Sregs).
func (e *Entry) Sregs(s *kvm.Sregs) {
	if e.LongMode {
		LongModeSregs(s)
	} else {
		ProtectedModeSregs(s)
	}
}

// Setup writes the GDT, page tables, command line, initrd and either
// boot_params (bzImage) or hvm_start_info (PVH) for kernel k, and returns
// the boot vCPU's entry state.
func Setup(mem *guestmem.Memory, k *Kernel, cfg Config) (*Entry, error) {
	if err := WriteGDT(mem); err != nil {
		return nil, err
	}
	if err := WritePageTables(mem); err != nil {
		return nil, err
	}
	maxCmdline := CmdlineMax - 1
	if k.Header != nil {
		maxCmdline = min(maxCmdline, int(k.Header.CmdlineSize))
	}
	if len(cfg.Cmdline) > maxCmdline || strings.IndexByte(cfg.Cmdline, 0) >= 0 {
		return nil, fmt.Errorf("setup: %d-byte command line (max %d, no NUL): %w", len(cfg.Cmdline), maxCmdline, ErrBadCmdline)
	}
	if err := mem.WriteAt(append([]byte(cfg.Cmdline), 0), CmdlineAddr); err != nil {
		return nil, fmt.Errorf("setup: write command line: %w", err)
	}
	e820, err := E820(mem)
	if err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	e := &Entry{}
	if cfg.Initrd != nil && cfg.InitrdSize > 0 {
		limit := lowLimit
		if k.Header != nil {
			limit = min(limit, guestmem.Addr(k.Header.InitrdAddrMax)+1)
		}
		if e.InitrdAddr, err = placeInitrd(e820, k, uint64(cfg.InitrdSize), limit); err != nil {
			return nil, fmt.Errorf("setup: %w", err)
		}
		dst, err := mem.Slice(e.InitrdAddr, uint64(cfg.InitrdSize))
		if err != nil {
			return nil, fmt.Errorf("setup: initrd: %w", err)
		}
		if n, err := cfg.Initrd.ReadAt(dst, 0); n < len(dst) {
			return nil, fmt.Errorf("setup: read initrd: %w", err)
		}
	}
	if k.PVH {
		if err := writeStartInfo(mem, e820, e.InitrdAddr, uint64(cfg.InitrdSize)); err != nil {
			return nil, fmt.Errorf("setup: %w", err)
		}
		// PVH boot ABI: EBX = physical address of hvm_start_info.
		e.Regs = kvm.Regs{Rip: uint64(k.Entry), Rbx: uint64(StartInfoAddr), Rflags: 2}
		return e, nil
	}
	if err := writeZeroPage(mem, k.Header, e820, e.InitrdAddr, uint64(cfg.InitrdSize)); err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	// 64-bit boot protocol: RSI = boot_params, interrupts off, flat
	// __BOOT_CS/__BOOT_DS, identity-mapped paging.
	e.Regs = kvm.Regs{Rip: uint64(k.Entry), Rsi: uint64(ZeroPageAddr), Rsp: uint64(StackTop), Rflags: 2}
	e.LongMode = true
	return e, nil
}

// placeInitrd picks the highest page-aligned address below limit where
// size bytes fit inside one RAM range and above the kernel.
func placeInitrd(e820 []E820Entry, k *Kernel, size uint64, limit guestmem.Addr) (guestmem.Addr, error) {
	for _, r := range slices.Backward(e820) {
		if r.Type != E820RAM || r.Addr >= limit {
			continue
		}
		top := min(r.Addr+guestmem.Addr(r.Size), limit)
		if uint64(top) < size {
			continue
		}
		a := (top - guestmem.Addr(size)) &^ (pageSize - 1)
		if a >= r.Addr && a >= k.End && a >= highMemory {
			return a, nil
		}
	}
	return 0, fmt.Errorf("initrd of %d bytes below %v above kernel end %v: %w", size, limit, k.End, ErrNoRoom)
}

// boot_params offsets (arch/x86/include/uapi/asm/bootparam.h).
const (
	zpExtRamdiskImage = 0x0c0
	zpExtRamdiskSize  = 0x0c4
	zpExtCmdLinePtr   = 0x0c8
	zpE820Entries     = 0x1e8
	zpE820Table       = 0x2d0
	zpSize            = 0x1000
	e820EntrySize     = 20
)

func writeZeroPage(mem *guestmem.Memory, h *SetupHeader, e820 []E820Entry, initrd guestmem.Addr, initrdSize uint64) error {
	var zp [zpSize]byte
	le := binary.LittleEndian
	copy(zp[hdrStart:], h.Raw)
	zp[offTypeOfLoader] = typeOfLoaderOther
	zp[offLoadflags] |= canUseHeap
	// heap_end_ptr is relative to the real-mode code; 0xfe00 is what
	// boot.rst recommends for a loader that keeps the stack at 0x10000.
	le.PutUint16(zp[offHeapEndPtr:], 0xfe00)
	le.PutUint32(zp[offCmdLinePtr:], uint32(CmdlineAddr))
	le.PutUint32(zp[zpExtCmdLinePtr:], uint32(uint64(CmdlineAddr)>>32))
	le.PutUint32(zp[offRamdiskImage:], uint32(initrd))
	le.PutUint32(zp[offRamdiskSize:], uint32(initrdSize))
	le.PutUint32(zp[zpExtRamdiskImage:], uint32(uint64(initrd)>>32))
	le.PutUint32(zp[zpExtRamdiskSize:], uint32(initrdSize>>32))
	zp[zpE820Entries] = uint8(len(e820))
	for i, e := range e820 {
		o := zpE820Table + i*e820EntrySize
		le.PutUint64(zp[o:], uint64(e.Addr))
		le.PutUint64(zp[o+8:], e.Size)
		le.PutUint32(zp[o+16:], e.Type)
	}
	if err := mem.WriteAt(zp[:], ZeroPageAddr); err != nil {
		return fmt.Errorf("write boot_params: %w", err)
	}
	return nil
}

// struct hvm_start_info (xen/include/public/arch-x86/hvm/start_info.h).
const (
	hvmStartMagic    = 0x336ec578
	hvmStartVersion  = 1 // has memmap_paddr and memmap_entries
	startInfoSize    = 56
	modlistEntrySize = 32
	memmapEntrySize  = 24
	startInfoLimit   = ZeroPageAddr
)

func writeStartInfo(mem *guestmem.Memory, e820 []E820Entry, initrd guestmem.Addr, initrdSize uint64) error {
	if StartInfoMemAddr+guestmem.Addr(len(e820)*memmapEntrySize) > startInfoLimit {
		return fmt.Errorf("pvh memmap of %d entries: %w", len(e820), ErrNoRoom)
	}
	le := binary.LittleEndian
	var si [startInfoSize]byte
	le.PutUint32(si[0:], hvmStartMagic)
	le.PutUint32(si[4:], hvmStartVersion)
	if initrdSize > 0 {
		le.PutUint32(si[12:], 1) // nr_modules
		le.PutUint64(si[16:], uint64(StartInfoModAddr))
		var mod [modlistEntrySize]byte
		le.PutUint64(mod[0:], uint64(initrd))
		le.PutUint64(mod[8:], initrdSize)
		if err := mem.WriteAt(mod[:], StartInfoModAddr); err != nil {
			return fmt.Errorf("write pvh modlist: %w", err)
		}
	}
	le.PutUint64(si[24:], uint64(CmdlineAddr))
	le.PutUint64(si[40:], uint64(StartInfoMemAddr))
	le.PutUint32(si[48:], uint32(len(e820)))
	mm := make([]byte, len(e820)*memmapEntrySize)
	for i, e := range e820 {
		o := i * memmapEntrySize
		le.PutUint64(mm[o:], uint64(e.Addr))
		le.PutUint64(mm[o+8:], e.Size)
		le.PutUint32(mm[o+16:], e.Type)
	}
	if err := mem.WriteAt(mm, StartInfoMemAddr); err != nil {
		return fmt.Errorf("write pvh memmap: %w", err)
	}
	if err := mem.WriteAt(si[:], StartInfoAddr); err != nil {
		return fmt.Errorf("write hvm_start_info: %w", err)
	}
	return nil
}
