package virtioconsole

// Names follow virtio v1.2 §5.3 and Linux include/uapi/linux/virtio_console.h.

// Feature bits, §5.3.3.
const (
	VIRTIO_CONSOLE_F_SIZE        = 0
	VIRTIO_CONSOLE_F_MULTIPORT   = 1
	VIRTIO_CONSOLE_F_EMERG_WRITE = 2
)

// Control message events, §5.3.6.2. The spec calls events 1 and 2
// DEVICE_ADD and DEVICE_REMOVE; Linux calls them PORT_ADD and PORT_REMOVE.
const (
	VIRTIO_CONSOLE_DEVICE_READY = 0
	VIRTIO_CONSOLE_PORT_ADD     = 1
	VIRTIO_CONSOLE_PORT_REMOVE  = 2
	VIRTIO_CONSOLE_PORT_READY   = 3
	VIRTIO_CONSOLE_CONSOLE_PORT = 4
	VIRTIO_CONSOLE_RESIZE       = 5
	VIRTIO_CONSOLE_PORT_OPEN    = 6
	VIRTIO_CONSOLE_PORT_NAME    = 7
)

const (
	// controlSize is struct virtio_console_control: le32 id, le16 event,
	// le16 value.
	controlSize = 8
	// configSize is struct virtio_console_config: le16 cols, le16 rows,
	// le32 max_nr_ports, le32 emerg_wr.
	configSize      = 12
	offMaxNrPorts   = 4
	ctlRxQueue      = 2
	ctlTxQueue      = 3
	queueSize       = 256
	maxPortNameSize = 255
)
