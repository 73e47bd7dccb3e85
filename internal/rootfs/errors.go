package rootfs

import "errors"

var (
	// ErrUnsafePath is returned when a layer entry names a path that would
	// leave the tree (absolute after cleaning, "..", or through a symlink).
	ErrUnsafePath = errors.New("rootfs: unsafe path")
	// ErrBadHardlink is returned when a layer hardlink points outside the
	// tree, at a missing entry, or at a directory.
	ErrBadHardlink = errors.New("rootfs: bad hardlink")
	// ErrTooLarge is returned when a layer entry exceeds a size limit
	// (header fields, xattr sizes, path lengths, entry counts).
	ErrTooLarge = errors.New("rootfs: entry too large")
	// ErrUnsupported is returned for tar entry types that cannot be
	// represented in the image.
	ErrUnsupported = errors.New("rootfs: unsupported entry")

	// errBadImage reports an EROFS image that patchHardlinks cannot parse
	// (never expected from go-erofs output).
	errBadImage = errors.New("malformed erofs image")
	errNotDir   = errors.New("not a directory")
)
