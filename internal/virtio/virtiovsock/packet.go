package virtiovsock

import (
	"encoding/binary"
	"fmt"
)

// Constants keep the names of virtio v1.2 §5.10 and Linux's
// include/uapi/linux/virtio_vsock.h.
const (
	VIRTIO_VSOCK_TYPE_STREAM = 1

	VIRTIO_VSOCK_OP_INVALID        = 0
	VIRTIO_VSOCK_OP_REQUEST        = 1
	VIRTIO_VSOCK_OP_RESPONSE       = 2
	VIRTIO_VSOCK_OP_RST            = 3
	VIRTIO_VSOCK_OP_SHUTDOWN       = 4
	VIRTIO_VSOCK_OP_RW             = 5
	VIRTIO_VSOCK_OP_CREDIT_UPDATE  = 6
	VIRTIO_VSOCK_OP_CREDIT_REQUEST = 7

	VIRTIO_VSOCK_SHUTDOWN_RCV  = 1
	VIRTIO_VSOCK_SHUTDOWN_SEND = 2
)

// HostCID is the context id of the host (VMADDR_CID_HOST).
const HostCID = 2

// hdrSize is sizeof(struct virtio_vsock_hdr): packed, little-endian.
const hdrSize = 44

// maxPacket bounds the payload of one packet in either direction: Linux's
// VIRTIO_VSOCK_MAX_PKT_BUF_SIZE. A guest packet claiming more is a protocol
// violation, and the device never builds a larger one.
const maxPacket = 64 << 10

// hdr is struct virtio_vsock_hdr (§5.10.6).
type hdr struct {
	SrcCID   uint64
	DstCID   uint64
	SrcPort  uint32
	DstPort  uint32
	Len      uint32
	Type     uint16
	Op       uint16
	Flags    uint32
	BufAlloc uint32
	FwdCnt   uint32
}

func (h *hdr) put(b []byte) {
	_ = b[hdrSize-1]
	binary.LittleEndian.PutUint64(b[0:], h.SrcCID)
	binary.LittleEndian.PutUint64(b[8:], h.DstCID)
	binary.LittleEndian.PutUint32(b[16:], h.SrcPort)
	binary.LittleEndian.PutUint32(b[20:], h.DstPort)
	binary.LittleEndian.PutUint32(b[24:], h.Len)
	binary.LittleEndian.PutUint16(b[28:], h.Type)
	binary.LittleEndian.PutUint16(b[30:], h.Op)
	binary.LittleEndian.PutUint32(b[32:], h.Flags)
	binary.LittleEndian.PutUint32(b[36:], h.BufAlloc)
	binary.LittleEndian.PutUint32(b[40:], h.FwdCnt)
}

// parseHdr decodes a header the guest wrote. Every field is hostile: the
// caller checks addresses, type, op and length against its own state.
func parseHdr(b []byte) (hdr, error) {
	if len(b) < hdrSize {
		return hdr{}, fmt.Errorf("vsock header: %d bytes, want %d: %w", len(b), hdrSize, ErrBadPacket)
	}
	return hdr{
		SrcCID:   binary.LittleEndian.Uint64(b[0:]),
		DstCID:   binary.LittleEndian.Uint64(b[8:]),
		SrcPort:  binary.LittleEndian.Uint32(b[16:]),
		DstPort:  binary.LittleEndian.Uint32(b[20:]),
		Len:      binary.LittleEndian.Uint32(b[24:]),
		Type:     binary.LittleEndian.Uint16(b[28:]),
		Op:       binary.LittleEndian.Uint16(b[30:]),
		Flags:    binary.LittleEndian.Uint32(b[32:]),
		BufAlloc: binary.LittleEndian.Uint32(b[36:]),
		FwdCnt:   binary.LittleEndian.Uint32(b[40:]),
	}, nil
}
