//go:build linux

package passthrough

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// resolveFlags confine every openat2 in this package: the name must stay
// beneath the directory fd, and no symlink (magic or not) and no mount
// point is crossed on the way. Names are single validated components, so
// for them this is defence in depth. A trailing symlink opened with
// O_PATH|O_NOFOLLOW yields the link itself; with other flags, ELOOP.
const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS |
	unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_XDEV

// ttl is how long the guest may cache entries and attributes. Host-side
// changes show after at most this long.
const ttl = time.Second

// Bounds of guest-supplied sizes (Linux limits.h).
const (
	nameMax      = 255   // NAME_MAX
	pathMax      = 4096  // PATH_MAX, with the NUL
	xattrNameMax = 255   // XATTR_NAME_MAX
	xattrSizeMax = 65536 // XATTR_SIZE_MAX and XATTR_LIST_MAX
)

// devIno identifies a host object. While an inode holds an O_PATH fd of
// the object, the host cannot free it, so the pair cannot be reused by
// another object for as long as the inode is in the table.
type devIno struct{ dev, ino uint64 }

// inode is a host object the guest has looked up.
type inode struct {
	id  uint64
	key devIno
	fd  int    // O_PATH|O_NOFOLLOW; never a path string
	typ uint32 // host S_IFMT bits, fixed for the life of the object

	// The fields below are guarded by FS.mu.

	// parent and name are the directory and name a non-directory was
	// last seen under (LOOKUP, CREATE, RENAME); data opens reopen the
	// name beneath parent's fd and check the result is this object.
	// Directories reopen "." beneath their own fd and keep no parent, so
	// parent chains are one level deep and cannot form cycles.
	parent *inode
	name   string
	// lookups is the guest's lookup count; kids counts the inodes whose
	// parent this is; busy counts requests using fd. The inode is freed
	// (fd closed) when all three are zero.
	lookups, kids, busy uint64
	ovr                 override
}

// handle is an open file or directory.
type handle struct {
	fd       int
	dir      bool
	writable bool
	only     string // for a root directory handle: Options.OnlyName

	// busy and released are guarded by FS.mu; fd is closed once the
	// handle is released and no request uses it.
	busy     int
	released bool

	// mu serializes READDIR on a directory handle and protects the
	// fields below.
	mu     sync.Mutex
	dirOff uint64 // offset the next entry in dirBuf[dirPos:dirEnd] follows
	dirBuf []byte
	dirPos int
	dirEnd int
}

// FS is a passthrough fuse.RawFileSystem over one host directory that the
// guest cannot leave; see the package documentation. It is safe for
// concurrent use.
type FS struct {
	fuse.RawFileSystem // ENOSYS for what FS does not implement

	readOnly           bool
	onlyName           string
	resolve            uint64 // openat2's RESOLVE_* flags for guest names
	maxInodes          int
	maxHandles         int
	defUID, defGID     uint32
	hostUID, hostGID   uint32
	log                *slog.Logger
	root               *inode
	overrideWarnedOnce sync.Once
	quota              quota

	// mu protects inodes, byKey, nextID, handles, nextFh and the guarded
	// fields of every inode and handle.
	mu      sync.Mutex
	inodes  map[uint64]*inode
	byKey   map[devIno]*inode
	nextID  uint64
	handles map[uint64]*handle
	nextFh  uint64
}

var _ fuse.RawFileSystem = (*FS)(nil)

// New opens root (which must be a directory) and returns a file system
// serving it. Options are read once.
func New(root string, o Options) (*FS, error) {
	if o.QuotaBytes < 0 {
		return nil, fmt.Errorf("passthrough %s: negative quota %d", root, o.QuotaBytes)
	}
	if o.Submounts && o.QuotaBytes > 0 {
		return nil, fmt.Errorf("passthrough %s: a quota cannot count submounts", root)
	}
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("passthrough: open %s: %w", root, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("passthrough: stat %s: %w", root, err)
	}
	f := &FS{
		RawFileSystem: fuse.NewDefaultRawFileSystem(),
		readOnly:      o.ReadOnly,
		onlyName:      o.OnlyName,
		resolve:       resolveFlags,
		maxInodes:     o.MaxInodes,
		maxHandles:    o.MaxHandles,
		defUID:        o.DefaultUID,
		defGID:        o.DefaultGID,
		hostUID:       uint32(os.Geteuid()),
		hostGID:       uint32(os.Getegid()),
		log:           o.Logger,
		inodes:        map[uint64]*inode{},
		byKey:         map[devIno]*inode{},
		nextID:        fuse.FUSE_ROOT_ID + 1,
		handles:       map[uint64]*handle{},
		nextFh:        1,
		quota:         quota{limit: o.QuotaBytes, mu: make(chan struct{}, 1)},
	}
	if o.Submounts {
		f.resolve &^= unix.RESOLVE_NO_XDEV
	}
	if f.maxInodes <= 0 {
		f.maxInodes = DefaultMaxInodes
	}
	if f.maxHandles <= 0 {
		f.maxHandles = DefaultMaxHandles
	}
	if f.log == nil {
		f.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.OnlyName != "" {
		var fst unix.Stat_t
		if !checkName(o.OnlyName).Ok() {
			unix.Close(fd)
			return nil, fmt.Errorf("passthrough: bad file name %q", o.OnlyName)
		}
		if err := unix.Fstatat(fd, o.OnlyName, &fst, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("passthrough: stat %s/%s: %w", root, o.OnlyName, err)
		}
		if fst.Mode&syscall.S_IFMT != syscall.S_IFREG {
			unix.Close(fd)
			return nil, fmt.Errorf("passthrough: %s/%s is not a regular file", root, o.OnlyName)
		}
	}
	f.root = &inode{id: fuse.FUSE_ROOT_ID, key: keyOf(&st), fd: fd, typ: syscall.S_IFDIR, lookups: 1}
	f.root.ovr = f.readOverride(nil, "", f.root)
	if f.quota.limit > 0 {
		start := time.Now()
		whole := f.quota.measure(fd, f.onlyName)
		f.log.Debug("passthrough: measured usage", "root", root, "used", f.quota.used,
			"quota", f.quota.limit, "took", time.Since(start))
		if !whole {
			f.log.Warn("passthrough: tree too large to measure; the quota counts only the part seen",
				"root", root, "entries", maxQuotaWalkEntries, "depth", maxQuotaWalkDepth)
		}
	}
	f.inodes[f.root.id] = f.root
	f.byKey[f.root.key] = f.root
	return f, nil
}

// Close closes every fd the file system holds. Requests must not be in
// flight; later requests fail with ESTALE or EBADF.
func (f *FS) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, h := range f.handles {
		unix.Close(h.fd)
		delete(f.handles, id)
	}
	for id, ino := range f.inodes {
		unix.Close(ino.fd)
		delete(f.inodes, id)
	}
	clear(f.byKey)
	return nil
}

func (f *FS) String() string { return "passthrough" }

func keyOf(st *unix.Stat_t) devIno { return devIno{dev: st.Dev, ino: st.Ino} }

// errno converts a host error into a FUSE status.
func errno(err error) fuse.Status {
	if err == nil {
		return fuse.OK
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return fuse.Status(e)
	}
	return fuse.EIO
}

const (
	statusESTALE = fuse.Status(syscall.ESTALE)
	statusEBADF  = fuse.Status(syscall.EBADF)
	statusEROFS  = fuse.Status(syscall.EROFS)
	statusENFILE = fuse.Status(syscall.ENFILE)
	statusEMFILE = fuse.Status(syscall.EMFILE)
)

// checkName validates a guest-supplied directory entry name: one path
// component that names an entry of the directory itself.
func checkName(name string) fuse.Status {
	if name == "" || name == "." || name == ".." || len(name) > nameMax ||
		strings.ContainsAny(name, "/\x00") {
		return fuse.EINVAL
	}
	return fuse.OK
}

// openat2 opens name beneath dirfd, never following a symlink nor
// entering a mount point.
func openat2(dirfd int, name string, flags int, mode uint32) (int, error) {
	return openat2How(dirfd, name, flags, mode, resolveFlags)
}

// openat2 opens name beneath dirfd with the share's resolve flags.
func (f *FS) openat2(dirfd int, name string, flags int, mode uint32) (int, error) {
	return openat2How(dirfd, name, flags, mode, f.resolve)
}

func openat2How(dirfd int, name string, flags int, mode uint32, resolve uint64) (int, error) {
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_NOFOLLOW | unix.O_CLOEXEC),
		Resolve: resolve,
	}
	if flags&unix.O_CREAT != 0 {
		how.Mode = uint64(mode)
	}
	for range 8 {
		fd, err := unix.Openat2(dirfd, name, &how)
		// EAGAIN: a rename or mount raced the resolution (openat2(2)).
		if err != unix.EINTR && err != unix.EAGAIN {
			return fd, err
		}
	}
	return -1, unix.EAGAIN
}

// get returns the inode of a node ID, marked busy; release it with put.
func (f *FS) get(id uint64) (*inode, fuse.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ino := f.inodes[id]
	if ino == nil {
		return nil, statusESTALE
	}
	ino.busy++
	return ino, fuse.OK
}

// getDir is get for a node that must be a directory.
func (f *FS) getDir(id uint64) (*inode, fuse.Status) {
	ino, st := f.get(id)
	if st.Ok() && ino.typ != syscall.S_IFDIR {
		f.put(ino)
		return nil, fuse.ENOTDIR
	}
	return ino, st
}

func (f *FS) put(ino *inode) {
	f.mu.Lock()
	ino.busy--
	f.maybeFree(ino)
	f.mu.Unlock()
}

// maybeFree frees ino, and then its parent, if nothing holds them.
//
// Preconditions: f.mu is held.
func (f *FS) maybeFree(ino *inode) {
	for ino != nil && ino != f.root && ino.lookups == 0 && ino.kids == 0 && ino.busy == 0 {
		if f.inodes[ino.id] != ino {
			return // already freed (after Close)
		}
		delete(f.inodes, ino.id)
		if f.byKey[ino.key] == ino {
			delete(f.byKey, ino.key)
		}
		unix.Close(ino.fd)
		p := ino.parent
		ino.parent = nil
		if p != nil {
			p.kids--
		}
		ino = p
	}
}

// setParent records that the non-directory ino is named name in parent.
//
// Preconditions: f.mu is held.
func (f *FS) setParent(ino, parent *inode, name string) {
	if ino.typ == syscall.S_IFDIR || ino == f.root {
		return
	}
	old := ino.parent
	parent.kids++
	ino.parent, ino.name = parent, name
	if old != nil {
		old.kids--
		f.maybeFree(old)
	}
}

// admit takes the O_PATH fd of the object name in parent and returns its
// inode with one more lookup: the existing inode of the same object or a
// new one. It consumes fd.
func (f *FS) admit(parent *inode, name string, fd int, st *unix.Stat_t, ovr override) (*inode, fuse.Status) {
	key := keyOf(st)
	f.mu.Lock()
	defer f.mu.Unlock()
	if ino := f.byKey[key]; ino != nil {
		unix.Close(fd)
		ino.lookups++
		f.setParent(ino, parent, name)
		return ino, fuse.OK
	}
	if len(f.inodes) >= f.maxInodes {
		unix.Close(fd)
		return nil, statusENFILE
	}
	ino := &inode{id: f.nextID, key: key, fd: fd, typ: st.Mode & syscall.S_IFMT, lookups: 1, ovr: ovr}
	f.nextID++
	f.inodes[ino.id] = ino
	f.byKey[key] = ino
	f.setParent(ino, parent, name)
	return ino, fuse.OK
}

// reopenAt opens name beneath dirfd with flags and checks that it is the
// object key.
func (f *FS) reopenAt(dirfd int, name string, key devIno, flags int) (int, error) {
	fd, err := f.openat2(dirfd, name, flags|unix.O_NONBLOCK, 0)
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if keyOf(&st) != key {
		// The name was replaced since it was looked up.
		unix.Close(fd)
		return -1, unix.ESTALE
	}
	return fd, nil
}

// reopen returns a new fd of ino opened with flags (no O_CREAT, no
// O_TRUNC). A directory is reopened as "." beneath its own O_PATH fd;
// another file by its last known name beneath its parent's fd, which
// must still be the same object (ESTALE otherwise).
func (f *FS) reopen(ino *inode, flags int) (int, error) {
	if ino.typ == syscall.S_IFDIR {
		return f.openat2(ino.fd, ".", flags|unix.O_DIRECTORY, 0)
	}
	f.mu.Lock()
	parent, name := ino.parent, ino.name
	if parent != nil {
		parent.busy++
	}
	f.mu.Unlock()
	if parent == nil {
		return -1, unix.ESTALE
	}
	defer f.put(parent)
	return f.reopenAt(parent.fd, name, ino.key, flags)
}

// xattrFD opens ino for xattr calls, which O_PATH fds do not allow.
func (f *FS) xattrFD(ino *inode) (int, error) {
	if ino.typ != syscall.S_IFREG && ino.typ != syscall.S_IFDIR {
		return -1, unix.EPERM // Linux keeps user.* xattrs off other types
	}
	fd, err := f.reopen(ino, unix.O_RDONLY)
	if err == unix.EACCES && ino.typ == syscall.S_IFREG {
		fd, err = f.reopen(ino, unix.O_WRONLY)
	}
	return fd, err
}

// readOverride reads the ownership record of ino, whose parent and name
// are given for an inode not in the table yet (parent nil: use ino's own).
func (f *FS) readOverride(parent *inode, name string, ino *inode) override {
	var fd int
	var err error
	switch {
	case ino.typ == syscall.S_IFDIR:
		fd, err = f.openat2(ino.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	case ino.typ != syscall.S_IFREG:
		return override{}
	case parent != nil:
		fd, err = f.reopenAt(parent.fd, name, ino.key, unix.O_RDONLY)
	default:
		fd, err = f.xattrFD(ino)
	}
	if err != nil {
		return override{}
	}
	defer unix.Close(fd)
	var b [overrideSize + 1]byte
	n, err := unix.Fgetxattr(fd, overrideXattr, b[:])
	if err != nil {
		return override{}
	}
	return decodeOverride(b[:n])
}

// writeOverride records o as ino's ownership, on the host when it can
// (through fd if it is not -1) and in the inode in any case.
func (f *FS) writeOverride(ino *inode, fd int, o override) fuse.Status {
	if ino.typ == syscall.S_IFLNK {
		return fuse.OK // Linux cannot keep user.* xattrs on symlinks
	}
	if fd < 0 {
		var err error
		if fd, err = f.xattrFD(ino); err != nil {
			return errno(err)
		}
		defer unix.Close(fd)
	}
	o.ok = true
	if err := unix.Fsetxattr(fd, overrideXattr, o.encode(), 0); err != nil {
		f.overrideWarnedOnce.Do(func() {
			f.log.Warn("passthrough: cannot record guest ownership; is the host file system without user xattrs?", "err", err)
		})
		if err != unix.ENOTSUP {
			return errno(err)
		}
	}
	f.mu.Lock()
	ino.ovr = o
	f.mu.Unlock()
	return fuse.OK
}

// stat reports ino's attributes as the guest sees them.
func (f *FS) stat(ino *inode, out *fuse.Attr) fuse.Status {
	var st unix.Stat_t
	if err := unix.Fstat(ino.fd, &st); err != nil {
		return errno(err)
	}
	f.mu.Lock()
	o := ino.ovr
	f.mu.Unlock()
	*out = fuse.Attr{
		Ino:       st.Ino,
		Size:      uint64(st.Size),
		Blocks:    uint64(st.Blocks),
		Atime:     uint64(st.Atim.Sec),
		Atimensec: uint32(st.Atim.Nsec),
		Mtime:     uint64(st.Mtim.Sec),
		Mtimensec: uint32(st.Mtim.Nsec),
		Ctime:     uint64(st.Ctim.Sec),
		Ctimensec: uint32(st.Ctim.Nsec),
		Mode:      st.Mode,
		Nlink:     uint32(st.Nlink),
		Blksize:   uint32(st.Blksize),
	}
	out.Owner = f.guestOwner(&st, o)
	if o.ok {
		typ := st.Mode & syscall.S_IFMT
		if guestTypeFits(typ, o.mode&syscall.S_IFMT) {
			typ = o.mode & syscall.S_IFMT
		}
		out.Mode = typ | o.mode&07777
		if typ == syscall.S_IFCHR || typ == syscall.S_IFBLK {
			out.Rdev = o.rdev
		}
	}
	return fuse.OK
}

// guestOwner is the owner the guest sees for a host object.
func (f *FS) guestOwner(st *unix.Stat_t, o override) fuse.Owner {
	if o.ok {
		return fuse.Owner{Uid: o.uid, Gid: o.gid}
	}
	own := fuse.Owner{Uid: st.Uid, Gid: st.Gid}
	if own.Uid == f.hostUID {
		own.Uid = f.defUID
	}
	if own.Gid == f.hostGID {
		own.Gid = f.defGID
	}
	return own
}

// guestTypeFits reports whether a record may present a host object of
// type host as type guest: a regular file stands for any file that holds
// no data on the host (devices, FIFOs, sockets); directories stay
// directories.
func guestTypeFits(host, guest uint32) bool {
	switch guest {
	case syscall.S_IFREG, syscall.S_IFCHR, syscall.S_IFBLK, syscall.S_IFIFO, syscall.S_IFSOCK:
		return host == syscall.S_IFREG
	case syscall.S_IFDIR:
		return host == syscall.S_IFDIR
	}
	return false
}

// entry fills out for ino, which holds a lookup for the reply.
func (f *FS) entry(ino *inode, out *fuse.EntryOut) fuse.Status {
	*out = fuse.EntryOut{NodeId: ino.id}
	out.SetEntryTimeout(ttl)
	out.SetAttrTimeout(ttl)
	if st := f.stat(ino, &out.Attr); !st.Ok() {
		f.Forget(ino.id, 1)
		*out = fuse.EntryOut{}
		return st
	}
	return fuse.OK
}

// newHandle registers fd as an open handle and returns its ID, or closes
// fd and fails with EMFILE when the share has MaxHandles open.
func (f *FS) newHandle(fd int, dir, writable bool) (uint64, fuse.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.handles) >= f.maxHandles {
		unix.Close(fd)
		return 0, statusEMFILE
	}
	id := f.nextFh
	f.nextFh++
	f.handles[id] = &handle{fd: fd, dir: dir, writable: writable}
	return id, fuse.OK
}

// hidden reports whether name in parent is outside a one-file share.
func (f *FS) hidden(parent *inode, name string) bool {
	return f.onlyName != "" && parent == f.root && name != f.onlyName
}

// pinned reports whether ino is the root of a one-file share, whose
// entries and attributes the guest may not change.
func (f *FS) pinned(ino *inode) bool { return f.onlyName != "" && ino == f.root }

// handlesFull reports whether a new handle would exceed MaxHandles, so a
// request can fail before it changes the host.
func (f *FS) handlesFull() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.handles) >= f.maxHandles
}

// handle returns an open handle, marked busy; release it with putHandle.
func (f *FS) handle(fh uint64, dir bool) (*handle, fuse.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.handles[fh]
	if h == nil || h.dir != dir {
		return nil, statusEBADF
	}
	h.busy++
	return h, fuse.OK
}

func (f *FS) putHandle(h *handle) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h.busy--
	if h.released && h.busy == 0 {
		unix.Close(h.fd)
	}
}

func (f *FS) release(fh uint64, dir bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.handles[fh]
	if h == nil || h.dir != dir {
		return
	}
	delete(f.handles, fh)
	h.released = true
	if h.busy == 0 {
		unix.Close(h.fd)
	}
}
