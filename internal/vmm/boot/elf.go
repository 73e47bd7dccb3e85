package boot

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/msb-go/msb/internal/guestmem"
)

// PVH note (xen/include/public/elfnote.h): name "Xen", type
// XEN_ELFNOTE_PHYS32_ENTRY, descriptor = 32-bit physical entry address
// (Linux emits it with _ASM_PTR, so 8 bytes on x86-64).
const (
	xenElfnotePhys32Entry = 18
	maxNoteBytes          = 64 << 10 // notes are small; bound what we read
	maxLoadSegments       = 64
)

// LoadELF loads the PT_LOAD segments of an x86-64 ELF vmlinux at their
// physical addresses and returns its PVH entry point. A kernel without the
// PVH note fails with ErrUnsupportedKernel. The image is untrusted: segment
// sizes and addresses are checked against the file and guest memory.
func LoadELF(mem *guestmem.Memory, r io.ReaderAt) (*Kernel, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("load elf: %w: %w", ErrBadKernel, err)
	}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC {
		return nil, fmt.Errorf("load elf: %v %v %v (need ELFCLASS64 EM_X86_64 ET_EXEC): %w", f.Class, f.Machine, f.Type, ErrUnsupportedKernel)
	}
	k := &Kernel{PVH: true, Start: ^guestmem.Addr(0)}
	var entry uint64
	found, loads := false, 0
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_NOTE:
			if found {
				continue
			}
			e, ok, err := pvhEntry(p)
			if err != nil {
				return nil, fmt.Errorf("load elf: %w", err)
			}
			entry, found = e, ok
		case elf.PT_LOAD:
			loads++
			if loads > maxLoadSegments {
				return nil, fmt.Errorf("load elf: more than %d PT_LOAD segments: %w", maxLoadSegments, ErrBadKernel)
			}
			if err := loadSegment(mem, p); err != nil {
				return nil, fmt.Errorf("load elf: %w", err)
			}
			start := guestmem.Addr(p.Paddr)
			end, _ := start.Add(p.Memsz) // checked by loadSegment
			k.Start = min(k.Start, start)
			k.End = max(k.End, end)
		}
	}
	if loads == 0 {
		return nil, fmt.Errorf("load elf: no PT_LOAD segment: %w", ErrBadKernel)
	}
	if !found {
		return nil, fmt.Errorf("load elf: no XEN_ELFNOTE_PHYS32_ENTRY note: %w", ErrUnsupportedKernel)
	}
	if entry < uint64(k.Start) || entry >= uint64(k.End) || entry > 0xffffffff {
		return nil, fmt.Errorf("load elf: pvh entry %#x outside the loaded image [%v, %v): %w", entry, k.Start, k.End, ErrBadKernel)
	}
	k.Entry = guestmem.Addr(entry)
	return k, nil
}

// loadSegment copies a PT_LOAD segment to its physical address and zeroes
// its bss tail.
func loadSegment(mem *guestmem.Memory, p *elf.Prog) error {
	if p.Filesz > p.Memsz {
		return fmt.Errorf("segment at %#x: filesz %#x > memsz %#x: %w", p.Paddr, p.Filesz, p.Memsz, ErrBadKernel)
	}
	if p.Memsz == 0 {
		return nil
	}
	dst, err := mem.Slice(guestmem.Addr(p.Paddr), p.Memsz)
	if err != nil {
		return fmt.Errorf("segment at %#x size %#x: %w: %w", p.Paddr, p.Memsz, ErrNoRoom, err)
	}
	n, err := p.ReadAt(dst[:p.Filesz], 0)
	if uint64(n) < p.Filesz {
		return fmt.Errorf("segment at %#x: read %d of %d bytes: %w: %w", p.Paddr, n, p.Filesz, ErrBadKernel, err)
	}
	clear(dst[p.Filesz:])
	return nil
}

// pvhEntry scans a PT_NOTE segment for the PVH entry note.
func pvhEntry(p *elf.Prog) (uint64, bool, error) {
	if p.Filesz > maxNoteBytes {
		return 0, false, fmt.Errorf("note segment of %d bytes: %w", p.Filesz, ErrBadKernel)
	}
	b := make([]byte, p.Filesz)
	if n, err := p.ReadAt(b, 0); uint64(n) < p.Filesz {
		return 0, false, fmt.Errorf("read note segment: %w: %w", ErrBadKernel, err)
	}
	le := binary.LittleEndian
	// Elf64_Nhdr: namesz, descsz, type (4 bytes each); name and desc are
	// padded to 4 bytes (gABI "Note Section").
	for len(b) >= 12 {
		namesz, descsz, typ := uint64(le.Uint32(b)), uint64(le.Uint32(b[4:])), le.Uint32(b[8:])
		b = b[12:]
		nameEnd := align4(namesz)
		descEnd := nameEnd + align4(descsz)
		if nameEnd > uint64(len(b)) || descEnd > uint64(len(b)) {
			return 0, false, fmt.Errorf("truncated note: %w", ErrBadKernel)
		}
		name, desc := b[:namesz], b[nameEnd:nameEnd+descsz]
		b = b[descEnd:]
		if typ != xenElfnotePhys32Entry || string(name) != "Xen\x00" {
			continue
		}
		switch len(desc) {
		case 4:
			return uint64(le.Uint32(desc)), true, nil
		case 8:
			return le.Uint64(desc), true, nil
		}
		return 0, false, fmt.Errorf("pvh entry note with %d-byte descriptor: %w", len(desc), ErrBadKernel)
	}
	return 0, false, nil
}

func align4(n uint64) uint64 { return (n + 3) &^ 3 }
