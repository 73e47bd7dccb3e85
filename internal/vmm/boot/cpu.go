package boot

import (
	"encoding/binary"
	"fmt"

	"github.com/msb-go/msb/internal/guestmem"
	"github.com/msb-go/msb/internal/vmm/kvm"
)

// Control register and EFER bits (Intel SDM vol. 3 §2.5, AMD APM vol. 2 §3.1).
const (
	cr0PE   = 1 << 0
	cr0ET   = 1 << 4
	cr0PG   = 1 << 31
	cr4PAE  = 1 << 5
	eferLME = 1 << 8
	eferLMA = 1 << 10
)

// Page table entry bits.
const (
	ptePresent = 1 << 0
	pteWrite   = 1 << 1
	ptePS      = 1 << 7 // 2 MiB page in a page directory entry
)

// gdt holds the descriptors at GDTAddr, indexed by selector/8.
var gdt = [...]uint64{
	0,                            // null
	gdtEntry(0xc09b, 0, 0xfffff), // SelCode32: 32-bit, 4 KiB granular, exec/read, accessed
	gdtEntry(0xa09b, 0, 0xfffff), // SelCode64: L=1, exec/read, accessed
	gdtEntry(0xc093, 0, 0xfffff), // SelData: read/write, accessed
	gdtEntry(0x808b, 0, 0xfffff), // SelTSS: busy 32/64-bit TSS, required for VM entry
}

// gdtEntry packs a segment descriptor from its flags word (type, S, DPL, P
// in bits 0–7; AVL, L, D/B, G in bits 12–15), base and 20-bit limit.
func gdtEntry(flags uint16, base, limit uint32) uint64 {
	return uint64(base&0xff000000)<<32 |
		uint64(flags&0xf0ff)<<40 |
		uint64(limit&0xf0000)<<32 |
		uint64(base&0x00ffffff)<<16 |
		uint64(limit&0xffff)
}

// segment expands GDT entry index i into the cached form KVM loads.
func segment(i int) kvm.Segment {
	e := gdt[i]
	base := uint64(e>>16&0xffffff) | uint64(e>>56&0xff)<<24
	limit := uint32(e&0xffff) | uint32(e>>48&0xf)<<16
	g := uint8(e >> 55 & 1)
	if g == 1 {
		limit = limit<<12 | 0xfff
	}
	return kvm.Segment{
		Base:     base,
		Limit:    limit,
		Selector: uint16(i * 8),
		Type:     uint8(e >> 40 & 0xf),
		S:        uint8(e >> 44 & 1),
		Dpl:      uint8(e >> 45 & 3),
		Present:  uint8(e >> 47 & 1),
		Avl:      uint8(e >> 52 & 1),
		L:        uint8(e >> 53 & 1),
		Db:       uint8(e >> 54 & 1),
		G:        g,
	}
}

// WriteGDT writes the boot GDT at GDTAddr.
func WriteGDT(mem *guestmem.Memory) error {
	var b [len(gdt) * 8]byte
	for i, e := range gdt {
		binary.LittleEndian.PutUint64(b[i*8:], e)
	}
	if err := mem.WriteAt(b[:], GDTAddr); err != nil {
		return fmt.Errorf("write gdt: %w", err)
	}
	return nil
}

// WritePageTables writes a PML4, a PDPT and four page directories that
// identity-map the low IdentityMapBytes with 2 MiB pages.
func WritePageTables(mem *guestmem.Memory) error {
	if err := mem.Write64(PML4Addr, uint64(PDPTAddr)|ptePresent|pteWrite); err != nil {
		return fmt.Errorf("write pml4: %w", err)
	}
	const nPD = IdentityMapBytes >> 30
	for i := range uint64(nPD) {
		pd := PDAddr + guestmem.Addr(i*pageSize)
		if err := mem.Write64(PDPTAddr+guestmem.Addr(i*8), uint64(pd)|ptePresent|pteWrite); err != nil {
			return fmt.Errorf("write pdpt: %w", err)
		}
		var b [pageSize]byte
		for j := range uint64(512) {
			binary.LittleEndian.PutUint64(b[j*8:], (i<<30+j<<21)|ptePresent|pteWrite|ptePS)
		}
		if err := mem.WriteAt(b[:], pd); err != nil {
			return fmt.Errorf("write page directory %d: %w", i, err)
		}
	}
	return nil
}

func setSegments(s *kvm.Sregs, code int) {
	s.Cs = segment(code)
	data := segment(SelData / 8)
	s.Ds, s.Es, s.Fs, s.Gs, s.Ss = data, data, data, data, data
	s.Tr = segment(SelTSS / 8)
	s.Gdt = kvm.DTable{Base: uint64(GDTAddr), Limit: uint16(len(gdt)*8 - 1)}
	// An empty IDT: any exception before the kernel loads its own becomes a
	// triple fault, which KVM reports as KVM_EXIT_SHUTDOWN.
	s.Idt = kvm.DTable{}
}

// LongModeSregs configures s for the 64-bit entry: paging on with the
// identity map at PML4Addr, EFER.LME|LMA, CS = __BOOT_CS (64-bit), the data
// segments = __BOOT_DS. WriteGDT and WritePageTables must have been called.
func LongModeSregs(s *kvm.Sregs) {
	setSegments(s, SelCode64/8)
	s.Cr0 |= cr0PE | cr0ET | cr0PG
	s.Cr3 = uint64(PML4Addr)
	s.Cr4 |= cr4PAE
	s.Efer |= eferLME | eferLMA
}

// ProtectedModeSregs configures s for the PVH entry: 32-bit flat protected
// mode with paging off (PVH boot ABI: "CR0: PE set, PG clear; CS: 32-bit
// read/execute code segment, base 0, limit 0xFFFFFFFF; DS, ES, SS: 32-bit
// read/write data segment"). WriteGDT must have been called.
func ProtectedModeSregs(s *kvm.Sregs) {
	setSegments(s, SelCode32/8)
	s.Cr0 = (s.Cr0 | cr0PE | cr0ET) &^ cr0PG
	s.Cr4 &^= cr4PAE
	s.Efer &^= eferLME | eferLMA
}
