// Package guestmem gives the VMM and the virtio devices typed, bounds-checked
// access to guest physical memory.
//
// A Memory is a fixed set of non-overlapping regions, each a host byte slice
// (normally an mmap shared with KVM) mapped at a guest physical address. The
// package only accesses memory; it never allocates, maps or frees it (the
// same split as rust-vmm vm-memory). Every access is checked against the
// regions, and address arithmetic is overflow-safe, because guest physical
// addresses come from the guest and are hostile.
//
// The guest runs concurrently with the host, so plain reads and writes of
// guest memory may race with guest vCPUs; that is inherent and harmless for
// data buffers. Values that synchronise with the guest (virtqueue ring
// indices) must use LoadAcquire16 and StoreRelease16, which are the only code
// in the package that uses unsafe (atomics_unsafe.go).
//
// A Memory is immutable after New and safe for concurrent use.
package guestmem
