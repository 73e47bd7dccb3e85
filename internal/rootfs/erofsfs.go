package rootfs

import (
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/erofs/go-erofs"
)

// treeFS presents an inode tree as the fs.FS that go-erofs's Writer.CopyFrom
// walks. Metadata travels in FileInfo.Sys() as *erofs.Stat, the only exported
// type CopyFrom reads ownership, nlink, rdev and xattrs from.
//
// go-erofs has no notion of hardlinks: it gives every path its own inode. So
// the first name of a multiply-linked inode (in walk order) is presented with
// the data and the full link count, and later names are presented as
// data-less copies whose dirents are re-pointed at the first inode once the
// image is written (see patchHardlinks).
type treeFS struct {
	nodes map[string]*fsNode // fs.FS path ("." for the root) → node
	// links maps a secondary hardlink path to its primary path, both
	// absolute ("/a/b"), for patchHardlinks.
	links     map[string]string
	buildTime uint64
	// cancelled reports why reads should stop (the caller's ctx.Err):
	// go-erofs's CopyFrom and Close take no context, but every file's data
	// passes through treeFile.Read.
	cancelled func() error
}

// fsNode is one path of the tree as go-erofs sees it.
type fsNode struct {
	name      string
	ino       *inode
	nlink     uint32
	secondary bool // a later name of a hardlinked inode: no data
	children  []string
}

var (
	_ fs.ReadDirFS = (*treeFS)(nil)
	_ fs.StatFS    = (*treeFS)(nil)
)

// newTreeFS indexes the tree rooted at root.
func newTreeFS(root *inode, cancelled func() error) *treeFS {
	t := &treeFS{nodes: map[string]*fsNode{}, links: map[string]string{}, cancelled: cancelled}
	links := countLinks(root)
	primary := map[*inode]string{}
	var maxMtime int64
	var walk func(p string, name string, n *inode)
	walk = func(p, name string, n *inode) {
		node := &fsNode{name: name, ino: n, nlink: 1}
		if n.mtime > maxMtime {
			maxMtime = n.mtime
		}
		t.nodes[p] = node
		if !n.isDir() {
			node.nlink = links[n]
			if first, ok := primary[n]; ok {
				node.secondary = true
				node.nlink = 1
				t.links["/"+p] = "/" + first
			} else {
				primary[n] = p
			}
			return
		}
		node.nlink = 2
		for _, c := range n.sortedNames() {
			child := n.children[c]
			if child.ino.isDir() {
				node.nlink++
			}
			node.children = append(node.children, c)
			cp := c
			if p != "." {
				cp = p + "/" + c
			}
			walk(cp, c, child.ino)
		}
	}
	walk(".", ".", root)
	// Inodes whose mtime equals the build time get compact 32-byte inodes;
	// the newest mtime is deterministic for a given tree.
	t.buildTime = uint64(max(maxMtime, 0))
	return t
}

func (t *treeFS) lookup(op, name string) (*fsNode, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	n, ok := t.nodes[name]
	if !ok {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	return n, nil
}

// Open implements fs.FS. Regular files open their data lazily on first Read
// so that go-erofs, which keeps every opened reader until Close, never holds
// more than one host file descriptor at a time.
func (t *treeFS) Open(name string) (fs.File, error) {
	n, err := t.lookup("open", name)
	if err != nil {
		return nil, err
	}
	return &treeFile{node: n, cancelled: t.cancelled}, nil
}

// Stat implements fs.StatFS.
func (t *treeFS) Stat(name string) (fs.FileInfo, error) {
	n, err := t.lookup("stat", name)
	if err != nil {
		return nil, err
	}
	return fileInfo{n}, nil
}

// ReadDir implements fs.ReadDirFS.
func (t *treeFS) ReadDir(name string) ([]fs.DirEntry, error) {
	n, err := t.lookup("readdir", name)
	if err != nil {
		return nil, err
	}
	if !n.ino.isDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: erofs.ErrNotDirectory}
	}
	out := make([]fs.DirEntry, 0, len(n.children))
	for _, c := range n.children {
		cp := c
		if name != "." {
			cp = name + "/" + c
		}
		out = append(out, fs.FileInfoToDirEntry(fileInfo{t.nodes[cp]}))
	}
	return out, nil
}

// ReadLink is the optional interface go-erofs uses for symlink targets.
func (t *treeFS) ReadLink(name string) (string, error) {
	n, err := t.lookup("readlink", name)
	if err != nil {
		return "", err
	}
	return n.ino.target, nil
}

// BuildTime suggests the image build time to go-erofs.
func (t *treeFS) BuildTime() uint64 { return t.buildTime }

type fileInfo struct{ n *fsNode }

func (fi fileInfo) Name() string { return fi.n.name }

func (fi fileInfo) Size() int64 {
	switch {
	case fi.n.secondary:
		return 0
	case fi.n.ino.mode.IsRegular():
		return fi.n.ino.size
	case fi.n.ino.mode&fs.ModeSymlink != 0:
		return int64(len(fi.n.ino.target))
	}
	return 0
}

func (fi fileInfo) Mode() fs.FileMode { return fi.n.ino.mode }
func (fi fileInfo) ModTime() time.Time {
	return time.Unix(fi.n.ino.mtime, int64(fi.n.ino.mtimeNs))
}
func (fi fileInfo) IsDir() bool { return fi.n.ino.isDir() }

func (fi fileInfo) Sys() any {
	ino := fi.n.ino
	return &erofs.Stat{
		Mode:    ino.mode,
		Size:    fi.Size(),
		UID:     ino.uid,
		GID:     ino.gid,
		Mtime:   uint64(max(ino.mtime, 0)),
		MtimeNs: ino.mtimeNs,
		Nlink:   int(fi.n.nlink),
		Rdev:    ino.rdev,
		Xattrs:  erofsXattrs(ino.xattrs),
	}
}

// erofsXattrs maps xattr names to the form go-erofs encodes correctly.
// go-erofs only recognises prefixes ending in "."; the POSIX ACL names
// "system.posix_acl_access" and "system.posix_acl_default" are whole names
// that EROFS stores as name index 2/3 with an empty suffix, which go-erofs
// produces when given the name with a trailing dot.
func erofsXattrs(x map[string]string) map[string]string {
	if len(x) == 0 {
		return nil
	}
	out := make(map[string]string, len(x))
	for k, v := range x {
		if k == "system.posix_acl_access" || k == "system.posix_acl_default" {
			k += "."
		}
		out[k] = v
	}
	return out
}

type treeFile struct {
	node      *fsNode
	cancelled func() error
	r         io.Reader
	closed    bool
	done      bool
}

func (f *treeFile) Stat() (fs.FileInfo, error) { return fileInfo{f.node}, nil }

func (f *treeFile) Read(p []byte) (int, error) {
	if f.closed {
		return 0, fs.ErrClosed
	}
	if f.done || f.node.secondary || !f.node.ino.mode.IsRegular() || f.node.ino.data == nil {
		return 0, io.EOF
	}
	if err := f.cancelled(); err != nil {
		return 0, err
	}
	if f.r == nil {
		r, err := f.node.ino.data()
		if err != nil {
			return 0, fmt.Errorf("open data of %s: %w", f.node.name, err)
		}
		f.r = r
	}
	n, err := f.r.Read(p)
	if err == io.EOF {
		f.done = true
		f.release()
	}
	return n, err
}

func (f *treeFile) release() {
	if c, ok := f.r.(io.Closer); ok {
		_ = c.Close()
	}
	f.r = nil
}

func (f *treeFile) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	f.release()
	return nil
}
