//go:build linux

package vmm

import "unsafe"

// hugePageOffset is how far into b the first hugePage-aligned byte lies.
func hugePageOffset(b []byte) int {
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return int((hugePage - addr%hugePage) % hugePage)
}
