package virtiofs

// Configuration space layout, struct virtio_fs_config (virtio v1.2 §5.11.4).
const (
	// TagSize is the size of the tag field: UTF-8, NUL-padded, not
	// NUL-terminated when all 36 bytes are used.
	TagSize             = 36
	offTag              = 0
	offNumRequestQueues = TagSize
	configSize          = TagSize + 4
)

// Queue indices (§5.11.2): the hiprio queue, then the request queues.
const hiprioQueue = 0

// FUSE wire layout (Linux include/uapi/linux/fuse.h) used to frame error
// replies that the device writes itself.
const (
	// inHeaderSize is struct fuse_in_header: len, opcode, unique, nodeid,
	// uid, gid, pid, total_extlen, padding.
	inHeaderSize    = 40
	inOffOpcode     = 4
	inOffUnique     = 8
	outHeaderSize   = 16 // struct fuse_out_header: len, error, unique
	fuseOpInit      = 26 // FUSE_INIT
	fuseKernelMajor = 7  // FUSE_KERNEL_VERSION
	// fuseMinMinor is the oldest protocol minor go-fuse serves
	// (_MINIMUM_MINOR_VERSION).
	fuseMinMinor = 12
)

// inSizes is, per FUSE opcode, the in-header plus the fixed request struct
// that follows it (Linux fuse.h) as go-fuse's request parser requires it;
// a shorter request is refused by the device before go-fuse logs it.
// RENAME and SETXATTR are the compat sizes go-fuse uses on Linux (it has
// no FUSE_RENAME_SWAP and does not grant FUSE_SETXATTR_EXT). Opcodes not
// listed, and INIT (checked separately), need only the in-header.
// TestShortRequestsNotLogged checks the table against go-fuse.
var inSizes = [...]uint16{
	2:  inHeaderSize + 8,  // FORGET: fuse_forget_in
	3:  inHeaderSize + 16, // GETATTR: fuse_getattr_in
	4:  inHeaderSize + 88, // SETATTR: fuse_setattr_in
	8:  inHeaderSize + 16, // MKNOD: fuse_mknod_in
	9:  inHeaderSize + 8,  // MKDIR: fuse_mkdir_in
	12: inHeaderSize + 8,  // RENAME: fuse_rename_in
	13: inHeaderSize + 8,  // LINK: fuse_link_in
	14: inHeaderSize + 8,  // OPEN: fuse_open_in
	15: inHeaderSize + 40, // READ: fuse_read_in
	16: inHeaderSize + 40, // WRITE: fuse_write_in
	18: inHeaderSize + 24, // RELEASE: fuse_release_in
	20: inHeaderSize + 16, // FSYNC: fuse_fsync_in
	21: inHeaderSize + 8,  // SETXATTR: compat fuse_setxattr_in
	22: inHeaderSize + 8,  // GETXATTR: fuse_getxattr_in
	23: inHeaderSize + 8,  // LISTXATTR: fuse_getxattr_in
	25: inHeaderSize + 24, // FLUSH: fuse_flush_in
	27: inHeaderSize + 8,  // OPENDIR: fuse_open_in
	28: inHeaderSize + 40, // READDIR: fuse_read_in
	29: inHeaderSize + 24, // RELEASEDIR: fuse_release_in
	30: inHeaderSize + 16, // FSYNCDIR: fuse_fsync_in
	31: inHeaderSize + 48, // GETLK: fuse_lk_in
	32: inHeaderSize + 48, // SETLK: fuse_lk_in
	33: inHeaderSize + 48, // SETLKW: fuse_lk_in
	34: inHeaderSize + 8,  // ACCESS: fuse_access_in
	35: inHeaderSize + 16, // CREATE: fuse_create_in
	36: inHeaderSize + 8,  // INTERRUPT: fuse_interrupt_in
	37: inHeaderSize + 16, // BMAP: fuse_bmap_in
	39: inHeaderSize + 32, // IOCTL: fuse_ioctl_in
	40: inHeaderSize + 24, // POLL: fuse_poll_in
	41: inHeaderSize + 40, // NOTIFY_REPLY: fuse_notify_retrieve_in
	42: inHeaderSize + 8,  // BATCH_FORGET: fuse_batch_forget_in
	43: inHeaderSize + 32, // FALLOCATE: fuse_fallocate_in
	44: inHeaderSize + 40, // READDIRPLUS: fuse_read_in
	45: inHeaderSize + 16, // RENAME2: fuse_rename2_in
	46: inHeaderSize + 24, // LSEEK: fuse_lseek_in
	47: inHeaderSize + 56, // COPY_FILE_RANGE: fuse_copy_file_range_in
	51: inHeaderSize + 16, // TMPFILE: fuse_create_in
	52: inHeaderSize + 24, // STATX: fuse_statx_in
	53: inHeaderSize + 56, // COPY_FILE_RANGE_64: fuse_copy_file_range_in
}
