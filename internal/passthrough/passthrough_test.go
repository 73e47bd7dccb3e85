//go:build linux

package passthrough

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// badNames are names no name-taking operation may accept; the second
// field is LOOKUP's answer.
var badNames = []struct {
	name   string
	lookup syscall.Errno
}{
	{"", syscall.EINVAL},
	{".", syscall.ENOENT},
	{"..", syscall.ENOENT},
	{"../outside", syscall.EINVAL},
	{"../outside/secret", syscall.EINVAL},
	{"../pwned", syscall.EINVAL},
	{"sub/../../outside/secret", syscall.EINVAL},
	{"/etc/hostname", syscall.EINVAL},
	{"sub/inner", syscall.EINVAL},
	{"evil/secret", syscall.EINVAL},
	{strings.Repeat("a", 256), syscall.EINVAL},
}

func TestNew(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(file, Options{}); err == nil {
		t.Errorf("New(file) succeeded; want an error")
	}
	if _, err := New(filepath.Join(dir, "missing"), Options{}); err == nil {
		t.Errorf("New(missing) succeeded; want an error")
	}
}

func TestLookupEscapes(t *testing.T) {
	r := newRig(t, Options{})
	for _, tc := range badNames {
		if _, e := r.lookup(rootID, tc.name); e != tc.lookup {
			t.Errorf("LOOKUP(root, %q) = %v; want %v", tc.name, e, tc.lookup)
		}
	}
	sub := r.mustLookup("sub")
	if _, e := r.lookup(sub, ".."); e != syscall.ENOENT {
		t.Errorf("LOOKUP(sub, ..) = %v; want ENOENT", e)
	}
	// go-fuse cuts a name at its first NUL: what remains is looked up.
	if _, e := r.lookup(rootID, "nothere\x00/../../outside/secret"); e != syscall.ENOENT {
		t.Errorf("LOOKUP(name with NUL) = %v; want ENOENT", e)
	}
	if n, e := r.lookup(rootID, "hello.txt\x00/../../outside/secret"); e != 0 {
		t.Errorf("LOOKUP(hello.txt NUL ...) = %v; want the share's hello.txt", e)
	} else if a, _ := r.getattr(n); a.Size != uint64(len("hello, share\n")) {
		t.Errorf("LOOKUP(hello.txt NUL ...) found size %d; want hello.txt", a.Size)
	}
}

func TestNameOpsEscapes(t *testing.T) {
	r := newRig(t, Options{})
	hello := r.mustLookup("hello.txt")
	sub := r.mustLookup("sub")
	for _, tc := range badNames {
		n := tc.name
		ops := map[string]func() syscall.Errno{
			"CREATE": func() syscall.Errno { _, _, e := r.create(rootID, n, syscall.O_RDWR, 0o644); return e },
			"MKDIR":  func() syscall.Errno { _, e := r.mkdir(rootID, n, 0o755); return e },
			"MKNOD":  func() syscall.Errno { _, e := r.mknod(rootID, n, syscall.S_IFIFO|0o644, 0); return e },
			"SYMLINK": func() syscall.Errno {
				_, e := r.symlink(rootID, "/etc/hostname", n)
				return e
			},
			"LINK":       func() syscall.Errno { _, e := r.link(hello, rootID, n); return e },
			"UNLINK":     func() syscall.Errno { return r.unlink(rootID, n) },
			"RMDIR":      func() syscall.Errno { return r.rmdir(sub, n) },
			"RENAME old": func() syscall.Errno { return r.rename(rootID, n, rootID, "x", 0) },
			"RENAME new": func() syscall.Errno { return r.rename(rootID, "hello.txt", rootID, n, 0) },
		}
		for op, f := range ops {
			if e := f(); e != syscall.EINVAL {
				t.Errorf("%s %q = %v; want EINVAL", op, n, e)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(r.share, "hello.txt")); err != nil {
		t.Errorf("hello.txt after the refused renames: %v", err)
	}
	if _, err := os.Stat(filepath.Join(r.share, "x")); err == nil {
		t.Errorf("a refused RENAME made x")
	}
}

func TestSymlinkOutOfShare(t *testing.T) {
	r := newRig(t, Options{})
	evil, a, e := r.entry(r.do(&struct{ fuse.InHeader }{r.hdr(opLookup, rootID)}, cstr("evil")))
	if e != 0 || a.Mode&syscall.S_IFMT != syscall.S_IFLNK {
		t.Fatalf("LOOKUP evil = mode %o, %v; want a symlink node", a.Mode, e)
	}
	evilf := r.mustLookup("evilf")
	if target, e := r.readlink(evil); e != 0 || target != r.outside {
		t.Errorf("READLINK evil = %q, %v; want %q", target, e, r.outside)
	}
	for _, name := range []string{"secret", "d", "victim.txt"} {
		if _, e := r.lookup(evil, name); e != syscall.ENOTDIR {
			t.Errorf("LOOKUP(evil, %s) = %v; want ENOTDIR", name, e)
		}
	}
	for _, node := range []uint64{evil, evilf} {
		if _, e := r.open(node, syscall.O_RDONLY); e != syscall.ELOOP {
			t.Errorf("OPEN symlink node = %v; want ELOOP", e)
		}
		if _, e := r.open(node, syscall.O_RDWR|syscall.O_TRUNC); e != syscall.ELOOP {
			t.Errorf("OPEN(O_TRUNC) symlink node = %v; want ELOOP", e)
		}
	}
	if _, e := r.opendir(evil); e != syscall.ENOTDIR {
		t.Errorf("OPENDIR evil = %v; want ENOTDIR", e)
	}
	if _, _, e := r.create(evil, "pwned", syscall.O_RDWR, 0o644); e != syscall.ENOTDIR {
		t.Errorf("CREATE(evil, pwned) = %v; want ENOTDIR", e)
	}
	if _, e := r.mkdir(evil, "pwned", 0o755); e != syscall.ENOTDIR {
		t.Errorf("MKDIR(evil, pwned) = %v; want ENOTDIR", e)
	}
	if e := r.unlink(evil, "victim.txt"); e != syscall.ENOTDIR {
		t.Errorf("UNLINK(evil, victim.txt) = %v; want ENOTDIR", e)
	}
	if e := r.rename(evil, "victim.txt", rootID, "stolen", 0); e != syscall.ENOTDIR {
		t.Errorf("RENAME(evil/victim.txt) = %v; want ENOTDIR", e)
	}
	// CREATE over the symlink name must not follow it (O_NOFOLLOW).
	if _, _, e := r.create(rootID, "evilf", syscall.O_RDWR|syscall.O_TRUNC, 0o644); e == 0 {
		t.Errorf("CREATE(root, evilf) over a symlink to outside succeeded")
	}
	if _, e := r.setattr(fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: fuse.InHeader{NodeId: evilf},
		Valid: fuse.FATTR_SIZE}}); e != syscall.EINVAL {
		t.Errorf("SETATTR size on a symlink node = %v; want EINVAL", e)
	}
	if e := r.setxattr(evilf, "user.x", []byte("1")); e != syscall.EPERM {
		t.Errorf("SETXATTR on a symlink node = %v; want EPERM", e)
	}
	// A guest-made symlink to outside is just as inert.
	ln, e := r.symlink(rootID, "../outside/secret", "mine")
	if e != 0 {
		t.Fatalf("SYMLINK mine: %v", e)
	}
	if _, e := r.open(ln, syscall.O_RDONLY); e != syscall.ELOOP {
		t.Errorf("OPEN guest symlink = %v; want ELOOP", e)
	}
}

// TestSymlinkSwapRace flips share/d between a directory and a symlink to
// the outside tree while looking up d/secret through it.
func TestSymlinkSwapRace(t *testing.T) {
	r := newRig(t, Options{})
	d, alt := filepath.Join(r.share, "d"), filepath.Join(r.share, "d.alt")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "secret"), []byte("inside"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(r.outside, alt); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var swaps atomic.Int64
	wg.Go(func() {
		for !stop.Load() {
			if err := unix.Renameat2(unix.AT_FDCWD, d, unix.AT_FDCWD, alt, unix.RENAME_EXCHANGE); err != nil {
				t.Error(err)
				return
			}
			swaps.Add(1)
		}
	})
	var inside int
	for range 3000 {
		dn, e := r.lookup(rootID, "d")
		if e != 0 {
			continue
		}
		if sn, e := r.lookup(dn, "secret"); e == 0 {
			if fh, e := r.open(sn, syscall.O_RDONLY); e == 0 {
				b, _ := r.read(fh, 0, 64)
				if string(b) == sentinel {
					t.Fatalf("read the outside secret through a swapped directory")
				}
				if string(b) == "inside" {
					inside++
				}
				r.release(fh)
			}
			r.forget(sn, 1)
		}
		r.forget(dn, 1)
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d swaps, %d reads of the inside file", swaps.Load(), inside)
	if inside == 0 {
		t.Errorf("never read the inside file; the race did not run")
	}
}

func TestLinkOut(t *testing.T) {
	r := newRig(t, Options{})
	hello := r.mustLookup("hello.txt")
	sub := r.mustLookup("sub")
	evil := r.mustLookup("evil")
	if _, e := r.link(hello, evil, "hello"); e != syscall.ENOTDIR {
		t.Errorf("LINK into a symlink to outside = %v; want ENOTDIR", e)
	}
	if _, e := r.link(sub, rootID, "subl"); e != syscall.EPERM {
		t.Errorf("LINK of a directory = %v; want EPERM", e)
	}
	if _, e := r.link(rootID, rootID, "rootl"); e != syscall.EPERM {
		t.Errorf("LINK of the root = %v; want EPERM", e)
	}
	if _, e := r.link(1<<40, rootID, "ghost"); e != syscall.ESTALE {
		t.Errorf("LINK of an unknown node = %v; want ESTALE", e)
	}
	if _, e := r.link(hello, 1<<40, "ghost"); e != syscall.ESTALE {
		t.Errorf("LINK into an unknown node = %v; want ESTALE", e)
	}
	// The host replaces hello.txt by a symlink to the outside secret
	// after the guest looked it up: linking the node must not make a
	// link to whatever the name now is.
	f := r.mustLookup("sub", "inner")
	inner := filepath.Join(r.share, "sub", "inner")
	if err := os.Rename(inner, filepath.Join(r.share, "sub", "moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(r.outside, "secret"), inner); err != nil {
		t.Fatal(err)
	}
	if _, e := r.link(f, rootID, "stolen"); e != syscall.ESTALE {
		t.Errorf("LINK of a node whose name was replaced = %v; want ESTALE", e)
	}
	if _, err := os.Lstat(filepath.Join(r.share, "stolen")); err == nil {
		t.Errorf("the refused LINK left share/stolen")
	}
	// A good link works and is the same node.
	n, e := r.link(hello, sub, "hello2")
	if e != 0 || n != hello {
		t.Errorf("LINK hello.txt sub/hello2 = node %d, %v; want node %d", n, e, hello)
	}
}

func TestRenameForeignParent(t *testing.T) {
	r := newRig(t, Options{})
	hello := r.mustLookup("hello.txt")
	evil := r.mustLookup("evil")
	for _, tc := range []struct {
		newdir uint64
		want   syscall.Errno
	}{
		{1 << 40, syscall.ESTALE},
		{0, syscall.ESTALE},
		{hello, syscall.ENOTDIR},
		{evil, syscall.ENOTDIR},
	} {
		if e := r.rename(rootID, "hello.txt", tc.newdir, "x", 0); e != tc.want {
			t.Errorf("RENAME into node %d = %v; want %v", tc.newdir, e, tc.want)
		}
		if e := r.rename(tc.newdir, "secret", rootID, "x", 0); e != tc.want {
			t.Errorf("RENAME from node %d = %v; want %v", tc.newdir, e, tc.want)
		}
	}
	if e := r.rename(rootID, "hello.txt", rootID, "x", 1<<2); e != syscall.EINVAL {
		t.Errorf("RENAME_WHITEOUT = %v; want EINVAL", e)
	}
}

func TestRenameTracksNames(t *testing.T) {
	r := newRig(t, Options{})
	sub := r.mustLookup("sub")
	hello := r.mustLookup("hello.txt")
	if e := r.rename(rootID, "hello.txt", sub, "renamed", 0); e != 0 {
		t.Fatalf("RENAME: %v", e)
	}
	fh, e := r.open(hello, syscall.O_RDONLY)
	if e != 0 {
		t.Fatalf("OPEN after RENAME: %v", e)
	}
	if b, _ := r.read(fh, 0, 100); string(b) != "hello, share\n" {
		t.Errorf("READ after RENAME = %q", b)
	}
	r.release(fh)
	if e := r.rename(sub, "renamed", rootID, "sub", unix.RENAME_NOREPLACE); e != syscall.EEXIST {
		t.Errorf("RENAME_NOREPLACE onto sub = %v; want EEXIST", e)
	}
	inner := r.mustLookup("sub", "inner")
	if e := r.rename(sub, "renamed", sub, "inner", unix.RENAME_EXCHANGE); e != 0 {
		t.Fatalf("RENAME_EXCHANGE: %v", e)
	}
	for node, want := range map[uint64]string{hello: "hello, share\n", inner: "inner\n"} {
		fh, e := r.open(node, syscall.O_RDONLY)
		if e != 0 {
			t.Fatalf("OPEN after RENAME_EXCHANGE: %v", e)
		}
		if b, _ := r.read(fh, 0, 100); string(b) != want {
			t.Errorf("READ after RENAME_EXCHANGE = %q; want %q", b, want)
		}
		r.release(fh)
	}
}

func TestUnknownIDs(t *testing.T) {
	r := newRig(t, Options{})
	// (^uint64(0) is go-fuse's poll hack node, which it answers itself.)
	for _, node := range []uint64{0, 2, 1 << 40, 1<<64 - 2} {
		if _, e := r.getattr(node); e != syscall.ESTALE {
			t.Errorf("GETATTR node %d = %v; want ESTALE", node, e)
		}
		if _, e := r.lookup(node, "hello.txt"); e != syscall.ESTALE {
			t.Errorf("LOOKUP in node %d = %v; want ESTALE", node, e)
		}
		if _, e := r.open(node, syscall.O_RDONLY); e != syscall.ESTALE {
			t.Errorf("OPEN node %d = %v; want ESTALE", node, e)
		}
	}
	fh := uint64(1 << 33)
	if _, e := r.read(fh, 0, 10); e != syscall.EBADF {
		t.Errorf("READ unknown fh = %v; want EBADF", e)
	}
	if _, e := r.write(fh, 0, []byte("x")); e != syscall.EBADF {
		t.Errorf("WRITE unknown fh = %v; want EBADF", e)
	}
	if _, e := r.do(&fuse.FlushIn{InHeader: r.hdr(opFlush, rootID), Fh: fh}); e != syscall.EBADF {
		t.Errorf("FLUSH unknown fh = %v; want EBADF", e)
	}
	if _, e := r.do(&fuse.FsyncIn{InHeader: r.hdr(opFsync, rootID), Fh: fh}); e != syscall.EBADF {
		t.Errorf("FSYNC unknown fh = %v; want EBADF", e)
	}
	if _, e := r.do(&fuse.FallocateIn{InHeader: r.hdr(opFallocate, rootID), Fh: fh, Length: 1}); e != syscall.EBADF {
		t.Errorf("FALLOCATE unknown fh = %v; want EBADF", e)
	}
	if _, e := r.do(&fuse.LseekIn{InHeader: r.hdr(opLseek, rootID), Fh: fh, Whence: unix.SEEK_DATA}); e != syscall.EBADF {
		t.Errorf("LSEEK unknown fh = %v; want EBADF", e)
	}
	if _, e := r.do(&fuse.ReadIn{InHeader: r.hdr(opReaddir, rootID), Fh: fh, Size: 100}); e != syscall.EBADF {
		t.Errorf("READDIR unknown fh = %v; want EBADF", e)
	}
	r.release(fh)
	r.do(&fuse.ReleaseIn{InHeader: r.hdr(opReleasedir, rootID), Fh: fh})
	// A file handle is not a directory handle and the reverse.
	hello := r.mustLookup("hello.txt")
	ffh, _ := r.open(hello, syscall.O_RDONLY)
	dfh, _ := r.opendir(rootID)
	if _, e := r.do(&fuse.ReadIn{InHeader: r.hdr(opReaddir, rootID), Fh: ffh, Size: 100}); e != syscall.EBADF {
		t.Errorf("READDIR of a file handle = %v; want EBADF", e)
	}
	if _, e := r.read(dfh, 0, 10); e != syscall.EBADF {
		t.Errorf("READ of a directory handle = %v; want EBADF", e)
	}
	r.release(ffh)
	if _, e := r.read(ffh, 0, 10); e != syscall.EBADF {
		t.Errorf("READ after RELEASE = %v; want EBADF", e)
	}
}

func TestForget(t *testing.T) {
	r := newRig(t, Options{})
	n := r.mustLookup("hello.txt")
	if again := r.mustLookup("hello.txt"); again != n {
		t.Errorf("second LOOKUP = node %d; want %d", again, n)
	}
	r.forget(n, 1)
	if _, e := r.getattr(n); e != 0 {
		t.Errorf("GETATTR after forgetting 1 of 2 lookups = %v", e)
	}
	r.forget(n, 1000) // underflow
	r.forget(n, 1)
	r.forget(rootID, 1000)
	r.forget(1<<40, 1)
	var batch bytes.Buffer
	binary.Write(&batch, binary.LittleEndian, []uint64{rootID, 5, n, 7, 1 << 40, 1})
	r.do(&struct {
		fuse.InHeader
		Count, Dummy uint32
	}{r.hdr(opBatchForget, 0), 3, 0}, batch.Bytes())
	if _, e := r.getattr(n); e != syscall.ESTALE {
		t.Errorf("GETATTR of a forgotten node = %v; want ESTALE", e)
	}
	if _, e := r.getattr(rootID); e != 0 {
		t.Errorf("GETATTR root after forgetting it = %v; want OK", e)
	}
	if m := r.mustLookup("hello.txt"); m == n {
		t.Errorf("node ID %d reused after FORGET", m)
	}
	r.fs.mu.Lock()
	got := len(r.fs.inodes)
	r.fs.mu.Unlock()
	if got != 2 {
		t.Errorf("%d inodes after forgetting; want 2 (root and hello.txt)", got)
	}
}

func TestHandleLimit(t *testing.T) {
	r := newRig(t, Options{MaxHandles: 4})
	hello := r.mustLookup("hello.txt")
	var fhs []uint64
	for range 4 {
		fh, e := r.open(hello, syscall.O_RDONLY)
		if e != 0 {
			t.Fatalf("OPEN: %v", e)
		}
		fhs = append(fhs, fh)
	}
	if _, e := r.open(hello, syscall.O_RDONLY); e != syscall.EMFILE {
		t.Errorf("OPEN beyond MaxHandles = %v; want EMFILE", e)
	}
	if _, e := r.opendir(rootID); e != syscall.EMFILE {
		t.Errorf("OPENDIR beyond MaxHandles = %v; want EMFILE", e)
	}
	if _, _, e := r.create(rootID, "new", syscall.O_RDWR, 0o644); e != syscall.EMFILE {
		t.Errorf("CREATE beyond MaxHandles = %v; want EMFILE", e)
	}
	if _, err := os.Lstat(filepath.Join(r.share, "new")); err == nil {
		t.Errorf("refused CREATE left the file")
	}
	r.release(fhs[0])
	if _, e := r.open(hello, syscall.O_RDONLY); e != 0 {
		t.Errorf("OPEN after RELEASE = %v", e)
	}
}

func TestInodeLimit(t *testing.T) {
	r := newRig(t, Options{MaxInodes: 3})
	a := r.mustLookup("hello.txt")
	r.mustLookup("sub")
	if _, e := r.lookup(rootID, "evil"); e != syscall.ENFILE {
		t.Errorf("LOOKUP beyond MaxInodes = %v; want ENFILE", e)
	}
	if _, e := r.mkdir(rootID, "newdir", 0o755); e != syscall.ENFILE {
		t.Errorf("MKDIR beyond MaxInodes = %v; want ENFILE", e)
	}
	if _, err := os.Lstat(filepath.Join(r.share, "newdir")); err == nil {
		t.Errorf("refused MKDIR left the directory")
	}
	if again := r.mustLookup("hello.txt"); again != a {
		t.Errorf("LOOKUP of a known object at the limit = node %d; want %d", again, a)
	}
	r.forget(a, 2)
	if _, e := r.lookup(rootID, "evil"); e != 0 {
		t.Errorf("LOOKUP after FORGET = %v", e)
	}
}

func TestReadOnly(t *testing.T) {
	r := newRig(t, Options{ReadOnly: true})
	before := hashTree(t, r.share, false)
	hello := r.mustLookup("hello.txt")
	sub := r.mustLookup("sub")
	fh, e := r.open(hello, syscall.O_RDONLY)
	if e != 0 {
		t.Fatalf("OPEN read-only: %v", e)
	}
	if b, _ := r.read(fh, 0, 100); string(b) != "hello, share\n" {
		t.Errorf("READ = %q", b)
	}
	ops := map[string]func() syscall.Errno{
		"CREATE":     func() syscall.Errno { _, _, e := r.create(rootID, "new", syscall.O_RDWR, 0o644); return e },
		"MKNOD":      func() syscall.Errno { _, e := r.mknod(rootID, "new", syscall.S_IFREG|0o644, 0); return e },
		"MKDIR":      func() syscall.Errno { _, e := r.mkdir(rootID, "new", 0o755); return e },
		"SYMLINK":    func() syscall.Errno { _, e := r.symlink(rootID, "x", "new"); return e },
		"LINK":       func() syscall.Errno { _, e := r.link(hello, rootID, "new"); return e },
		"UNLINK":     func() syscall.Errno { return r.unlink(rootID, "hello.txt") },
		"RMDIR":      func() syscall.Errno { return r.rmdir(sub, "inner") },
		"RENAME":     func() syscall.Errno { return r.rename(rootID, "hello.txt", rootID, "new", 0) },
		"OPEN write": func() syscall.Errno { _, e := r.open(hello, syscall.O_WRONLY); return e },
		"OPEN rdwr":  func() syscall.Errno { _, e := r.open(hello, syscall.O_RDWR); return e },
		"OPEN trunc": func() syscall.Errno { _, e := r.open(hello, syscall.O_RDONLY|syscall.O_TRUNC); return e },
		"WRITE":      func() syscall.Errno { _, e := r.write(fh, 0, []byte("x")); return e },
		"SETATTR size": func() syscall.Errno {
			_, e := r.setattr(fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: fuse.InHeader{NodeId: hello}, Valid: fuse.FATTR_SIZE}})
			return e
		},
		"SETATTR mode": func() syscall.Errno {
			_, e := r.setattr(fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: fuse.InHeader{NodeId: hello}, Valid: fuse.FATTR_MODE, Mode: 0o777}})
			return e
		},
		"SETATTR mtime": func() syscall.Errno {
			_, e := r.setattr(fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: fuse.InHeader{NodeId: hello}, Valid: fuse.FATTR_MTIME_NOW}})
			return e
		},
		"SETXATTR":    func() syscall.Errno { return r.setxattr(hello, "user.x", []byte("1")) },
		"REMOVEXATTR": func() syscall.Errno { return r.removexattr(hello, "user.x") },
		"FALLOCATE": func() syscall.Errno {
			_, e := r.do(&fuse.FallocateIn{InHeader: r.hdr(opFallocate, hello), Fh: fh, Length: 4096})
			return e
		},
		"COPY_FILE_RANGE": func() syscall.Errno {
			_, e := r.do(&fuse.CopyFileRangeIn{InHeader: r.hdr(opCopyFileRange, hello), FhIn: fh, FhOut: fh, NodeIdOut: hello, Len: 4, OffOut: 100})
			return e
		},
		"ACCESS W_OK": func() syscall.Errno {
			_, e := r.do(&fuse.AccessIn{InHeader: r.hdr(opAccess, hello), Mask: unix.W_OK})
			return e
		},
	}
	for name, op := range ops {
		if e := op(); e != syscall.EROFS {
			t.Errorf("%s on a read-only share = %v; want EROFS", name, e)
		}
	}
	r.release(fh)
	if after := hashTree(t, r.share, false); after != before {
		t.Errorf("read-only share changed on the host")
	}
}

// readOverride returns the decoded ownership record of a host file.
func hostOverride(t *testing.T, path string) (override, int) {
	t.Helper()
	b := make([]byte, 64)
	n, err := unix.Getxattr(path, overrideXattr, b)
	if err != nil {
		t.Fatalf("getxattr %s: %v", path, err)
	}
	return decodeOverride(b[:n]), n
}

func TestOverrideChown(t *testing.T) {
	r := newRig(t, Options{})
	hello := r.mustLookup("hello.txt")
	a, e := r.setattr(fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: fuse.InHeader{NodeId: hello},
		Valid: fuse.FATTR_UID | fuse.FATTR_GID, Owner: fuse.Owner{Uid: 1000, Gid: 1000}}})
	if e != 0 || a.Uid != 1000 || a.Gid != 1000 {
		t.Fatalf("SETATTR chown = %d:%d, %v; want 1000:1000", a.Uid, a.Gid, e)
	}
	if a, _ := r.getattr(hello); a.Uid != 1000 || a.Gid != 1000 || a.Mode != syscall.S_IFREG|0o644 {
		t.Errorf("GETATTR after chown = %d:%d mode %o; want 1000:1000 mode 100644", a.Uid, a.Gid, a.Mode)
	}
	path := filepath.Join(r.share, "hello.txt")
	o, n := hostOverride(t, path)
	if n != overrideSize || o != (override{ok: true, uid: 1000, gid: 1000, mode: syscall.S_IFREG | 0o644}) {
		t.Errorf("host record = %d bytes %+v; want 20 bytes 1000:1000 mode 100644", n, o)
	}
	var raw [overrideSize]byte
	unix.Getxattr(path, overrideXattr, raw[:])
	if raw[0] != 1 || raw[1]|raw[2]|raw[3] != 0 || binary.NativeEndian.Uint32(raw[4:]) != 1000 {
		t.Errorf("host record bytes %x; want version 1, padding, uid 1000", raw)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil || st.Uid != uint32(os.Getuid()) || st.Mode&0o777 != 0o644 {
		t.Errorf("host owner %d mode %o, %v; want unchanged %d 644", st.Uid, st.Mode, err, os.Getuid())
	}
	// chmod goes to the record too; the host keeps owner rw.
	a, e = r.setattr(fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: fuse.InHeader{NodeId: hello},
		Valid: fuse.FATTR_MODE, Mode: 0o4000}})
	if e != 0 || a.Mode != syscall.S_IFREG|0o4000 || a.Uid != 1000 {
		t.Errorf("SETATTR chmod 4000 = mode %o uid %d, %v", a.Mode, a.Uid, e)
	}
	syscall.Stat(path, &st)
	if st.Mode&0o7777 != 0o644 {
		t.Errorf("host mode after chmod %o; want 644", st.Mode&0o7777)
	}
	// A fresh share reads the record back.
	f2, err := New(r.share, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	var out fuse.EntryOut
	if st := f2.Lookup(nil, &fuse.InHeader{NodeId: rootID}, "hello.txt", &out); !st.Ok() || out.Uid != 1000 || out.Mode != syscall.S_IFREG|0o4000 {
		t.Errorf("LOOKUP in a new FS = %d mode %o, %v; want uid 1000 mode 104000", out.Uid, out.Mode, st)
	}
}

func TestCreateOwner(t *testing.T) {
	r := newRig(t, Options{DefaultUID: 7, DefaultGID: 8})
	if a, _ := r.getattr(r.mustLookup("hello.txt")); a.Uid != 7 || a.Gid != 8 {
		t.Errorf("file without a record owned by %d:%d; want the default 7:8", a.Uid, a.Gid)
	}
	r.uid, r.gid = 1000, 1000
	n, fh, e := r.create(rootID, "mine", syscall.O_RDWR, 0o600)
	if e != 0 {
		t.Fatalf("CREATE: %v", e)
	}
	r.release(fh)
	if a, _ := r.getattr(n); a.Uid != 1000 || a.Gid != 1000 || a.Mode != syscall.S_IFREG|0o600 {
		t.Errorf("GETATTR = %d:%d mode %o; want 1000:1000 100600", a.Uid, a.Gid, a.Mode)
	}
	if o, _ := hostOverride(t, filepath.Join(r.share, "mine")); o != (override{ok: true, uid: 1000, gid: 1000, mode: syscall.S_IFREG | 0o600}) {
		t.Errorf("host record %+v; want 1000:1000 mode 100600", o)
	}
	d, e := r.mkdir(rootID, "dir", 0o2750)
	if e != 0 {
		t.Fatalf("MKDIR: %v", e)
	}
	if o, _ := hostOverride(t, filepath.Join(r.share, "dir")); o != (override{ok: true, uid: 1000, gid: 1000, mode: syscall.S_IFDIR | 0o2750}) {
		t.Errorf("host record of dir %+v", o)
	}
	r.uid, r.gid = 2000, 2000
	if _, e := r.mkdir(d, "child", 0o755); e != 0 {
		t.Fatalf("MKDIR child: %v", e)
	}
	if o, _ := hostOverride(t, filepath.Join(r.share, "dir", "child")); o.uid != 2000 || o.gid != 1000 || o.mode != syscall.S_IFDIR|0o2755 {
		t.Errorf("child of a set-group-ID dir: %+v; want uid 2000 gid 1000 mode 42755", o)
	}
}

func TestMknodDevice(t *testing.T) {
	r := newRig(t, Options{})
	r.uid = 0
	rdev := uint32(unix.Mkdev(1, 3))
	n, e := r.mknod(rootID, "null", syscall.S_IFCHR|0o666, rdev)
	if e != 0 {
		t.Fatalf("MKNOD chr: %v", e)
	}
	if a, _ := r.getattr(n); a.Mode != syscall.S_IFCHR|0o666 || a.Rdev != rdev {
		t.Errorf("GETATTR = mode %o rdev %x; want 20666 %x", a.Mode, a.Rdev, rdev)
	}
	fi, err := os.Lstat(filepath.Join(r.share, "null"))
	if err != nil || !fi.Mode().IsRegular() {
		t.Errorf("host object of a device node: %v, %v; want a regular file", fi.Mode(), err)
	}
	if _, e := r.mknod(rootID, "fifo", syscall.S_IFIFO|0o644, 0); e != 0 {
		t.Errorf("MKNOD fifo: %v", e)
	}
	if _, e := r.mknod(rootID, "dir", syscall.S_IFDIR|0o755, 0); e != syscall.EINVAL {
		t.Errorf("MKNOD dir = %v; want EINVAL", e)
	}
}

func TestXattrs(t *testing.T) {
	r := newRig(t, Options{})
	hello := r.mustLookup("hello.txt")
	r.setattr(fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: fuse.InHeader{NodeId: hello},
		Valid: fuse.FATTR_UID, Owner: fuse.Owner{Uid: 5}}})
	forged := override{uid: 0, gid: 0, mode: syscall.S_IFREG | 0o4755}.encode()
	forged[0] = 1
	for _, name := range []string{overrideXattr, "user.containers.other"} {
		if e := r.setxattr(hello, name, forged); e != syscall.EPERM {
			t.Errorf("SETXATTR %s = %v; want EPERM", name, e)
		}
		if e := r.removexattr(hello, name); e != syscall.EPERM {
			t.Errorf("REMOVEXATTR %s = %v; want EPERM", name, e)
		}
		if _, e := r.getxattr(hello, name, 100); e != syscall.ENODATA {
			t.Errorf("GETXATTR %s = %v; want ENODATA", name, e)
		}
	}
	if e := r.setxattr(hello, "trusted.x", []byte("1")); e != syscall.EOPNOTSUPP {
		t.Errorf("SETXATTR trusted.x = %v; want EOPNOTSUPP", e)
	}
	if e := r.setxattr(hello, "user.big", make([]byte, xattrSizeMax+1)); e != syscall.E2BIG {
		t.Errorf("SETXATTR of 64 KiB + 1 = %v; want E2BIG", e)
	}
	if e := r.setxattr(hello, "user."+strings.Repeat("n", 300), nil); e != syscall.ERANGE {
		t.Errorf("SETXATTR with a long name = %v; want ERANGE", e)
	}
	if e := r.setxattr(hello, "user.note", []byte("hi")); e != 0 {
		t.Fatalf("SETXATTR user.note: %v", e)
	}
	if b, e := r.getxattr(hello, "user.note", 100); e != 0 || string(b) != "hi" {
		t.Errorf("GETXATTR user.note = %q, %v", b, e)
	}
	if b, e := r.getxattr(hello, "user.note", 0); e != 0 || decode[fuse.GetXAttrOut](t, b).Size != 2 {
		t.Errorf("GETXATTR size of user.note = %x, %v; want 2", b, e)
	}
	list, e := r.listxattr(hello, 1000)
	if e != 0 || string(list) != "user.note\x00" {
		t.Errorf("LISTXATTR = %q, %v; want only user.note", list, e)
	}
	if b, e := r.listxattr(hello, 0); e != 0 || decode[fuse.GetXAttrOut](t, b).Size != uint32(len("user.note\x00")) {
		t.Errorf("LISTXATTR size = %x, %v", b, e)
	}
	if e := r.removexattr(hello, "user.note"); e != 0 {
		t.Errorf("REMOVEXATTR user.note: %v", e)
	}
	if a, _ := r.getattr(hello); a.Uid != 5 {
		t.Errorf("owner after xattr calls %d; want 5", a.Uid)
	}
}

func TestReadWriteReaddir(t *testing.T) {
	r := newRig(t, Options{})
	n, fh, e := r.create(rootID, "data", syscall.O_RDWR, 0o644)
	if e != 0 {
		t.Fatalf("CREATE: %v", e)
	}
	msg := bytes.Repeat([]byte("0123456789"), 1000)
	if w, e := r.write(fh, 10, msg); e != 0 || int(w) != len(msg) {
		t.Fatalf("WRITE = %d, %v", w, e)
	}
	if b, e := r.read(fh, 10, uint32(len(msg))); e != 0 || !bytes.Equal(b, msg) {
		t.Errorf("READ = %d bytes, %v; want what was written", len(b), e)
	}
	if b, e := r.read(fh, 1<<63, 10); e != syscall.EINVAL {
		t.Errorf("READ at 2^63 = %d bytes, %v; want EINVAL", len(b), e)
	}
	a, e := r.setattr(fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: fuse.InHeader{NodeId: n},
		Valid: fuse.FATTR_SIZE | fuse.FATTR_FH, Fh: fh, Size: 5}})
	if e != 0 || a.Size != 5 {
		t.Errorf("SETATTR size 5 = %d, %v", a.Size, e)
	}
	r.release(fh)
	a, e = r.setattr(fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: fuse.InHeader{NodeId: n},
		Valid: fuse.FATTR_SIZE | fuse.FATTR_MTIME, Size: 3, Mtime: 1234567}})
	if e != 0 || a.Size != 3 || a.Mtime != 1234567 {
		t.Errorf("SETATTR size 3 mtime = %d %d, %v", a.Size, a.Mtime, e)
	}
	for i := range 40 {
		if _, _, e := r.create(rootID, "f"+strings.Repeat("x", i), syscall.O_RDONLY, 0o644); e != 0 {
			t.Fatal(e)
		}
	}
	dfh, e := r.opendir(rootID)
	if e != 0 {
		t.Fatal(e)
	}
	names, e := r.readdir(dfh)
	// ., .., evil, evilf, hello.txt, sub, data and the 40 new files.
	if e != 0 || len(names) != 47 || !strings.Contains(","+strings.Join(names, ",")+",", ",data,") {
		t.Errorf("READDIR = %d names %q, %v; want 47 with data", len(names), names, e)
	}
	var sf fuse.StatfsOut
	if b, e := r.do(&struct{ fuse.InHeader }{r.hdr(opStatfs, rootID)}); e != 0 {
		t.Errorf("STATFS: %v", e)
	} else if sf = decode[fuse.StatfsOut](t, b); sf.Bsize == 0 || sf.NameLen != 255 {
		t.Errorf("STATFS = %+v", sf)
	}
}

func TestCloseReleasesFDs(t *testing.T) {
	count := func() int {
		ents, _ := os.ReadDir("/proc/self/fd")
		return len(ents)
	}
	before := count()
	f, err := New(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out fuse.CreateOut
	for i := range 10 {
		if st := f.Create(nil, &fuse.CreateIn{InHeader: fuse.InHeader{NodeId: rootID}, Flags: syscall.O_RDWR, Mode: 0o644},
			"f"+string(rune('a'+i)), &out); !st.Ok() {
			t.Fatal(st)
		}
	}
	f.Close()
	if after := count(); after != before {
		t.Errorf("%d fds open after Close; want %d", after, before)
	}
}
