// Package vmm is msb's native virtual machine monitor: it runs a microVM
// inside the calling process on /dev/kvm, with devices emulated in Go.
//
// A Machine follows the Firecracker builder recipe: New opens KVM, creates
// the VM with the in-kernel irqchip (PIC, IOAPIC, LAPICs) and PIT, maps
// guest memory, loads the kernel (internal/vmm/boot), attaches the devices
// to the port-I/O and MMIO buses (internal/vmm/bus) and configures the
// vCPUs; Run(ctx) then runs one goroutine per vCPU, each locked to its OS
// thread, until the guest stops, a vCPU fails or ctx is cancelled (which
// kicks every vCPU out of KVM_RUN with immediate_exit and a signal); Close
// releases everything.
//
// Guest physical memory map:
//
//	0x0000_0000 ─ 0x0009_fbff  RAM: boot structures (see internal/vmm/boot)
//	0x0009_fc00 ─ 0x0009_ffff  MP table (RAM, not in e820)
//	0x000a_0000 ─ 0x000f_ffff  legacy hole (RAM behind it, not in e820)
//	0x0010_0000 ─ min(RAM, 3 GiB)        RAM: kernel, initrd at the top
//	0xc000_0000 ─ 0xffff_ffff  MMIO hole:
//	    0xd000_0000            virtio-mmio devices, 4 KiB each (reserved)
//	    0xfec0_0000            IOAPIC (in-kernel)
//	    0xfee0_0000            LAPIC (in-kernel)
//	    0xfffb_c000            EPT identity map page, then the 3-page TSS
//	0x1_0000_0000 ─            RAM above 3 GiB, if any
//
// Port I/O: 8250 UART at 0x3f8 (IRQ 4 through an irqfd), i8042 at
// 0x60/0x64 (reset only); the PIC, PIT and their ports are in the kernel.
//
// NewFromSpec builds a Machine from a backend-neutral machine.Spec (disks,
// agent port, network, rng), the entry point for the sandbox runtime.
// Harden, called between New and Run, confines the process to the syscalls
// a running Machine needs (seccomp allow-list, no_new_privs); with openat
// denied there, a Landlock ruleset would add nothing and is not applied.
//
// Verified on real KVM semantics (nested SVM under QEMU TCG, machine.md
// harness 2): the msb guest kernel boots through PVH with 2 vCPUs to /init,
// virtio-blk, virtio-rng and the virtio-console agent port work, and a
// guest reboot ends Run. This host's /dev/kvm (kvm_pvm) cannot run Linux,
// so the package tests use tiny hand-made kernels there.
//
// The package is Linux/amd64 only.
package vmm
