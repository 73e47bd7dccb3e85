package virtiofs

import (
	"fmt"
	"io"
	"log"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// NewLoopback returns a file system serving the host directory dir
// (go-fuse's loopback node file system). Attribute and entry timeouts are
// zero, so the guest sees host-side changes at once.
func NewLoopback(dir string) (fuse.RawFileSystem, error) {
	root, err := fs.NewLoopbackRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("loopback %s: %w", dir, err)
	}
	return fs.NewNodeFS(root, &fs.Options{Logger: log.New(io.Discard, "", 0)}), nil
}
