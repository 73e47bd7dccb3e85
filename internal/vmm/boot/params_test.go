package boot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/msb-go/msb/internal/guestmem"
	"github.com/msb-go/msb/internal/vmm/kvm"
)

func TestE820(t *testing.T) {
	tests := []struct {
		name    string
		regions []guestmem.Region
		want    []E820Entry
	}{
		{
			name:    "one region",
			regions: []guestmem.Region{{Base: 0, Data: make([]byte, 64<<20)}},
			want: []E820Entry{
				{Addr: 0, Size: 0x9fc00, Type: E820RAM},
				{Addr: 0x100000, Size: 63 << 20, Type: E820RAM},
			},
		},
		{
			name:    "below the hole only",
			regions: []guestmem.Region{{Base: 0, Data: make([]byte, 0x1000)}},
			want:    []E820Entry{{Addr: 0, Size: 0x1000, Type: E820RAM}},
		},
		{
			name: "split around an mmio gap",
			regions: []guestmem.Region{
				{Base: 0, Data: make([]byte, 4<<20)},
				{Base: 1 << 32, Data: make([]byte, 1<<20)},
			},
			want: []E820Entry{
				{Addr: 0, Size: 0x9fc00, Type: E820RAM},
				{Addr: 0x100000, Size: 3 << 20, Type: E820RAM},
				{Addr: 1 << 32, Size: 1 << 20, Type: E820RAM},
			},
		},
		{
			name:    "region inside the hole",
			regions: []guestmem.Region{{Base: 0xa0000, Data: make([]byte, 0x10000)}},
			want:    nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem, err := guestmem.New(tc.regions...)
			if err != nil {
				t.Fatal(err)
			}
			got, err := E820(mem)
			if err != nil {
				t.Fatalf("E820: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("E820() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPageTablesIdentityMap(t *testing.T) {
	mem := newMem(t, 1<<20)
	if err := WritePageTables(mem); err != nil {
		t.Fatalf("WritePageTables: %v", err)
	}
	// Walk the tables as the MMU does (Intel SDM vol. 3 §4.5).
	walk := func(va uint64) (uint64, bool) {
		pml4e, _ := mem.Read64(PML4Addr + guestmem.Addr(va>>39&511)*8)
		if pml4e&ptePresent == 0 {
			return 0, false
		}
		pdpte, _ := mem.Read64(guestmem.Addr(pml4e&^0xfff) + guestmem.Addr(va>>30&511)*8)
		if pdpte&ptePresent == 0 {
			return 0, false
		}
		pde, _ := mem.Read64(guestmem.Addr(pdpte&^0xfff) + guestmem.Addr(va>>21&511)*8)
		if pde&ptePresent == 0 || pde&ptePS == 0 || pde&pteWrite == 0 {
			return 0, false
		}
		return pde&^0x1fffff | va&0x1fffff, true
	}
	for _, va := range []uint64{0, 0x1234, uint64(KernelAddr), 0x3fffffff, 0x40000000, 0xd0000123, 0xfee00000, IdentityMapBytes - 1} {
		pa, ok := walk(va)
		if !ok || pa != va {
			t.Errorf("walk(%#x) = %#x, %v; want identity", va, pa, ok)
		}
	}
	if _, ok := walk(IdentityMapBytes); ok {
		t.Errorf("walk(%#x) mapped; want unmapped above the identity map", uint64(IdentityMapBytes))
	}
}

func TestGDTSegments(t *testing.T) {
	tests := []struct {
		sel  int
		want kvm.Segment
	}{
		{SelCode32, kvm.Segment{Limit: 0xffffffff, Selector: SelCode32, Type: 0xb, Present: 1, S: 1, Db: 1, G: 1}},
		{SelCode64, kvm.Segment{Limit: 0xffffffff, Selector: SelCode64, Type: 0xb, Present: 1, S: 1, L: 1, G: 1}},
		{SelData, kvm.Segment{Limit: 0xffffffff, Selector: SelData, Type: 0x3, Present: 1, S: 1, Db: 1, G: 1}},
		{SelTSS, kvm.Segment{Limit: 0xffffffff, Selector: SelTSS, Type: 0xb, Present: 1, G: 1}},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, segment(tc.sel/8)); diff != "" {
			t.Errorf("segment(%#x) mismatch (-want +got):\n%s", tc.sel, diff)
		}
	}
	mem := newMem(t, 1<<20)
	if err := WriteGDT(mem); err != nil {
		t.Fatal(err)
	}
	// The encoding of the 64-bit code descriptor, as Linux's own boot GDT
	// spells it (arch/x86/boot/compressed/head_64.S: 0x00af9a000000ffff,
	// here with the accessed bit set).
	if got, _ := mem.Read64(GDTAddr + SelCode64); got != 0x00af9b000000ffff {
		t.Errorf("GDT[__BOOT_CS] = %#x; want 0x00af9b000000ffff", got)
	}
}

func TestSetupBzImage(t *testing.T) {
	payload := bytes.Repeat([]byte{0x90}, 4096)
	img := fakeBzImage(payload, nil)
	mem := newMem(t, 64<<20)
	k, err := LoadBzImage(mem, bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	initrd := bytes.Repeat([]byte("initrd"), 1000)
	e, err := Setup(mem, k, Config{Cmdline: "console=ttyS0 quiet", Initrd: bytes.NewReader(initrd), InitrdSize: int64(len(initrd))})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	want := kvm.Regs{Rip: 0x100200, Rsi: uint64(ZeroPageAddr), Rsp: uint64(StackTop), Rflags: 2}
	if diff := cmp.Diff(want, e.Regs); diff != "" {
		t.Errorf("Setup() regs mismatch (-want +got):\n%s", diff)
	}
	if !e.LongMode {
		t.Errorf("Setup() LongMode = false; want true")
	}
	// The initrd sits at the top of RAM, page aligned.
	if wantAddr := guestmem.Addr((64<<20 - len(initrd)) &^ 0xfff); e.InitrdAddr != wantAddr {
		t.Errorf("initrd at %v; want %v", e.InitrdAddr, wantAddr)
	}
	zp := make([]byte, zpSize)
	if err := mem.ReadAt(zp, ZeroPageAddr); err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	for _, f := range []struct {
		name      string
		got, want uint64
	}{
		{"boot_flag", uint64(le.Uint16(zp[offBootFlag:])), bootFlagMagic},
		{"header", uint64(le.Uint32(zp[offHeader:])), headerMagic},
		{"type_of_loader", uint64(zp[offTypeOfLoader]), 0xff},
		{"loadflags", uint64(zp[offLoadflags]), loadedHigh | canUseHeap},
		{"cmd_line_ptr", uint64(le.Uint32(zp[offCmdLinePtr:])), uint64(CmdlineAddr)},
		{"ramdisk_image", uint64(le.Uint32(zp[offRamdiskImage:])), uint64(e.InitrdAddr)},
		{"ramdisk_size", uint64(le.Uint32(zp[offRamdiskSize:])), uint64(len(initrd))},
		{"e820_entries", uint64(zp[zpE820Entries]), 2},
		{"e820[1].addr", le.Uint64(zp[zpE820Table+20:]), 0x100000},
		{"e820[1].size", le.Uint64(zp[zpE820Table+28:]), 63 << 20},
		{"e820[1].type", uint64(le.Uint32(zp[zpE820Table+36:])), E820RAM},
	} {
		if f.got != f.want {
			t.Errorf("boot_params.%s = %#x; want %#x", f.name, f.got, f.want)
		}
	}
	cl := make([]byte, 20)
	if err := mem.ReadAt(cl, CmdlineAddr); err != nil || string(cl) != "console=ttyS0 quiet\x00" {
		t.Errorf("command line = %q (err %v); want NUL-terminated", cl, err)
	}
	got := make([]byte, len(initrd))
	if err := mem.ReadAt(got, e.InitrdAddr); err != nil || !bytes.Equal(got, initrd) {
		t.Errorf("initrd contents differ (err %v)", err)
	}
}

func TestSetupPVH(t *testing.T) {
	img := fakeELF(0x3e, []testSeg{{paddr: 0x1000000, data: code, memsz: 0x100000}}, pvhNote(0x1000040))
	mem := newMem(t, 32<<20)
	k, err := LoadELF(mem, bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	initrd := bytes.Repeat([]byte{7}, 5000)
	e, err := Setup(mem, k, Config{Cmdline: "rdinit=/init", Initrd: bytes.NewReader(initrd), InitrdSize: int64(len(initrd))})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	if diff := cmp.Diff(kvm.Regs{Rip: 0x1000040, Rbx: uint64(StartInfoAddr), Rflags: 2}, e.Regs); diff != "" {
		t.Errorf("Setup() regs mismatch (-want +got):\n%s", diff)
	}
	if e.LongMode {
		t.Errorf("Setup() LongMode = true; want false for PVH")
	}
	if e.InitrdAddr < k.End || e.InitrdAddr%pageSize != 0 || uint64(e.InitrdAddr)+uint64(len(initrd)) > 32<<20 {
		t.Errorf("initrd at %v; want page aligned in [%v, 32 MiB)", e.InitrdAddr, k.End)
	}
	r64 := func(a guestmem.Addr) uint64 { v, _ := mem.Read64(a); return v }
	r32 := func(a guestmem.Addr) uint64 { v, _ := mem.Read32(a); return uint64(v) }
	for _, f := range []struct {
		name      string
		got, want uint64
	}{
		{"magic", r32(StartInfoAddr), hvmStartMagic},
		{"version", r32(StartInfoAddr + 4), 1},
		{"nr_modules", r32(StartInfoAddr + 12), 1},
		{"modlist_paddr", r64(StartInfoAddr + 16), uint64(StartInfoModAddr)},
		{"cmdline_paddr", r64(StartInfoAddr + 24), uint64(CmdlineAddr)},
		{"memmap_paddr", r64(StartInfoAddr + 40), uint64(StartInfoMemAddr)},
		{"memmap_entries", r32(StartInfoAddr + 48), 2},
		{"mod[0].paddr", r64(StartInfoModAddr), uint64(e.InitrdAddr)},
		{"mod[0].size", r64(StartInfoModAddr + 8), uint64(len(initrd))},
		{"memmap[1].addr", r64(StartInfoMemAddr + 24), 0x100000},
		{"memmap[1].size", r64(StartInfoMemAddr + 32), 31 << 20},
		{"memmap[1].type", r32(StartInfoMemAddr + 40), E820RAM},
	} {
		if f.got != f.want {
			t.Errorf("hvm_start_info.%s = %#x; want %#x", f.name, f.got, f.want)
		}
	}
}

func TestSetupErrors(t *testing.T) {
	img := fakeELF(0x3e, []testSeg{{paddr: 0x100000, data: code, memsz: 0x1f0000}}, pvhNote(0x100000))
	tests := []struct {
		name    string
		cfg     Config
		wantErr error
	}{
		{"cmdline too long", Config{Cmdline: strings.Repeat("a", CmdlineMax)}, ErrBadCmdline},
		{"cmdline with NUL", Config{Cmdline: "a\x00b"}, ErrBadCmdline},
		{"initrd does not fit above kernel", Config{Initrd: bytes.NewReader(nil), InitrdSize: 2 << 20}, ErrNoRoom},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := newMem(t, 4<<20)
			k, err := LoadELF(mem, bytes.NewReader(img))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Setup(mem, k, tc.cfg); !errors.Is(err, tc.wantErr) {
				t.Errorf("Setup() error = %v; want %v", err, tc.wantErr)
			}
		})
	}
}
