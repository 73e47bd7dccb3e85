//go:build linux

package passthrough

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// FUSE opcodes (Linux include/uapi/linux/fuse.h).
const (
	opLookup        = 1
	opForget        = 2
	opGetattr       = 3
	opSetattr       = 4
	opReadlink      = 5
	opSymlink       = 6
	opMknod         = 8
	opMkdir         = 9
	opUnlink        = 10
	opRmdir         = 11
	opRename        = 12
	opLink          = 13
	opOpen          = 14
	opRead          = 15
	opWrite         = 16
	opStatfs        = 17
	opRelease       = 18
	opFsync         = 20
	opSetxattr      = 21
	opGetxattr      = 22
	opListxattr     = 23
	opRemovexattr   = 24
	opFlush         = 25
	opInit          = 26
	opOpendir       = 27
	opReaddir       = 28
	opReleasedir    = 29
	opAccess        = 34
	opCreate        = 35
	opBatchForget   = 42
	opFallocate     = 43
	opRename2       = 45
	opLseek         = 46
	opCopyFileRange = 47

	rootID = fuse.FUSE_ROOT_ID
)

// sentinel is the content of the files outside the share.
const sentinel = "OUTSIDE-SECRET"

// rig drives an FS through go-fuse's protocol server with raw requests,
// as the virtio-fs device does. Its temp dir holds share/ (served) and
// outside/ (a sentinel tree that must never change), plus whatever a test
// adds.
type rig struct {
	tb       testing.TB
	fs       *FS
	srv      *fuse.ProtocolServer
	dir      string // parent of share and outside
	share    string
	outside  string
	unique   uint64
	uid, gid uint32 // the caller of the next requests
	out      []byte
}

func newRig(tb testing.TB, o Options) *rig {
	tb.Helper()
	dir := tb.TempDir()
	r := &rig{tb: tb, dir: dir, share: filepath.Join(dir, "share"), outside: filepath.Join(dir, "outside"),
		out: make([]byte, 1<<20+4096)}
	for _, d := range []string{r.share, filepath.Join(r.share, "sub"), r.outside, filepath.Join(r.outside, "d")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	for name, data := range map[string]string{
		"share/hello.txt":    "hello, share\n",
		"share/sub/inner":    "inner\n",
		"outside/secret":     sentinel,
		"outside/d/secret":   sentinel,
		"outside/victim.txt": sentinel,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.Symlink(r.outside, filepath.Join(r.share, "evil")); err != nil {
		tb.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(r.outside, "secret"), filepath.Join(r.share, "evilf")); err != nil {
		tb.Fatal(err)
	}
	before := hashTree(tb, r.outside, true)
	f, err := New(r.share, o)
	if err != nil {
		tb.Fatal(err)
	}
	r.fs = f
	r.srv = fuse.NewProtocolServer(f, &fuse.MountOptions{MaxWrite: 1 << 20, DisableReadDirPlus: true})
	tb.Cleanup(func() {
		f.Close()
		if after := hashTree(tb, r.outside, true); after != before {
			tb.Errorf("tree outside the share changed: hash %s, was %s", after, before)
		}
		if err := leftOutside(dir); err != nil {
			tb.Error(err)
		}
	})
	var in fuse.InitIn
	in.InHeader = r.hdr(opInit, 0)
	in.Major, in.Minor, in.MaxReadAhead = 7, 31, 128<<10
	in.Flags = fuse.CAP_RENAME_SWAP | fuse.CAP_BIG_WRITES | fuse.CAP_ASYNC_READ
	if _, e := r.do(&in); e != 0 {
		tb.Fatalf("INIT: %v", e)
	}
	return r
}

// leftOutside reports an entry the tests never create in dir: anything
// named pwned, or a file beside share and outside.
func leftOutside(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Name() != "share" && e.Name() != "outside" {
			return &os.PathError{Op: "unexpected entry beside the share", Path: e.Name(), Err: syscall.EEXIST}
		}
	}
	return nil
}

// hashTree hashes names, types, modes, sizes, times, contents and
// symlink targets of the tree at dir; access times of files only if
// atimes.
func hashTree(tb testing.TB, dir string, atimes bool) string {
	tb.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		st := fi.Sys().(*syscall.Stat_t)
		// Access times catch reads: the sentinel files are read here
		// with O_NOATIME only, so their atime equals their mtime and
		// relatime updates it on any other read.
		// (Directories are left out: walking them updates theirs.)
		atime := st.Atim
		if fi.IsDir() || !atimes {
			atime = syscall.Timespec{}
		}
		binary.Write(h, binary.LittleEndian, []int64{int64(len(rel)), int64(st.Mode), st.Size, int64(st.Uid),
			st.Mtim.Sec, st.Mtim.Nsec, atime.Sec, atime.Nsec})
		h.Write([]byte(rel))
		switch {
		case fi.Mode().IsRegular():
			f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOATIME, 0)
			if err != nil {
				return err
			}
			b, err := io.ReadAll(f)
			f.Close()
			if err != nil {
				return err
			}
			h.Write(b)
		case fi.Mode()&fs.ModeSymlink != 0:
			t, _ := os.Readlink(p)
			h.Write([]byte(t))
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (r *rig) hdr(op uint32, node uint64) fuse.InHeader {
	r.unique++
	return fuse.InHeader{Opcode: op, Unique: r.unique, NodeId: node,
		Caller: fuse.Caller{Owner: fuse.Owner{Uid: r.uid, Gid: r.gid}, Pid: 1}}
}

// do sends the request struct v (which embeds InHeader) followed by tail
// and returns the reply body and errno (0 on success).
func (r *rig) do(v any, tail ...[]byte) ([]byte, syscall.Errno) {
	r.tb.Helper()
	var b bytes.Buffer
	if err := binary.Write(&b, binary.LittleEndian, v); err != nil {
		r.tb.Fatal(err)
	}
	for _, t := range tail {
		b.Write(t)
	}
	req := b.Bytes()
	binary.LittleEndian.PutUint32(req, uint32(len(req)))
	n, st := r.srv.HandleRequest([][]byte{req}, [][]byte{r.out})
	if !st.Ok() {
		return nil, syscall.Errno(st)
	}
	if n == 0 {
		return nil, 0 // no reply (FORGET)
	}
	if n < 16 {
		r.tb.Fatalf("reply of %d bytes", n)
	}
	var oh fuse.OutHeader
	binary.Read(bytes.NewReader(r.out), binary.LittleEndian, &oh)
	if int(oh.Length) != n {
		r.tb.Fatalf("reply header length %d, wrote %d", oh.Length, n)
	}
	return r.out[16:n], syscall.Errno(-oh.Status)
}

func cstr(s string) []byte { return append([]byte(s), 0) }

func decode[T any](tb testing.TB, b []byte) T {
	var v T
	if err := binary.Read(bytes.NewReader(b), binary.LittleEndian, &v); err != nil {
		tb.Fatalf("decode %T from %d bytes: %v", v, len(b), err)
	}
	return v
}

func (r *rig) entry(b []byte, e syscall.Errno) (uint64, fuse.Attr, syscall.Errno) {
	if e != 0 {
		return 0, fuse.Attr{}, e
	}
	out := decode[fuse.EntryOut](r.tb, b)
	return out.NodeId, out.Attr, 0
}

func (r *rig) lookup(parent uint64, name string) (uint64, syscall.Errno) {
	n, _, e := r.entry(r.do(&struct{ fuse.InHeader }{r.hdr(opLookup, parent)}, cstr(name)))
	return n, e
}

// mustLookup walks a slash-separated path of names from the root.
func (r *rig) mustLookup(path ...string) uint64 {
	r.tb.Helper()
	node := uint64(rootID)
	for _, p := range path {
		n, e := r.lookup(node, p)
		if e != 0 {
			r.tb.Fatalf("lookup %q: %v", p, e)
		}
		node = n
	}
	return node
}

func (r *rig) forget(node, n uint64) {
	r.do(&fuse.ForgetIn{InHeader: r.hdr(opForget, node), Nlookup: n})
}

func (r *rig) getattr(node uint64) (fuse.Attr, syscall.Errno) {
	b, e := r.do(&fuse.GetAttrIn{InHeader: r.hdr(opGetattr, node)})
	if e != 0 {
		return fuse.Attr{}, e
	}
	return decode[fuse.AttrOut](r.tb, b).Attr, 0
}

func (r *rig) setattr(in fuse.SetAttrIn) (fuse.Attr, syscall.Errno) {
	in.InHeader = r.hdr(opSetattr, in.NodeId)
	b, e := r.do(&in)
	if e != 0 {
		return fuse.Attr{}, e
	}
	return decode[fuse.AttrOut](r.tb, b).Attr, 0
}

func (r *rig) create(parent uint64, name string, flags, mode uint32) (node, fh uint64, e syscall.Errno) {
	b, e := r.do(&fuse.CreateIn{InHeader: r.hdr(opCreate, parent), Flags: flags, Mode: mode}, cstr(name))
	if e != 0 {
		return 0, 0, e
	}
	out := decode[fuse.CreateOut](r.tb, b)
	return out.NodeId, out.Fh, 0
}

func (r *rig) mkdir(parent uint64, name string, mode uint32) (uint64, syscall.Errno) {
	n, _, e := r.entry(r.do(&fuse.MkdirIn{InHeader: r.hdr(opMkdir, parent), Mode: mode}, cstr(name)))
	return n, e
}

func (r *rig) mknod(parent uint64, name string, mode, rdev uint32) (uint64, syscall.Errno) {
	n, _, e := r.entry(r.do(&fuse.MknodIn{InHeader: r.hdr(opMknod, parent), Mode: mode, Rdev: rdev}, cstr(name)))
	return n, e
}

func (r *rig) symlink(parent uint64, target, name string) (uint64, syscall.Errno) {
	n, _, e := r.entry(r.do(&struct{ fuse.InHeader }{r.hdr(opSymlink, parent)}, cstr(name), cstr(target)))
	return n, e
}

func (r *rig) link(src, parent uint64, name string) (uint64, syscall.Errno) {
	n, _, e := r.entry(r.do(&fuse.LinkIn{InHeader: r.hdr(opLink, parent), Oldnodeid: src}, cstr(name)))
	return n, e
}

func (r *rig) unlink(parent uint64, name string) syscall.Errno {
	_, e := r.do(&struct{ fuse.InHeader }{r.hdr(opUnlink, parent)}, cstr(name))
	return e
}

func (r *rig) rmdir(parent uint64, name string) syscall.Errno {
	_, e := r.do(&struct{ fuse.InHeader }{r.hdr(opRmdir, parent)}, cstr(name))
	return e
}

func (r *rig) rename(olddir uint64, oldName string, newdir uint64, newName string, flags uint32) syscall.Errno {
	_, e := r.do(&fuse.RenameIn{InHeader: r.hdr(opRename2, olddir), Newdir: newdir, Flags: flags}, cstr(oldName), cstr(newName))
	return e
}

func (r *rig) readlink(node uint64) (string, syscall.Errno) {
	b, e := r.do(&struct{ fuse.InHeader }{r.hdr(opReadlink, node)})
	return string(b), e
}

func (r *rig) open(node uint64, flags uint32) (uint64, syscall.Errno) {
	b, e := r.do(&fuse.OpenIn{InHeader: r.hdr(opOpen, node), Flags: flags})
	if e != 0 {
		return 0, e
	}
	return decode[fuse.OpenOut](r.tb, b).Fh, 0
}

func (r *rig) read(fh, off uint64, size uint32) ([]byte, syscall.Errno) {
	b, e := r.do(&fuse.ReadIn{InHeader: r.hdr(opRead, 0), Fh: fh, Offset: off, Size: size})
	return bytes.Clone(b), e
}

func (r *rig) write(fh, off uint64, data []byte) (uint32, syscall.Errno) {
	b, e := r.do(&fuse.WriteIn{InHeader: r.hdr(opWrite, 0), Fh: fh, Offset: off, Size: uint32(len(data))}, data)
	if e != 0 {
		return 0, e
	}
	return decode[fuse.WriteOut](r.tb, b).Size, 0
}

func (r *rig) release(fh uint64) {
	r.do(&fuse.ReleaseIn{InHeader: r.hdr(opRelease, 0), Fh: fh})
}

func (r *rig) opendir(node uint64) (uint64, syscall.Errno) {
	b, e := r.do(&fuse.OpenIn{InHeader: r.hdr(opOpendir, node)})
	if e != 0 {
		return 0, e
	}
	return decode[fuse.OpenOut](r.tb, b).Fh, 0
}

// readdir lists a directory handle from offset 0 in small replies.
func (r *rig) readdir(fh uint64) ([]string, syscall.Errno) {
	var names []string
	off := uint64(0)
	for {
		b, e := r.do(&fuse.ReadIn{InHeader: r.hdr(opReaddir, 0), Fh: fh, Offset: off, Size: 256})
		if e != 0 {
			return names, e
		}
		if len(b) == 0 {
			return names, 0
		}
		for len(b) >= 24 {
			d := decode[struct {
				Ino, Off      uint64
				NameLen, Type uint32
			}](r.tb, b)
			names = append(names, string(b[24:24+d.NameLen]))
			off = d.Off
			b = b[min(len(b), 24+int(d.NameLen+7)&^7):]
		}
	}
}

func (r *rig) setxattr(node uint64, name string, value []byte) syscall.Errno {
	_, e := r.do(&struct {
		fuse.InHeader
		Size, Flags uint32
	}{r.hdr(opSetxattr, node), uint32(len(value)), 0}, cstr(name), value)
	return e
}

func (r *rig) getxattr(node uint64, name string, size uint32) ([]byte, syscall.Errno) {
	b, e := r.do(&fuse.GetXAttrIn{InHeader: r.hdr(opGetxattr, node), Size: size}, cstr(name))
	return bytes.Clone(b), e
}

func (r *rig) listxattr(node uint64, size uint32) ([]byte, syscall.Errno) {
	b, e := r.do(&fuse.GetXAttrIn{InHeader: r.hdr(opListxattr, node), Size: size})
	return bytes.Clone(b), e
}

func (r *rig) removexattr(node uint64, name string) syscall.Errno {
	_, e := r.do(&struct{ fuse.InHeader }{r.hdr(opRemovexattr, node)}, cstr(name))
	return e
}
