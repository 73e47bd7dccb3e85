package vmm

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestAlignedWindow(t *testing.T) {
	const size = 6 << 20
	full, err := unix.Mmap(-1, 0, size+hugePage, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(full)
	w := alignedWindow(full, size)
	if len(w) != size || cap(w) != size {
		t.Fatalf("window len %d cap %d; want %d", len(w), cap(w), size)
	}
	if addr := uintptr(unsafe.Pointer(&w[0])); addr%hugePage != 0 {
		t.Errorf("window starts at %#x; want a 2 MiB boundary", addr)
	}
	w[size-1] = 1 // the window lies inside the mapping
}
