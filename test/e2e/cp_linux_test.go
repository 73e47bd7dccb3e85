package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// cpFiles is how many small files cpTree writes: about 20 MiB in a few
// hundred files in CI, the 100 MiB in a few thousand with
// MSB_E2E_FULL=1 (make test-e2e-full).
func cpFiles() int {
	if os.Getenv("MSB_E2E_FULL") == "1" {
		return 3000
	}
	return 300
}

// cpTree writes one 10 MiB file and cpFiles() files of 1–64 KiB in nested
// directories under dir, with assorted modes, and relative, absolute and
// dangling symlinks. It returns the bytes written.
func cpTree(t testing.TB, dir string) int64 {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 7))
	src := rand.NewChaCha8([32]byte{7})
	var total int64
	write := func(name string, size int, mode os.FileMode) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, size)
		src.Read(b)
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		total += int64(size)
	}
	write("big.bin", 10<<20, 0o644)
	modes := []os.FileMode{0o644, 0o600, 0o755, 0o750, 0o444}
	for i := range cpFiles() {
		name := fmt.Sprintf("d%d/e%d/f%03d", i%6, i%4, i)
		write(name, 1<<10+rng.IntN(63<<10), modes[i%len(modes)])
	}
	for _, l := range [][2]string{{"big.bin", "link"}, {"../../big.bin", "d0/e0/up"}, {"/etc/hostname", "abs"}, {"missing", "dangling"}} {
		if err := os.Symlink(l[0], filepath.Join(dir, l[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2021, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, p := range []string{"big.bin", "d1/e1/f001", "d2", "empty"} {
		if err := os.Chtimes(filepath.Join(dir, p), old, old); err != nil {
			t.Fatal(err)
		}
	}
	return total
}

// cpSummary maps each path under dir to its mode, symlink target or
// content hash, and (for files and directories) mtime.
func cpSummary(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		s := fi.Mode().String()
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			s += " -> " + target
		case fi.IsDir():
			s += " " + fi.ModTime().UTC().Format(time.RFC3339)
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s += fmt.Sprintf(" %x %s", sha256.Sum256(b), fi.ModTime().UTC().Format(time.RFC3339))
		}
		out[rel] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	delete(out, ".")
	return out
}

// TestCP copies a tree into a running sandbox with `msb cp`, checks it from
// inside, copies it back out and compares checksums, modes, mtimes and
// symlinks; then checks the error for a stopped sandbox.
func TestCP(t *testing.T) {
	c := newCLI(t)
	rootfs := busyboxRootfs(t)
	src := filepath.Join(t.TempDir(), "tree")
	size := cpTree(t, src)
	// Directory mtimes change while entries are created: set the root's
	// last.
	if err := os.Chtimes(src, time.Unix(1.6e9, 0), time.Unix(1.6e9, 0)); err != nil {
		t.Fatal(err)
	}
	want := cpSummary(t, src)
	mib := float64(size) / (1 << 20)

	c.must(0, "create", "--rootfs", rootfs, "--name", "box")

	start := time.Now()
	c.must(0, "cp", src, "box:/data/")
	in := time.Since(start)

	r := c.must(0, "exec", "box", "--", "sh", "-c",
		"readlink /data/tree/d0/e0/up; stat -c '%a' /data/tree/d0/e0/f000 /data/tree/d1/e1/f001 /data/tree/empty; "+
			"cat /data/tree/d2/e2/f002 | wc -c; find /data/tree -type f | wc -l")
	wantOut := fmt.Sprintf("../../big.bin\n644\n600\n700\n%d\n%d\n", fileSize(t, filepath.Join(src, "d2/e2/f002")), cpFiles()+1)
	if got := strings.Join(strings.Fields(string(r.stdout)), "\n") + "\n"; got != wantOut {
		t.Errorf("guest view = %q; want %q", got, wantOut)
	}

	out := t.TempDir()
	start = time.Now()
	c.must(0, "copy", "box:/data/tree", out)
	back := time.Since(start)
	if d := cmp.Diff(want, cpSummary(t, filepath.Join(out, "tree"))); d != "" {
		t.Errorf("round-tripped tree (-want +got):\n%s", d)
	}

	tarDir := t.TempDir()
	start = time.Now()
	tar := exec.Command("sh", "-c", `tar cf - -C "$1" tree | tar xf - -C "$2"`, "sh", filepath.Dir(src), tarDir)
	if b, err := tar.CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, b)
	}
	tarTook := time.Since(start)
	t.Logf("%.1f MiB in %d files: msb cp in %v (%.1f MiB/s), out %v (%.1f MiB/s); host tar c | tar x %v (%.1f MiB/s)",
		mib, cpFiles()+1, in.Round(time.Millisecond), mib/in.Seconds(), back.Round(time.Millisecond), mib/back.Seconds(),
		tarTook.Round(time.Millisecond), mib/tarTook.Seconds())

	// A file onto an existing guest file, and errors.
	if err := os.WriteFile(filepath.Join(out, "one"), []byte("one\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	c.must(0, "cp", filepath.Join(out, "one"), "box:/data/tree/big.bin")
	r = c.must(0, "exec", "box", "--", "cat", "/data/tree/big.bin")
	if string(r.stdout) != "one\n" {
		t.Errorf("big.bin after cp one = %q; want one", r.stdout)
	}
	r = c.must(1, "cp", "box:/nonexistent", out)
	if !bytes.Contains(r.stderr, []byte("no such file")) {
		t.Errorf("cp of a missing guest path: stderr %q; want no such file", r.stderr)
	}

	c.must(0, "stop", "box")
	r = c.must(1, "cp", "box:/etc/hosts", out)
	if want := "sandbox box is not running; start it with `msb start box`"; !bytes.Contains(r.stderr, []byte(want)) {
		t.Errorf("cp from a stopped sandbox: stderr %q; want %q", r.stderr, want)
	}
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
