package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestQuotaVolume checks that a named volume's quota is enforced by the
// host: dd into it stops with ENOSPC at the quota, the host file is no
// larger, and df in the guest shows the quota as the size.
func TestQuotaVolume(t *testing.T) {
	c := newCLI(t)
	rootfs := busyboxRootfs(t)
	c.must(0, "volume", "create", "q", "--size", "8M")
	r := c.must(0, "run", "--rootfs", rootfs, "-v", "q:/q", "--",
		"sh", "-c", "dd if=/dev/zero of=/q/f bs=1M count=16; echo rc=$?; df -k /q")
	out := string(r.stdout) + string(r.stderr)
	t.Logf("guest output:\n%s", out)
	if !strings.Contains(out, "No space left on device") {
		t.Errorf("dd did not fail with ENOSPC")
	}
	if !strings.Contains(out, "rc=1") {
		t.Errorf("dd exit status not 1")
	}
	// df -k: "Filesystem 1K-blocks Used Available Use% Mounted on", then
	// the share's line ending in /q.
	m := regexp.MustCompile(`(?m)^\S+\s+(\d+)\s+(\d+)\s+(\d+)\s+\d+%\s+/q$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no df line for /q")
	}
	if total, _ := strconv.Atoi(m[1]); total != 8192 {
		t.Errorf("df total %d KiB; want 8192", total)
	}
	if avail, _ := strconv.Atoi(m[3]); avail != 0 {
		t.Errorf("df available %d KiB; want 0", avail)
	}
	fi, err := os.Stat(filepath.Join(c.home, "volumes", "q", "data", "f"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 8<<20 || fi.Size() < 7<<20 {
		t.Errorf("host file is %d bytes; want at most 8 MiB and close to it", fi.Size())
	}

	// Removing the file frees the quota.
	r = c.must(0, "run", "--rootfs", rootfs, "-v", "q:/q", "--",
		"sh", "-c", "rm /q/f && dd if=/dev/zero of=/q/g bs=1M count=4 2>&1; echo rc=$?")
	if !strings.Contains(string(r.stdout), "rc=0") {
		t.Errorf("writing 4 MiB after rm: %s", r.stdout)
	}
}

// TestFileBind checks a bind of a single host file: the guest reads and
// writes it, and sees nothing else of its host directory.
func TestFileBind(t *testing.T) {
	c := newCLI(t)
	rootfs := busyboxRootfs(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(file, []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("SECRET\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := c.must(0, "run", "--rootfs", rootfs, "-v", file+":/etc/notes.txt", "-v", file+":/ro.txt:ro", "--",
		"sh", "-c", "cat /etc/notes.txt; echo more >> /etc/notes.txt; echo x >> /ro.txt || echo ro-refused; "+
			"ls -a /.msb/file-mounts/*/; cat /.msb/file-mounts/*/secret /.msb/file-mounts/*/../secret 2>&1; true")
	out := string(r.stdout) + string(r.stderr)
	t.Logf("guest output:\n%s", out)
	if !strings.HasPrefix(string(r.stdout), "hi\n") {
		t.Errorf("guest did not read the file")
	}
	if !strings.Contains(out, "ro-refused") {
		t.Errorf("write to the read-only file bind did not fail")
	}
	if strings.Contains(out, "SECRET") || strings.Contains(out, "secret\n") {
		t.Errorf("guest reached a sibling of the bound file")
	}
	if b, _ := os.ReadFile(file); string(b) != "hi\nmore\n" {
		t.Errorf("host file = %q; want the guest's append", b)
	}
}
