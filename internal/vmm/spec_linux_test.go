package vmm

import (
	"context"
	"errors"
	"github.com/msb-go/msb/internal/virtio/virtiorng"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/msb-go/msb/internal/machine"
	"github.com/msb-go/msb/internal/virtio"
	"github.com/msb-go/msb/internal/virtio/virtiofs"
	"github.com/msb-go/msb/internal/vmm/kvm/kvmtest"
)

func socketPair(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
}

func TestNewFromSpec(t *testing.T) {
	kvmtest.Require(t)
	disk := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	agentGuest, agentHost := socketPair(t)
	defer agentHost.Close()
	netGuest, netHost := socketPair(t)
	defer netHost.Close()
	consoleR, consoleW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer consoleR.Close()
	defer consoleW.Close()
	spec := &machine.Spec{
		Kernel:    helloKernel(t, "spec\n"),
		VCPUs:     1,
		MemoryMiB: 64,
		Disks:     []machine.Disk{{Path: disk, ReadOnly: true, Serial: "rootfs"}, {Path: disk, Serial: "upper"}},
		Agent:     agentGuest,
		Console:   consoleW,
		Net:       &machine.Net{Conn: netGuest, MAC: "02:6d:73:00:01:02"},
		Shares:    []machine.Share{{Tag: "work", Path: t.TempDir()}},
	}
	m, err := NewFromSpec(spec, nil)
	if err != nil {
		t.Fatalf("NewFromSpec: %v", err)
	}
	var types []uint32
	for _, vd := range m.virtio {
		types = append(types, vd.t.Device().Type())
	}
	want := []uint32{virtio.VIRTIO_ID_BLOCK, virtio.VIRTIO_ID_BLOCK, virtio.VIRTIO_ID_CONSOLE, virtio.VIRTIO_ID_NET, virtio.VIRTIO_ID_FS, virtio.VIRTIO_ID_RNG}
	if !slices.Equal(types, want) {
		t.Errorf("device types %v; want %v", types, want)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := m.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(consoleR, buf); err != nil || string(buf) != "spec\n" {
		t.Errorf("console read %q, %v; want \"spec\\n\"", buf, err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// The Machine owned the guest ends: their peers now see EOF.
	for name, f := range map[string]*os.File{"agent": agentHost, "net": netHost} {
		f.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := f.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Errorf("%s peer Read after Close = %d, %v; want EOF", name, n, err)
		}
	}
}

func TestNewFromSpecRejects(t *testing.T) {
	tests := []struct {
		name string
		spec machine.Spec
		want error
	}{
		{"missing share", machine.Spec{Kernel: "/k", VCPUs: 1, MemoryMiB: 64, Shares: []machine.Share{{Tag: "t", Path: "/nonexistent/share"}}}, os.ErrNotExist},
		{"bad share tag", machine.Spec{Kernel: "/k", VCPUs: 1, MemoryMiB: 64, Shares: []machine.Share{{Tag: "", Path: "/"}}}, virtiofs.ErrConfig},
		{"missing disk", machine.Spec{Kernel: "/k", VCPUs: 1, MemoryMiB: 64, Disks: []machine.Disk{{Path: "/nonexistent/disk"}}}, os.ErrNotExist},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewFromSpec(&tc.spec, nil); !errors.Is(err, tc.want) {
				t.Errorf("NewFromSpec() = %v; want %v", err, tc.want)
			}
		})
	}
}

// TestNewFromSpecNetDevice: a caller's network device must be a virtio-net
// device; anything else is refused before a VM exists.
func TestNewFromSpecNetDevice(t *testing.T) {
	for _, dev := range []any{virtiorng.New(), "not a device"} {
		spec := machine.Spec{Kernel: "/k", VCPUs: 1, MemoryMiB: 64, Net: &machine.Net{Device: dev, MAC: "02:6d:73:00:01:02"}}
		_, err := NewFromSpec(&spec, nil)
		if err == nil || !strings.Contains(err.Error(), "not a virtio-net device") {
			t.Errorf("NewFromSpec with Net.Device %T = %v; want a not-a-virtio-net-device error", dev, err)
		}
	}
}
