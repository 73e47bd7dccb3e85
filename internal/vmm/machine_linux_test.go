package vmm

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/msb-go/msb/internal/guestkernel"
	"github.com/msb-go/msb/internal/vmm/kvm"
	"github.com/msb-go/msb/internal/vmm/kvm/kvmtest"
)

func TestMain(m *testing.M) {
	if k := os.Getenv(hardenChildEnv); k != "" {
		os.Exit(hardenChild(k))
	}
	goleak.VerifyTestMain(m)
}

func TestVCPUCPUID(t *testing.T) {
	supported := []kvm.CPUIDEntry{
		{Function: 0, Eax: 0xd},
		{Function: 1, Ebx: 0xff08_0800, Ecx: 0x1, Edx: 0x1},
		{Function: 0xb, Index: 0, Edx: 7},
		{Function: 0xb, Index: 1, Edx: 7},
	}
	got := vcpuCPUID(supported, 3, 4, false)
	want := []kvm.CPUIDEntry{
		{Function: 0, Eax: 0xd},
		{Function: 1, Ebx: 0x0304_0800, Ecx: 0x1 | cpuid1ECXHypervisor, Edx: 0x1 | cpuid1EDXHTT},
		{Function: 0xb, Index: 0, Edx: 3},
		{Function: 0xb, Index: 1, Edx: 3},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("vcpuCPUID mismatch (-want +got):\n%s", diff)
	}
	if supported[1].Ebx != 0xff08_0800 {
		t.Errorf("vcpuCPUID modified its input")
	}
	if got := vcpuCPUID(supported, 0, 1, true)[1].Ecx; got != 0x1|cpuid1ECXHypervisor|cpuid1ECXTSCDeadline {
		t.Errorf("leaf 1 ECX with TSC deadline = %#x; want %#x", got, 0x1|cpuid1ECXHypervisor|cpuid1ECXTSCDeadline)
	}
}

func TestSetLINTs(t *testing.T) {
	var l kvm.LAPICState
	// LINT0 masked with fixed delivery, LINT1 with some other mode.
	l.Regs[apicLVTLINT0+2] = 1    // bit 16: masked
	l.Regs[apicLVTLINT1+1] = 0x02 // mode 2 (SMI)
	setLINTs(&l)
	read := func(off int) uint32 {
		var b [4]byte
		for i := range b {
			b[i] = byte(l.Regs[off+i])
		}
		return binary.LittleEndian.Uint32(b[:])
	}
	if got := read(apicLVTLINT0); got != 0x10700 {
		t.Errorf("LVT LINT0 = %#x; want 0x10700 (ExtINT, mask kept)", got)
	}
	if got := read(apicLVTLINT1); got != 0x400 {
		t.Errorf("LVT LINT1 = %#x; want 0x400 (NMI)", got)
	}
}

// tinyKernel writes an ELF "kernel" with a PVH note whose 32-bit entry
// runs code, loaded at 1 MiB.
func tinyKernel(t testing.TB, code []byte) string {
	t.Helper()
	const base = 0x100000
	le := binary.LittleEndian
	note := le.AppendUint32(nil, 4)
	note = le.AppendUint32(note, 8)
	note = le.AppendUint32(note, 18) // XEN_ELFNOTE_PHYS32_ENTRY
	note = append(note, "Xen\x00"...)
	note = le.AppendUint64(note, base)
	const ehsize, phsize = 64, 56
	off := uint64(ehsize + 2*phsize)
	var h []byte
	h = append(h, 0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT))
	h = append(h, make([]byte, 9)...)
	h = le.AppendUint16(h, uint16(elf.ET_EXEC))
	h = le.AppendUint16(h, uint16(elf.EM_X86_64))
	h = le.AppendUint32(h, uint32(elf.EV_CURRENT))
	h = le.AppendUint64(h, base)
	h = le.AppendUint64(h, ehsize)
	h = le.AppendUint64(h, 0)
	h = le.AppendUint32(h, 0)
	h = le.AppendUint16(h, ehsize)
	h = le.AppendUint16(h, phsize)
	h = le.AppendUint16(h, 2)
	h = le.AppendUint16(h, 64)
	h = le.AppendUint16(h, 0)
	h = le.AppendUint16(h, 0)
	ph := func(typ elf.ProgType, off, paddr, size uint64) {
		h = le.AppendUint32(h, uint32(typ))
		h = le.AppendUint32(h, uint32(elf.PF_R|elf.PF_X))
		h = le.AppendUint64(h, off)
		h = le.AppendUint64(h, paddr)
		h = le.AppendUint64(h, paddr)
		h = le.AppendUint64(h, size)
		h = le.AppendUint64(h, size)
		h = le.AppendUint64(h, 4)
	}
	ph(elf.PT_LOAD, off, base, uint64(len(code)))
	ph(elf.PT_NOTE, off+uint64(len(code)), 0, uint64(len(note)))
	img := append(append(h, code...), note...)
	path := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// helloKernel prints msg on COM1 with `rep outsb` and resets through the
// i8042, as Linux does for reboot=k.
func helloKernel(t testing.TB, msg string) string {
	const base = 0x100000
	code := []byte{
		0xbe, 0, 0, 0, 0, //             mov esi, msg
		0xba, 0xf8, 0x03, 0x00, 0x00, // mov edx, 0x3f8
		0xb9, 0, 0, 0, 0, //             mov ecx, len(msg)
		0xf3, 0x6e, //                   rep outsb
		0xb0, 0xfe, //                   mov al, 0xfe
		0xe6, 0x64, //                   out 0x64, al     i8042: pulse reset
		0xeb, 0xfe, //                   jmp $
	}
	binary.LittleEndian.PutUint32(code[1:], uint32(base+len(code)))
	binary.LittleEndian.PutUint32(code[11:], uint32(len(msg)))
	return tinyKernel(t, append(code, msg...))
}

// syncBuffer is a bytes.Buffer safe for the vCPU goroutines and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newMachine(t *testing.T, cfg Config) *Machine {
	t.Helper()
	kvmtest.Require(t)
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

func TestMachineConsoleAndReset(t *testing.T) {
	for _, vcpus := range []int{1, 2} {
		t.Run(strings.Repeat("v", vcpus), func(t *testing.T) {
			const msg = "hello from a tiny PVH kernel\n"
			var console syncBuffer
			start := time.Now()
			m := newMachine(t, Config{Kernel: helloKernel(t, msg), VCPUs: vcpus, MemoryMiB: 64, Console: &console})
			created := time.Since(start)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if err := m.Run(ctx); err != nil {
				t.Fatalf("Run: %v", err)
			}
			t.Logf("%d vcpus: New %v, Run to i8042 reset %v, stats %+v", vcpus, created, time.Since(start)-created, m.Stats())
			if got := console.String(); got != msg {
				t.Errorf("console = %q; want %q", got, msg)
			}
			if s := m.Stats(); s.IO == 0 || s.Other != 0 {
				t.Errorf("Stats() = %+v; want IO exits and no others", s)
			}
			if err := m.Run(ctx); !errors.Is(err, ErrRunOnce) {
				t.Errorf("second Run = %v; want ErrRunOnce", err)
			}
		})
	}
}

func TestMachineCancel(t *testing.T) {
	m := newMachine(t, Config{Kernel: tinyKernel(t, []byte{0xeb, 0xfe}), VCPUs: 2, MemoryMiB: 64})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	time.Sleep(50 * time.Millisecond)
	cancelled := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v; want context.Canceled", err)
		}
		if d := time.Since(cancelled); d > 100*time.Millisecond {
			t.Errorf("Run returned %v after cancel; want < 100ms", d)
		} else {
			t.Logf("Run returned %v after cancel", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of cancel")
	}
}

func TestMachineTripleFault(t *testing.T) {
	// ud2 with an empty IDT: #UD, then #GP, #DF and a triple fault.
	m := newMachine(t, Config{Kernel: tinyKernel(t, []byte{0x0f, 0x0b}), VCPUs: 1, MemoryMiB: 64})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := m.Run(ctx); !errors.Is(err, ErrTripleFault) {
		t.Errorf("Run = %v; want ErrTripleFault", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no kernel", Config{VCPUs: 1, MemoryMiB: 64}},
		{"no vcpus", Config{Kernel: "k", MemoryMiB: 64}},
		{"too many vcpus", Config{Kernel: "k", VCPUs: 33, MemoryMiB: 64}},
		{"too little memory", Config{Kernel: "k", VCPUs: 1, MemoryMiB: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); !errors.Is(err, ErrBadConfig) {
				t.Errorf("New(%+v) = %v; want ErrBadConfig", tc.cfg, err)
			}
		})
	}
}

// TestBootLinux boots the msb guest kernel without an initramfs: it must
// print its banner, panic for want of a root filesystem and, with panic=-1
// and reboot=k, reset through the i8042 so that Run returns nil. It needs
// real VMX/SVM; kvm_pvm cannot run an unmodified Linux kernel.
func TestBootLinux(t *testing.T) {
	kvmtest.RequireHardwareVirt(t)
	kernel, err := guestkernel.Locate()
	if err != nil {
		t.Skipf("no guest kernel: %v", err)
	}
	var console syncBuffer
	m := newMachine(t, Config{Kernel: kernel, VCPUs: 2, MemoryMiB: 256, Console: &console})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	start := time.Now()
	err = m.Run(ctx)
	t.Logf("Run = %v after %v; stats %+v; console:\n%s", err, time.Since(start), m.Stats(), console.String())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, want := range []string{"Linux version", "smpboot: Total of 2 processors activated", "Kernel panic"} {
		if !strings.Contains(console.String(), want) {
			t.Errorf("console lacks %q", want)
		}
	}
}

// BenchmarkConsoleByte measures one guest `outsb` to COM1 through the whole
// Machine path: KVM exit, PIO bus, UART, io.Writer and re-entry.
func BenchmarkConsoleByte(b *testing.B) {
	kvmtest.Require(b)
	const n = 20000
	msg := strings.Repeat("x", n)
	kernel := helloKernel(b, msg)
	for b.Loop() {
		m, err := New(Config{Kernel: kernel, VCPUs: 1, MemoryMiB: 64, Console: io.Discard})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := m.Run(b.Context()); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(time.Since(start).Nanoseconds())/n, "ns/byte")
		m.Close()
	}
}

// TestMachineHighMemory splits RAM around the MMIO hole: 3 GiB below it,
// the rest from 4 GiB, both in the e820 map the guest receives.
func TestMachineHighMemory(t *testing.T) {
	m := newMachine(t, Config{Kernel: helloKernel(t, "hi\n"), VCPUs: 1, MemoryMiB: 4096 + 64})
	var got [][2]uint64
	for _, r := range m.mem.Regions() {
		got = append(got, [2]uint64{uint64(r.Base), r.Size()})
	}
	want := [][2]uint64{{0, 3 << 30}, {4 << 30, (1 << 30) + (64 << 20)}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("memory regions mismatch (-want +got):\n%s", diff)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := m.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
