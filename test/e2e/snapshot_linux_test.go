package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/msb-go/msb"
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

// TestSDKSnapshot is the same round trip through the Go SDK: a running
// sandbox is refused, a stopped one is snapshotted through its handle, and
// Create with FromSnapshot boots a copy (two boots). Export, remove and
// import keep the id; another image is refused before any boot.
func TestSDKSnapshot(t *testing.T) {
	c := newCLI(t)
	const ref = "localhost/snap/busybox:sdk"
	c.must(0, "image", "import", busyboxRootfs(t), ref)
	sdkFor(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	sb, err := msb.Create(ctx, "sdk-src", msb.WithImage(ref), msb.WithMemory(256))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer sb.Close()
	if res, err := sb.Exec(ctx, "sh", []string{"-c", "echo from-sdk > /etc/marker && sync"}); err != nil || res.ExitCode != 0 {
		t.Fatalf("write marker: %v %+v", err, res)
	}
	if _, err := sb.Snapshot(ctx, "sdk"); !errors.Is(err, msb.ErrRunning) {
		t.Errorf("Snapshot of a running sandbox = %v; want ErrRunning", err)
	}
	stopStart := time.Now()
	if err := sb.Stop(ctx, 30*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("Stop took %v", time.Since(stopStart).Round(time.Millisecond))
	info, err := sb.Snapshot(ctx, "sdk", msb.WithSnapshotLabel("via", "sdk"))
	if err != nil {
		// What the store and the sandbox process said, for a failure seen
		// once in CI (status still Running after Stop returned).
		res, _ := c.run(ctx, nil, "inspect", "sdk-src")
		t.Logf("inspect sdk-src:\n%s%s", res.stdout, res.stderr)
		if b, rerr := os.ReadFile(filepath.Join(c.home, "sandboxes", "sdk-src", "logs", "runtime.log")); rerr == nil {
			t.Logf("runtime.log:\n%s", b)
		}
		t.Fatalf("Snapshot: %v", err)
	}
	if info.ImageReference != ref || info.SourceSandbox != "sdk-src" || info.Labels["via"] != "sdk" {
		t.Errorf("Snapshot = %+v", info)
	}

	if _, err := msb.Create(ctx, "", msb.FromSnapshot("sdk"), msb.WithImage("localhost/other:1")); !errors.Is(err, msb.ErrSnapshotImage) {
		t.Errorf("Create(FromSnapshot, another image) = %v; want ErrSnapshotImage", err)
	}

	var buf bytes.Buffer
	if err := msb.ExportSnapshot(ctx, "sdk", &buf, msb.PlainTar()); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "sdk.tar")
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := msb.RemoveSnapshot(ctx, "sdk"); err != nil {
		t.Fatal(err)
	}
	imported, err := msb.ImportSnapshot(ctx, file, "sdk")
	if err != nil || imported.ID != info.ID {
		t.Fatalf("ImportSnapshot = %+v, %v; want id %s", imported, err, info.ID)
	}
	if err := msb.VerifySnapshot(ctx, "sdk"); err != nil {
		t.Errorf("VerifySnapshot = %v", err)
	}

	cp, err := msb.Create(ctx, "", msb.FromSnapshot("sdk"), msb.WithMemory(256))
	if err != nil {
		t.Fatalf("Create(FromSnapshot): %v", err)
	}
	defer msb.Remove(context.Background(), cp.Name(), true)
	defer cp.Close()
	res, err := cp.Exec(ctx, "cat", []string{"/etc/marker"})
	if err != nil || string(res.Stdout) != "from-sdk\n" {
		t.Errorf("cat /etc/marker in the copy = %q, %v; want from-sdk", res.Stdout, err)
	}
}
