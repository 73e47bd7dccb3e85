package virtiofs

import (
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

var (
	statusEROFS  = fuse.Status(syscall.EROFS)
	statusENOSYS = fuse.ENOSYS
	statusEPERM  = fuse.EPERM
)

// guard wraps the served file system with the restrictions every share
// gets, and with EROFS for mutating operations when the share is
// read-only. Embedding forwards every operation it does not override.
//
// Always, whatever ReadOnly says:
//   - IOCTL is refused: it would hand guest-chosen ioctl numbers and
//     buffers to host file descriptors.
//   - GETLK/SETLK/SETLKW are refused (the device does not offer lock
//     support, so the guest kernel keeps locks local): a SETLKW on a file
//     the host keeps locked would block a request forever, and with it
//     Reset and Close, which wait for in-flight requests.
//   - MKNOD of character and block devices is refused: the node would be
//     created on the host, where opening it reaches host devices.
//   - OPEN and CREATE add O_NONBLOCK, so opening a FIFO in the share
//     cannot block a request (and Reset) forever; it does not change
//     regular files.
//   - FORGET never drops more lookups than the guard saw granted. go-fuse's
//     node file system panics on an unknown node or a lookup count
//     underflow, and in the underflow case while holding the inode's
//     mutex, so one hostile FORGET would hang every later request on that
//     inode (and Reset, which waits for them). The guard counts the
//     lookups each entry-returning operation grants; READDIRPLUS, which
//     grants them inside a directory listing, is not offered
//     (MountOptions.DisableReadDirPlus) and fails with ENOSYS.
//   - Operations on a name in a directory (LOOKUP, CREATE, MKDIR, MKNOD,
//     SYMLINK, LINK, UNLINK, RMDIR, RENAME, TMPFILE) first check that the
//     directory node is a directory on the host. go-fuse's loopback file
//     system builds host paths from node names and follows symlinks, so a
//     hostile driver could otherwise send CREATE with a symlink's node as
//     the parent and create files anywhere on the host. The check and the
//     operation hold nsMu, exclusively for operations that change the
//     namespace, so the guest cannot swap a directory for a symlink in
//     between; changes made on the host side are not covered.
//   - Operations on a symlink node that go-fuse's loopback would apply
//     through the symlink (SETATTR mode and size, OPENDIR) are refused,
//     and CREATE adds O_NOFOLLOW. A guest kernel resolves symlinks itself,
//     so it never sends these.
type guard struct {
	fuse.RawFileSystem
	readOnly bool

	// nsMu is held for reading by LOOKUP and for writing by operations
	// that change names, each with its directory check.
	nsMu sync.RWMutex

	// mu protects lookups.
	mu sync.Mutex
	// lookups is, per node ID, a lower bound of the lookup count the
	// wrapped file system holds: incremented after it grants a lookup,
	// decremented before a FORGET is passed on.
	lookups map[uint64]uint64
}

func newGuard(fsys fuse.RawFileSystem, readOnly bool) *guard {
	return &guard{RawFileSystem: fsys, readOnly: readOnly, lookups: map[uint64]uint64{}}
}

// granted records one lookup of the node in out after a successful
// entry-returning operation.
func (g *guard) granted(st fuse.Status, out *fuse.EntryOut) fuse.Status {
	if st.Ok() && out.NodeId != 0 {
		g.mu.Lock()
		g.lookups[out.NodeId]++
		g.mu.Unlock()
	}
	return st
}

// known reports whether node may be used in a request: the root, or a
// node the guard saw granted and not entirely forgotten. A driver never
// uses other node IDs (FUSE: a node ID is valid from the reply that grants
// it until its lookups are forgotten).
func (g *guard) known(node uint64) bool {
	if node == fuse.FUSE_ROOT_ID {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lookups[node] > 0
}

func (g *guard) Forget(node, nlookup uint64) {
	g.mu.Lock()
	n := min(nlookup, g.lookups[node])
	if n == g.lookups[node] {
		delete(g.lookups, node)
	} else {
		g.lookups[node] -= n
	}
	g.mu.Unlock()
	if n > 0 {
		g.RawFileSystem.Forget(node, n)
	}
}

// isDir returns OK if node is a directory on the host (lstat of its path:
// a symlink is not a directory), ENOTDIR or the lookup error otherwise.
func (g *guard) isDir(cancel <-chan struct{}, node uint64) fuse.Status {
	typ, st := g.nodeType(cancel, node)
	if st.Ok() && typ != syscall.S_IFDIR {
		return fuse.ENOTDIR
	}
	return st
}

// notSymlink returns OK unless node is a symlink on the host (ELOOP, as
// O_NOFOLLOW reports) or cannot be looked up.
func (g *guard) notSymlink(cancel <-chan struct{}, node uint64) fuse.Status {
	typ, st := g.nodeType(cancel, node)
	if st.Ok() && typ == syscall.S_IFLNK {
		return fuse.Status(syscall.ELOOP)
	}
	return st
}

// nodeType returns the S_IFMT bits of node as lstat reports them.
func (g *guard) nodeType(cancel <-chan struct{}, node uint64) (uint32, fuse.Status) {
	if !g.known(node) {
		// Node IDs in request bodies (RENAME's newdir) are not
		// filtered by Device.handle.
		return 0, fuse.Status(syscall.ESTALE)
	}
	var out fuse.AttrOut
	in := fuse.GetAttrIn{InHeader: fuse.InHeader{NodeId: node}}
	if st := g.RawFileSystem.GetAttr(cancel, &in, &out); !st.Ok() {
		return 0, st
	}
	return out.Mode & syscall.S_IFMT, fuse.OK
}

// OpenDir refuses symlink nodes: go-fuse's loopback opens the node's path,
// following a symlink out of the share.
func (g *guard) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	g.nsMu.RLock()
	defer g.nsMu.RUnlock()
	if st := g.isDir(cancel, in.NodeId); !st.Ok() {
		return st
	}
	return g.RawFileSystem.OpenDir(cancel, in, out)
}

// lockDirs takes nsMu for a namespace change and checks that every node
// in dirs is a directory. On success the caller must unlock nsMu; on
// failure, including a panic in the file system, nsMu is unlocked.
func (g *guard) lockDirs(cancel <-chan struct{}, dirs ...uint64) fuse.Status {
	g.nsMu.Lock()
	locked := false
	defer func() {
		if !locked {
			g.nsMu.Unlock()
		}
	}()
	for _, d := range dirs {
		if st := g.isDir(cancel, d); !st.Ok() {
			return st
		}
	}
	locked = true
	return fuse.OK
}

func (g *guard) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	g.nsMu.RLock()
	defer g.nsMu.RUnlock()
	if st := g.isDir(cancel, h.NodeId); !st.Ok() {
		return st
	}
	return g.granted(g.RawFileSystem.Lookup(cancel, h, name, out), out)
}

func (g *guard) ReadDirPlus(<-chan struct{}, *fuse.ReadIn, *fuse.DirEntryList) fuse.Status {
	return statusENOSYS
}

func (g *guard) String() string { return "virtiofs(" + g.RawFileSystem.String() + ")" }

// isWriteOpen reports whether open(2) flags can modify the file.
func isWriteOpen(flags uint32) bool {
	return flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&(syscall.O_TRUNC|syscall.O_CREAT) != 0
}

func (g *guard) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if g.readOnly && isWriteOpen(in.Flags) {
		return statusEROFS
	}
	in.Flags |= syscall.O_NONBLOCK
	return g.RawFileSystem.Open(cancel, in, out)
}

func (g *guard) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	if g.readOnly {
		return statusEROFS
	}
	// O_NOFOLLOW: O_CREAT would follow a symlink at the name out of the
	// share (a guest kernel follows symlinks itself before CREATE).
	in.Flags |= syscall.O_NONBLOCK | syscall.O_NOFOLLOW
	if st := g.lockDirs(cancel, in.NodeId); !st.Ok() {
		return st
	}
	defer g.nsMu.Unlock()
	return g.granted(g.RawFileSystem.Create(cancel, in, name, out), &out.EntryOut)
}

func (g *guard) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	if g.readOnly {
		return statusEROFS
	}
	switch in.Mode & syscall.S_IFMT {
	case syscall.S_IFCHR, syscall.S_IFBLK:
		return statusEPERM
	}
	if st := g.lockDirs(cancel, in.NodeId); !st.Ok() {
		return st
	}
	defer g.nsMu.Unlock()
	return g.granted(g.RawFileSystem.Mknod(cancel, in, name, out), out)
}

func (g *guard) Ioctl(<-chan struct{}, *fuse.IoctlIn, []byte, *fuse.IoctlOut, []byte) fuse.Status {
	return statusENOSYS
}

func (g *guard) GetLk(<-chan struct{}, *fuse.LkIn, *fuse.LkOut) fuse.Status { return statusENOSYS }
func (g *guard) SetLk(<-chan struct{}, *fuse.LkIn) fuse.Status              { return statusENOSYS }
func (g *guard) SetLkw(<-chan struct{}, *fuse.LkIn) fuse.Status             { return statusENOSYS }

// The operations below modify the file system; a read-only share fails
// them with EROFS, as a read-only mount would.

// SetAttr refuses mode and size changes on symlink nodes: go-fuse's
// loopback applies them with chmod(2) and truncate(2) on the node's path,
// which follow the symlink out of the share. (A guest kernel resolves
// symlinks itself and never sends them.)
func (g *guard) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	if g.readOnly {
		return statusEROFS
	}
	if in.Valid&(fuse.FATTR_MODE|fuse.FATTR_SIZE) != 0 {
		g.nsMu.RLock()
		defer g.nsMu.RUnlock()
		if st := g.notSymlink(cancel, in.NodeId); !st.Ok() {
			return st
		}
	}
	return g.RawFileSystem.SetAttr(cancel, in, out)
}

func (g *guard) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	if g.readOnly {
		return statusEROFS
	}
	if st := g.lockDirs(cancel, in.NodeId); !st.Ok() {
		return st
	}
	defer g.nsMu.Unlock()
	return g.granted(g.RawFileSystem.Mkdir(cancel, in, name, out), out)
}

func (g *guard) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	if g.readOnly {
		return statusEROFS
	}
	if st := g.lockDirs(cancel, h.NodeId); !st.Ok() {
		return st
	}
	defer g.nsMu.Unlock()
	return g.RawFileSystem.Unlink(cancel, h, name)
}

func (g *guard) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	if g.readOnly {
		return statusEROFS
	}
	if st := g.lockDirs(cancel, h.NodeId); !st.Ok() {
		return st
	}
	defer g.nsMu.Unlock()
	return g.RawFileSystem.Rmdir(cancel, h, name)
}

func (g *guard) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	if g.readOnly {
		return statusEROFS
	}
	if st := g.lockDirs(cancel, in.NodeId, in.Newdir); !st.Ok() {
		return st
	}
	defer g.nsMu.Unlock()
	return g.RawFileSystem.Rename(cancel, in, oldName, newName)
}

func (g *guard) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	if g.readOnly {
		return statusEROFS
	}
	if st := g.lockDirs(cancel, in.NodeId); !st.Ok() {
		return st
	}
	defer g.nsMu.Unlock()
	return g.granted(g.RawFileSystem.Link(cancel, in, name, out), out)
}

func (g *guard) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	if g.readOnly {
		return statusEROFS
	}
	if st := g.lockDirs(cancel, h.NodeId); !st.Ok() {
		return st
	}
	defer g.nsMu.Unlock()
	return g.granted(g.RawFileSystem.Symlink(cancel, h, target, name, out), out)
}

func (g *guard) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	if g.readOnly {
		return statusEROFS
	}
	return g.RawFileSystem.SetXAttr(cancel, in, attr, data)
}

func (g *guard) RemoveXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	if g.readOnly {
		return statusEROFS
	}
	return g.RawFileSystem.RemoveXAttr(cancel, h, attr)
}

func (g *guard) Tmpfile(cancel <-chan struct{}, in *fuse.CreateIn, out *fuse.CreateOut) fuse.Status {
	if g.readOnly {
		return statusEROFS
	}
	if st := g.lockDirs(cancel, in.NodeId); !st.Ok() {
		return st
	}
	defer g.nsMu.Unlock()
	return g.granted(g.RawFileSystem.Tmpfile(cancel, in, out), &out.EntryOut)
}

func (g *guard) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	if g.readOnly {
		return 0, statusEROFS
	}
	return g.RawFileSystem.Write(cancel, in, data)
}

func (g *guard) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	if g.readOnly {
		return 0, statusEROFS
	}
	return g.RawFileSystem.Writev(cancel, in, data)
}

func (g *guard) CopyFileRange(cancel <-chan struct{}, in *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	if g.readOnly {
		return 0, statusEROFS
	}
	return g.RawFileSystem.CopyFileRange(cancel, in)
}

func (g *guard) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	if g.readOnly {
		return statusEROFS
	}
	return g.RawFileSystem.Fallocate(cancel, in)
}
