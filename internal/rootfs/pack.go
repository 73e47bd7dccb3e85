package rootfs

import (
	"context"
	"fmt"
)

// Owner is a uid/gid pair.
type Owner struct {
	UID, GID uint32
}

// PackOptions configures PackDir. The zero value keeps host ownership.
type PackOptions struct {
	// Owner, when non-nil, replaces the owner of every entry. An
	// unprivileged user cannot create root-owned files, so a tree prepared
	// without root is typically packed with Owner = &Owner{0, 0}.
	Owner *Owner
}

// PackDir builds a read-only EROFS image at dst from the directory tree src.
// Regular files, directories, symlinks, hardlinks (kept as one inode),
// device nodes, fifos, sockets and xattrs (security.capability included) are
// kept with their mode, uid/gid and mtime. Symlinks are never followed,
// except src itself. The image is written to dst+".tmp" and renamed, and is
// byte-identical for the same tree.
func PackDir(ctx context.Context, src, dst string, opts PackOptions) error {
	root, err := scanDir(ctx, src, opts)
	if err != nil {
		return fmt.Errorf("pack %s: %w", src, err)
	}
	if err := writeImage(ctx, root, dst); err != nil {
		return fmt.Errorf("pack %s: %w", src, err)
	}
	return nil
}
