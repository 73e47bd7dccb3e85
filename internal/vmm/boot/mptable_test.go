package boot

import (
	"encoding/binary"
	"testing"
)

// parsedMP is what Linux's mpparse.c extracts from the table.
type parsedMP struct {
	cpus     []byte // APIC IDs in order
	bsp      byte
	ioapicID byte
	ioapic   uint32
	irqs     int
	lints    int
}

// parseMP checks the table the way arch/x86/kernel/mpparse.c does
// (smp_check_mpc: signature, checksum, length) and returns its contents.
func parseMP(t *testing.T, b []byte) parsedMP {
	t.Helper()
	le := binary.LittleEndian
	if string(b[:4]) != "_MP_" || checksum(b[:16]) != 0 || b[8] != 1 || b[9] != specRev14 {
		t.Fatalf("bad floating pointer % x", b[:16])
	}
	off := int(le.Uint32(b[4:]) - uint32(MPTableAddr))
	if off != mpfSize {
		t.Fatalf("config table at offset %d; want %d", off, mpfSize)
	}
	c := b[off:]
	length := int(le.Uint16(c[4:]))
	if string(c[:4]) != "PCMP" || length > len(c) || checksum(c[:length]) != 0 {
		t.Fatalf("bad config table header % x", c[:mpcHeaderSize])
	}
	if got := le.Uint32(c[36:]); got != LAPICAddr {
		t.Errorf("lapic address %#x; want %#x", got, LAPICAddr)
	}
	var p parsedMP
	count := int(le.Uint16(c[34:]))
	e := c[mpcHeaderSize:length]
	for i := range count {
		if len(e) == 0 {
			t.Fatalf("entry %d of %d past table end", i, count)
		}
		switch e[0] {
		case mpEntryProcessor:
			p.cpus = append(p.cpus, e[1])
			if e[3]&cpuBootProcessor != 0 {
				p.bsp = e[1]
			}
			e = e[mpcProcessorSize:]
			continue
		case mpEntryIOAPIC:
			p.ioapicID, p.ioapic = e[1], le.Uint32(e[4:])
		case mpEntryIOIntr:
			if e[6] != p.ioapicID || e[5] != e[7] {
				t.Errorf("irq entry % x not identity-routed to ioapic %d", e[:8], p.ioapicID)
			}
			p.irqs++
		case mpEntryLocalIntr:
			p.lints++
		case mpEntryBus:
		default:
			t.Fatalf("unknown entry type %d", e[0])
		}
		e = e[mpcOtherSize:]
	}
	if len(e) != 0 {
		t.Errorf("%d bytes after the last entry", len(e))
	}
	return p
}

func TestMPTable(t *testing.T) {
	for _, vcpus := range []int{1, 2, 8, 32} {
		mem := newMem(t, 1<<20)
		if err := WriteMPTable(mem, vcpus); err != nil {
			t.Fatalf("WriteMPTable(%d): %v", vcpus, err)
		}
		b := make([]byte, mpTableSpace)
		if err := mem.ReadAt(b, MPTableAddr); err != nil {
			t.Fatal(err)
		}
		p := parseMP(t, b)
		if len(p.cpus) != vcpus || p.bsp != 0 || p.ioapicID != byte(vcpus) || p.ioapic != IOAPICAddr || p.irqs != IOAPICPins || p.lints != 2 {
			t.Errorf("WriteMPTable(%d) = %+v; want %d cpus, bsp 0, ioapic %d at %#x, %d irqs, 2 lints", vcpus, p, vcpus, vcpus, IOAPICAddr, IOAPICPins)
		}
		for i, id := range p.cpus {
			if int(id) != i {
				t.Errorf("cpu %d has APIC ID %d", i, id)
			}
		}
	}
}

func TestMPTableLimits(t *testing.T) {
	mem := newMem(t, 1<<20)
	for _, vcpus := range []int{0, 255, 40} {
		if err := WriteMPTable(mem, vcpus); err == nil {
			t.Errorf("WriteMPTable(%d) = nil; want error", vcpus)
		}
	}
	small := newMem(t, 0x9fc00)
	if err := WriteMPTable(small, 1); err == nil {
		t.Errorf("WriteMPTable into memory ending at 0x9fc00 = nil; want error")
	}
}
