package rootfs

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

type devIno struct{ dev, ino uint64 }

func scanDir(ctx context.Context, src string, opts PackOptions) (*inode, error) {
	var st unix.Stat_t
	if err := unix.Stat(src, &st); err != nil {
		return nil, &fs.PathError{Op: "stat", Path: src, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, &fs.PathError{Op: "pack", Path: src, Err: errNotDir}
	}
	root, err := hostInode(src, &st, opts)
	if err != nil {
		return nil, err
	}
	seen := map[devIno]*inode{}
	var scan func(dir string, d *inode) error
	scan = func(dir string, d *inode) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return &fs.PathError{Op: "lstat", Path: p, Err: err}
			}
			isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
			key := devIno{uint64(st.Dev), st.Ino}
			if !isDir && st.Nlink > 1 {
				if ino, ok := seen[key]; ok {
					d.children[e.Name()] = &dirent{ino: ino}
					continue
				}
			}
			ino, err := hostInode(p, &st, opts)
			if err != nil {
				return err
			}
			if !isDir && st.Nlink > 1 {
				seen[key] = ino
			}
			d.children[e.Name()] = &dirent{ino: ino}
			if isDir {
				if err := scan(p, ino); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := scan(src, root); err != nil {
		return nil, err
	}
	return root, nil
}

// hostInode converts the lstat result of path p into an inode.
func hostInode(p string, st *unix.Stat_t, opts PackOptions) (*inode, error) {
	n := &inode{
		mode:    UnixToGoMode(st.Mode),
		uid:     st.Uid,
		gid:     st.Gid,
		mtime:   st.Mtim.Sec,
		mtimeNs: uint32(st.Mtim.Nsec),
	}
	if opts.Owner != nil {
		n.uid, n.gid = opts.Owner.UID, opts.Owner.GID
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		n.children = map[string]*dirent{}
	case unix.S_IFREG:
		n.size = st.Size
		n.data = func() (io.Reader, error) { return openData(p) }
	case unix.S_IFLNK:
		t, err := os.Readlink(p)
		if err != nil {
			return nil, err
		}
		n.target = t
	case unix.S_IFCHR, unix.S_IFBLK:
		n.rdev = encodeDev(unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	x, err := readXattrs(p)
	if err != nil {
		return nil, err
	}
	n.xattrs = x
	return n, nil
}

// readXattrs returns every extended attribute of p (not following symlinks).
func readXattrs(p string) (map[string]string, error) {
	size, err := unix.Llistxattr(p, nil)
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil {
		return nil, &fs.PathError{Op: "listxattr", Path: p, Err: err}
	}
	if size == 0 {
		return nil, nil
	}
	buf := make([]byte, size)
	size, err = unix.Llistxattr(p, buf)
	if err != nil {
		return nil, &fs.PathError{Op: "listxattr", Path: p, Err: err}
	}
	out := map[string]string{}
	for _, name := range splitNul(buf[:size]) {
		v, err := lgetxattr(p, name)
		if errors.Is(err, unix.ENODATA) {
			continue // removed while we looked
		}
		if err != nil {
			return nil, &fs.PathError{Op: "getxattr " + name, Path: p, Err: err}
		}
		out[name] = string(v)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func lgetxattr(p, name string) ([]byte, error) {
	for {
		size, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, size)
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew between the two calls
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

func splitNul(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == 0 {
			if i > start {
				out = append(out, string(b[start:i]))
			}
			start = i + 1
		}
	}
	return out
}

// startWriteback asks the kernel to start writing back n bytes of f at off
// without waiting for them (sync_file_range(2) SYNC_FILE_RANGE_WRITE).
// Best effort: the fsync that follows is what makes the image durable.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// dataFile reads a regular file of the source tree through its bare
// descriptor. An *os.File registers every regular file with the runtime's
// poller (fcntl and epoll_ctl calls, all failing or useless for a file)
// and back: for a tree of small files that was as many syscalls again as
// the reads.
type dataFile struct {
	fd   int
	path string
}

func openData(p string) (*dataFile, error) {
	for {
		// O_NOFOLLOW: the walk saw a regular file here; a symlink swapped
		// in since must not make the image carry what it points to.
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: p, Err: err}
		}
		return &dataFile{fd: fd, path: p}, nil
	}
}

func (d *dataFile) Read(b []byte) (int, error) {
	if d.fd < 0 {
		return 0, fs.ErrClosed
	}
	if len(b) == 0 {
		return 0, nil
	}
	for {
		n, err := unix.Read(d.fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, &fs.PathError{Op: "read", Path: d.path, Err: err}
		}
		if n == 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

func (d *dataFile) Close() error {
	if d.fd < 0 {
		return nil
	}
	err := unix.Close(d.fd)
	d.fd = -1
	if err != nil {
		return &fs.PathError{Op: "close", Path: d.path, Err: err}
	}
	return nil
}
