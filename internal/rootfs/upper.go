package rootfs

import (
	"context"
	"fmt"
	"os"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/ext4"
)

// DefaultUpperSize is the size of an upper image when CreateUpper is given 0.
const DefaultUpperSize int64 = 4 << 30

// UpperLayout names what CreateUpper writes; callers that cache its images
// key them by it. Change it whenever the image's contents change.
const UpperLayout = "ext4-upper-work-v1"

// minUpperSize keeps go-diskfs away from degenerate geometries (one partial
// block group) that it does not lay out correctly.
const minUpperSize int64 = 16 << 20

// CreateUpper creates a sparse ext4 image of sizeBytes (DefaultUpperSize when
// 0) at path, holding the directories upper/ and work/ (mode 0755, owned by
// root) that the guest passes to overlayfs as upperdir and workdir. The image
// is written to path+".tmp" and renamed into place, so path is either absent
// or complete.
func CreateUpper(ctx context.Context, path string, sizeBytes int64) error {
	if sizeBytes == 0 {
		sizeBytes = DefaultUpperSize
	}
	if sizeBytes < minUpperSize {
		return fmt.Errorf("create upper %s: size %d below minimum %d", path, sizeBytes, minUpperSize)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("create upper %s: %w", path, err)
	}
	tmp := path + ".tmp"
	// A stale .tmp from an interrupted run would make CreateFromPath fail
	// (it opens with O_EXCL).
	if err := os.Remove(tmp); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("create upper %s: %w", path, err)
	}
	if err := writeUpper(tmp, sizeBytes); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("create upper %s: %w", path, err)
	}
	if err := ctx.Err(); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("create upper %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("create upper %s: %w", path, err)
	}
	return nil
}

func writeUpper(tmp string, size int64) error {
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	b := file.New(holeSkipper{f}, false)
	fs, err := ext4.Create(b, size, 0, 0, &ext4.Params{
		VolumeName: "msb-upper",
		// dependencies.md §15.4: 4K blocks need this off or the GDT
		// reservation overflows.
		Features: []ext4.FeatureOpt{ext4.WithFeatureReservedGDTBlocksForExpansion(false)},
	})
	if err != nil {
		return fmt.Errorf("mkfs ext4: %w", err)
	}
	// go-diskfs paths are relative (dependencies.md §15.4).
	for _, d := range []string{"upper", "work"} {
		if err := fs.Mkdir(d); err != nil {
			return fmt.Errorf("mkdir %s: %w", d, err)
		}
		if err := fs.Chmod(d, 0o755); err != nil {
			return fmt.Errorf("chmod %s: %w", d, err)
		}
		if err := fs.Chown(d, 0, 0); err != nil {
			return fmt.Errorf("chown %s: %w", d, err)
		}
	}
	if err := fs.Close(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return f.Close()
}
