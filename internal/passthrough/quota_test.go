//go:build linux

package passthrough

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// rigUsed is what the rig's share holds at start: hello.txt and
// sub/inner (symlinks and directories are free).
const rigUsed = int64(len("hello, share\n") + len("inner\n"))

func (r *rig) statfs() fuse.StatfsOut {
	r.tb.Helper()
	b, e := r.do(&struct{ fuse.InHeader }{r.hdr(opStatfs, rootID)})
	if e != 0 {
		r.tb.Fatalf("STATFS: %v", e)
	}
	return decode[fuse.StatfsOut](r.tb, b)
}

func (r *rig) fallocate(fh, off, n uint64, mode uint32) syscall.Errno {
	_, e := r.do(&fuse.FallocateIn{InHeader: r.hdr(opFallocate, 0), Fh: fh, Offset: off, Length: n, Mode: mode})
	return e
}

func (r *rig) hostSize(name string) int64 {
	r.tb.Helper()
	fi, err := os.Stat(filepath.Join(r.share, name))
	if err != nil {
		r.tb.Fatal(err)
	}
	return fi.Size()
}

func (r *rig) used() int64 {
	r.fs.quota.lock()
	defer r.fs.quota.unlock()
	return r.fs.quota.used
}

func TestQuotaWrite(t *testing.T) {
	const limit = 64 << 10
	r := newRig(t, Options{QuotaBytes: limit})
	if u := r.used(); u != rigUsed {
		t.Fatalf("measured usage %d; want %d", u, rigUsed)
	}
	_, fh, e := r.create(rootID, "f", syscall.O_RDWR, 0o644)
	if e != 0 {
		t.Fatalf("CREATE: %v", e)
	}
	avail := limit - rigUsed
	half := bytes.Repeat([]byte{'x'}, int(avail/2))
	if n, e := r.write(fh, 0, half); e != 0 || n != uint32(len(half)) {
		t.Fatalf("WRITE(first half) = %d, %v; want %d", n, e, len(half))
	}
	// A write crossing the quota writes what fits.
	big := bytes.Repeat([]byte{'y'}, int(avail))
	if n, e := r.write(fh, uint64(len(half)), big); e != 0 || int64(n) != avail-int64(len(half)) {
		t.Fatalf("WRITE(crossing) = %d, %v; want %d", n, e, avail-int64(len(half)))
	}
	if s := r.hostSize("f"); s != avail {
		t.Fatalf("host size %d; want %d", s, avail)
	}
	if n, e := r.write(fh, uint64(avail), []byte{1}); e != syscall.ENOSPC {
		t.Errorf("WRITE(one byte past the quota) = %d, %v; want ENOSPC", n, e)
	}
	if n, e := r.write(fh, uint64(avail)+4096, []byte{1}); e != syscall.ENOSPC {
		t.Errorf("WRITE(past a hole) = %d, %v; want ENOSPC", n, e)
	}
	if n, e := r.write(fh, 0, []byte("overwrite")); e != 0 || n != 9 {
		t.Errorf("WRITE(overwrite inside) = %d, %v; want 9", n, e)
	}
	if s := r.hostSize("f"); s != avail {
		t.Fatalf("host size %d; want %d", s, avail)
	}
	st := r.statfs()
	if st.Frsize == 0 || int64(st.Blocks*uint64(st.Frsize)) != limit || st.Bfree != 0 || st.Bavail != 0 {
		t.Errorf("STATFS = %d blocks of %d, %d free, %d avail; want %d bytes, none free",
			st.Blocks, st.Frsize, st.Bfree, st.Bavail, limit)
	}

	// An O_APPEND handle writes at the end, whatever the offset says.
	afh, e := r.open(r.mustLookup("hello.txt"), syscall.O_WRONLY|syscall.O_APPEND)
	if e != 0 {
		t.Fatalf("OPEN(append): %v", e)
	}
	if n, e := r.write(afh, 0, []byte("z")); e != syscall.ENOSPC {
		t.Errorf("WRITE(append) = %d, %v; want ENOSPC", n, e)
	}
	r.release(afh)

	// Truncation frees space; growing by SETATTR is counted.
	node := r.mustLookup("f")
	if _, e := r.setattr(fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: fuse.InHeader{NodeId: node}, Valid: fuse.FATTR_SIZE, Size: 4096}}); e != 0 {
		t.Fatalf("SETATTR(size 4096): %v", e)
	}
	if u := r.used(); u != rigUsed+4096 {
		t.Errorf("usage after truncation %d; want %d", u, rigUsed+4096)
	}
	if _, e := r.setattr(fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: fuse.InHeader{NodeId: node}, Valid: fuse.FATTR_SIZE, Size: limit}}); e != syscall.ENOSPC {
		t.Errorf("SETATTR(size past the quota) = %v; want ENOSPC", e)
	}
	if s := r.hostSize("f"); s != 4096 {
		t.Errorf("host size %d after refused SETATTR; want 4096", s)
	}
	if st := r.statfs(); int64(st.Bfree*uint64(st.Frsize)) != (limit-rigUsed-4096)/int64(st.Frsize)*int64(st.Frsize) {
		t.Errorf("STATFS free %d blocks of %d; want %d bytes", st.Bfree, st.Frsize, limit-rigUsed-4096)
	}
	// Open with O_TRUNC frees it all.
	tfh, e := r.open(node, syscall.O_WRONLY|syscall.O_TRUNC)
	if e != 0 {
		t.Fatalf("OPEN(O_TRUNC): %v", e)
	}
	r.release(tfh)
	if u := r.used(); u != rigUsed {
		t.Errorf("usage after O_TRUNC %d; want %d", u, rigUsed)
	}

	// FALLOCATE counts; KEEP_SIZE past the end is refused, punching
	// holes is not.
	if e := r.fallocate(fh, 0, uint64(avail)+1, 0); e != syscall.ENOSPC {
		t.Errorf("FALLOCATE(past the quota) = %v; want ENOSPC", e)
	}
	if e := r.fallocate(fh, 0, uint64(avail), 0); e != 0 {
		t.Errorf("FALLOCATE(up to the quota) = %v", e)
	}
	if u := r.used(); u != limit {
		t.Errorf("usage after FALLOCATE %d; want %d", u, limit)
	}
	if e := r.fallocate(fh, 0, 4096, unix.FALLOC_FL_KEEP_SIZE|unix.FALLOC_FL_PUNCH_HOLE); e != 0 {
		t.Errorf("FALLOCATE(punch hole) = %v", e)
	}
	if _, e := r.setattr(fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: fuse.InHeader{NodeId: node}, Valid: fuse.FATTR_SIZE, Size: 0}}); e != 0 {
		t.Fatalf("SETATTR(size 0): %v", e)
	}
	if e := r.fallocate(fh, 0, uint64(avail)+1, unix.FALLOC_FL_KEEP_SIZE); e != syscall.ENOSPC {
		t.Errorf("FALLOCATE(KEEP_SIZE past the end) = %v; want ENOSPC", e)
	}
	if u := r.used(); u != rigUsed {
		t.Errorf("usage %d; want %d", u, rigUsed)
	}
	r.release(fh)
}

func TestQuotaRemove(t *testing.T) {
	const limit = 64 << 10
	r := newRig(t, Options{QuotaBytes: limit})
	fill := func(name string, n int64) uint64 {
		t.Helper()
		node, fh, e := r.create(rootID, name, syscall.O_RDWR, 0o644)
		if e != 0 {
			t.Fatalf("CREATE %s: %v", name, e)
		}
		defer r.release(fh)
		if e := r.fallocate(fh, 0, uint64(n), 0); e != 0 {
			t.Fatalf("FALLOCATE %s: %v", name, e)
		}
		return node
	}
	half := (limit - rigUsed) / 2
	a := fill("a", half)
	fill("b", half)
	if u := r.used(); u != limit-(limit-rigUsed)%2 {
		t.Fatalf("usage %d; want the quota", u)
	}

	// A hard link costs nothing, and removing one of two links frees
	// nothing.
	if _, e := r.link(a, rootID, "a2"); e != 0 {
		t.Fatalf("LINK: %v", e)
	}
	if e := r.unlink(rootID, "a"); e != 0 {
		t.Fatalf("UNLINK a: %v", e)
	}
	if u := r.used(); u != rigUsed+2*half {
		t.Errorf("usage after unlinking one of two links %d; want %d", u, rigUsed+2*half)
	}
	// The last link frees the file.
	if e := r.unlink(rootID, "a2"); e != 0 {
		t.Fatalf("UNLINK a2: %v", e)
	}
	if u := r.used(); u != rigUsed+half {
		t.Errorf("usage after unlinking the last link %d; want %d", u, rigUsed+half)
	}
	// Renaming over a file frees the file replaced.
	fill("c", half)
	if e := r.rename(rootID, "c", rootID, "b", 0); e != 0 {
		t.Fatalf("RENAME c b: %v", e)
	}
	if u := r.used(); u != rigUsed+half {
		t.Errorf("usage after renaming over a file %d; want %d", u, rigUsed+half)
	}
	// Exchanging frees nothing.
	fill("d", 100)
	if e := r.rename(rootID, "d", rootID, "b", unix.RENAME_EXCHANGE); e != 0 {
		t.Fatalf("RENAME_EXCHANGE: %v", e)
	}
	if u := r.used(); u != rigUsed+half+100 {
		t.Errorf("usage after RENAME_EXCHANGE %d; want %d", u, rigUsed+half+100)
	}
	// Re-creating an existing file with O_TRUNC frees it.
	if _, fh, e := r.create(rootID, "d", syscall.O_WRONLY|syscall.O_TRUNC, 0o644); e != 0 {
		t.Fatalf("CREATE(existing, O_TRUNC): %v", e)
	} else {
		r.release(fh)
	}
	if u := r.used(); u != rigUsed+100 {
		t.Errorf("usage after CREATE with O_TRUNC %d; want %d", u, rigUsed+100)
	}
}

func TestQuotaMeasure(t *testing.T) {
	dir := t.TempDir()
	for name, size := range map[string]int64{"a": 1000, "d/b": 200, "d/e/c": 30} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(dir, "a"), filepath.Join(dir, "d/a-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a", filepath.Join(dir, "s")); err != nil {
		t.Fatal(err)
	}
	f, err := New(dir, Options{QuotaBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.quota.used != 1230 {
		t.Errorf("measured %d bytes; want 1230 (hard links once)", f.quota.used)
	}
	if _, err := New(dir, Options{QuotaBytes: -1}); err == nil {
		t.Errorf("New with a negative quota succeeded")
	}
}

func TestNoQuotaStatfs(t *testing.T) {
	r := newRig(t, Options{})
	var s unix.Statfs_t
	if err := unix.Statfs(r.share, &s); err != nil {
		t.Fatal(err)
	}
	if st := r.statfs(); st.Blocks != s.Blocks {
		t.Errorf("STATFS without quota: %d blocks; host has %d", st.Blocks, s.Blocks)
	}
}
