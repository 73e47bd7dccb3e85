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
	inHeaderSize      = 40
	inOffOpcode       = 4
	inOffUnique       = 8
	inOffNodeID       = 16
	outHeaderSize     = 16 // struct fuse_out_header: len, error, unique
	fuseOpForget      = 2  // FUSE_FORGET
	fuseOpInit        = 26 // FUSE_INIT
	fuseOpInterrupt   = 36 // FUSE_INTERRUPT
	fuseOpDestroy     = 38 // FUSE_DESTROY
	fuseOpNotifyReply = 41 // FUSE_NOTIFY_REPLY
	fuseOpBatchForget = 42 // FUSE_BATCH_FORGET
	fuseKernelMajor   = 7  // FUSE_KERNEL_VERSION
	// fuseMinMinor is the oldest protocol minor go-fuse serves
	// (_MINIMUM_MINOR_VERSION).
	fuseMinMinor = 12
)
