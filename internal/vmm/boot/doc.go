// Package boot prepares an x86-64 guest to start a Linux kernel: it loads
// the kernel (an ELF vmlinux through its PVH entry, or a bzImage through the
// 64-bit boot protocol), places the command line and initrd, writes
// boot_params (the "zero page") or the PVH hvm_start_info, the e820 map,
// identity-mapped page tables and a GDT, and computes the initial vCPU
// registers. It only writes guest memory and returns register values; it
// neither creates VMs nor runs vCPUs.
//
// Guest physical layout of the low megabyte (see Layout constants):
//
//	0x0000_0500  GDT (null, code32, code64 = __BOOT_CS, data = __BOOT_DS, TSS)
//	0x0000_6000  PVH hvm_start_info; module list at 0x6040, memory map at 0x6080
//	0x0000_7000  boot_params (zero page)
//	0x0000_8ff0  initial stack (grows down)
//	0x0000_9000  PML4
//	0x0000_a000  PDPT
//	0x0000_b000  4 page directories: 0–4 GiB identity-mapped with 2 MiB pages
//	0x0002_0000  kernel command line
//	0x0010_0000  kernel (bzImage protected-mode part, or ELF segments)
//	  …          initrd at the top of low memory, page aligned
//
// References: Documentation/arch/x86/boot.rst (boot protocol 2.15),
// arch/x86/include/uapi/asm/bootparam.h, xen/include/public/arch-x86/hvm/start_info.h
// and the PVH boot ABI (docs/misc/pvh.pandoc in Xen).
package boot
