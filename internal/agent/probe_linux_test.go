package agent

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestProbeLine(t *testing.T) {
	dir := t.TempDir()
	for name, id := range map[string]string{
		"virtio0": "0x0002", "virtio1": "0x0003\n", "virtio2": "0x0001", "virtio3": "0x0002",
		"virtio4": "0x001a", "virtio5": "junk",
	} {
		os.MkdirAll(filepath.Join(dir, name), 0o755)
		os.WriteFile(filepath.Join(dir, name, "device"), []byte(id), 0o644)
	}
	got := probeLine(1234567*time.Nanosecond, dir)
	want := "msb-agentd: probe ok boot_ns=1234567 devices=blk,console,id-26,net"
	if got != want {
		t.Errorf("got %q; want %q", got, want)
	}
	if got := probeLine(5, filepath.Join(dir, "none")); got != "msb-agentd: probe ok boot_ns=5 devices=" {
		t.Errorf("no devices: got %q", got)
	}
}

func TestIsMountPoint(t *testing.T) {
	if !isMountPoint("/proc") {
		t.Errorf("/proc is not a mount point")
	}
	if isMountPoint("/proc/self") {
		t.Errorf("/proc/self is a mount point")
	}
	if isMountPoint(filepath.Join(t.TempDir(), "missing")) {
		t.Errorf("a missing dir is a mount point")
	}
}
