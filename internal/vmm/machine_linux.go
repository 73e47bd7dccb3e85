package vmm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/guestmem"
	"github.com/msb-go/msb/internal/virtio"
	"github.com/msb-go/msb/internal/vmm/boot"
	"github.com/msb-go/msb/internal/vmm/bus"
	"github.com/msb-go/msb/internal/vmm/i8042"
	"github.com/msb-go/msb/internal/vmm/kvm"
	"github.com/msb-go/msb/internal/vmm/uart"
)

// Fixed addresses and wiring; see the memory map in the package doc.
const (
	mmioHoleStart guestmem.Addr = 0xc0000000
	highMemStart  guestmem.Addr = 1 << 32
	// identityMapAddr and tssAddr sit just below the 4 GiB boundary where
	// no RAM or device lives (QEMU and Firecracker use the same pages).
	identityMapAddr = 0xfffbc000
	tssAddr         = 0xfffbd000
	com1Port        = 0x3f8
	com1IRQ         = 4
	maxVCPUs        = 32 // what the MP table has room for
	minMemoryMiB    = 16
	maxMemoryMiB    = 64 << 10
)

// DefaultCmdline is prepended to Config.Cmdline: the serial console, reboot
// through the i8042 (reboot=k), which ends Run, and an immediate reboot on
// panic (panic=-1), so a panicking guest also ends Run with a nil error;
// callers tell the two apart from the console ("Kernel panic"). There is no
// ACPI, so a guest poweroff halts instead: agentd reboots to shut down. No
// pci=off: msb's kernel has no PCI, and the kernel hands a parameter it does
// not know to init as an environment variable every command would inherit.
const DefaultCmdline = "console=ttyS0 reboot=k panic=-1"

// kernelCmdline is the native VMM's whole kernel command line: its console,
// reboot and panic words, one virtio_mmio.device= declaration per device,
// then extra (for a machine.Spec, Spec.KernelCmdline's words).
func kernelCmdline(nDevices int, extra []string) string {
	words := append([]string{DefaultCmdline}, virtioCmdline(nDevices)...)
	return strings.Join(append(words, extra...), " ")
}

// Config describes a Machine. The Machine copies what it needs in New.
type Config struct {
	// Kernel is an ELF vmlinux with a PVH entry note, or a bzImage.
	Kernel string
	// Initrd is an optional initramfs.
	Initrd string
	// Cmdline holds kernel parameters appended to DefaultCmdline and the
	// virtio-mmio device declarations.
	Cmdline []string
	VCPUs   int
	// MemoryMiB is the guest RAM size.
	MemoryMiB int
	// Console receives the guest serial console; nil discards it. Output
	// is bounded as uart.Config describes.
	Console io.Writer
	// Devices are attached as virtio-mmio devices, in order, and declared
	// on the kernel command line. At most 19 (IRQs 5–23). The Machine owns
	// them: New's failure and Close reset them and close those that are
	// io.Closers.
	Devices []virtio.Device
	// Logger receives lifecycle messages; nil discards them.
	Logger *slog.Logger
}

// Machine is one microVM. Its methods are not safe for concurrent use,
// except Stats.
type Machine struct {
	log     *slog.Logger
	sys     *kvm.System
	vm      *kvm.VM
	vcpus   []*kvm.VCPU
	regions [][]byte // mmapped guest RAM
	mem     *guestmem.Memory
	irqFD   int // eventfd behind COM1's IRQ
	pio     bus.Bus
	mmio    bus.Bus
	uart    *uart.UART
	virtio  []*virtioDevice
	// closers are resources NewFromSpec opened for the devices, closed
	// after them.
	closers []io.Closer
	ran     bool

	// stop cancels the running Run with a cause; nil outside Run.
	stop atomic.Pointer[context.CancelCauseFunc]

	io, mmioExits, intr, other, unhandled, notifies atomic.Uint64
}

// New builds a Machine from cfg: VM, memory, kernel, devices and vCPUs.
func New(cfg Config) (*Machine, error) {
	m := &Machine{log: cfg.Logger, irqFD: -1}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	built := false
	defer func() {
		if !built {
			// Devices not yet attached are still the caller's to release
			// according to Config.Devices; Close handles the attached ones.
			for _, d := range cfg.Devices[len(m.virtio):] {
				d.Reset()
				if c, ok := d.(io.Closer); ok {
					c.Close()
				}
			}
			m.Close()
		}
	}()
	if cfg.Kernel == "" || cfg.VCPUs < 1 || cfg.VCPUs > maxVCPUs || cfg.MemoryMiB < minMemoryMiB || cfg.MemoryMiB > maxMemoryMiB || len(cfg.Devices) > maxVirtio {
		return nil, fmt.Errorf("new machine: kernel %q, %d vcpus (1-%d), %d MiB (%d-%d), %d devices (max %d): %w",
			cfg.Kernel, cfg.VCPUs, maxVCPUs, cfg.MemoryMiB, minMemoryMiB, maxMemoryMiB, len(cfg.Devices), maxVirtio, ErrBadConfig)
	}
	var err error
	if m.sys, err = kvm.Open(); err != nil {
		return nil, fmt.Errorf("new machine: %w", err)
	}
	for _, c := range []kvm.Cap{kvm.KVM_CAP_IRQCHIP, kvm.KVM_CAP_PIT2, kvm.KVM_CAP_IRQFD, kvm.KVM_CAP_IOEVENTFD, kvm.KVM_CAP_IMMEDIATE_EXIT, kvm.KVM_CAP_USER_MEMORY} {
		if n, err := m.sys.CheckExtension(c); err != nil || n == 0 {
			return nil, fmt.Errorf("new machine: capability %d: %w", c, ErrMissingCapability)
		}
	}
	if m.vm, err = m.sys.CreateVM(); err != nil {
		return nil, fmt.Errorf("new machine: %w", err)
	}
	if err := m.vm.SetTSSAddr(tssAddr); err != nil {
		return nil, fmt.Errorf("new machine: %w", err)
	}
	if err := m.vm.SetIdentityMapAddr(identityMapAddr); err != nil {
		return nil, fmt.Errorf("new machine: %w", err)
	}
	if err := m.vm.CreateIRQChip(); err != nil {
		return nil, fmt.Errorf("new machine: %w", err)
	}
	if err := m.vm.CreatePIT2(); err != nil {
		return nil, fmt.Errorf("new machine: %w", err)
	}
	if err := m.mapMemory(uint64(cfg.MemoryMiB) << 20); err != nil {
		return nil, fmt.Errorf("new machine: %w", err)
	}
	entry, err := m.loadKernel(cfg)
	if err != nil {
		return nil, fmt.Errorf("new machine: %w", err)
	}
	if err := m.attachDevices(cfg.Console); err != nil {
		return nil, fmt.Errorf("new machine: %w", err)
	}
	if err := m.attachVirtio(cfg.Devices); err != nil {
		return nil, fmt.Errorf("new machine: %w", err)
	}
	if err := m.createVCPUs(cfg.VCPUs, entry); err != nil {
		return nil, fmt.Errorf("new machine: %w", err)
	}
	built = true
	m.log.Info("machine created", "vcpus", cfg.VCPUs, "memory_mib", cfg.MemoryMiB, "entry", entry.Regs.Rip, "pvh", !entry.LongMode)
	return m, nil
}

// mapMemory maps size bytes of RAM: below the MMIO hole, then above 4 GiB.
func (m *Machine) mapMemory(size uint64) error {
	low := min(size, uint64(mmioHoleStart))
	parts := []struct {
		base guestmem.Addr
		size uint64
	}{{0, low}, {highMemStart, size - low}}
	var regions []guestmem.Region
	for slot, p := range parts {
		if p.size == 0 {
			continue
		}
		// Map 2 MiB more than needed and use a 2 MiB-aligned window, so
		// that transparent huge pages can back guest RAM: guest-physical
		// 2 MiB pages then sit on host 2 MiB pages, which cuts TLB misses
		// (measured under nested SVM: the kernel's early boot was several
		// times slower on 4 KiB-backed memory).
		full, err := unix.Mmap(-1, 0, int(p.size+hugePage), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
		if err != nil {
			return fmt.Errorf("map %d MiB of guest memory: %w", p.size>>20, err)
		}
		m.regions = append(m.regions, full)
		b := alignedWindow(full, p.size)
		// Best effort: THP may be disabled on the host.
		_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
		if err := m.vm.SetUserMemoryRegion(uint32(slot), uint64(p.base), b, 0); err != nil {
			return err
		}
		regions = append(regions, guestmem.Region{Base: p.base, Data: b})
	}
	var err error
	m.mem, err = guestmem.New(regions...)
	return err
}

// hugePage is the x86-64 huge page size guest RAM is aligned to.
const hugePage = 2 << 20

// alignedWindow returns the size-byte window of full that starts on a
// hugePage boundary. Preconditions: len(full) >= size+hugePage.
func alignedWindow(full []byte, size uint64) []byte {
	off := hugePageOffset(full)
	return full[off : off+int(size) : off+int(size)]
}

// loadKernel loads the kernel and initrd and writes the boot structures.
func (m *Machine) loadKernel(cfg Config) (*boot.Entry, error) {
	kf, err := os.Open(cfg.Kernel)
	if err != nil {
		return nil, err
	}
	defer kf.Close()
	fi, err := kf.Stat()
	if err != nil {
		return nil, err
	}
	magic := make([]byte, 4)
	if _, err := kf.ReadAt(magic, 0); err != nil {
		return nil, fmt.Errorf("read kernel %s: %w", cfg.Kernel, err)
	}
	var k *boot.Kernel
	if bytes.Equal(magic, []byte("\x7fELF")) {
		k, err = boot.LoadELF(m.mem, kf)
	} else {
		k, err = boot.LoadBzImage(m.mem, kf, fi.Size())
	}
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", cfg.Kernel, err)
	}
	bc := boot.Config{Cmdline: kernelCmdline(len(cfg.Devices), cfg.Cmdline)}
	if cfg.Initrd != "" {
		f, err := os.Open(cfg.Initrd)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return nil, err
		}
		bc.Initrd, bc.InitrdSize = f, fi.Size()
	}
	if err := boot.WriteMPTable(m.mem, cfg.VCPUs); err != nil {
		return nil, err
	}
	return boot.Setup(m.mem, k, bc)
}

// eventIRQ raises a GSI by writing to its irqfd.
type eventIRQ struct{ fd int }

func (e eventIRQ) Trigger() error {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, err := unix.Write(e.fd, one[:])
	return err
}

var _ uart.IRQ = eventIRQ{}

func (m *Machine) attachDevices(console io.Writer) error {
	var err error
	if m.irqFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	if err := m.vm.IRQFD(m.irqFD, com1IRQ); err != nil {
		return err
	}
	m.uart = uart.New(uart.Config{Out: console, IRQ: eventIRQ{m.irqFD}})
	if err := m.pio.Insert(m.uart, com1Port, uart.Size); err != nil {
		return err
	}
	kbd := i8042.New(func() { m.requestStop(errGuestStop) })
	return m.pio.Insert(kbd, i8042.DataPort, i8042.CommandPort-i8042.DataPort+1)
}

func (m *Machine) createVCPUs(n int, entry *boot.Entry) error {
	supported, err := m.sys.SupportedCPUID()
	if err != nil {
		return err
	}
	deadline, _ := m.sys.CheckExtension(kvm.KVM_CAP_TSC_DEADLINE_TIMER)
	for id := range n {
		c, err := m.vm.CreateVCPU(id)
		if err != nil {
			return err
		}
		m.vcpus = append(m.vcpus, c)
		if err := c.SetCPUID2(vcpuCPUID(supported, id, n, deadline > 0)); err != nil {
			return fmt.Errorf("vcpu %d: %w", id, err)
		}
		if err := c.SetMSRs(bootMSRs()); err != nil {
			return fmt.Errorf("vcpu %d: %w", id, err)
		}
		if err := c.SetFPU(bootFPU()); err != nil {
			return fmt.Errorf("vcpu %d: %w", id, err)
		}
		l, err := c.LAPIC()
		if err != nil {
			return fmt.Errorf("vcpu %d: %w", id, err)
		}
		setLINTs(&l)
		if err := c.SetLAPIC(l); err != nil {
			return fmt.Errorf("vcpu %d: %w", id, err)
		}
		if id != 0 {
			// Application processors wait in the in-kernel LAPIC for the
			// INIT/SIPI sequence the guest sends.
			continue
		}
		s, err := c.Sregs()
		if err != nil {
			return err
		}
		entry.Sregs(&s)
		if err := c.SetSregs(s); err != nil {
			return err
		}
		if err := c.SetRegs(entry.Regs); err != nil {
			return err
		}
	}
	return nil
}

// requestStop ends a running Run with cause.
func (m *Machine) requestStop(cause error) {
	if stop := m.stop.Load(); stop != nil {
		(*stop)(cause)
	}
}

// Run runs the guest until it stops itself (i8042 reset, or a shutdown or
// reset system event: nil), a vCPU fails (an error naming the vCPU and
// exit), or ctx is done (ctx.Err()). It may be called once.
func (m *Machine) Run(ctx context.Context) error {
	if m.ran {
		return ErrRunOnce
	}
	m.ran = true
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	m.stop.Store(&cancel)
	defer m.stop.Store(nil)
	// The kicker is waited for before Run returns: it touches the vCPUs'
	// kvm_run mappings, which Close unmaps.
	kicked := make(chan struct{})
	go func() {
		defer close(kicked)
		<-runCtx.Done()
		for _, c := range m.vcpus {
			if err := c.Kick(); err != nil {
				m.log.Warn("kick vcpu", "vcpu", c.ID(), "err", err)
			}
		}
	}()
	stopNotifiers := m.startNotifiers()
	defer stopNotifiers()
	var wg sync.WaitGroup
	for _, c := range m.vcpus {
		wg.Go(func() {
			if err := m.runVCPU(runCtx, c); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	cancel(nil) // every vCPU returned; release the kicker if nothing else did
	<-kicked
	cause := context.Cause(runCtx)
	switch {
	case errors.Is(cause, errGuestStop):
		m.log.Info("guest stopped")
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return cause
}

// runVCPU is one vCPU's run loop, on a locked OS thread so that Kick can
// signal it.
func (m *Machine) runVCPU(ctx context.Context, c *kvm.VCPU) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for ctx.Err() == nil {
		e, err := c.Run()
		if err != nil {
			return fmt.Errorf("vcpu %d: %w", c.ID(), err)
		}
		switch e.Reason {
		case kvm.KVM_EXIT_IO:
			m.io.Add(1)
			m.handleIO(&e.IO)
		case kvm.KVM_EXIT_MMIO:
			m.mmioExits.Add(1)
			m.handleMMIO(&e.MMIO)
		case kvm.KVM_EXIT_INTR:
			m.intr.Add(1)
		case kvm.KVM_EXIT_SYSTEM_EVENT:
			m.other.Add(1)
			switch e.SystemEvent.Type {
			case kvm.KVM_SYSTEM_EVENT_SHUTDOWN, kvm.KVM_SYSTEM_EVENT_RESET:
				return errGuestStop
			case kvm.KVM_SYSTEM_EVENT_CRASH:
				return fmt.Errorf("vcpu %d: %w", c.ID(), ErrGuestCrash)
			}
			return fmt.Errorf("vcpu %d: %v: %w", c.ID(), &e, ErrUnexpectedExit)
		case kvm.KVM_EXIT_SHUTDOWN:
			m.other.Add(1)
			return fmt.Errorf("vcpu %d: %w", c.ID(), ErrTripleFault)
		default:
			// HLT (impossible with the in-kernel irqchip), internal
			// errors, failed entries and anything newer.
			m.other.Add(1)
			regs, _ := c.Regs()
			return fmt.Errorf("vcpu %d: %v at rip %#x: %w", c.ID(), &e, regs.Rip, ErrUnexpectedExit)
		}
	}
	return nil
}

func (m *Machine) handleIO(e *kvm.IOExit) {
	size := int(e.Size)
	for i := range int(e.Count) {
		data := e.Data[i*size : (i+1)*size]
		var err error
		if e.Out {
			err = m.pio.Write(uint64(e.Port), data)
		} else {
			err = m.pio.Read(uint64(e.Port), data)
		}
		if err != nil {
			m.unhandled.Add(1)
		}
	}
}

func (m *Machine) handleMMIO(e *kvm.MMIOExit) {
	var err error
	if e.Write {
		err = m.mmio.Write(e.Addr, e.Data)
	} else {
		err = m.mmio.Read(e.Addr, e.Data)
	}
	if err != nil {
		m.unhandled.Add(1)
	}
}

// Stats returns the exit counters. It is safe to call during Run.
func (m *Machine) Stats() Stats {
	return Stats{
		IO:            m.io.Load(),
		MMIO:          m.mmioExits.Load(),
		Interrupted:   m.intr.Load(),
		Other:         m.other.Load(),
		Unhandled:     m.unhandled.Load(),
		Notifications: m.notifies.Load(),
	}
}

// ConsoleStats returns the serial console's output counters.
func (m *Machine) ConsoleStats() uart.Stats { return m.uart.Stats() }

// Close releases the vCPUs, VM, memory and KVM. It must not be called
// while Run is running.
func (m *Machine) Close() error {
	errs := []error{m.closeVirtio()}
	for _, c := range m.closers {
		errs = append(errs, c.Close())
	}
	m.closers = nil
	for _, c := range m.vcpus {
		errs = append(errs, c.Close())
	}
	m.vcpus = nil
	if m.vm != nil {
		errs = append(errs, m.vm.Close())
		m.vm = nil
	}
	if m.irqFD >= 0 {
		errs = append(errs, unix.Close(m.irqFD))
		m.irqFD = -1
	}
	for _, r := range m.regions {
		errs = append(errs, unix.Munmap(r))
	}
	m.regions = nil
	if m.sys != nil {
		errs = append(errs, m.sys.Close())
		m.sys = nil
	}
	return errors.Join(errs...)
}
