package boot

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/guestkernel"
	"github.com/msb-go/msb/internal/guestmem"
	"github.com/msb-go/msb/internal/vmm/kvm"
	"github.com/msb-go/msb/internal/vmm/kvm/kvmtest"
)

// mmapMem returns size bytes of anonymous memory at guest address 0.
func mmapMem(t testing.TB, size int) ([]byte, *guestmem.Memory) {
	t.Helper()
	raw, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	t.Cleanup(func() { unix.Munmap(raw) })
	mem, err := guestmem.New(guestmem.Region{Base: 0, Data: raw})
	if err != nil {
		t.Fatal(err)
	}
	return raw, mem
}

// bootOnKVM creates a one-vCPU VM over raw, applies e and returns the
// values the guest writes to port 0x10 until it halts.
func bootOnKVM(t *testing.T, raw []byte, e *Entry) [][]byte {
	t.Helper()
	sys := kvmtest.Require(t)
	vm, err := sys.CreateVM()
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	if err := vm.SetTSSAddr(0xfffbd000); err != nil {
		t.Fatal(err)
	}
	if err := vm.SetUserMemoryRegion(0, 0, raw, 0); err != nil {
		t.Fatal(err)
	}
	c, err := vm.CreateVCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.Sregs()
	if err != nil {
		t.Fatal(err)
	}
	e.Sregs(&s)
	if err := c.SetSregs(s); err != nil {
		t.Fatal(err)
	}
	if err := c.SetRegs(e.Regs); err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	timer := time.AfterFunc(10*time.Second, func() { c.Kick() })
	defer timer.Stop()
	var out [][]byte
	for range 10 {
		x, err := c.Run()
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		switch {
		case x.Reason == kvm.KVM_EXIT_HLT:
			return out
		case x.Reason == kvm.KVM_EXIT_IO && x.IO.Out && x.IO.Port == 0x10:
			out = append(out, bytes.Clone(x.IO.Data))
		default:
			t.Fatalf("unexpected exit %v", &x)
		}
	}
	t.Fatalf("guest did not halt")
	return nil
}

// TestPVHEntryOnKVM enters a tiny PVH "kernel" in 32-bit protected mode and
// has it read hvm_start_info through EBX.
func TestPVHEntryOnKVM(t *testing.T) {
	entry := []byte{
		0x8b, 0x03, //                   mov eax, [ebx]        hvm_start_info.magic
		0xba, 0x10, 0x00, 0x00, 0x00, // mov edx, 0x10
		0xef,             //             out dx, eax
		0x8b, 0x43, 0x18, //             mov eax, [ebx+0x18]   cmdline_paddr
		0xef, //                         out dx, eax
		0xf4, //                         hlt
	}
	img := fakeELF(0x3e, []testSeg{{paddr: 0x100000, data: entry, memsz: 0x1000}}, pvhNote(0x100000))
	raw, mem := mmapMem(t, 4<<20)
	k, err := LoadELF(mem, bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	e, err := Setup(mem, k, Config{Cmdline: "x"})
	if err != nil {
		t.Fatal(err)
	}
	got := bootOnKVM(t, raw, e)
	want := [][]byte{{0x78, 0xc5, 0x6e, 0x33}, {0x00, 0x00, 0x02, 0x00}}
	if !slices.EqualFunc(got, want, bytes.Equal) {
		t.Errorf("guest reported % x; want % x", got, want)
	}
}

// TestBzImageEntryOnKVM enters a tiny bzImage at startup_64 in long mode and
// has it read boot_params through RSI.
func TestBzImageEntryOnKVM(t *testing.T) {
	payload := make([]byte, 0x200) // the 32-bit entry, unused by 64-bit loaders
	payload = append(payload,
		0x8b, 0x86, 0x28, 0x02, 0x00, 0x00, // mov eax, [rsi+0x228]   hdr.cmd_line_ptr
		0x66, 0xba, 0x10, 0x00, //             mov dx, 0x10
		0xef,                               // out dx, eax
		0x8b, 0x86, 0x18, 0x02, 0x00, 0x00, // mov eax, [rsi+0x218]   hdr.ramdisk_image
		0xef, //                               out dx, eax
		0xf4, //                               hlt
	)
	img := fakeBzImage(payload, nil)
	raw, mem := mmapMem(t, 8<<20)
	k, err := LoadBzImage(mem, bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	initrd := []byte("initrd")
	e, err := Setup(mem, k, Config{Cmdline: "x", Initrd: bytes.NewReader(initrd), InitrdSize: int64(len(initrd))})
	if err != nil {
		t.Fatal(err)
	}
	got := bootOnKVM(t, raw, e)
	want := [][]byte{{0x00, 0x00, 0x02, 0x00}, {0x00, 0xf0, 0x7f, 0x00}} // 0x20000, 8 MiB - 4 KiB
	if !slices.EqualFunc(got, want, bytes.Equal) {
		t.Errorf("guest reported % x; want % x", got, want)
	}
}

// newestKernel returns the pinned msb guest kernel, if any.
func newestKernel(t *testing.T) string {
	t.Helper()
	// The same resolver msb uses: the pinned, verified build.
	p, err := guestkernel.Locate()
	if err != nil {
		t.Skipf("no guest kernel (build it with `make kernel`): %v", err)
	}
	return p
}

// TestRealKernel loads the msb guest kernel's vmlinux and checks the PVH
// entry, the placement of its segments and the memory map.
func TestRealKernel(t *testing.T) {
	path := newestKernel(t)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const memBytes = 256 << 20
	_, mem := mmapMem(t, memBytes)
	k, err := LoadELF(mem, f)
	if err != nil {
		t.Fatalf("LoadELF(%s): %v", path, err)
	}
	t.Logf("%s: PVH entry %v, image [%v, %v)", path, k.Entry, k.Start, k.End)
	if !k.PVH || k.Entry < k.Start || k.Entry >= k.End {
		t.Errorf("PVH entry %v outside image [%v, %v)", k.Entry, k.Start, k.End)
	}
	// CONFIG_PHYSICAL_START is 16 MiB on x86-64.
	if k.Start != 0x1000000 {
		t.Errorf("image starts at %v; want 0x1000000", k.Start)
	}
	initrd := bytes.Repeat([]byte{0x5a}, 3<<20+123)
	e, err := Setup(mem, k, Config{
		Cmdline:    "console=ttyS0 rdinit=/init panic=-1",
		Initrd:     bytes.NewReader(initrd),
		InitrdSize: int64(len(initrd)),
	})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	end := e.InitrdAddr + guestmem.Addr(len(initrd))
	if e.InitrdAddr < k.End || e.InitrdAddr%pageSize != 0 || end > memBytes || memBytes-end >= pageSize {
		t.Errorf("initrd [%v, %v); want page aligned, above the kernel (%v), at the top of %d MiB", e.InitrdAddr, end, k.End, memBytes>>20)
	}
	e820, err := E820(mem)
	if err != nil {
		t.Fatal(err)
	}
	var total uint64
	for i, r := range e820 {
		total += r.Size
		if r.Type != E820RAM || r.Size == 0 || (i > 0 && r.Addr < e820[i-1].Addr+guestmem.Addr(e820[i-1].Size)) {
			t.Errorf("e820[%d] = %+v: not sorted, empty or not RAM", i, r)
		}
		kernelIn := k.Start >= r.Addr && k.End <= r.Addr+guestmem.Addr(r.Size)
		if i == len(e820)-1 && !kernelIn {
			t.Errorf("kernel [%v, %v) not inside the high RAM range %+v", k.Start, k.End, r)
		}
	}
	if want := uint64(memBytes - (0x100000 - 0x9fc00)); total != want {
		t.Errorf("e820 RAM total %#x; want %#x (all memory minus the legacy hole)", total, want)
	}
	if n, _ := mem.Read32(StartInfoAddr + 48); int(n) != len(e820) {
		t.Errorf("hvm_start_info.memmap_entries = %d; want %d", n, len(e820))
	}
}

// TestRealBzImage loads a distribution bzImage: $MSB_TEST_BZIMAGE, else the
// newest /boot/vmlinuz-*. It checks the header and that the reserved range
// covers init_size at the kernel's runtime address.
func TestRealBzImage(t *testing.T) {
	path := os.Getenv("MSB_TEST_BZIMAGE")
	if path == "" {
		paths, _ := filepath.Glob("/boot/vmlinuz-*")
		if len(paths) == 0 {
			t.Skip("no bzImage: set MSB_TEST_BZIMAGE or install a kernel in /boot")
		}
		path = paths[len(paths)-1]
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, mem := mmapMem(t, 256<<20)
	k, err := LoadBzImage(mem, bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("LoadBzImage(%s): %v", path, err)
	}
	h := k.Header
	t.Logf("%s: protocol %d.%02d, setup_sects %d, init_size %#x, pref_address %#x, relocatable %v, end %v",
		path, h.Version>>8, h.Version&0xff, h.SetupSects, h.InitSize, h.PrefAddress, h.Relocatable, k.End)
	if rt := runtimeStart(h, KernelAddr); k.End < rt+guestmem.Addr(h.InitSize) {
		t.Errorf("End = %v; want at least runtime start %v + init_size %#x", k.End, rt, h.InitSize)
	}
	e, err := Setup(mem, k, Config{Cmdline: "console=ttyS0", Initrd: bytes.NewReader(make([]byte, 1<<20)), InitrdSize: 1 << 20})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	if e.InitrdAddr < k.End {
		t.Errorf("initrd at %v overlaps the kernel's range ending %v", e.InitrdAddr, k.End)
	}
}
