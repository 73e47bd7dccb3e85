package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestCLISnapshot is issue 14's snapshot round trip through the CLI: a
// file written in a sandbox on the busybox image survives stop → snapshot
// create → run --snapshot, and export → rm → import → run --snapshot; the
// export is compact although the disk is a 4 GiB sparse file, and inspect
// --verify passes, then catches one flipped byte. Three boots: the source
// sandbox and one per restored copy (each restore is a new sandbox).
func TestCLISnapshot(t *testing.T) {
	c := newCLI(t)
	const ref = "localhost/snap/busybox:1"
	c.must(0, "image", "import", busyboxRootfs(t), ref)
	c.must(0, "run", "--name", "src", ref, "--", "sh", "-c", "mkdir -p /root && echo kept-$((6*7)) > /root/state && sync")
	if st := c.ls()["src"].Status; st == "Running" {
		t.Fatalf("src is %s after a named run; want it stopped", st)
	}

	id := strings.TrimSpace(string(c.must(0, "snapshot", "create", "base", "--from", "src", "--label", "suite=e2e").stdout))
	if !strings.HasPrefix(id, "sha256:") {
		t.Fatalf("snapshot create printed %q; want an id", id)
	}
	var in struct {
		Name, ID, ImageReference, SourceSandbox string
		SizeBytes, AllocatedBytes               int64
		Verified                                string
	}
	r := c.must(0, "snapshot", "inspect", "base", "--verify", "--format", "json")
	if err := json.Unmarshal(r.stdout, &in); err != nil {
		t.Fatalf("inspect json: %v: %s", err, r.stdout)
	}
	if in.ID != id || in.ImageReference != ref || in.SourceSandbox != "src" || in.Verified != "ok" {
		t.Errorf("snapshot inspect = %+v", in)
	}
	t.Logf("snapshot disk: %d bytes logical, %d allocated", in.SizeBytes, in.AllocatedBytes)

	if got := string(c.must(0, "run", "--snapshot", "base", "--", "cat", "/root/state").stdout); got != "kept-42\n" {
		t.Errorf("run --snapshot base: cat /root/state = %q; want kept-42", got)
	}

	archive := filepath.Join(t.TempDir(), "base.tar.zst")
	c.must(0, "snapshot", "export", "base", archive)
	fi, err := os.Stat(archive)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("export: %d bytes for a %d-byte disk (%d allocated)", fi.Size(), in.SizeBytes, in.AllocatedBytes)
	if fi.Size() > in.AllocatedBytes+1<<20 || fi.Size() > 64<<20 {
		t.Errorf("export is %d bytes; want no more than the disk's %d allocated bytes", fi.Size(), in.AllocatedBytes)
	}
	c.must(0, "snapshot", "rm", "base")
	c.must(1, "snapshot", "inspect", "base")
	if got := strings.TrimSpace(string(c.must(0, "snapshot", "import", archive).stdout)); got != id {
		t.Errorf("import printed %q; want the original id %s", got, id)
	}
	if got := string(c.must(0, "run", "--snapshot", "base", "--", "cat", "/root/state").stdout); got != "kept-42\n" {
		t.Errorf("run --snapshot of the imported snapshot: %q; want kept-42", got)
	}
	upper := filepath.Join(c.home, "snapshots", "base", "upper.ext4")
	var st syscall.Stat_t
	if err := syscall.Stat(upper, &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 > in.AllocatedBytes+1<<20 {
		t.Errorf("imported disk allocates %d bytes; the original %d (holes lost)", st.Blocks*512, in.AllocatedBytes)
	}

	c.must(0, "snapshot", "inspect", "base", "--verify")
	f, err := os.OpenFile(upper, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	const off = 1024 + 0x38 // the ext4 superblock's magic: always data
	f.ReadAt(b, off)
	b[0] ^= 0x01
	f.WriteAt(b, off)
	f.Close()
	if r := c.must(1, "snapshot", "inspect", "base", "--verify"); !strings.Contains(string(r.stderr), "does not match") {
		t.Errorf("inspect --verify after a flipped byte: %s; want a digest mismatch", r.stderr)
	}
}
