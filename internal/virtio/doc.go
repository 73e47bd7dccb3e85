// Package virtio is the device-side vocabulary of virtio 1.2 shared by the
// transports and the devices: constants with their spec names, the split
// virtqueue (Queue), descriptor chains (Chain, Buffers), the Device
// interface a transport drives and Base, the part of it every device
// shares (queue sizes, config space, queue goroutines and their kicks).
//
// The package does not implement a transport (see the mmio subpackage) or
// any device (see the virtio* subpackages), and it never panics on guest
// input: the driver is hostile (Firecracker's threat model), so every index,
// length, flag and address read from guest memory is validated and turned
// into an error.
//
//	driver (guest)             transport (mmio)            device (virtioblk, ...)
//	  rings in guest memory -->  QueueDesc/Driver/Device --> Activate(mem, []*Queue, Interrupt)
//	  QueueNotify write      -->  Device.QueueNotify(q)  --> Queue.Pop → Chain → Queue.Push
//	  interrupt              <--  Interrupt.Used(q)      <-- Queue.NeedsInterrupt
package virtio
