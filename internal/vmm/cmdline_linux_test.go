package vmm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/msb-go/msb/internal/machine"
	"github.com/msb-go/msb/internal/virtio"
)

// TestNativeCmdlineAndDevices pins what the native VMM gives a guest for a
// full spec: the devices in bus order and the final kernel command line
// (machine.Spec.KernelCmdline's words after the VMM's own console and
// virtio-mmio declarations, each word once). It needs no /dev/kvm: the
// devices are built but no VM is.
func TestNativeCmdlineAndDevices(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	share := filepath.Join(dir, "share")
	if err := os.Mkdir(share, 0o755); err != nil {
		t.Fatal(err)
	}
	agentGuest, agentHost := socketPair(t)
	defer agentHost.Close()
	netGuest, netHost := socketPair(t)
	defer netHost.Close()
	spec := &machine.Spec{
		Kernel: "/k/vmlinux", VCPUs: 1, MemoryMiB: 64, TSCKHz: 2100000,
		Cmdline: []string{"MSB_PROBE=1"},
		Disks:   []machine.Disk{{Path: disk, ReadOnly: true, Serial: "msb-lower"}, {Path: disk, Serial: "msb-upper"}},
		Agent:   agentGuest,
		Net:     &machine.Net{Conn: netGuest, MAC: "02:6d:73:00:01:02"},
		Shares:  []machine.Share{{Tag: "msb_vol_0", Path: share}},
	}
	set, err := buildDevices(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer set.close()
	var got []uint32
	for _, d := range set.devs {
		got = append(got, d.Type())
	}
	want := []uint32{virtio.VIRTIO_ID_BLOCK, virtio.VIRTIO_ID_BLOCK, virtio.VIRTIO_ID_CONSOLE,
		virtio.VIRTIO_ID_NET, virtio.VIRTIO_ID_FS, virtio.VIRTIO_ID_RNG}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("device types in bus order (-want +got):\n%s", diff)
	}

	line := kernelCmdline(len(set.devs), strings.Fields(spec.KernelCmdline()))
	wantLine := "console=ttyS0 reboot=k panic=-1 " +
		"virtio_mmio.device=0x1000@0xd0000000:5 virtio_mmio.device=0x1000@0xd0001000:6 virtio_mmio.device=0x1000@0xd0002000:7 " +
		"virtio_mmio.device=0x1000@0xd0003000:8 virtio_mmio.device=0x1000@0xd0004000:9 virtio_mmio.device=0x1000@0xd0005000:10 " +
		"rdinit=/init quiet tsc=reliable no_timer_check cryptomgr.notests 8250.nr_uarts=1 random.trust_cpu=on msb_apic_khz=1000000 noreplace-smp " +
		"tsc_early_khz=2100000 MSB_PROBE=1"
	if line != wantLine {
		t.Errorf("native kernel command line:\n got %s\nwant %s", line, wantLine)
	}
	seen := map[string]bool{}
	for _, w := range strings.Fields(line) {
		if seen[w] {
			t.Errorf("word %q appears twice in the command line", w)
		}
		seen[w] = true
	}
}
