// Package kvm is a thin, typed layer over the Linux KVM ioctl API for x86-64.
//
// It follows the rust-vmm kvm-ioctls split: one handle per kernel file
// descriptor. A System wraps /dev/kvm, a VM wraps the descriptor returned by
// KVM_CREATE_VM, and a VCPU wraps a vCPU descriptor together with its mmapped
// struct kvm_run. The package does not lay out guest memory, load kernels or
// emulate devices; internal/vmm does that on top of it.
//
// The kernel structures are generated once with `go tool cgo -godefs` from
// <linux/kvm.h> (types.go is the input, types_amd64.go the committed output)
// and the ioctl numbers live in kvm_const.go under their C names; abi_test.go
// recomputes both. unsafe is confined to *_unsafe.go files.
//
// Threading: a VCPU must be run from one goroutine locked to its OS thread
// (runtime.LockOSThread), because VCPU.Kick interrupts KVM_RUN by signalling
// that thread. All other methods are safe to call from any goroutine, but
// the caller serialises calls on the same VCPU.
package kvm
