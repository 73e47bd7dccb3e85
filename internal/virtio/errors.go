package virtio

import "errors"

var (
	// ErrQueueConfig reports a queue layout the driver chose that violates
	// virtio v1.2 §2.7 (size, alignment, or rings outside guest memory).
	ErrQueueConfig = errors.New("invalid virtqueue configuration")
	// ErrAvailIdx reports an available ring index more than the queue size
	// ahead of the device: a buggy or malicious driver (§2.7.6). The queue
	// is broken and the device must set DEVICE_NEEDS_RESET.
	ErrAvailIdx = errors.New("invalid avail idx")
	// ErrQueueBroken reports a queue-fatal condition other than ErrAvailIdx,
	// such as a head index outside the descriptor table or rings that can
	// no longer be accessed.
	ErrQueueBroken = errors.New("virtqueue broken")
	// ErrBadChain reports a malformed descriptor chain (§2.7.5). Only that
	// chain is affected: the device returns it to the driver and goes on.
	ErrBadChain = errors.New("invalid descriptor chain")
)
