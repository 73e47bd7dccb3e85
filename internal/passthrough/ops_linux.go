//go:build linux

package passthrough

import (
	"bytes"
	"math"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Lookup answers ENOENT for "." and "..": they are never entries of the
// share (a guest kernel resolves them in its own dcache, and GETPARENT is
// not offered). Other malformed names are EINVAL.
func (f *FS) Lookup(_ <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	if name == "." || name == ".." {
		return fuse.ENOENT
	}
	if st := checkName(name); !st.Ok() {
		return st
	}
	parent, st := f.getDir(h.NodeId)
	if !st.Ok() {
		return st
	}
	defer f.put(parent)
	if f.hidden(parent, name) {
		return fuse.ENOENT
	}
	ino, st := f.lookupAt(parent, name)
	if !st.Ok() {
		return st
	}
	return f.entry(ino, out)
}

// lookupAt returns the inode of name in parent with one more lookup.
func (f *FS) lookupAt(parent *inode, name string) (*inode, fuse.Status) {
	fd, err := f.openat2(parent.fd, name, unix.O_PATH, 0)
	if err != nil {
		return nil, errno(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, errno(err)
	}
	probe := &inode{key: keyOf(&st), fd: fd, typ: st.Mode & syscall.S_IFMT}
	return f.admit(parent, name, fd, &st, f.readOverride(parent, name, probe))
}

func (f *FS) Forget(id, n uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ino := f.inodes[id]
	if ino == nil || ino == f.root {
		return
	}
	ino.lookups -= min(n, ino.lookups)
	f.maybeFree(ino)
}

func (f *FS) GetAttr(_ <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	ino, st := f.get(in.NodeId)
	if !st.Ok() {
		return st
	}
	defer f.put(ino)
	out.SetTimeout(ttl)
	return f.stat(ino, &out.Attr)
}

// SetAttr changes the guest's owner and mode in the ownership record, never
// on the host; size and times change on the host.
func (f *FS) SetAttr(_ <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	if f.readOnly {
		return statusEROFS
	}
	ino, st := f.get(in.NodeId)
	if !st.Ok() {
		return st
	}
	defer f.put(ino)
	if f.pinned(ino) {
		return fuse.EPERM
	}

	if in.Valid&fuse.FATTR_SIZE != 0 {
		if st := f.truncate(ino, in); !st.Ok() {
			return st
		}
	}
	if in.Valid&(fuse.FATTR_ATIME|fuse.FATTR_MTIME|fuse.FATTR_ATIME_NOW|fuse.FATTR_MTIME_NOW) != 0 {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		switch {
		case in.Valid&fuse.FATTR_ATIME_NOW != 0:
			ts[0].Nsec = unix.UTIME_NOW
		case in.Valid&fuse.FATTR_ATIME != 0:
			ts[0] = unix.Timespec{Sec: int64(min(in.Atime, math.MaxInt64)), Nsec: int64(in.Atimensec % 1e9)}
		}
		switch {
		case in.Valid&fuse.FATTR_MTIME_NOW != 0:
			ts[1].Nsec = unix.UTIME_NOW
		case in.Valid&fuse.FATTR_MTIME != 0:
			ts[1] = unix.Timespec{Sec: int64(min(in.Mtime, math.MaxInt64)), Nsec: int64(in.Mtimensec % 1e9)}
		}
		if err := unix.UtimesNanoAt(ino.fd, "", ts, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return errno(err)
		}
	}
	if in.Valid&(fuse.FATTR_MODE|fuse.FATTR_UID|fuse.FATTR_GID) != 0 && ino.typ != syscall.S_IFLNK {
		var cur fuse.Attr
		if st := f.stat(ino, &cur); !st.Ok() {
			return st
		}
		o := override{uid: cur.Uid, gid: cur.Gid, mode: cur.Mode, rdev: cur.Rdev}
		if in.Valid&fuse.FATTR_MODE != 0 {
			o.mode = cur.Mode&syscall.S_IFMT | in.Mode&07777
		}
		if in.Valid&fuse.FATTR_UID != 0 {
			o.uid = in.Uid
		}
		if in.Valid&fuse.FATTR_GID != 0 {
			o.gid = in.Gid
		}
		if st := f.writeOverride(ino, -1, o); !st.Ok() {
			return st
		}
	}
	out.SetTimeout(ttl)
	return f.stat(ino, &out.Attr)
}

// truncate sets the size of a regular file through the request's handle
// when it is writable, or a reopened fd.
func (f *FS) truncate(ino *inode, in *fuse.SetAttrIn) fuse.Status {
	switch {
	case ino.typ == syscall.S_IFDIR:
		return fuse.Status(syscall.EISDIR)
	case ino.typ != syscall.S_IFREG:
		return fuse.EINVAL
	case in.Size > math.MaxInt64:
		return fuse.Status(syscall.EFBIG)
	}
	fd := -1
	if fh, ok := in.GetFh(); ok {
		if h, st := f.handle(fh, false); st.Ok() {
			defer f.putHandle(h)
			if h.writable {
				fd = h.fd
			}
		}
	}
	if fd < 0 {
		var err error
		if fd, err = f.reopen(ino, unix.O_WRONLY); err != nil {
			return errno(err)
		}
		defer unix.Close(fd)
	}
	return f.ftruncate(fd, int64(in.Size))
}

// ftruncate sets the size of the regular file open as fd within the
// quota.
func (f *FS) ftruncate(fd int, size int64) fuse.Status {
	return f.quota.resize(fd, func(int64) int64 { return size }, nil, func() fuse.Status {
		return errno(unix.Ftruncate(fd, size))
	})
}

func (f *FS) Readlink(_ <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	ino, st := f.get(h.NodeId)
	if !st.Ok() {
		return nil, st
	}
	defer f.put(ino)
	if ino.typ != syscall.S_IFLNK {
		return nil, fuse.EINVAL
	}
	buf := make([]byte, pathMax)
	n, err := unix.Readlinkat(ino.fd, "", buf)
	if err != nil {
		return nil, errno(err)
	}
	return buf[:n], fuse.OK
}

// created admits the object just made at name in parent and records the
// guest's ownership o for it (through fd, when not -1); on failure the
// object is removed again.
func (f *FS) created(parent *inode, name string, fd int, o override, out *fuse.EntryOut) (*inode, fuse.Status) {
	undo := func() {
		flags := 0
		if o.mode&syscall.S_IFMT == syscall.S_IFDIR {
			flags = unix.AT_REMOVEDIR
		}
		unix.Unlinkat(parent.fd, name, flags)
	}
	pfd, err := f.openat2(parent.fd, name, unix.O_PATH, 0)
	if err != nil {
		undo()
		return nil, errno(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		unix.Close(pfd)
		undo()
		return nil, errno(err)
	}
	ino, s := f.admit(parent, name, pfd, &st, override{})
	if !s.Ok() {
		undo()
		return nil, s
	}
	if s := f.writeOverride(ino, fd, o); !s.Ok() {
		f.Forget(ino.id, 1)
		undo()
		return nil, s
	}
	return ino, f.entry(ino, out)
}

// newOwner is the ownership of a new object of mode made by the caller in
// parent: a set-group-ID directory passes on its group (and, to
// directories, the bit).
func (f *FS) newOwner(parent *inode, caller fuse.Caller, mode uint32) override {
	o := override{uid: caller.Uid, gid: caller.Gid, mode: mode}
	var pa fuse.Attr
	if f.stat(parent, &pa).Ok() && pa.Mode&syscall.S_ISGID != 0 {
		o.gid = pa.Gid
		if mode&syscall.S_IFMT == syscall.S_IFDIR {
			o.mode |= syscall.S_ISGID
		}
	}
	return o
}

// hostMode is the host permission of a new object: the guest's
// permission bits without set-ID or sticky bits, readable and writable
// (and for directories searchable) by the host user.
func hostMode(mode uint32) uint32 {
	if mode&syscall.S_IFMT == syscall.S_IFDIR {
		return mode&0o777 | 0o700
	}
	return mode&0o777 | 0o600
}

// Mknod creates every type as a regular file on the host and records the
// guest's type (device, FIFO, socket) and device number in the ownership
// record, so host device nodes are never made or opened.
func (f *FS) Mknod(_ <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	if f.readOnly {
		return statusEROFS
	}
	if st := checkName(name); !st.Ok() {
		return st
	}
	mode := in.Mode
	switch mode & syscall.S_IFMT {
	case 0:
		mode |= syscall.S_IFREG
	case syscall.S_IFREG, syscall.S_IFCHR, syscall.S_IFBLK, syscall.S_IFIFO, syscall.S_IFSOCK:
	default:
		return fuse.EINVAL
	}
	parent, st := f.getDir(in.NodeId)
	if !st.Ok() {
		return st
	}
	defer f.put(parent)
	if f.pinned(parent) {
		return fuse.EPERM
	}
	fd, err := f.openat2(parent.fd, name, unix.O_CREAT|unix.O_EXCL|unix.O_RDONLY, hostMode(mode))
	if err != nil {
		return errno(err)
	}
	defer unix.Close(fd)
	o := f.newOwner(parent, in.Caller, mode&(syscall.S_IFMT|07777))
	if t := mode & syscall.S_IFMT; t == syscall.S_IFCHR || t == syscall.S_IFBLK {
		o.rdev = in.Rdev
	}
	_, st = f.created(parent, name, fd, o, out)
	return st
}

func (f *FS) Mkdir(_ <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	parent, st := f.changeDir(in.NodeId, name)
	if !st.Ok() {
		return st
	}
	defer f.put(parent)
	mode := syscall.S_IFDIR | in.Mode&07777
	if err := unix.Mkdirat(parent.fd, name, hostMode(mode)); err != nil {
		return errno(err)
	}
	_, st = f.created(parent, name, -1, f.newOwner(parent, in.Caller, mode), out)
	return st
}

// Symlink stores target as given: the guest resolves it, the host never
// follows it. Symlinks carry no ownership record.
func (f *FS) Symlink(_ <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	if f.readOnly {
		return statusEROFS
	}
	if st := checkName(name); !st.Ok() {
		return st
	}
	if target == "" || strings.IndexByte(target, 0) >= 0 {
		return fuse.EINVAL
	}
	if len(target) >= pathMax {
		return fuse.Status(syscall.ENAMETOOLONG)
	}
	parent, st := f.getDir(h.NodeId)
	if !st.Ok() {
		return st
	}
	defer f.put(parent)
	if f.pinned(parent) {
		return fuse.EPERM
	}
	if err := unix.Symlinkat(target, parent.fd, name); err != nil {
		return errno(err)
	}
	_, st = f.created(parent, name, -1, override{mode: syscall.S_IFLNK | 0o777}, out)
	return st
}

func (f *FS) Unlink(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return f.remove(h, name, 0)
}

func (f *FS) Rmdir(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return f.remove(h, name, unix.AT_REMOVEDIR)
}

func (f *FS) remove(h *fuse.InHeader, name string, flags int) fuse.Status {
	parent, st := f.changeDir(h.NodeId, name)
	if !st.Ok() {
		return st
	}
	defer f.put(parent)
	var err error
	op := func() bool {
		err = unix.Unlinkat(parent.fd, name, flags)
		return err == nil
	}
	if flags&unix.AT_REMOVEDIR != 0 {
		op() // directories take no quota
	} else {
		f.quota.removing(parent.fd, name, op)
	}
	return errno(err)
}

// Rename supports RENAME_NOREPLACE and RENAME_EXCHANGE; both directories
// must be nodes of this share.
func (f *FS) Rename(_ <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	if f.readOnly {
		return statusEROFS
	}
	if st := checkName(oldName); !st.Ok() {
		return st
	}
	if st := checkName(newName); !st.Ok() {
		return st
	}
	if in.Flags&^(unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE) != 0 {
		return fuse.EINVAL
	}
	od, st := f.getDir(in.NodeId)
	if !st.Ok() {
		return st
	}
	defer f.put(od)
	nd, st := f.getDir(in.Newdir)
	if !st.Ok() {
		return st
	}
	defer f.put(nd)
	if f.pinned(od) || f.pinned(nd) {
		return fuse.EPERM
	}
	var err error
	op := func() bool {
		err = unix.Renameat2(od.fd, oldName, nd.fd, newName, uint(in.Flags))
		return err == nil
	}
	if in.Flags&unix.RENAME_EXCHANGE != 0 {
		op()
	} else {
		f.quota.removing(nd.fd, newName, op) // the file replaced, if any
	}
	if err != nil {
		return errno(err)
	}
	f.renamed(nd, newName)
	if in.Flags&unix.RENAME_EXCHANGE != 0 {
		f.renamed(od, oldName)
	}
	return fuse.OK
}

// renamed updates the name of the inode now at name in dir, if any.
func (f *FS) renamed(dir *inode, name string) {
	var st unix.Stat_t
	if unix.Fstatat(dir.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if ino := f.byKey[keyOf(&st)]; ino != nil {
		f.setParent(ino, dir, name)
	}
}

// Link makes a new name for a non-directory node of this share. linkat
// without AT_EMPTY_PATH (which needs CAP_DAC_READ_SEARCH) links the
// source's last known name; the new name must then be the source object,
// or it is removed again and the request fails with ESTALE.
func (f *FS) Link(_ <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	if f.readOnly {
		return statusEROFS
	}
	if st := checkName(name); !st.Ok() {
		return st
	}
	src, st := f.get(in.Oldnodeid)
	if !st.Ok() {
		return st
	}
	defer f.put(src)
	if src.typ == syscall.S_IFDIR {
		return fuse.EPERM
	}
	parent, st := f.getDir(in.NodeId)
	if !st.Ok() {
		return st
	}
	defer f.put(parent)
	if f.pinned(parent) {
		return fuse.EPERM
	}

	f.mu.Lock()
	sp, sname := src.parent, src.name
	if sp != nil {
		sp.busy++
	}
	f.mu.Unlock()
	if sp == nil {
		return statusESTALE
	}
	defer f.put(sp)
	if err := unix.Linkat(sp.fd, sname, parent.fd, name, 0); err != nil {
		return errno(err)
	}
	var st2 unix.Stat_t
	if err := unix.Fstatat(parent.fd, name, &st2, unix.AT_SYMLINK_NOFOLLOW); err != nil || keyOf(&st2) != src.key {
		unix.Unlinkat(parent.fd, name, 0)
		return statusESTALE
	}
	f.mu.Lock()
	src.lookups++
	f.mu.Unlock()
	return f.entry(src, out)
}

// openFlags is the host open(2) access mode and flags for a guest's open
// flags: O_APPEND and the sync flags pass; O_CREAT, O_EXCL, O_TRUNC (done
// separately), O_DIRECT, O_NOATIME, O_PATH and the like do not.
func openFlags(flags uint32) (int, bool, fuse.Status) {
	acc := int(flags & syscall.O_ACCMODE)
	if acc == syscall.O_ACCMODE {
		return 0, false, fuse.EINVAL
	}
	return acc | int(flags)&(unix.O_APPEND|unix.O_SYNC|unix.O_DSYNC), acc != syscall.O_RDONLY, fuse.OK
}

func isWriteOpen(flags uint32) bool {
	return flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&(syscall.O_TRUNC|syscall.O_CREAT) != 0
}

// Open opens regular files only: the guest kernel handles its own device
// nodes and FIFOs (which are regular files here), and host ones are never
// opened.
func (f *FS) Open(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if f.readOnly && isWriteOpen(in.Flags) {
		return statusEROFS
	}
	flags, writable, st := openFlags(in.Flags)
	if !st.Ok() {
		return st
	}
	trunc := in.Flags&syscall.O_TRUNC != 0
	if trunc && !writable {
		return fuse.EINVAL
	}
	ino, st := f.get(in.NodeId)
	if !st.Ok() {
		return st
	}
	defer f.put(ino)
	switch ino.typ {
	case syscall.S_IFREG:
	case syscall.S_IFDIR:
		return fuse.Status(syscall.EISDIR)
	case syscall.S_IFLNK:
		return fuse.Status(syscall.ELOOP)
	default:
		return fuse.Status(syscall.ENXIO)
	}
	if f.handlesFull() {
		return statusEMFILE
	}
	fd, err := f.reopen(ino, flags)
	if err != nil {
		return errno(err)
	}
	if trunc {
		if st := f.ftruncate(fd, 0); !st.Ok() {
			unix.Close(fd)
			return st
		}
	}
	out.Fh, st = f.newHandle(fd, false, writable)
	return st
}

// Create opens name in the parent, creating a regular file if there is
// none; an existing symlink or non-regular file is refused.
func (f *FS) Create(_ <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	if f.readOnly {
		return statusEROFS
	}
	if st := checkName(name); !st.Ok() {
		return st
	}
	flags, writable, st := openFlags(in.Flags)
	if !st.Ok() {
		return st
	}
	parent, st := f.getDir(in.NodeId)
	if !st.Ok() {
		return st
	}
	defer f.put(parent)
	if f.hidden(parent, name) {
		return fuse.EPERM
	}
	if f.handlesFull() {
		return statusEMFILE
	}
	mode := syscall.S_IFREG | in.Mode&07777
	made := true
	fd, err := f.openat2(parent.fd, name, flags|unix.O_CREAT|unix.O_EXCL|unix.O_NONBLOCK, hostMode(mode))
	if err == unix.EEXIST && in.Flags&syscall.O_EXCL == 0 {
		made = false
		fd, err = f.openat2(parent.fd, name, flags|unix.O_NONBLOCK, 0)
	}
	if err != nil {
		return errno(err)
	}
	var hst unix.Stat_t
	if err := unix.Fstat(fd, &hst); err != nil || hst.Mode&syscall.S_IFMT != syscall.S_IFREG {
		unix.Close(fd)
		return fuse.EACCES
	}
	if !made && in.Flags&syscall.O_TRUNC != 0 {
		st := fuse.EINVAL // as Open: O_TRUNC needs write access
		if writable {
			st = f.ftruncate(fd, 0)
		}
		if !st.Ok() {
			unix.Close(fd)
			return st
		}
	}
	var ino *inode
	if made {
		ino, st = f.created(parent, name, fd, f.newOwner(parent, in.Caller, mode), &out.EntryOut)
	} else if ino, st = f.lookupAt(parent, name); st.Ok() {
		if ino.key != keyOf(&hst) {
			f.Forget(ino.id, 1)
			st = statusESTALE
		} else {
			st = f.entry(ino, &out.EntryOut)
		}
	}
	if !st.Ok() {
		unix.Close(fd)
		return st
	}
	out.OpenOut.Fh, st = f.newHandle(fd, false, writable)
	if !st.Ok() {
		f.Forget(ino.id, 1)
		out.EntryOut = fuse.EntryOut{}
	}
	return st
}

// offset converts a guest file offset.
func offset(off uint64) (int64, fuse.Status) {
	if off > math.MaxInt64 {
		return 0, fuse.EINVAL
	}
	return int64(off), fuse.OK
}

func (f *FS) Read(_ <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	off, st := offset(in.Offset)
	if !st.Ok() {
		return nil, st
	}
	h, st := f.handle(in.Fh, false)
	if !st.Ok() {
		return nil, st
	}
	defer f.putHandle(h)
	buf = buf[:min(len(buf), int(in.Size))]
	n, err := unix.Pread(h.fd, buf, off)
	if err != nil {
		return nil, errno(err)
	}
	return fuse.ReadResultData(buf[:n]), fuse.OK
}

func (f *FS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	return f.Writev(cancel, in, [][]byte{data})
}

func (f *FS) Writev(_ <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	if f.readOnly {
		return 0, statusEROFS
	}
	off, st := offset(in.Offset)
	if !st.Ok() {
		return 0, st
	}
	h, st := f.handle(in.Fh, false)
	if !st.Ok() {
		return 0, st
	}
	defer f.putHandle(h)
	var total int64
	for _, b := range data {
		total += int64(len(b))
	}
	// start is where the write lands: the end of the file for an
	// O_APPEND handle, where pwritev ignores the offset.
	start := func(size int64) int64 {
		if fl, err := unix.FcntlInt(uintptr(h.fd), unix.F_GETFL, 0); err == nil && fl&unix.O_APPEND != 0 {
			return size
		}
		return off
	}
	var n int
	st = f.quota.resize(h.fd, func(size int64) int64 { return start(size) + total },
		func(size, avail int64) bool {
			// Write what fits; the guest retries the rest and gets ENOSPC.
			keep := size + avail - start(size)
			if keep <= 0 {
				return false
			}
			data = cut(data, keep)
			return true
		},
		func() fuse.Status {
			var err error
			n, err = unix.Pwritev(h.fd, data, off)
			return errno(err)
		})
	if !st.Ok() {
		return 0, st
	}
	return uint32(n), fuse.OK
}

// cut shortens data to its first n bytes.
func cut(data [][]byte, n int64) [][]byte {
	var out [][]byte
	for _, b := range data {
		if n <= 0 {
			break
		}
		b = b[:min(int64(len(b)), n)]
		out = append(out, b)
		n -= int64(len(b))
	}
	return out
}

func (f *FS) Release(_ <-chan struct{}, in *fuse.ReleaseIn) { f.release(in.Fh, false) }

func (f *FS) ReleaseDir(in *fuse.ReleaseIn) { f.release(in.Fh, true) }

// Flush has nothing to do: locks are not offered and writes are not
// buffered.
func (f *FS) Flush(_ <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	h, st := f.handle(in.Fh, false)
	if st.Ok() {
		f.putHandle(h)
	}
	return st
}

func (f *FS) Fsync(_ <-chan struct{}, in *fuse.FsyncIn) fuse.Status { return f.fsync(in, false) }

func (f *FS) FsyncDir(_ <-chan struct{}, in *fuse.FsyncIn) fuse.Status { return f.fsync(in, true) }

func (f *FS) fsync(in *fuse.FsyncIn, dir bool) fuse.Status {
	h, st := f.handle(in.Fh, dir)
	if !st.Ok() {
		return st
	}
	defer f.putHandle(h)
	if in.FsyncFlags&1 != 0 { // FUSE_FSYNC_FDATASYNC
		return errno(unix.Fdatasync(h.fd))
	}
	return errno(unix.Fsync(h.fd))
}

func (f *FS) Fallocate(_ <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	if f.readOnly {
		return statusEROFS
	}
	off, st := offset(in.Offset)
	if !st.Ok() {
		return st
	}
	n, st := offset(in.Length)
	if !st.Ok() {
		return st
	}
	h, st := f.handle(in.Fh, false)
	if !st.Ok() {
		return st
	}
	defer f.putHandle(h)
	want := func(size int64) int64 {
		switch {
		case in.Mode&unix.FALLOC_FL_INSERT_RANGE != 0:
			return size + n
		case in.Mode&unix.FALLOC_FL_KEEP_SIZE != 0, in.Mode&unix.FALLOC_FL_COLLAPSE_RANGE != 0:
			return size
		}
		return max(size, off+n)
	}
	if f.quota.limit > 0 && in.Mode&unix.FALLOC_FL_KEEP_SIZE != 0 && in.Mode&unix.FALLOC_FL_PUNCH_HOLE == 0 {
		// Blocks kept beyond the end of the file would escape the
		// quota, which counts sizes.
		want = func(size int64) int64 {
			if off+n > size {
				return math.MaxInt64
			}
			return size
		}
	}
	return f.quota.resize(h.fd, want, nil, func() fuse.Status {
		return errno(unix.Fallocate(h.fd, in.Mode, off, n))
	})
}

func (f *FS) CopyFileRange(_ <-chan struct{}, in *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	if f.readOnly {
		return 0, statusEROFS
	}
	offIn, st := offset(in.OffIn)
	if !st.Ok() {
		return 0, st
	}
	offOut, st := offset(in.OffOut)
	if !st.Ok() {
		return 0, st
	}
	if in.Flags != 0 {
		return 0, fuse.EINVAL
	}
	src, st := f.handle(in.FhIn, false)
	if !st.Ok() {
		return 0, st
	}
	defer f.putHandle(src)
	dst, st := f.handle(in.FhOut, false)
	if !st.Ok() {
		return 0, st
	}
	defer f.putHandle(dst)
	size := int64(min(in.Len, 1<<30))
	var n int
	st = f.quota.resize(dst.fd, func(cur int64) int64 { return offOut + size },
		func(cur, avail int64) bool {
			size = cur + avail - offOut
			return size > 0
		},
		func() fuse.Status {
			var err error
			n, err = unix.CopyFileRange(src.fd, &offIn, dst.fd, &offOut, int(size), 0)
			return errno(err)
		})
	if !st.Ok() {
		return 0, st
	}
	return uint32(n), fuse.OK
}

// Lseek answers SEEK_DATA and SEEK_HOLE, the only whence values the guest
// kernel forwards.
func (f *FS) Lseek(_ <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	if in.Whence != unix.SEEK_DATA && in.Whence != unix.SEEK_HOLE {
		return fuse.EINVAL
	}
	off, st := offset(in.Offset)
	if !st.Ok() {
		return st
	}
	h, st := f.handle(in.Fh, false)
	if !st.Ok() {
		return st
	}
	defer f.putHandle(h)
	n, err := unix.Seek(h.fd, off, int(in.Whence))
	if err != nil {
		return errno(err)
	}
	out.Offset = uint64(n)
	return fuse.OK
}

func (f *FS) OpenDir(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	ino, st := f.getDir(in.NodeId)
	if !st.Ok() {
		return st
	}
	defer f.put(ino)
	if f.handlesFull() {
		return statusEMFILE
	}
	fd, err := f.reopen(ino, unix.O_RDONLY)
	if err != nil {
		return errno(err)
	}
	out.Fh, st = f.newHandle(fd, true, false)
	if st.Ok() && f.pinned(ino) {
		f.mu.Lock()
		f.handles[out.Fh].only = f.onlyName
		f.mu.Unlock()
	}
	return st
}

// dirBufSize is the getdents64 buffer of a directory handle.
const dirBufSize = 16 << 10

// ReadDir lists host entries with their host inode numbers and types; a
// type the ownership record changes shows on LOOKUP.
func (f *FS) ReadDir(_ <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	h, st := f.handle(in.Fh, true)
	if !st.Ok() {
		return st
	}
	defer f.putHandle(h)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.dirBuf == nil {
		h.dirBuf = make([]byte, dirBufSize)
	}
	if in.Offset != h.dirOff {
		off, st := offset(in.Offset)
		if !st.Ok() {
			return st
		}
		if _, err := unix.Seek(h.fd, off, 0); err != nil {
			return errno(err)
		}
		h.dirOff, h.dirPos, h.dirEnd = in.Offset, 0, 0
	}
	for {
		if h.dirPos >= h.dirEnd {
			n, err := unix.Getdents(h.fd, h.dirBuf)
			if err != nil {
				return errno(err)
			}
			if n <= 0 {
				return fuse.OK
			}
			h.dirPos, h.dirEnd = 0, n
		}
		// struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, name.
		b := h.dirBuf[h.dirPos:h.dirEnd]
		if len(b) < 19 {
			return fuse.EIO
		}
		reclen := int(uint16(b[16]) | uint16(b[17])<<8)
		if reclen < 19 || reclen > len(b) {
			return fuse.EIO
		}
		nameb := b[19:reclen]
		if i := bytes.IndexByte(nameb, 0); i >= 0 {
			nameb = nameb[:i]
		}
		e := fuse.DirEntry{
			Ino:  le64(b[0:]),
			Off:  le64(b[8:]),
			Mode: uint32(b[18]) << 12,
			Name: string(nameb),
		}
		// A one-file share lists its file only.
		if h.only == "" || e.Name == h.only {
			if !out.AddDirEntry(e) {
				return fuse.OK
			}
		}
		h.dirPos += reclen
		h.dirOff = e.Off
	}
}

func le64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// ReadDirPlus is not offered: each entry would grant a lookup.
func (f *FS) ReadDirPlus(<-chan struct{}, *fuse.ReadIn, *fuse.DirEntryList) fuse.Status {
	return fuse.ENOSYS
}

func (f *FS) StatFs(_ <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	ino, st := f.get(h.NodeId)
	if !st.Ok() {
		return st
	}
	defer f.put(ino)
	var s unix.Statfs_t
	if err := unix.Fstatfs(ino.fd, &s); err != nil {
		return errno(err)
	}
	*out = fuse.StatfsOut{
		Blocks: s.Blocks, Bfree: s.Bfree, Bavail: s.Bavail, Files: s.Files, Ffree: s.Ffree,
		Bsize: uint32(s.Bsize), NameLen: uint32(s.Namelen), Frsize: uint32(s.Frsize),
	}
	f.quota.statfs(out)
	return fuse.OK
}

// Access checks the guest's view of the mode for the caller; root passes
// except for execution of a file no one may execute.
func (f *FS) Access(_ <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	ino, st := f.get(in.NodeId)
	if !st.Ok() {
		return st
	}
	defer f.put(ino)
	var a fuse.Attr
	if st := f.stat(ino, &a); !st.Ok() {
		return st
	}
	if f.readOnly && in.Mask&unix.W_OK != 0 {
		return statusEROFS
	}
	mask := in.Mask & 7
	if in.Uid == 0 {
		if mask&unix.X_OK != 0 && a.Mode&syscall.S_IFMT != syscall.S_IFDIR && a.Mode&0o111 == 0 {
			return fuse.EACCES
		}
		return fuse.OK
	}
	perm := a.Mode & 7
	switch {
	case in.Uid == a.Uid:
		perm = a.Mode >> 6 & 7
	case in.Gid == a.Gid:
		perm = a.Mode >> 3 & 7
	}
	if mask&^perm != 0 {
		return fuse.EACCES
	}
	return fuse.OK
}

// changeDir returns the directory node in which a guest request adds or
// removes the entry name, after the checks every such request shares: a
// writable share, a valid name, a directory of this share, and not the
// pinned root of a one-file share. The caller puts the node.
func (f *FS) changeDir(node uint64, name string) (*inode, fuse.Status) {
	if f.readOnly {
		return nil, statusEROFS
	}
	if st := checkName(name); !st.Ok() {
		return nil, st
	}
	parent, st := f.getDir(node)
	if !st.Ok() {
		return nil, st
	}
	if f.pinned(parent) {
		f.put(parent)
		return nil, fuse.EPERM
	}
	return parent, fuse.OK
}

// checkXattrName validates an xattr name; hidden names are refused by the
// callers.
func checkXattrName(attr string) fuse.Status {
	if attr == "" || len(attr) > xattrNameMax || strings.IndexByte(attr, 0) >= 0 {
		return fuse.Status(syscall.ERANGE)
	}
	return fuse.OK
}

// SetXAttr allows the user.* namespace only (other namespaces would set
// host ACLs or be refused by the host anyway), except user.containers.*.
func (f *FS) SetXAttr(_ <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	if f.readOnly {
		return statusEROFS // before any other check, as every mutating op
	}
	if len(data) > xattrSizeMax {
		return fuse.Status(syscall.E2BIG)
	}
	return f.changeXattr(in.NodeId, attr, func(fd int) error {
		return unix.Fsetxattr(fd, attr, data, int(in.Flags)&(unix.XATTR_CREATE|unix.XATTR_REPLACE))
	})
}

// changeXattr runs op on an xattr-capable descriptor of node after the
// checks every xattr change shares: a writable share, a valid name in the
// user.* namespace but not the hidden user.containers.* one, and a node the
// guest may change.
func (f *FS) changeXattr(node uint64, attr string, op func(fd int) error) fuse.Status {
	if f.readOnly {
		return statusEROFS
	}
	if st := checkXattrName(attr); !st.Ok() {
		return st
	}
	if strings.HasPrefix(attr, hiddenXattrPrefix) {
		return fuse.EPERM
	}
	if !strings.HasPrefix(attr, "user.") {
		return fuse.Status(syscall.EOPNOTSUPP)
	}
	ino, st := f.get(node)
	if !st.Ok() {
		return st
	}
	defer f.put(ino)
	if f.pinned(ino) {
		return fuse.EPERM
	}
	fd, err := f.xattrFD(ino)
	if err != nil {
		return errno(err)
	}
	defer unix.Close(fd)
	return errno(op(fd))
}

func (f *FS) GetXAttr(_ <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	if st := checkXattrName(attr); !st.Ok() {
		return 0, st
	}
	if strings.HasPrefix(attr, hiddenXattrPrefix) {
		return 0, fuse.ENOATTR
	}
	return f.readXattr(h.NodeId, fuse.ENOATTR, func(fd int) (uint32, fuse.Status) {
		n, err := unix.Fgetxattr(fd, attr, dest[:min(len(dest), xattrSizeMax)])
		if err != nil {
			return 0, errno(err)
		}
		return uint32(n), fuse.OK
	})
}

func (f *FS) ListXAttr(_ <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	return f.readXattr(h.NodeId, fuse.OK, func(fd int) (uint32, fuse.Status) {
		buf := make([]byte, xattrSizeMax)
		n, err := unix.Flistxattr(fd, buf)
		if err != nil {
			return 0, errno(err)
		}
		var list []byte
		for name := range strings.SplitSeq(string(buf[:n]), "\x00") {
			if name != "" && !strings.HasPrefix(name, hiddenXattrPrefix) {
				list = append(append(list, name...), 0)
			}
		}
		if len(dest) == 0 {
			return uint32(len(list)), fuse.OK
		}
		if len(dest) < len(list) {
			return 0, fuse.Status(syscall.ERANGE)
		}
		return uint32(copy(dest, list)), fuse.OK
	})
}

// readXattr runs op on an xattr-capable descriptor of node. Nodes that have
// none to show (neither regular files nor directories, or the pinned root
// of a one-file share) answer none instead.
func (f *FS) readXattr(node uint64, none fuse.Status, op func(fd int) (uint32, fuse.Status)) (uint32, fuse.Status) {
	ino, st := f.get(node)
	if !st.Ok() {
		return 0, st
	}
	defer f.put(ino)
	if (ino.typ != syscall.S_IFREG && ino.typ != syscall.S_IFDIR) || f.pinned(ino) {
		return 0, none
	}
	fd, err := f.xattrFD(ino)
	if err != nil {
		return 0, errno(err)
	}
	defer unix.Close(fd)
	return op(fd)
}

func (f *FS) RemoveXAttr(_ <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	return f.changeXattr(h.NodeId, attr, func(fd int) error { return unix.Fremovexattr(fd, attr) })
}
