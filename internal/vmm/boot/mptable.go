package boot

import (
	"encoding/binary"
	"fmt"

	"github.com/msb-go/msb/internal/guestmem"
)

// The Intel MultiProcessor Specification 1.4 table tells a kernel without
// ACPI (the msb guest kernel has CONFIG_ACPI=n) how many CPUs there are and
// where the I/O APIC is. Linux finds the floating pointer by scanning the
// last KiB of base memory (arch/x86/kernel/mpparse.c: smp_scan_config over
// 639 KiB–640 KiB), which is where MPTableAddr puts it.

// MP table placement and the interrupt controller addresses it announces.
const (
	MPTableAddr  guestmem.Addr = ebdaStart // 0x9fc00, 1 KiB to 0xa0000
	mpTableSpace               = 0x400
	LAPICAddr                  = 0xfee00000
	IOAPICAddr                 = 0xfec00000
	// IOAPICPins is the number of I/O APIC inputs KVM's in-kernel IOAPIC
	// has (KVM_IOAPIC_NUM_PINS).
	IOAPICPins = 24
)

// MP spec 1.4 §4 structure sizes, entry types and flags.
const (
	mpfSize          = 16
	mpcHeaderSize    = 44
	mpcProcessorSize = 20
	mpcOtherSize     = 8
	mpEntryProcessor = 0
	mpEntryBus       = 1
	mpEntryIOAPIC    = 2
	mpEntryIOIntr    = 3
	mpEntryLocalIntr = 4
	mpIntINT         = 0
	mpIntNMI         = 1
	mpIntExtINT      = 3
	cpuEnabled       = 1 << 0
	cpuBootProcessor = 1 << 1
	lapicVersion     = 0x14 // integrated APIC, as KVM's LAPIC reports
	ioapicVersion    = 0x11 // 82093AA, as KVM's IOAPIC reports
	specRev14        = 4
	// cpuSignature (family 6) and featureFPUAPIC (CPUID.1:EDX FPU|APIC)
	// are informational; Linux takes the real values from CPUID.
	cpuSignature   = 0x600
	featureFPUAPIC = 1<<0 | 1<<9
)

// WriteMPTable writes an MP floating pointer and configuration table for
// vcpus processors (APIC IDs 0..vcpus-1, 0 the boot processor), one ISA
// bus, the I/O APIC (ID vcpus) with ISA IRQ n on pin n, ExtINT on every
// LINT0 and NMI on every LINT1.
func WriteMPTable(mem *guestmem.Memory, vcpus int) error {
	if vcpus < 1 || vcpus > 254 {
		return fmt.Errorf("mp table: %d vcpus: out of range", vcpus)
	}
	b := mpTable(vcpus)
	if len(b) > mpTableSpace {
		return fmt.Errorf("mp table: %d bytes for %d vcpus: %w", len(b), vcpus, ErrNoRoom)
	}
	if err := mem.WriteAt(b, MPTableAddr); err != nil {
		return fmt.Errorf("write mp table: %w", err)
	}
	return nil
}

func checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return -s
}

// mpTable builds the floating pointer followed by the configuration table.
func mpTable(vcpus int) []byte {
	le := binary.LittleEndian
	ioapicID := byte(vcpus)
	var entries []byte
	n := 0
	for id := range vcpus {
		flags := byte(cpuEnabled)
		if id == 0 {
			flags |= cpuBootProcessor
		}
		e := []byte{mpEntryProcessor, byte(id), lapicVersion, flags}
		e = le.AppendUint32(e, cpuSignature)
		e = le.AppendUint32(e, featureFPUAPIC)
		e = append(e, make([]byte, 8)...)
		entries = append(entries, e...)
		n++
	}
	entries = append(entries, mpEntryBus, 0, 'I', 'S', 'A', ' ', ' ', ' ')
	n++
	entries = append(entries, mpEntryIOAPIC, ioapicID, ioapicVersion, 1)
	entries = le.AppendUint32(entries, IOAPICAddr)
	n++
	for irq := range byte(IOAPICPins) {
		// Interrupt type, flags (conforming polarity and trigger), source
		// bus 0 IRQ irq, destination I/O APIC pin irq.
		entries = append(entries, mpEntryIOIntr, mpIntINT, 0, 0, 0, irq, ioapicID, irq)
		n++
	}
	entries = append(entries, mpEntryLocalIntr, mpIntExtINT, 0, 0, 0, 0, 0, 0) // LINT0 of APIC 0
	entries = append(entries, mpEntryLocalIntr, mpIntNMI, 0, 0, 0, 0, 0xff, 1) // LINT1 of all APICs
	n += 2

	hdr := []byte("PCMP")
	hdr = le.AppendUint16(hdr, uint16(mpcHeaderSize+len(entries)))
	hdr = append(hdr, specRev14, 0) // revision, checksum
	hdr = append(hdr, "MSB     "...)
	hdr = append(hdr, "MSB MICROVM "...)
	hdr = le.AppendUint32(hdr, 0) // OEM table pointer
	hdr = le.AppendUint16(hdr, 0) // OEM table size
	hdr = le.AppendUint16(hdr, uint16(n))
	hdr = le.AppendUint32(hdr, LAPICAddr)
	hdr = le.AppendUint16(hdr, 0) // extended table length
	hdr = append(hdr, 0, 0)       // extended checksum, reserved
	table := append(hdr, entries...)
	table[7] = checksum(table)

	mpf := []byte("_MP_")
	mpf = le.AppendUint32(mpf, uint32(MPTableAddr)+mpfSize)
	mpf = append(mpf, 1, specRev14, 0, 0, 0, 0, 0, 0) // length/16, revision, checksum, features
	mpf[10] = checksum(mpf)
	return append(mpf, table...)
}
