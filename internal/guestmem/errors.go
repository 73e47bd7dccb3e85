package guestmem

import "errors"

var (
	// ErrOutOfBounds reports an access that is not entirely inside guest
	// memory (or, for Slice, inside a single region).
	ErrOutOfBounds = errors.New("guest memory access out of bounds")
	// ErrUnaligned reports an atomic access at an address that is not
	// naturally aligned.
	ErrUnaligned = errors.New("unaligned guest memory access")
	// ErrBadRegion reports an invalid region passed to New.
	ErrBadRegion = errors.New("invalid guest memory region")
)
