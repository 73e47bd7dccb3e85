package hostmem

import "unsafe"

// alignUp returns the first address at or after b's start that is a
// multiple of align (a power of two), inside b when b is long enough.
func alignUp(b []byte, align uintptr) unsafe.Pointer {
	p := unsafe.Pointer(unsafe.SliceData(b))
	return unsafe.Add(p, (align-uintptr(p)%align)%align)
}

func unsafeSlice(p unsafe.Pointer, n int) []byte { return unsafe.Slice((*byte)(p), n) }
