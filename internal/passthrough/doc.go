// Package passthrough serves a host directory to a guest as a FUSE file
// system (a fuse.RawFileSystem for the virtio-fs device) that the guest
// cannot leave.
//
// # Threat model
//
// The guest driver is hostile: it may send any request with any node ID,
// file handle, name or size, in any order. Whatever it sends, the file
// system must not read, create, change or remove a host object outside the
// share, nor open a host device node, nor grow without bound. Changes made
// on the host side while the share is served (say, a host process moving a
// directory out of the share) are trusted and out of scope.
//
// # File descriptor scheme
//
// No host path string is kept or resolved. The share root is opened once
// with O_PATH|O_DIRECTORY, and every inode holds an O_PATH|O_NOFOLLOW fd of
// its host object, found with openat2 of one validated name beneath the
// parent's fd (RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS|
// RESOLVE_NO_XDEV). Every name-taking operation (mkdirat, symlinkat,
// unlinkat, renameat2, linkat, openat2 with O_CREAT) is made relative to a
// directory inode's fd; attributes use fstat, utimensat with AT_EMPTY_PATH
// and readlinkat with an empty name on the inode's own fd.
//
// O_PATH fds cannot be read, written or carry xattr calls, and reopening
// them through /proc/self/fd is a magic link, which is not used. So a
// directory is reopened as "." beneath its own fd, and a non-directory by
// the name it was last seen under (LOOKUP, CREATE, RENAME) beneath its
// parent's fd, after which the new fd must be the same (dev, ino) or the
// request fails with ESTALE. A non-directory inode keeps its parent inode
// (not a path) alive for this; directories keep no parent, so there are no
// cycles. LINK works the same way, since linkat with AT_EMPTY_PATH needs
// CAP_DAC_READ_SEARCH: the source's name is linked and the new name must
// turn out to be the source, or it is removed again.
//
// # Names and lookups
//
// A name must be one path component: empty, ".", "..", names with '/' or
// NUL and names longer than 255 bytes fail with EINVAL, except that LOOKUP
// answers ENOENT for "." and ".." (they are never entries of the share;
// the guest kernel resolves them in its dcache and GETPARENT is not
// offered). Mount points below the root are not crossed (EXDEV): a share
// is one host file system, so (dev, ino) identify its objects and the
// guest cannot reach or pin host mounts placed inside the tree.
//
// # Tables and limits
//
// Inodes are keyed by host (dev, ino); since an inode holds an fd of its
// object, the host cannot reuse the pair while the inode exists. Node IDs
// and file handles come from counters and are never reused, so the
// generation is always 0. FORGET lowers a lookup count (never below zero)
// and frees the inode when no lookup, child or request holds it. At most
// Options.MaxInodes inodes (ENFILE beyond) and Options.MaxHandles handles
// (EMFILE beyond) exist per share. Unknown node IDs fail with ESTALE,
// unknown handles with EBADF.
//
// # Ownership without host root
//
// The guest's uid, gid, mode (with the file type) and rdev live in the
// xattr user.containers.override_stat in microsandbox's 20-byte format.
// SETATTR of owner or mode rewrites the record and leaves the host owner
// and mode alone; new objects are made readable and writable by the host
// user, never set-ID. MKNOD makes a regular host file for every type
// (devices, FIFOs, sockets) and the record carries the guest's type, so a
// host device node is never created or opened; OPEN refuses host objects
// other than regular files. Symlinks have no record (Linux keeps user.*
// xattrs off them): their owner cannot be changed and is reported from the
// host. Objects without a record that the host user owns are reported as
// Options.DefaultUID and DefaultGID. The guest can neither read, list, set
// nor remove user.containers.* xattrs, and may set only user.* xattrs.
//
// # Write quota
//
// With Options.QuotaBytes the share counts the apparent size of its
// regular files, each hard-linked file once (directories, symlinks and
// empty files are free). New measures the tree (a bounded walk: beyond a
// million entries or 256 levels it stops, logs, and the count is low);
// afterwards only the guest's requests move the count, so host-side
// changes are not tracked. WRITE, COPY_FILE_RANGE, SETATTR of the size,
// OPEN and CREATE with O_TRUNC and FALLOCATE are measured by the file's
// size before and after; UNLINK and RENAME over a file free its size when
// they remove its last link. Growth beyond the quota fails with ENOSPC
// (what df and dd users expect; EDQUOT would suggest per-user quotas),
// except that a WRITE or COPY_FILE_RANGE crossing the quota does what
// fits and returns a short count, so nothing lands past it. FALLOCATE
// with FALLOC_FL_KEEP_SIZE beyond the end of a file fails with ENOSPC,
// since blocks past the size would not be counted. The space of a file
// unlinked while open counts as freed at once; whatever it grows by
// afterwards stays counted. STATFS reports the quota as the total and
// what is left of it (or the host's free space, if less) as free. These
// operations are serialized share-wide while a quota is set.
//
// # One-file shares
//
// With Options.OnlyName the root directory stands for one regular file in
// it (a bind of a single file): LOOKUP of any other name in the root is
// ENOENT whenever it appeared, READDIR lists that name only, and
// requests that would add, remove or rename entries of the root, or
// change the root's attributes or xattrs, fail with EPERM.
//
// # Read-only shares
//
// With Options.ReadOnly every request that could change the host fails
// with EROFS before any host call, whatever the guest's mount flags.
package passthrough
