package rootfs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/erofs/go-erofs"
)

// writeImage writes the tree rooted at root as an EROFS image at dst,
// through dst+".tmp" and a rename. Regular file data is read from the
// inodes' data functions, one file at a time.
func writeImage(ctx context.Context, root *inode, dst string) error {
	tmp := dst + ".tmp"
	if err := writeImageFile(ctx, root, tmp); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

func writeImageFile(ctx context.Context, root *inode, tmp string) error {
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	t := newTreeFS(root, ctx.Err)
	iw := newImageWriter(f)
	w := erofs.Create(iw,
		erofs.WithBuildTime(t.buildTime, 0),
		erofs.WithTempDir(filepath.Dir(tmp)),
	)
	if err := w.CopyFrom(t); err != nil {
		return fmt.Errorf("erofs copy: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("erofs write: %w", err)
	}
	if err := iw.Flush(); err != nil {
		return fmt.Errorf("erofs write: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := patchHardlinks(f, t.links); err != nil {
		return fmt.Errorf("hardlinks: %w", err)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}
