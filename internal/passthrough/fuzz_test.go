//go:build linux

package passthrough

import (
	"bytes"
	"strings"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// fuzzNames are the names FuzzOps chooses from: entries of the rig's
// share, new names and every hostile shape of the regression tests.
var fuzzNames = []string{
	"a", "b", "sub", "hello.txt", "evil", "evilf", "inner", "secret", "d",
	"", ".", "..", "../outside", "../outside/secret", "../pwned", "sub/../../outside",
	"/etc/hostname", "evil/secret", "x\x00/../outside", strings.Repeat("n", 256),
}

// Operations of FuzzOps, one byte each, followed by argument bytes.
const (
	fzLookup = iota
	fzCreate
	fzMkdir
	fzMknod
	fzSymlink
	fzLink
	fzUnlink
	fzRmdir
	fzRename
	fzOpen
	fzRead
	fzWrite
	fzRelease
	fzForget
	fzSetattr
	fzXattr
	fzReaddir
	fzGetattr
	fzReadlink
	fzFallocate
	fzOps
)

// fuzzState decodes the fuzzer's bytes into arguments.
type fuzzState struct {
	b     []byte
	nodes []uint64
	fhs   []uint64
}

func (s *fuzzState) byte() byte {
	if len(s.b) == 0 {
		return 0
	}
	c := s.b[0]
	s.b = s.b[1:]
	return c
}

func (s *fuzzState) name() string { return fuzzNames[int(s.byte())%len(fuzzNames)] }

// node picks a node the guest holds, or now and then an unknown one.
func (s *fuzzState) node() uint64 {
	c := int(s.byte())
	if c >= 250 {
		return uint64(c) << 32
	}
	return s.nodes[c%len(s.nodes)]
}

func (s *fuzzState) fh() uint64 {
	c := int(s.byte())
	if len(s.fhs) == 0 || c >= 250 {
		return uint64(c)
	}
	return s.fhs[c%len(s.fhs)]
}

func (s *fuzzState) flags() uint32 {
	return []uint32{syscall.O_RDONLY, syscall.O_WRONLY, syscall.O_RDWR, syscall.O_RDWR | syscall.O_TRUNC,
		syscall.O_WRONLY | syscall.O_APPEND, syscall.O_RDWR | syscall.O_EXCL, 3, syscall.O_RDONLY | syscall.O_NOFOLLOW}[s.byte()%8]
}

func (s *fuzzState) gotNode(n uint64, e syscall.Errno) {
	if e == 0 && n != 0 {
		s.nodes = append(s.nodes, n)
	}
}

// op runs one decoded operation and fails the test if a reply carries the
// outside tree's secret.
func (s *fuzzState) op(t *testing.T, r *rig) {
	check := func(b []byte) {
		if bytes.Contains(b, []byte(sentinel)) {
			t.Fatalf("a reply carries the outside secret: %q", b)
		}
	}
	switch s.byte() % fzOps {
	case fzLookup:
		s.gotNode(r.lookup(s.node(), s.name()))
	case fzCreate:
		n, fh, e := r.create(s.node(), s.name(), s.flags(), uint32(s.byte())<<1)
		s.gotNode(n, e)
		if e == 0 {
			s.fhs = append(s.fhs, fh)
		}
	case fzMkdir:
		s.gotNode(r.mkdir(s.node(), s.name(), 0o755))
	case fzMknod:
		mode := []uint32{syscall.S_IFREG, syscall.S_IFCHR, syscall.S_IFIFO, syscall.S_IFDIR, syscall.S_IFLNK, 0}[s.byte()%6]
		s.gotNode(r.mknod(s.node(), s.name(), mode|0o644, uint32(s.byte())))
	case fzSymlink:
		s.gotNode(r.symlink(s.node(), s.name(), s.name()))
	case fzLink:
		s.gotNode(r.link(s.node(), s.node(), s.name()))
	case fzUnlink:
		r.unlink(s.node(), s.name())
	case fzRmdir:
		r.rmdir(s.node(), s.name())
	case fzRename:
		r.rename(s.node(), s.name(), s.node(), s.name(), []uint32{0, unix.RENAME_NOREPLACE, unix.RENAME_EXCHANGE, 4}[s.byte()%4])
	case fzOpen:
		if fh, e := r.open(s.node(), s.flags()); e == 0 {
			s.fhs = append(s.fhs, fh)
		}
	case fzRead:
		b, _ := r.read(s.fh(), uint64(s.byte()), uint32(s.byte())<<4)
		check(b)
	case fzWrite:
		r.write(s.fh(), uint64(s.byte()), bytes.Repeat([]byte{'w'}, int(s.byte())))
	case fzRelease:
		r.release(s.fh())
	case fzForget:
		r.forget(s.node(), uint64(s.byte()%4))
	case fzSetattr:
		in := fuse.SetAttrIn{}
		in.NodeId = s.node()
		in.Valid = uint32(s.byte()) & (fuse.FATTR_MODE | fuse.FATTR_UID | fuse.FATTR_GID | fuse.FATTR_SIZE |
			fuse.FATTR_MTIME | fuse.FATTR_FH | fuse.FATTR_ATIME_NOW)
		in.Mode, in.Uid, in.Size, in.Fh = uint32(s.byte())<<4, uint32(s.byte()), uint64(s.byte()), s.fh()
		r.setattr(in)
	case fzXattr:
		n := s.node()
		name := []string{"user.a", overrideXattr, "user.containers.x", "trusted.a", "security.capability", ""}[s.byte()%6]
		switch s.byte() % 4 {
		case 0:
			r.setxattr(n, name, []byte{s.byte()})
		case 1:
			b, _ := r.getxattr(n, name, uint32(s.byte()))
			check(b)
			if name == overrideXattr && len(b) == overrideSize {
				t.Fatalf("GETXATTR revealed the ownership record")
			}
		case 2:
			b, _ := r.listxattr(n, uint32(s.byte()))
			if bytes.Contains(b, []byte(hiddenXattrPrefix)) {
				t.Fatalf("LISTXATTR revealed %q", b)
			}
		case 3:
			r.removexattr(n, name)
		}
	case fzReaddir:
		if fh, e := r.opendir(s.node()); e == 0 {
			r.readdir(fh)
			r.do(&fuse.ReleaseIn{InHeader: r.hdr(opReleasedir, 0), Fh: fh})
		}
	case fzGetattr:
		r.getattr(s.node())
	case fzReadlink:
		r.readlink(s.node())
	case fzFallocate:
		r.do(&fuse.FallocateIn{InHeader: r.hdr(opFallocate, 0), Fh: s.fh(), Length: uint64(s.byte())})
	}
}

// FuzzOps runs a decoded sequence of operations with hostile names, node
// IDs and handles over a small share beside a sentinel tree; the rig's
// cleanup fails the test if the tree outside changed (hash) or anything
// appeared beside the share, and a panic fails it too.
func FuzzOps(f *testing.F) {
	idx := func(name string) byte {
		for i, n := range fuzzNames {
			if n == name {
				return byte(i)
			}
		}
		panic(name)
	}
	// Nodes: 0 is the root; each successful entry reply appends one.
	f.Add([]byte{fzLookup, 0, idx("..")})
	f.Add([]byte{fzLookup, 0, idx("../outside/secret"), fzLookup, 0, idx("sub/../../outside")})
	f.Add([]byte{fzCreate, 0, idx("../pwned"), 2, 0x40, fzMkdir, 0, idx("../pwned")})
	f.Add([]byte{fzLookup, 0, idx("evil"), fzLookup, 1, idx("secret"), fzOpen, 1, 0, fzRead, 0, 0, 0xff})
	f.Add([]byte{fzLookup, 0, idx("evilf"), fzOpen, 1, 2, fzRead, 0, 0, 0xff, fzCreate, 0, idx("evilf"), 3, 0x40})
	f.Add([]byte{fzLookup, 0, idx("hello.txt"), fzLink, 1, 0, idx("../pwned"), fzRename, 0, idx("hello.txt"), 0, idx("../pwned"), 0})
	f.Add([]byte{fzLookup, 0, idx("evil"), fzRename, 1, idx("secret"), 0, idx("a"), 0, fzUnlink, 1, idx("secret")})
	f.Add([]byte{fzSymlink, 0, idx("../outside/secret"), idx("a"), fzOpen, 1, 2, fzSetattr, 1, fuse.FATTR_SIZE, 0, 0, 0, 0})
	f.Add([]byte{fzLookup, 0, idx("hello.txt"), fzForget, 1, 3, fzForget, 1, 3, fzGetattr, 1, fzRead, 250, 0, 10})
	f.Add([]byte{fzLookup, 0, idx("hello.txt"), fzXattr, 1, 1, 0, 7, fzXattr, 1, 1, 1, 64, fzXattr, 1, 0, 2, 64})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 512 {
			return
		}
		r := newRig(t, Options{MaxInodes: 16, MaxHandles: 8})
		s := &fuzzState{b: data, nodes: []uint64{rootID}}
		for len(s.b) > 0 {
			s.op(t, r)
		}
	})
}
