package vhostuser

// Constants keep the names of QEMU's docs/interop/vhost-user.rst (front-end
// requests, protocol features) and of Linux's include/uapi/linux/vhost.h so
// they can be grepped against both.

// Front-end message types (vhost-user.rst "Front-end message types").
const (
	VHOST_USER_GET_FEATURES          = 1
	VHOST_USER_SET_FEATURES          = 2
	VHOST_USER_SET_OWNER             = 3
	VHOST_USER_RESET_OWNER           = 4
	VHOST_USER_SET_MEM_TABLE         = 5
	VHOST_USER_SET_LOG_BASE          = 6
	VHOST_USER_SET_LOG_FD            = 7
	VHOST_USER_SET_VRING_NUM         = 8
	VHOST_USER_SET_VRING_ADDR        = 9
	VHOST_USER_SET_VRING_BASE        = 10
	VHOST_USER_GET_VRING_BASE        = 11
	VHOST_USER_SET_VRING_KICK        = 12
	VHOST_USER_SET_VRING_CALL        = 13
	VHOST_USER_SET_VRING_ERR         = 14
	VHOST_USER_GET_PROTOCOL_FEATURES = 15
	VHOST_USER_SET_PROTOCOL_FEATURES = 16
	VHOST_USER_GET_QUEUE_NUM         = 17
	VHOST_USER_SET_VRING_ENABLE      = 18
	VHOST_USER_SET_BACKEND_REQ_FD    = 21 // formerly SET_SLAVE_REQ_FD
	VHOST_USER_GET_CONFIG            = 24
	VHOST_USER_SET_CONFIG            = 25
	VHOST_USER_RESET_DEVICE          = 34
	VHOST_USER_GET_MAX_MEM_SLOTS     = 36
)

// Header flags (vhost-user.rst "Header").
const (
	VHOST_USER_VERSION_MASK = 0x3
	VHOST_USER_VERSION      = 0x1
	VHOST_USER_REPLY_MASK   = 0x4
	VHOST_USER_NEED_REPLY   = 0x8
)

// VHOST_USER_F_PROTOCOL_FEATURES is the virtio feature bit (in the
// GET_FEATURES reply) that announces GET/SET_PROTOCOL_FEATURES.
const VHOST_USER_F_PROTOCOL_FEATURES = 30

// VHOST_F_LOG_ALL is the dirty-logging feature bit (linux/vhost.h); it is
// never offered, so migration with this back-end is refused by the
// front-end.
const VHOST_F_LOG_ALL = 26

// Protocol feature bits (vhost-user.rst "Protocol features"). Only those
// offered (protocolFeatures) are implemented.
const (
	VHOST_USER_PROTOCOL_F_MQ                  = 0
	VHOST_USER_PROTOCOL_F_REPLY_ACK           = 3
	VHOST_USER_PROTOCOL_F_BACKEND_REQ         = 5
	VHOST_USER_PROTOCOL_F_CONFIG              = 9
	VHOST_USER_PROTOCOL_F_RESET_DEVICE        = 13
	VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS = 15
)

// Payload details.
const (
	// VHOST_USER_VRING_IDX_MASK and VHOST_USER_VRING_NOFD_MASK split the
	// u64 payload of SET_VRING_KICK, SET_VRING_CALL and SET_VRING_ERR.
	VHOST_USER_VRING_IDX_MASK  = 0xff
	VHOST_USER_VRING_NOFD_MASK = 1 << 8
	// VHOST_VRING_F_LOG is the SET_VRING_ADDR flag asking for used ring
	// dirty logging (linux/vhost.h); refused with LOG_ALL.
	VHOST_VRING_F_LOG = 1
	// VHOST_MEMORY_BASELINE_NREGIONS is the most regions SET_MEM_TABLE
	// carries without CONFIGURE_MEM_SLOTS.
	VHOST_MEMORY_BASELINE_NREGIONS = 8
	// VHOST_USER_MAX_CONFIG_SIZE bounds GET_CONFIG and SET_CONFIG.
	VHOST_USER_MAX_CONFIG_SIZE = 256
)

// Wire sizes.
const (
	headerSize     = 12 // request u32, flags u32, size u32
	vringStateSize = 8  // struct vhost_vring_state: index u32, num u32
	vringAddrSize  = 40 // struct vhost_vring_addr: index, flags, desc, used, avail, log
	memRegionSize  = 32 // guest_phys_addr, memory_size, userspace_addr, mmap_offset
	memTableHeader = 8  // nregions u32, padding u32
	configHeader   = 12 // offset u32, size u32, flags u32
	// maxPayload bounds every payload this back-end accepts; the largest
	// is GET_CONFIG/SET_CONFIG (268 bytes) or SET_MEM_TABLE (264).
	maxPayload = 4096
	// maxFDs bounds the descriptors one message may carry: SET_MEM_TABLE
	// sends one per region.
	maxFDs = VHOST_MEMORY_BASELINE_NREGIONS
)
