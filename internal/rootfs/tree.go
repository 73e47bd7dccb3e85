package rootfs

import (
	"io"
	"io/fs"
	"sort"
)

// inode is one file in the in-memory tree that both PackDir and
// BuildFromLayers assemble before handing it to go-erofs. Several directory
// entries may share one inode (hardlinks).
type inode struct {
	mode     fs.FileMode // type bits and permissions, Go encoding
	uid, gid uint32
	mtime    int64
	mtimeNs  uint32
	rdev     uint32 // Linux new_encode_dev encoding, as EROFS stores it
	xattrs   map[string]string
	target   string // symlink target
	size     int64  // regular files
	// data opens the content of a regular file of size > 0. The returned
	// reader is read once, sequentially, then closed if it is an io.Closer.
	data     func() (io.Reader, error)
	children map[string]*dirent // directories only
}

// dirent names an inode inside a directory. layer is the index of the layer
// that created the name; whiteouts and opaque markers only remove names from
// lower layers.
type dirent struct {
	ino   *inode
	layer int
}

func newDir(perm fs.FileMode) *inode {
	return &inode{mode: fs.ModeDir | perm, children: map[string]*dirent{}}
}

func (n *inode) isDir() bool { return n.mode.IsDir() }

// sortedNames returns the names of a directory's entries in byte order, the
// order EROFS stores dirents in.
func (n *inode) sortedNames() []string {
	names := make([]string, 0, len(n.children))
	for name := range n.children {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// countLinks walks the tree and returns, for each non-directory inode, how
// many names refer to it.
func countLinks(root *inode) map[*inode]uint32 {
	links := map[*inode]uint32{}
	var walk func(d *inode)
	walk = func(d *inode) {
		for _, de := range d.children {
			if de.ino.isDir() {
				walk(de.ino)
				continue
			}
			links[de.ino]++
		}
	}
	walk(root)
	return links
}
