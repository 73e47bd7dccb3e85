package hostmem

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMain runs this test binary as viaHelper's helper when asked, as
// cmd/msb's main does.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == HelperArg {
		os.Exit(HelperMain(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// TestHelperMakesHugeFile takes the unprivileged path: the helper in a
// user namespace makes the file, which must be as good as Huge's own.
func TestHelperMakesHugeFile(t *testing.T) {
	if err := hugeAllowed(shmemEnabled); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	mnt, err := os.MkdirTemp(dir, ".ram-")
	if err != nil {
		t.Fatal(err)
	}
	const size = 4 << 20
	f, err := viaHelper(mnt, size)
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("no user namespaces here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Errorf("the file's file system: type %#x, %v; want tmpfs", st.Type, err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != size {
		t.Errorf("file size %v, %v; want %d", fi.Size(), err, size)
	}
	checkHugeMapping(t, f, size)
	if ents, _ := os.ReadDir(mnt); len(ents) != 0 {
		t.Errorf("the mount point holds %v seen from here; want it empty (the mount was the helper's)", ents)
	}
}

// TestHelperFailsClosed: a helper that cannot mount (a missing mount
// point) reports ErrUnavailable with its reason, and leaks nothing.
func TestHelperFailsClosed(t *testing.T) {
	_, err := viaHelper(t.TempDir()+"/missing", 2<<20)
	if err == nil {
		t.Fatal("viaHelper on a missing mount point succeeded")
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("error %v; want ErrUnavailable", err)
	}
}

func TestHelperArgs(t *testing.T) {
	for _, args := range [][]string{nil, {"/x"}, {"/x", "0"}, {"/x", "-5"}, {"/x", "big"}} {
		if got := HelperMain(args); got == 0 {
			t.Errorf("HelperMain(%q) = 0; want a failure", args)
		}
	}
}

// TestHelperByHandLeavesHostMounts runs the helper as a command would be
// run by hand, outside viaHelper's namespaces: whatever it does stays out
// of this process's mount table.
func TestHelperByHandLeavesHostMounts(t *testing.T) {
	before, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command("/proc/self/exe", HelperArg, dir, "2097152")
	out, _ := cmd.CombinedOutput() // it fails: fd 3 is no socket
	after, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Errorf("the mount table changed (helper output %q):\nbefore:\n%s\nafter:\n%s", out, before, after)
	}
}
