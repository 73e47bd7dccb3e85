package boot

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"testing"
)

type testSeg struct {
	paddr  uint64
	data   []byte
	memsz  uint64 // 0 means len(data)
	filesz uint64 // 0 means len(data)
}

// note encodes one ELF note.
func note(name string, typ uint32, desc []byte) []byte {
	le := binary.LittleEndian
	var b []byte
	b = le.AppendUint32(b, uint32(len(name)+1))
	b = le.AppendUint32(b, uint32(len(desc)))
	b = le.AppendUint32(b, typ)
	b = append(b, name...)
	b = append(b, 0)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	b = append(b, desc...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func pvhNote(entry uint64) []byte {
	return note("Xen", xenElfnotePhys32Entry, binary.LittleEndian.AppendUint64(nil, entry))
}

// fakeELF builds an ELF64 x86-64 executable with PT_LOAD segments segs and,
// if notes is non-nil, one PT_NOTE segment holding it.
func fakeELF(machine elf.Machine, segs []testSeg, notes []byte) []byte {
	le := binary.LittleEndian
	nph := len(segs)
	if notes != nil {
		nph++
	}
	const ehsize, phsize = 64, 56
	off := uint64(ehsize + nph*phsize)
	var ph, body []byte
	addPH := func(typ elf.ProgType, paddr uint64, data []byte, filesz, memsz uint64) {
		ph = le.AppendUint32(ph, uint32(typ))
		ph = le.AppendUint32(ph, uint32(elf.PF_R|elf.PF_X))
		ph = le.AppendUint64(ph, off+uint64(len(body)))
		ph = le.AppendUint64(ph, paddr+0xffffffff80000000) // vaddr
		ph = le.AppendUint64(ph, paddr)
		ph = le.AppendUint64(ph, filesz)
		ph = le.AppendUint64(ph, memsz)
		ph = le.AppendUint64(ph, 0x1000)
		body = append(body, data...)
	}
	for _, s := range segs {
		filesz, memsz := s.filesz, s.memsz
		if filesz == 0 {
			filesz = uint64(len(s.data))
		}
		if memsz == 0 {
			memsz = uint64(len(s.data))
		}
		addPH(elf.PT_LOAD, s.paddr, s.data, filesz, memsz)
	}
	if notes != nil {
		addPH(elf.PT_NOTE, 0, notes, uint64(len(notes)), uint64(len(notes)))
	}
	var h []byte
	h = append(h, 0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT))
	h = append(h, make([]byte, 9)...)
	h = le.AppendUint16(h, uint16(elf.ET_EXEC))
	h = le.AppendUint16(h, uint16(machine))
	h = le.AppendUint32(h, uint32(elf.EV_CURRENT))
	h = le.AppendUint64(h, 0xffffffff81000000) // e_entry (virtual, unused)
	h = le.AppendUint64(h, ehsize)             // e_phoff
	h = le.AppendUint64(h, 0)                  // e_shoff
	h = le.AppendUint32(h, 0)                  // e_flags
	h = le.AppendUint16(h, ehsize)
	h = le.AppendUint16(h, phsize)
	h = le.AppendUint16(h, uint16(nph))
	h = le.AppendUint16(h, 64) // e_shentsize
	h = le.AppendUint16(h, 0)  // e_shnum
	h = le.AppendUint16(h, 0)  // e_shstrndx
	return append(append(h, ph...), body...)
}

var code = bytes.Repeat([]byte{0xcc}, 0x100)

var elfTests = []struct {
	name      string
	image     []byte
	wantErr   error
	wantEntry uint64
}{
	{"pvh", fakeELF(elf.EM_X86_64, []testSeg{{paddr: 0x100000, data: code, memsz: 0x2000}}, pvhNote(0x100010)), nil, 0x100010},
	{"pvh 4-byte desc after other note", fakeELF(elf.EM_X86_64, []testSeg{{paddr: 0x100000, data: code}},
		append(note("GNU", 3, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}), note("Xen", xenElfnotePhys32Entry, []byte{0x20, 0, 0x10, 0})...)), nil, 0x100020},
	{"two segments", fakeELF(elf.EM_X86_64, []testSeg{{paddr: 0x100000, data: code}, {paddr: 0x200000, data: code}}, pvhNote(0x200000)), nil, 0x200000},
	{"no pvh note", fakeELF(elf.EM_X86_64, []testSeg{{paddr: 0x100000, data: code}}, note("Xen", 17, []byte{0, 0, 0, 0})), ErrUnsupportedKernel, 0},
	{"no note segment", fakeELF(elf.EM_X86_64, []testSeg{{paddr: 0x100000, data: code}}, nil), ErrUnsupportedKernel, 0},
	{"arm64", fakeELF(elf.EM_AARCH64, []testSeg{{paddr: 0x100000, data: code}}, pvhNote(0x100000)), ErrUnsupportedKernel, 0},
	{"entry outside image", fakeELF(elf.EM_X86_64, []testSeg{{paddr: 0x100000, data: code}}, pvhNote(0x300000)), ErrBadKernel, 0},
	{"bad desc size", fakeELF(elf.EM_X86_64, []testSeg{{paddr: 0x100000, data: code}}, note("Xen", xenElfnotePhys32Entry, []byte{1, 2})), ErrBadKernel, 0},
	{"truncated note", fakeELF(elf.EM_X86_64, []testSeg{{paddr: 0x100000, data: code}}, pvhNote(0x100000)[:14]), ErrBadKernel, 0},
	{"segment beyond memory", fakeELF(elf.EM_X86_64, []testSeg{{paddr: 0x3ff000, data: code, memsz: 0x2000}}, pvhNote(0x3ff000)), ErrNoRoom, 0},
	{"segment at top of address space", fakeELF(elf.EM_X86_64, []testSeg{{paddr: ^uint64(0) - 0x10, data: code}}, pvhNote(0x100000)), ErrNoRoom, 0},
	{"filesz > memsz", fakeELF(elf.EM_X86_64, []testSeg{{paddr: 0x100000, data: code, memsz: 0x10}}, pvhNote(0x100000)), ErrBadKernel, 0},
	{"filesz past end of file", fakeELF(elf.EM_X86_64, []testSeg{{paddr: 0x100000, data: code, filesz: 0x10000, memsz: 0x10000}}, pvhNote(0x100000)), ErrBadKernel, 0},
	{"no load segment", fakeELF(elf.EM_X86_64, nil, pvhNote(0x100000)), ErrBadKernel, 0},
	{"not elf", []byte("MZ not an elf file at all, just some bytes that are long enough......"), ErrBadKernel, 0},
}

func TestLoadELF(t *testing.T) {
	for _, tc := range elfTests {
		t.Run(tc.name, func(t *testing.T) {
			mem := newMem(t, 4<<20)
			// Dirty the bss so zeroing is observable.
			if err := mem.WriteAt(bytes.Repeat([]byte{0xee}, 0x2000), 0x100000); err != nil {
				t.Fatal(err)
			}
			k, err := LoadELF(mem, bytes.NewReader(tc.image))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("LoadELF() error = %v; want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if uint64(k.Entry) != tc.wantEntry || !k.PVH || k.Header != nil {
				t.Errorf("LoadELF() = %+v; want entry %#x, PVH", k, tc.wantEntry)
			}
			got := make([]byte, len(code))
			if err := mem.ReadAt(got, 0x100000); err != nil || !bytes.Equal(got, code) {
				t.Errorf("segment at 0x100000 not loaded (err %v)", err)
			}
		})
	}
	t.Run("bss zeroed", func(t *testing.T) {
		mem := newMem(t, 4<<20)
		if err := mem.WriteAt(bytes.Repeat([]byte{0xee}, 0x2000), 0x100000); err != nil {
			t.Fatal(err)
		}
		k, err := LoadELF(mem, bytes.NewReader(elfTests[0].image))
		if err != nil {
			t.Fatal(err)
		}
		if k.Start != 0x100000 || k.End != 0x102000 {
			t.Errorf("LoadELF() spans [%v, %v); want [0x100000, 0x102000)", k.Start, k.End)
		}
		bss := make([]byte, 0x2000-len(code))
		if err := mem.ReadAt(bss, 0x100000+0x100); err != nil || !bytes.Equal(bss, make([]byte, len(bss))) {
			t.Errorf("bss not zeroed (err %v)", err)
		}
	})
}

func FuzzLoadELF(f *testing.F) {
	for _, tc := range elfTests {
		f.Add(tc.image)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		mem := newMem(t, 4<<20)
		k, err := LoadELF(mem, bytes.NewReader(b))
		if err != nil {
			return
		}
		if k.Entry < k.Start || k.Entry >= k.End || k.End > 4<<20 {
			t.Fatalf("LoadELF accepted entry %v outside [%v, %v) or beyond memory", k.Entry, k.Start, k.End)
		}
	})
}
