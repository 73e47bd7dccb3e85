package passthrough

import "log/slog"

// Options configures a file system. The zero value is a writable share
// with the default limits whose files without an ownership record appear
// owned by root.
type Options struct {
	// ReadOnly refuses every operation that would change the share with
	// EROFS, whatever the guest's mount flags say.
	ReadOnly bool

	// MaxInodes bounds the inodes (each holding one host fd) the share
	// keeps; a lookup or creation beyond it fails with ENFILE. Zero or
	// less means DefaultMaxInodes.
	MaxInodes int
	// MaxHandles bounds the open file and directory handles; an OPEN,
	// OPENDIR or CREATE beyond it fails with EMFILE. Zero or less means
	// DefaultMaxHandles.
	MaxHandles int

	// DefaultUID and DefaultGID are the guest owner reported for files
	// without an ownership record (xattr user.containers.override_stat)
	// that the host user running the file system owns. Files of other
	// host owners report their host IDs.
	DefaultUID, DefaultGID uint32

	// QuotaBytes, if positive, bounds the apparent size of the regular
	// files in the share (hard links counted once): a request that
	// would grow them beyond it fails with ENOSPC, and STATFS reports
	// the quota as the file system's size. New measures the tree once
	// (stopping, and logging, after a million entries); host-side
	// changes made while the share is served are not counted. Zero
	// means no quota.
	QuotaBytes int64

	// OnlyName, if set, narrows the share to one regular file of the
	// root directory, for a bind of a single file: LOOKUP of any other
	// name in the root fails with ENOENT, READDIR of the root lists only
	// it, and every request that would add, remove or rename an entry of
	// the root or change the root itself fails with EPERM. New fails if
	// it is not a regular file.
	OnlyName string

	// Submounts serves the file systems mounted below the root too
	// (otherwise a mount point is not entered: EXDEV), also those mounted
	// while the share is served. For a directory whose owner mounts
	// trusted trees into it, as the containerd shim does with a pod's
	// container roots; names still resolve beneath the root. Not with
	// QuotaBytes (the quota's walk does not count submounts).
	Submounts bool

	// Logger receives rare diagnostics (a failed ownership record). Nil
	// discards them.
	Logger *slog.Logger
}

// Default limits per share.
const (
	DefaultMaxInodes  = 65536
	DefaultMaxHandles = 1024
)
