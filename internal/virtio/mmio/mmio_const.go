package mmio

// Register offsets of the virtio-mmio version 2 layout, virtio v1.2 §4.2.2
// (names as in Linux include/uapi/linux/virtio_mmio.h).
const (
	VIRTIO_MMIO_MAGIC_VALUE         = 0x000
	VIRTIO_MMIO_VERSION             = 0x004
	VIRTIO_MMIO_DEVICE_ID           = 0x008
	VIRTIO_MMIO_VENDOR_ID           = 0x00c
	VIRTIO_MMIO_DEVICE_FEATURES     = 0x010
	VIRTIO_MMIO_DEVICE_FEATURES_SEL = 0x014
	VIRTIO_MMIO_DRIVER_FEATURES     = 0x020
	VIRTIO_MMIO_DRIVER_FEATURES_SEL = 0x024
	VIRTIO_MMIO_QUEUE_SEL           = 0x030
	VIRTIO_MMIO_QUEUE_NUM_MAX       = 0x034
	VIRTIO_MMIO_QUEUE_NUM           = 0x038
	VIRTIO_MMIO_QUEUE_READY         = 0x044
	VIRTIO_MMIO_QUEUE_NOTIFY        = 0x050
	VIRTIO_MMIO_INTERRUPT_STATUS    = 0x060
	VIRTIO_MMIO_INTERRUPT_ACK       = 0x064
	VIRTIO_MMIO_STATUS              = 0x070
	VIRTIO_MMIO_QUEUE_DESC_LOW      = 0x080
	VIRTIO_MMIO_QUEUE_DESC_HIGH     = 0x084
	VIRTIO_MMIO_QUEUE_AVAIL_LOW     = 0x090 // QueueDriverLow
	VIRTIO_MMIO_QUEUE_AVAIL_HIGH    = 0x094 // QueueDriverHigh
	VIRTIO_MMIO_QUEUE_USED_LOW      = 0x0a0 // QueueDeviceLow
	VIRTIO_MMIO_QUEUE_USED_HIGH     = 0x0a4 // QueueDeviceHigh
	VIRTIO_MMIO_SHM_SEL             = 0x0ac
	VIRTIO_MMIO_SHM_LEN_LOW         = 0x0b0
	VIRTIO_MMIO_SHM_LEN_HIGH        = 0x0b4
	VIRTIO_MMIO_SHM_BASE_LOW        = 0x0b8
	VIRTIO_MMIO_SHM_BASE_HIGH       = 0x0bc
	VIRTIO_MMIO_CONFIG_GENERATION   = 0x0fc
	VIRTIO_MMIO_CONFIG              = 0x100

	// InterruptStatus bits, §4.2.2.
	VIRTIO_MMIO_INT_VRING  = 1
	VIRTIO_MMIO_INT_CONFIG = 2

	// MagicValue is "virt" in little endian.
	MagicValue = 0x74726976
	// Version is the non-legacy virtio-mmio interface version.
	Version = 2
)
