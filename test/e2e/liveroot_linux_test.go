package e2e

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestLiveRoot: `msb run --rootfs DIR --rootfs-live` boots with DIR itself
// as the root over virtio-fs: the guest's writes land in DIR, a file owned
// by uid 1000 in the guest keeps that owner in the override xattr (the host
// file stays the host user's), and the next sandbox on DIR sees both. It
// logs boot-to-first-command of live and packed mode.
func TestLiveRoot(t *testing.T) {
	c := newCLI(t)
	dir := filepath.Join(t.TempDir(), "root")
	// Live mode writes into its root: never the shared cached tree.
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", busyboxRootfs(t)+"/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("copy the busybox rootfs: %v: %s", err, out)
	}

	r := c.must(0, "run", "--rootfs-live", "--rootfs", dir, "--",
		"sh", "-c", "echo hi > /root/f; uname -r; cat /etc/passwd; mkdir -p /home/u && chown 1000:1000 /home/u")
	out := string(r.stdout)
	if lines := strings.SplitN(out, "\n", 2); len(lines) < 2 || lines[0] == "" || !strings.Contains(lines[1], "root:x:0:0:") {
		t.Errorf("live root run: stdout %q (stderr %q); want the kernel release and /etc/passwd", out, r.stderr)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "root/f")); err != nil || string(b) != "hi\n" {
		t.Errorf("host read of the guest's /root/f: %q, %v; want hi", b, err)
	}

	// A file uid 1000 creates: its owner in the guest, the xattr on the host.
	r = c.must(0, "run", "--rootfs-live", "--rootfs", dir, "-u", "1000:1000", "--",
		"sh", "-c", "id -u; echo mine > /home/u/g; stat -c %u:%g /home/u/g")
	if got := strings.Fields(string(r.stdout)); len(got) != 2 || got[0] != "1000" || got[1] != "1000:1000" {
		t.Errorf("uid 1000 in the live root: stdout %q (stderr %q); want 1000 and 1000:1000", r.stdout, r.stderr)
	}
	hostFile := filepath.Join(dir, "home/u/g")
	var st unix.Stat_t
	if err := unix.Stat(hostFile, &st); err != nil {
		t.Fatalf("host stat of the guest's /home/u/g: %v", err)
	}
	if st.Uid != uint32(os.Getuid()) {
		t.Errorf("host owner of /home/u/g = %d; want the host user %d", st.Uid, os.Getuid())
	}
	buf := make([]byte, 64)
	n, err := unix.Getxattr(hostFile, "user.containers.override_stat", buf)
	if err != nil || n != 20 || buf[0] != 1 || binary.NativeEndian.Uint32(buf[4:]) != 1000 || binary.NativeEndian.Uint32(buf[8:]) != 1000 {
		t.Errorf("override xattr of /home/u/g = %x (%d bytes), %v; want version 1, uid 1000, gid 1000", buf[:max(n, 0)], n, err)
	}

	// The next sandbox on the directory sees it all.
	r = c.must(0, "run", "--rootfs-live", "--rootfs", dir, "--",
		"sh", "-c", "cat /root/f /home/u/g; stat -c %u:%g /home/u/g")
	if got, want := string(r.stdout), "hi\nmine\n1000:1000\n"; got != want {
		t.Errorf("second live run: stdout %q (stderr %q); want %q", got, r.stderr, want)
	}

	// Boot to first command, live and packed (each after a warm-up, so
	// packing and the page cache are out of the packed figure).
	timeRun := func(args ...string) time.Duration {
		t.Helper()
		args = append(append([]string{"run"}, args...), "--", "true")
		c.must(0, args...)
		start := time.Now()
		c.must(0, args...)
		return time.Since(start)
	}
	live := timeRun("--rootfs-live", "--rootfs", dir)
	packed := timeRun("--rootfs", dir)
	t.Logf("msb run -- true: live root %v, packed root %v", live, packed)
}
