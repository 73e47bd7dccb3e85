package boot

import "github.com/msb-go/msb/internal/guestmem"

// Fixed guest physical addresses of boot structures; see the package doc.
const (
	GDTAddr          guestmem.Addr = 0x500
	StartInfoAddr    guestmem.Addr = 0x6000
	StartInfoModAddr guestmem.Addr = 0x6040 // PVH module list (the initrd)
	StartInfoMemAddr guestmem.Addr = 0x6080 // PVH memory map
	ZeroPageAddr     guestmem.Addr = 0x7000
	StackTop         guestmem.Addr = 0x8ff0
	PML4Addr         guestmem.Addr = 0x9000
	PDPTAddr         guestmem.Addr = 0xa000
	PDAddr           guestmem.Addr = 0xb000
	CmdlineAddr      guestmem.Addr = 0x20000
	KernelAddr       guestmem.Addr = 0x100000
)

// Limits.
const (
	// CmdlineMax is the space reserved for the command line, including
	// its NUL terminator.
	CmdlineMax = 0x10000
	// IdentityMapBytes is how much of the address space the page tables
	// identity-map: all of the low 4 GiB, so the kernel, initrd, boot
	// structures and the LAPIC/IOAPIC windows are reachable.
	IdentityMapBytes = 4 << 30
	// MaxE820 is the number of e820 entries boot_params has room for
	// (E820_MAX_ENTRIES_ZEROPAGE); the PVH map uses the same bound.
	MaxE820  = 128
	pageSize = 0x1000
)

// GDT selectors. The Linux 64-bit boot protocol requires __BOOT_CS = 0x10
// and __BOOT_DS = 0x18 (Documentation/arch/x86/boot.rst, "64-bit Boot
// Protocol"); PVH only requires a flat 32-bit code segment, any selector.
const (
	SelCode32 = 0x08
	SelCode64 = 0x10
	SelData   = 0x18
	SelTSS    = 0x20
)
