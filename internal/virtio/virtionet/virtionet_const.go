package virtionet

// Names follow virtio v1.2 §5.1 and Linux include/uapi/linux/virtio_net.h.

// Feature bits, §5.1.3.
const (
	VIRTIO_NET_F_CSUM       = 0
	VIRTIO_NET_F_GUEST_CSUM = 1
	VIRTIO_NET_F_MTU        = 3
	VIRTIO_NET_F_MAC        = 5
	VIRTIO_NET_F_HOST_TSO4  = 11
	VIRTIO_NET_F_HOST_TSO6  = 12
	VIRTIO_NET_F_HOST_ECN   = 13
	VIRTIO_NET_F_MRG_RXBUF  = 15
	VIRTIO_NET_F_STATUS     = 16
)

// struct virtio_net_hdr flags and gso_type values, §5.1.6.
const (
	VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
	VIRTIO_NET_HDR_F_DATA_VALID = 2
	VIRTIO_NET_HDR_F_RSC_INFO   = 4
	VIRTIO_NET_HDR_GSO_NONE     = 0
	VIRTIO_NET_HDR_GSO_TCPV4    = 1
	VIRTIO_NET_HDR_GSO_TCPV6    = 4
	VIRTIO_NET_HDR_GSO_ECN      = 0x80
)

// Link status bits in the config space, §5.1.4.
const VIRTIO_NET_S_LINK_UP = 1

const (
	// HeaderSize is struct virtio_net_hdr with VIRTIO_F_VERSION_1
	// (num_buffers always present, §5.1.6): flags, gso_type, hdr_len,
	// gso_size, csum_start, csum_offset, num_buffers.
	HeaderSize = 12
	// LegacyHeaderSize is the header without num_buffers, which a legacy
	// driver uses when neither VIRTIO_F_VERSION_1 nor
	// VIRTIO_NET_F_MRG_RXBUF is negotiated (§5.1.6.1, legacy interface):
	// what Linux sends through QEMU's legacy virtio-mmio transport
	// (microvm's default) to a vhost-user back-end.
	LegacyHeaderSize = 10

	configSize = 12 // mac[6], status, max_virtqueue_pairs, mtu
	offStatus  = 6
	offMTU     = 10
	rxQueue    = 0
	txQueue    = 1
	queueSize  = 256
	// ethOverhead is the Ethernet header plus one VLAN tag.
	ethOverhead = 14 + 4
	ethHeader   = 14
	// maxTSOFrame bounds a segmentation-offload frame: the largest IP
	// packet behind an Ethernet header (what the host stack's stream
	// framing accepts; Linux's TSO segments stay below it).
	maxTSOFrame = 65535 + ethHeader
)
