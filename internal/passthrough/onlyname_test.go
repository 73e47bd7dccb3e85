//go:build linux

package passthrough

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// TestOnlyName checks that a one-file share reaches its file and nothing
// else of its directory: not siblings (including one the host adds
// later), not symlinks, not "..", and that it cannot change the
// directory.
func TestOnlyName(t *testing.T) {
	r := newRig(t, Options{OnlyName: "hello.txt"})
	hello := r.mustLookup("hello.txt")
	if err := os.WriteFile(filepath.Join(r.share, "late"), []byte("late"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(filepath.Join(r.share, "late"))
	for _, name := range []string{"sub", "evil", "evilf", "late", ".", "..", "missing"} {
		if _, e := r.lookup(rootID, name); e != syscall.ENOENT {
			t.Errorf("LOOKUP(root, %q) = %v; want ENOENT", name, e)
		}
	}
	for _, tc := range badNames {
		if _, e := r.lookup(rootID, tc.name); e == 0 {
			t.Errorf("LOOKUP(root, %q) succeeded", tc.name)
		}
	}
	dfh, e := r.opendir(rootID)
	if e != 0 {
		t.Fatalf("OPENDIR(root): %v", e)
	}
	if names, e := r.readdir(dfh); e != 0 || !slices.Equal(names, []string{"hello.txt"}) {
		t.Errorf("READDIR(root) = %q, %v; want only hello.txt", names, e)
	}

	// The file itself is readable and writable.
	fh, e := r.open(hello, syscall.O_RDWR)
	if e != 0 {
		t.Fatalf("OPEN(hello.txt): %v", e)
	}
	if n, e := r.write(fh, 0, []byte("HELLO")); e != 0 || n != 5 {
		t.Errorf("WRITE(hello.txt) = %d, %v", n, e)
	}
	if b, e := r.read(fh, 0, 64); e != 0 || string(b) != "HELLO, share\n" {
		t.Errorf("READ(hello.txt) = %q, %v", b, e)
	}
	r.release(fh)
	if _, fh, e := r.create(rootID, "hello.txt", syscall.O_RDWR, 0o644); e != 0 {
		t.Errorf("CREATE(existing hello.txt) = %v", e)
	} else {
		r.release(fh)
	}

	// Nothing in the root changes.
	if _, _, e := r.create(rootID, "new", syscall.O_RDWR, 0o644); e != syscall.EPERM {
		t.Errorf("CREATE(new) = %v; want EPERM", e)
	}
	if _, e := r.mkdir(rootID, "d", 0o755); e != syscall.EPERM {
		t.Errorf("MKDIR = %v; want EPERM", e)
	}
	if _, e := r.mknod(rootID, "n", syscall.S_IFREG|0o644, 0); e != syscall.EPERM {
		t.Errorf("MKNOD = %v; want EPERM", e)
	}
	if _, e := r.symlink(rootID, "/etc", "s"); e != syscall.EPERM {
		t.Errorf("SYMLINK = %v; want EPERM", e)
	}
	if _, e := r.link(hello, rootID, "h2"); e != syscall.EPERM {
		t.Errorf("LINK = %v; want EPERM", e)
	}
	for _, name := range []string{"hello.txt", "sub", "late"} {
		if e := r.unlink(rootID, name); e != syscall.EPERM {
			t.Errorf("UNLINK(%s) = %v; want EPERM", name, e)
		}
		if e := r.rename(rootID, name, rootID, "x", 0); e != syscall.EPERM {
			t.Errorf("RENAME(%s) = %v; want EPERM", name, e)
		}
	}
	if e := r.rename(rootID, "late", rootID, "hello.txt", 0); e != syscall.EPERM {
		t.Errorf("RENAME(late over hello.txt) = %v; want EPERM", e)
	}
	if e := r.rmdir(rootID, "sub"); e != syscall.EPERM {
		t.Errorf("RMDIR(sub) = %v; want EPERM", e)
	}
	if _, e := r.setattr(fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: fuse.InHeader{NodeId: rootID},
		Valid: fuse.FATTR_MODE, Mode: 0o777}}); e != syscall.EPERM {
		t.Errorf("SETATTR(root) = %v; want EPERM", e)
	}
	if e := r.setxattr(rootID, "user.x", []byte("1")); e != syscall.EPERM {
		t.Errorf("SETXATTR(root) = %v; want EPERM", e)
	}
	if e := r.removexattr(rootID, "user.x"); e != syscall.EPERM {
		t.Errorf("REMOVEXATTR(root) = %v; want EPERM", e)
	}
	for _, name := range []string{"sub", "evil", "evilf", "late", "hello.txt"} {
		if _, err := os.Lstat(filepath.Join(r.share, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	ents, _ := os.ReadDir(r.share)
	if len(ents) != 5 {
		t.Errorf("share holds %d entries; want 5", len(ents))
	}
}

func TestOnlyNameNew(t *testing.T) {
	r := newRig(t, Options{})
	for _, name := range []string{"sub", "evilf", "evil", "missing", "../outside/secret", "..", ""} {
		if name == "" {
			continue // the zero value: the whole directory
		}
		if f, err := New(r.share, Options{OnlyName: name}); err == nil {
			f.Close()
			t.Errorf("New(OnlyName %q) succeeded; want an error", name)
		}
	}
	f, err := New(r.share, Options{OnlyName: "hello.txt", QuotaBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.quota.used != int64(len("hello, share\n")) {
		t.Errorf("one-file share measured %d bytes; want the file's", f.quota.used)
	}
}
