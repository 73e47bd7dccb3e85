package virtioblk

// Names follow virtio v1.2 §5.2 and Linux include/uapi/linux/virtio_blk.h.

// Feature bits, §5.2.3.
const (
	VIRTIO_BLK_F_SIZE_MAX = 1
	VIRTIO_BLK_F_SEG_MAX  = 2
	VIRTIO_BLK_F_RO       = 5
	VIRTIO_BLK_F_BLK_SIZE = 6
	VIRTIO_BLK_F_FLUSH    = 9
	VIRTIO_BLK_F_DISCARD  = 13
)

// Request types, §5.2.6.
const (
	VIRTIO_BLK_T_IN      = 0
	VIRTIO_BLK_T_OUT     = 1
	VIRTIO_BLK_T_FLUSH   = 4
	VIRTIO_BLK_T_GET_ID  = 8
	VIRTIO_BLK_T_DISCARD = 11
)

// Request status, §5.2.6.
const (
	VIRTIO_BLK_S_OK     = 0
	VIRTIO_BLK_S_IOERR  = 1
	VIRTIO_BLK_S_UNSUPP = 2
)

const (
	// SectorSize is the unit of sector numbers and capacity, independent
	// of blk_size (§5.2.4).
	SectorSize = 512
	// VIRTIO_BLK_ID_BYTES is the length of the GET_ID serial (§5.2.6).
	VIRTIO_BLK_ID_BYTES = 20

	reqHeaderSize     = 16 // struct virtio_blk_req: le32 type, le32 reserved, le64 sector
	discardSegSize    = 16 // struct virtio_blk_discard_write_zeroes
	configSize        = 60 // struct virtio_blk_config up to write_zeroes_may_unmap + padding
	offCapacity       = 0
	offSegMax         = 12
	offMaxDiscardSect = 36
	offMaxDiscardSeg  = 40
	offDiscardAlign   = 44
)
