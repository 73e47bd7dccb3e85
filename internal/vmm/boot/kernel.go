package boot

import "github.com/msb-go/msb/internal/guestmem"

// Kernel is a kernel image loaded into guest memory.
type Kernel struct {
	// Entry is the guest physical entry point: startup_64 for a bzImage,
	// the 32-bit PVH entry for an ELF vmlinux.
	Entry guestmem.Addr
	// Start and End bound the memory the kernel occupies or may use while
	// starting (for a bzImage, init_size); nothing else may be placed there.
	Start, End guestmem.Addr
	// PVH is set for a kernel entered through XEN_ELFNOTE_PHYS32_ENTRY.
	PVH bool
	// Header is the bzImage setup header; nil for an ELF kernel.
	Header *SetupHeader
}
