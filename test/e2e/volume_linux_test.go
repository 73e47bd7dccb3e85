package e2e

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestVolumes: host directories and named volumes in the guest over
// virtio-fs (served by the sandbox process to QEMU through vhost-user),
// read and written from both sides; :ro enforced on the host even after
// the guest remounts read-write; a named volume outlives its sandbox; guest
// ownership kept in the override xattr; a missing host path is a boot error
// of stage mount with errno 2 and its hint; tmpfs.
func TestVolumes(t *testing.T) {
	c := newCLI(t)
	rootfs := busyboxRootfs(t)
	rw, ro := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(rw, "from-host"), []byte("host wrote this\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ro, "keep"), []byte("unchanged\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// An extra ext4 disk, made on the host.
	img := filepath.Join(t.TempDir(), "disk.ext4")
	if out, err := exec.Command("sh", "-c", "truncate -s 64M "+img+" && mkfs.ext4 -q -F "+img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	// Three volumes fill QEMU microvm's eight virtio slots (two root
	// disks, agent port, network, runtime share); the disk goes to the
	// second sandbox below.
	c.must(0, "create", "--rootfs", rootfs, "--name", "vol",
		"-v", rw+":/data", "-v", ro+":/ro:ro", "-v", "shared:/named", "--tmpfs", "/scratch:16M")
	defer c.run(t.Context(), nil, "rm", "-f", "vol")
	sh := func(script string) (string, int) {
		t.Helper()
		r, err := c.run(t.Context(), nil, "exec", "vol", "--", "sh", "-c", script)
		if err != nil {
			t.Fatal(err)
		}
		return string(r.stdout) + string(r.stderr), r.code
	}

	if out, _ := sh("cat /data/from-host"); out != "host wrote this\n" {
		t.Errorf("guest read of a host file: %q", out)
	}
	if out, code := sh("echo guest wrote this > /data/from-guest && mkdir -p /data/d && chown 1000:1000 /data/d && stat -c '%u:%g' /data/d"); code != 0 || strings.TrimSpace(out) != "1000:1000" {
		t.Errorf("guest write and chown: %q (exit %d); want 1000:1000", out, code)
	}
	if b, err := os.ReadFile(filepath.Join(rw, "from-guest")); err != nil || string(b) != "guest wrote this\n" {
		t.Errorf("host read of the guest's file: %q, %v", b, err)
	}
	// Ownership lives in the override xattr, not in host ownership.
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(rw, "d"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != uint32(os.Getuid()) {
		t.Errorf("host owner of a guest-chowned dir = %d; want the host user %d", st.Uid, os.Getuid())
	}
	buf := make([]byte, 64)
	n, err := unix.Getxattr(filepath.Join(rw, "d"), "user.containers.override_stat", buf)
	if err != nil || n != 20 || buf[0] != 1 || binary.NativeEndian.Uint32(buf[4:]) != 1000 || binary.NativeEndian.Uint32(buf[8:]) != 1000 {
		t.Errorf("override xattr = %x (%d bytes), %v; want version 1, uid 1000, gid 1000", buf[:max(n, 0)], n, err)
	}

	if out, code := sh("echo x > /ro/new"); code == 0 {
		t.Errorf("write to a :ro volume succeeded: %q", out)
	}
	// Even a guest that remounts read-write gets EROFS from the host.
	sh("mount -o remount,rw /ro; echo x > /ro/keep; echo y > /ro/new2; rm -f /ro/keep")
	if b, err := os.ReadFile(filepath.Join(ro, "keep")); err != nil || string(b) != "unchanged\n" {
		t.Errorf("host file under :ro after the guest's remount: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(ro, "new2")); !os.IsNotExist(err) {
		t.Errorf("a file appeared in the :ro host directory: %v", err)
	}

	if out, code := sh("echo persisted > /named/f"); code != 0 {
		t.Fatalf("write to a named volume: %q", out)
	}
	if out, _ := sh("df -k /scratch | tail -1"); !strings.Contains(out, "16384") {
		t.Errorf("tmpfs /scratch:16M: %q; want a 16384 KiB file system", out)
	}
	c.must(0, "rm", "-f", "vol")
	r := c.must(0, "run", "--rootfs", rootfs, "-v", "shared:/again", "--disk", img+":/mnt/disk", "--",
		"sh", "-c", "cat /again/f && echo on-disk > /mnt/disk/f && sync")
	if string(r.stdout) != "persisted\n" {
		t.Errorf("named volume after its first sandbox was removed: %q; want persisted", r.stdout)
	}
	// The extra disk's file is in the image on the host once the sandbox
	// has stopped.
	if out, err := exec.Command("debugfs", "-R", "cat /f", img).Output(); err != nil || string(out) != "on-disk\n" {
		t.Errorf("debugfs cat /f of the disk image = %q, %v; want on-disk", out, err)
	}

	missing := filepath.Join(t.TempDir(), "nope")
	r = c.must(1, "create", "--rootfs", rootfs, "--name", "bad", "-v", missing+":/x")
	defer c.run(t.Context(), nil, "rm", "-f", "bad")
	for _, want := range []string{"mount", "no such file or directory", "the host path for one of the mounts does not exist"} {
		if !strings.Contains(string(r.stderr), want) {
			t.Errorf("create with a missing host path: stderr lacks %q:\n%s", want, r.stderr)
		}
	}
}
