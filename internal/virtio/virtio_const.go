package virtio

// Constants keep the names of the virtio 1.2 specification and of Linux's
// include/uapi/linux/virtio_*.h so they can be grepped against both.

// Device status bits, virtio v1.2 §2.1.
const (
	VIRTIO_CONFIG_S_ACKNOWLEDGE        = 1
	VIRTIO_CONFIG_S_DRIVER             = 2
	VIRTIO_CONFIG_S_DRIVER_OK          = 4
	VIRTIO_CONFIG_S_FEATURES_OK        = 8
	VIRTIO_CONFIG_S_DEVICE_NEEDS_RESET = 0x40
	VIRTIO_CONFIG_S_FAILED             = 0x80
)

// Reserved (device-independent) feature bit numbers, virtio v1.2 §6.
const (
	VIRTIO_F_INDIRECT_DESC     = 28
	VIRTIO_F_EVENT_IDX         = 29
	VIRTIO_F_VERSION_1         = 32
	VIRTIO_F_ACCESS_PLATFORM   = 33
	VIRTIO_F_RING_PACKED       = 34
	VIRTIO_F_IN_ORDER          = 35
	VIRTIO_F_ORDER_PLATFORM    = 36
	VIRTIO_F_SR_IOV            = 37
	VIRTIO_F_NOTIFICATION_DATA = 38
)

// Device IDs, virtio v1.2 §5.
const (
	VIRTIO_ID_NET     = 1
	VIRTIO_ID_BLOCK   = 2
	VIRTIO_ID_CONSOLE = 3
	VIRTIO_ID_RNG     = 4
	VIRTIO_ID_VSOCK   = 19
	VIRTIO_ID_FS      = 26
)

// Split virtqueue flags, virtio v1.2 §2.7.5, §2.7.6, §2.7.8.
const (
	VIRTQ_DESC_F_NEXT          = 1
	VIRTQ_DESC_F_WRITE         = 2
	VIRTQ_DESC_F_INDIRECT      = 4
	VIRTQ_AVAIL_F_NO_INTERRUPT = 1
	VIRTQ_USED_F_NO_NOTIFY     = 1
)

// Split virtqueue sizes and alignments, virtio v1.2 §2.7 (table "Virtqueue
// Part alignment and size").
const (
	MaxQueueSize    = 32768 // Queue Size is at most 32768 (§2.7).
	descSize        = 16    // struct virtq_desc
	usedElemSize    = 8     // struct virtq_used_elem
	descTableAlign  = 16
	availRingAlign  = 2
	usedRingAlign   = 4
	ringHeaderBytes = 4 // flags + idx
)
