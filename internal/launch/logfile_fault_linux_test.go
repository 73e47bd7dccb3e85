package launch

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRotatingFileReopenAfterFailedRotation: a rotation whose reopen fails
// (here the directory is gone; on a full disk the create fails) must not
// leave the log dead: the next write opens it again.
func TestRotatingFileReopenAfterFailedRotation(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "x.log")
	f, err := Open(path, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("first-ok\n")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("lost-rec\n")); err == nil {
		t.Fatal("write with the log directory gone = nil error")
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("after\n")); err != nil {
		t.Fatalf("write once the directory is back = %v; want the log reopened", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "after\n" {
		t.Errorf("log = %q; want %q", got, "after\n")
	}
}

// TestRotatingFileTornWrite fills a small tmpfs so that a record is written
// part-way, frees space, and checks that the next record starts on a line
// of its own. It needs root for the mount.
func TestRotatingFileTornWrite(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	path := filepath.Join(dir, "x.log")
	f, err := Open(path, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// One record first, so the log's last page has room left: the record
	// that meets the full disk then lands part-way in it.
	rec := []byte(strings.Repeat("x", 3000) + "\n")
	if _, err := f.Write(rec); err != nil {
		t.Fatal(err)
	}
	// Fill the file system with a ballast file.
	ballast := filepath.Join(dir, "ballast")
	b, err := os.Create(ballast)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := b.Write(make([]byte, 4096)); err != nil {
			break
		}
	}
	b.Close()
	var failed bool
	for range 64 {
		if _, err := f.Write(rec); err != nil {
			failed = true
			break
		}
	}
	if !failed {
		t.Fatal("writes never hit ENOSPC")
	}
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("after-full\n")); err != nil {
		t.Fatalf("write after space was freed = %v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	if last := string(lines[len(lines)-1]); last != "after-full" {
		t.Errorf("last line = %.40q…; want after-full on a line of its own", last)
	}
}
